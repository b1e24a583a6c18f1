//! `/metrics` of the projector (Prometheus text). Counters and histograms are recorded by the
//! workers as they go; the lag, dead-letter and open-transaction gauges are read from the
//! database, and the process metrics from the system, at each scrape, so they are right even for
//! projections this instance does not run. Every metric is described (`# HELP`) and every
//! duration is a histogram with the buckets `strata-web` uses too.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use strata_application::StatusService;
use strata_application::metrics::SECONDS_BUCKETS;
use time::OffsetDateTime;
use tokio::sync::watch;

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
    status: StatusService,
}

/// Installs the Prometheus recorder and serves `/metrics` on `addr` until `stop`.
///
/// # Errors
/// When a recorder is already installed or the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    status: StatusService,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let handle = PrometheusBuilder::new()
        .set_buckets(SECONDS_BUCKETS)?
        .install_recorder()?;
    let process = metrics_process::Collector::default();
    process.describe();
    strata_application::metrics::describe();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(Scrape {
            handle,
            process,
            status,
        });
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "metrics server failed");
        }
    });
    Ok(())
}

async fn render(State(scrape): State<Scrape>) -> String {
    // The counters are worth serving even when the gauges cannot be read.
    if let Err(error) = scrape.status.record_gauges(OffsetDateTime::now_utc()).await {
        tracing::warn!(%error, "cannot read the projection gauges");
    }
    scrape.process.collect();
    scrape.handle.render()
}
