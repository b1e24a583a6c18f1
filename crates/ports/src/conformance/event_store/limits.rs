//! Hostile values: a NUL character or a value longer than the limits of [`crate::limits`] is
//! refused as [`EventStoreError::InvalidInput`] before any statement runs (a driver error, or a
//! refusal by the database, would come back as `Backend`), and nothing is written; the longest
//! allowed values are stored and found again.

use crate::event_store::{EventStore, EventStoreError, ExpectedVersion};
use crate::limits::{MAX_IDEMPOTENCY_KEY_BYTES, MAX_PRINCIPAL_BYTES};

use super::{claiming, fresh_key, head, request, stream};

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, EventStoreError>, case: &str) {
    assert!(
        matches!(result, Err(EventStoreError::InvalidInput(_))),
        "{case}: expected InvalidInput, got {result:?}"
    );
}

/// Appends whose idempotency claim carries a NUL or an oversized value are refused as invalid
/// input, and the log does not move. (Data and metadata are JSON text: a NUL there is stored.)
pub async fn appends_with_nul_or_oversized_values_are_refused_as_invalid_input(
    store: &dyn EventStore,
) {
    let start = head(store).await;
    let oversized_principal = "p".repeat(MAX_PRINCIPAL_BYTES + 1);
    let oversized_key = "k".repeat(MAX_IDEMPOTENCY_KEY_BYTES + 1);
    let claims = [
        ("NUL in principal", "al\0ice", fresh_key()),
        ("NUL in key", "alice", "key\0".to_owned()),
        (
            "oversized principal",
            oversized_principal.as_str(),
            fresh_key(),
        ),
        ("oversized key", "alice", oversized_key.clone()),
    ];
    for (case, principal, key) in claims {
        let append = claiming(
            request(&stream("order"), ExpectedVersion::NoStream, 1),
            principal,
            &key,
        );
        assert_refused(store.append(append).await, case);
    }

    assert_eq!(head(store).await, start, "a refused append wrote nothing");
}

/// Looking up an idempotency record with a NUL or an oversized principal or key is refused as
/// invalid input, not answered by a failing statement.
pub async fn lookups_with_nul_or_oversized_values_are_refused_as_invalid_input(
    store: &dyn EventStore,
) {
    let long = "x".repeat(3000);
    for (case, principal, key) in [
        ("NUL in principal", "\0", "k"),
        ("NUL in key", "alice", "k\0"),
        ("oversized principal", long.as_str(), "k"),
        ("oversized key", "alice", long.as_str()),
    ] {
        assert_refused(store.find_idempotency(principal, key).await, case);
    }
}

/// The longest principal and key (in bytes, multi-byte characters included) are stored with
/// their append and found again.
pub async fn the_longest_principal_and_key_are_stored_and_found_again(store: &dyn EventStore) {
    let principal = "é".repeat(MAX_PRINCIPAL_BYTES / 2);
    let key = format!("{}{}", fresh_key(), "k".repeat(MAX_IDEMPOTENCY_KEY_BYTES))
        [..MAX_IDEMPOTENCY_KEY_BYTES]
        .to_owned();
    assert_eq!(principal.len(), MAX_PRINCIPAL_BYTES);

    let order = stream("order");
    store
        .append(claiming(
            request(&order, ExpectedVersion::NoStream, 1),
            &principal,
            &key,
        ))
        .await
        .unwrap();

    let record = store.find_idempotency(&principal, &key).await.unwrap();
    assert_eq!(record.map(|r| r.stream_id), Some(order));
}
