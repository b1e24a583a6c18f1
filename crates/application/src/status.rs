//! The status of the projections: where each is in the log, how far behind, what its worker
//! last said it was doing. `strata-projector status` prints it and `GET /v1/projections` serves it.

use std::sync::Arc;
use std::time::Duration;

use strata_ports::{EventStore, Generation, ProjectionName, ReadModels};
use time::OffsetDateTime;

use crate::error::QueryError;

/// A worker that has not reported for this long is considered gone.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// One projection's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionStatus {
    pub name: String,
    pub checkpoint: u64,
    pub head: u64,
    pub lag_events: u64,
    /// Age of the oldest event not yet processed (0 when caught up).
    pub lag_seconds: f64,
    pub dead_letters: u64,
    /// `running`, `catching up`, `rebuilding`, `failed`, `stalled` (no worker reports while
    /// events wait), `stopped` or `never run`.
    pub state: String,
    /// Checkpoint of a rebuild in progress (or left behind by a killed one: then the state is
    /// not `rebuilding`, and `strata-projector rebuild NAME --abandon` clears it).
    pub rebuild_checkpoint: Option<u64>,
}

/// Reads the status of every projection ([`ProjectionName::ALL`]).
#[derive(Clone)]
pub struct StatusService {
    events: Arc<dyn EventStore>,
    models: Arc<dyn ReadModels>,
}

impl std::fmt::Debug for StatusService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusService").finish_non_exhaustive()
    }
}

impl StatusService {
    pub fn new(events: Arc<dyn EventStore>, models: Arc<dyn ReadModels>) -> Self {
        Self { events, models }
    }

    /// The age of the oldest open transaction in the database, if any.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn oldest_open_transaction_age(&self) -> Result<Option<f64>, QueryError> {
        Ok(self.models.oldest_open_transaction_age().await?)
    }

    /// Sets the projection gauges of the metrics facade (lag in events and seconds, checkpoint,
    /// dead letters, per projection; the age of the oldest open transaction) from the database,
    /// so that a scrape is right whichever process runs the workers.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn record_gauges(&self, now: OffsetDateTime) -> Result<(), QueryError> {
        for s in self.statuses(now).await? {
            let name = s.name;
            metrics::gauge!(crate::metrics::PROJECTION_LAG_EVENTS, "projection" => name.clone())
                .set(s.lag_events as f64);
            metrics::gauge!(crate::metrics::PROJECTION_LAG_SECONDS, "projection" => name.clone())
                .set(s.lag_seconds);
            metrics::gauge!(crate::metrics::PROJECTION_CHECKPOINT, "projection" => name.clone())
                .set(s.checkpoint as f64);
            metrics::gauge!(crate::metrics::PROJECTION_DEAD_LETTERS, "projection" => name)
                .set(s.dead_letters as f64);
        }
        let age = self.oldest_open_transaction_age().await?.unwrap_or(0.0);
        metrics::gauge!(crate::metrics::OLDEST_OPEN_TRANSACTION_SECONDS).set(age);
        Ok(())
    }

    /// The status of every projection, at `now` (the publisher's once it has run).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn statuses(&self, now: OffsetDateTime) -> Result<Vec<ProjectionStatus>, QueryError> {
        let head = self.events.head_position().await?;
        let rows = self.models.checkpoints().await?;
        let mut statuses = Vec::with_capacity(ProjectionName::ALL.len());
        for name in ProjectionName::ALL {
            let (live, rebuild) = (name.key(Generation::Live), name.key(Generation::Rebuild));
            let row = rows.iter().find(|r| r.projection == live);
            let rebuild = rows.iter().find(|r| r.projection == rebuild);
            // A service without a broker has no publisher: it is listed once it has run.
            if name == ProjectionName::Publisher && row.is_none() {
                continue;
            }
            let checkpoint = row.map_or(0, |r| r.position);
            let lag_events = head.saturating_sub(checkpoint);
            let lag_seconds = if lag_events == 0 {
                0.0
            } else {
                let next = self.events.read_all(checkpoint, 1).await?;
                next.first()
                    .map_or(0.0, |e| (now - e.recorded_at).as_seconds_f64().max(0.0))
            };
            let reported = row.and_then(|r| r.state.clone().zip(r.state_updated_at));
            let state = match reported {
                None => "never run".to_owned(),
                Some((state, _)) if state == "stopped" => state,
                Some((_, at)) if (now - at).unsigned_abs() > STALE_AFTER && lag_events > 0 => {
                    "stalled".to_owned()
                }
                Some((_, at)) if (now - at).unsigned_abs() > STALE_AFTER => "stopped".to_owned(),
                Some((state, _)) => state,
            };
            // A rebuild moves its checkpoint with every batch; one that has not moved for a
            // while was killed: it no longer hides the live worker's state.
            let rebuilding = rebuild.is_some_and(|r| {
                r.updated_at
                    .is_some_and(|at| (now - at).unsigned_abs() <= STALE_AFTER)
            });
            let state = if rebuilding && state != "stalled" {
                "rebuilding".to_owned()
            } else {
                state
            };
            statuses.push(ProjectionStatus {
                name: name.as_str().to_owned(),
                checkpoint,
                head,
                lag_events,
                lag_seconds,
                dead_letters: row.map_or(0, |r| r.dead_letters),
                state,
                rebuild_checkpoint: rebuild.map(|r| r.position),
            });
        }
        Ok(statuses)
    }
}
