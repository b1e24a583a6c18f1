//! Which storage a `DATABASE_URL` names, for the binaries: PostgreSQL, a SQLite file, or (no
//! URL) the embedded default, a SQLite file in the data directory. Both binaries read the same
//! variables the same way, so this lives in the wiring both use.

use std::fmt;
use std::path::{Path, PathBuf};

use strata_ports::redact_url;

/// The file of the embedded database in the data directory (its search index sits beside it).
pub const SQLITE_FILE: &str = "strata.db";

/// Why a `DATABASE_URL` names no storage Strata can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error(
        "DATABASE_URL must start with postgres://, postgresql:// or sqlite:// (got {0:?}); leave it unset to store everything in STRATA_DATA_DIR"
    )]
    UnsupportedDatabaseUrl(String),
    #[error(
        "DATABASE_URL names no SQLite file: {0:?} (an in-memory database would lose everything at exit)"
    )]
    NoSqliteFile(String),
}

/// Where the event log, the read models and (unless Elasticsearch is set) the search index live.
#[derive(Clone, PartialEq, Eq)]
pub enum Storage {
    /// PostgreSQL at this URL.
    Postgres(String),
    /// SQLite in this file, with the search index in a file beside it.
    Sqlite(PathBuf),
}

impl fmt::Debug for Storage {
    // A PostgreSQL URL may carry a password, and settings end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(url) => write!(f, "Postgres({})", redact_url(url)),
            Self::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
        }
    }
}

/// A URL from the command line or the environment that may carry a password (a database, a
/// search cluster): its `Debug` and `Display` show it through [`redact_url`], so settings can
/// be logged and printed; [`SecretUrl::expose`] gives the URL to the code that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL itself, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl Storage {
    /// The storage a `DATABASE_URL` names; without one, SQLite in `data_dir`.
    ///
    /// # Errors
    /// A URL of another database, or a SQLite URL without a file.
    pub fn resolve(database_url: Option<&str>, data_dir: &Path) -> Result<Self, StorageError> {
        let Some(url) = database_url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(Self::Sqlite(data_dir.join(SQLITE_FILE)));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        else {
            // Echoed back to the operator: never with its password.
            return Err(StorageError::UnsupportedDatabaseUrl(redact_url(url)));
        };
        // Options after `?` are this server's to choose (WAL, busy timeout): ignored.
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err(StorageError::NoSqliteFile(url.to_owned()));
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_database_url_everything_is_stored_in_the_data_directory() {
        let dir = Path::new("data");
        assert_eq!(
            Storage::resolve(None, dir).unwrap(),
            Storage::Sqlite(PathBuf::from("data/strata.db"))
        );
        assert_eq!(
            Storage::resolve(Some("  "), dir).unwrap(),
            Storage::Sqlite(PathBuf::from("data/strata.db"))
        );
    }

    #[test]
    fn database_urls_choose_postgresql_or_a_sqlite_file() {
        let dir = Path::new("data");
        let pg = "postgres://app:secret@db:5432/strata";
        assert_eq!(
            Storage::resolve(Some(pg), dir).unwrap(),
            Storage::Postgres(pg.to_owned())
        );
        assert!(!format!("{:?}", Storage::Postgres(pg.to_owned())).contains("secret"));
        assert_eq!(
            Storage::resolve(Some("sqlite:///var/lib/strata/events.db"), dir).unwrap(),
            Storage::Sqlite(PathBuf::from("/var/lib/strata/events.db"))
        );
        assert_eq!(
            Storage::resolve(Some("sqlite://local.db?mode=rwc"), dir).unwrap(),
            Storage::Sqlite(PathBuf::from("local.db"))
        );
        assert!(matches!(
            Storage::resolve(Some("mysql://db/strata"), dir),
            Err(StorageError::UnsupportedDatabaseUrl(_))
        ));
        for memory in ["sqlite::memory:", "sqlite://"] {
            assert!(matches!(
                Storage::resolve(Some(memory), dir),
                Err(StorageError::NoSqliteFile(_))
            ));
        }
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        let secret = SecretUrl::from("postgres://app:s3cret@db/strata");
        assert!(!format!("{secret:?} {secret}").contains("s3cret"));
        assert_eq!(secret.expose(), "postgres://app:s3cret@db/strata");
        let refused = Storage::resolve(Some("mysql://u:s3cret@h/db"), Path::new("d")).unwrap_err();
        assert!(!refused.to_string().contains("s3cret"), "{refused}");
        let storage = Storage::Postgres("postgres://app:s3cret@db/strata".to_owned());
        assert!(!format!("{storage:?}").contains("s3cret"));
    }
}
