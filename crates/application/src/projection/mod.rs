//! Projections: pure event handlers that turn the log into read models, and the worker that
//! feeds them in batches (each batch and its checkpoint commit together), retries failing
//! events with backoff, parks the ones that keep failing, and holds a projection's lease.

mod accounts;
mod dead_letters;
mod orders;
mod publisher;
mod rebuild;
mod search;
mod step;
mod worker;

pub use accounts::AccountsProjection;
pub use dead_letters::{DlqOutcome, dlq_retry, dlq_skip};
pub use orders::OrdersProjection;
pub use publisher::PublisherProjection;
pub use rebuild::{RebuildProgress, abandon_rebuild, rebuild};
pub use search::SearchProjection;
pub use step::ProjectorError;
pub use worker::{BatchReport, ProjectionWorker, ProjectorConfig, WorkerDeps, run_workers};

use std::sync::Arc;

use async_trait::async_trait;
use strata_ports::{
    EventPublisher, EventStore, EventStoreError, Generation, ProjectionBatch, ProjectionName,
    PublishError, ReadModelError, RecordedEvent, SearchError, SearchIndex,
};

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
    /// Reading the log failed (a projection that folds streams).
    #[error(transparent)]
    Events(#[from] EventStoreError),
    /// The search index failed as a whole (a refused document is a [`Flushed`] failure).
    #[error(transparent)]
    Search(#[from] SearchError),
    /// The broker failed as a whole, or its stream does not fit (a refused message is a
    /// [`Flushed`] failure).
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// An event whose effect a projection could not write when it flushed a batch; it is parked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushFailure {
    pub position: u64,
    pub reason: String,
    /// The failed event of the same stream this one waits behind (`None`: it failed itself).
    pub behind: Option<u64>,
    /// Nothing after this event was written: the batch moves its checkpoint only to it, and
    /// the events after it are read again by the next batch (a publisher stops at a refusal,
    /// so that the broker never holds an event past one it has not taken).
    pub stops: bool,
}

/// The events whose effects [`Projection::flush`] could not write (empty: all written).
pub type Flushed = Vec<FlushFailure>;

/// A read model fed from the log. Handlers must be idempotent: applying an event already
/// applied (its stream version is not above the row's) changes nothing.
#[async_trait]
pub trait Projection: Send + Sync + std::fmt::Debug {
    /// The projection's name (its stored checkpoint key; never rename).
    fn name(&self) -> ProjectionName;

    /// Whether the projection looks at events of this stream category.
    fn handles(&self, category: &str) -> bool;

    /// Applies one event through `batch`.
    async fn apply(
        &self,
        batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError>;

    /// Applies events (in log order) as [`Projection::apply`] would one after the other; a
    /// projection that writes one row per stream overrides it to read and write each row once
    /// per batch instead of once per event.
    ///
    /// # Errors
    /// The event that failed, with why; the caller rolls the whole batch back, so what was
    /// applied before it does not matter.
    async fn apply_all<'e>(
        &self,
        batch: &mut dyn ProjectionBatch,
        events: &[&'e RecordedEvent],
    ) -> Result<(), (&'e RecordedEvent, HandlerError)> {
        for event in events {
            self.apply(batch, event).await.map_err(|e| (*event, e))?;
        }
        Ok(())
    }

    /// Acknowledges an event without applying it (an operator skipped it): the row moves past
    /// its stream version, so the stream's later events apply instead of waiting forever. Does
    /// nothing when the row is missing or not just before the event (a skipped first event).
    async fn skip(
        &self,
        batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError>;

    /// Writes what the projection keeps outside the batch's storage (the search index) for the
    /// events `apply` accepted in this batch, once, before the batch commits: its checkpoint
    /// moves only after this returned. The events it reports as failed are parked.
    ///
    /// # Errors
    /// A failure of the whole write: the batch is rolled back and tried again later.
    async fn flush(
        &self,
        _generation: Generation,
        _applied: &[&RecordedEvent],
    ) -> Result<Flushed, HandlerError> {
        Ok(Vec::new())
    }

    /// Writes the effects of parked events an operator applies again (`dlq retry`, `dlq
    /// skip`): `skipped`, the event an operator dropped, if any, then `applied`, the events
    /// applied again. By default the same as [`Projection::flush`] of them all, in the live
    /// generation (a projection that folds whole streams writes the stream again, leaving out
    /// what it cannot read).
    ///
    /// # Errors
    /// As for [`Projection::flush`].
    async fn flush_parked(
        &self,
        skipped: Option<&RecordedEvent>,
        applied: &[&RecordedEvent],
    ) -> Result<Flushed, HandlerError> {
        let all: Vec<&RecordedEvent> = skipped.into_iter().chain(applied.iter().copied()).collect();
        self.flush(Generation::Live, &all).await
    }

    /// Why the projection cannot be rebuilt, if it cannot (its effects cannot be taken back).
    fn not_rebuildable(&self) -> Option<&'static str> {
        None
    }

    /// Prepares an empty rebuild generation of what the projection keeps outside the batch's
    /// storage.
    async fn start_rebuild(&self) -> Result<(), HandlerError> {
        Ok(())
    }

    /// Makes that generation the live one; runs inside the read models' swap window.
    async fn swap_rebuilt(&self) -> Result<(), HandlerError> {
        Ok(())
    }

    /// Drops that generation.
    async fn abandon_rebuild(&self) -> Result<(), HandlerError> {
        Ok(())
    }
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

/// The projections of this service; the search projection folds orders from `events` into
/// `search`; the publisher hands the log to `publisher`, when there is one.
pub fn all(
    events: Arc<dyn EventStore>,
    search: Arc<dyn SearchIndex>,
    publisher: Option<Arc<dyn EventPublisher>>,
) -> Vec<Arc<dyn Projection>> {
    let mut all: Vec<Arc<dyn Projection>> = vec![
        Arc::new(OrdersProjection),
        Arc::new(AccountsProjection),
        Arc::new(SearchProjection::new(events, search)),
    ];
    if let Some(publisher) = publisher {
        all.push(Arc::new(PublisherProjection::new(publisher)));
    }
    all
}
