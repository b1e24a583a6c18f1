//! The one place where sqlx errors become port errors (and the storage errors of `strata-ports`),
//! plus this crate's own public errors.

use std::path::{Path, PathBuf};

use strata_ports::{
    ConnectError, EventStoreError, MigrateError, ReadModelError, SearchError, SnapshotError,
};

/// Why [`crate::close`] could not checkpoint the write-ahead log (the pool is closed all the
/// same; the log stays beside the file and the next opening replays it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    /// I/O, or a file that is not a database.
    #[error("cannot checkpoint the write-ahead log of {0}")]
    Failed(String),
}

/// Why [`crate::backup`] wrote no (complete) copy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    /// The database file to copy does not exist.
    #[error("no SQLite database at {}", .0.display())]
    NoDatabase(PathBuf),
    /// A target file exists: a backup never overwrites one.
    #[error("{} exists already: a backup never overwrites a file; choose a new path", .0.display())]
    TargetExists(PathBuf),
    /// A target path SQLite cannot name, or whose directory cannot be made.
    #[error("invalid backup path {0}")]
    InvalidTarget(String),
    /// The database stayed locked: worth retrying later.
    #[error("database unavailable during the backup: {0}")]
    Unavailable(String),
    /// I/O, or a file that is not a database.
    #[error("backup failed: {0}")]
    Failed(String),
}

/// Whether a sqlx error means "not now" rather than "no": the write lock held past the busy
/// timeout (SQLITE_BUSY, SQLITE_LOCKED, with their extended codes), a pool timeout, I/O.
pub(crate) fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            // The primary result code is the low byte of an extended one.
            .is_some_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 13 | 14)),
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// `error` as a port's error: `unavailable` when it means "not now", else `backend`; logged
/// under `what` (the search index is not: its callers report its failures).
fn classify<E>(
    error: &sqlx::Error,
    what: Option<&str>,
    unavailable: fn(String) -> E,
    backend: fn(String) -> E,
) -> E {
    let message = error.to_string();
    let retryable = is_unavailable(error);
    if let Some(what) = what {
        let outcome = if retryable { "unavailable" } else { "failed" };
        tracing::warn!(error = %message, "{what} {outcome}");
    }
    if retryable {
        unavailable(message)
    } else {
        backend(message)
    }
}

pub(crate) fn event_store_error(error: &sqlx::Error) -> EventStoreError {
    classify(
        error,
        Some("event store"),
        EventStoreError::Unavailable,
        EventStoreError::Backend,
    )
}

pub(crate) fn snapshot_error(error: &sqlx::Error) -> SnapshotError {
    classify(
        error,
        Some("snapshot store"),
        SnapshotError::Unavailable,
        SnapshotError::Backend,
    )
}

pub(crate) fn read_model_error(error: &sqlx::Error) -> ReadModelError {
    classify(
        error,
        Some("read model storage"),
        ReadModelError::Unavailable,
        ReadModelError::Backend,
    )
}

pub(crate) fn search_error(error: &sqlx::Error) -> SearchError {
    classify(error, None, SearchError::Unavailable, SearchError::Backend)
}

pub(crate) fn connect_error(error: &sqlx::Error, path: &Path) -> ConnectError {
    let message = format!("{}: {error}", path.display());
    if is_unavailable(error) && !matches!(error, sqlx::Error::Io(_)) {
        ConnectError::Unavailable(message)
    } else {
        ConnectError::InvalidSettings(message)
    }
}

pub(crate) fn migrate_error(error: &sqlx::migrate::MigrateError) -> MigrateError {
    match error {
        sqlx::migrate::MigrateError::Execute(inner)
        | sqlx::migrate::MigrateError::ExecuteMigration(inner, _)
            if is_unavailable(inner) =>
        {
            MigrateError::Unavailable(error.to_string())
        }
        _ => MigrateError::Failed(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_unavailable_and_missing_rows_are_not() {
        assert!(matches!(
            event_store_error(&sqlx::Error::PoolTimedOut),
            EventStoreError::Unavailable(_)
        ));
        assert!(matches!(
            read_model_error(&sqlx::Error::RowNotFound),
            ReadModelError::Backend(_)
        ));
    }
}
