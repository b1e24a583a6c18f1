//! The projection worker: one batch is one transaction of the read models' storage that locks
//! the projection's checkpoint, applies the events after it and moves it, so a crash anywhere
//! leaves the whole batch or none of it. A failing event makes the batch roll back and be tried
//! again with backoff; on the last attempt the failing event is parked instead (and the later
//! events of its stream wait behind it), so the projection goes on with the other streams.
//! The live worker, which holds the projection's lease and follows the log (`run`, `run_workers`),
//! is in `worker/live.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_ports::{
    Clock, EventStore, EventStoreError, Generation, LogWakeups, ProjectionBatch, ProjectionLeases,
    ProjectionStore, ReadModelError, RecordedEvent,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Projection;
use super::step::{self, ProjectorError, Step, apply_or_park, failure, flush_error, refused};

mod live;

pub use live::run_workers;

/// How a worker paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorConfig {
    /// Events read per batch (one transaction).
    pub batch_size: usize,
    /// How long a caught-up worker waits for a wake-up before it polls anyway.
    pub poll_interval: Duration,
    /// Attempts of a batch with a failing event before that event is parked.
    pub max_attempts: u32,
    /// Backoff after the first failed attempt; doubles per attempt up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How often a worker without a lease tries to take it over.
    pub lease_retry: Duration,
    /// How often a worker refreshes its state for the status even when nothing changes.
    pub heartbeat: Duration,
    /// How long a woken worker waits before its batch, so that a burst of appends is projected
    /// in one batch. Zero (the default) projects each append at once; on a storage with one
    /// writer (SQLite) every batch takes the write lock from the commands, and a few
    /// milliseconds here keep bursts of commands from queueing behind one batch per append.
    pub linger: Duration,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            max_attempts: 5,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            lease_retry: Duration::from_secs(1),
            heartbeat: Duration::from_secs(5),
            linger: Duration::ZERO,
        }
    }
}

impl ProjectorConfig {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// What a worker needs from outside.
#[derive(Clone)]
pub struct WorkerDeps {
    pub events: Arc<dyn EventStore>,
    pub store: Arc<dyn ProjectionStore>,
    pub leases: Arc<dyn ProjectionLeases>,
    pub clock: Arc<dyn Clock>,
    /// Wake-ups of the log; without them a caught-up worker only polls.
    pub wakeups: Option<Arc<dyn LogWakeups>>,
}

impl std::fmt::Debug for WorkerDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerDeps").finish_non_exhaustive()
    }
}

/// What one committed batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// The checkpoint before and after the batch.
    pub from: u64,
    pub to: u64,
    /// Events read from the log (all categories).
    pub events: usize,
    /// Events the projection applied or found already applied.
    pub applied: usize,
    /// Events parked (failed, or waiting behind a failed one of their stream).
    pub parked: usize,
    /// Fewer events than a full batch: the log's head was reached.
    pub caught_up: bool,
}

/// Feeds one projection from the log.
#[derive(Debug, Clone)]
pub struct ProjectionWorker {
    deps: WorkerDeps,
    projection: Arc<dyn Projection>,
    generation: Generation,
    config: ProjectorConfig,
    read_ahead: Arc<Mutex<Option<ReadAhead>>>,
}

/// The read of the next batch's events, started while the current batch is applied and
/// committed (the read and the commit overlap instead of adding up while catching up).
#[derive(Debug)]
struct ReadAhead {
    /// The position the events follow: usable only by a batch starting from it.
    after: u64,
    events: JoinHandle<Result<Vec<RecordedEvent>, EventStoreError>>,
}

impl ProjectionWorker {
    pub fn new(
        deps: WorkerDeps,
        projection: Arc<dyn Projection>,
        generation: Generation,
        config: ProjectorConfig,
    ) -> Self {
        Self {
            deps,
            projection,
            generation,
            config,
            read_ahead: Arc::default(),
        }
    }

    /// The projection's stored name, as logs and metrics label it.
    pub fn name(&self) -> &'static str {
        self.projection.name().as_str()
    }

    /// One batch, tried again with backoff while an event fails, and with the failing events
    /// parked on the last attempt.
    ///
    /// # Errors
    /// The log or the storage failed (nothing of the batch is applied).
    pub async fn run_batch(&self) -> Result<BatchReport, ProjectorError> {
        let mut attempt = 1;
        // How often each event has failed so far: a dead letter records its own attempts.
        let mut failures: HashMap<u64, u32> = HashMap::new();
        loop {
            let park = attempt >= self.config.max_attempts;
            let started = std::time::Instant::now();
            let outcome = self.try_batch(park, &failures).await;
            if let Ok(report) = &outcome {
                self.record(report, started.elapsed());
            }
            match outcome {
                Err(ProjectorError::Handler { position, reason }) if !park => {
                    tracing::warn!(
                        projection = self.name(),
                        position,
                        attempt,
                        %reason,
                        "event failed; the batch is rolled back and tried again"
                    );
                    *failures.entry(position).or_default() += 1;
                    tokio::time::sleep(self.config.backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn try_batch(
        &self,
        park: bool,
        failures: &HashMap<u64, u32>,
    ) -> Result<BatchReport, ProjectorError> {
        let mut batch = self
            .deps
            .store
            .begin(self.projection.name(), self.generation)
            .await?;
        let from = batch.checkpoint().await?;
        let size = self.config.batch_size.max(1);
        let events = match self.read_ahead_from(from).await {
            Some(events) => events,
            None => self.deps.events.read_all(from, size).await?,
        };
        if events.len() == size {
            // A full batch: the log probably goes on, so its next part is read meanwhile.
            self.start_read_ahead(events.last().map_or(from, |e| e.global_position));
        }
        let Some(last) = events.last().map(|e| e.global_position) else {
            // Nothing new: dropping the batch rolls it back.
            return Ok(BatchReport {
                from,
                to: from,
                events: 0,
                applied: 0,
                parked: 0,
                caught_up: true,
            });
        };
        let mine: Vec<&RecordedEvent> = events
            .iter()
            .filter(|e| self.projection.handles(e.stream_id.category()))
            .collect();
        let mut streams: Vec<String> = mine.iter().map(|e| e.stream_id.to_string()).collect();
        streams.sort_unstable();
        streams.dedup();
        let mut blocked = batch.blocked_streams(&streams).await?;
        let mut report = BatchReport {
            from,
            to: last,
            events: events.len(),
            applied: 0,
            parked: 0,
            caught_up: events.len() < self.config.batch_size.max(1),
        };
        let mut applied: Vec<&RecordedEvent> = Vec::with_capacity(mine.len());
        let mut pending: Vec<&RecordedEvent> = Vec::with_capacity(mine.len());
        for event in mine {
            // Events before the failed one were applied already (a replay after the checkpoint
            // moved back): they go through the handlers, whose version guard ignores them.
            if let Some(&failed) = blocked
                .get(event.stream_id.as_str())
                .filter(|failed| event.global_position > **failed)
            {
                self.park(
                    &mut *batch,
                    event,
                    "waits behind a parked event",
                    0,
                    Some(failed),
                )
                .await?;
                report.parked += 1;
                continue;
            }
            if !park {
                // Applied together below: one failure rolls the whole batch back anyway.
                pending.push(event);
                continue;
            }
            let attempts = failures.get(&event.global_position).copied().unwrap_or(0) + 1;
            let clock = &*self.deps.clock;
            match apply_or_park(&mut *batch, &*self.projection, event, attempts, clock).await? {
                Step::Applied => {
                    applied.push(event);
                    report.applied += 1;
                }
                Step::Parked(error) => {
                    tracing::error!(
                        projection = self.name(),
                        position = event.global_position,
                        stream = %event.stream_id,
                        %error,
                        "event parked after {attempts} attempt(s)"
                    );
                    blocked.insert(event.stream_id.to_string(), event.global_position);
                    report.parked += 1;
                }
            }
        }
        self.projection
            .apply_all(&mut *batch, &pending)
            .await
            .map_err(|(event, e)| failure(event, e))?;
        report.applied += pending.len();
        applied.extend(pending);
        // Effects kept outside the batch's storage are written before the checkpoint moves;
        // an event whose effect was refused for good is parked like one that failed to apply.
        let flushed = self
            .projection
            .flush(self.generation, &applied)
            .await
            .map_err(|e| flush_error(e, last))?;
        // A flush that stopped at an event moves the checkpoint only to it.
        let mut to = last;
        for step::Refused {
            event,
            reason,
            behind,
            stops,
        } in refused(&applied, flushed, last)?
        {
            if stops {
                to = to.min(event.global_position);
            }
            let attempts = failures.get(&event.global_position).copied().unwrap_or(0) + 1;
            tracing::error!(
                projection = self.name(),
                position = event.global_position,
                stream = %event.stream_id,
                %reason,
                "event parked: its effect was refused"
            );
            self.park(&mut *batch, event, &reason, attempts, behind)
                .await?;
            report.applied -= 1;
            report.parked += 1;
        }
        if to < last {
            report.applied -= applied.iter().filter(|e| e.global_position > to).count();
            report.to = to;
            report.caught_up = false;
        }
        batch.commit(to).await?;
        Ok(report)
    }

    /// The events read ahead after `from`, if a read ahead started there and found some;
    /// positions are dense and in commit order, so what it found is exactly what a read now
    /// would start with (a read ahead from elsewhere, or one that failed, is dropped).
    async fn read_ahead_from(&self, from: u64) -> Option<Vec<RecordedEvent>> {
        let ahead = self.lock_read_ahead().take()?;
        if ahead.after != from {
            ahead.events.abort();
            return None;
        }
        match ahead.events.await {
            Ok(Ok(events)) if !events.is_empty() => Some(events),
            _ => None,
        }
    }

    fn start_read_ahead(&self, after: u64) {
        let events = self.deps.events.clone();
        let size = self.config.batch_size.max(1);
        let handle = tokio::spawn(async move { events.read_all(after, size).await });
        if let Some(old) = self.lock_read_ahead().replace(ReadAhead {
            after,
            events: handle,
        }) {
            old.events.abort();
        }
    }

    fn lock_read_ahead(&self) -> std::sync::MutexGuard<'_, Option<ReadAhead>> {
        // The slot holds no invariant a panic elsewhere could break.
        self.read_ahead
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, report: &BatchReport, took: Duration) {
        if report.events == 0 {
            return;
        }
        let name = self.name();
        metrics::counter!(crate::metrics::PROJECTOR_EVENTS_TOTAL, "projection" => name)
            .increment(report.events as u64);
        metrics::counter!(crate::metrics::PROJECTOR_PARKED_TOTAL, "projection" => name)
            .increment(report.parked as u64);
        metrics::histogram!(crate::metrics::PROJECTOR_BATCH_SECONDS, "projection" => name)
            .record(took.as_secs_f64());
    }

    async fn park(
        &self,
        batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
        error: &str,
        attempts: u32,
        blocked_by: Option<u64>,
    ) -> Result<(), ReadModelError> {
        let (projection, clock) = (&*self.projection, &*self.deps.clock);
        let error = error.to_owned();
        step::park(batch, projection, event, error, attempts, blocked_by, clock).await
    }

    /// Runs batches until the log's head is reached (or `stop`), calling `progress` after each.
    /// Returns the checkpoint reached.
    ///
    /// # Errors
    /// As for [`ProjectionWorker::run_batch`].
    pub async fn catch_up(
        &self,
        stop: &watch::Receiver<bool>,
        progress: &mut (dyn FnMut(&BatchReport) + Send),
    ) -> Result<u64, ProjectorError> {
        loop {
            let report = self.run_batch().await?;
            progress(&report);
            if report.caught_up || stopping(stop) {
                return Ok(report.to);
            }
        }
    }
}

/// Asked to stop, or nobody is left who could ask.
pub(super) fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}
