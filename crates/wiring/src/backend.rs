//! What an opened storage gives the binaries: the server's [`Stores`], the projection workers'
//! adapters and pacing, and the SQLite files to close at the end ([`StorageFiles`]).

use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgPool, SqlitePool};
use strata_adapters_elastic::{ElasticSettings, EsSearchIndex};
use strata_adapters_postgres::{
    PgEventStore, PgLeases, PgLogWakeups, PgProjectionStore, PgReadModels, PgSearchIndex,
    PgSettings, PgSnapshotStore,
};
use strata_adapters_sqlite::{
    SqliteEventStore, SqliteLeases, SqliteProjectionStore, SqliteReadModels, SqliteSnapshotStore,
};
use strata_application::CommandConfig;
use strata_application::projection::{ProjectorConfig, WorkerDeps};
use strata_ports::{EventStore, ReadModels, SearchIndex, SnapshotStore, SystemClock};

use crate::error::WiringError;

/// The storage ports the server reads and writes.
#[derive(Clone)]
pub struct Stores {
    pub events: Arc<dyn EventStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub read_models: Arc<dyn ReadModels>,
    pub search: Arc<dyn SearchIndex>,
    /// How often a command that lost a race to a concurrent writer is tried again.
    pub command_retries: u32,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

impl Stores {
    /// The PostgreSQL adapters on one pool (search too: its full-text search).
    pub(crate) fn postgres(pool: &PgPool) -> Self {
        Self {
            events: Arc::new(PgEventStore::new(pool.clone())),
            snapshots: Arc::new(PgSnapshotStore::new(pool.clone())),
            read_models: Arc::new(PgReadModels::new(pool.clone())),
            search: Arc::new(PgSearchIndex::new(pool.clone())),
            command_retries: CommandConfig::default().max_retries,
        }
    }

    /// The PostgreSQL adapters on a pool that connects on first use, so the database need not
    /// be up yet: what is down shows in the server's readiness, not as a start-up error.
    ///
    /// # Errors
    /// [`WiringError::ConnectPostgres`] for a malformed URL.
    pub fn postgres_lazy(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, WiringError> {
        let pool = strata_adapters_postgres::connect_lazy(&PgSettings {
            url: url.to_owned(),
            max_connections,
            acquire_timeout,
        })
        .map_err(WiringError::ConnectPostgres)?;
        Ok(Self::postgres(&pool))
    }

    /// The SQLite adapters: `events` on the main file's pool, and `search` (the embedded index
    /// on its own file, unless Elasticsearch replaces it).
    pub(crate) fn sqlite(
        events: &SqliteEventStore,
        pool: &SqlitePool,
        search: Arc<dyn SearchIndex>,
    ) -> Self {
        Self {
            events: Arc::new(events.clone()),
            snapshots: Arc::new(SqliteSnapshotStore::new(pool.clone())),
            read_models: Arc::new(SqliteReadModels::new(pool.clone())),
            search,
            // One writer at a time, and the projection batches take turns with the commands:
            // a burst of commands on one stream needs more rounds to land (measured: 32
            // clients on one order, a tenth ran out of 16 retries; none of 32).
            command_retries: 2 * CommandConfig::default().max_retries,
        }
    }
}

/// An opened storage back-end: the server's stores, and what projection workers run on.
#[derive(Debug)]
pub struct Backend {
    pub stores: Stores,
    /// The read side's adapters the projection workers (and the operator's tools) run on.
    pub workers: WorkerDeps,
    /// How workers in the process that appends pace themselves on this storage.
    pub pacing: ProjectorConfig,
    /// The SQLite files (the main file, the search index's) to close at the end.
    pub files: StorageFiles,
}

/// How long the workers on SQLite let appends gather before a batch: SQLite has one writer,
/// and a batch per append would keep a burst of commands queueing for the write lock (measured:
/// of 32 clients racing on one order, a third ran out of retries with 20 ms, a tenth with 50 ms).
/// Read-your-writes waits this much longer at most.
pub const SQLITE_LINGER: Duration = Duration::from_millis(50);

pub(crate) fn pg_backend(pool: &PgPool, search: Option<Arc<dyn SearchIndex>>) -> Backend {
    let mut stores = Stores::postgres(pool);
    if let Some(search) = search {
        stores.search = search;
    }
    Backend {
        stores,
        workers: pg_worker_deps(pool),
        pacing: ProjectorConfig::default(),
        files: StorageFiles::default(),
    }
}

fn pg_worker_deps(pool: &PgPool) -> WorkerDeps {
    WorkerDeps {
        events: Arc::new(PgEventStore::new(pool.clone())),
        store: Arc::new(PgProjectionStore::new(pool.clone())),
        leases: Arc::new(PgLeases::new(pool.clone())),
        clock: Arc::new(SystemClock),
        wakeups: Some(Arc::new(PgLogWakeups::new(pool.clone()))),
    }
}

/// The SQLite back-end on the main file's `pool`, searching `search`; `files` are the pools to
/// close at the end. The workers wake on this process's appends (another process's wake
/// nobody: its workers poll).
pub(crate) fn sqlite_backend(
    pool: SqlitePool,
    search: Arc<dyn SearchIndex>,
    files: Vec<SqlitePool>,
) -> Backend {
    let events = SqliteEventStore::new(pool.clone());
    Backend {
        stores: Stores::sqlite(&events, &pool, search),
        workers: WorkerDeps {
            events: Arc::new(events.clone()),
            store: Arc::new(SqliteProjectionStore::new(pool.clone())),
            leases: Arc::new(SqliteLeases::new(pool)),
            clock: Arc::new(SystemClock),
            wakeups: Some(Arc::new(events.wakeups())),
        },
        pacing: ProjectorConfig {
            linger: SQLITE_LINGER,
            ..ProjectorConfig::default()
        },
        files: StorageFiles(files),
    }
}

/// The SQLite files a process opened, to checkpoint and close once it has stopped using them
/// (none on PostgreSQL).
#[derive(Debug, Default)]
pub struct StorageFiles(Vec<SqlitePool>);

impl StorageFiles {
    /// Checkpoints each file's write-ahead log into it and closes it. Without it the commits of
    /// the last moments stay in `strata.db-wal` when the process exits (its pools are never
    /// closed), and a copy of `strata.db` alone misses them. Another process still using a file
    /// keeps its log in use: the adapter warns.
    pub async fn close(self) {
        for pool in self.0 {
            // The adapter logs what it did, and warns when another process kept the log in use.
            if let Err(error) = strata_adapters_sqlite::close(&pool).await {
                tracing::error!(%error, "cannot checkpoint the SQLite database; its -wal file stays");
            }
        }
    }
}

/// The Elasticsearch (or OpenSearch) index at `url`, its names starting with `prefix`.
///
/// # Errors
/// [`WiringError::Elasticsearch`] for a URL or an index prefix the client refuses.
pub fn elasticsearch(url: &str, prefix: &str) -> Result<Arc<dyn SearchIndex>, WiringError> {
    let index = EsSearchIndex::new(&ElasticSettings::for_cluster(url, prefix))
        .map_err(|error| WiringError::Elasticsearch(Box::new(error)))?;
    Ok(Arc::new(index))
}
