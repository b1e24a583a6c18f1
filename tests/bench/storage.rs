//! A fresh, empty storage per workload: a new PostgreSQL database on the server of the URL
//! (dropped afterwards), or a SQLite file in a new temporary directory.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strata_adapters_postgres::{
    PgEventStore, PgLeases, PgLogWakeups, PgProjectionStore, PgReadModels, PgSettings,
    PgSnapshotStore,
};
use strata_adapters_sqlite::{
    SqliteEventStore, SqliteLeases, SqliteProjectionStore, SqliteReadModels, SqliteSettings,
    SqliteSnapshotStore,
};
use strata_application::projection::WorkerDeps;
use strata_ports::{
    EventStore, LogWakeups, ProjectionLeases, ProjectionStore, ReadModels, SnapshotStore,
    SystemClock,
};
use strata_wiring::Storage;
use uuid::Uuid;

/// The adapters of one fresh storage.
pub struct Fresh {
    pub events: Arc<dyn EventStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub projections: Arc<dyn ProjectionStore>,
    pub leases: Arc<dyn ProjectionLeases>,
    pub models: Arc<dyn ReadModels>,
    pub wakeups: Arc<dyn LogWakeups>,
    /// Where it is, as `DATABASE_URL` of the binaries says it.
    pub url: String,
    /// `postgres` or `sqlite`, for the output.
    pub kind: &'static str,
    cleanup: Cleanup,
}

enum Cleanup {
    /// Drop this database on the server at this URL.
    Postgres { server: String, database: String },
    /// Remove this directory.
    Sqlite(tempfile::TempDir),
}

impl Fresh {
    /// Creates and migrates an empty storage where `storage` says, with `connections` pooled.
    pub async fn create(storage: &Storage, connections: u32) -> anyhow::Result<Self> {
        match storage {
            Storage::Postgres(server) => {
                let database = format!("strata_bench_{}", Uuid::new_v4().simple());
                let (base, _) = server
                    .rsplit_once('/')
                    .context("DATABASE_URL has no database part")?;
                let url = format!("{base}/{database}");
                let settings = PgSettings {
                    url: url.clone(),
                    max_connections: connections,
                    acquire_timeout: Duration::from_secs(30),
                };
                strata_adapters_postgres::create_database_if_missing(&settings)
                    .await
                    .context("cannot create the benchmark database")?;
                let pool = strata_adapters_postgres::connect(&settings).await?;
                strata_adapters_postgres::migrate(&pool).await?;
                Ok(Self {
                    events: Arc::new(PgEventStore::new(pool.clone())),
                    snapshots: Arc::new(PgSnapshotStore::new(pool.clone())),
                    projections: Arc::new(PgProjectionStore::new(pool.clone())),
                    leases: Arc::new(PgLeases::new(pool.clone())),
                    models: Arc::new(PgReadModels::new(pool.clone())),
                    wakeups: Arc::new(PgLogWakeups::new(pool)),
                    url,
                    kind: "postgres",
                    cleanup: Cleanup::Postgres {
                        server: server.clone(),
                        database,
                    },
                })
            }
            Storage::Sqlite(path) => {
                // The file's directory only says where to put the temporary one.
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
                let dir = match parent {
                    Some(parent) => {
                        std::fs::create_dir_all(parent)?;
                        tempfile::tempdir_in(parent)?
                    }
                    None => tempfile::tempdir()?,
                };
                let file = dir.path().join("strata.db");
                let settings = SqliteSettings {
                    max_connections: connections,
                    ..SqliteSettings::at(file.clone())
                };
                let pool = strata_adapters_sqlite::connect(&settings).await?;
                strata_adapters_sqlite::migrate(&pool).await?;
                let events = SqliteEventStore::new(pool.clone());
                Ok(Self {
                    wakeups: Arc::new(events.wakeups()),
                    events: Arc::new(events),
                    snapshots: Arc::new(SqliteSnapshotStore::new(pool.clone())),
                    projections: Arc::new(SqliteProjectionStore::new(pool.clone())),
                    leases: Arc::new(SqliteLeases::new(pool.clone())),
                    models: Arc::new(SqliteReadModels::new(pool)),
                    url: format!("sqlite://{}", file.display()),
                    kind: "sqlite",
                    cleanup: Cleanup::Sqlite(dir),
                })
            }
        }
    }

    /// What a projection worker on this storage needs; `live` subscribes it to the log's
    /// wake-ups (a catch-up polls no head it has reached).
    pub fn worker_deps(&self, live: bool) -> WorkerDeps {
        WorkerDeps {
            events: self.events.clone(),
            store: self.projections.clone(),
            leases: self.leases.clone(),
            clock: Arc::new(SystemClock),
            wakeups: live.then(|| self.wakeups.clone()),
        }
    }

    /// Removes the storage.
    pub async fn remove(self) -> anyhow::Result<()> {
        drop(self.events);
        drop(self.snapshots);
        drop(self.projections);
        drop(self.leases);
        drop(self.models);
        drop(self.wakeups);
        match self.cleanup {
            Cleanup::Postgres { server, database } => {
                let pool = sqlx::PgPool::connect(&server).await?;
                // The name is ours, made of a fixed prefix and hex digits.
                let sql = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await?;
                pool.close().await;
            }
            Cleanup::Sqlite(dir) => dir.close()?,
        }
        Ok(())
    }
}
