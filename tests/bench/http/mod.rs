//! The workloads that drive release `strata-web` (with its projector) from another process
//! with `wrk`, as clients use it: `http` (reads and commands on orders), `http-commands`
//! (deposits, without then with idempotency keys) and `http-contended` (deposits on few
//! accounts, the server retrying the races it loses). Latencies and rates are wrk's.

mod server;

use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{Map, Value, json};
use strata_application::metrics::{COMMAND_CONTENTION_TOTAL, COMMAND_RETRIES_TOTAL};
use strata_tests::bench_text::{Mix, Summary, counter_sum, wrk_script};
use uuid::Uuid;

use crate::stats::Latencies;
use crate::storage::Fresh;
use crate::workloads::Measured;
use server::Server;

/// Orders the `http` workload reads and writes.
const HTTP_ORDERS: usize = 500;
/// Accounts `http-commands` deposits on: many, so that commands seldom race.
pub const COMMAND_ACCOUNTS: usize = 1_000;
/// Accounts `http-contended` deposits on: few for 64 connections, so that commands race.
pub const CONTENDED_ACCOUNTS: usize = 100;

/// `http`: `seconds` of `wrk` with `connections` connections: 80% `GET /v1/orders/{id}`, 20%
/// `AddItem` commands, over orders placed beforehand; also the server's RSS.
pub async fn http(fresh: &Fresh, connections: usize, seconds: u64) -> anyhow::Result<Measured> {
    let server = Server::start(fresh, true).await?;
    eprintln!("  http: placing {HTTP_ORDERS} orders");
    let mut ids = Vec::with_capacity(HTTP_ORDERS);
    for n in 0..HTTP_ORDERS {
        let body = json!({
            "customerId": format!("customer-{}", n % 100),
            "currency": "EUR",
            "items": [{ "productId": "sku-0", "quantity": 1, "unitPriceCents": 100 }],
            "shippingAddress": "1 Main Street",
        });
        ids.push(server.create("/v1/orders", &body, "orderId").await?);
    }
    let rss_before = server.memory_mib("VmRSS")?;
    let script = wrk_script(Mix::ReadMostly, &ids, &server.token, "");
    let summary = server.wrk(&script, connections, seconds).await?;
    let extra = fields([
        ("mix", json!("80% GET /v1/orders/{id}, 20% AddItem")),
        ("orders", json!(HTTP_ORDERS)),
        ("rss_before_mib", json!(rss_before)),
    ]);
    measured(&server, &summary, extra)
}

/// `http-commands` (on [`COMMAND_ACCOUNTS`]) and `http-contended` (on [`CONTENDED_ACCOUNTS`]):
/// `seconds` of `wrk` posting deposits of 1 cent on `accounts` accounts opened beforehand,
/// with a unique `Idempotency-Key` each if `keys`, never with `If-Match` (the server retries
/// the races it loses). Also the answers by status and the server's retries and contentions.
/// `projector`: the projection workers run in `strata-web`'s process (else nobody projects).
pub async fn deposits(
    fresh: &Fresh,
    accounts: usize,
    keys: bool,
    projector: bool,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Measured> {
    let server = Server::start(fresh, projector).await?;
    eprintln!("  http: opening {accounts} accounts");
    let server_ref = &server;
    let ids: Vec<String> = futures::stream::iter(0..accounts)
        .map(|n| async move {
            let body = json!({ "ownerCustomerId": format!("customer-{n}"), "currency": "EUR" });
            server_ref.create("/v1/accounts", &body, "accountId").await
        })
        .buffered(16)
        .try_collect()
        .await?;
    let prefix = format!("bench-{}", Uuid::new_v4().simple());
    let script = wrk_script(Mix::Deposits { keys }, &ids, &server.token, &prefix);
    let summary = server.wrk(&script, connections, seconds).await?;
    let metrics = server.metrics().await?;
    let retries = counter_sum(&metrics, COMMAND_RETRIES_TOTAL).map_err(anyhow::Error::msg)?;
    let contention = counter_sum(&metrics, COMMAND_CONTENTION_TOTAL).map_err(anyhow::Error::msg)?;
    let statuses: Map<String, Value> = summary
        .statuses
        .iter()
        .map(|(status, count)| (status.to_string(), json!(count)))
        .collect();
    #[allow(clippy::cast_precision_loss)] // counts are far below 2^52
    let per_request = retries as f64 / (summary.requests.max(1) as f64);
    let extra = fields([
        ("mix", json!("100% POST /v1/accounts/{id}/deposits")),
        ("accounts", json!(accounts)),
        ("keys", json!(keys)),
        (
            "projector",
            json!(if projector { "in-process" } else { "off" }),
        ),
        ("statuses", Value::Object(statuses)),
        ("retries", json!(retries)),
        (
            "retries_per_request",
            json!((per_request * 10_000.0).round() / 10_000.0),
        ),
        ("contention", json!(contention)),
    ]);
    measured(&server, &summary, extra)
}

/// The figures of one wrk run, with the fields every HTTP workload reports.
fn measured(
    server: &Server,
    summary: &Summary,
    mut extra: Map<String, Value>,
) -> anyhow::Result<Measured> {
    extra.extend(fields([
        ("generator", json!("wrk -t 2")),
        ("non_2xx", json!(summary.non_2xx)),
        ("socket_errors", json!(summary.socket_errors)),
        ("peak_rss_mib", json!(server.memory_mib("VmHWM")?)),
    ]));
    // wrk reports the percentiles, not each request: the two, as two samples, print as
    // themselves (nearest rank of 50% and 99% of two).
    let mut latencies = Latencies::default();
    latencies.record(Duration::from_micros(summary.p50_us));
    latencies.record(Duration::from_micros(summary.p99_us));
    Ok(Measured {
        ops: summary.requests,
        elapsed: Duration::from_micros(summary.duration_us),
        latencies,
        extra,
    })
}

/// A workload's own output fields, from their names and values.
fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}
