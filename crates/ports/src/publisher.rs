//! The publisher port: the log handed on to a message broker, event by event in global order, so
//! that other services can react to what happened. The log is its own outbox: a publisher reads
//! it after its checkpoint, and the broker's acknowledgements move the checkpoint (decision 0016).

use async_trait::async_trait;

use crate::event_store::RecordedEvent;

/// Why a broker did not take what it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The broker is down, unreachable, or did not acknowledge in time. What it holds beyond
    /// its last acknowledged event is unknown: publish again after a pause, from
    /// [`EventPublisher::last_published`] and the checkpoint.
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the event at `position` for good (too large, a name it cannot route):
    /// park it. Every event of the batch before it was acknowledged; none after it was kept.
    #[error("the broker refused the event at position {position}: {reason}")]
    Refused { position: u64, reason: String },
    /// The broker's stream exists with settings this publisher cannot use: an operator decides
    /// (nothing is changed behind their back).
    #[error("the broker's stream does not fit: {0}")]
    Misconfigured(String),
}

/// A broker that takes the log's events, each once, in global order.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// The highest global position of this log the broker holds (`None`: none yet).
    /// A publisher resumes after the larger of this and its checkpoint, so a restart publishes
    /// nothing twice even after the broker stopped recognising repeated messages.
    ///
    /// # Errors
    /// [`PublishError::Unavailable`] when the broker cannot say.
    async fn last_published(&self) -> Result<Option<u64>, PublishError>;

    /// Hands `events` (ascending global positions) to the broker, and returns once it has
    /// acknowledged every one of them. Those the broker holds already (at or below the highest
    /// position it holds) are skipped: a publisher that resumes from an older checkpoint sends
    /// nothing twice.
    ///
    /// # Errors
    /// [`PublishError::Refused`] for an event the broker will never take (those before it
    /// are acknowledged), [`PublishError::Unavailable`] when it did not acknowledge them all.
    async fn publish(&self, events: &[&RecordedEvent]) -> Result<(), PublishError>;

    /// Hands on events that go out of order: ones the broker refused before, which an operator
    /// retries, and the events of their streams that waited behind them (ascending positions,
    /// all below what the broker holds). None is skipped by position; a repeat within the
    /// broker's duplicate window is dropped by the broker. What the broker holds still counts
    /// from the highest position, so a later resume does not go back to them.
    ///
    /// # Errors
    /// As for [`EventPublisher::publish`].
    async fn publish_parked(&self, events: &[&RecordedEvent]) -> Result<(), PublishError>;
}
