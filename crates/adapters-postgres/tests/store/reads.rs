//! Rows that break the rules (written by raw SQL) read as corrupt, never guessed at; the
//! conformance suite has every other read behaviour.

use sqlx::PgPool;
use strata_adapters_postgres::PgEventStore;
use strata_ports::{EventStore, EventStoreError};

use crate::helpers::stream;

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_row_with_a_malformed_stream_id_reads_as_corrupt(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
    sqlx::query(
        "INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type, \
                             schema_version, data, metadata, recorded_at) \
         VALUES (1, gen_random_uuid(), 'Not A Stream', 1, 'OrderPlaced', 1, '{}', '{}', now())",
    )
    .execute(&pool)
    .await
    .unwrap();

    let read = store.read_all(0, 10).await;

    assert!(matches!(read, Err(EventStoreError::Corrupt(_))), "{read:?}");
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_row_with_malformed_metadata_reads_as_corrupt(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
    let order = stream("order");
    sqlx::query(
        "INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type, \
                             schema_version, data, metadata, recorded_at) \
         VALUES (1, gen_random_uuid(), $1, 1, 'OrderPlaced', 1, '{}', \
                 '{\"correlationId\": 42}', now())",
    )
    .bind(order.as_str())
    .execute(&pool)
    .await
    .unwrap();

    let read = store.read_stream(&order, 0).await;

    assert!(matches!(read, Err(EventStoreError::Corrupt(_))), "{read:?}");
}
