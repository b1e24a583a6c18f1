//! Why a database could not be opened or brought up to date: the errors of every database
//! adapter's `connect` and `migrate`, defined once. They are not a port's (the application never
//! opens a database), but they are storage-neutral, as [`crate::redact_url`] is, and this is the
//! one crate every adapter and the wiring share.

/// Why bringing a database's schema up to date failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrateError {
    /// The database cannot be reached, or is locked, now: worth retrying later.
    #[error("database unavailable while migrating: {0}")]
    Unavailable(String),
    /// A migration failed, or the database's migration history does not match this build.
    #[error("migration failed: {0}")]
    Failed(String),
}

/// Why a database could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The settings cannot describe a connection (a malformed URL; a file or directory that
    /// cannot be created, or is not a database).
    #[error("invalid database settings: {0}")]
    InvalidSettings(String),
    /// The database cannot be reached or opened now: worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A database server answered, but refused (authentication, unknown database, ...).
    #[error("database refused the connection: {0}")]
    Refused(String),
}
