//! What one client may take of the server: the settings of the connection and request limits,
//! the middleware of the request-level ones — a whole-request timeout and a cap on requests in
//! flight, both answered 503 with `Retry-After` — and the per-principal rate limits the
//! authenticating extractors apply (429 with `Retry-After`; decision 0013).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::serve::ConnectionLimits;

/// The limits of the HTTP edge, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    pub connections: ConnectionLimits,
    /// Longest a request may take, from its head read to its response (body read included).
    pub request_timeout: Duration,
    /// Most requests handled at once (`/health/live` excepted); more answer 503 at once.
    pub max_in_flight: usize,
    pub rate: RateLimits,
}

/// Requests per second one principal (a token's `sub`) may send; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub commands_per_second: u32,
    pub queries_per_second: u32,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            connections: ConnectionLimits {
                header_read_timeout: Duration::from_secs(10),
                max_connections: 512,
                write_stall_timeout: Duration::from_secs(10),
                shutdown_grace: Duration::from_secs(40),
            },
            request_timeout: Duration::from_secs(30),
            max_in_flight: 512,
            rate: RateLimits {
                commands_per_second: 100,
                queries_per_second: 500,
            },
        }
    }
}

/// Answers 503 with `Retry-After` when a request takes longer than `timeout`. The handler's
/// future is dropped: a command may still have been applied (an append already handed to the
/// writer completes), so a client retries with the same `Idempotency-Key` to learn its outcome.
pub async fn request_timeout(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!(crate::metrics::HTTP_REQUESTS_TIMED_OUT_TOTAL).increment(1);
            ApiError::TimedOut(format!(
                "the request took longer than {} ms; retry it (with the same Idempotency-Key \
                 for a command)",
                timeout.as_millis()
            ))
            .into_response()
        }
    }
}

/// Requests in flight: a permit each, taken without waiting.
#[derive(Debug, Clone)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    max: usize,
}

impl InFlight {
    pub fn new(max: usize) -> Self {
        Self {
            // Beyond MAX_PERMITS a semaphore panics.
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            max,
        }
    }
}

/// Answers 503 with `Retry-After` at once when `max_in_flight` requests are being handled,
/// rather than queueing work the server cannot do in time. Only liveness is never refused (it
/// reads nothing): an overloaded instance must not look dead to its orchestrator, while one
/// that reports itself not ready, or skips a scrape, does what it should — and readiness and
/// metrics query the database, which anonymous clients must not do at will.
pub async fn cap_in_flight(
    State(in_flight): State<InFlight>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/health/live" {
        return next.run(request).await;
    }
    let Ok(_permit) = in_flight.permits.try_acquire() else {
        metrics::counter!(crate::metrics::HTTP_REQUESTS_SHED_TOTAL).increment(1);
        return ApiError::Overloaded(format!(
            "the server is handling its limit of {} requests; retry shortly",
            in_flight.max
        ))
        .into_response();
    };
    next.run(request).await
}

/// Per-principal rate limiters of commands and of queries (GCRA: a principal may send a burst
/// of one second's worth, then at the configured rate).
#[derive(Clone)]
pub struct RateLimiters {
    commands: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    queries: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

impl std::fmt::Debug for RateLimiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiters")
            .field("commands", &self.commands.is_some())
            .field("queries", &self.queries.is_some())
            .finish()
    }
}

/// What a principal is about to do, as the rate limits count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Command,
    Query,
}

/// A request over its principal's rate: answered 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    pub kind: Kind,
    pub retry_after: Duration,
}

// Here rather than in `error.rs`, so that the error module needs nothing of this one.
impl From<RateLimited> for ApiError {
    fn from(limited: RateLimited) -> Self {
        let what = match limited.kind {
            Kind::Command => "commands",
            Kind::Query => "queries",
        };
        // Whole seconds, rounded up: a client that waits as told is let through.
        let retry_after_secs =
            limited.retry_after.as_secs() + u64::from(limited.retry_after.subsec_nanos() > 0);
        Self::TooManyRequests {
            detail: format!(
                "too many {what} from this principal; retry after {retry_after_secs} s"
            ),
            retry_after_secs: retry_after_secs.max(1),
        }
    }
}

impl RateLimiters {
    pub fn new(limits: RateLimits) -> Self {
        let keyed = |per_second: u32| {
            NonZeroU32::new(per_second)
                .map(|rate| Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_second(rate))))
        };
        Self {
            commands: keyed(limits.commands_per_second),
            queries: keyed(limits.queries_per_second),
        }
    }

    /// Counts one request of `principal`.
    ///
    /// # Errors
    /// [`RateLimited`] when the principal is over its rate, with how long to wait.
    pub fn check(&self, kind: Kind, principal: &str) -> Result<(), RateLimited> {
        let limiter = match kind {
            Kind::Command => &self.commands,
            Kind::Query => &self.queries,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        // Keyed by the verified subject, so a forged token cannot spend another's quota.
        let key = principal.to_owned();
        limiter.check_key(&key).map_err(|not_until| RateLimited {
            kind,
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }

    /// Forgets principals whose bursts are full again, so the limiters' memory stays bounded
    /// by the principals active in the last second or so.
    pub fn forget_idle(&self) {
        for limiter in [&self.commands, &self.queries].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_allows_a_burst_of_one_seconds_worth_per_principal_then_says_how_long_to_wait() {
        let limits = RateLimiters::new(RateLimits {
            commands_per_second: 3,
            queries_per_second: 0,
        });
        for _ in 0..3 {
            assert!(limits.check(Kind::Command, "alice").is_ok());
        }
        let limited = limits.check(Kind::Command, "alice").unwrap_err();
        assert_eq!(limited.kind, Kind::Command);
        assert!(limited.retry_after > Duration::ZERO);
        assert!(limited.retry_after <= Duration::from_millis(334));
        assert!(limits.check(Kind::Command, "bob").is_ok(), "per principal");
        for _ in 0..1_000 {
            assert!(limits.check(Kind::Query, "alice").is_ok(), "0 is no limit");
        }
        limits.forget_idle();
    }

    #[test]
    fn a_cap_beyond_what_a_semaphore_counts_does_not_panic() {
        let in_flight = InFlight::new(usize::MAX);
        assert!(in_flight.permits.try_acquire().is_ok());
    }
}
