//! Start-up: the only place of the projector that names concrete adapters.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use strata_adapters_postgres::{PgEventStore, PgSettings};
use strata_ports::EventStore;
use tokio::sync::watch;

use crate::follow::{FollowOptions, follow, to_json_line};

/// Command line of `strata-projector`.
#[derive(Debug, Parser)]
#[command(
    name = "strata-projector",
    version,
    about = "Follows Strata's global event log"
)]
pub struct Cli {
    /// PostgreSQL URL of the event store.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/strata",
        global = true
    )]
    pub database_url: String,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
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

/// Runs the command until done or until SIGINT/SIGTERM.
///
/// # Errors
/// An unreachable database, or a failure while following.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let pool = strata_adapters_postgres::connect(&PgSettings {
        url: cli.database_url,
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
    })
    .await
    .context("cannot connect to PostgreSQL")?;
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool));
    match cli.command {
        Command::Follow {
            from,
            batch_size,
            poll_ms,
            until_caught_up,
        } => {
            let stop = stop_on_signal().context("cannot install the signal handlers")?;
            let options = FollowOptions {
                batch_size,
                poll_interval: Duration::from_millis(poll_ms),
                until_caught_up,
            };
            let mut out = std::io::stdout();
            let last = follow(store.as_ref(), from, options, stop, &mut |event| {
                writeln!(out, "{}", to_json_line(event))
            })
            .await?;
            tracing::info!(last_position = last, "stopped following");
            Ok(())
        }
    }
}

/// A stop flag that turns true on SIGINT or SIGTERM (Ctrl-C where there are no Unix signals).
///
/// The handlers are installed before this returns, so a signal that arrives while catching up
/// stops the follower cleanly instead of killing it mid-batch, and a failure to install them is
/// reported rather than leaving a follower that only a SIGKILL stops.
fn stop_on_signal() -> std::io::Result<watch::Receiver<bool>> {
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
