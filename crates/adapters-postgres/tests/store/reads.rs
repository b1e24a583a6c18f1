//! Rows that break the rules (written by raw SQL) read as corrupt, never guessed at; the
//! conformance suite has every other read behaviour.

use serde_json::json;
use sqlx::PgPool;
use strata_adapters_postgres::PgEventStore;
use strata_ports::{EventStore, EventStoreError, ExpectedVersion};

use crate::helpers::{request, stream};

/// Writes the log's first event by raw SQL, around the adapter and its checks.
async fn insert_row(pool: &PgPool, stream_id: &str, data: &str, metadata: &str) {
    sqlx::query(
        "INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type, \
                             schema_version, data, metadata, recorded_at) \
         VALUES (1, gen_random_uuid(), $1, 1, 'OrderPlaced', 1, $2::json, $3::json, now())",
    )
    .bind(stream_id)
    .bind(data)
    .bind(metadata)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_row_with_a_malformed_stream_id_reads_as_corrupt(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
    insert_row(&pool, "Not A Stream", "{}", "{}").await;

    let read = store.read_all(0, 10).await;

    assert!(matches!(read, Err(EventStoreError::Corrupt(_))), "{read:?}");
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_row_with_malformed_metadata_reads_as_corrupt(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
    let order = stream("order");
    insert_row(&pool, order.as_str(), "{}", r#"{"correlationId": 42}"#).await;

    let read = store.read_stream(&order, 0).await;

    assert!(matches!(read, Err(EventStoreError::Corrupt(_))), "{read:?}");
}

/// Payloads come back as they were appended, whatever their strings hold: the log keeps the
/// JSON text (migration 0006), where `jsonb` refused a NUL character (`\u0000`) outright and so
/// failed the append.
#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn payloads_read_back_as_appended_even_with_nul_characters(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
    let order = stream("order");
    let mut appended = request(&order, ExpectedVersion::NoStream, 2);
    appended.events[0].data = json!({
        "note": "before\u{0}after",
        "big": u64::MAX,
        "price": 0.1,
        "nested": {"z": [1, "two", null, true], "a": {}},
    });
    appended.events[1].metadata.correlation_id = Some("req\u{0}1".to_owned());

    store.append(appended.clone()).await.unwrap();

    for read in [
        store.read_stream(&order, 0).await.unwrap(),
        store.read_all(0, 10).await.unwrap(),
    ] {
        let payloads: Vec<_> = read.iter().map(|e| (&e.data, &e.metadata)).collect();
        let expected: Vec<_> = appended
            .events
            .iter()
            .map(|e| (&e.data, &e.metadata))
            .collect();
        assert_eq!(payloads, expected);
    }
}

/// `json` keeps text serde_json refuses to read (here a lone surrogate escape, which is not a
/// character): such a row is corrupt, not a database failure. A fold's read hands the text on
/// as stored, and the domain's decoder refuses it.
#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_row_whose_data_cannot_be_read_back_reads_as_corrupt(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
    let order = stream("order");
    insert_row(&pool, order.as_str(), r#"{"note": "\ud800"}"#, "{}").await;

    let read = store.read_stream(&order, 0).await;
    let payloads = store.read_stream_payloads(&order, 0).await;

    assert!(
        matches!(&read, Err(EventStoreError::Corrupt(why)) if why.contains("data of event")),
        "{read:?}"
    );
    assert_eq!(payloads.unwrap()[0].data.get(), r#"{"note": "\ud800"}"#);
}
