//! The checks after a fault: what the clients saw, the log, resends, and the read models.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::load::{Ack, Load, Sent};
use crate::support::Server;

/// Asserts what every fault must leave intact: no client saw an answer it must never get;
/// every acknowledged command is in the log exactly once, where its acknowledgement says; the
/// log's positions are dense and every stream's versions contiguous; each command sent again
/// with its key gets its original acknowledgement; the order summaries converge to the log.
pub async fn assert_intact(load: &Load, server: &Server, database_url: &str) {
    let seen = std::mem::take(&mut *load.seen.lock().expect("seen"));
    assert!(
        seen.violations.is_empty(),
        "clients saw answers they must never get:\n{}\nserver log:\n{}",
        seen.violations.join("\n"),
        server.log()
    );
    let pool = PgPool::connect(database_url)
        .await
        .expect("the server's database");
    assert_log(&pool, &seen.acks).await;

    for (sent, original) in &seen.acks {
        let again = load.send_until_acked(sent).await;
        assert_eq!(again, *original, "{} sent again", sent.key);
    }
    let replays = std::mem::take(&mut *load.seen.lock().expect("seen"));
    assert!(replays.violations.is_empty(), "{:?}", replays.violations);
    // Sending every command again appended nothing.
    assert_log(&pool, &seen.acks).await;
    pool.close().await;
    assert_read_models_converge(load, &seen.acks).await;
}

async fn assert_log(pool: &PgPool, acks: &[(Sent, Ack)]) {
    let (count, first, last): (i64, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT count(*), min(global_position), max(global_position) FROM events")
            .fetch_one(pool)
            .await
            .expect("count events");
    assert_eq!(
        (first, last),
        (Some(1), Some(count)),
        "positions dense from 1"
    );
    let gaps: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT stream_id, count(*), max(stream_version) FROM events GROUP BY stream_id \
         HAVING count(*) <> max(stream_version) OR min(stream_version) <> 1",
    )
    .fetch_all(pool)
    .await
    .expect("stream versions");
    assert!(
        gaps.is_empty(),
        "streams with versions not contiguous: {gaps:?}"
    );

    let rows: Vec<(Option<String>, String, i64, i64)> = sqlx::query_as(
        "SELECT metadata->>'idempotencyKey', stream_id, stream_version, global_position \
         FROM events ORDER BY global_position",
    )
    .fetch_all(pool)
    .await
    .expect("events");
    let mut by_key: BTreeMap<String, Vec<(String, u64, u64)>> = BTreeMap::new();
    for (key, stream, version, position) in rows {
        let key = key.unwrap_or_else(|| format!("(no key) at {position}"));
        let at = (
            stream,
            version.try_into().expect("version"),
            position.try_into().expect("pos"),
        );
        by_key.entry(key).or_default().push(at);
    }
    let acked: BTreeSet<&str> = acks.iter().map(|(sent, _)| sent.key.as_str()).collect();
    let logged: BTreeSet<&str> = by_key.keys().map(String::as_str).collect();
    assert_eq!(
        logged, acked,
        "the log holds exactly the acknowledged commands"
    );
    for (sent, ack) in acks {
        let expected = vec![(format!("order-{}", ack.order_id), ack.version, ack.position)];
        assert_eq!(by_key[&sent.key], expected, "{} in the log", sent.key);
    }
}

/// Each order's summary, read at the head of the log, is the order the log folds to.
async fn assert_read_models_converge(load: &Load, acks: &[(Sent, Ack)]) {
    let head = acks
        .iter()
        .map(|(_, ack)| ack.position)
        .max()
        .expect("some acks");
    let mut orders: BTreeMap<Uuid, usize> = BTreeMap::new();
    for (_, ack) in acks {
        *orders.entry(ack.order_id).or_default() += 1;
    }
    let base = &load.base;
    for (order, commands) in orders {
        let summary = get(load, &format!("{base}/v1/orders/{order}"), Some(head)).await;
        let state = get(load, &format!("{base}/v1/orders/{order}/state"), None).await;
        for field in [
            "orderId",
            "customerId",
            "status",
            "items",
            "totalCents",
            "currency",
            "version",
        ] {
            assert_eq!(summary[field], state[field], "{field} of order {order}");
        }
        // Each acknowledged command of the order added one line (a product of its own) and
        // one version, neither more nor less.
        let lines = state["items"].as_array().map_or(0, Vec::len);
        assert_eq!(
            (lines, state["version"].as_u64()),
            (commands, Some(commands as u64))
        );
    }
}

async fn get(load: &Load, url: &str, min_position: Option<u64>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut request = load.client.get(url).bearer_auth(&load.token);
        if let Some(position) = min_position {
            request = request.header("X-Min-Position", position.to_string());
        }
        let response = request.send().await.expect("query answered");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            200 => return body,
            // Not caught up yet: the contract says retry.
            503 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            _ => panic!("GET {url}: {status} {body}"),
        }
    }
}
