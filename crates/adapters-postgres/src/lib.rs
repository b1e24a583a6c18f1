//! PostgreSQL adapters of Strata's ports: the event store, the snapshot store, the read models
//! with their projection batches, wake-ups and leases, their embedded migrations, the roles of
//! decision 0006 and their grants, and a pool constructor that takes settings (adapters never
//! read the environment).
//!
//! Rooms:
//! - `event_store.rs`: `PgEventStore`, the log's reads, and appends handed to the group writer.
//! - `group_commit.rs`: the group writer, which coalesces waiting appends into one transaction.
//! - `append.rs`: the append statement and its columns, used by both of the above.
//! - `snapshot_store.rs`: `PgSnapshotStore`.
//! - `projection_store.rs`: `PgProjectionStore`, which opens batches and lists dead letters.
//! - `batch.rs`: `PgBatch`, one projection batch in one transaction holding its checkpoint row.
//! - `rebuild.rs`: rebuilds in a schema of their own, and the swap of their tables.
//! - `checkpoints.rs`: the lock on a projection's checkpoint row a batch and a swap hold (the
//!   projections, their tables and keys are `strata_ports::ProjectionName`'s).
//! - `rows/`: each read model's rows to and from columns, with its batch and query impls
//!   (`orders.rs`, `accounts.rs`); `rows/mod.rs` the column conversions they share.
//! - `queries.rs`: `PgReadModels`, the read side's queries.
//! - `leases.rs`: `PgLeases` (advisory locks) and `PgLogWakeups` (LISTEN/NOTIFY).
//! - `search.rs`: `PgSearchIndex`, the order search on full-text search.
//! - `roles.rs`: the roles of decision 0006 and their grants.
//! - `database.rs`: creating a database; `error.rs`: sqlx errors as port errors.
#![forbid(unsafe_code)]

mod append;
mod batch;
mod checkpoints;
mod database;
mod error;
mod event_store;
mod group_commit;
mod leases;
mod projection_store;
mod queries;
mod readers;
mod rebuild;
mod roles;
mod rows;
mod search;
mod snapshot_store;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

use std::fmt;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

#[doc(hidden)]
pub use append::append_in;
pub use database::{connect_to_server, create_database_if_missing, create_database_owned_by};
pub use error::RolesError;
pub use event_store::PgEventStore;
pub use leases::{EVENTS_CHANNEL, PgLeases, PgLogWakeup, PgLogWakeups};
pub use projection_store::PgProjectionStore;
pub use queries::PgReadModels;
pub use roles::{PgRoles, create_roles, grant_roles};
pub use search::PgSearchIndex;
pub use snapshot_store::PgSnapshotStore;
// The errors of `connect` and `migrate`, shared by every database adapter.
pub use strata_ports::{ConnectError, MigrateError};

/// The schema of the event and snapshot stores, embedded from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Brings the database schema up to date; running it again is harmless.
///
/// When every migration of this build is applied already, this only reads the migration table:
/// a role that may not create anything (the service's, decision 0006) can run it at each start.
/// sqlx's migrator, otherwise run, first creates that table if it is missing, which needs CREATE
/// on the schema even when the table exists.
///
/// # Errors
/// [`MigrateError::Unavailable`] when the database cannot be reached; [`MigrateError::Failed`]
/// when a migration fails or the applied history does not match this build's migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    if is_migrated(pool).await? {
        return Ok(());
    }
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| error::migrate_error(&e))
}

/// Whether every migration of this build has been applied (`false` on an empty database).
///
/// # Errors
/// [`MigrateError::Unavailable`] when the database cannot be reached; [`MigrateError::Failed`]
/// when the applied history does not match this build's migrations, as sqlx's migrator would
/// refuse it: a migration applied in part, one this build does not know (a newer build applied
/// it), or one whose checksum differs from this build's.
pub async fn is_migrated(pool: &PgPool) -> Result<bool, MigrateError> {
    let failed = |e| error::migrate_error(&sqlx::migrate::MigrateError::Execute(e));
    let table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations')::text")
            .fetch_one(pool)
            .await
            .map_err(failed)?;
    if table.is_none() {
        return Ok(false);
    }
    let applied: Vec<(i64, bool, Vec<u8>)> = sqlx::query_as(
        "SELECT version, success, checksum FROM public._sqlx_migrations ORDER BY version",
    )
    .fetch_all(pool)
    .await
    .map_err(failed)?;
    let ups = || {
        MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
    };
    for (version, success, checksum) in &applied {
        let refused = if !success {
            sqlx::migrate::MigrateError::Dirty(*version)
        } else {
            match ups().find(|m| m.version == *version) {
                None => sqlx::migrate::MigrateError::VersionMissing(*version),
                Some(m) if *m.checksum != **checksum => {
                    sqlx::migrate::MigrateError::VersionMismatch(*version)
                }
                Some(_) => continue,
            }
        };
        return Err(error::migrate_error(&refused));
    }
    Ok(ups().all(|m| applied.iter().any(|(version, ..)| *version == m.version)))
}

/// How to reach the database.
#[derive(Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long an operation waits for a connection before failing as unavailable.
    pub acquire_timeout: Duration,
}

impl fmt::Debug for PgSettings {
    // The url may carry a password, and settings end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &redact_password(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

/// A pooled connection idle for longer than this is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// How every pool of this crate hands out connections.
pub(crate) fn pool_policy(max_connections: u32, acquire_timeout: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        // sqlx pings every connection it takes back, so one just released is known to work;
        // pinging it again on the way out cost every query a round trip. Only one that has sat
        // idle (the server may have closed it since) is checked first.
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_WHEN_IDLE_FOR {
                    sqlx::Connection::ping(connection).await?;
                }
                Ok(true)
            })
        })
}

/// Opens a pool and one connection of it, so that a wrong url or an unreachable database is
/// reported at start-up rather than at the first request.
///
/// # Errors
/// [`ConnectError::InvalidSettings`] for a malformed url; [`ConnectError::Unavailable`] when
/// the database cannot be reached; [`ConnectError::Refused`] when it refuses the connection.
pub async fn connect(settings: &PgSettings) -> Result<PgPool, ConnectError> {
    pool_policy(settings.max_connections, settings.acquire_timeout)
        .connect(&settings.url)
        .await
        .map_err(|e| error::connect_error(&e))
}

/// Makes a pool that connects on first use: the database need not be up yet.
///
/// # Errors
/// [`ConnectError::InvalidSettings`] for a malformed url.
pub fn connect_lazy(settings: &PgSettings) -> Result<PgPool, ConnectError> {
    pool_policy(settings.max_connections, settings.acquire_timeout)
        .connect_lazy(&settings.url)
        .map_err(|e| error::connect_error(&e))
}

/// The url with its password, if any, replaced by `***`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((user_info, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match user_info.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_never_show_the_password() {
        let settings = PgSettings {
            url: "postgres://app:s3cret@db:5432/strata".into(),
            max_connections: 5,
            acquire_timeout: Duration::from_secs(1),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db:5432/strata"),
            "{shown}"
        );
    }

    #[test]
    fn a_url_without_password_is_shown_as_is() {
        assert_eq!(
            redact_password("postgres://postgres@127.0.0.1/postgres"),
            "postgres://postgres@127.0.0.1/postgres"
        );
    }
}
