//! Start-up: the only place of the projector that names concrete adapters.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sqlx::{PgPool, SqlitePool};
use strata_adapters_elastic::{ElasticSettings, EsSearchIndex};
use strata_adapters_postgres::{
    PgEventStore, PgLeases, PgLogWakeups, PgProjectionStore, PgReadModels, PgSearchIndex,
    PgSettings,
};
use strata_adapters_sqlite::{
    SecretUrl, SqliteEventStore, SqliteLeases, SqliteProjectionStore, SqliteReadModels,
    SqliteSearchIndex, SqliteSettings, Storage,
};
use strata_application::StatusService;
use strata_application::projection::{
    self, Projection, ProjectorConfig, WorkerDeps, abandon_rebuild, dlq_retry, dlq_skip, rebuild,
    run_workers,
};
use strata_ports::{EventStore, ProjectionName, ReadModels, SearchIndex, SystemClock};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::follow::{FollowOptions, follow, to_json_line};

/// Command line of `strata-projector`.
#[derive(Debug, Parser)]
#[command(
    name = "strata-projector",
    version,
    about = "Keeps Strata's read models up to date from the event log"
)]
pub struct Cli {
    /// Where the event log and the read models are, as for strata-web: `postgres://…` for
    /// PostgreSQL, `sqlite://PATH` for that SQLite file; without it, SQLite in the data
    /// directory.
    // The value is never shown, in `--help` as in `Debug`: it may carry a password.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<SecretUrl>,
    /// Directory of the embedded SQLite database when no DATABASE_URL is given.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,
    /// Elasticsearch (or OpenSearch) URL of the order search index; without it, the search
    /// projection writes the database's own full-text search.
    #[arg(long, env = "ELASTICSEARCH_URL", global = true, hide_env_values = true)]
    pub elasticsearch_url: Option<SecretUrl>,
    /// Put before the search index's alias and index names (`<prefix>orders`).
    #[arg(
        long,
        env = "STRATA_SEARCH_INDEX_PREFIX",
        default_value = "strata-",
        global = true
    )]
    pub search_index_prefix: String,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the migrations, then run the projections until SIGINT/SIGTERM: catch up from each
    /// checkpoint, then follow the log live (on PostgreSQL woken by LISTEN/NOTIFY, polling as a
    /// fallback; on SQLite polling). A second instance waits and takes over a projection when
    /// the first one dies.
    Run {
        /// Projections to run (all when omitted).
        #[arg(long = "projection", value_name = "NAME")]
        projections: Vec<String>,
        #[command(flatten)]
        tuning: Tuning,
        /// Serve Prometheus metrics at http://ADDR/metrics.
        #[arg(long, env = "STRATA_PROJECTOR_METRICS_ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Print, per projection: checkpoint, head of the log, lag, dead letters and state.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a projection from the start of the log into fresh tables (for `search` on
    /// Elasticsearch, a new index), then swap them in atomically; the live ones keep serving
    /// meanwhile. Run it as the tables' owner.
    Rebuild {
        /// The projection (`orders`, `accounts` or `search`).
        name: String,
        /// Drop what a killed rebuild left behind (its tables, checkpoint and new search index)
        /// instead.
        #[arg(long)]
        abandon: bool,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// Manage events a projection parked after they kept failing.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Print every event after a position as a JSON line on stdout, then keep following.
    Follow {
        /// Start after this global position (0: from the beginning).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Events read per batch.
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
        /// Milliseconds between polls once caught up.
        #[arg(long, default_value_t = 250)]
        poll_ms: u64,
        /// Exit once the head of the log is reached.
        #[arg(long)]
        until_caught_up: bool,
    },
}

/// Dead-letter commands.
#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// List parked events (and the events waiting behind them).
    List {
        /// Only this projection's.
        #[arg(long)]
        projection: Option<String>,
    },
    /// Apply a parked event again, then the events of its stream that waited behind it.
    Retry {
        /// The projection that parked it (`orders`, `accounts` or `search`).
        projection: String,
        /// The parked event's global position, as `dlq list` shows it.
        position: u64,
    },
    /// Drop a parked event for good and apply the events that waited behind it.
    Skip {
        /// The projection that parked it (`orders`, `accounts` or `search`).
        projection: String,
        /// The parked event's global position, as `dlq list` shows it.
        position: u64,
    },
}

/// How a worker paces itself.
#[derive(Debug, Clone, clap::Args)]
pub struct Tuning {
    /// Events per batch (one transaction).
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Milliseconds between polls when no wake-up arrives.
    #[arg(long, default_value_t = 1000)]
    pub poll_ms: u64,
    /// Attempts of a failing event before it is parked.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
}

impl Tuning {
    pub fn config(&self) -> ProjectorConfig {
        ProjectorConfig {
            batch_size: self.batch_size.max(1),
            poll_interval: Duration::from_millis(self.poll_ms.max(1)),
            max_attempts: self.max_attempts.max(1),
            ..ProjectorConfig::default()
        }
    }
}

/// The read side's adapters on one storage, and the search index.
pub struct ReadSide {
    pub deps: WorkerDeps,
    pub status: StatusService,
    pub search: Arc<dyn SearchIndex>,
    /// The SQLite files to checkpoint and close when `run` stops.
    sqlite: Vec<SqlitePool>,
}

impl std::fmt::Debug for ReadSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSide").finish_non_exhaustive()
    }
}

impl ReadSide {
    /// Wires the PostgreSQL adapters of the read side on `pool`, with `search`.
    pub fn on(pool: PgPool, search: Arc<dyn SearchIndex>) -> Self {
        let events: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
        let models: Arc<dyn ReadModels> = Arc::new(PgReadModels::new(pool.clone()));
        let deps = WorkerDeps {
            events: events.clone(),
            store: Arc::new(PgProjectionStore::new(pool.clone())),
            leases: Arc::new(PgLeases::new(pool.clone())),
            clock: Arc::new(SystemClock),
            wakeups: Some(Arc::new(PgLogWakeups::new(pool))),
        };
        let status = StatusService::new(events, models);
        Self {
            deps,
            status,
            search,
            sqlite: Vec::new(),
        }
    }

    /// Wires the SQLite adapters of the read side on `pool`, with `search`. Appends made by
    /// another process wake nobody here: the workers poll.
    pub fn on_sqlite(pool: SqlitePool, search: Arc<dyn SearchIndex>) -> Self {
        let events: Arc<dyn EventStore> = Arc::new(SqliteEventStore::new(pool.clone()));
        let models: Arc<dyn ReadModels> = Arc::new(SqliteReadModels::new(pool.clone()));
        let deps = WorkerDeps {
            events: events.clone(),
            store: Arc::new(SqliteProjectionStore::new(pool.clone())),
            leases: Arc::new(SqliteLeases::new(pool.clone())),
            clock: Arc::new(SystemClock),
            wakeups: None,
        };
        let status = StatusService::new(events, models);
        Self {
            deps,
            status,
            search,
            sqlite: vec![pool],
        }
    }

    /// Every projection, wired to these adapters.
    pub fn projections(&self) -> Vec<Arc<dyn Projection>> {
        projection::all(self.deps.events.clone(), self.search.clone())
    }

    /// The projections named (all when none).
    ///
    /// # Errors
    /// A name that is not a projection.
    pub fn select(&self, names: &[String]) -> anyhow::Result<Vec<Arc<dyn Projection>>> {
        select_projections(self.projections(), names)
    }

    /// The one projection named.
    ///
    /// # Errors
    /// A name that is not a projection.
    pub fn projection(&self, name: &str) -> anyhow::Result<Arc<dyn Projection>> {
        self.select(&[name.to_owned()])?
            .pop()
            .context("no projection")
    }

    /// Runs the workers of `projections` until `stop`.
    pub async fn run(
        &self,
        projections: Vec<Arc<dyn Projection>>,
        config: &ProjectorConfig,
        stop: &watch::Receiver<bool>,
    ) {
        run_workers(&self.deps, projections, config, stop).await;
    }

    /// On SQLite, checkpoints each file's write-ahead log into it and closes it, so that the
    /// file alone holds every commit once no other process uses it (a server still running
    /// keeps the log in use: that is logged as a warning). Nothing to do on PostgreSQL.
    pub async fn close(&self) {
        for pool in &self.sqlite {
            if let Err(error) = strata_adapters_sqlite::close(pool).await {
                tracing::error!(%error, "cannot checkpoint the SQLite database; its -wal file stays");
            }
        }
    }
}

/// The projections of `all` named (all when none), or which name is unknown.
///
/// # Errors
/// A name that is not a projection.
pub fn select_projections(
    all: Vec<Arc<dyn Projection>>,
    names: &[String],
) -> anyhow::Result<Vec<Arc<dyn Projection>>> {
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|name| {
            let name: ProjectionName = name.parse()?;
            all.iter()
                .find(|p| p.name() == name)
                .cloned()
                .with_context(|| format!("no projection {name} in this service"))
        })
        .collect()
}

/// An Elasticsearch index when the flags name a cluster.
///
/// # Errors
/// An Elasticsearch URL that does not parse.
fn elastic_index(cli: &Cli) -> anyhow::Result<Option<Arc<dyn SearchIndex>>> {
    let Some(url) = cli
        .elasticsearch_url
        .as_ref()
        .map(SecretUrl::expose)
        .filter(|u| !u.trim().is_empty())
    else {
        return Ok(None);
    };
    let index = EsSearchIndex::new(&ElasticSettings::for_cluster(url, &cli.search_index_prefix))
        .context("cannot configure the Elasticsearch client")?;
    Ok(Some(Arc::new(index)))
}

/// The storage the command works on, opened.
enum Database {
    Postgres(PgPool),
    Sqlite(SqliteSettings, SqlitePool),
}

impl Database {
    /// Opens the storage the flags name. Only `run` may create a SQLite file; the other
    /// commands read or repair one that exists.
    async fn open(cli: &Cli) -> anyhow::Result<Self> {
        match Storage::resolve(
            cli.database_url.as_ref().map(SecretUrl::expose),
            &cli.data_dir,
        )? {
            Storage::Postgres(url) => {
                let pool = strata_adapters_postgres::connect(&PgSettings {
                    url,
                    max_connections: 8,
                    acquire_timeout: Duration::from_secs(5),
                })
                .await
                .context("cannot connect to PostgreSQL")?;
                Ok(Self::Postgres(pool))
            }
            Storage::Sqlite(path) => {
                if !matches!(cli.command, Command::Run { .. }) && !path.exists() {
                    anyhow::bail!(
                        "no SQLite database at {}: start strata-web (or strata-projector run) \
                         first, or set DATABASE_URL / STRATA_DATA_DIR",
                        path.display()
                    );
                }
                let settings = SqliteSettings::at(&path);
                let pool = strata_adapters_sqlite::connect(&settings)
                    .await
                    .with_context(|| {
                        format!("cannot open the SQLite database {}", path.display())
                    })?;
                Ok(Self::Sqlite(settings, pool))
            }
        }
    }

    async fn is_migrated(&self) -> anyhow::Result<bool> {
        Ok(match self {
            Self::Postgres(pool) => strata_adapters_postgres::is_migrated(pool).await?,
            Self::Sqlite(_, pool) => strata_adapters_sqlite::is_migrated(pool).await?,
        })
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Self::Postgres(pool) => strata_adapters_postgres::migrate(pool).await?,
            Self::Sqlite(_, pool) => strata_adapters_sqlite::migrate(pool).await?,
        }
        Ok(())
    }

    fn events(&self) -> Arc<dyn EventStore> {
        match self {
            Self::Postgres(pool) => Arc::new(PgEventStore::new(pool.clone())),
            Self::Sqlite(_, pool) => Arc::new(SqliteEventStore::new(pool.clone())),
        }
    }

    /// The read side, its search on `elastic` when the flags name a cluster, else on the
    /// database's own full-text search.
    async fn read_side(self, elastic: Option<Arc<dyn SearchIndex>>) -> anyhow::Result<ReadSide> {
        Ok(match self {
            Self::Postgres(pool) => {
                let search = elastic.unwrap_or_else(|| Arc::new(PgSearchIndex::new(pool.clone())));
                ReadSide::on(pool, search)
            }
            Self::Sqlite(settings, pool) => {
                let (search, search_pool) = match elastic {
                    Some(search) => (search, None),
                    None => {
                        let file = strata_adapters_sqlite::connect_search(&settings)
                            .await
                            .context("cannot open the search index's SQLite file")?;
                        let index: Arc<dyn SearchIndex> =
                            Arc::new(SqliteSearchIndex::new(file.clone()));
                        (index, Some(file))
                    }
                };
                let mut side = ReadSide::on_sqlite(pool, search);
                side.sqlite.extend(search_pool);
                side
            }
        })
    }
}

/// Runs the command until done or until SIGINT/SIGTERM.
///
/// # Errors
/// An unreachable database, or a failure of the command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let database = Database::open(&cli).await?;
    // `run` brings the schema up to date; the other commands only read or repair, so they
    // refuse a database whose schema is missing or older than this build.
    if !matches!(cli.command, Command::Run { .. } | Command::Follow { .. })
        && !database.is_migrated().await?
    {
        anyhow::bail!(
            "the database's schema is missing or older than this strata-projector: run \
             `strata-web migrate` (or start `strata-projector run`) first"
        );
    }
    let elastic = elastic_index(&cli)?;
    match cli.command {
        Command::Follow {
            from,
            batch_size,
            poll_ms,
            until_caught_up,
        } => {
            let options = FollowOptions {
                batch_size,
                poll_interval: Duration::from_millis(poll_ms),
                until_caught_up,
            };
            follow_log(database.events().as_ref(), from, options).await
        }
        Command::Run {
            projections,
            tuning,
            metrics_addr,
        } => {
            database.migrate().await.context(
                "cannot apply the migrations (a role that does not own the tables cannot: \
                     run `strata-web migrate` as their owner first)",
            )?;
            let side = database.read_side(elastic).await?;
            let projections = side.select(&projections)?;
            // Created on start if missing; an engine that is down only delays the search
            // projection, which prepares the index again before its first write.
            if let Err(error) = side.search.prepare().await {
                tracing::warn!(%error, "the search index is not ready; the search projection waits for it");
            }
            let stop = stop_on_signal().context("cannot install the signal handlers")?;
            if let Some(addr) = metrics_addr {
                crate::metrics::serve(addr, side.status.clone(), stop.clone())
                    .await
                    .context("cannot serve the metrics")?;
            }
            side.run(projections, &tuning.config(), &stop).await;
            side.close().await;
            Ok(())
        }
        Command::Status { json } => {
            let side = database.read_side(elastic).await?;
            let statuses = side.status.statuses(OffsetDateTime::now_utc()).await?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", crate::report::statuses_json(&statuses))?;
            } else {
                write!(out, "{}", crate::report::statuses_table(&statuses))?;
            }
            Ok(())
        }
        Command::Rebuild {
            name,
            abandon,
            tuning,
        } => {
            let side = database.read_side(elastic).await?;
            let projection = side.projection(&name)?;
            if abandon {
                abandon_rebuild(&side.deps, projection.as_ref()).await?;
                println!("dropped the unfinished rebuild of {name}, if any");
                return Ok(());
            }
            let stop = stop_on_signal().context("cannot install the signal handlers")?;
            let mut progress = crate::report::RebuildBar::new(projection.name());
            let swapped = rebuild(&side.deps, projection, tuning.config(), &stop, &mut |p| {
                progress.update(p)
            })
            .await?;
            progress.finish(swapped);
            if swapped {
                Ok(())
            } else {
                anyhow::bail!("rebuild of {name} interrupted; the live tables are unchanged")
            }
        }
        Command::Dlq { action } => dlq(&database.read_side(elastic).await?, action).await,
    }
}

/// Prints the log as JSON lines from `from` until caught up (if asked) or SIGINT/SIGTERM.
async fn follow_log(
    events: &dyn EventStore,
    from: u64,
    options: FollowOptions,
) -> anyhow::Result<()> {
    let stop = stop_on_signal().context("cannot install the signal handlers")?;
    let mut out = std::io::stdout();
    let last = follow(events, from, options, stop, &mut |event| {
        writeln!(out, "{}", to_json_line(event))
    })
    .await?;
    tracing::info!(last_position = last, "stopped following");
    Ok(())
}

async fn dlq(side: &ReadSide, action: DlqAction) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match action {
        DlqAction::List { projection } => {
            let projection = match &projection {
                Some(name) => Some(side.projection(name)?.name()),
                None => None,
            };
            let letters = side.deps.store.dead_letters(projection).await?;
            write!(out, "{}", crate::report::dead_letters_table(&letters))?;
        }
        DlqAction::Retry {
            projection,
            position,
        } => {
            let projection = side.projection(&projection)?;
            let outcome = dlq_retry(&side.deps, projection.as_ref(), position).await?;
            writeln!(
                out,
                "applied {} event(s); parked again {}",
                outcome.applied, outcome.parked_again
            )?;
        }
        DlqAction::Skip {
            projection,
            position,
        } => {
            let projection = side.projection(&projection)?;
            let outcome = dlq_skip(&side.deps, projection.as_ref(), position).await?;
            writeln!(
                out,
                "skipped position {position}; applied {} event(s); parked again {}",
                outcome.applied, outcome.parked_again
            )?;
        }
    }
    Ok(())
}

/// A stop flag that turns true on SIGINT or SIGTERM (Ctrl-C where there are no Unix signals).
///
/// The handlers are installed before this returns, so a signal that arrives while catching up
/// stops the follower cleanly instead of killing it mid-batch, and a failure to install them is
/// reported rather than leaving a follower that only a SIGKILL stops.
pub fn stop_on_signal() -> std::io::Result<watch::Receiver<bool>> {
    let (stop_tx, stop) = watch::channel(false);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
            tracing::info!(signal = name, "stopping");
            let _ = stop_tx.send(true);
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        match tokio::signal::ctrl_c().await {
            Ok(()) => {
                tracing::info!(signal = "ctrl-c", "stopping");
                let _ = stop_tx.send(true);
            }
            Err(error) => {
                // A dropped sender means stop: keep it, so the follower goes on without a handler.
                tracing::error!(%error, "cannot listen for ctrl-c");
                std::future::pending::<()>().await;
                drop(stop_tx);
            }
        }
    });
    Ok(stop)
}
