//! The guarantee readers rely on: positions follow commit order, so reading "after my
//! checkpoint" never skips an event, whatever order concurrent writers commit in.

use sqlx::PgPool;
use strata_adapters_postgres::{PgEventStore, append_in};
use strata_ports::{EventStore, ExpectedVersion};

use crate::helpers::{Reader, request, stream, wait_for_lock_waiters};

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_reader_gets_every_event_once_in_order_while_an_earlier_append_commits_last(
    pool: PgPool,
) {
    // Arrange: writer A runs the real append SQL in a transaction it keeps open.
    let store = PgEventStore::new(pool.clone());
    let mut reader = Reader::new();
    let mut held = pool.begin().await.unwrap();
    let a = append_in(
        &mut held,
        &request(&stream("order"), ExpectedVersion::Any, 1),
    )
    .await
    .unwrap();
    let b = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .append(request(&stream("account"), ExpectedVersion::Any, 1))
                .await
        }
    });
    let c = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .append(request(&stream("order"), ExpectedVersion::Any, 1))
                .await
        }
    });

    // Act and assert, while A is open: the server reports the later writers waiting on a
    // lock (one session when they were grouped into one transaction, two otherwise; with
    // positions from a sequence they would not wait, and this would time out), and a reader
    // sees nothing yet: A's position 1 is not committed, and nothing above it can be.
    wait_for_lock_waiters(&pool, 1).await;
    assert!(!b.is_finished(), "writer B finished while A was open");
    assert!(!c.is_finished(), "writer C finished while A was open");
    let seen_while_open = reader.catch_up(&store).await;
    assert_eq!(
        seen_while_open,
        0,
        "read while A was open: {:?}",
        reader.positions()
    );

    // Act: A commits, then B and C complete; the reader continues from its checkpoint.
    held.commit().await.unwrap();
    let b = b.await.unwrap().unwrap();
    let c = c.await.unwrap().unwrap();
    reader.catch_up(&store).await;

    // Assert: every event exactly once, in position order, positions 1..=3, A first.
    assert_eq!(reader.positions(), [1, 2, 3]);
    assert_eq!(a.global_position, 1);
    let mut later = [b.global_position, c.global_position];
    later.sort_unstable();
    assert_eq!(later, [2, 3]);
    assert_eq!(store.head_position().await.unwrap(), 3);
}
