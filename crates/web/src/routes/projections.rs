//! `GET /v1/projections`: the figures of `strata-projector status`, for operators and auditors.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use strata_application::{ProjectionStatus, Role};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/projections", get(projections))
}

/// What a projection is doing, as `strata-projector status` says it (documentation only).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub enum ProjectionState {
    Running,
    #[serde(rename = "catching up")]
    CatchingUp,
    Rebuilding,
    Failed,
    Stalled,
    Stopped,
    #[serde(rename = "never run")]
    NeverRun,
}

/// One projection's progress. The field names are those of `strata-projector status --json`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionStatusDto {
    pub name: String,
    /// The last log position the projection processed.
    pub checkpoint: u64,
    /// The last position of the log.
    pub head: u64,
    pub lag_events: u64,
    /// Age of the oldest event not yet processed (0 when caught up).
    pub lag_seconds: f64,
    pub dead_letters: u64,
    #[schema(value_type = ProjectionState)]
    pub state: String,
    /// The checkpoint of a rebuild in progress, if any.
    pub rebuild_checkpoint: Option<u64>,
}

impl From<ProjectionStatus> for ProjectionStatusDto {
    fn from(status: ProjectionStatus) -> Self {
        Self {
            name: status.name,
            checkpoint: status.checkpoint,
            head: status.head,
            lag_events: status.lag_events,
            lag_seconds: status.lag_seconds,
            dead_letters: status.dead_letters,
            state: status.state,
            rebuild_checkpoint: status.rebuild_checkpoint,
        }
    }
}

/// Every projection's progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionsDto {
    pub projections: Vec<ProjectionStatusDto>,
}

/// Where each projection is in the log, how far behind, its dead letters and state.
#[utoipa::path(get, path = "/v1/projections", tag = "operations", operation_id = "projections",
    responses((status = 200, description = "Every projection's checkpoint, lag, dead letters and state", body = ProjectionsDto),
        (status = 401),
        (status = 403, description = "Customers may not read it"),
        (status = 503, description = "The database is unavailable")),
    security(("bearer" = [])))]
pub async fn projections(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<axum::Json<ProjectionsDto>, ApiError> {
    if principal.role == Role::Customer {
        return Err(ApiError::Forbidden(
            "only operators and auditors may read the projections' status".to_owned(),
        ));
    }
    let statuses = state.status.statuses(OffsetDateTime::now_utc()).await?;
    Ok(axum::Json(ProjectionsDto {
        projections: statuses.into_iter().map(Into::into).collect(),
    }))
}
