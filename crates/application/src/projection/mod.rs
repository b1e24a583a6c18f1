//! Projections: pure event handlers that turn the log into read models, and the worker that
//! feeds them in batches (each batch and its checkpoint commit together), retries failing
//! events with backoff, parks the ones that keep failing, and holds a projection's lease.

mod accounts;
mod orders;
mod runner;

pub use accounts::AccountsProjection;
pub use orders::OrdersProjection;
pub use runner::{
    BatchReport, DlqOutcome, ProjectionWorker, ProjectorConfig, ProjectorError, RebuildProgress,
    WorkerDeps, dlq_retry, dlq_skip, rebuild, run_workers,
};

use async_trait::async_trait;
use strata_ports::{ProjectionBatch, ReadModelError, RecordedEvent};

/// Why a handler could not apply an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The event cannot be read (unknown type, malformed data) or does not fit the read model
    /// (an event of a stream the projection has not seen created).
    #[error("{0}")]
    Rejected(String),
    /// The read models' storage failed.
    #[error(transparent)]
    Storage(#[from] ReadModelError),
}

/// A read model fed from the log. Handlers must be idempotent: applying an event already
/// applied (its stream version is not above the row's) changes nothing.
#[async_trait]
pub trait Projection: Send + Sync + std::fmt::Debug {
    /// The stored name of the projection (its checkpoint key; never rename).
    fn name(&self) -> &'static str;

    /// Whether the projection looks at events of this stream category.
    fn handles(&self, category: &str) -> bool;

    /// Applies one event through `batch`.
    async fn apply(
        &self,
        batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError>;

    /// Acknowledges an event without applying it (an operator skipped it): the row moves past
    /// its stream version, so the stream's later events apply instead of waiting forever. Does
    /// nothing when the row is missing or not just before the event (a skipped first event).
    async fn skip(
        &self,
        batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError>;
}

/// Whether `event` is the next one for a row last written at `row_version` (`None`: no row):
/// `Ok(false)` when it was applied before (a replay: nothing to do), an error when it would
/// skip a version (never applied out of order).
pub(crate) fn is_next(
    what: &str,
    row_version: Option<u64>,
    event: &RecordedEvent,
) -> Result<bool, HandlerError> {
    let expected = row_version.unwrap_or(0) + 1;
    if event.stream_version < expected {
        return Ok(false);
    }
    if event.stream_version > expected {
        return Err(HandlerError::Rejected(format!(
            "{what} {}: event version {} cannot follow version {}",
            event.stream_id.id(),
            event.stream_version,
            expected - 1
        )));
    }
    Ok(true)
}

/// The projections of this service, by name.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(OrdersProjection),
        std::sync::Arc::new(AccountsProjection),
    ]
}
