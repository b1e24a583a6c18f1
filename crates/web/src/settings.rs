//! Configuration of `strata-web`, from flags and environment variables (names are part of the
//! public contract; every one is documented in the README).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::startup::{Storage, StorageError};

/// The published development secret: only ever used with `--dev`, and announced in the log.
pub const DEVELOPMENT_JWT_SECRET: &str = "strata-development-secret-not-for-production";

/// Command line of `strata-web`.
#[derive(Debug, Parser)]
#[command(
    name = "strata-web",
    version,
    about = "Strata's HTTP API: commands, queries, audit trail and time travel"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Create the database if it is missing, apply the migrations, and exit.
    Migrate,
    /// Write a consistent copy of the embedded SQLite database (and of its search index, beside
    /// it) to a new file, while servers keep using it. On PostgreSQL use pg_dump or PITR.
    Backup {
        /// The copy to write (never overwritten: it must not exist); the search index's copy
        /// goes beside it (`backup.db` → `backup-search.db`).
        #[arg(long, value_name = "PATH")]
        to: PathBuf,
    },
}

/// Flags of the server; each has an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "STRATA_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Where everything is stored: `postgres://…` for PostgreSQL, `sqlite://PATH` for that SQLite
    /// file; without it, SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory of the embedded SQLite database when no DATABASE_URL is given.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// HS256 secret that signs access tokens. Required unless `--dev`.
    #[arg(long, env = "STRATA_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Development mode: without STRATA_JWT_SECRET, use the published development secret.
    #[arg(long, env = "STRATA_DEV", default_value_t = false)]
    pub dev: bool,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "STRATA_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Snapshot an aggregate every this many events (0 disables snapshots).
    #[arg(long, env = "STRATA_SNAPSHOT_EVERY", default_value_t = 100)]
    pub snapshot_every: u64,
    /// Size of the PostgreSQL connection pool.
    #[arg(long, env = "STRATA_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Longest a query with `X-Min-Position` waits for its projection, in milliseconds.
    #[arg(long, env = "STRATA_READ_WAIT_MS", default_value_t = 5000)]
    pub read_wait_ms: u64,
    /// Development mode of the read side: run the projection workers in this process too.
    #[arg(long, env = "STRATA_WITH_PROJECTOR", default_value_t = false)]
    pub with_projector: bool,
    /// Elasticsearch (or OpenSearch) URL of the order search index; without it, search runs on
    /// PostgreSQL's full-text search.
    #[arg(long, env = "ELASTICSEARCH_URL")]
    pub elasticsearch_url: Option<String>,
    /// Put before the search index's alias and index names (`<prefix>orders`).
    #[arg(long, env = "STRATA_SEARCH_INDEX_PREFIX", default_value = "strata-")]
    pub search_index_prefix: String,
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "STRATA_JWT_SECRET is not set: set it, or start in development mode with --dev (STRATA_DEV=true)"
    )]
    MissingJwtSecret,
    #[error("STRATA_JWT_SECRET must be at least 32 bytes long")]
    WeakJwtSecret,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Validated settings of the server.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub storage: Storage,
    pub jwt_secret: String,
    /// True when the development secret is in use (logged loudly at start-up).
    pub using_development_secret: bool,
    pub body_limit: usize,
    pub snapshot_every: u64,
    pub db_max_connections: u32,
    /// Longest a query waits for its projection to reach the client's `X-Min-Position`.
    pub read_wait: Duration,
    /// Run the projection workers in-process (development: one process, a complete system).
    /// Always on when read from flags with SQLite, the embedded single-process deployment.
    pub with_projector: bool,
    /// Elasticsearch URL of the search index (`None`: PostgreSQL full-text search).
    pub elasticsearch_url: Option<String>,
    pub search_index_prefix: String,
}

impl Settings {
    /// Resolves the JWT secret: an explicit one wins; `--dev` falls back to the published one.
    ///
    /// # Errors
    /// No secret outside development mode, a secret too short to be safe, or an unusable
    /// `DATABASE_URL`.
    pub fn from_args(args: ServeArgs) -> Result<Self, SettingsError> {
        let storage = Storage::resolve(args.database_url.as_deref(), &args.data_dir)?;
        let (jwt_secret, using_development_secret) = match (args.jwt_secret, args.dev) {
            (Some(secret), _) if secret.len() < 32 => return Err(SettingsError::WeakJwtSecret),
            (Some(secret), _) => (secret, false),
            (None, true) => (DEVELOPMENT_JWT_SECRET.to_owned(), true),
            (None, false) => return Err(SettingsError::MissingJwtSecret),
        };
        // SQLite is the embedded single-node deployment: one process serves a complete system.
        let with_projector = args.with_projector || matches!(storage, Storage::Sqlite(_));
        Ok(Self {
            http_addr: args.http_addr,
            storage,
            jwt_secret,
            using_development_secret,
            body_limit: args.body_limit,
            snapshot_every: args.snapshot_every,
            db_max_connections: args.db_max_connections,
            read_wait: Duration::from_millis(args.read_wait_ms),
            with_projector,
            elasticsearch_url: args.elasticsearch_url.filter(|url| !url.trim().is_empty()),
            search_index_prefix: args.search_index_prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(secret: Option<&str>, dev: bool) -> ServeArgs {
        let mut cli = Cli::parse_from(["strata-web"]).serve;
        // The environment of a test run may name a database: these tests choose their own.
        cli.database_url = None;
        cli.data_dir = PathBuf::from("data");
        cli.jwt_secret = secret.map(str::to_owned);
        cli.dev = dev;
        cli
    }

    #[test]
    fn without_a_secret_the_server_refuses_to_start_unless_in_development_mode() {
        assert!(matches!(
            Settings::from_args(args(None, false)),
            Err(SettingsError::MissingJwtSecret)
        ));
        let dev = Settings::from_args(args(None, true)).unwrap();
        assert!(dev.using_development_secret);
        assert_eq!(dev.jwt_secret, DEVELOPMENT_JWT_SECRET);
    }

    #[test]
    fn queries_wait_five_seconds_and_the_projector_runs_elsewhere_by_default_on_postgres() {
        let mut on_postgres = args(None, true);
        on_postgres.database_url = Some("postgres://db/strata".to_owned());
        let settings = Settings::from_args(on_postgres).unwrap();
        assert_eq!(settings.read_wait, Duration::from_secs(5));
        assert!(!settings.with_projector);

        let cli = Cli::parse_from([
            "strata-web",
            "--dev",
            "--with-projector",
            "--read-wait-ms",
            "250",
        ]);
        let settings = Settings::from_args(cli.serve).unwrap();
        assert_eq!(settings.read_wait, Duration::from_millis(250));
        assert!(settings.with_projector);
    }

    #[test]
    fn without_a_database_url_everything_is_stored_in_sqlite_in_the_data_directory() {
        let settings = Settings::from_args(args(None, true)).unwrap();
        assert_eq!(
            settings.storage,
            Storage::Sqlite(PathBuf::from("data/strata.db"))
        );
        assert!(
            settings.with_projector,
            "the embedded deployment is one process"
        );
    }

    #[test]
    fn a_database_url_of_another_database_is_refused() {
        let mut mysql = args(None, true);
        mysql.database_url = Some("mysql://db/strata".to_owned());
        let refused = Settings::from_args(mysql).unwrap_err();
        assert!(refused.to_string().contains("postgres://"), "{refused}");
    }

    #[test]
    fn an_explicit_secret_wins_even_in_development_mode() {
        let secret = "x".repeat(40);
        let settings = Settings::from_args(args(Some(&secret), true)).unwrap();
        assert!(!settings.using_development_secret);
        assert!(matches!(
            Settings::from_args(args(Some("short"), false)),
            Err(SettingsError::WeakJwtSecret)
        ));
    }
}
