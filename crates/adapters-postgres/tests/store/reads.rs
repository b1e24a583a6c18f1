//! Rows that break the rules (written by raw SQL) read as corrupt, never guessed at; the
//! conformance suite has every other read behaviour.

use std::ops::ControlFlow;

use serde_json::json;
use sqlx::PgPool;
use strata_adapters_postgres::PgEventStore;
use strata_ports::{EventStore, EventStoreError, ExpectedVersion, PayloadRef, PayloadVisitor};

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
/// as stored; what a load makes of it is the decoder's call (decision 0012).
#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_row_whose_data_cannot_be_read_back_reads_as_corrupt(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
    let order = stream("order");
    insert_row(&pool, order.as_str(), r#"{"note": "\ud800"}"#, "{}").await;

    let read = store.read_stream(&order, 0).await;
    let mut visited = Texts::default();
    store.visit_stream(&order, 0, &mut visited).await.unwrap();

    assert!(
        matches!(&read, Err(EventStoreError::Corrupt(why)) if why.contains("data of event")),
        "{read:?}"
    );
    assert_eq!(visited.0, [r#"{"note": "\ud800"}"#]);
}

/// The data texts a visit hands on, up to a limit.
#[derive(Default)]
struct Texts(Vec<String>, Option<usize>);

impl PayloadVisitor for Texts {
    fn visit(&mut self, payload: PayloadRef<'_>) -> ControlFlow<()> {
        self.0.push(payload.data.to_owned());
        if self.1.is_some_and(|limit| self.0.len() >= limit) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// A visit that stops early leaves the rest of its rows unread on the connection; the next
/// statement on that same connection (the pool's only one) must not see them.
#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_visit_that_stops_early_leaves_its_connection_usable(pool: PgPool) {
    let only = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let store = PgEventStore::new(only);
    let order = stream("order");
    store
        .append(request(&order, ExpectedVersion::NoStream, 3000))
        .await
        .unwrap();

    let mut first = Texts(Vec::new(), Some(1));
    store.visit_stream(&order, 0, &mut first).await.unwrap();
    let read = store.read_stream(&order, 2990).await.unwrap();
    let appended = store
        .append(request(&order, ExpectedVersion::Exact(3000), 1))
        .await;

    assert_eq!(first.0.len(), 1);
    assert_eq!(
        read.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        (2991..=3000).collect::<Vec<_>>()
    );
    assert_eq!(appended.unwrap().stream_version, 3001);
}

/// Visits an order of two events after `sql` has changed what is stored: the visit's result,
/// and what it handed on.
async fn visit_after(pool: &PgPool, sql: &'static str) -> (Result<(), EventStoreError>, Texts) {
    let store = PgEventStore::new(pool.clone());
    let order = stream("order");
    store
        .append(request(&order, ExpectedVersion::NoStream, 2))
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(pool).await.unwrap();
    let mut visited = Texts::default();
    let visit = store.visit_stream(&order, 0, &mut visited).await;
    (visit, visited)
}

/// A row the visit cannot hand on (here a negative schema version, with the check that forbids
/// it dropped) ends the visit as corrupt, after the rows before it were handed on.
#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_visit_reaching_a_corrupt_row_fails_as_corrupt(pool: PgPool) {
    let (visit, visited) = visit_after(
        &pool,
        "ALTER TABLE events DROP CONSTRAINT events_schema_version_check; \
         ALTER TABLE events DISABLE TRIGGER events_are_immutable; \
         UPDATE events SET schema_version = -1 WHERE stream_version = 2",
    )
    .await;

    assert!(
        matches!(&visit, Err(EventStoreError::Corrupt(why)) if why.contains("schema version -1")),
        "{visit:?}"
    );
    assert_eq!(visited.0.len(), 1);
}

/// A stream read checks its columns' types once, on its first row, and then reads each value
/// without checking it again: a column of another type (here `schema_version` made a `bigint`)
/// fails the read by name before any row is handed on, instead of being read as what it is not.
#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_visit_of_a_column_of_another_type_fails_before_any_row(pool: PgPool) {
    let (visit, visited) = visit_after(
        &pool,
        "ALTER TABLE events ALTER COLUMN schema_version TYPE BIGINT",
    )
    .await;

    assert!(
        matches!(&visit, Err(EventStoreError::Backend(why))
            if why.contains("column schema_version of a stream read is INT8, not INT")),
        "{visit:?}"
    );
    assert!(visited.0.is_empty());
}
