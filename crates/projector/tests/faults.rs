//! `strata-projector run` killed with SIGKILL in the middle of its catch-up, then started
//! again: the read models it finishes with are exactly those a rebuild from the start of the
//! log gives, so no event was lost or applied twice across the kill.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use sqlx::PgPool;
use support::log::{added, append, order_stream, placed};
use support::{Instance, url_of};

const ORDERS: usize = 400;
/// Items added to each order after it is placed: five events per order.
const ADDS: u32 = 4;

/// The rows of a read-model table, as JSON text in a stable order.
async fn rows(pool: &PgPool, table: &str) -> Vec<String> {
    let sql = format!("SELECT to_jsonb(t)::text AS row FROM {table} t ORDER BY 1");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn checkpoints(pool: &PgPool) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT projection, position FROM projection_checkpoints ORDER BY 1")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Writes the log, by eight writers at once: every order placed, then items added round after
/// round, so that each batch of the catch-up touches many orders, and a customer has several.
async fn write_log(pool: &PgPool) -> i64 {
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let streams: Vec<_> = (0..ORDERS / 8).map(|_| order_stream()).collect();
                for (n, stream) in streams.iter().enumerate() {
                    let customer = format!("customer-{writer}-{}", n % 5);
                    append(&pool, stream, &[placed(&customer, "sku-0", 1, 100)]).await;
                }
                for round in 1..=ADDS {
                    for stream in &streams {
                        append(&pool, stream, &[added(&format!("sku-{round}"), round, 10)]).await;
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_projector_killed_mid_catch_up_resumes_to_exactly_what_a_rebuild_gives(pool: PgPool) {
    let url = url_of(&pool);
    let head = write_log(&pool).await;
    let args = ["--batch-size", "10", "--poll-ms", "50"];

    let mut first = Instance::start(&url, &args);
    // Killed as soon as a few batches are in: the catch-up has a hundred more to go.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = checkpoints(&pool).await;
        if done.iter().any(|(name, at)| name == "orders" && *at >= 30) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no batch: {done:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let at_kill = checkpoints(&pool).await;
    assert!(
        at_kill.iter().any(|(_, at)| *at < head),
        "killed after the catch-up ended: {at_kill:?} of {head}"
    );

    eprintln!("killed at checkpoints {at_kill:?} of {head}");

    let second = Instance::start(&url, &args);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = checkpoints(&pool).await;
        if now.len() == 3 && now.iter().all(|(_, at)| *at == head) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck at {now:?} of {head}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(second);
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(dead, 0, "no event parked");
    let tables = ["order_summaries", "customer_stats", "order_search"];
    let mut resumed = Vec::new();
    for table in tables {
        resumed.push(rows(&pool, table).await);
    }
    // Each order counted once per customer, whatever batch the kill cut.
    let counted: Vec<(String, i64)> =
        sqlx::query_as("SELECT customer_id, order_count FROM customer_stats ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    let placed: Vec<(String, i64)> = sqlx::query_as(
        "SELECT data->>'customerId', count(*) FROM events \
         WHERE event_type = 'OrderPlaced' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(counted, placed);

    for projection in ["orders", "search"] {
        let rebuilt = Command::new(env!("CARGO_BIN_EXE_strata-projector"))
            .args(["--database-url", &url, "rebuild", projection])
            .env("RUST_LOG", "warn")
            .env_remove("ELASTICSEARCH_URL")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            rebuilt.status.success(),
            "{}",
            String::from_utf8_lossy(&rebuilt.stderr)
        );
    }
    for (table, resumed) in tables.into_iter().zip(resumed) {
        let rebuilt = rows(&pool, table).await;
        assert_eq!(rebuilt.len(), resumed.len(), "{table}");
        for (resumed, rebuilt) in resumed.iter().zip(&rebuilt) {
            assert_eq!(resumed, rebuilt, "{table}: resumed, then rebuilt");
        }
    }
}
