//! The command line of `strata-projector`: its flags (each with its environment variable where
//! it has one; the names are part of the public contract, documented in the README), its
//! commands, and how a worker paces itself.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use strata_application::projection::{ProjectorConfig, PublisherProjection};
use strata_wiring::SecretUrl;

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
    #[command(flatten)]
    pub nats: NatsFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the publisher hands the log to (decision 0016). Without a URL there is no publisher.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsFlags {
    /// NATS server(s) with JetStream to publish every event of the log to
    /// (`nats://host:port`, comma-separated for the nodes of a cluster); without it, nothing is
    /// published and the `publisher` projection does not run.
    // Hidden like the database's: a URL may carry a user and password.
    #[arg(long, env = "STRATA_NATS_URL", global = true, hide_env_values = true)]
    pub nats_url: Option<SecretUrl>,
    /// The first token of every subject: `<prefix>.<category>.<EventType>`.
    #[arg(
        long,
        env = "STRATA_NATS_SUBJECT_PREFIX",
        default_value = "strata",
        global = true
    )]
    pub nats_subject_prefix: String,
    /// The JetStream stream that keeps the messages (created if missing).
    #[arg(
        long,
        env = "STRATA_NATS_STREAM",
        default_value = "STRATA",
        global = true
    )]
    pub nats_stream: String,
    /// Copies of each message in a JetStream cluster (1 to 5; 1 on a single server).
    #[arg(
        long,
        env = "STRATA_NATS_REPLICAS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u8).range(1..=5),
        global = true
    )]
    pub nats_replicas: u8,
    /// How long JetStream recognises a repeated message id, in milliseconds (at least 100).
    #[arg(
        long,
        env = "STRATA_NATS_DUPLICATE_WINDOW_MS",
        default_value_t = 120_000,
        value_parser = clap::value_parser!(u64).range(100..),
        global = true
    )]
    pub nats_duplicate_window_ms: u64,
    /// Events per batch of the `publisher` (one pipeline of publishes, then one checkpoint
    /// commit); the read models' batches are `--batch-size`.
    #[arg(
        long,
        env = "STRATA_NATS_BATCH_SIZE",
        default_value_t = PublisherProjection::DEFAULT_BATCH_SIZE,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000),
        global = true
    )]
    pub nats_batch_size: usize,
}

impl NatsFlags {
    /// The publisher's settings, when a URL is given.
    pub fn settings(&self) -> Option<strata_wiring::PublisherSettings> {
        let url = self.nats_url.as_ref().map(SecretUrl::expose)?;
        if url.trim().is_empty() {
            return None;
        }
        Some(strata_wiring::PublisherSettings {
            url: url.to_owned(),
            subject_prefix: self.nats_subject_prefix.clone(),
            stream: self.nats_stream.clone(),
            replicas: usize::from(self.nats_replicas),
            duplicate_window: Duration::from_millis(self.nats_duplicate_window_ms),
        })
    }
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
    /// meanwhile. Run it as the tables' owner. The publisher cannot be rebuilt.
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
        /// The projection that parked it (`orders`, `accounts`, `search` or `publisher`).
        projection: String,
        /// The parked event's global position, as `dlq list` shows it.
        position: u64,
    },
    /// Drop a parked event for good and apply the events that waited behind it.
    Skip {
        /// The projection that parked it (`orders`, `accounts`, `search` or `publisher`).
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
    /// The workers' configuration these flags give (each at least 1).
    pub fn config(&self) -> ProjectorConfig {
        ProjectorConfig {
            batch_size: self.batch_size.max(1),
            poll_interval: Duration::from_millis(self.poll_ms.max(1)),
            max_attempts: self.max_attempts.max(1),
            ..ProjectorConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("strata-projector").chain(args.iter().copied()))
    }

    #[test]
    fn the_publisher_batches_2000_events_unless_told_and_refuses_none_or_absurdly_many() {
        // An operator's environment may set it; the default is what this test is about.
        if std::env::var_os("STRATA_NATS_BATCH_SIZE").is_none() {
            assert_eq!(parse(&["run"]).unwrap().nats.nats_batch_size, 2_000);
        }
        let cli = parse(&["run", "--nats-batch-size", "5000", "--batch-size", "100"]).unwrap();
        assert_eq!(cli.nats.nats_batch_size, 5_000);
        for bad in ["0", "100001", "-1", "many"] {
            let flag = format!("--nats-batch-size={bad}");
            let error = parse(&["run", &flag]).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad}"
            );
        }
    }
}
