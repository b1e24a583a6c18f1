//! Rebuilding a projection beside the live one: fresh tables filled from the start of the log by
//! a worker of the rebuild generation, swapped in once they reach the live checkpoint; or
//! abandoned, leaving the live generation untouched.

use std::sync::Arc;

use strata_ports::{EventStoreError, Generation, ReadModelError, RebuildSwap, SearchError};
use tokio::sync::watch;

use super::step::{ProjectorError, flush_error};
use super::worker::{BatchReport, ProjectionWorker, ProjectorConfig, WorkerDeps, stopping};
use super::{HandlerError, Projection};

/// Runs a projection's own swap inside the read models' swap window.
struct SwapOf<'a>(&'a dyn Projection);

#[async_trait::async_trait]
impl RebuildSwap for SwapOf<'_> {
    async fn swap(&self) -> Result<(), ReadModelError> {
        self.0.swap_rebuilt().await.map_err(|error| match error {
            HandlerError::Storage(error) => error,
            HandlerError::Search(SearchError::Unavailable(reason))
            | HandlerError::Events(EventStoreError::Unavailable(reason)) => {
                ReadModelError::Unavailable(reason)
            }
            other => ReadModelError::Backend(other.to_string()),
        })
    }
}

/// Progress of a rebuild, after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildProgress {
    pub checkpoint: u64,
    pub head: u64,
    pub events_applied: u64,
}

/// Rebuilds a projection from the start of the log without taking the live one offline: fills
/// fresh tables, catches up with the log, then swaps them in atomically once they have reached
/// the live checkpoint (catching up again while the live worker keeps moving).
///
/// # Errors
/// `Rebuilding` when another rebuild of it runs; `NotRebuildable` for the publisher; storage
/// failures. An interrupted rebuild leaves the live tables untouched.
pub async fn rebuild(
    deps: &WorkerDeps,
    projection: Arc<dyn Projection>,
    config: ProjectorConfig,
    stop: &watch::Receiver<bool>,
    progress: &mut (dyn FnMut(RebuildProgress) + Send),
) -> Result<bool, ProjectorError> {
    let name = projection.name();
    refuse_unrebuildable(&*projection)?;
    let Some(_lease) = deps.leases.try_acquire(name, Generation::Rebuild).await? else {
        return Err(ProjectorError::Rebuilding(name.to_string()));
    };
    deps.store.start_rebuild(name).await?;
    projection
        .start_rebuild()
        .await
        .map_err(|e| flush_error(e, 0))?;
    let worker = ProjectionWorker::new(
        deps.clone(),
        projection.clone(),
        Generation::Rebuild,
        config.clone(),
    );
    let mut applied = 0u64;
    loop {
        let head = deps.events.head_position().await?;
        let mut on_batch = |report: &BatchReport| {
            applied += report.events as u64;
            progress(RebuildProgress {
                checkpoint: report.to,
                head: head.max(report.to),
                events_applied: applied,
            });
        };
        let caught_up = worker.catch_up(stop, &mut on_batch).await;
        if caught_up.is_err() || stopping(stop) {
            // The live tables were never touched; leave nothing half-built behind.
            abandon_rebuild(deps, &*projection).await?;
            caught_up?;
            return Ok(false);
        }
        match deps.store.finish_rebuild(name, &SwapOf(&*projection)).await {
            Ok(true) => {
                tracing::info!(projection = name.as_str(), "rebuilt tables swapped in");
                return Ok(true);
            }
            Ok(false) => {} // the live worker moved on meanwhile: catch up again
            Err(ReadModelError::Unavailable(reason)) => {
                // A reader held a table too long for the swap's lock: try again shortly.
                tracing::warn!(projection = name.as_str(), %reason, "swap postponed");
                tokio::time::sleep(config.lease_retry).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Drops an unfinished rebuild of `projection` (its tables, checkpoint, dead letters and what
/// it keeps elsewhere); the live generation is never touched.
///
/// # Errors
/// Storage failures.
pub async fn abandon_rebuild(
    deps: &WorkerDeps,
    projection: &dyn Projection,
) -> Result<(), ProjectorError> {
    refuse_unrebuildable(projection)?;
    deps.store.abandon_rebuild(projection.name()).await?;
    projection
        .abandon_rebuild()
        .await
        .map_err(|e| flush_error(e, 0))
}

fn refuse_unrebuildable(projection: &dyn Projection) -> Result<(), ProjectorError> {
    match projection.not_rebuildable() {
        Some(why) => Err(ProjectorError::NotRebuildable {
            name: projection.name().to_string(),
            why,
        }),
        None => Ok(()),
    }
}
