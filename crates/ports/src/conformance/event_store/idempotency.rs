//! Idempotency claims: recorded with the events they acknowledge, once per (principal, key),
//! and only when the append itself lands.

use crate::event_store::{EventStore, EventStoreError, ExpectedVersion, IdempotencyRecord};

use super::{
    append, claiming, fresh_key, head, read_after, read_stream, request, stream, taken, wrong,
};

/// An applied claim is found again, naming the stream, version and position of the append's
/// last event (what the command was acknowledged with).
pub async fn an_append_with_a_claim_stores_its_idempotency_record(store: &dyn EventStore) {
    let (account, order, key) = (stream("account"), stream("order"), fresh_key());
    append(store, &account, ExpectedVersion::Any, 2)
        .await
        .unwrap();
    let start = head(store).await;

    let outcome = store
        .append(claiming(
            request(&order, ExpectedVersion::NoStream, 3),
            "alice",
            &key,
        ))
        .await
        .unwrap();

    let record = store.find_idempotency("alice", &key).await.unwrap();
    assert_eq!(
        record,
        Some(IdempotencyRecord {
            principal: "alice".to_owned(),
            key: key.clone(),
            fingerprint: format!("POST /orders {key}"),
            stream_id: order,
            stream_version: 3,
            global_position: start + 3,
        })
    );
    assert_eq!(
        (outcome.stream_version, outcome.global_position),
        (3, start + 3)
    );
}

/// A key nobody used has no record.
pub async fn an_unused_key_has_no_record(store: &dyn EventStore) {
    let record = store.find_idempotency("alice", &fresh_key()).await.unwrap();

    assert_eq!(record, None);
}

/// A second append claiming a used key is refused and appends nothing; the record still names
/// the first append.
pub async fn a_second_append_with_the_same_key_is_refused_and_appends_nothing(
    store: &dyn EventStore,
) {
    let (first, second, key) = (stream("order"), stream("order"), fresh_key());
    store
        .append(claiming(
            request(&first, ExpectedVersion::Any, 1),
            "alice",
            &key,
        ))
        .await
        .unwrap();
    let start = head(store).await;

    let refused = store
        .append(claiming(
            request(&second, ExpectedVersion::Any, 2),
            "alice",
            &key,
        ))
        .await;

    assert_eq!(refused, Err(taken(&key)));
    assert!(read_stream(store, &second).await.is_empty());
    assert_eq!(head(store).await, start);
    let record = store
        .find_idempotency("alice", &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.stream_id, first);
    assert_eq!(record.global_position, start);
}

/// Keys belong to their principal: bob's key never collides with alice's of the same text.
pub async fn the_same_key_for_another_principal_is_accepted(store: &dyn EventStore) {
    let (alices_order, bobs_order, key) = (stream("order"), stream("order"), fresh_key());
    store
        .append(claiming(
            request(&alices_order, ExpectedVersion::Any, 1),
            "alice",
            &key,
        ))
        .await
        .unwrap();
    let start = head(store).await;

    let bobs = store
        .append(claiming(
            request(&bobs_order, ExpectedVersion::Any, 1),
            "bob",
            &key,
        ))
        .await;

    assert_eq!(bobs.unwrap().global_position, start + 1);
    let bobs_record = store.find_idempotency("bob", &key).await.unwrap().unwrap();
    let alices_record = store
        .find_idempotency("alice", &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (bobs_record.stream_id, bobs_record.global_position),
        (bobs_order, start + 1)
    );
    assert_eq!(
        (alices_record.stream_id, alices_record.global_position),
        (alices_order, start)
    );
}

/// An append that is refused records no key, so the client's corrected request may use it.
pub async fn a_refused_append_records_no_key_and_leaves_it_free(store: &dyn EventStore) {
    let (order, key) = (stream("order"), fresh_key());
    append(store, &order, ExpectedVersion::Any, 1)
        .await
        .unwrap();

    let conflict = store
        .append(claiming(
            request(&order, ExpectedVersion::NoStream, 1),
            "alice",
            &key,
        ))
        .await;
    let empty = store
        .append(claiming(
            request(&order, ExpectedVersion::Any, 0),
            "alice",
            &key,
        ))
        .await;
    let record_after_refusals = store.find_idempotency("alice", &key).await.unwrap();
    let corrected = store
        .append(claiming(
            request(&order, ExpectedVersion::Exact(1), 1),
            "alice",
            &key,
        ))
        .await;

    assert_eq!(conflict, Err(wrong(&order, ExpectedVersion::NoStream, 1)));
    assert_eq!(empty, Err(EventStoreError::EmptyAppend));
    assert_eq!(record_after_refusals, None);
    let corrected = corrected.unwrap();
    let record = store
        .find_idempotency("alice", &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.stream_version, 2);
    assert_eq!(record.global_position, corrected.global_position);
}

/// A retry of an applied command expects the version its original expected, which is gone by
/// now; the verdict must still be the taken key, not a version conflict, so the caller answers
/// with a replay of the original instead of a spurious 412.
pub async fn a_retry_of_an_applied_command_is_refused_as_a_taken_key_not_a_version_conflict(
    store: &dyn EventStore,
) {
    let (order, key) = (stream("order"), fresh_key());
    append(store, &order, ExpectedVersion::NoStream, 1)
        .await
        .unwrap();
    // Each attempt builds its events afresh, as the application does for every request.
    let command = || claiming(request(&order, ExpectedVersion::Exact(1), 1), "alice", &key);
    store.append(command()).await.unwrap();
    let start = head(store).await;

    let retry = store.append(command()).await;

    assert_eq!(retry, Err(taken(&key)));
    assert_eq!(read_stream(store, &order).await.len(), 2);
    assert!(read_after(store, start).await.is_empty());
}
