//! Development mode (`--with-projector`): the projection workers in the server's process, on its
//! pool, stopped with it. In production `strata-projector run` runs the same workers
//! (`strata_application::projection::run_workers`) in a process of its own.

use std::sync::Arc;

use sqlx::PgPool;
use strata_adapters_postgres::{PgEventStore, PgLeases, PgLogWakeups, PgProjectionStore};
use strata_application::projection::{self, ProjectorConfig, WorkerDeps, run_workers};
use strata_ports::{SearchIndex, SystemClock};
use tokio::sync::watch;

/// Every projection's worker, ready to run.
pub struct InProcessProjector {
    deps: WorkerDeps,
    search: Arc<dyn SearchIndex>,
}

impl std::fmt::Debug for InProcessProjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessProjector").finish_non_exhaustive()
    }
}

impl InProcessProjector {
    /// Wires the read side's PostgreSQL adapters on `pool`, and `search`.
    pub fn on(pool: PgPool, search: Arc<dyn SearchIndex>) -> Self {
        let deps = WorkerDeps {
            events: Arc::new(PgEventStore::new(pool.clone())),
            store: Arc::new(PgProjectionStore::new(pool.clone())),
            leases: Arc::new(PgLeases::new(pool.clone())),
            clock: Arc::new(SystemClock),
            wakeups: Some(Arc::new(PgLogWakeups::new(pool))),
        };
        Self { deps, search }
    }

    /// Runs every projection until `stop` turns true. A `strata-projector` running elsewhere
    /// holds the leases: these workers then wait as standbys.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        run_workers(
            &self.deps,
            projection::all(self.deps.events.clone(), self.search.clone()),
            &ProjectorConfig::default(),
            &stop,
        )
        .await;
    }
}
