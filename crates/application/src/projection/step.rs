//! The step the worker's batches and the operator's dead-letter tools share: one event applied in
//! a savepoint of the batch, or rolled back to it and parked; and how a handler's failure becomes
//! a [`ProjectorError`] (parked, or failing the whole batch).

use strata_ports::{
    Clock, DeadLetter, EventStoreError, ProjectionBatch, PublishError, ReadModelError,
    RecordedEvent, SearchError,
};

use super::{Flushed, HandlerError, Projection};

/// Why a worker could not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Events(#[from] EventStoreError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    #[error("event at position {position} failed: {reason}")]
    Handler { position: u64, reason: String },
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("a rebuild of {0} is already running")]
    Rebuilding(String),
    #[error("{name} cannot be rebuilt: {why}")]
    NotRebuildable { name: String, why: &'static str },
}

impl ProjectorError {
    /// Worth trying again later (the storage is down), rather than a fault.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Events(EventStoreError::Unavailable(_))
                | Self::ReadModel(ReadModelError::Unavailable(_))
                | Self::Search(SearchError::Unavailable(_))
                | Self::Publish(PublishError::Unavailable(_))
        )
    }
}

/// A handler's failure on `event`: the storage or the log being down fails the batch, anything
/// else is the event's own fault (tried again, then parked).
pub(super) fn failure(event: &RecordedEvent, error: HandlerError) -> ProjectorError {
    match error {
        HandlerError::Storage(ReadModelError::Unavailable(reason)) => {
            ProjectorError::ReadModel(ReadModelError::Unavailable(reason))
        }
        HandlerError::Events(error) => ProjectorError::Events(error),
        HandlerError::Search(error) => ProjectorError::Search(error),
        HandlerError::Publish(error) => ProjectorError::Publish(error),
        other => ProjectorError::Handler {
            position: event.global_position,
            reason: other.to_string(),
        },
    }
}

/// What became of an event applied on its own.
#[derive(Debug)]
pub(super) enum Step {
    Applied,
    /// It failed (the reason) and was parked as the failed event of its stream.
    Parked(ProjectorError),
}

/// Applies `event` in a savepoint of `batch`, released when it applies; when it fails, rolls
/// back to the savepoint and parks it as failed after `attempts` attempts (this one included).
///
/// # Errors
/// The storage failed, or a handler found it unavailable: nothing is parked then, the event is
/// worth trying again later.
pub(super) async fn apply_or_park(
    batch: &mut dyn ProjectionBatch,
    projection: &dyn Projection,
    event: &RecordedEvent,
    attempts: u32,
    clock: &dyn Clock,
) -> Result<Step, ProjectorError> {
    batch.savepoint().await?;
    match projection.apply(&mut *batch, event).await {
        Ok(()) => {
            batch.release_savepoint().await?;
            Ok(Step::Applied)
        }
        Err(error) => {
            let error = failure(event, error);
            if error.is_unavailable() {
                return Err(error);
            }
            batch.rollback_to_savepoint().await?;
            let reason = error.to_string();
            park(batch, projection, event, reason, attempts, None, clock).await?;
            Ok(Step::Parked(error))
        }
    }
}

/// Parks `event` of `projection` in `batch`: as the failed event of its stream (`blocked_by`
/// `None`), or as one waiting behind the failed event at `blocked_by`.
///
/// # Errors
/// The storage failed.
pub(super) async fn park(
    batch: &mut dyn ProjectionBatch,
    projection: &dyn Projection,
    event: &RecordedEvent,
    error: String,
    attempts: u32,
    blocked_by: Option<u64>,
    clock: &dyn Clock,
) -> Result<(), ReadModelError> {
    batch
        .park(&DeadLetter {
            projection: projection.name().to_string(),
            event: event.clone(),
            error,
            attempts,
            blocked_by,
            parked_at: clock.now(),
        })
        .await
}

/// A flush that failed as a whole fails the batch (never parks an event): the effects of none
/// of its events are known to be written.
pub(super) fn flush_error(error: HandlerError, last: u64) -> ProjectorError {
    match error {
        HandlerError::Storage(error) => ProjectorError::ReadModel(error),
        HandlerError::Events(error) => ProjectorError::Events(error),
        HandlerError::Search(error) => ProjectorError::Search(error),
        HandlerError::Publish(error) => ProjectorError::Publish(error),
        HandlerError::Rejected(reason) => ProjectorError::Handler {
            position: last,
            reason,
        },
    }
}

/// An applied event a flush refused: why, and the failed event of its stream it waits behind.
pub(super) struct Refused<'a> {
    pub event: &'a RecordedEvent,
    pub reason: String,
    pub behind: Option<u64>,
    pub stops: bool,
}

/// The applied events a flush refused.
pub(super) fn refused<'a>(
    applied: &[&'a RecordedEvent],
    flushed: Flushed,
    last: u64,
) -> Result<Vec<Refused<'a>>, ProjectorError> {
    flushed
        .into_iter()
        .map(|failure| {
            applied
                .iter()
                .find(|e| e.global_position == failure.position)
                .map(|&event| Refused {
                    event,
                    reason: failure.reason,
                    behind: failure.behind,
                    stops: failure.stops,
                })
                .ok_or_else(|| ProjectorError::Handler {
                    position: last,
                    reason: format!(
                        "the projection refused position {}, which it was not given",
                        failure.position
                    ),
                })
        })
        .collect()
}
