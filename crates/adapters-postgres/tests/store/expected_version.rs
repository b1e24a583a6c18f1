//! Optimistic concurrency: every expected-version mode, accepted and refused, and atomicity.

use sqlx::PgPool;
use strata_adapters_postgres::PgEventStore;
use strata_ports::{EventStore, EventStoreError, ExpectedVersion, StreamId};

use crate::helpers::{append, read_everything, request, stream};

fn wrong(stream_id: &StreamId, expected: ExpectedVersion, actual: u64) -> EventStoreError {
    EventStoreError::WrongExpectedVersion {
        stream_id: stream_id.clone(),
        expected,
        actual,
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn no_stream_is_accepted_for_a_new_stream(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let order = stream("order");

    let outcome = append(&store, &order, ExpectedVersion::NoStream, 2).await;

    let outcome = outcome.unwrap();
    assert_eq!(outcome.stream_version, 2);
    assert_eq!(outcome.global_position, 2);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn no_stream_is_refused_for_an_existing_stream_with_its_actual_version(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let order = stream("order");
    append(&store, &order, ExpectedVersion::Any, 3)
        .await
        .unwrap();

    let refused = append(&store, &order, ExpectedVersion::NoStream, 1).await;

    assert_eq!(refused, Err(wrong(&order, ExpectedVersion::NoStream, 3)));
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn stream_exists_is_accepted_for_an_existing_stream(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let order = stream("order");
    append(&store, &order, ExpectedVersion::Any, 1)
        .await
        .unwrap();

    let outcome = append(&store, &order, ExpectedVersion::StreamExists, 1).await;

    assert_eq!(outcome.unwrap().stream_version, 2);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn stream_exists_is_refused_for_a_new_stream(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let order = stream("order");

    let refused = append(&store, &order, ExpectedVersion::StreamExists, 1).await;

    assert_eq!(
        refused,
        Err(wrong(&order, ExpectedVersion::StreamExists, 0))
    );
    assert!(read_everything(&store).await.is_empty());
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn exact_version_is_accepted_when_it_matches(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let order = stream("order");
    append(&store, &order, ExpectedVersion::Any, 2)
        .await
        .unwrap();

    let outcome = append(&store, &order, ExpectedVersion::Exact(2), 3).await;

    assert_eq!(outcome.unwrap().stream_version, 5);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn exact_version_is_refused_behind_or_ahead_with_the_actual_version(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let order = stream("order");
    append(&store, &order, ExpectedVersion::Any, 2)
        .await
        .unwrap();

    let behind = append(&store, &order, ExpectedVersion::Exact(1), 1).await;
    let ahead = append(&store, &order, ExpectedVersion::Exact(3), 1).await;

    assert_eq!(behind, Err(wrong(&order, ExpectedVersion::Exact(1), 2)));
    assert_eq!(ahead, Err(wrong(&order, ExpectedVersion::Exact(3), 2)));
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn exact_zero_behaves_as_no_stream(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let order = stream("order");

    let first = append(&store, &order, ExpectedVersion::Exact(0), 1).await;
    let second = append(&store, &order, ExpectedVersion::Exact(0), 1).await;

    assert_eq!(first.unwrap().stream_version, 1);
    assert_eq!(second, Err(wrong(&order, ExpectedVersion::Exact(0), 1)));
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn any_version_appends_to_new_and_existing_streams(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let order = stream("order");

    let first = append(&store, &order, ExpectedVersion::Any, 1).await;
    let second = append(&store, &order, ExpectedVersion::Any, 2).await;

    assert_eq!(first.unwrap().stream_version, 1);
    assert_eq!(second.unwrap().stream_version, 3);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn an_append_without_events_is_refused(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let order = stream("order");

    let refused = append(&store, &order, ExpectedVersion::Any, 0).await;

    assert_eq!(refused, Err(EventStoreError::EmptyAppend));
    assert_eq!(store.head_position().await.unwrap(), 0);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_refused_multi_event_append_leaves_nothing_behind(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let order = stream("order");
    append(&store, &order, ExpectedVersion::Any, 1)
        .await
        .unwrap();

    let refused = append(&store, &order, ExpectedVersion::Exact(5), 3).await;

    assert!(refused.is_err());
    assert_eq!(store.read_stream(&order, 0).await.unwrap().len(), 1);
    assert_eq!(read_everything(&store).await.len(), 1);
    assert_eq!(store.head_position().await.unwrap(), 1);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn positions_stay_dense_after_a_refused_append(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let (order, account) = (stream("order"), stream("account"));
    append(&store, &order, ExpectedVersion::Any, 1)
        .await
        .unwrap();
    append(&store, &order, ExpectedVersion::NoStream, 3)
        .await
        .unwrap_err();

    let next = append(&store, &account, ExpectedVersion::Any, 1).await;

    assert_eq!(next.unwrap().global_position, 2);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn positions_stay_dense_after_an_append_fails_past_allocating_them(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let (order, account) = (stream("order"), stream("account"));
    let first = request(&order, ExpectedVersion::Any, 1);
    let duplicate_id = first.events[0].event_id;
    store.append(first).await.unwrap();
    // A reused event id fails on insert, in the statement that already moved the head counter.
    let mut reused = request(&account, ExpectedVersion::Any, 2);
    reused.events[1].event_id = duplicate_id;

    let failed = store.append(reused).await;
    let next = append(&store, &account, ExpectedVersion::NoStream, 1).await;

    assert!(
        matches!(failed, Err(EventStoreError::Backend(_))),
        "{failed:?}"
    );
    assert_eq!(next.unwrap().global_position, 2);
    assert_eq!(store.head_position().await.unwrap(), 2);
}
