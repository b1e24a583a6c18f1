//! Concurrent writers: the expected-version check is exact, and versions and positions stay
//! dense and unique whatever the interleaving.

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use strata_adapters_postgres::PgEventStore;
use strata_ports::{EventStore, EventStoreError, ExpectedVersion};
use tokio::sync::Barrier;

use crate::helpers::{append, read_everything, stream};

const WRITERS: usize = 16;

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn only_one_of_many_concurrent_writers_at_the_same_version_succeeds(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = options
        .max_connections(WRITERS as u32)
        .connect_with(connect)
        .await
        .unwrap();
    let store = PgEventStore::new(pool);
    let order = stream("order");
    append(&store, &order, ExpectedVersion::NoStream, 1)
        .await
        .unwrap();
    let start = Arc::new(Barrier::new(WRITERS));

    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, order, start) = (store.clone(), order.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                append(&store, &order, ExpectedVersion::Exact(1), 2).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for writer in writers {
        results.push(writer.await.unwrap());
    }

    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_eq!(winners[0].stream_version, 3);
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        // Every loser waited for the winner's commit, so each reports the winner's version.
        assert_eq!(
            refused,
            &EventStoreError::WrongExpectedVersion {
                stream_id: order.clone(),
                expected: ExpectedVersion::Exact(1),
                actual: 3,
            }
        );
    }
    assert_eq!(read_everything(&store).await.len(), 3);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn concurrent_appends_to_many_streams_get_dense_unique_versions_and_positions(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    const STREAMS: usize = 8;
    const APPENDS_PER_STREAM: usize = 8;
    const EVENTS_PER_APPEND: u64 = 2;
    let pool = options
        .max_connections(WRITERS as u32)
        .connect_with(connect)
        .await
        .unwrap();
    let store = PgEventStore::new(pool);
    let streams: Vec<_> = (0..STREAMS).map(|_| stream("account")).collect();
    let start = Arc::new(Barrier::new(STREAMS * APPENDS_PER_STREAM));

    let writers: Vec<_> = streams
        .iter()
        .flat_map(|s| std::iter::repeat_n(s.clone(), APPENDS_PER_STREAM))
        .map(|s| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                append(&store, &s, ExpectedVersion::Any, EVENTS_PER_APPEND).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for writer in writers {
        outcomes.push(writer.await.unwrap().unwrap());
    }

    let total = (STREAMS * APPENDS_PER_STREAM) as u64 * EVENTS_PER_APPEND;
    let log = read_everything(&store).await;
    let positions: Vec<u64> = log.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, (1..=total).collect::<Vec<_>>());
    let mut versions: BTreeMap<_, Vec<u64>> = BTreeMap::new();
    for event in &log {
        versions
            .entry(event.stream_id.clone())
            .or_default()
            .push(event.stream_version);
    }
    let per_stream = APPENDS_PER_STREAM as u64 * EVENTS_PER_APPEND;
    assert_eq!(versions.len(), STREAMS);
    for stream_versions in versions.values() {
        assert_eq!(stream_versions, &(1..=per_stream).collect::<Vec<_>>());
    }
    // Each append's events are one block, in the stream and in the log.
    let mut last_positions: Vec<u64> = outcomes.iter().map(|o| o.global_position).collect();
    last_positions.sort_unstable();
    let expected: Vec<u64> = (1..=total / EVENTS_PER_APPEND)
        .map(|n| n * EVENTS_PER_APPEND)
        .collect();
    assert_eq!(last_positions, expected);
    for pair in log.chunks(EVENTS_PER_APPEND as usize) {
        assert_eq!(pair[0].stream_id, pair[1].stream_id);
        assert_eq!(pair[0].stream_version + 1, pair[1].stream_version);
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn the_unique_stream_version_constraint_turns_a_missed_lock_into_a_conflict(pool: PgPool) {
    // Arrange: make the stream row, which the lock protocol trusts, lag behind the event table,
    // as a bug in the protocol (or a hand edit) would. Only the unique (stream, version)
    // constraint still stands between the next append and a second event at version 1.
    let store = PgEventStore::new(pool.clone());
    let order = stream("order");
    append(&store, &order, ExpectedVersion::NoStream, 1)
        .await
        .unwrap();
    sqlx::query("UPDATE streams SET version = 0 WHERE stream_id = $1")
        .bind(order.as_str())
        .execute(&pool)
        .await
        .unwrap();

    // Act
    let refused = append(&store, &order, ExpectedVersion::Exact(0), 1).await;

    // Assert: a version conflict, not a backend failure, and nothing of it was kept.
    assert!(
        matches!(
            refused,
            Err(EventStoreError::WrongExpectedVersion { actual: 0, .. })
        ),
        "{refused:?}"
    );
    assert_eq!(read_everything(&store).await.len(), 1);
    assert_eq!(store.head_position().await.unwrap(), 1);
}
