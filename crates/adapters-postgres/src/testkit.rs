//! For test suites (feature `testkit`): what the server says about its sessions.
#![allow(clippy::expect_used, clippy::missing_panics_doc)]

use std::time::Duration;

use sqlx::PgPool;

/// Waits until `count` sessions of the pool's database are blocked on a lock, as the server
/// itself reports it. Tests use it to know that a writer is parked behind a held transaction
/// instead of guessing with a sleep; it panics after ten seconds, which in the tests that use
/// it means the writers were never made to wait.
pub async fn wait_for_lock_waiters(pool: &PgPool, count: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .expect("cannot read pg_stat_activity");
        if waiting >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {count} sessions waiting on a lock, saw {waiting}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
