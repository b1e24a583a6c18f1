//! Request ids: a client's `X-Request-Id` is kept when it is 1 to 128 visible ASCII characters,
//! otherwise (or when there is none) the server makes a UUID v7. The id ends up in logs, problem
//! documents and event metadata, so it must be short and safe to print.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use tower_http::request_id::{MakeRequestId, RequestId};
use uuid::Uuid;

/// The header that carries the request id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id a client may choose.
pub const MAX_REQUEST_ID: usize = 128;

/// Whether a client's request id is kept: 1 to [`MAX_REQUEST_ID`] bytes, each visible ASCII
/// (`0x21..=0x7E`: no space, no control character, nothing outside ASCII).
pub fn is_acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_REQUEST_ID).contains(&bytes.len()) && bytes.iter().all(|b| (0x21..=0x7E).contains(b))
}

/// Middleware (for `axum::middleware::map_request`): removes a client's request id unless it
/// is a single acceptable value, so that the next layer makes a new one.
pub async fn drop_unacceptable(mut request: Request) -> Request {
    let mut values = request.headers().get_all(&REQUEST_ID).iter();
    let keep = match (values.next(), values.next()) {
        (Some(only), None) => is_acceptable(only),
        _ => false,
    };
    if !keep {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// Makes request ids as UUID v7: unique, and sorted by time like the events they correlate.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&Uuid::now_v7().to_string())
            .ok()
            .map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn acceptable(bytes: &[u8]) -> bool {
        is_acceptable(&HeaderValue::from_bytes(bytes).unwrap())
    }

    #[test]
    fn only_short_visible_ascii_ids_are_acceptable() {
        assert!(acceptable(b"a"));
        assert!(acceptable(b"!~"));
        assert!(acceptable("x".repeat(MAX_REQUEST_ID).as_bytes()));
        assert!(!acceptable(b""));
        assert!(!acceptable("x".repeat(MAX_REQUEST_ID + 1).as_bytes()));
        assert!(!acceptable(b"a b"));
        assert!(!acceptable(b"a\tb"));
        assert!(!acceptable("café".as_bytes()));
    }
}
