//! The peer harness of `cargo xtask bench --peer`: Strata's `append` and `load-1000` workloads
//! (tests/bench/workloads.rs) on cqrs-es + postgres-es, each on a fresh PostgreSQL database,
//! one JSON line per workload on stdout in the format of Strata's harness; progress on stderr.

mod order;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateContext, CqrsFramework, EventStore};
use postgres_es::PostgresEventRepository;
use serde_json::{Map, Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Pool, Postgres};

use order::{Order, OrderCommand, line, place};

const WORKLOADS: &[&str] = &["append", "load-1000"];

/// Commands per order in `append`: its `PlaceOrder`, then 20 `AddItem`s (as Strata's harness).
const COMMANDS_PER_ORDER: u64 = 21;

/// The two tables of postgres-es's db/init.sql (its view table is not needed here).
const SCHEMA: &[&str] = &[
    "CREATE TABLE events (
        aggregate_type text NOT NULL,
        aggregate_id text NOT NULL,
        sequence bigint CHECK (sequence >= 0) NOT NULL,
        event_type text NOT NULL,
        event_version text NOT NULL,
        payload json NOT NULL,
        metadata json NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    "CREATE TABLE snapshots (
        aggregate_type text NOT NULL,
        aggregate_id text NOT NULL,
        last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
        current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
        payload json NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))",
];

#[derive(Debug, Parser)]
#[command(
    name = "peer-cqrs-es",
    about = "Strata's workloads on cqrs-es; JSON lines on stdout"
)]
struct Cli {
    /// A workload to run (repeatable): append, load-1000. All by default.
    #[arg(long = "workload", value_name = "W")]
    workloads: Vec<String>,
    /// Concurrent tasks of `append`.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Operations per workload (each has its own default); ignored when `--seconds` is given.
    #[arg(long)]
    ops: Option<u64>,
    /// Run `load-1000` only without (`off`) or only with (`on`) snapshots; both by default.
    #[arg(long, value_name = "off|on", value_parser = clap::builder::BoolishValueParser::new())]
    snapshots: Option<bool>,
    /// Run `append` and `load-1000` for this many seconds instead of a number of operations.
    #[arg(long)]
    seconds: Option<u64>,
    /// PostgreSQL server; each workload gets a new database on it, dropped afterwards.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
}

/// How long a run lasts: a number of operations (split over the tasks) or a time.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Ops(u64),
    For(Duration),
    Until(Instant),
}

impl Budget {
    /// The budget of a measurement starting now (set-up before it does not count).
    fn start(self) -> Self {
        match self {
            Self::For(duration) => Self::Until(Instant::now() + duration),
            other => other,
        }
    }

    fn share(self, task: u64, tasks: u64) -> Self {
        match self {
            Self::Ops(ops) => Self::Ops(ops / tasks + u64::from(task < ops % tasks)),
            until => until,
        }
    }

    fn allows(self, done: u64) -> bool {
        match self {
            Self::Ops(ops) => done < ops,
            Self::Until(deadline) => Instant::now() < deadline,
            // Not started: none, so a forgotten `start` shows as an empty run, not an endless one.
            Self::For(_) => false,
        }
    }
}

struct Measured {
    ops: u64,
    elapsed: Duration,
    latencies: Vec<u64>,
    extra: Map<String, Value>,
}

// The same allocator as Strata's harness (see Cargo.toml).
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
    let chosen: Vec<String> = if cli.workloads.is_empty() {
        WORKLOADS.iter().map(|w| (*w).to_owned()).collect()
    } else {
        cli.workloads.clone()
    };
    for workload in &chosen {
        anyhow::ensure!(
            WORKLOADS.contains(&workload.as_str()),
            "no workload {workload:?} (known: {})",
            WORKLOADS.join(", ")
        );
    }
    anyhow::ensure!(cli.concurrency >= 1, "--concurrency must be at least 1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        for workload in &chosen {
            let runs: Vec<(usize, Option<bool>)> = match workload.as_str() {
                "load-1000" => [false, true]
                    .into_iter()
                    .filter(|on| cli.snapshots.is_none_or(|chosen| chosen == *on))
                    .map(|on| (1, Some(on)))
                    .collect(),
                _ => vec![(cli.concurrency, None)],
            };
            for (concurrency, snapshots) in runs {
                eprintln!("peer: {workload} (concurrency {concurrency}, snapshots {snapshots:?})");
                let fresh = Fresh::create(&cli.database_url, concurrency).await?;
                let measured = match snapshots {
                    None => {
                        append(
                            &fresh.pool,
                            concurrency,
                            budget(&cli, default_append_ops(concurrency)),
                        )
                        .await
                    }
                    Some(snapshots) => load(&fresh.pool, 1_000, snapshots, budget(&cli, 500)).await,
                };
                let removed = fresh.remove().await;
                let measured = measured?;
                removed.context("cannot drop the benchmark's database")?;
                println!("{}", output(workload, concurrency, measured)?);
            }
        }
        Ok(())
    })
}

/// Strata's harness's defaults for `append`.
fn default_append_ops(concurrency: usize) -> u64 {
    let c = u64::try_from(concurrency).unwrap_or(u64::MAX);
    (750 * c).max(3_000)
}

fn budget(cli: &Cli, default_ops: u64) -> Budget {
    match cli.seconds {
        Some(seconds) => Budget::For(Duration::from_secs(seconds)),
        None => Budget::Ops(cli.ops.unwrap_or(default_ops)),
    }
}

/// A new database with postgres-es's tables, dropped by [`Fresh::remove`].
struct Fresh {
    pool: Pool<Postgres>,
    server: Pool<Postgres>,
    database: String,
}

impl Fresh {
    async fn create(server_url: &str, tasks: usize) -> anyhow::Result<Self> {
        let server = PgPoolOptions::new()
            .max_connections(1)
            .connect(server_url)
            .await
            .with_context(|| format!("cannot connect to {server_url}"))?;
        let database = format!("peer_bench_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&server)
            .await?;
        let (base, _) = server_url
            .rsplit_once('/')
            .context("DATABASE_URL has no database part")?;
        // Every task gets a connection, as in Strata's harness.
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(tasks + 4)?.max(8))
            .connect(&format!("{base}/{database}"))
            .await?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        Ok(Self {
            pool,
            server,
            database,
        })
    }

    async fn remove(self) -> anyhow::Result<()> {
        self.pool.close().await;
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.database))
            .execute(&self.server)
            .await?;
        Ok(())
    }
}

/// `append`: each task works on its own fresh orders, a `PlaceOrder` then 20 `AddItem`s; every
/// command loads its order from its events and appends one event.
async fn append(
    pool: &Pool<Postgres>,
    concurrency: usize,
    budget: Budget,
) -> anyhow::Result<Measured> {
    let cqrs = Arc::new(postgres_es::postgres_cqrs::<Order>(
        pool.clone(),
        vec![],
        (),
    ));
    let tasks = u64::try_from(concurrency)?;
    let started = Instant::now();
    let budget = budget.start();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (cqrs, budget) = (cqrs.clone(), budget.share(task, tasks));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut order = String::new();
                let mut n = 0;
                while budget.allows(n) {
                    let command = if n % COMMANDS_PER_ORDER == 0 {
                        order = uuid::Uuid::now_v7().to_string();
                        place(n)
                    } else {
                        OrderCommand::AddItem(line(n))
                    };
                    let begun = Instant::now();
                    cqrs.execute(&order, command)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    latencies.push(micros(begun.elapsed()));
                    n += 1;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await??);
    }
    Ok(Measured {
        ops: u64::try_from(latencies.len())?,
        elapsed: started.elapsed(),
        latencies,
        extra: Map::new(),
    })
}

/// `load-N`: loads of one order of `length` events, from its events or, with `snapshots`, from
/// postgres-es's snapshot taken at its last event. Checks that both give the same state.
async fn load(
    pool: &Pool<Postgres>,
    length: usize,
    snapshots: bool,
    budget: Budget,
) -> anyhow::Result<Measured> {
    let id = uuid::Uuid::now_v7().to_string();
    // Seeded through commands: with a snapshot every `length` events, the last command writes
    // the only snapshot, at the order's last event (as Strata's harness does).
    let writer: CqrsFramework<Order, _> = CqrsFramework::new(
        PersistedEventStore::new_snapshot_store(PostgresEventRepository::new(pool.clone()), length),
        vec![],
        (),
    );
    writer
        .execute(&id, place(0))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for n in 1..u64::try_from(length)? {
        writer
            .execute(&id, OrderCommand::AddItem(line(n)))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let replayed = load_state(
        &PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone())),
        &id,
    )
    .await?;
    let through_snapshot = load_state(
        &PersistedEventStore::new_snapshot_store(
            PostgresEventRepository::new(pool.clone()),
            length,
        ),
        &id,
    )
    .await?;
    anyhow::ensure!(
        replayed.items.len() == length,
        "replay gave {} items",
        replayed.items.len()
    );
    let equal = replayed == through_snapshot;
    if !equal {
        eprintln!(
            "peer: WRONG: the order loaded through its snapshot has {} items, its {length} events give {}",
            through_snapshot.items.len(),
            replayed.items.len()
        );
    }
    let store = if snapshots {
        PersistedEventStore::new_snapshot_store(PostgresEventRepository::new(pool.clone()), length)
    } else {
        PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()))
    };
    let started = Instant::now();
    let budget = budget.start();
    // On a worker of the runtime, as Strata's harness loads.
    let latencies = tokio::spawn(async move {
        let mut latencies = Vec::new();
        while budget.allows(u64::try_from(latencies.len())?) {
            let begun = Instant::now();
            let loaded = load_state(&store, &id).await?;
            latencies.push(micros(begun.elapsed()));
            anyhow::ensure!(loaded.placed, "loaded an order never placed");
        }
        anyhow::Ok(latencies)
    })
    .await??;
    let mut extra = Map::new();
    extra.insert("events".to_owned(), json!(length));
    extra.insert("snapshots".to_owned(), json!(snapshots));
    extra.insert("snapshot_equals_replay".to_owned(), json!(equal));
    extra.insert(
        "items_through_snapshot".to_owned(),
        json!(through_snapshot.items.len()),
    );
    Ok(Measured {
        ops: u64::try_from(latencies.len())?,
        elapsed: started.elapsed(),
        latencies,
        extra,
    })
}

async fn load_state<R: cqrs_es::persist::PersistedEventRepository>(
    store: &PersistedEventStore<R, Order>,
    id: &str,
) -> anyhow::Result<Order> {
    let mut context = store
        .load_aggregate(id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(std::mem::take(context.aggregate()))
}

fn micros(took: Duration) -> u64 {
    u64::try_from(took.as_micros()).unwrap_or(u64::MAX)
}

/// The latency below which `percent` of the operations fall (nearest rank, as Strata's harness).
fn percentile(sorted: &[u64], percent: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() as u64 * percent).div_ceil(100).max(1);
    sorted[usize::try_from(rank - 1).unwrap_or(0).min(sorted.len() - 1)]
}

/// One line in the format of Strata's harness: its fields, in its order, then the workload's.
#[derive(serde::Serialize)]
struct Line<'a> {
    system: &'a str,
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

fn output(workload: &str, concurrency: usize, mut measured: Measured) -> anyhow::Result<String> {
    measured.latencies.sort_unstable();
    let seconds = measured.elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)] // op counts are far below 2^52
    let ops_per_sec = if seconds > 0.0 {
        measured.ops as f64 / seconds
    } else {
        0.0
    };
    let line = Line {
        system: "cqrs-es 0.5.0",
        workload,
        storage: "postgres",
        concurrency,
        ops: measured.ops,
        seconds: (seconds * 1000.0).round() / 1000.0,
        ops_per_sec: (ops_per_sec * 10.0).round() / 10.0,
        p50_us: percentile(&measured.latencies, 50),
        p99_us: percentile(&measured.latencies, 99),
        extra: measured.extra,
    };
    Ok(serde_json::to_string(&line)?)
}
