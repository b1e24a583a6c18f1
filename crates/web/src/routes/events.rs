//! `GET /v1/events` and `GET /v1/events/stream`: catch-up subscriptions to the global log. A
//! page of it after a position, oldest first, with where to go on; and the same as Server-Sent
//! Events, first catching up from the log, then live from the events committed since, read once
//! for all subscribers ([`LiveLog`]). Operators and auditors see every event; a customer only
//! those of their own orders and accounts. Live subscribers are bounded in number (503 with
//! `Retry-After` beyond), and one that falls further behind than the live buffer is sent a last
//! `cutoff` event saying where to resume, then disconnected.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use strata_application::{LogQuery, Principal};
use strata_ports::RecordedEvent;
use tokio::sync::{OwnedSemaphorePermit, broadcast, watch};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::extract::{ApiQuery, parse_digits};
use crate::routes::common::EventDto;
use crate::state::AppState;
pub use crate::subscriptions::{SubscriptionLimits, Subscriptions};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events", get(page))
        .route("/v1/events/stream", get(stream))
}

/// Events per page when the client does not say.
const DEFAULT_LIMIT: usize = 100;

/// Events a subscriber reads from the log at once while it catches up.
const CATCH_UP_PAGE: usize = 200;

/// The longest category or event type a filter may name.
const MAX_NAME: usize = 64;

/// Which events, from where. Any other parameter is a 400.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// The position to read after: 0 (the default) from the start, else a `position` (or the
    /// `nextAfter`) of an earlier answer.
    #[param(minimum = 0, default = 0)]
    pub after: Option<u64>,
    /// Events per page: 1 to 1,000 (default 100). A page may hold fewer when filters or a
    /// customer's scope leave events out: go on from `nextAfter`.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<usize>,
    /// Only events of this stream category (`order`, `account`).
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub category: Option<String>,
    /// Only events of this type (`OrderPlaced`, `MoneyDeposited`).
    #[serde(rename = "type")]
    #[param(rename = "type", pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub event_type: Option<String>,
}

/// What to stream, from where (`Last-Event-ID` wins over `after`). Any other parameter is a 400.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// The position to stream after (default 0: from the start), when no `Last-Event-ID` is
    /// sent.
    #[param(minimum = 0, default = 0)]
    pub after: Option<u64>,
    /// Only events of this stream category.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub category: Option<String>,
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type", pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub event_type: Option<String>,
}

/// One event of the log: its stream, and the event as the audit trail shows it (with its
/// `globalPosition`, the position to resume after).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEventDto {
    /// `<category>-<aggregate id>`.
    pub stream_id: String,
    pub category: String,
    #[serde(flatten)]
    pub event: EventDto,
}

impl From<RecordedEvent> for LogEventDto {
    fn from(event: RecordedEvent) -> Self {
        Self {
            stream_id: event.stream_id.to_string(),
            category: event.stream_id.category().to_owned(),
            event: EventDto::from(event),
        }
    }
}

/// A page of the log.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogPageDto {
    /// The events, oldest first.
    pub events: Vec<LogEventDto>,
    /// The position to read after next: the last one this page read through (events the
    /// caller may not see, or that the filters leave out, included). Equal to `after` when
    /// nothing is new.
    pub next_after: u64,
}

/// The last event of a stream that ends because its subscriber fell behind.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CutoffDto {
    /// Resume with `after` (or `Last-Event-ID`) set to this.
    pub resume_after: u64,
    pub reason: String,
}

/// A position from outside: at most `i64::MAX`, as the API document's `int64` says (the log's
/// positions are stored as 64-bit signed integers).
fn checked_position(name: &str, position: u64) -> Result<u64, ApiError> {
    if i64::try_from(position).is_err() {
        return Err(ApiError::BadRequest(format!(
            "{name} must be a position, at most {}",
            i64::MAX
        )));
    }
    Ok(position)
}

fn checked_name(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(value)
            if value.is_empty()
                || value.len() > MAX_NAME
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Err(ApiError::BadRequest(format!(
                "{name} must be 1 to {MAX_NAME} letters, digits, '_' or '-'"
            )))
        }
        other => Ok(other),
    }
}

/// A page of the global log, oldest first: every event for operators and auditors, a
/// customer's own orders' and accounts' for a customer.
#[utoipa::path(get, path = "/v1/events", tag = "events", operation_id = "logEvents",
    params(LogParams),
    responses((status = 200, description = "The events after `after` that the caller may see, and where to go on", body = LogPageDto),
        (status = 400, description = "A malformed or out-of-range parameter, or an unknown one"),
        (status = 401), (status = 429), (status = 503)),
    security(("bearer" = [])))]
pub async fn page(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiQuery(params): ApiQuery<LogParams>,
) -> Result<axum::Json<LogPageDto>, ApiError> {
    let query = LogQuery {
        after: checked_position("after", params.after.unwrap_or(0))?,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT),
        category: checked_name("category", params.category)?,
        event_type: checked_name("type", params.event_type)?,
    };
    let page = state.subscriptions.feed.page(&principal, &query).await?;
    Ok(axum::Json(LogPageDto {
        events: page.events.into_iter().map(LogEventDto::from).collect(),
        next_after: page.next_after,
    }))
}

/// The global log as Server-Sent Events: each event as `id: <position>` and `data: <the event,
/// as in GET /v1/events>`, first those already in the log after `after` (or `Last-Event-ID`),
/// then live as they are committed; a comment line every 15 s while idle. A subscriber that
/// falls further behind than the live buffer gets a last `event: cutoff` (its `id` and
/// `resumeAfter` say where to resume) and is disconnected.
#[utoipa::path(get, path = "/v1/events/stream", tag = "events", operation_id = "streamEvents",
    params(StreamParams,
        ("Last-Event-ID" = Option<u64>, Header, description = "The `id` of the last event received: the stream resumes after it (wins over `after`)")),
    responses((status = 200, description = "The stream; each `data` is a `LogEventDto`, a last `cutoff` event a `CutoffDto`", content_type = "text/event-stream", body = String),
        (status = 400, description = "A malformed parameter or Last-Event-ID, or an unknown parameter"),
        (status = 401), (status = 429),
        (status = 503, description = "The instance has its limit of live subscribers; retry after Retry-After")),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<StreamParams>,
) -> Result<Response, ApiError> {
    let after = match headers.get("last-event-id") {
        Some(value) => {
            let id = value
                .to_str()
                .ok()
                .and_then(|text| parse_digits(text.trim(), 19))
                .ok_or_else(|| {
                    ApiError::BadRequest("Last-Event-ID must be a position (digits)".to_owned())
                })?;
            checked_position("Last-Event-ID", id)?
        }
        None => checked_position("after", params.after.unwrap_or(0))?,
    };
    let query = LogQuery {
        after,
        limit: CATCH_UP_PAGE,
        category: checked_name("category", params.category)?,
        event_type: checked_name("type", params.event_type)?,
    };
    let subscriptions = &state.subscriptions;
    let Some(permit) = subscriptions.try_subscribe() else {
        return Err(ApiError::Overloaded(format!(
            "this instance streams to its limit of {} live subscribers; retry later",
            subscriptions.limits().max_subscribers
        )));
    };
    metrics::gauge!(crate::metrics::HTTP_SUBSCRIBERS).set(subscriptions.subscribers() as f64);
    let subscriber = Subscriber {
        state: state.clone(),
        principal,
        query,
        pending: VecDeque::new(),
        live: None,
        stopping: subscriptions.live.stopping(),
        done: false,
        _permit: Permit(Some(permit), state.clone()),
    };
    let events = futures::stream::unfold(subscriber, Subscriber::next);
    let keep_alive = KeepAlive::new().interval(subscriptions.limits().heartbeat);
    Ok(Sse::new(events).keep_alive(keep_alive).into_response())
}

/// A subscriber's permit, given back (and the gauge set) when its stream ends or the client
/// goes away.
struct Permit(Option<OwnedSemaphorePermit>, AppState);

impl Drop for Permit {
    fn drop(&mut self) {
        drop(self.0.take());
        metrics::gauge!(crate::metrics::HTTP_SUBSCRIBERS)
            .set(self.1.subscriptions.subscribers() as f64);
    }
}

/// One subscriber's position in the log: catching up from the log, or live.
struct Subscriber {
    state: AppState,
    principal: Principal,
    /// `after` is the last position read through (delivered or left out).
    query: LogQuery,
    pending: VecDeque<RecordedEvent>,
    live: Option<broadcast::Receiver<Arc<RecordedEvent>>>,
    stopping: watch::Receiver<bool>,
    done: bool,
    _permit: Permit,
}

impl Subscriber {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if self.done || *self.stopping.borrow() {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                let sse = event_of(event);
                return Some((Ok(sse), self));
            }
            let Some(live) = self.live.as_mut() else {
                if let Err(last) = self.catch_up().await {
                    return Some((Ok(last), self));
                }
                continue;
            };
            let received = tokio::select! {
                received = live.recv() => received,
                _ = self.stopping.wait_for(|stopped| *stopped) => return None,
            };
            match received {
                Ok(event) if event.global_position <= self.query.after => {}
                Ok(event) if event.global_position == self.query.after + 1 => {
                    let feed = &self.state.subscriptions.feed;
                    // `after` moves only once the event is judged: a failure resumes before it.
                    match feed.keeps(&self.principal, &self.query, &event).await {
                        Ok(keep) => {
                            self.query.after = event.global_position;
                            if keep {
                                self.pending.push_back((*event).clone());
                            }
                        }
                        Err(error) => return Some((Ok(self.ended(&error.to_string())), self)),
                    }
                }
                // A gap (the live log started after this subscriber's catch-up ended): read it
                // from the log, then listen again.
                Ok(_) => self.live = None,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let reason = format!(
                        "the subscriber fell {missed} events behind the live buffer of {}",
                        self.state.subscriptions.limits().buffer
                    );
                    let cutoff = self.ended(&reason);
                    return Some((Ok(cutoff), self));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Reads the next page from the log; at its end, starts listening live.
    ///
    /// # Errors
    /// The log failed: the stream's last event, which says so (a stream cannot answer with a
    /// status any more).
    async fn catch_up(&mut self) -> Result<(), Event> {
        let read = self
            .state
            .subscriptions
            .feed
            .page(&self.principal, &self.query)
            .await;
        let page = read.map_err(|error| self.ended(&error.to_string()))?;
        self.query.after = page.next_after;
        self.pending.extend(page.events);
        if page.at_head {
            // Listening before the read that confirms the end: whatever is committed after that
            // read is broadcast to this subscriber, and what was before it, read.
            let live = self.state.subscriptions.live.subscribe(self.query.after);
            let again = self
                .state
                .subscriptions
                .feed
                .page(&self.principal, &self.query)
                .await
                .map_err(|error| self.ended(&error.to_string()))?;
            self.query.after = again.next_after;
            self.pending.extend(again.events);
            self.live = Some(live);
        }
        Ok(())
    }

    /// The last event of a stream that ends early, and the end.
    fn ended(&mut self, reason: &str) -> Event {
        self.done = true;
        let cutoff = CutoffDto {
            resume_after: self.query.after,
            reason: reason.to_owned(),
        };
        Event::default()
            .event("cutoff")
            .id(self.query.after.to_string())
            .data(serde_json::to_string(&cutoff).unwrap_or_default())
    }
}

/// An event of the log as one Server-Sent Event.
fn event_of(event: RecordedEvent) -> Event {
    let id = event.global_position.to_string();
    let data = serde_json::to_string(&LogEventDto::from(event)).unwrap_or_default();
    Event::default().id(id).data(data)
}
