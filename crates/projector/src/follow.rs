//! Following the log: catch up in batches from a position, then poll for new events.
//!
//! The event store guarantees that `read_all(after)` never skips an event that commits later,
//! so the follower needs no gap detection: its checkpoint is simply the last position it saw.

use std::time::Duration;

use serde_json::json;
use strata_ports::{EventStore, EventStoreError, RecordedEvent};
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

/// How to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowOptions {
    /// Events read per batch.
    pub batch_size: usize,
    /// Pause between polls once caught up.
    pub poll_interval: Duration,
    /// Stop when the head of the log is reached instead of waiting for more.
    pub until_caught_up: bool,
}

/// Why following stopped early.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Store(#[from] EventStoreError),
    #[error("cannot write an event: {0}")]
    Sink(#[from] std::io::Error),
}

/// Delivers every event after `from` to `sink`, in position order, exactly once, until the log
/// is caught up (with `until_caught_up`) or `stop` turns true or its sender is dropped. Returns
/// the last position seen.
///
/// # Errors
/// A failing store (after it has been retried for `Unavailable`) or a failing sink.
pub async fn follow(
    store: &dyn EventStore,
    from: u64,
    options: FollowOptions,
    mut stop: watch::Receiver<bool>,
    sink: &mut (dyn FnMut(&RecordedEvent) -> std::io::Result<()> + Send),
) -> Result<u64, FollowError> {
    let mut checkpoint = from;
    while !stopping(&stop) {
        let batch = match store.read_all(checkpoint, options.batch_size.max(1)).await {
            Ok(batch) => batch,
            Err(EventStoreError::Unavailable(reason)) => {
                // Lag, not loss: wait and read again from the same checkpoint.
                tracing::warn!(%reason, checkpoint, "event store unavailable; retrying");
                pause(&mut stop, options.poll_interval.max(Duration::from_secs(1))).await;
                continue;
            }
            Err(other) => return Err(other.into()),
        };
        for event in &batch {
            sink(event)?;
            checkpoint = event.global_position;
        }
        if batch.len() < options.batch_size.max(1) {
            if options.until_caught_up {
                break;
            }
            pause(&mut stop, options.poll_interval).await;
        }
    }
    Ok(checkpoint)
}

/// Whether to stop: asked to, or nobody is left who could ask. A dropped sender must mean stop,
/// because `wait_for` on a closed channel returns at once: treating it as "never stop" would turn
/// every pause into a busy loop of reads.
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Sleeps for `interval`, waking early when asked to stop or when the sender is dropped; the
/// caller's loop then sees `stopping`.
async fn pause(stop: &mut watch::Receiver<bool>, interval: Duration) {
    let _ = tokio::time::timeout(interval, stop.wait_for(|stopped| *stopped)).await;
}

/// One event as a JSON line: the whole envelope.
pub fn to_json_line(event: &RecordedEvent) -> String {
    json!({
        "globalPosition": event.global_position,
        "streamId": event.stream_id.as_str(),
        "streamVersion": event.stream_version,
        "eventId": event.event_id,
        "eventType": event.event_type,
        "schemaVersion": event.schema_version,
        "recordedAt": event.recorded_at.format(&Rfc3339).unwrap_or_default(),
        "data": event.data,
        "metadata": event.metadata,
    })
    .to_string()
}
