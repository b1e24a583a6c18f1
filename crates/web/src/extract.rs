//! Extractors whose rejections are problems (axum's defaults are plain text, and 422 for a body
//! of the wrong shape where our contract says 400), the command headers, and the read-your-writes
//! header of queries.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, header};
use strata_application::{CommandContext, Principal};

use crate::error::ApiError;
use crate::request_id::REQUEST_ID;

/// `axum::Json` with problem rejections.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Path` with problem rejections.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` with problem rejections.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The headers a command may carry: `If-Match`, `Idempotency-Key`, and the request id.
#[derive(Debug, Clone, Default)]
pub struct CommandHeaders {
    pub if_match: Option<u64>,
    pub idempotency_key: Option<String>,
    pub request_id: Option<String>,
}

impl CommandHeaders {
    /// The application's context for a command by `principal`.
    pub fn context(self, principal: Principal) -> CommandContext {
        CommandContext {
            principal,
            correlation_id: self.request_id.clone(),
            causation_id: self.request_id,
            idempotency_key: self.idempotency_key,
            expected_version: self.if_match,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CommandHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_command_headers(&parts.headers)
    }
}

/// Longest accepted idempotency key: long enough for a UUID or a hash, short enough to index
/// (the storage's own limit, so the edge refuses first).
const MAX_IDEMPOTENCY_KEY: usize = strata_ports::limits::MAX_IDEMPOTENCY_KEY_BYTES;

fn parse_command_headers(headers: &HeaderMap) -> Result<CommandHeaders, ApiError> {
    let text = |name: &str| -> Result<Option<&str>, ApiError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| ApiError::BadRequest(format!("{name} must be visible ASCII")))
            })
            .transpose()
    };
    let if_match = text(header::IF_MATCH.as_str())?
        .map(parse_if_match)
        .transpose()?;
    let idempotency_key = match text("idempotency-key")? {
        Some(key)
            if key.trim().is_empty()
                || key.len() > MAX_IDEMPOTENCY_KEY
                || key.chars().any(char::is_control) =>
        {
            return Err(ApiError::BadRequest(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            )));
        }
        key => key.map(|k| k.trim().to_owned()),
    };
    let request_id = text(REQUEST_ID.as_str())?.map(str::to_owned);
    Ok(CommandHeaders {
        if_match,
        idempotency_key,
        request_id,
    })
}

/// `If-Match: "<version>"` (a strong entity tag holding a stream version; the quotes may be
/// omitted).
fn parse_if_match(value: &str) -> Result<u64, ApiError> {
    let trimmed = value.trim();
    let inner = trimmed
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(trimmed);
    inner.parse::<u64>().map_err(|_| {
        ApiError::BadRequest(format!(
            "If-Match must be a stream version such as \"3\", not {value:?}"
        ))
    })
}

/// The request header of read-your-writes: the `position` of a command acknowledgement.
pub const MIN_POSITION: HeaderName = HeaderName::from_static("x-min-position");

/// The response header of every query: the position of the projection that answered.
pub const PROJECTION_POSITION: HeaderName = HeaderName::from_static("x-projection-position");

/// `X-Min-Position: <u64>`: answer only once the serving projection has processed this log
/// position (absent: answer at once, from wherever the projection is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinPosition(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for MinPosition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_min_position(&parts.headers).map(Self)
    }
}

fn parse_min_position(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let mut values = headers.get_all(&MIN_POSITION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Ok(None),
        (Some(value), None) => value,
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "X-Min-Position must be given at most once".to_owned(),
            ));
        }
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "X-Min-Position must be a log position (an unsigned integer) from a command acknowledgement"
                    .to_owned(),
            )
        })
}

/// An entity tag for a stream version, as sent in `ETag` and accepted in `If-Match`.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_quoted_and_bare_versions_only() {
        assert_eq!(parse_if_match("\"3\"").unwrap(), 3);
        assert_eq!(parse_if_match("7").unwrap(), 7);
        assert!(parse_if_match("W/\"3\"").is_err());
        assert!(parse_if_match("*").is_err());
        assert!(parse_if_match("\"-1\"").is_err());
    }

    #[test]
    fn min_position_is_an_optional_unsigned_integer_given_once() {
        let mut headers = HeaderMap::new();
        assert_eq!(parse_min_position(&headers).unwrap(), None);
        headers.insert(MIN_POSITION, "42".parse().unwrap());
        assert_eq!(parse_min_position(&headers).unwrap(), Some(42));
        for bad in ["-1", "", "4x", "18446744073709551616"] {
            headers.insert(MIN_POSITION, bad.parse().unwrap());
            assert!(parse_min_position(&headers).is_err(), "{bad:?} accepted");
        }
        headers.insert(MIN_POSITION, "1".parse().unwrap());
        headers.append(MIN_POSITION, "2".parse().unwrap());
        assert!(parse_min_position(&headers).is_err());
    }

    #[test]
    fn an_empty_or_oversized_idempotency_key_is_rejected() {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", " ".parse().unwrap());
        assert!(parse_command_headers(&headers).is_err());
        headers.insert("idempotency-key", "k".repeat(201).parse().unwrap());
        assert!(parse_command_headers(&headers).is_err());
        headers.insert("idempotency-key", "a\tb".parse().unwrap());
        assert!(parse_command_headers(&headers).is_err());
        headers.insert("idempotency-key", "abc".parse().unwrap());
        assert_eq!(
            parse_command_headers(&headers)
                .unwrap()
                .idempotency_key
                .as_deref(),
            Some("abc")
        );
    }
}
