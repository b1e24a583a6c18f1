//! What every handler can reach: the application services, the token keys and the metrics.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use strata_application::{CommandService, HistoryService, QueryService, StatusService};
use strata_ports::EventStore;

use crate::auth::JwtKeys;
use crate::limits::RateLimiters;

/// Shared, cheaply cloneable handler state.
#[derive(Clone)]
pub struct AppState {
    pub commands: CommandService,
    pub history: HistoryService,
    /// Answers every query from the read models (never from the event store).
    pub queries: QueryService,
    pub status: StatusService,
    pub jwt: JwtKeys,
    /// Probed by `/health/ready`.
    pub readiness: Arc<dyn EventStore>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Per-principal rate limits of commands and queries.
    pub rate_limits: RateLimiters,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("commands", &self.commands)
            .field("queries", &self.queries)
            .finish_non_exhaustive()
    }
}
