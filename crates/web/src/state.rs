//! What every handler can reach: the application services and the token keys.

use std::sync::Arc;

use strata_application::{CommandService, HistoryService};
use strata_ports::EventStore;

use crate::auth::JwtKeys;

/// Shared, cheaply cloneable handler state.
#[derive(Clone)]
pub struct AppState {
    pub commands: CommandService,
    pub history: HistoryService,
    pub jwt: JwtKeys,
    /// Probed by `/health/ready`.
    pub readiness: Arc<dyn EventStore>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("commands", &self.commands)
            .finish_non_exhaustive()
    }
}
