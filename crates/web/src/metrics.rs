//! Prometheus metrics of `strata-web`: the process-wide recorder, and what handlers record about
//! commands. `/metrics` renders them (`routes::metrics`), after setting the projection gauges
//! from the database.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Commands by type and outcome (`accepted`, `replayed`, or the problem type: `conflict`...).
pub const COMMANDS_TOTAL: &str = "strata_commands_total";
/// Time to handle a command, by type (a histogram).
pub const COMMAND_SECONDS: &str = "strata_command_seconds";

/// Upper bounds of the command latency buckets, in seconds.
const COMMAND_SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The handle of the process's Prometheus recorder. The first call installs it as the global
/// recorder of the `metrics` facade; later calls (a test process builds many applications)
/// share it.
pub fn recorder() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(COMMAND_SECONDS.to_owned()),
                    COMMAND_SECONDS_BUCKETS,
                )
                // Only an empty bucket list is refused; a summary is a usable fallback anyway.
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(error) = metrics::set_global_recorder(recorder) {
                tracing::warn!(%error, "another metrics recorder is installed; /metrics will miss what it records");
            }
            handle
        })
        .clone()
}

/// Records one command that reached the application: its outcome and how long it took.
pub fn record_command(command: &'static str, outcome: &'static str, elapsed: Duration) {
    metrics::counter!(COMMANDS_TOTAL, "command" => command, "outcome" => outcome).increment(1);
    metrics::histogram!(COMMAND_SECONDS, "command" => command).record(elapsed.as_secs_f64());
}
