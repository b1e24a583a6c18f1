//! The backstop under the lock: the unique stream version turns a missed lock into a conflict.
//! The conformance suite has the concurrent writers.

use sqlx::PgPool;
use strata_adapters_postgres::PgEventStore;
use strata_ports::{EventStore, EventStoreError, ExpectedVersion};

use crate::helpers::{append, read_everything, stream};

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
