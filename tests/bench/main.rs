//! `cargo xtask bench`: Strata's workloads against a fresh storage each, through the
//! application layer and the real adapters. One JSON line per workload on stdout, nothing
//! else there; progress on stderr. Figures and how to read them: `docs/performance.md`.

mod binaries;
mod budget;
mod http;
mod live;
mod publish;
mod stats;
mod storage;
mod workloads;

use std::path::Path;

use anyhow::Context;
use clap::Parser;
use serde_json::{Map, Value};
use strata_application::projection::{ProjectorConfig, PublisherProjection};
use strata_wiring::Storage;

use budget::Budget;
use storage::Fresh;
use workloads::Measured;

/// The workloads this harness runs, in the order it runs them.
const WORKLOADS: &[&str] = &[
    "append",
    "append-contended",
    "load-1000",
    "load-10000",
    "project",
    "rebuild",
    "lag",
    "publish",
    "publish-lag",
    "http",
    "http-commands",
    "http-contended",
];

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Strata's benchmark workloads; JSON lines on stdout"
)]
struct Cli {
    /// A workload to run (repeatable); all by default.
    #[arg(long = "workload", value_name = "W")]
    workloads: Vec<String>,
    /// Concurrent tasks of `append` and `append-contended`; connections of the `http`
    /// workloads. 8 by default; 64 for `http-commands` and `http-contended`.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Operations per workload (each workload has its own default).
    #[arg(long)]
    ops: Option<u64>,
    /// PostgreSQL server (each workload gets a new database on it) or `sqlite://PATH` (each
    /// workload gets a new file in PATH's directory).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Events per batch of the `project` and `publish` workloads (by default the projector's:
    /// 500 for a read model, 2,000 for the publisher).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Commands per second of the `lag` and `publish-lag` workloads.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// How long the `http` workloads keep the load on, in seconds (10 by default); given, it also makes
    /// `append` and the loads run for that long instead of a number of operations.
    #[arg(long)]
    seconds: Option<u64>,
    /// `append` sends every command with a unique `Idempotency-Key`, as a careful client does.
    #[arg(long)]
    with_keys: bool,
    /// Run the loads only without (`off`) or only with (`on`) snapshots; both by default.
    #[arg(long, value_name = "off|on", value_parser = clap::builder::BoolishValueParser::new())]
    snapshots: Option<bool>,
    /// Whether `strata-web` runs the projection workers in its own process in the deposit
    /// workloads (`on`, the default, as `cargo xtask dev` runs it), or alone (`off`, as
    /// deployed in production, beside a `strata-projector` elsewhere). `http` reads what the
    /// projector writes: it always has it.
    #[arg(
        long,
        value_name = "off|on",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value = "on",
        action = clap::ArgAction::Set
    )]
    projector: bool,
    /// What `cargo bench` passes to every bench target; nothing to do with it here.
    #[arg(long, hide = true)]
    bench: bool,
}

// The binaries' allocator (decision 0017): the harness runs their code in-process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let storage = Storage::resolve(Some(&cli.database_url), Path::new("."))?;
    let chosen: Vec<String> = if cli.workloads.is_empty() {
        WORKLOADS.iter().map(|w| (*w).to_owned()).collect()
    } else {
        cli.workloads.clone()
    };
    for workload in &chosen {
        if !WORKLOADS.contains(&workload.as_str()) {
            anyhow::bail!("no workload {workload:?} (known: {})", WORKLOADS.join(", "));
        }
    }
    anyhow::ensure!(
        cli.concurrency.is_none_or(|c| c >= 1),
        "--concurrency must be at least 1"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        for workload in &chosen {
            for line in run_workload(&cli, &storage, workload).await? {
                println!("{line}");
            }
        }
        Ok(())
    })
}

/// Runs one workload (twice for the loads: without and with snapshots; twice for
/// `http-commands`: without and with idempotency keys); its output lines.
async fn run_workload(cli: &Cli, storage: &Storage, workload: &str) -> anyhow::Result<Vec<String>> {
    let c = cli.concurrency.unwrap_or(match workload {
        // As the issue measured them: `wrk -c64`.
        "http-commands" | "http-contended" => 64,
        _ => 8,
    });
    let c_u64 = u64::try_from(c)?;
    let seconds = cli.seconds.unwrap_or(10);
    let mut lines = Vec::new();
    // Requests per second of `http-commands` without and with keys, for their ratio.
    let mut rates = Vec::new();
    // The flag: snapshots of the loads, keys of `http-commands`.
    let runs: Vec<(usize, Option<bool>)> = match workload {
        "load-1000" | "load-10000" => [false, true]
            .into_iter()
            .filter(|on| cli.snapshots.is_none_or(|chosen| chosen == *on))
            .map(|on| (1, Some(on)))
            .collect(),
        "http-commands" => vec![(c, Some(false)), (c, Some(true))],
        "project" | "rebuild" | "lag" | "publish" | "publish-lag" => vec![(1, None)],
        _ => vec![(c, None)],
    };
    for (concurrency, snapshots) in runs {
        // Every task gets a connection, and the projector and the reader of `lag` theirs.
        let tasks = if workload == "lag" || workload == "publish-lag" {
            live::LANES
        } else {
            concurrency
        };
        let connections = u32::try_from(tasks + 4)?.max(8);
        eprintln!(
            "bench: {workload} (concurrency {concurrency}{}) on a fresh storage",
            match (workload, snapshots) {
                ("http-commands", Some(true)) => ", keys on",
                ("http-commands", Some(false)) => ", keys off",
                (_, Some(true)) => ", snapshots on",
                (_, Some(false)) => ", snapshots off",
                (_, None) => "",
            }
        );
        let fresh = Fresh::create(storage, connections).await?;
        let kind = fresh.kind;
        let measured = match (workload, snapshots) {
            ("append", _) => {
                let ops = cli.ops.unwrap_or((750 * c_u64).max(3_000));
                workloads::append(&fresh, concurrency, budget(cli, ops), cli.with_keys).await
            }
            ("append-contended", _) => {
                let ops = cli.ops.unwrap_or((750 * c_u64).max(3_000));
                workloads::append_contended(&fresh, concurrency, ops).await
            }
            ("load-1000", Some(snapshots)) => {
                let budget = budget(cli, cli.ops.unwrap_or(500));
                workloads::load(&fresh, 1_000, snapshots, budget).await
            }
            ("load-10000", Some(snapshots)) => {
                let ops = cli.ops.unwrap_or(if snapshots { 1_000 } else { 50 });
                workloads::load(&fresh, 10_000, snapshots, budget(cli, ops)).await
            }
            ("project", _) => {
                let batch = cli
                    .batch_size
                    .unwrap_or(ProjectorConfig::default().batch_size);
                workloads::project(&fresh, cli.ops.unwrap_or(100_000), batch).await
            }
            ("rebuild", _) => binaries::rebuild(&fresh, cli.ops.unwrap_or(1_000_000)).await,
            ("lag", _) => live::lag(&fresh, cli.rate, cli.ops.unwrap_or(10 * cli.rate)).await,
            ("publish", _) => {
                let batch = cli
                    .batch_size
                    .unwrap_or(PublisherProjection::DEFAULT_BATCH_SIZE);
                publish::publish(&fresh, cli.ops.unwrap_or(100_000), batch).await
            }
            ("publish-lag", _) => {
                publish::publish_lag(&fresh, cli.rate, cli.ops.unwrap_or(10 * cli.rate)).await
            }
            ("http-commands", Some(keys)) => {
                let accounts = http::COMMAND_ACCOUNTS;
                http::deposits(&fresh, accounts, keys, cli.projector, concurrency, seconds).await
            }
            ("http-contended", _) => {
                let accounts = http::CONTENDED_ACCOUNTS;
                http::deposits(&fresh, accounts, false, cli.projector, concurrency, seconds).await
            }
            _ => http::http(&fresh, concurrency, seconds).await,
        };
        let removed = fresh.remove().await;
        let measured = measured?;
        removed.context("cannot remove the benchmark's storage")?;
        rates.push(rate(&measured));
        let line = output(workload, kind, concurrency, measured)?;
        eprintln!("bench: {workload}: {line}");
        lines.push(line);
    }
    if let ("http-commands", &[without, with]) = (workload, &rates[..]) {
        let ratio = if without > 0.0 { with / without } else { 0.0 };
        eprintln!(
            "bench: http-commands: with keys {with:.1} requests/s, without {without:.1}: {:.1}% of the load without keys",
            ratio * 100.0
        );
    }
    Ok(lines)
}

/// `--seconds` if given, else `ops` operations.
fn budget(cli: &Cli, ops: u64) -> Budget {
    match cli.seconds {
        Some(seconds) => Budget::For(std::time::Duration::from_secs(seconds)),
        None => Budget::Ops(ops),
    }
}

/// One output line: the contract's fields first, in the contract's order, then the
/// workload's own.
#[derive(serde::Serialize)]
struct Line<'a> {
    system: String,
    workload: &'a str,
    storage: &'a str,
    concurrency: usize,
    ops: u64,
    seconds: f64,
    ops_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// Operations per second of a run.
fn rate(measured: &Measured) -> f64 {
    let seconds = measured.elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)] // op counts are far below 2^52
    if seconds > 0.0 {
        measured.ops as f64 / seconds
    } else {
        0.0
    }
}

fn output(
    workload: &str,
    storage: &str,
    concurrency: usize,
    mut measured: Measured,
) -> anyhow::Result<String> {
    let seconds = measured.elapsed.as_secs_f64();
    let ops_per_sec = rate(&measured);
    let line = Line {
        system: format!("strata {}", env!("CARGO_PKG_VERSION")),
        workload,
        storage,
        concurrency,
        ops: measured.ops,
        seconds: (seconds * 1000.0).round() / 1000.0,
        ops_per_sec: (ops_per_sec * 10.0).round() / 10.0,
        p50_us: measured.latencies.percentile(50),
        p99_us: measured.latencies.percentile(99),
        extra: std::mem::take(&mut measured.extra),
    };
    Ok(serde_json::to_string(&line)?)
}
