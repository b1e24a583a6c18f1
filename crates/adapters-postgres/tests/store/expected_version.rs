//! What only PostgreSQL can show of optimistic concurrency (the conformance suite has the rest):
//! positions stay dense when an append fails after taking them.

use sqlx::PgPool;
use strata_adapters_postgres::PgEventStore;
use strata_ports::{EventStore, EventStoreError, ExpectedVersion};

use crate::helpers::{append, request, stream};

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
