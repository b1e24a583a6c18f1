//! Prometheus metrics of `strata-web`: the process-wide recorder (every duration a histogram
//! with the application's buckets, every metric described), the process metrics it refreshes at
//! each scrape, what handlers record about commands, and the middleware that counts and times
//! every request by route template. `/metrics` renders them (`routes::metrics`), after setting
//! the projection gauges from the database.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use strata_application::metrics::SECONDS_BUCKETS;

/// Commands by type and outcome (`accepted`, `replayed`, or the problem type: `conflict`...).
pub const COMMANDS_TOTAL: &str = "strata_commands_total";
/// Time to handle a command, by type (a histogram).
pub const COMMAND_SECONDS: &str = "strata_command_seconds";
/// Requests answered, by method, route template and status.
pub const HTTP_REQUESTS_TOTAL: &str = "strata_http_requests_total";
/// Time to answer a request, by method, route template and status (a histogram).
pub const HTTP_REQUEST_SECONDS: &str = "strata_http_request_duration_seconds";
/// Connections closed at once because the server had its limit open.
pub const HTTP_CONNECTIONS_REFUSED_TOTAL: &str = "strata_http_connections_refused_total";
/// Requests answered 503 because they outlived the request deadline.
pub const HTTP_REQUESTS_TIMED_OUT_TOTAL: &str = "strata_http_requests_timed_out_total";
/// Requests answered 503 at once because the server had its limit in flight.
pub const HTTP_REQUESTS_SHED_TOTAL: &str = "strata_http_requests_shed_total";
/// Clients of `GET /v1/events/stream` connected now.
pub const HTTP_SUBSCRIBERS: &str = "strata_http_subscribers";

/// The `route` label of a request that matched no route: a fixed value, since the raw path is
/// the client's to choose and would make a series per path tried.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The process's recorder, and what refreshes the process metrics before each render.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics in the Prometheus text format, the process metrics read just now.
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle.render()
    }

    /// Folds the histograms' samples in, so that their memory stays bounded between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics. The first call installs the Prometheus recorder as the global
/// recorder of the `metrics` facade and describes every metric; later calls (a test process
/// builds many applications) share it.
pub fn recorder() -> Metrics {
    METRICS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(SECONDS_BUCKETS)
                // Only an empty bucket list is refused, and SECONDS_BUCKETS is not empty.
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(error) = metrics::set_global_recorder(recorder) {
                tracing::warn!(%error, "another metrics recorder is installed; /metrics will miss what it records");
            }
            let process = metrics_process::Collector::default();
            process.describe();
            strata_application::metrics::describe();
            describe();
            Metrics { handle, process }
        })
        .clone()
}

/// Describes the metrics this crate records, and starts its unlabelled counters at zero so
/// that they are scraped (and `rate()` works) before their first event.
fn describe() {
    describe_counter!(
        COMMANDS_TOTAL,
        Unit::Count,
        "Commands handled, by command and outcome (accepted, replayed, or the problem type)."
    );
    describe_histogram!(
        COMMAND_SECONDS,
        Unit::Seconds,
        "Time to handle a command in the application, by command."
    );
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        Unit::Count,
        "HTTP requests answered, by method, route template and status (the edge's own 413, 429 and 503 included)."
    );
    describe_histogram!(
        HTTP_REQUEST_SECONDS,
        Unit::Seconds,
        "Time from a request's arrival to its response head, by method, route template and status."
    );
    describe_counter!(
        HTTP_CONNECTIONS_REFUSED_TOTAL,
        Unit::Count,
        "Connections closed at once because the server had its limit of connections open."
    );
    describe_counter!(
        HTTP_REQUESTS_TIMED_OUT_TOTAL,
        Unit::Count,
        "Requests answered 503 because they outlived the request deadline."
    );
    describe_counter!(
        HTTP_REQUESTS_SHED_TOTAL,
        Unit::Count,
        "Requests answered 503 at once because the server had its limit of requests in flight."
    );
    describe_gauge!(
        HTTP_SUBSCRIBERS,
        Unit::Count,
        "Clients of GET /v1/events/stream connected now (live subscribers of the log)."
    );
    metrics::gauge!(HTTP_SUBSCRIBERS).set(0.0);
    for counter in [
        HTTP_CONNECTIONS_REFUSED_TOTAL,
        HTTP_REQUESTS_TIMED_OUT_TOTAL,
        HTTP_REQUESTS_SHED_TOTAL,
    ] {
        metrics::counter!(counter).increment(0);
    }
}

/// Records one command that reached the application: its outcome and how long it took.
pub fn record_command(command: &'static str, outcome: &'static str, elapsed: Duration) {
    metrics::counter!(COMMANDS_TOTAL, "command" => command, "outcome" => outcome).increment(1);
    metrics::histogram!(COMMAND_SECONDS, "command" => command).record(elapsed.as_secs_f64());
}

/// Middleware: counts and times every request by method, route template and status. It runs
/// after routing (`Router::layer`), so the route's template is known, and outside the edge's
/// limits, so their 413, 429 and 503 answers are counted like any other.
pub async fn record_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || UNMATCHED_ROUTE.to_owned(),
        |path| path.as_str().to_owned(),
    );
    let response = next.run(request).await;
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(HTTP_REQUEST_SECONDS, &labels).record(started.elapsed().as_secs_f64());
    response
}

/// The `method` label: the standard methods by name, any other as `other`, since a client may
/// send any token as a method.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_outside_the_standard_ones_is_labelled_other() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let invented = Method::from_bytes(b"BREW").unwrap_or(Method::GET);
        assert_eq!(method_label(&invented), "other");
    }
}
