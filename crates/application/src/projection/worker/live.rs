//! The live worker: waits for a projection's lease, catches up, then follows the log while the
//! lease holds, woken by the log's wake-ups or polling, reporting its state for the status;
//! `run_workers` runs one per projection.

use std::sync::Arc;
use std::time::Duration;

use strata_ports::{Generation, LogWakeup, ProjectionLease};
use tokio::sync::watch;

use super::{ProjectionWorker, ProjectorConfig, WorkerDeps, stopping};
use crate::projection::Projection;

/// A lease check that takes longer is treated as a lost lease (a half-open connection).
const LEASE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

impl ProjectionWorker {
    /// Runs the projection for as long as `stop` is false: waits for its lease (another
    /// instance may hold it), catches up, then follows the log, woken by `wakeup` or polling.
    /// Storage failures are logged and retried with backoff; they never end the loop.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let name = self.name();
        let mut waiting_logged = false;
        let mut held = false;
        while !stopping(&stop) {
            let mut lease = match self
                .deps
                .leases
                .try_acquire(self.projection.name(), Generation::Live)
                .await
            {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    if !waiting_logged {
                        tracing::info!(projection = name, "another instance runs it; waiting");
                        waiting_logged = true;
                    }
                    pause(&mut stop, self.config.lease_retry).await;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(projection = name, %error, "cannot take the lease");
                    pause(&mut stop, self.config.lease_retry).await;
                    continue;
                }
            };
            waiting_logged = false;
            held = true;
            tracing::info!(projection = name, "lease taken; running");
            // Subscribed only while running: a standby keeps no listener (see `LogWakeups`).
            let mut wakeup = match &self.deps.wakeups {
                Some(wakeups) => match wakeups.subscribe().await {
                    Ok(wakeup) => Some(wakeup),
                    Err(error) => {
                        tracing::warn!(projection = name, %error, "no wake-ups; polling only");
                        None
                    }
                },
                None => None,
            };
            self.follow(&mut *lease, &mut stop, &mut wakeup).await;
        }
        // Only the instance that ran the projection speaks for it: a standby stopping says
        // nothing about the one still running.
        if held {
            self.report_state("stopped").await;
        }
    }

    /// Follows the log while the lease holds; returns when it is lost or on `stop`.
    async fn follow(
        &self,
        lease: &mut dyn ProjectionLease,
        stop: &mut watch::Receiver<bool>,
        wakeup: &mut Option<Box<dyn LogWakeup>>,
    ) {
        let name = self.name();
        let mut state = "";
        let mut reported_at = tokio::time::Instant::now();
        let mut failures = 0;
        while !stopping(stop) {
            match tokio::time::timeout(LEASE_CHECK_TIMEOUT, lease.check()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(projection = name, %error, "lease lost");
                    return;
                }
                Err(_) => {
                    tracing::warn!(projection = name, "lease check timed out; giving it up");
                    return;
                }
            }
            let (next, idle) = match self.run_batch().await {
                Ok(report) => {
                    failures = 0;
                    if report.events > 0 {
                        tracing::debug!(
                            projection = name,
                            from = report.from,
                            to = report.to,
                            applied = report.applied,
                            parked = report.parked,
                            "batch committed"
                        );
                    }
                    if report.caught_up {
                        ("running", true)
                    } else {
                        ("catching up", false)
                    }
                }
                Err(error) => {
                    failures += 1;
                    tracing::error!(projection = name, %error, "batch failed");
                    pause(stop, self.config.backoff(failures)).await;
                    ("failed", false)
                }
            };
            if next != state || reported_at.elapsed() >= self.config.heartbeat {
                self.report_state(next).await;
                state = next;
                reported_at = tokio::time::Instant::now();
            }
            if idle {
                self.wait_for_events(stop, wakeup).await;
            }
        }
    }

    async fn wait_for_events(
        &self,
        stop: &mut watch::Receiver<bool>,
        wakeup: &mut Option<Box<dyn LogWakeup>>,
    ) {
        // Waking for the heartbeat too keeps an idle worker's state fresh in the status.
        let interval = self.config.poll_interval.min(self.config.heartbeat);
        match wakeup {
            Some(signal) => {
                tokio::select! {
                    woken = signal.wait() => match woken {
                        Ok(()) if !self.config.linger.is_zero() => {
                            pause(stop, self.config.linger).await;
                        }
                        Ok(()) => {}
                        Err(error) => {
                            tracing::warn!(projection = self.name(), %error, "wake-up channel failed; polling");
                            pause(stop, interval).await;
                        }
                    },
                    () = tokio::time::sleep(interval) => {}
                    () = wait_stop(stop) => {}
                }
            }
            None => pause(stop, interval).await,
        }
    }

    async fn report_state(&self, state: &str) {
        // Only the live worker speaks for the projection; a rebuild shows as its own checkpoint.
        if self.generation == Generation::Rebuild {
            return;
        }
        if let Err(error) = self
            .deps
            .store
            .set_state(self.projection.name(), state)
            .await
        {
            tracing::warn!(projection = self.name(), %error, "cannot record the state");
        }
    }
}

async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn pause(stop: &mut watch::Receiver<bool>, interval: Duration) {
    let _ = tokio::time::timeout(interval, wait_stop(stop)).await;
}

/// Runs a live worker for each of `projections` until `stop`, and waits for them all to end.
/// Used by `strata-projector run` and by `strata-web --with-projector`.
pub async fn run_workers(
    deps: &WorkerDeps,
    projections: Vec<Arc<dyn Projection>>,
    config: &ProjectorConfig,
    stop: &watch::Receiver<bool>,
) {
    let mut workers = tokio::task::JoinSet::new();
    for projection in projections {
        let worker =
            ProjectionWorker::new(deps.clone(), projection, Generation::Live, config.clone());
        let stop = stop.clone();
        workers.spawn(async move { worker.run(stop).await });
    }
    while let Some(joined) = workers.join_next().await {
        if let Err(error) = joined {
            tracing::error!(%error, "a projection worker ended abnormally");
        }
    }
}
