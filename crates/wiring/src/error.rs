//! Why wiring the storage failed: one enum whose messages are what the binaries print (each
//! variant's text, then its cause's, as `anyhow`'s `{:#}` chains them). Adapter errors that are
//! the adapter's own (a backup's, the roles script's, the search client's) travel as a boxed
//! cause, so no adapter type shows in this crate's API.

use std::path::PathBuf;

use strata_ports::{ConnectError, MigrateError};

use crate::storage::StorageError;

/// The cause of a failure in an adapter's own words: its message, and its own causes.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the storage could not be opened, migrated, backed up or given its roles.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// `DATABASE_URL` names no storage Strata can use.
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot connect to PostgreSQL")]
    ConnectPostgres(#[source] ConnectError),
    #[error("cannot create the database")]
    CreateDatabase(#[source] ConnectError),
    #[error("cannot open the SQLite database {}", .path.display())]
    OpenSqlite {
        path: PathBuf,
        #[source]
        source: ConnectError,
    },
    #[error("cannot open the search index's SQLite file")]
    OpenSearchFile(#[source] ConnectError),
    /// The migrations failed on a SQLite file.
    #[error("cannot apply the migrations to {}", .path.display())]
    MigrateSqlite {
        path: PathBuf,
        #[source]
        source: MigrateError,
    },
    /// The migrations failed where a role that does not own the tables may be the reason.
    #[error(
        "cannot apply the migrations (a role that does not own the tables cannot: \
         run `strata-web migrate` as their owner first)"
    )]
    MigrateAsOwner(#[source] MigrateError),
    /// The schema could not be read (whether it is up to date).
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error("cannot configure the Elasticsearch client")]
    Elasticsearch(#[source] Cause),
    #[error("cannot configure the NATS publisher")]
    Publisher(#[source] Cause),
    #[error(
        "strata-web backup copies the embedded SQLite database only: back PostgreSQL up with \
         pg_dump, or with continuous archiving and point-in-time recovery (PITR)"
    )]
    BackupOfPostgres,
    #[error("cannot back up {}", .path.display())]
    Backup {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    /// A role prefix that would not make plain role names.
    #[error(transparent)]
    RolePrefix(Cause),
    #[error("roles are PostgreSQL's: set DATABASE_URL to a postgres:// URL")]
    RolesOnSqlite,
    #[error("cannot create the roles")]
    CreateRoles(#[source] Cause),
    #[error("cannot grant the privileges (run it as {owner}, after strata-web migrate)")]
    GrantRoles {
        owner: String,
        #[source]
        source: Cause,
    },
}
