//! The publisher: a projection whose effect is the log handed on to a broker (decision 0016).
//! The worker runs it like any projection (the lease, the checkpoint, batches, wake-ups, the
//! status); its `flush` publishes the batch and returns once the broker acknowledged it, so the
//! checkpoint never moves past an event the broker does not hold. An event the broker refuses
//! for good is parked and the batch stops there; the later events of its stream wait behind
//! it, so that a consumer sees every stream in order; `dlq retry` publishes them out of order,
//! `dlq skip` drops it.

use std::sync::Arc;

use async_trait::async_trait;
use strata_ports::{
    EventPublisher, Generation, ProjectionBatch, ProjectionName, PublishError, RecordedEvent,
};

use super::{FlushFailure, Flushed, HandlerError, Projection};

/// Publishes every event of the log, of every category.
#[derive(Clone)]
pub struct PublisherProjection {
    publisher: Arc<dyn EventPublisher>,
}

impl std::fmt::Debug for PublisherProjection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherProjection")
            .finish_non_exhaustive()
    }
}

impl PublisherProjection {
    /// Events per batch of the publisher unless configured: four times a read model's. A
    /// batch is one pipeline of publishes, drained before the checkpoint commits; bigger
    /// batches drain less often, and cost no more than their events' memory (no read-model
    /// writes, and nothing is published twice after a crash: the resume point is the stream's).
    pub const DEFAULT_BATCH_SIZE: usize = 2_000;

    pub fn new(publisher: Arc<dyn EventPublisher>) -> Self {
        Self { publisher }
    }

    /// Publishes `events` (late: parked ones, out of order). At a refusal it stops: the
    /// refused event is parked and nothing after it is published in this batch, so the broker
    /// never holds an event past one it has not taken (a batch that fails after this point is
    /// tried again from before the refusal, which is refused again). Live, the batch's
    /// checkpoint stops at the refused event (`stops`), and the next batch parks the later
    /// events of its stream behind it; late, the parked events after it (of its stream) are
    /// parked behind it again.
    async fn publish(
        &self,
        events: &[&RecordedEvent],
        late: bool,
    ) -> Result<Flushed, HandlerError> {
        let published = if late {
            self.publisher.publish_parked(events).await
        } else {
            self.publisher.publish(events).await
        };
        let (position, reason) = match published {
            Ok(()) => {
                count_published(events.len());
                return Ok(Vec::new());
            }
            Err(error) => {
                count_error(&error);
                match error {
                    PublishError::Refused { position, reason } => (position, reason),
                    other => return Err(other.into()),
                }
            }
        };
        let Some(index) = events.iter().position(|e| e.global_position == position) else {
            return Err(HandlerError::Rejected(format!(
                "the broker refused position {position}, which it was not given"
            )));
        };
        count_published(index);
        let mut failures = vec![FlushFailure {
            position,
            reason,
            behind: None,
            stops: true,
        }];
        if late {
            failures.extend(events[index + 1..].iter().map(|event| FlushFailure {
                position: event.global_position,
                reason: "waits behind a message the broker refused".to_owned(),
                behind: Some(position),
                stops: false,
            }));
        }
        Ok(failures)
    }
}

fn count_published(events: usize) {
    metrics::counter!(crate::metrics::PUBLISHER_EVENTS_TOTAL).increment(events as u64);
}

fn count_error(error: &PublishError) {
    let kind = match error {
        PublishError::Unavailable(_) => "unavailable",
        PublishError::Refused { .. } => "refused",
        PublishError::Misconfigured(_) => "misconfigured",
    };
    metrics::counter!(crate::metrics::PUBLISHER_BROKER_ERRORS_TOTAL, "kind" => kind).increment(1);
}

#[async_trait]
impl Projection for PublisherProjection {
    fn name(&self) -> ProjectionName {
        ProjectionName::Publisher
    }

    fn handles(&self, _category: &str) -> bool {
        true
    }

    /// Nothing to write in the read models: the effect is the flush's.
    async fn apply(
        &self,
        _batch: &mut dyn ProjectionBatch,
        _event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn skip(
        &self,
        _batch: &mut dyn ProjectionBatch,
        _event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn flush(
        &self,
        generation: Generation,
        applied: &[&RecordedEvent],
    ) -> Result<Flushed, HandlerError> {
        if generation == Generation::Rebuild {
            // `rebuild` refuses the publisher before any batch; never publish the log again.
            return Err(HandlerError::Rejected(
                "the publisher has no rebuild generation".to_owned(),
            ));
        }
        self.publish(applied, false).await
    }

    /// A skipped event is not published; those applied again go out of order.
    async fn flush_parked(
        &self,
        _skipped: Option<&RecordedEvent>,
        applied: &[&RecordedEvent],
    ) -> Result<Flushed, HandlerError> {
        self.publish(applied, true).await
    }

    fn not_rebuildable(&self) -> Option<&'static str> {
        Some(
            "its effect is the broker's stream, which cannot be taken back: \
             consumers that need the log again replay the stream, or read GET /v1/events",
        )
    }
}
