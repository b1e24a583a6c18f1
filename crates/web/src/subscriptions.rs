//! The live subscriptions of one `strata-web` instance (`GET /v1/events/stream`): the log as
//! pages and as a shared live feed, the permits that bound the subscribers, and the limits.

use std::sync::Arc;
use std::time::Duration;

use strata_application::{LiveLog, LogFeed};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How the live subscriptions of this instance are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionLimits {
    /// Live subscribers at once; more are answered 503 with `Retry-After`.
    pub max_subscribers: usize,
    /// Events a live subscriber may fall behind before it is cut off.
    pub buffer: usize,
    /// How often an idle stream sends a comment line, so that proxies keep it open.
    pub heartbeat: Duration,
}

impl Default for SubscriptionLimits {
    fn default() -> Self {
        Self {
            max_subscribers: 100,
            buffer: 10_000,
            heartbeat: Duration::from_secs(15),
        }
    }
}

/// The live subscriptions of this instance: the shared live log and the subscriber permits.
pub struct Subscriptions {
    pub feed: Arc<LogFeed>,
    pub live: LiveLog,
    permits: Arc<Semaphore>,
    limits: SubscriptionLimits,
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Subscriptions {
    pub fn new(feed: Arc<LogFeed>, live: LiveLog, limits: SubscriptionLimits) -> Self {
        Self {
            feed,
            live,
            permits: Arc::new(Semaphore::new(
                limits.max_subscribers.min(Semaphore::MAX_PERMITS),
            )),
            limits,
        }
    }

    /// A subscriber's permit, if this instance has one left.
    pub fn try_subscribe(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    pub fn limits(&self) -> SubscriptionLimits {
        self.limits
    }

    /// Subscribers connected now.
    pub fn subscribers(&self) -> usize {
        self.limits
            .max_subscribers
            .saturating_sub(self.permits.available_permits())
    }
}
