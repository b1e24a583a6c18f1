//! Development mode (`--with-projector`): the projection workers in the server's process, on its
//! pool, stopped with it. In production `strata-projector run` does this in a process of its own
//! (`strata_projector::startup::ReadSide`, whose wiring this mirrors: web must not depend on it).

use std::sync::Arc;

use sqlx::PgPool;
use strata_adapters_postgres::{PgEventStore, PgLeases, PgLogWakeup, PgProjectionStore};
use strata_application::projection::{self, ProjectionWorker, ProjectorConfig, WorkerDeps};
use strata_ports::{Generation, LogWakeup, SystemClock};
use tokio::sync::watch;

/// Every projection's worker, ready to run.
pub struct InProcessProjector {
    pool: PgPool,
    deps: WorkerDeps,
}

impl std::fmt::Debug for InProcessProjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessProjector").finish_non_exhaustive()
    }
}

impl InProcessProjector {
    /// Wires the read side's PostgreSQL adapters on `pool`.
    pub fn on(pool: PgPool) -> Self {
        let deps = WorkerDeps {
            events: Arc::new(PgEventStore::new(pool.clone())),
            store: Arc::new(PgProjectionStore::new(pool.clone())),
            leases: Arc::new(PgLeases::new(pool.clone())),
            clock: Arc::new(SystemClock),
        };
        Self { pool, deps }
    }

    /// Runs every projection until `stop` turns true; each worker has its own wake-up listener.
    /// A `strata-projector` running elsewhere holds the leases: these workers then wait.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let mut workers = tokio::task::JoinSet::new();
        for projection in projection::all() {
            let worker = ProjectionWorker::new(
                self.deps.clone(),
                projection,
                Generation::Live,
                ProjectorConfig::default(),
            );
            let pool = self.pool.clone();
            let stop = stop.clone();
            workers.spawn(async move {
                let wakeup: Option<Box<dyn LogWakeup>> = match PgLogWakeup::listen(&pool).await {
                    Ok(listener) => Some(Box::new(listener)),
                    Err(error) => {
                        tracing::warn!(%error, "cannot LISTEN for new events; polling only");
                        None
                    }
                };
                worker.run(stop, wakeup).await;
            });
        }
        while let Some(joined) = workers.join_next().await {
            if let Err(error) = joined {
                tracing::error!(%error, "a projection worker ended abnormally");
            }
        }
    }
}
