//! The one place where sqlx errors become port errors (and the storage errors of `strata-ports`),
//! plus this crate's own public error.

use strata_ports::{ConnectError, EventStoreError, MigrateError, ReadModelError, SnapshotError};

/// The unique constraint on `events (stream_id, stream_version)`.
const STREAM_VERSION_KEY: &str = "events_stream_version_key";
/// The primary key of `streams`.
const STREAMS_PKEY: &str = "streams_pkey";
/// The primary key of `idempotency_keys (principal, key)`.
const IDEMPOTENCY_PKEY: &str = "idempotency_keys_pkey";

/// Why creating the roles or granting their privileges failed ([`crate::PgRoles`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolesError {
    /// A prefix that would not make plain role names.
    #[error(
        "invalid role prefix {0:?}: a lowercase letter or _, then at most 47 lowercase letters, digits or _"
    )]
    InvalidPrefix(String),
    /// The server refused a statement of the script.
    #[error("roles script failed: {0}")]
    Failed(String),
}

/// What a sqlx error means to this crate, before it is given a port's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A concurrent writer took the stream versions this append wanted.
    StreamVersionTaken,
    /// The (principal, key) of the idempotency claim is already recorded.
    IdempotencyKeyTaken,
    /// The database cannot be reached now.
    Unavailable(String),
    /// Anything else.
    Backend(String),
}

impl Failure {
    /// Classifies a sqlx error: constraint violations we expect by name, connectivity by kind.
    pub(crate) fn of(error: &sqlx::Error) -> Self {
        match error {
            sqlx::Error::Database(db) => {
                if db.is_unique_violation() {
                    match db.constraint() {
                        Some(STREAM_VERSION_KEY | STREAMS_PKEY) => return Self::StreamVersionTaken,
                        Some(IDEMPOTENCY_PKEY) => return Self::IdempotencyKeyTaken,
                        _ => {}
                    }
                }
                let code = db.code();
                if code.as_deref().is_some_and(is_unavailable_code) {
                    Self::Unavailable(error.to_string())
                } else {
                    Self::Backend(error.to_string())
                }
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(error.to_string()),
            other => Self::Backend(other.to_string()),
        }
    }
}

/// SQLSTATEs that say "not now" rather than "no": connection exceptions (class 08), the server
/// shutting down or starting up, insufficient resources (class 53: too many connections, out of
/// memory or disk), and the transient conflicts of concurrency — serialization failure, deadlock,
/// lock timeout, a cancelled (timed-out) statement. Retrying later can succeed; a projector must
/// not park an event for them.
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "55P03" | "57014"
        )
}

/// Maps a sqlx error from a read, or from an append when no richer context applies.
pub(crate) fn event_store_error(error: &sqlx::Error) -> EventStoreError {
    match Failure::of(error) {
        Failure::Unavailable(message) => {
            tracing::warn!(error = %message, "event store unavailable");
            EventStoreError::Unavailable(message)
        }
        Failure::StreamVersionTaken | Failure::IdempotencyKeyTaken | Failure::Backend(_) => {
            let message = error.to_string();
            tracing::warn!(error = %message, "event store failed");
            EventStoreError::Backend(message)
        }
    }
}

/// Maps a sqlx error of the snapshot store.
pub(crate) fn snapshot_error(error: &sqlx::Error) -> SnapshotError {
    match Failure::of(error) {
        Failure::Unavailable(message) => {
            tracing::warn!(error = %message, "snapshot store unavailable");
            SnapshotError::Unavailable(message)
        }
        _ => {
            let message = error.to_string();
            tracing::warn!(error = %message, "snapshot store failed");
            SnapshotError::Backend(message)
        }
    }
}

/// Maps a sqlx error of the read side.
pub(crate) fn read_model_error(error: &sqlx::Error) -> ReadModelError {
    match Failure::of(error) {
        Failure::Unavailable(message) => {
            tracing::warn!(error = %message, "read model storage unavailable");
            ReadModelError::Unavailable(message)
        }
        _ => {
            let message = error.to_string();
            tracing::warn!(error = %message, "read model storage failed");
            ReadModelError::Backend(message)
        }
    }
}

/// Maps a sqlx error of [`crate::connect`].
pub(crate) fn connect_error(error: &sqlx::Error) -> ConnectError {
    match error {
        sqlx::Error::Configuration(_) | sqlx::Error::InvalidArgument(_) => {
            ConnectError::InvalidSettings(error.to_string())
        }
        _ => match Failure::of(error) {
            Failure::Unavailable(message) => ConnectError::Unavailable(message),
            _ => ConnectError::Refused(error.to_string()),
        },
    }
}

/// Maps a sqlx migration error of [`crate::migrate`].
pub(crate) fn migrate_error(error: &sqlx::migrate::MigrateError) -> MigrateError {
    match error {
        sqlx::migrate::MigrateError::Execute(inner)
        | sqlx::migrate::MigrateError::ExecuteMigration(inner, _) => match Failure::of(inner) {
            Failure::Unavailable(message) => MigrateError::Unavailable(message),
            _ => MigrateError::Failed(error.to_string()),
        },
        _ => MigrateError::Failed(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_and_io_errors_are_unavailable() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for error in [sqlx::Error::PoolTimedOut, sqlx::Error::Io(refused)] {
            assert!(matches!(
                event_store_error(&error),
                EventStoreError::Unavailable(_)
            ));
        }
    }

    #[test]
    fn other_errors_are_backend_failures() {
        let error = sqlx::Error::RowNotFound;
        assert!(matches!(
            event_store_error(&error),
            EventStoreError::Backend(_)
        ));
        assert!(matches!(snapshot_error(&error), SnapshotError::Backend(_)));
    }

    #[test]
    fn connection_exception_codes_are_unavailable() {
        assert!(is_unavailable_code("08006"));
        assert!(is_unavailable_code("57P01"));
        assert!(!is_unavailable_code("23505"));
    }

    #[test]
    fn transient_concurrency_failures_are_unavailable_and_data_errors_are_not() {
        for code in ["40001", "40P01", "55P03", "57014", "53300", "53200"] {
            assert!(is_unavailable_code(code), "{code}");
        }
        for code in ["22003", "23502", "42P01", "XX000"] {
            assert!(!is_unavailable_code(code), "{code}");
        }
    }
}
