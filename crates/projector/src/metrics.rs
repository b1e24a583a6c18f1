//! `/metrics` of the projector (Prometheus text). Counters and histograms are recorded by the
//! workers as they go; the lag, dead-letter and open-transaction gauges are read from the
//! database at each scrape, so they are right even for projections this instance does not run.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use strata_application::StatusService;
use time::OffsetDateTime;
use tokio::sync::watch;

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
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
    let handle = PrometheusBuilder::new().install_recorder()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(Scrape { handle, status });
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

async fn render(State(scrape): State<Scrape>) -> Result<String, (StatusCode, String)> {
    record_status(&scrape.status)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(scrape.handle.render())
}

/// Sets the per-projection gauges from the database.
///
/// # Errors
/// When the database cannot be read.
pub async fn record_status(status: &StatusService) -> Result<(), strata_application::QueryError> {
    for s in status.statuses(OffsetDateTime::now_utc()).await? {
        let name = s.name.clone();
        metrics::gauge!("strata_projection_lag_events", "projection" => name.clone())
            .set(s.lag_events as f64);
        metrics::gauge!("strata_projection_lag_seconds", "projection" => name.clone())
            .set(s.lag_seconds);
        metrics::gauge!("strata_projection_checkpoint", "projection" => name.clone())
            .set(s.checkpoint as f64);
        metrics::gauge!("strata_projection_dead_letters", "projection" => name)
            .set(s.dead_letters as f64);
    }
    let age = status.oldest_open_transaction_age().await?.unwrap_or(0.0);
    metrics::gauge!("strata_oldest_open_transaction_seconds").set(age);
    Ok(())
}
