//! `/health/live` (the process answers) and `/health/ready` (the event store answers too).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", operation_id = "live",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "live"}))))]
pub async fn live() -> axum::Json<Value> {
    axum::Json(json!({"status": "live"}))
}

/// The process can serve requests: the event store answers within two seconds.
#[utoipa::path(get, path = "/health/ready", tag = "health", operation_id = "ready",
    responses((status = 200, description = "Ready: the database answers", body = Object, example = json!({"status": "ready", "headPosition": 42})),
        (status = 503, description = "The database is unavailable")))]
pub async fn ready(
    State(state): State<AppState>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.readiness.head_position()).await {
        Ok(Ok(head)) => Ok((
            StatusCode::OK,
            axum::Json(json!({"status": "ready", "headPosition": head})),
        )),
        Ok(Err(error)) => Err(ApiError::Unavailable(format!("event store: {error}"))),
        Err(_) => Err(ApiError::Unavailable(
            "event store did not answer within 2 s".to_owned(),
        )),
    }
}
