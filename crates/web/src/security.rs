//! Response headers every answer gets: `X-Content-Type-Options: nosniff` (a browser must not
//! guess a type other than the one declared), `Cache-Control: no-store` on everything but the
//! API's documentation (orders, accounts, audit trails and problems carry personal data, which
//! no shared cache may keep), and a strict Content Security Policy on Swagger UI, which loads
//! only its own scripts and styles and talks only to this server.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The policy of `/docs`: Swagger UI's bundle, styles (it sets inline styles), icons as data
/// URIs, "try it out" requests to this origin; no framing, no plugins, no foreign forms.
pub const DOCS_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' \
    'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Adds the headers to every response.
pub async fn headers(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let docs = path == "/docs" || path.starts_with("/docs/");
    let public = docs || path == "/openapi.json";
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !public {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if docs {
        headers.insert(
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(DOCS_POLICY),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}
