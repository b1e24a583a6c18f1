//! Idempotency races only PostgreSQL can stage (the conformance suite has the rest): a claim
//! held by a transaction still open, refused by the primary key without a gap.

use sqlx::PgPool;
use strata_adapters_postgres::{PgEventStore, append_in};
use strata_ports::{EventStore, EventStoreError, ExpectedVersion};

use crate::helpers::{append, claiming, read_everything, request, stream, wait_for_lock_waiters};

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_racing_claim_of_the_same_key_is_refused_by_the_primary_key_without_a_gap(pool: PgPool) {
    // Arrange: A claims the key in a transaction it keeps open, so B's look-up of the key finds
    // nothing and only the primary key can stop B once A commits.
    let store = PgEventStore::new(pool.clone());
    let (a_stream, b_stream) = (stream("order"), stream("order"));
    let mut held = pool.begin().await.unwrap();
    append_in(
        &mut held,
        &claiming(request(&a_stream, ExpectedVersion::Any, 1), "alice", "k"),
    )
    .await
    .unwrap();
    let b = tokio::spawn({
        let (store, b_stream) = (store.clone(), b_stream.clone());
        async move {
            store
                .append(claiming(
                    request(&b_stream, ExpectedVersion::Any, 2),
                    "alice",
                    "k",
                ))
                .await
        }
    });
    wait_for_lock_waiters(&pool, 1).await;

    // Act
    held.commit().await.unwrap();
    let refused = b.await.unwrap();
    let next = append(&store, &stream("account"), ExpectedVersion::Any, 1).await;

    // Assert: B left nothing, not even a hole in the positions it had allocated.
    assert_eq!(
        refused,
        Err(EventStoreError::IdempotencyKeyTaken { key: "k".into() })
    );
    assert_eq!(next.unwrap().global_position, 2);
    assert!(store.read_stream(&b_stream, 0).await.unwrap().is_empty());
    assert_eq!(read_everything(&store).await.len(), 2);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_retry_racing_its_original_on_the_same_stream_is_refused_as_a_taken_key(pool: PgPool) {
    // Arrange: a client's request and its retry carry the same key and the same expected
    // version of one stream. The original holds its transaction open, so the retry cannot see
    // the key yet and queues behind the stream lock.
    let store = PgEventStore::new(pool.clone());
    let order = stream("order");
    append(&store, &order, ExpectedVersion::NoStream, 1)
        .await
        .unwrap();
    let mut held = pool.begin().await.unwrap();
    append_in(
        &mut held,
        &claiming(request(&order, ExpectedVersion::Exact(1), 1), "alice", "k"),
    )
    .await
    .unwrap();
    let retry = tokio::spawn({
        let (store, order) = (store.clone(), order.clone());
        async move {
            store
                .append(claiming(
                    request(&order, ExpectedVersion::Exact(1), 1),
                    "alice",
                    "k",
                ))
                .await
        }
    });
    wait_for_lock_waiters(&pool, 1).await;

    // Act
    held.commit().await.unwrap();
    let answer = retry.await.unwrap();

    // Assert: the key, not the version, is the verdict, so the caller answers with a replay
    // (a version conflict here would surface as a spurious 412 to the client).
    assert_eq!(
        answer,
        Err(EventStoreError::IdempotencyKeyTaken { key: "k".into() })
    );
    assert_eq!(store.read_stream(&order, 0).await.unwrap().len(), 2);
}
