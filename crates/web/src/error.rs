//! The one error type of the HTTP edge, rendered as RFC 9457 `application/problem+json`.
//!
//! Every variant documents its status. 5xx details are logged, never sent. The request id is
//! added to every problem body by [`add_request_id`], whichever layer produced the problem.

use std::any::Any;

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use strata_application::{CommandError, QueryError};
use strata_domain::{RejectionKind, ValidationError};
use tower_http::catch_panic::ResponseForPanic;
use tracing::Level;
use utoipa::ToSchema;

use crate::request_id::REQUEST_ID;

pub const PROBLEM_JSON: &str = "application/problem+json";

const TOO_LARGE: &str = "the request body is larger than the configured limit";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A URN naming the kind of problem, e.g. `urn:strata:problem:conflict`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request id (also in the `X-Request-Id` header), to quote when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// What went wrong, as the client should see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed body, wrong types, bad parameters or headers.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token, or a token that is invalid or expired.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but this role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource, or one the caller may not see.
    #[error("{0}")]
    NotFound(String),
    /// 409: the current state forbids the command, or concurrent writers kept winning.
    #[error("{0}")]
    Conflict(String),
    /// 412: `If-Match` names a version the stream is no longer at.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: the body is larger than the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not declared as JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed values that break a validation rule, or a reused idempotency key.
    #[error("{0}")]
    Unprocessable(String),
    /// 429: the principal sent more commands or queries than its rate allows; retry after the
    /// given number of seconds (`Retry-After`).
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        retry_after_secs: u64,
    },
    /// 503: a dependency (the database) is unavailable; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// 503: the server is handling its limit of requests; retry shortly.
    #[error("{0}")]
    Overloaded(String),
    /// 503: the request outlived its deadline; retry it (a command with the same
    /// `Idempotency-Key`, as it may have been applied).
    #[error("{0}")]
    TimedOut(String),
    /// 503: the projection serving a query has not reached the client's `X-Min-Position`
    /// within the configured wait; retry later (the detail says where it is).
    #[error("{0}")]
    NotCaughtUp(String),
    /// 500: a bug or corrupt data; the detail is logged, not sent.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The last part of the problem type (`conflict`, `not-found`...): a short, stable name of
    /// the outcome, also used as a metrics label.
    pub fn slug(&self) -> &'static str {
        self.parts().1
    }

    /// How loud the answer's log line is. A server fault (a bug, corrupt data, an unavailable
    /// database) is an ERROR someone must act on. The edge's limits doing their job and a
    /// projection behind a client's `X-Min-Position` are expected under load: WARN, worth
    /// watching, with their counters in `/metrics`. A 401, 403 or 429 is INFO (a client
    /// probing or flooding shows there); every other 4xx is the client's own business: DEBUG.
    pub fn log_level(&self) -> Level {
        match self {
            Self::Internal(_) | Self::Unavailable(_) => Level::ERROR,
            Self::Overloaded(_) | Self::TimedOut(_) | Self::NotCaughtUp(_) => Level::WARN,
            Self::Unauthorized(_) | Self::Forbidden(_) | Self::TooManyRequests { .. } => {
                Level::INFO
            }
            Self::BadRequest(_)
            | Self::NotFound(_)
            | Self::Conflict(_)
            | Self::PreconditionFailed(_)
            | Self::PayloadTooLarge(_)
            | Self::UnsupportedMediaType(_)
            | Self::Unprocessable(_) => Level::DEBUG,
        }
    }

    /// Logs the answer at its level, inside the request's span (which carries the request id),
    /// with the detail a 5xx does not send.
    fn log(&self, status: StatusCode, slug: &str) {
        let status = status.as_u16();
        let level = self.log_level();
        if level == Level::ERROR {
            tracing::error!(status, problem = slug, detail = %self, "request failed");
        } else if level == Level::WARN {
            tracing::warn!(status, problem = slug, detail = %self, "request refused");
        } else if level == Level::INFO {
            tracing::info!(status, problem = slug, detail = %self, "request refused");
        } else {
            tracing::debug!(status, problem = slug, detail = %self, "request refused");
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::Conflict(_) => (
                StatusCode::CONFLICT,
                "conflict",
                "Conflict with the current state",
            ),
            Self::PreconditionFailed(_) => (
                StatusCode::PRECONDITION_FAILED,
                "version-mismatch",
                "Version mismatch",
            ),
            Self::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Validation failed",
            ),
            Self::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            Self::Overloaded(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Server overloaded",
            ),
            Self::TimedOut(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Request timeout",
            ),
            Self::NotCaughtUp(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not-caught-up",
                "Projection not caught up",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }
}

impl Problem {
    fn new(status: StatusCode, slug: &str, title: &str, detail: String) -> Self {
        Self {
            problem_type: format!("urn:strata:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            request_id: None,
        }
    }
}

impl ApiError {
    /// The problem document of this error with its detail as is: the API document's examples
    /// (real answers hide the details of 5xx, see [`IntoResponse`]).
    pub fn example_problem(&self) -> Problem {
        let (status, slug, title) = self.parts();
        Problem::new(status, slug, title, self.to_string())
    }
}

/// Renders a problem document with the right content type.
pub fn problem(status: StatusCode, slug: &str, title: &str, detail: String) -> Response {
    let body = Problem::new(status, slug, title, detail);
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        let retry_after = match &self {
            Self::TooManyRequests {
                retry_after_secs, ..
            } => Some(HeaderValue::from(*retry_after_secs)),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(HeaderValue::from_static("1")),
            _ => None,
        };
        self.log(status, slug);
        let detail = match self {
            Self::Internal(_) => {
                "an internal error occurred; quote the request id when reporting it".to_owned()
            }
            Self::Unavailable(_) => "a dependency is unavailable; retry later".to_owned(),
            other => other.to_string(),
        };
        let mut response = problem(status, slug, title, detail);
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(retry_after) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after);
        }
        response
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        let detail = error.to_string();
        match error {
            CommandError::Rejected {
                kind: RejectionKind::Invalid,
                ..
            }
            | CommandError::IdempotencyKeyReused(_) => Self::Unprocessable(detail),
            CommandError::Rejected {
                kind: RejectionKind::Conflict,
                ..
            }
            | CommandError::Contention { .. } => Self::Conflict(detail),
            CommandError::Rejected {
                kind: RejectionKind::NotFound,
                ..
            }
            | CommandError::NotFound(_)
            | CommandError::NotAtThatPoint { .. } => Self::NotFound(detail),
            CommandError::Forbidden(_) => Self::Forbidden(detail),
            CommandError::InvalidInput(_) => Self::BadRequest(detail),
            CommandError::VersionMismatch { .. } => Self::PreconditionFailed(detail),
            CommandError::Unavailable(_) => Self::Unavailable(detail),
            CommandError::Internal(_) => Self::Internal(detail),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        let detail = error.to_string();
        match error {
            QueryError::NotFound(_) => Self::NotFound(detail),
            QueryError::BadRequest(_) => Self::BadRequest(detail),
            QueryError::NotCaughtUp { .. } => Self::NotCaughtUp(detail),
            QueryError::Unavailable(_) => Self::Unavailable(detail),
            QueryError::Internal(_) => Self::Internal(detail),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        Self::Unprocessable(error.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType(
                "expected a body with content type application/json".to_owned(),
            ),
            JsonRejection::BytesRejection(bytes)
                if bytes.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Self::PayloadTooLarge(TOO_LARGE.to_owned())
            }
            other => Self::BadRequest(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

/// Renders a panic caught by `CatchPanicLayer` as a 500 problem; [`add_request_id`], outside
/// it, adds the request id. The panic message is logged, never sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct PanicProblem;

impl ResponseForPanic for PanicProblem {
    type ResponseBody = Body;

    fn response_for_panic(&mut self, panic: Box<dyn Any + Send + 'static>) -> Response {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        ApiError::Internal(format!("handler panicked: {message}")).into_response()
    }
}

/// Middleware: writes the request id into every problem body, and turns the plain-text errors
/// of lower layers (unmatched routes, wrong methods, oversized bodies) into problems too.
pub async fn add_request_id(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !is_problem && !status.is_client_error() && !status.is_server_error() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let mut document: serde_json::Value = if is_problem {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::json!({}))
    } else {
        let (slug, title) = match status {
            StatusCode::NOT_FOUND => ("not-found", "Not found"),
            StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "Method not allowed"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "Payload too large"),
            s if s.is_server_error() => ("internal", "Internal server error"),
            _ => ("bad-request", "Bad request"),
        };
        let detail = match status {
            // tower-http's text ("length limit exceeded") does not say which limit.
            StatusCode::PAYLOAD_TOO_LARGE => TOO_LARGE.to_owned(),
            s if s.is_server_error() => title.to_owned(),
            _ => String::from_utf8_lossy(&bytes).trim().to_owned(),
        };
        serde_json::json!({
            "type": format!("urn:strata:problem:{slug}"),
            "title": title,
            "status": status.as_u16(),
            "detail": if detail.is_empty() { title.to_owned() } else { detail },
        })
    };
    if let (Some(object), Some(id)) = (document.as_object_mut(), request_id) {
        object.insert("requestId".to_owned(), serde_json::Value::String(id));
    }
    let body = serde_json::to_vec(&document).unwrap_or_default();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            buffer.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The log lines written while `error` is rendered.
    fn logged_while_rendering(error: ApiError) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || drop(error.into_response()));
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn expected_client_situations_are_logged_below_error_and_server_faults_at_error() {
        let cases = [
            (ApiError::BadRequest("bad".into()), Level::DEBUG),
            (ApiError::NotFound("gone".into()), Level::DEBUG),
            (ApiError::Conflict("late".into()), Level::DEBUG),
            (ApiError::Unprocessable("no".into()), Level::DEBUG),
            (ApiError::Unauthorized("who".into()), Level::INFO),
            (
                ApiError::TooManyRequests {
                    detail: "slow down".into(),
                    retry_after_secs: 1,
                },
                Level::INFO,
            ),
            (ApiError::NotCaughtUp("behind".into()), Level::WARN),
            (ApiError::Overloaded("full".into()), Level::WARN),
            (ApiError::TimedOut("late".into()), Level::WARN),
            (ApiError::Unavailable("database down".into()), Level::ERROR),
            (ApiError::Internal("a bug".into()), Level::ERROR),
        ];
        for (error, expected) in cases {
            let name = format!("{error:?}");
            let logged = logged_while_rendering(error);
            let lines: Vec<&str> = logged.lines().collect();
            assert_eq!(lines.len(), 1, "{name} logged {logged:?}");
            assert!(
                lines[0].trim_start().starts_with(expected.as_str()),
                "{name} should be logged at {expected}: {logged:?}"
            );
        }
    }

    #[test]
    fn a_server_fault_logs_the_detail_it_does_not_send() {
        let logged = logged_while_rendering(ApiError::Internal("the secret cause".into()));
        assert!(logged.contains("the secret cause"), "{logged}");
        assert!(logged.contains("status=500"), "{logged}");
    }
}
