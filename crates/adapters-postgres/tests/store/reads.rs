//! Reading streams and the log: contiguity, bounds, the envelope, and what the store never does
//! to stored data (rewrite old schema versions, or guess at rows that break the rules).

use serde_json::json;
use sqlx::PgPool;
use strata_adapters_postgres::PgEventStore;
use strata_ports::{AppendRequest, EventStore, EventStoreError, ExpectedVersion};

use crate::helpers::{RECORDED_AT, append, event, read_everything, stream};

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn versions_and_positions_are_contiguous_across_streams(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let (order, account) = (stream("order"), stream("account"));

    append(&store, &order, ExpectedVersion::Any, 2)
        .await
        .unwrap();
    append(&store, &account, ExpectedVersion::Any, 3)
        .await
        .unwrap();
    append(&store, &order, ExpectedVersion::Any, 2)
        .await
        .unwrap();

    let log = read_everything(&store).await;
    let positions: Vec<u64> = log.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, (1..=7).collect::<Vec<_>>());
    let order_versions: Vec<u64> = log
        .iter()
        .filter(|e| e.stream_id == order)
        .map(|e| e.stream_version)
        .collect();
    assert_eq!(order_versions, [1, 2, 3, 4]);
    let account_versions: Vec<u64> = log
        .iter()
        .filter(|e| e.stream_id == account)
        .map(|e| e.stream_version)
        .collect();
    assert_eq!(account_versions, [1, 2, 3]);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn an_append_reports_its_last_version_and_position(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let (order, account) = (stream("order"), stream("account"));
    append(&store, &account, ExpectedVersion::Any, 4)
        .await
        .unwrap();

    let outcome = append(&store, &order, ExpectedVersion::Any, 3)
        .await
        .unwrap();

    assert_eq!(outcome.stream_version, 3);
    assert_eq!(outcome.global_position, 7);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn read_stream_returns_the_events_after_a_version_in_order(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let (order, account) = (stream("order"), stream("account"));
    append(&store, &order, ExpectedVersion::Any, 2)
        .await
        .unwrap();
    append(&store, &account, ExpectedVersion::Any, 1)
        .await
        .unwrap();
    append(&store, &order, ExpectedVersion::Any, 2)
        .await
        .unwrap();

    let whole = store.read_stream(&order, 0).await.unwrap();
    let tail = store.read_stream(&order, 2).await.unwrap();
    let past_end = store.read_stream(&order, 4).await.unwrap();

    let versions = |events: &[strata_ports::RecordedEvent]| {
        events.iter().map(|e| e.stream_version).collect::<Vec<_>>()
    };
    assert_eq!(versions(&whole), [1, 2, 3, 4]);
    assert_eq!(versions(&tail), [3, 4]);
    assert!(past_end.is_empty());
    assert!(whole.iter().all(|e| e.stream_id == order));
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn an_unknown_stream_reads_as_empty(pool: PgPool) {
    let store = PgEventStore::new(pool);

    let events = store.read_stream(&stream("order"), 0).await.unwrap();

    assert!(events.is_empty());
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn read_all_returns_at_most_limit_events_after_a_position(pool: PgPool) {
    let store = PgEventStore::new(pool);
    append(&store, &stream("order"), ExpectedVersion::Any, 3)
        .await
        .unwrap();
    append(&store, &stream("account"), ExpectedVersion::Any, 3)
        .await
        .unwrap();

    let page = store.read_all(2, 3).await.unwrap();
    let rest = store.read_all(5, 3).await.unwrap();
    let none = store.read_all(6, 3).await.unwrap();
    let zero = store.read_all(0, 0).await.unwrap();

    let positions: Vec<u64> = page.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, [3, 4, 5]);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].global_position, 6);
    assert!(none.is_empty());
    assert!(zero.is_empty());
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn head_position_is_zero_for_an_empty_log_then_the_last_position(pool: PgPool) {
    let store = PgEventStore::new(pool);

    let empty = store.head_position().await.unwrap();
    append(&store, &stream("order"), ExpectedVersion::Any, 3)
        .await
        .unwrap();
    let after = store.head_position().await.unwrap();

    assert_eq!(empty, 0);
    assert_eq!(after, 3);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_recorded_event_keeps_its_whole_envelope(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let order = stream("order");
    let new = event("OrderPlaced", 7);

    store
        .append(AppendRequest {
            stream_id: order.clone(),
            expected: ExpectedVersion::NoStream,
            events: vec![new.clone()],
            idempotency: None,
        })
        .await
        .unwrap();

    let recorded = store.read_stream(&order, 0).await.unwrap().remove(0);
    assert_eq!(recorded.event_id, new.event_id);
    assert_eq!(recorded.stream_id, order);
    assert_eq!(recorded.stream_version, 1);
    assert_eq!(recorded.global_position, 1);
    assert_eq!(recorded.event_type, "OrderPlaced");
    assert_eq!(recorded.schema_version, 1);
    assert_eq!(recorded.data, json!({ "n": 7 }));
    assert_eq!(recorded.metadata, new.metadata);
    assert_eq!(recorded.recorded_at, RECORDED_AT);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn events_of_an_older_schema_version_are_returned_as_stored(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let order = stream("order");
    let mut v1 = event("OrderPlaced", 1);
    v1.data = json!({ "customer": "c-1", "total": 1250 });
    let mut v2 = event("OrderPlaced", 2);
    v2.schema_version = 2;
    v2.data = json!({ "customerId": "c-1", "total": { "amount": 1250, "currency": "EUR" } });

    store
        .append(AppendRequest {
            stream_id: order.clone(),
            expected: ExpectedVersion::NoStream,
            events: vec![v1.clone(), v2.clone()],
            idempotency: None,
        })
        .await
        .unwrap();

    // Upcasting is the application's job: the store returns each row as it was written.
    let read = store.read_stream(&order, 0).await.unwrap();
    assert_eq!(read[0].schema_version, 1);
    assert_eq!(read[0].data, v1.data);
    assert_eq!(read[1].schema_version, 2);
    assert_eq!(read[1].data, v2.data);
}

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
