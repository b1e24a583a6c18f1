//! Strata's own binaries, as deployed: where the release builds are, and `rebuild`, which runs
//! `strata-projector rebuild` (the HTTP workloads, which run `strata-web`, are in `http/`).
//! `cargo xtask bench` builds both in release mode beside this harness.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use serde_json::{Map, json};
use strata_ports::ProjectionName;

use crate::stats::Latencies;
use crate::storage::Fresh;
use crate::workloads::{Measured, seed_orders};

/// A release binary of the workspace, built beside this harness (`target/release`).
pub fn release_binary(name: &str) -> anyhow::Result<PathBuf> {
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
