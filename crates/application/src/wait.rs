//! Read-your-writes waits: a query that must not answer before its projection has processed a
//! log position waits on one shared watch per projection. One poller per projection reads the
//! checkpoint while anyone waits, however many requests wait (each request polling the database
//! made 500 waiting requests cost ~5,000 queries a second), and a position beyond the head of
//! the log, which waiting can never reach, is refused at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_ports::{EventStore, ProjectionName, ReadModels};
use tokio::sync::watch;

use crate::error::QueryError;

/// How often the shared poller reads a projection's checkpoint while requests wait for it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The checkpoints requests wait for, shared by every query of a service.
pub(crate) struct Checkpoints {
    models: Arc<dyn ReadModels>,
    events: Arc<dyn EventStore>,
    watches: Mutex<HashMap<ProjectionName, watch::Sender<u64>>>,
}

impl Checkpoints {
    pub(crate) fn new(models: Arc<dyn ReadModels>, events: Arc<dyn EventStore>) -> Self {
        Self {
            models,
            events,
            watches: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until `projection` has processed `wanted`, at most `max_wait`.
    ///
    /// # Errors
    /// `BadRequest` for a position beyond the head of the log; `NotCaughtUp` when the wait
    /// runs out; storage failures of the first reads.
    pub(crate) async fn wait_for(
        self: &Arc<Self>,
        projection: ProjectionName,
        wanted: u64,
        max_wait: Duration,
    ) -> Result<(), QueryError> {
        let reached = self.models.position(projection).await?;
        if reached >= wanted {
            return Ok(());
        }
        // Positions are handed out by acknowledgements, never ahead of the head: one beyond it
        // is no position this log gave, and waiting cannot reach it.
        let head = self.events.head_position().await?;
        if wanted > head {
            return Err(QueryError::BadRequest(format!(
                "X-Min-Position {wanted} is beyond the head of the log ({head}): send the \
                 position of a command's acknowledgement"
            )));
        }
        let mut receiver = self.subscribe(projection, reached);
        let caught_up = tokio::time::timeout(max_wait, receiver.wait_for(|p| *p >= wanted))
            .await
            .is_ok_and(|seen| seen.is_ok());
        if caught_up {
            return Ok(());
        }
        // The poller stops only when nobody waits, never while this receiver lives: the wait
        // ran out.
        Err(QueryError::NotCaughtUp {
            projection,
            position: *receiver.borrow(),
            wanted,
        })
    }

    /// A receiver of `projection`'s checkpoint, starting the poller if none runs.
    fn subscribe(
        self: &Arc<Self>,
        projection: ProjectionName,
        reached: u64,
    ) -> watch::Receiver<u64> {
        let mut watches = self
            .watches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sender) = watches.get(&projection) {
            advance(sender, reached);
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(reached);
        watches.insert(projection, sender.clone());
        tokio::spawn(Arc::clone(self).poll(projection, sender));
        receiver
    }

    /// Reads `projection`'s checkpoint every [`POLL_INTERVAL`] until nobody waits for it.
    async fn poll(self: Arc<Self>, projection: ProjectionName, sender: watch::Sender<u64>) {
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            {
                // Under the lock, so no waiter subscribes to a sender about to be dropped.
                let mut watches = self
                    .watches
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if sender.receiver_count() == 0 {
                    watches.remove(&projection);
                    return;
                }
            }
            match self.models.position(projection).await {
                Ok(position) => advance(&sender, position),
                // The waiters time out with the last known checkpoint; the next read may work.
                Err(error) => {
                    tracing::warn!(projection = projection.as_str(), %error, "cannot read a checkpoint");
                }
            }
        }
    }
}

/// Moves a checkpoint's watch forward to `position` (never back: reads may come out of order),
/// waking the waiters only when it moved.
fn advance(sender: &watch::Sender<u64>, position: u64) {
    sender.send_if_modified(|seen| {
        let moved = position > *seen;
        *seen = (*seen).max(position);
        moved
    });
}
