//! Configuration of `strata-web`, from flags and environment variables (names are part of the
//! public contract; every one is documented in the README).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use strata_wiring::{RolesStep, SecretUrl, Storage, StorageError};

use crate::limits::{EdgeLimits, RateLimits};
use crate::serve::ConnectionLimits;
use crate::subscriptions::SubscriptionLimits;

/// The published development secret: only ever used with `--dev`, and announced in the log.
pub const DEVELOPMENT_JWT_SECRET: &str = "strata-development-secret-not-for-production";

/// Shortest accepted JWT secret, in bytes.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Fewest distinct byte values an accepted JWT secret has: refuses placeholders such as `xxx…`
/// or `abab…`, while 32 random hex digits (16 possible values) pass with near certainty.
pub const MIN_JWT_SECRET_DISTINCT_BYTES: usize = 8;

/// A secret that never shows in `Debug` output, so settings and arguments can be printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the code that signs or verifies with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

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
    /// Serve the HTTP API (the default; its flags go before the subcommand, or in the
    /// environment).
    Serve,
    /// Create the database (or SQLite file) of --database-url / DATABASE_URL, or of the data
    /// directory, if it is missing, apply the migrations, and exit. Those flags go before
    /// `migrate`.
    Migrate,
    /// Write a consistent copy of the embedded SQLite database (and of its search index, beside
    /// it) to a new file, while servers keep using it. It reads --database-url / DATABASE_URL
    /// and --data-dir as the server does (before `backup`); it refuses PostgreSQL: use pg_dump
    /// or PITR.
    Backup {
        /// The copy to write (never overwritten: it must not exist); the search index's copy
        /// goes beside it (`backup.db` → `backup-search.db`).
        #[arg(long, value_name = "PATH")]
        to: PathBuf,
    },
    /// PostgreSQL only: create the roles of decision 0006 (owner, app, projector, auditor), or
    /// grant them their privileges. See the README's "Production" section for the order.
    Roles {
        #[command(subcommand)]
        action: RolesAction,
    },
}

/// The two steps of `strata-web roles`, each run by another role.
#[derive(Debug, Clone, Subcommand)]
pub enum RolesAction {
    /// As a role with CREATEROLE and CREATEDB: create the roles missing, then the database of
    /// DATABASE_URL, owned by the owner role, if it is missing.
    Create(RolesArgs),
    /// As the owner role, after `strata-web migrate` (and again after each later one): grant
    /// each role exactly its privileges in the database of DATABASE_URL.
    Grant(RolesArgs),
}

impl RolesAction {
    /// The step, and its arguments.
    pub fn step(&self) -> (RolesStep, &RolesArgs) {
        match self {
            Self::Create(args) => (RolesStep::Create, args),
            Self::Grant(args) => (RolesStep::Grant, args),
        }
    }
}

/// Which roles, and whether to apply or print the script.
#[derive(Debug, Clone, clap::Args)]
pub struct RolesArgs {
    /// The roles are PREFIX_owner, PREFIX_app, PREFIX_projector and PREFIX_auditor.
    #[arg(long, env = "STRATA_ROLE_PREFIX", default_value = "strata")]
    pub prefix: String,
    /// Print the SQL instead of running it (to review it, or to run it with psql).
    #[arg(long)]
    pub print: bool,
}

/// Flags of the server; each has an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "STRATA_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Where everything is stored: `postgres://…` for PostgreSQL, `sqlite://PATH` for that SQLite
    /// file; without it, SQLite in the data directory.
    // The value is never shown, in `--help` as in `Debug`: it may carry a password.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretUrl>,
    /// Directory of the embedded SQLite database when no DATABASE_URL is given.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// HS256 secret that access tokens are signed with (the server verifies them with it) and
    /// that seals page cursors: at least 32 random bytes (a shorter or patterned one is
    /// refused). Required unless `--dev`.
    #[arg(long, env = "STRATA_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Development mode: without STRATA_JWT_SECRET, use the published development secret.
    /// Refused unless --http-addr is a loopback address.
    #[arg(long, env = "STRATA_DEV", default_value_t = false)]
    pub dev: bool,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "STRATA_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Snapshot an aggregate every this many events (0 disables snapshots).
    #[arg(long, env = "STRATA_SNAPSHOT_EVERY", default_value_t = 100)]
    pub snapshot_every: u64,
    /// Most database connections per pool. PostgreSQL: the pool, and a second one of this size
    /// for stream reads. SQLite: each file's pool (the database's and the search index's),
    /// readers in parallel and writers taking turns; at least 2.
    #[arg(long, env = "STRATA_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Longest a query with `X-Min-Position` waits for its projection, in milliseconds.
    #[arg(long, env = "STRATA_READ_WAIT_MS", default_value_t = 5000)]
    pub read_wait_ms: u64,
    /// Run the projection workers in this process too (development mode of the read side on
    /// PostgreSQL; always on with SQLite, the embedded single-process deployment).
    #[arg(long, env = "STRATA_WITH_PROJECTOR", default_value_t = false)]
    pub with_projector: bool,
    /// Elasticsearch (or OpenSearch) URL of the order search index; without it, search runs on
    /// the database's own full-text search: SQLite FTS5 (the default storage, in a file beside
    /// the database) or PostgreSQL's.
    #[arg(long, env = "ELASTICSEARCH_URL", hide_env_values = true)]
    pub elasticsearch_url: Option<SecretUrl>,
    /// Put before the search index's alias and index names (`<prefix>orders`).
    #[arg(long, env = "STRATA_SEARCH_INDEX_PREFIX", default_value = "strata-")]
    pub search_index_prefix: String,
    /// Earlier JWT secrets, comma-separated, still accepted when verifying tokens (never used to
    /// sign): rotate by moving the current secret here and setting a new STRATA_JWT_SECRET.
    #[arg(
        long,
        env = "STRATA_JWT_PREVIOUS_SECRETS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub jwt_previous_secrets: Vec<Secret>,
    /// Longest accepted token lifetime in seconds: `exp - iat`, or `exp - now` without `iat`.
    #[arg(
        long,
        env = "STRATA_JWT_MAX_LIFETIME_SECS",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub jwt_max_lifetime_secs: u64,
    /// When set, tokens must carry this `iss` claim.
    #[arg(long, env = "STRATA_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// When set, tokens must name this audience in their `aud` claim; unset, tokens that carry
    /// an `aud` claim are refused.
    #[arg(long, env = "STRATA_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Longest a connection may take to send a request's head, in milliseconds, counted from
    /// when the server waits for it (also how long an idle kept-alive connection stays open).
    #[arg(long, env = "STRATA_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,
    /// Most connections open at once; more are closed as soon as they are accepted.
    #[arg(long, env = "STRATA_MAX_CONNECTIONS", default_value_t = 512,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Longest a request may take, in milliseconds, before it is answered 503.
    #[arg(long, env = "STRATA_REQUEST_TIMEOUT_MS", default_value_t = 30_000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
    /// Most requests handled at once; more are answered 503 at once.
    #[arg(long, env = "STRATA_MAX_IN_FLIGHT", default_value_t = 512,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub max_in_flight: u64,
    /// Commands per second one principal may send (bursts of as many); 0 turns the limit off.
    #[arg(long, env = "STRATA_RATE_LIMIT_COMMANDS", default_value_t = 100)]
    pub rate_limit_commands: u32,
    /// Queries per second one principal may send (bursts of as many); 0 turns the limit off.
    #[arg(long, env = "STRATA_RATE_LIMIT_QUERIES", default_value_t = 500)]
    pub rate_limit_queries: u32,
    /// Serve `/metrics` on this address instead of the API's (keep it off the public network).
    #[arg(long, env = "STRATA_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Serve Swagger UI at `/docs` (`/openapi.json` is always served).
    #[arg(long, env = "STRATA_DOCS", default_value_t = true, action = clap::ArgAction::Set)]
    pub docs: bool,
    /// Clients of `GET /v1/events/stream` this instance serves at once; more are answered 503
    /// with `Retry-After`.
    #[arg(long, env = "STRATA_MAX_SUBSCRIBERS", default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_subscribers: u64,
    /// Events a live subscriber may fall behind the log before it is sent a last `cutoff` event
    /// and disconnected (the live buffer, shared by the subscribers of this instance).
    #[arg(long, env = "STRATA_SUBSCRIBER_BUFFER", default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub subscriber_buffer: u64,
    /// Milliseconds between the comment lines an idle event stream sends, so that proxies keep
    /// it open.
    #[arg(long, env = "STRATA_SSE_HEARTBEAT_MS", default_value_t = 15_000,
        value_parser = clap::value_parser!(u64).range(100..))]
    pub sse_heartbeat_ms: u64,
}

impl ServeArgs {
    /// The storage `DATABASE_URL` (or, without it, the data directory) names.
    ///
    /// # Errors
    /// A URL of another database, or a SQLite URL without a file.
    pub fn storage(&self) -> Result<Storage, StorageError> {
        Storage::resolve(
            self.database_url.as_ref().map(SecretUrl::expose),
            &self.data_dir,
        )
    }
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "STRATA_JWT_SECRET is not set: set it, or start in development mode with --dev (STRATA_DEV=true)"
    )]
    MissingJwtSecret,
    /// `which` names the setting (and the entry of a list), never the secret.
    #[error("{which} is too weak: {why}")]
    WeakJwtSecret { which: String, why: &'static str },
    #[error(
        "STRATA_REQUEST_TIMEOUT_MS ({request} ms) must be longer than STRATA_READ_WAIT_MS \
         ({wait} ms), or a waiting query would time out before it could answer"
    )]
    RequestTimeoutTooShort { request: u64, wait: u64 },
    #[error(
        "development mode (STRATA_DEV) listens on loopback addresses only, not {0}: its \
         secret is published, so anyone who can reach it can act as anyone"
    )]
    DevelopmentModeNotOnLoopback(SocketAddr),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Validated settings of the server.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub storage: Storage,
    /// The secret that signs tokens (in tests and tools) and verifies them, and whose derived
    /// key seals page cursors.
    pub jwt_secret: Secret,
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
    /// Elasticsearch URL of the search index (`None`: the database's own full-text search,
    /// SQLite FTS5 or PostgreSQL's).
    pub elasticsearch_url: Option<SecretUrl>,
    pub search_index_prefix: String,
    /// Earlier secrets that still verify tokens during a rotation; they sign nothing.
    pub jwt_previous_secrets: Vec<Secret>,
    /// Longest accepted token lifetime (`exp - iat`, or `exp - now` without `iat`).
    pub jwt_max_lifetime: Duration,
    /// The `iss` every token must carry (`None`: not checked).
    pub jwt_issuer: Option<String>,
    /// The audience every token must name in `aud` (`None`: a token naming any audience is
    /// refused, as RFC 7519 asks of a recipient that is not in it).
    pub jwt_audience: Option<String>,
    /// What one client may take of the server: connections, time, requests, rate.
    pub limits: EdgeLimits,
    /// How the live event streams are bounded.
    pub subscriptions: SubscriptionLimits,
    /// Where `/metrics` is served when not on the API's address.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether Swagger UI is served at `/docs`.
    pub docs: bool,
}

/// Refuses a secret that is short, has so few distinct bytes that it is a placeholder (`xxxx…`)
/// rather than random, or repeats a short pattern (`changeme-changeme-…`): all are guessable
/// offline from one captured token. Outside development mode the published development secret
/// is refused too: anyone can sign with it.
fn check_jwt_secret(which: String, secret: &Secret, dev: bool) -> Result<(), SettingsError> {
    let bytes = secret.expose().as_bytes();
    let why = if !dev && secret.expose() == DEVELOPMENT_JWT_SECRET {
        "it is the published development secret (allowed only with --dev, on loopback)"
    } else if bytes.len() < MIN_JWT_SECRET_BYTES {
        "it must be at least 32 bytes long"
    } else if bytes
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        < MIN_JWT_SECRET_DISTINCT_BYTES
    {
        "it must contain at least 8 distinct bytes (use random bytes, e.g. openssl rand -hex 32)"
    } else if (1..=MAX_REPEATED_PATTERN).any(|period| {
        bytes
            .iter()
            .enumerate()
            .all(|(i, byte)| *byte == bytes[i % period])
    }) {
        "it repeats a pattern of at most 16 bytes (use random bytes, e.g. openssl rand -hex 32)"
    } else {
        return Ok(());
    };
    Err(SettingsError::WeakJwtSecret { which, why })
}

/// The longest repeated pattern a secret is refused for (`changeme-` is 9).
const MAX_REPEATED_PATTERN: usize = 16;

/// An optional text setting, unset when empty or blank.
fn non_blank(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

impl Settings {
    /// Resolves the JWT secret: an explicit one wins; `--dev` falls back to the published one.
    ///
    /// # Errors
    /// No secret outside development mode, a secret (current or previous) too short or too
    /// uniform to be safe, or an unusable `DATABASE_URL`.
    pub fn from_args(args: ServeArgs) -> Result<Self, SettingsError> {
        let storage = args.storage()?;
        // The development secret is published: an instance using it must not be reachable.
        if args.dev && !args.http_addr.ip().is_loopback() {
            return Err(SettingsError::DevelopmentModeNotOnLoopback(args.http_addr));
        }
        let (jwt_secret, using_development_secret) = match (args.jwt_secret, args.dev) {
            (Some(secret), _) => (secret, false),
            (None, true) => (Secret::from(DEVELOPMENT_JWT_SECRET), true),
            (None, false) => return Err(SettingsError::MissingJwtSecret),
        };
        check_jwt_secret("STRATA_JWT_SECRET".to_owned(), &jwt_secret, args.dev)?;
        let mut jwt_previous_secrets = Vec::new();
        for (n, secret) in args.jwt_previous_secrets.into_iter().enumerate() {
            // A trailing comma leaves an empty entry: nothing to verify with.
            if secret.expose().is_empty() {
                continue;
            }
            let which = format!("STRATA_JWT_PREVIOUS_SECRETS (entry {})", n + 1);
            check_jwt_secret(which, &secret, args.dev)?;
            jwt_previous_secrets.push(secret);
        }
        if args.request_timeout_ms <= args.read_wait_ms {
            return Err(SettingsError::RequestTimeoutTooShort {
                request: args.request_timeout_ms,
                wait: args.read_wait_ms,
            });
        }
        let limits = EdgeLimits {
            connections: ConnectionLimits {
                header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
                max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
                // Idle in either direction: no byte of a request's head, or of a response.
                write_stall_timeout: Duration::from_millis(args.header_read_timeout_ms),
                // Room for the longest request, then its response.
                shutdown_grace: Duration::from_millis(
                    args.request_timeout_ms
                        .saturating_add(args.header_read_timeout_ms),
                ),
            },
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            max_in_flight: usize::try_from(args.max_in_flight).unwrap_or(usize::MAX),
            rate: RateLimits {
                commands_per_second: args.rate_limit_commands,
                queries_per_second: args.rate_limit_queries,
            },
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
            elasticsearch_url: args
                .elasticsearch_url
                .filter(|url| !url.expose().trim().is_empty()),
            search_index_prefix: args.search_index_prefix,
            jwt_previous_secrets,
            jwt_max_lifetime: Duration::from_secs(args.jwt_max_lifetime_secs),
            jwt_issuer: non_blank(args.jwt_issuer),
            jwt_audience: non_blank(args.jwt_audience),
            limits,
            subscriptions: SubscriptionLimits {
                max_subscribers: usize::try_from(args.max_subscribers).unwrap_or(usize::MAX),
                buffer: usize::try_from(args.subscriber_buffer).unwrap_or(usize::MAX),
                heartbeat: Duration::from_millis(args.sse_heartbeat_ms),
            },
            metrics_addr: args.metrics_addr,
            docs: args.docs,
        })
    }
}

#[cfg(test)]
mod tests;
