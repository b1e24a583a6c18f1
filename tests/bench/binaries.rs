//! The workloads that run Strata's own binaries, as deployed: `rebuild` runs
//! `strata-projector rebuild`, `http` runs `strata-web` (with its projector) under `wrk`.
//! `cargo xtask bench` builds both in release mode beside this harness.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Map, Value, json};
use strata_ports::ProjectionName;
use strata_web::auth::{Claims, JwtKeys};
use uuid::Uuid;

use crate::stats::Latencies;
use crate::storage::Fresh;
use crate::workloads::{Measured, seed_orders};

/// A release binary of the workspace, built beside this harness (`target/release`).
fn release_binary(name: &str) -> anyhow::Result<PathBuf> {
    let harness = std::env::current_exe().context("cannot find the harness")?;
    let dir = harness
        .parent()
        .and_then(|deps| deps.parent())
        .context("the harness is not in a target directory")?;
    let binary = dir.join(name);
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing: run the benchmark through `cargo xtask bench`, which builds it",
        binary.display()
    );
    Ok(binary)
}

/// `rebuild`: `strata-projector rebuild orders` over `events` events (orders of 20) written
/// beforehand; one op is one event, the latency is the whole rebuild's.
pub async fn rebuild(fresh: &Fresh, events: u64) -> anyhow::Result<Measured> {
    seed_orders(fresh, events, 20, 8).await?;
    let binary = release_binary("strata-projector")?;
    let url = fresh.url.clone();
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .args(["rebuild", "orders"])
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            // Its progress lines go to stderr with ours; stdout stays the figures'.
            .stdout(Stdio::null())
            .status()
    })
    .await?
    .context("cannot run strata-projector")?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        status.success(),
        "strata-projector rebuild failed: {status}"
    );
    let position = fresh.models.position(ProjectionName::Orders).await?;
    anyhow::ensure!(
        position == events,
        "the rebuilt projection is at {position}, not {events}"
    );
    let mut latencies = Latencies::default();
    latencies.record(elapsed);
    let mut extra = Map::new();
    extra.insert("events_per_order".to_owned(), json!(20));
    extra.insert("latency_of".to_owned(), json!("rebuild"));
    Ok(Measured {
        ops: events,
        elapsed,
        latencies,
        extra,
    })
}

/// A server process that is killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// A figure of `/proc/PID/status` in MiB (`VmHWM`: peak resident set; `VmRSS`: now).
    fn memory_mib(&self, field: &str) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in /proc status"))?;
        Ok((kib / 1024.0 * 10.0).round() / 10.0)
    }
}

/// Orders the `http` workload reads and writes.
const HTTP_ORDERS: usize = 500;

/// `http`: `strata-web` with its projector under `wrk` from another process for `seconds`
/// with `connections` connections: 80% `GET /v1/orders/{id}`, 20% `AddItem` commands, over
/// orders placed beforehand. Latencies and rates are wrk's; the peak RSS is the server's.
pub async fn http(fresh: &Fresh, connections: usize, seconds: u64) -> anyhow::Result<Measured> {
    let wrk = which("wrk").context(
        "the http workload drives the server with wrk: install it (Debian: apt-get install wrk)",
    )?;
    let binary = release_binary("strata-web")?;
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    let secret = format!(
        "bench-{}-{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    );
    let server = Server(
        Command::new(binary)
            .env("DATABASE_URL", &fresh.url)
            .env("STRATA_HTTP_ADDR", addr.to_string())
            .env("STRATA_JWT_SECRET", &secret)
            .env("STRATA_WITH_PROJECTOR", "true")
            // wrk sends every request with one token: the per-principal limits would measure
            // themselves (the cost of the layers is measured with them on, set high).
            .env("STRATA_RATE_LIMIT_COMMANDS", "1000000")
            .env("STRATA_RATE_LIMIT_QUERIES", "1000000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start strata-web")?,
    );
    let base = format!("http://{addr}");
    let token = JwtKeys::new(secret.as_bytes()).sign(&Claims {
        sub: "bench".to_owned(),
        role: "operator".to_owned(),
        customer_id: None,
        exp: u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp())? + 3_600,
        iat: None,
        iss: None,
        aud: None,
    })?;
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await?;

    eprintln!("  http: placing {HTTP_ORDERS} orders");
    let mut ids = Vec::with_capacity(HTTP_ORDERS);
    for n in 0..HTTP_ORDERS {
        let answer: Value = client
            .post(format!("{base}/v1/orders"))
            .bearer_auth(&token)
            .json(&json!({
                "customerId": format!("customer-{}", n % 100),
                "currency": "EUR",
                "items": [{ "productId": "sku-0", "quantity": 1, "unitPriceCents": 100 }],
                "shippingAddress": "1 Main Street",
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = answer["orderId"]
            .as_str()
            .with_context(|| format!("no order id in {answer}"))?;
        ids.push(id.to_owned());
    }
    let rss_before = server.memory_mib("VmRSS")?;

    let mut script = tempfile::NamedTempFile::new()?;
    write!(script, "{}", wrk_script(&ids, &token))?;
    eprintln!("  http: wrk, {connections} connections, {seconds} s");
    let output = tokio::task::spawn_blocking({
        let path = script.path().to_owned();
        let connections = connections.max(2).to_string();
        let duration = format!("{seconds}s");
        move || {
            Command::new(wrk)
                .args([
                    "-t",
                    "2",
                    "-c",
                    &connections,
                    "-d",
                    &duration,
                    "--latency",
                    "-s",
                ])
                .arg(path)
                .arg(&base)
                .output()
        }
    })
    .await?
    .context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {text}");
    let peak = server.memory_mib("VmHWM")?;
    drop(server);

    // The script's `done` prints: requests, non-2xx answers, socket errors, p50 and p99 (µs),
    // duration (µs).
    let figures: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("STRATA "))
        .context("wrk printed no summary")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [requests, non_2xx, socket_errors, p50, p99, duration_us] = figures[..] else {
        anyhow::bail!("unexpected wrk summary {figures:?}");
    };
    // wrk reports the percentiles, not each request: the two, as two samples, print as
    // themselves (nearest rank of 50% and 99% of two).
    let mut latencies = Latencies::default();
    latencies.record(Duration::from_micros(p50));
    latencies.record(Duration::from_micros(p99));
    let mut extra = Map::new();
    extra.insert("generator".to_owned(), json!("wrk -t 2"));
    extra.insert(
        "mix".to_owned(),
        json!("80% GET /v1/orders/{id}, 20% AddItem"),
    );
    extra.insert("orders".to_owned(), json!(HTTP_ORDERS));
    extra.insert("non_2xx".to_owned(), json!(non_2xx));
    extra.insert("socket_errors".to_owned(), json!(socket_errors));
    extra.insert("rss_before_mib".to_owned(), json!(rss_before));
    extra.insert("peak_rss_mib".to_owned(), json!(peak));
    Ok(Measured {
        ops: requests,
        elapsed: Duration::from_micros(duration_us),
        latencies,
        extra,
    })
}

/// The wrk script: each request picks one of `ids` at random, 1 in 5 is an `AddItem`.
fn wrk_script(ids: &[String], token: &str) -> String {
    let ids: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    format!(
        r#"local ids = {{ {ids} }}
local auth = "Bearer {token}"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("seed", threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
end
function request()
  local id = ids[math.random(#ids)]
  if math.random(100) <= 20 then
    local body = '{{"productId":"sku-' .. math.random(20) .. '","quantity":1,"unitPriceCents":100}}'
    return wrk.format("POST", "/v1/orders/" .. id .. "/items",
      {{ ["Authorization"] = auth, ["Content-Type"] = "application/json" }}, body)
  end
  return wrk.format("GET", "/v1/orders/" .. id, {{ ["Authorization"] = auth }})
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("STRATA %d %d %d %d %d %d\n", summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99),
    summary.duration))
end
"#,
        ids = ids.join(", ")
    )
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "strata-web did not become ready in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|path| path.is_file())
}
