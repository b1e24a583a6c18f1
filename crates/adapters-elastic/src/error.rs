//! The adapter's own set-up error, and how driver errors and HTTP answers become `SearchError`s.

use elasticsearch::http::transport::BuildError;
use serde_json::Value;
use strata_ports::SearchError;

/// Why an `EsSearchIndex` could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ElasticSetupError {
    /// `url` is shown with its password hidden.
    #[error("invalid elasticsearch url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot build the elasticsearch client: {0}")]
    Client(String),
    #[error(
        "index prefix {0:?} cannot start an index name: use lowercase letters, digits, '-' and '_', starting with a letter"
    )]
    InvalidIndexPrefix(String),
}

/// A request that got no (complete) answer. Connection failures and timeouts are worth
/// retrying; a body that is not JSON is a protocol problem; the rest is a bug or a bad setting.
pub(crate) fn from_client(error: &elasticsearch::Error) -> SearchError {
    if error.is_json() {
        return SearchError::Protocol(error.to_string());
    }
    if error.is_timeout() {
        return SearchError::Unavailable(format!("timed out: {error}"));
    }
    match std::error::Error::source(error) {
        // `Lib` errors (bad URLs) have no source, build errors are configuration.
        None => SearchError::Backend(error.to_string()),
        Some(source) if source.is::<BuildError>() => SearchError::Backend(error.to_string()),
        // HTTP and IO failures: connection refused or reset, body cut off.
        Some(_) => SearchError::Unavailable(error.to_string()),
    }
}

/// Whether an HTTP status means "not now": too many requests, or a server-side failure.
pub(crate) fn is_retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

/// An error answer (status outside 2xx) as a `SearchError`.
pub(crate) fn from_status(status: u16, body: &str, what: &str) -> SearchError {
    let reason = reason_of(body);
    let message = format!("{what}: status {status}: {reason}");
    if is_retryable(status) {
        SearchError::Unavailable(message)
    } else {
        SearchError::Backend(message)
    }
}

/// The `error.type` and `error.reason` of an Elasticsearch error body, or the body itself.
pub(crate) fn reason_of(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(value) => error_reason(value.get("error").unwrap_or(&value)),
        Err(_) => body.chars().take(200).collect(),
    }
}

/// `type: reason` of an `error` object (a string is taken as it is).
pub(crate) fn error_reason(error: &Value) -> String {
    match error {
        Value::String(text) => text.clone(),
        Value::Object(fields) => {
            let ty = fields
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("error");
            let reason = fields.get("reason").and_then(Value::as_str).unwrap_or("");
            format!("{ty}: {reason}")
        }
        other => other.to_string(),
    }
}
