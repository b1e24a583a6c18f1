//! Two `strata-projector run` processes against one database: only one runs each projection;
//! when it dies (SIGKILL: no clean-up), the other takes over and goes on from the checkpoint.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use sqlx::PgPool;
use support::{Instance, place_order, url_of};

async fn wait_for_checkpoint(pool: &PgPool, position: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reached: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM projection_checkpoints WHERE projection = 'orders'",
        )
        .fetch_optional(pool)
        .await
        .unwrap();
        if reached.unwrap_or(0) >= i64::try_from(position).unwrap() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "orders stayed at {reached:?}, not {position}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_second_instance_waits_and_takes_over_when_the_first_dies(pool: PgPool) {
    let url = url_of(&pool);
    let first_order = place_order(&pool).await;
    let mut first = Instance::start(&url, &["--poll-ms", "50"]);
    first.wait_for_log("lease taken", 3).await;
    wait_for_checkpoint(&pool, first_order).await;

    let second = Instance::start(&url, &["--poll-ms", "50"]);
    second.wait_for_log("another instance runs it", 3).await;
    let held: i64 =
        // This database's only: tests running beside this one hold leases of their own.
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        held, 3,
        "one lease per projection, all held by the first instance"
    );
    assert_eq!(second.logged("lease taken"), 0);
    // Only lease holders LISTEN: a standby's unread notifications would pin the server's queue.
    let listening: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        listening, 3,
        "one listener per running projection, none for the standby"
    );

    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let later_order = place_order(&pool).await;

    second.wait_for_log("lease taken", 3).await;
    wait_for_checkpoint(&pool, later_order).await;
    let summaries: i64 = sqlx::query_scalar("SELECT count(*) FROM order_summaries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(summaries, 2);
}
