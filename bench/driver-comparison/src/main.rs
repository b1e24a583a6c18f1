//! Driver comparison: appends/s and latency of Strata's append transaction through the sqlx
//! adapter, hand-written on sqlx and on tokio-postgres/deadpool (statement by statement,
//! pipelined, one statement), and through pgbench, each run on a fresh migrated database,
//! interleaved, repeated. With `--group-statement` or `--projection-write` it times instead the
//! statements the adapter runs since group commit (decision 0010) on both drivers and binary COPY.
//! What it measured: docs/decisions/0003-sqlx-as-the-only-postgres-driver.md.

mod appenders;
mod checks;
mod group_statement;
mod pgbench;
mod projection_write;
mod report;
mod stream_read;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use strata_ports::{AppendRequest, ExpectedVersion, Metadata, NewEvent, StreamId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::appenders::{AppendError, Appender};
use crate::checks::{check_conflict_rolls_back, verify_log};
use crate::pgbench::Pgbench;
use crate::report::{Sample, print_summary};

#[derive(Debug, Parser)]
#[command(about = "Compare PostgreSQL drivers on Strata's append transaction")]
struct Args {
    /// The server, without a database name (trust auth or a password in the url).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    server: String,
    /// The scratch database, dropped and re-created before every run.
    #[arg(long, default_value = "strata_driver_bench")]
    database: String,
    /// Timed appends (one event each) per run.
    #[arg(long, default_value_t = 10_000)]
    appends: usize,
    /// Concurrent tasks (and pool connections, and pgbench clients).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// Runs of every (variant, concurrency).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sqlx-adapter,sqlx-adapter-no-ping,sqlx-folded,tp-folded,tp-pipelined,sqlx-one-statement,tp-one-statement,pgbench-seq,pgbench-pipelined"
    )]
    variants: Vec<Variant>,
    /// Streams each task appends to in turn (each task owns its streams, so no append conflicts).
    #[arg(long, default_value_t = 8)]
    streams_per_task: usize,
    /// Untimed appends per task before the timed ones (connections, prepared statements).
    #[arg(long, default_value_t = 20)]
    warmup_per_task: usize,
    #[arg(long, default_value = "pgbench")]
    pgbench: PathBuf,
    /// Instead of the variants: time the adapter's group-commit statement (decision 0010) on one
    /// connection per driver, sqlx against tokio-postgres, with groups of these sizes.
    #[arg(long, value_delimiter = ',')]
    group_statement: Vec<usize>,
    /// Calls per run with `--group-statement`.
    #[arg(long, default_value_t = 2_000)]
    calls: usize,
    /// Instead of the variants: time the projection write path (order-summary rows upserted in
    /// one transaction per batch) through sqlx, tokio-postgres and tokio-postgres's binary COPY,
    /// with batches of these sizes.
    #[arg(long, value_delimiter = ',')]
    projection_write: Vec<usize>,
    /// Rows per run with `--projection-write`.
    #[arg(long, default_value_t = 50_000)]
    rows: usize,
    /// Instead of the variants: time reads of a whole stream of this many events, the adapter's
    /// `read_stream` against tokio-postgres decoding the same envelope.
    #[arg(long)]
    stream_read: Option<usize>,
    /// Reads per run with `--stream-read`.
    #[arg(long, default_value_t = 500)]
    reads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Variant {
    /// `PgEventStore::append` on the pool `strata_adapters_postgres::connect` makes.
    SqlxAdapter,
    /// `PgEventStore::append` on a pool that does not ping before handing out a connection.
    SqlxAdapterNoPing,
    /// sqlx, the update folded into the insert statement: BEGIN, lock, append, COMMIT.
    SqlxFolded,
    /// tokio-postgres + deadpool, the same statements as `sqlx-folded`, one at a time.
    TpFolded,
    /// tokio-postgres + deadpool: [BEGIN, lock] then [append, COMMIT], each pair pipelined.
    TpPipelined,
    /// sqlx, the whole append (check included) in one autocommit statement.
    SqlxOneStatement,
    /// tokio-postgres + deadpool, the same one statement.
    TpOneStatement,
    /// pgbench, the adapter's statements one at a time.
    PgbenchSeq,
    /// pgbench, the whole transaction in one pipeline.
    PgbenchPipelined,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Self::SqlxAdapter => "sqlx-adapter",
            Self::SqlxAdapterNoPing => "sqlx-adapter-no-ping",
            Self::SqlxFolded => "sqlx-folded",
            Self::TpFolded => "tp-folded",
            Self::TpPipelined => "tp-pipelined",
            Self::SqlxOneStatement => "sqlx-one-statement",
            Self::TpOneStatement => "tp-one-statement",
            Self::PgbenchSeq => "pgbench-seq",
            Self::PgbenchPipelined => "pgbench-pipelined",
        }
    }

    /// Client-server round trips per successful one-event append (no idempotency claim).
    fn round_trips(self) -> &'static str {
        match self {
            Self::SqlxAdapter => "6 (ping, BEGIN, lock, update, insert, COMMIT)",
            Self::SqlxAdapterNoPing | Self::PgbenchSeq => "5 (BEGIN, lock, update, insert, COMMIT)",
            Self::SqlxFolded | Self::TpFolded => "4 (BEGIN, lock, update+insert, COMMIT)",
            Self::TpPipelined => "2 ([BEGIN, lock], [update+insert, COMMIT])",
            Self::SqlxOneStatement | Self::TpOneStatement => {
                "1 (one autocommit statement, check in SQL)"
            }
            Self::PgbenchPipelined => "1 (all five statements pipelined, no client check)",
        }
    }

    fn is_pgbench(self) -> bool {
        matches!(self, Self::PgbenchSeq | Self::PgbenchPipelined)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.concurrency.iter().all(|&c| c >= 1),
        "concurrency must be at least 1"
    );
    ensure!(
        args.streams_per_task >= 1,
        "streams per task must be at least 1"
    );
    let server: tokio_postgres::Config = args.server.parse().context("parsing --server")?;
    let admin_url = format!("{}/postgres", args.server.trim_end_matches('/'));
    let bench_url = format!("{}/{}", args.server.trim_end_matches('/'), args.database);

    let mut admin = PgConnection::connect(&admin_url).await?;
    print_machine(&mut admin).await?;

    let work_dir = std::env::temp_dir().join(format!("strata-driver-bench-{}", std::process::id()));
    let pgbench = Pgbench {
        program: args.pgbench.clone(),
        host: match server.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".into(),
        },
        port: server.get_ports().first().copied().unwrap_or(5432),
        user: server.get_user().unwrap_or("postgres").to_owned(),
        work_dir: work_dir.clone(),
    };

    if let Some(length) = args.stream_read {
        stream_read::run(
            &mut admin,
            &args.database,
            &bench_url,
            length,
            args.reads,
            args.repeats,
        )
        .await?;
        print_machine_load();
        return Ok(());
    }
    if !args.projection_write.is_empty() {
        projection_write::run(
            &mut admin,
            &args.database,
            &bench_url,
            &args.projection_write,
            args.rows,
            args.repeats,
        )
        .await?;
        print_machine_load();
        return Ok(());
    }
    if !args.group_statement.is_empty() {
        group_statement::run(
            &mut admin,
            &args.database,
            &bench_url,
            &args.group_statement,
            args.calls,
            args.repeats,
        )
        .await?;
        print_machine_load();
        return Ok(());
    }
    println!(
        "appends per run: {}, concurrency: {:?}, repeats: {}, streams per task: {}, warm-up per task: {}",
        args.appends, args.concurrency, args.repeats, args.streams_per_task, args.warmup_per_task
    );
    println!("\nrun  variant                  C  appends/s    p50 µs   p99 µs");
    let mut samples: BTreeMap<(usize, Variant), Vec<Sample>> = BTreeMap::new();
    // Interleaved: every repeat runs every configuration once, so drift in the machine's load
    // spreads over all of them instead of landing on one.
    for repeat in 1..=args.repeats {
        for &c in &args.concurrency {
            for &variant in &args.variants {
                fresh_database(&mut admin, &args.database, &bench_url).await?;
                let sample = if variant.is_pgbench() {
                    let sample = pgbench
                        .run(variant, &args.database, c, args.appends)
                        .await?;
                    verify_log(&bench_url, None).await?;
                    sample
                } else {
                    run_client(&args, variant, &bench_url, c).await?
                };
                println!(
                    "{repeat:>3}  {:<22} {c:>3}  {:>9.0}  {:>8}  {:>7}",
                    variant.name(),
                    sample.per_second,
                    sample.p50_us,
                    sample.p99_us
                );
                samples.entry((c, variant)).or_default().push(sample);
            }
        }
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        args.database
    )))
    .execute(&mut admin)
    .await?;
    if work_dir.exists() {
        std::fs::remove_dir_all(&work_dir)?;
    }
    print_machine_load();
    print_summary(&samples);
    Ok(())
}

async fn print_machine(admin: &mut PgConnection) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("cores: {cores}");
    for setting in [
        "server_version",
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
        "full_page_writes",
        "commit_delay",
        "shared_buffers",
        "max_wal_size",
    ] {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(&mut *admin)
            .await?;
        println!("{setting}: {value}");
    }
    print_machine_load();
    Ok(())
}

fn print_machine_load() {
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average: {}", load.trim());
    }
}

/// Drops and re-creates the scratch database, migrates it, and checkpoints so that no run
/// starts with another run's dirty pages to write.
async fn fresh_database(admin: &mut PgConnection, name: &str, url: &str) -> anyhow::Result<()> {
    ensure!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "database name must be lower-case letters, digits and underscores"
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut *admin)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut *admin)
        .await?;
    let pool = sqlx::PgPool::connect(url).await?;
    strata_adapters_postgres::migrate(&pool).await?;
    pool.close().await;
    sqlx::query("CHECKPOINT").execute(&mut *admin).await?;
    Ok(())
}

/// One task's streams and what it believes their versions are.
struct Streams {
    ids: Vec<StreamId>,
    versions: Vec<u64>,
    next: usize,
}

impl Streams {
    fn new(count: usize) -> Self {
        Self {
            ids: (0..count)
                .map(|_| StreamId::new("bench", Uuid::new_v4()))
                .collect(),
            versions: vec![0; count],
            next: 0,
        }
    }

    /// Appends one event to the next stream in turn, expecting its exact version.
    async fn append_next(&mut self, appender: &Appender) -> anyhow::Result<()> {
        let i = self.next;
        self.next = (i + 1) % self.ids.len();
        let request = request(&self.ids[i], ExpectedVersion::Exact(self.versions[i]));
        match appender.append(request).await {
            Ok(outcome) => {
                ensure!(
                    outcome.stream_version == self.versions[i] + 1,
                    "stream {} landed at version {}, expected {}",
                    self.ids[i],
                    outcome.stream_version,
                    self.versions[i] + 1
                );
                self.versions[i] = outcome.stream_version;
                Ok(())
            }
            Err(AppendError::Conflict { actual }) => {
                bail!(
                    "unexpected conflict on {}: stream is at {actual}",
                    self.ids[i]
                )
            }
            Err(AppendError::Failed(error)) => Err(error),
        }
    }
}

pub fn request(stream: &StreamId, expected: ExpectedVersion) -> AppendRequest {
    let correlation = Uuid::new_v4().to_string();
    AppendRequest {
        stream_id: stream.clone(),
        expected,
        events: vec![NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "BenchEventRecorded".into(),
            schema_version: 1,
            data: json!({"amount": 42, "currency": "EUR", "note": "driver comparison"}),
            metadata: Metadata {
                correlation_id: Some(correlation),
                ..Metadata::default()
            },
            recorded_at: OffsetDateTime::now_utc(),
        }],
        idempotency: None,
    }
}

/// One run of a client-side variant: conflict check, warm-up, timed appends, log verification.
async fn run_client(
    args: &Args,
    variant: Variant,
    url: &str,
    concurrency: usize,
) -> anyhow::Result<Sample> {
    let appender = Arc::new(Appender::open(variant, url, concurrency).await?);
    let conflict_events = check_conflict_rolls_back(&appender, url).await?;

    // Warm-up: opens the pool's connections and prepares the statements on each.
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let appender = Arc::clone(&appender);
        let mut streams = Streams::new(args.streams_per_task);
        let warmup = args.warmup_per_task;
        tasks.push(tokio::spawn(async move {
            for _ in 0..warmup {
                streams.append_next(&appender).await?;
            }
            anyhow::Ok(streams)
        }));
    }
    let mut warmed = Vec::new();
    for task in tasks {
        warmed.push(task.await??);
    }

    // Timed: the appends are split evenly over the tasks.
    let per_task = args.appends.div_ceil(concurrency);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut streams in warmed {
        let appender = Arc::clone(&appender);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                streams.append_next(&appender).await?;
                latencies.push(micros(t.elapsed()));
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(per_task * concurrency);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();

    if let Ok(appender) = Arc::try_unwrap(appender) {
        appender.close().await;
    }
    let expected = conflict_events + (args.warmup_per_task + per_task) * concurrency;
    verify_log(url, Some(u64::try_from(expected)?)).await?;
    let per_second = latencies.len() as f64 / elapsed.as_secs_f64();
    Ok(Sample::new(per_second, &mut latencies))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
