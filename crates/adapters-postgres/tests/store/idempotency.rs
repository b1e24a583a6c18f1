//! Idempotency claims: recorded with the events, atomically, once per (principal, key).

use sqlx::PgPool;
use strata_adapters_postgres::{PgEventStore, append_in};
use strata_ports::{EventStore, EventStoreError, ExpectedVersion, IdempotencyRecord};

use crate::helpers::{append, claiming, read_everything, request, stream, wait_for_lock_waiters};

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn an_append_with_a_claim_stores_its_idempotency_record(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let (account, order) = (stream("account"), stream("order"));
    append(&store, &account, ExpectedVersion::Any, 2)
        .await
        .unwrap();

    let outcome = store
        .append(claiming(
            request(&order, ExpectedVersion::NoStream, 3),
            "alice",
            "key-1",
        ))
        .await
        .unwrap();

    let record = store.find_idempotency("alice", "key-1").await.unwrap();
    assert_eq!(
        record,
        Some(IdempotencyRecord {
            principal: "alice".into(),
            key: "key-1".into(),
            fingerprint: "POST /orders key-1".into(),
            stream_id: order,
            stream_version: outcome.stream_version,
            global_position: outcome.global_position,
        })
    );
    assert_eq!((outcome.stream_version, outcome.global_position), (3, 5));
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn an_unused_key_has_no_record(pool: PgPool) {
    let store = PgEventStore::new(pool);

    let record = store.find_idempotency("alice", "never-used").await.unwrap();

    assert_eq!(record, None);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_second_append_with_the_same_key_is_refused_and_appends_nothing(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let (first, second) = (stream("order"), stream("order"));
    store
        .append(claiming(
            request(&first, ExpectedVersion::Any, 1),
            "alice",
            "k",
        ))
        .await
        .unwrap();

    let refused = store
        .append(claiming(
            request(&second, ExpectedVersion::Any, 2),
            "alice",
            "k",
        ))
        .await;

    assert_eq!(
        refused,
        Err(EventStoreError::IdempotencyKeyTaken { key: "k".into() })
    );
    assert!(store.read_stream(&second, 0).await.unwrap().is_empty());
    assert_eq!(store.head_position().await.unwrap(), 1);
    let record = store.find_idempotency("alice", "k").await.unwrap().unwrap();
    assert_eq!(record.stream_id, first);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn the_same_key_for_another_principal_is_accepted(pool: PgPool) {
    let store = PgEventStore::new(pool);
    store
        .append(claiming(
            request(&stream("order"), ExpectedVersion::Any, 1),
            "alice",
            "k",
        ))
        .await
        .unwrap();

    let bobs = store
        .append(claiming(
            request(&stream("order"), ExpectedVersion::Any, 1),
            "bob",
            "k",
        ))
        .await;

    assert_eq!(bobs.unwrap().global_position, 2);
    let record = store.find_idempotency("bob", "k").await.unwrap().unwrap();
    assert_eq!(record.global_position, 2);
}

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
