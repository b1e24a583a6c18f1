//! SQLite adapters of Strata's ports, the embedded default: the event store, the snapshot store,
//! the read models with their projection batches, leases and wake-ups, and the order search on
//! FTS5 — through sqlx with a bundled SQLite, so nothing needs installing. Every connection runs
//! in WAL mode (readers never wait for the writer) and every write transaction begins with
//! `BEGIN IMMEDIATE` (it takes the single write lock before its first read, so a read-then-write
//! transaction never fails half-way with SQLITE_BUSY). [`close`] checkpoints a file's
//! write-ahead log into it before closing its pool, so that the file alone is complete after a
//! clean stop; [`backup`] copies a file consistently while it is in use. Adapters never read the
//! environment: they take [`SqliteSettings`].
//!
//! Rooms:
//! - `event_store.rs`: `SqliteEventStore`, the log's appends and reads.
//! - `group_commit.rs`: the one writer that gathers concurrent appends into one transaction;
//!   `group_batch.rs`: a group's appends checked in memory and written, a savepoint each.
//! - `snapshot_store.rs`: `SqliteSnapshotStore`.
//! - `projection_store.rs`: `SqliteProjectionStore`, which opens batches and lists dead letters.
//! - `batch.rs`: `SqliteBatch`, one projection batch in one write transaction.
//! - `rebuild.rs`: rebuilds in `rebuild_` tables, and the swap that copies them over the live ones.
//! - `checkpoints.rs`: reading and creating a projection's checkpoint row (the projections,
//!   their tables and keys are `strata_ports::ProjectionName`'s).
//! - `rows/`: each read model's rows to and from columns, with its batch and query impls
//!   (`orders.rs`, `accounts.rs`); `rows/mod.rs` the column conversions they share.
//! - `queries.rs`: `SqliteReadModels`, the read side's queries.
//! - `leases.rs`: `SqliteLeases` (expiring rows) and `SqliteLogWakeups` (in-process signals).
//! - `search.rs`: `SqliteSearchIndex`, the order search on FTS5, in a file of its own.
//! - `write.rs`: write transactions, each in this process's turn at the file.
//! - `codec.rs`: how values are stored; `error.rs`: sqlx errors as port errors.
//! - `close.rs`: checkpoint the log into the file and close; `backup.rs`: copies while in use.
#![forbid(unsafe_code)]

mod backup;
mod batch;
mod checkpoints;
mod close;
mod codec;
mod error;
mod event_store;
mod group_batch;
mod group_commit;
mod leases;
mod projection_store;
mod queries;
mod rebuild;
mod rows;
mod search;
mod snapshot_store;
mod write;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use backup::{Backup, BackupFile, backup};
pub use close::{Checkpoint, close};
pub use error::{BackupError, CloseError};
pub use event_store::SqliteEventStore;
pub use leases::{SqliteLeases, SqliteLogWakeups};
pub use projection_store::SqliteProjectionStore;
pub use queries::SqliteReadModels;
pub use search::SqliteSearchIndex;
pub use snapshot_store::SqliteSnapshotStore;
// The errors of `connect` and `migrate`, shared by every database adapter.
pub use strata_ports::{ConnectError, MigrateError};

/// The schema of the main database file, embedded from `migrations/`. The search file's schema
/// is created by [`SqliteSearchIndex`]'s `prepare`, as a search engine's index would be.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Where the database lives and how to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteSettings {
    /// The main database file (created with its directory when missing).
    pub path: PathBuf,
    /// The most connections the pool opens (readers run in parallel; writers take turns).
    pub max_connections: u32,
    /// How long a writer waits for the write lock (and an operation for a connection) before it
    /// fails as unavailable.
    pub busy_timeout: Duration,
}

impl SqliteSettings {
    /// Settings for `path` with the defaults: 8 connections, 5 s of patience.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_connections: 8,
            busy_timeout: Duration::from_secs(5),
        }
    }

    /// The file of the search index, beside the main one: `strata.db` → `strata-search.db`.
    pub fn search_path(&self) -> PathBuf {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "strata".to_owned());
        let name = match self.path.extension() {
            Some(ext) => format!("{stem}-search.{}", ext.to_string_lossy()),
            None => format!("{stem}-search"),
        };
        self.path.with_file_name(name)
    }

    fn options(&self, path: &Path) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives a power cut, as a PostgreSQL commit does.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(self.busy_timeout)
    }

    async fn pool(&self, path: &Path) -> Result<SqlitePool, ConnectError> {
        let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => dir,
            None => Path::new("."),
        };
        let invalid = |e: std::io::Error| {
            ConnectError::InvalidSettings(format!("cannot create {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(invalid)?;
        // The canonical name: this process's writers take turns per file (`write.rs`), and two
        // spellings of one path must be one file there.
        let path = match path.file_name() {
            Some(name) => std::fs::canonicalize(dir).map_err(invalid)?.join(name),
            None => path.to_path_buf(),
        };
        SqlitePoolOptions::new()
            // Two at least: a projection batch holds one and reads the log on another.
            .max_connections(self.max_connections.max(2))
            .acquire_timeout(self.busy_timeout)
            .after_release(|conn, _| Box::pin(still_usable(conn)))
            .connect_with(self.options(&path))
            .await
            .map_err(|e| error::connect_error(&e, &path))
    }
}

/// Whether a connection given back to the pool may serve again. SQLite ends a transaction by
/// itself on some errors (a full disk, an I/O error, `RAISE(ROLLBACK)`); sqlx's ROLLBACK then
/// fails and its count of open transactions stays up, so every later `BEGIN` on the connection
/// would be refused ("non-zero transaction depth"). Such a connection is closed instead. A
/// dropped transaction's rollback may still be queued on the connection's thread: the ping
/// waits for it before the count is read again (only when the count is up, so the usual release
/// costs nothing).
async fn still_usable(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

/// Opens (creating when missing) the main database file and one connection of it.
///
/// # Errors
/// [`ConnectError::InvalidSettings`] when the file or its directory cannot be created;
/// [`ConnectError::Unavailable`] when it cannot be opened now.
pub async fn connect(settings: &SqliteSettings) -> Result<SqlitePool, ConnectError> {
    settings.pool(&settings.path).await
}

/// Opens (creating when missing) the search index's file, [`SqliteSettings::search_path`].
///
/// # Errors
/// As for [`connect`].
pub async fn connect_search(settings: &SqliteSettings) -> Result<SqlitePool, ConnectError> {
    settings.pool(&settings.search_path()).await
}

/// Brings the main database's schema up to date; running it again is harmless.
///
/// # Errors
/// [`MigrateError::Unavailable`] when the database is locked for too long;
/// [`MigrateError::Failed`] when a migration fails or the applied history does not match.
pub async fn migrate(pool: &SqlitePool) -> Result<(), MigrateError> {
    // sqlx takes no lock to migrate SQLite: two processes opening a new file at once (the
    // server and a projector) can both apply a migration, and the later one fails on what the
    // other created. Each migration is its own transaction, so the loser changed nothing; once
    // everything is applied, that failure is a success, and otherwise it tries again.
    let mut attempt = 1;
    loop {
        let failed = match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(error) => error::migrate_error(&error),
        };
        if is_migrated(pool).await.unwrap_or(false) {
            return Ok(());
        }
        if attempt >= MIGRATE_ATTEMPTS {
            return Err(failed);
        }
        tracing::debug!(attempt, error = %failed, "migration raced another process; again");
        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
        attempt += 1;
    }
}

/// How often [`migrate`] tries when another process migrates the same file at the same time.
const MIGRATE_ATTEMPTS: u32 = 5;

/// Whether every migration of this build has been applied (`false` on an empty database).
///
/// # Errors
/// [`MigrateError::Unavailable`] when the database cannot be read now.
pub async fn is_migrated(pool: &SqlitePool) -> Result<bool, MigrateError> {
    let execute = |e| error::migrate_error(&sqlx::migrate::MigrateError::Execute(e));
    let table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(pool)
    .await
    .map_err(execute)?;
    if table.is_none() {
        return Ok(false);
    }
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
            .map_err(execute)?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .all(|m| applied.contains(&m.version)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::Connection;

    use super::*;

    #[tokio::test]
    async fn a_connection_whose_transaction_sqlite_ended_is_not_handed_out_again() {
        let dir = tempfile::tempdir().unwrap();
        // Two connections: whichever the pool hands out next, the broken one is among them.
        let settings = SqliteSettings {
            max_connections: 2,
            ..SqliteSettings::at(dir.path().join("strata.db"))
        };
        let pool = settings.pool(&settings.path).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE t (x INTEGER);
             CREATE TRIGGER ends BEFORE INSERT ON t BEGIN SELECT RAISE(ROLLBACK, 'ended'); END;",
        )
        .execute(&pool)
        .await
        .unwrap();
        {
            let mut conn = pool.acquire().await.unwrap();
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.unwrap();
            let ended = sqlx::query("INSERT INTO t VALUES (1)")
                .execute(&mut *tx)
                .await;
            assert!(ended.unwrap_err().to_string().contains("ended"));
            // SQLite ended the transaction: sqlx's ROLLBACK fails, its count stays up.
            assert!(tx.rollback().await.is_err());
            assert!(conn.is_in_transaction());
        }

        let mut held = Vec::new();
        for _ in 0..2 {
            let mut conn = pool.acquire().await.unwrap();
            assert!(!conn.is_in_transaction());
            conn.begin_with("BEGIN IMMEDIATE")
                .await
                .unwrap()
                .rollback()
                .await
                .unwrap();
            held.push(conn);
        }
    }

    #[test]
    fn the_search_file_sits_beside_the_main_one() {
        assert_eq!(
            SqliteSettings::at("data/strata.db").search_path(),
            PathBuf::from("data/strata-search.db")
        );
        assert_eq!(
            SqliteSettings::at("/var/lib/strata/events").search_path(),
            PathBuf::from("/var/lib/strata/events-search")
        );
    }
}
