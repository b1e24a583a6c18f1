//! Start-up of `strata-projector`: opens the storage its flags name through `strata-wiring`,
//! then runs the command on the read side's ports: the workers, the status, a rebuild, the
//! dead letters, or following the log.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strata_application::StatusService;
use strata_application::projection::{
    self, Projection, abandon_rebuild, dlq_retry, dlq_skip, rebuild, run_workers,
};
use strata_ports::{EventPublisher, EventStore, ProjectionName, SearchIndex};
use strata_wiring::{Backend, Database, SecretUrl, Storage};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::follow::{FollowOptions, follow, to_json_line};
use crate::settings::{Cli, Command, DlqAction, NatsFlags};

/// Connections per database pool: the workers of every projection, or one operator's command.
const MAX_CONNECTIONS: u32 = 8;

/// Every projection, wired to the read side of `backend`, and the publisher when there is a
/// broker.
fn projections(
    backend: &Backend,
    publisher: Option<Arc<dyn EventPublisher>>,
) -> Vec<Arc<dyn Projection>> {
    projection::all(
        backend.workers.events.clone(),
        backend.stores.search.clone(),
        publisher,
    )
}

/// The projections named (all when none).
///
/// # Errors
/// A name that is not a projection.
fn select(
    backend: &Backend,
    publisher: Option<Arc<dyn EventPublisher>>,
    names: &[String],
) -> anyhow::Result<Vec<Arc<dyn Projection>>> {
    select_projections(projections(backend, publisher), names)
}

/// The one projection named.
///
/// # Errors
/// A name that is not a projection.
fn select_one(
    backend: &Backend,
    publisher: Option<Arc<dyn EventPublisher>>,
    name: &str,
) -> anyhow::Result<Arc<dyn Projection>> {
    select(backend, publisher, &[name.to_owned()])?
        .pop()
        .context("no projection")
}

/// The publisher to the broker the flags name, if any.
///
/// # Errors
/// Settings the client refuses.
async fn publisher(nats: &NatsFlags) -> anyhow::Result<Option<Arc<dyn EventPublisher>>> {
    match nats.settings() {
        Some(settings) => Ok(Some(strata_wiring::publisher(&settings).await?)),
        None => Ok(None),
    }
}

/// The status of every projection the storage keeps.
fn status(backend: &Backend) -> StatusService {
    let stores = &backend.stores;
    StatusService::new(stores.events.clone(), stores.read_models.clone())
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
                .with_context(|| {
                    if name == ProjectionName::Publisher {
                        "the publisher runs only with a broker: set STRATA_NATS_URL (--nats-url)"
                            .to_owned()
                    } else {
                        format!("no projection {name} in this service")
                    }
                })
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
    Ok(Some(strata_wiring::elasticsearch(
        url,
        &cli.search_index_prefix,
    )?))
}

/// Opens the storage the flags name. Only `run` may create a SQLite file; the other commands
/// read or repair one that exists.
async fn open(cli: &Cli) -> anyhow::Result<Database> {
    let storage = Storage::resolve(
        cli.database_url.as_ref().map(SecretUrl::expose),
        &cli.data_dir,
    )?;
    if let Storage::Sqlite(path) = &storage
        && !matches!(cli.command, Command::Run { .. })
        && !path.exists()
    {
        anyhow::bail!(
            "no SQLite database at {}: start strata-web (or strata-projector run) \
             first, or set DATABASE_URL / STRATA_DATA_DIR",
            path.display()
        );
    }
    Ok(Database::open(&storage, MAX_CONNECTIONS).await?)
}

/// Runs the command until done or until SIGINT/SIGTERM.
///
/// # Errors
/// An unreachable database, or a failure of the command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let database = open(&cli).await?;
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
    let nats = cli.nats.clone();
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
            database.migrate().await?;
            let backend = database.backend(elastic).await?;
            let projections = select(&backend, publisher(&nats).await?, &projections)?;
            // Created on start if missing; an engine that is down only delays the search
            // projection, which prepares the index again before its first write.
            if let Err(error) = backend.stores.search.prepare().await {
                tracing::warn!(%error, "the search index is not ready; the search projection waits for it");
            }
            let stop = stop_on_signal().context("cannot install the signal handlers")?;
            if let Some(addr) = metrics_addr {
                crate::metrics::serve(addr, status(&backend), stop.clone())
                    .await
                    .context("cannot serve the metrics")?;
            }
            // The publisher has a batch size of its own (`--nats-batch-size`).
            let (publishing, projecting): (Vec<_>, Vec<_>) = projections
                .into_iter()
                .partition(|p| p.name() == ProjectionName::Publisher);
            let config = tuning.config();
            let publishing_config = strata_application::projection::ProjectorConfig {
                batch_size: nats.nats_batch_size,
                ..config.clone()
            };
            tokio::join!(
                run_workers(&backend.workers, projecting, &config, &stop),
                run_workers(&backend.workers, publishing, &publishing_config, &stop),
            );
            backend.files.close().await;
            Ok(())
        }
        Command::Status { json } => {
            let backend = database.backend(elastic).await?;
            let statuses = status(&backend).statuses(OffsetDateTime::now_utc()).await?;
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
            let backend = database.backend(elastic).await?;
            let projection = select_one(&backend, publisher(&nats).await?, &name)?;
            if abandon {
                abandon_rebuild(&backend.workers, projection.as_ref()).await?;
                println!("dropped the unfinished rebuild of {name}, if any");
                return Ok(());
            }
            let stop = stop_on_signal().context("cannot install the signal handlers")?;
            let mut progress = crate::report::RebuildBar::new(projection.name());
            let swapped = rebuild(
                &backend.workers,
                projection,
                tuning.config(),
                &stop,
                &mut |p| progress.update(p),
            )
            .await?;
            progress.finish(swapped);
            if swapped {
                Ok(())
            } else {
                anyhow::bail!("rebuild of {name} interrupted; the live tables are unchanged")
            }
        }
        Command::Dlq { action } => {
            let publisher = publisher(&nats).await?;
            dlq(&database.backend(elastic).await?, publisher, action).await
        }
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

async fn dlq(
    backend: &Backend,
    publisher: Option<Arc<dyn EventPublisher>>,
    action: DlqAction,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match action {
        DlqAction::List { projection } => {
            let projection = match &projection {
                // Listing needs no broker: the publisher's letters are in the database.
                Some(name) => Some(name.parse::<ProjectionName>()?),
                None => None,
            };
            let letters = backend.workers.store.dead_letters(projection).await?;
            write!(out, "{}", crate::report::dead_letters_table(&letters))?;
        }
        DlqAction::Retry {
            projection,
            position,
        } => {
            let projection = select_one(backend, publisher, &projection)?;
            let outcome = dlq_retry(&backend.workers, projection.as_ref(), position).await?;
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
            let projection = select_one(backend, publisher, &projection)?;
            let outcome = dlq_skip(&backend.workers, projection.as_ref(), position).await?;
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
