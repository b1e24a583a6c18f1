//! Extractors whose rejections are problems (axum's defaults are plain text, and 422 for a body
//! of the wrong shape where our contract says 400), the command headers, and the read-your-writes
//! header of queries.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, header};
use strata_application::{CommandContext, Principal};
use utoipa::IntoParams;

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

/// The rule of `Idempotency-Key` as the API document states it; [`parse_idempotency_key`]
/// applies exactly this (a test checks the number in it against [`MAX_IDEMPOTENCY_KEY`]).
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,200}$";

/// The rule of `If-Match` as the API document states it: a stream version of 1 to 19 digits,
/// quoted as an entity tag or bare. [`parse_if_match`] applies exactly this (no sign, no space,
/// no weak tag, no list); 19 digits are far beyond any stream's length.
pub const IF_MATCH_PATTERN: &str = r#"^(?:"[0-9]{1,19}"|[0-9]{1,19})$"#;

/// `If-Match` as the API document describes it (documentation only: the extractor of
/// [`CommandHeaders`] parses it, with the rule written here as a pattern).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IfMatchParams {
    /// Apply the command only if the stream is at this version (the `ETag` or `version` of an
    /// earlier answer); another version is 412. Absent: apply to whatever version it is at.
    #[param(rename = "If-Match", value_type = String, required = false, pattern = r#"^(?:"[0-9]{1,19}"|[0-9]{1,19})$"#, max_length = 21, example = "\"1\"")]
    if_match: Option<String>,
}

/// `Idempotency-Key` as the API document describes it (documentation only).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKeyParams {
    /// Makes retries safe: the same key with the same request returns the first answer and
    /// applies nothing again; with another request it is 422. 1 to 200 visible ASCII
    /// characters (`!` to `~`), unique per principal.
    #[param(rename = "Idempotency-Key", value_type = String, required = false, pattern = "^[!-~]{1,200}$", min_length = 1, max_length = 200, example = "order-2026-0001")]
    idempotency_key: Option<String>,
}

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
    let idempotency_key = text("idempotency-key")?
        .map(parse_idempotency_key)
        .transpose()?;
    let request_id = text(REQUEST_ID.as_str())?.map(str::to_owned);
    Ok(CommandHeaders {
        if_match,
        idempotency_key,
        request_id,
    })
}

/// Whether `key` is an `Idempotency-Key` this server takes: [`IDEMPOTENCY_KEY_PATTERN`].
pub fn is_valid_idempotency_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY && key.bytes().all(|b| b.is_ascii_graphic())
}

/// `Idempotency-Key`: [`IDEMPOTENCY_KEY_PATTERN`].
fn parse_idempotency_key(key: &str) -> Result<String, ApiError> {
    if !is_valid_idempotency_key(key) {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters (! to ~, no space)"
        )));
    }
    Ok(key.to_owned())
}

/// `If-Match: "<version>"`: [`IF_MATCH_PATTERN`].
pub(crate) fn parse_if_match(value: &str) -> Result<u64, ApiError> {
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    parse_digits(inner, 19).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "If-Match must be a stream version such as \"3\", not {value:?}"
        ))
    })
}

/// An unsigned integer written as 1 to `max_digits` ASCII digits, nothing else (Rust's own
/// parser also takes a leading `+`, which the API document does not allow).
pub fn parse_digits(text: &str, max_digits: usize) -> Option<u64> {
    let digits =
        !text.is_empty() && text.len() <= max_digits && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

/// Deserializes a JSON integer of a request body, also when it is written with a zero fraction
/// (`2.0`): JSON Schema calls that an integer, so a client that validates against the API
/// document may send it. Anything else that is not an `i64` is refused.
///
/// # Errors
/// A number with a fraction, or outside the range of `i64`.
pub fn json_integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    use serde::Deserialize;
    use serde::de::Error;

    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(integer) = number.as_i64() {
        return Ok(integer);
    }
    // 2^63 is exact in an f64; every integral f64 in [-2^63, 2^63) converts without loss.
    const BOUND: f64 = 9_223_372_036_854_775_808.0;
    match number.as_f64() {
        #[allow(clippy::cast_possible_truncation)]
        Some(float) if float.fract() == 0.0 && (-BOUND..BOUND).contains(&float) => Ok(float as i64),
        _ => Err(D::Error::custom(format!(
            "expected an integer of 64 bits, not {number}"
        ))),
    }
}

/// The request header of read-your-writes: the `position` of a command acknowledgement.
pub const MIN_POSITION: HeaderName = HeaderName::from_static("x-min-position");

/// The response header of every query: the position of the projection that answered.
pub const PROJECTION_POSITION: HeaderName = HeaderName::from_static("x-projection-position");

/// `X-Min-Position` as the API document describes it (documentation only; [`MinPosition`]
/// parses it).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct MinPositionParams {
    /// Answer only once the projection serving this query has processed this log position (the
    /// `position` of a command's acknowledgement): read your own writes. Waits at most
    /// `STRATA_READ_WAIT_MS`, then 503 with `Retry-After`; a position beyond the head of the log
    /// is 400 at once. Absent: answer at once, from wherever the projection is.
    #[param(rename = "X-Min-Position", value_type = u64, required = false, minimum = 0, example = 2)]
    min_position: Option<String>,
}

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
        .and_then(|v| parse_digits(v, 20))
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
        for bad in [
            "+5",
            "\"+5\"",
            "\"3",
            "3\"",
            "",
            "\"\"",
            "1 2",
            "12345678901234567890",
        ] {
            assert!(parse_if_match(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse_if_match("\"9999999999999999999\"").unwrap(),
            9_999_999_999_999_999_999
        );
    }

    #[test]
    fn the_documented_header_patterns_state_the_limits_the_parsers_apply() {
        assert!(IDEMPOTENCY_KEY_PATTERN.contains(&format!("{{1,{MAX_IDEMPOTENCY_KEY}}}")));
        assert!(IF_MATCH_PATTERN.contains("{1,19}"));
    }

    #[test]
    fn a_json_integer_may_have_a_zero_fraction_but_no_other() {
        #[derive(Debug, serde::Deserialize)]
        struct Body {
            #[serde(deserialize_with = "json_integer")]
            n: i64,
        }
        let parse = |text: &str| serde_json::from_str::<Body>(text).map(|b| b.n);
        assert_eq!(parse(r#"{"n": 3}"#).unwrap(), 3);
        assert_eq!(parse(r#"{"n": 3.0}"#).unwrap(), 3);
        assert_eq!(parse(r#"{"n": -2e3}"#).unwrap(), -2000);
        assert_eq!(parse(r#"{"n": 9223372036854775807}"#).unwrap(), i64::MAX);
        for bad in [
            r#"{"n": 3.5}"#,
            r#"{"n": 9223372036854775808}"#,
            r#"{"n": 1e19}"#,
            r#"{"n": "3"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn min_position_is_an_optional_unsigned_integer_given_once() {
        let mut headers = HeaderMap::new();
        assert_eq!(parse_min_position(&headers).unwrap(), None);
        headers.insert(MIN_POSITION, "42".parse().unwrap());
        assert_eq!(parse_min_position(&headers).unwrap(), Some(42));
        for bad in ["-1", "+1", "", "4x", "18446744073709551616"] {
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
        headers.insert("idempotency-key", "a b".parse().unwrap());
        assert!(parse_command_headers(&headers).is_err());
        // Bytes a header may carry that are not visible ASCII: a line separator's UTF-8.
        let separator = axum::http::HeaderValue::from_bytes("a\u{2028}b".as_bytes()).unwrap();
        headers.insert("idempotency-key", separator);
        assert!(parse_command_headers(&headers).is_err());
        headers.insert("idempotency-key", "k".repeat(3_000).parse().unwrap());
        assert!(parse_command_headers(&headers).is_err());
        headers.insert("idempotency-key", "k".repeat(200).parse().unwrap());
        assert!(parse_command_headers(&headers).is_ok());
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
