//! The projection workers in the server's process, stopped with it: always on SQLite (the
//! embedded deployment), and in development mode (`--with-projector`) on PostgreSQL. In
//! production on PostgreSQL `strata-projector run` runs the same workers
//! (`strata_application::projection::run_workers`) in a process of its own.

use std::sync::Arc;

use strata_application::projection::{self, ProjectorConfig, WorkerDeps, run_workers};
use strata_ports::SearchIndex;
use tokio::sync::watch;

/// Every projection's worker, ready to run.
pub struct InProcessProjector {
    deps: WorkerDeps,
    search: Arc<dyn SearchIndex>,
    config: ProjectorConfig,
}

impl std::fmt::Debug for InProcessProjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessProjector").finish_non_exhaustive()
    }
}

impl InProcessProjector {
    /// Workers on the read side's adapters `deps`, and `search`, paced by `config`.
    pub fn new(deps: WorkerDeps, search: Arc<dyn SearchIndex>, config: ProjectorConfig) -> Self {
        Self {
            deps,
            search,
            config,
        }
    }

    /// Runs every projection until `stop` turns true. A `strata-projector` running elsewhere
    /// holds the leases: these workers then wait as standbys.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        run_workers(
            &self.deps,
            projection::all(self.deps.events.clone(), self.search.clone(), None),
            &self.config,
            &stop,
        )
        .await;
    }
}
