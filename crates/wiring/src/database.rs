//! Opening the storage a [`Storage`] names, and bringing its schema up to date: PostgreSQL, or
//! the embedded SQLite file (with its search index's file beside it).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgPool, SqlitePool};
use strata_adapters_postgres::{PgEventStore, PgSettings};
use strata_adapters_sqlite::{SqliteEventStore, SqliteSearchIndex, SqliteSettings};
use strata_ports::{EventStore, SearchIndex};

use crate::backend::{Backend, pg_backend, sqlite_backend};
use crate::error::WiringError;
use crate::storage::Storage;

/// An opened storage: a pool on PostgreSQL, or the main file's on SQLite.
pub struct Database(Pool);

enum Pool {
    Postgres(PgPool),
    Sqlite(SqliteSettings, SqlitePool),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Pool::Postgres(_) => f.write_str("Database(PostgreSQL)"),
            Pool::Sqlite(settings, _) => write!(f, "Database({})", settings.path.display()),
        }
    }
}

pub(crate) fn pg_settings(database_url: &str, max_connections: u32) -> PgSettings {
    PgSettings {
        url: database_url.to_owned(),
        max_connections,
        acquire_timeout: Duration::from_secs(5),
    }
}

fn sqlite_settings(path: &Path, max_connections: u32) -> SqliteSettings {
    SqliteSettings {
        max_connections,
        ..SqliteSettings::at(path)
    }
}

impl Database {
    /// Connects to the storage with at most `max_connections` per pool; a SQLite file is created
    /// when missing, a PostgreSQL database is not. Nothing is migrated.
    ///
    /// # Errors
    /// [`WiringError::ConnectPostgres`] or [`WiringError::OpenSqlite`].
    pub async fn open(storage: &Storage, max_connections: u32) -> Result<Self, WiringError> {
        match storage {
            Storage::Postgres(url) => {
                let pool = strata_adapters_postgres::connect(&pg_settings(url, max_connections))
                    .await
                    .map_err(WiringError::ConnectPostgres)?;
                Ok(Self(Pool::Postgres(pool)))
            }
            Storage::Sqlite(path) => {
                let settings = sqlite_settings(path, max_connections);
                let pool = strata_adapters_sqlite::connect(&settings)
                    .await
                    .map_err(|source| WiringError::OpenSqlite {
                        path: path.clone(),
                        source,
                    })?;
                Ok(Self(Pool::Sqlite(settings, pool)))
            }
        }
    }

    /// Opens the storage as [`Database::open`] does, creating the PostgreSQL database when it is
    /// missing, and applies the migrations (the server's start).
    ///
    /// # Errors
    /// As [`migrate`] and [`Database::open`].
    pub async fn open_migrated(
        storage: &Storage,
        max_connections: u32,
    ) -> Result<Self, WiringError> {
        if let Storage::Postgres(url) = storage {
            migrate_postgres(url).await?;
        }
        let database = Self::open(storage, max_connections).await?;
        if let Pool::Sqlite(settings, pool) = &database.0 {
            // The search index's file beside it needs no migration: its index is made by
            // `SearchIndex::prepare`.
            strata_adapters_sqlite::migrate(pool)
                .await
                .map_err(|source| WiringError::MigrateSqlite {
                    path: settings.path.clone(),
                    source,
                })?;
        }
        Ok(database)
    }

    /// Whether every migration of this build has been applied.
    ///
    /// # Errors
    /// [`WiringError::Migrate`] when the schema cannot be read, or its history does not match.
    pub async fn is_migrated(&self) -> Result<bool, WiringError> {
        Ok(match &self.0 {
            Pool::Postgres(pool) => strata_adapters_postgres::is_migrated(pool).await?,
            Pool::Sqlite(_, pool) => strata_adapters_sqlite::is_migrated(pool).await?,
        })
    }

    /// Brings the schema up to date; running it again is harmless.
    ///
    /// # Errors
    /// [`WiringError::MigrateAsOwner`] on PostgreSQL (where the role may be the reason),
    /// [`WiringError::MigrateSqlite`] naming the file on SQLite.
    pub async fn migrate(&self) -> Result<(), WiringError> {
        match &self.0 {
            Pool::Postgres(pool) => strata_adapters_postgres::migrate(pool)
                .await
                .map_err(WiringError::MigrateAsOwner),
            Pool::Sqlite(settings, pool) => {
                strata_adapters_sqlite::migrate(pool)
                    .await
                    .map_err(|source| WiringError::MigrateSqlite {
                        path: settings.path.clone(),
                        source,
                    })
            }
        }
    }

    /// Closes the pool (without a checkpoint: see [`crate::StorageFiles`]).
    async fn close(self) {
        match self.0 {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(_, pool) => pool.close().await,
        }
    }

    /// The event store, on its own.
    pub fn events(&self) -> Arc<dyn EventStore> {
        match &self.0 {
            Pool::Postgres(pool) => Arc::new(PgEventStore::new(pool.clone())),
            Pool::Sqlite(_, pool) => Arc::new(SqliteEventStore::new(pool.clone())),
        }
    }

    /// Every port on this storage, searching `search` when given (Elasticsearch), else the
    /// database's own full-text search: PostgreSQL's, or FTS5 in the SQLite file beside the
    /// main one (opened only then).
    ///
    /// # Errors
    /// [`WiringError::OpenSearchFile`].
    pub async fn backend(
        self,
        search: Option<Arc<dyn SearchIndex>>,
    ) -> Result<Backend, WiringError> {
        Ok(match self.0 {
            Pool::Postgres(pool) => pg_backend(&pool, search),
            Pool::Sqlite(settings, pool) => {
                let mut files = vec![pool.clone()];
                // The embedded index's file is opened only when it is the one searched.
                let search: Arc<dyn SearchIndex> = match search {
                    Some(search) => search,
                    None => {
                        let search = strata_adapters_sqlite::connect_search(&settings)
                            .await
                            .map_err(WiringError::OpenSearchFile)?;
                        files.push(search.clone());
                        Arc::new(SqliteSearchIndex::new(search))
                    }
                };
                sqlite_backend(pool, search, files)
            }
        })
    }
}

/// Creates the database (or SQLite file) if it is missing and applies the migrations.
///
/// # Errors
/// When the database cannot be reached, created or migrated.
pub async fn migrate(storage: &Storage) -> Result<(), WiringError> {
    match storage {
        Storage::Postgres(url) => migrate_postgres(url).await,
        Storage::Sqlite(_) => {
            Database::open_migrated(storage, 1).await?.close().await;
            Ok(())
        }
    }
}

/// Creates the PostgreSQL database if it is missing and applies the migrations, on a
/// connection of its own.
async fn migrate_postgres(url: &str) -> Result<(), WiringError> {
    let pg = pg_settings(url, 1);
    strata_adapters_postgres::create_database_if_missing(&pg)
        .await
        .map_err(WiringError::CreateDatabase)?;
    let pool = strata_adapters_postgres::connect(&pg)
        .await
        .map_err(WiringError::ConnectPostgres)?;
    strata_adapters_postgres::migrate(&pool)
        .await
        .map_err(WiringError::MigrateAsOwner)?;
    pool.close().await;
    Ok(())
}
