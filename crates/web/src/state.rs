//! What every handler can reach: the application services, the token keys and the metrics.

use std::ops::Deref;
use std::sync::Arc;

use strata_application::{CommandService, HistoryService, QueryService, StatusService};
use strata_ports::EventStore;
use tokio::sync::watch;

use crate::auth::{Gatekeeper, JwtKeys};
use crate::limits::RateLimiters;
use crate::metrics::Metrics;
use crate::subscriptions::Subscriptions;

/// The handler state, shared: axum clones it for every request, so a clone is one reference
/// count, not a copy of each service (keys, validation rules and configs allocate when copied:
/// measured, that cost ~5% of `http` throughput).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// Everything a handler can reach.
pub struct Services {
    pub commands: CommandService,
    pub history: HistoryService,
    /// Answers every query from the read models (never from the event store).
    pub queries: QueryService,
    pub status: StatusService,
    pub jwt: JwtKeys,
    /// Probed by `/health/ready`.
    pub readiness: Arc<dyn EventStore>,
    /// Renders `/metrics`.
    pub metrics: Metrics,
    /// Per-principal rate limits of commands and queries.
    pub rate_limits: RateLimiters,
    /// The log as pages and as live streams (`/v1/events`).
    pub subscriptions: Subscriptions,
    /// Turns true when the server stops: live streams end, so that the stop does not wait for
    /// them.
    pub closing: watch::Sender<bool>,
}

impl Gatekeeper for AppState {
    fn jwt(&self) -> &JwtKeys {
        &self.jwt
    }

    fn rate_limits(&self) -> &RateLimiters {
        &self.rate_limits
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("commands", &self.commands)
            .field("queries", &self.queries)
            .finish_non_exhaustive()
    }
}
