//! The answers every operation shares, written once instead of in each handler's annotation:
//! every error as `application/problem+json` with an example rendered by [`ApiError`] itself,
//! the edge's own answers (413 on every route, 429 behind a token, 503 but on liveness), the
//! headers they carry (`WWW-Authenticate`, `Retry-After`), and `X-Request-Id` on every answer
//! and as an optional request header of every operation.

use utoipa::Modify;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required};

use crate::error::{ApiError, PROBLEM_JSON};

/// The modifier: see the module's documentation.
pub struct SharedAnswers;

const INTERNAL: &str = "The server failed (a bug or a fault of its storage); the detail never \
     says how, the request id finds it in the server's log";
const RATE: &str = "The principal sent more commands or queries than its rate allows; retry \
    after Retry-After seconds";
const LOAD: &str = "The server handles its limit of requests, or the request outlived its \
    deadline; retry after Retry-After seconds";
const TOO_LARGE: &str = "The body is larger than STRATA_BODY_LIMIT (every route, also those \
    that read no body)";

/// The description of an error status an annotation left undescribed.
fn default_description(status: u16) -> &'static str {
    match status {
        400 => "A parameter, header or body this operation does not accept (the detail says which)",
        401 => "No bearer token, or one that is malformed, expired or otherwise invalid",
        403 => "The token's role may not do this",
        404 => "No such resource, or one this token may not see",
        409 => "The current state forbids the command, or concurrent writers kept winning",
        412 => "If-Match names a version the stream is no longer at",
        413 => TOO_LARGE,
        415 => "The body is not declared as application/json",
        422 => {
            "A value breaks a rule of the domain, or the Idempotency-Key was used with another \
            request"
        }
        429 => RATE,
        500 => INTERNAL,
        503 => LOAD,
        _ => "An error",
    }
}

/// The example problem of a status, rendered by the error type that renders real ones.
fn example(status: u16) -> Option<serde_json::Value> {
    let error = match status {
        400 => ApiError::BadRequest(
            "If-Match must be a stream version such as \"3\", not \"abc\"".into(),
        ),
        401 => ApiError::Unauthorized(
            "the access token is malformed, expired or otherwise invalid".into(),
        ),
        403 => ApiError::Forbidden("an auditor may read but not issue commands".into()),
        404 => ApiError::NotFound("order not found".into()),
        409 => ApiError::Conflict("an order cannot be confirmed once it is cancelled".into()),
        412 => ApiError::PreconditionFailed("the stream is at version 4, not 3".into()),
        413 => {
            ApiError::PayloadTooLarge("the request body is larger than the configured limit".into())
        }
        415 => ApiError::UnsupportedMediaType(
            "expected a body with content type application/json".into(),
        ),
        422 => ApiError::Unprocessable("quantity must be at least 1".into()),
        429 => ApiError::TooManyRequests {
            detail: "too many commands from this principal; retry after 1 s".into(),
            retry_after_secs: 1,
        },
        500 => ApiError::Internal("a database constraint failed".into()),
        503 => ApiError::NotCaughtUp("the orders projection is at position 41, not yet 42".into()),
        _ => return None,
    };
    let mut problem = serde_json::to_value(error.example_problem()).ok()?;
    problem["requestId"] = "0193a6c2-6f1e-7c3a-9b55-3f2d1e0c4b7a".into();
    Some(problem)
}

fn header(description: &str, schema: Type) -> RefOr<Header> {
    HeaderBuilder::new()
        .schema(Some(Object::with_type(schema)))
        .description(Some(description))
        .build()
        .into()
}

fn request_id_header() -> RefOr<Header> {
    header(
        "The request's id: the client's X-Request-Id if acceptable, else a generated UUID v7; \
         quoted as requestId in problems and stored with the events a command records",
        Type::String,
    )
}

/// A response with only its description: the loop of [`complete`] makes it a problem, as it
/// does every error response of the handlers' annotations.
fn described(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .build()
        .into()
}

/// Completes an error response: its description if it has none, problem content with its
/// example, and the headers of its status.
fn make_problem(response: &mut Response, status: u16) {
    if response.description.is_empty() {
        default_description(status).clone_into(&mut response.description);
    }
    response.content.clear();
    response.content.insert(
        PROBLEM_JSON.to_owned(),
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .example(example(status))
            .build()
            .into(),
    );
    let (name, description, schema) = match status {
        401 => (
            "WWW-Authenticate",
            "Always Bearer: send a bearer token",
            Type::String,
        ),
        429 | 503 => (
            "Retry-After",
            "Seconds to wait before retrying",
            Type::Integer,
        ),
        _ => return,
    };
    response
        .headers
        .entry(name.to_owned())
        .or_insert_with(|| header(description, schema));
}

fn complete(operation: &mut Operation, liveness: bool) {
    let behind_token = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let responses = &mut operation.responses.responses;
    responses
        .entry("413".to_owned())
        .or_insert_with(|| described(TOO_LARGE));
    // Any route can fail inside (a caught panic included); the problem then hides why.
    responses
        .entry("500".to_owned())
        .or_insert_with(|| described(INTERNAL));
    if behind_token {
        responses
            .entry("429".to_owned())
            .or_insert_with(|| described(RATE));
    }
    if !liveness {
        match responses.get_mut("503") {
            Some(RefOr::T(documented)) => {
                documented.description = format!("{} Also: {LOAD}.", documented.description);
            }
            Some(RefOr::Ref(_)) => {}
            None => {
                responses.insert("503".to_owned(), described(LOAD));
            }
        }
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let code = status.parse::<u16>().unwrap_or(0);
        if code >= 400 {
            make_problem(response, code);
        }
        response
            .headers
            .entry("X-Request-Id".to_owned())
            .or_insert_with(request_id_header);
    }
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    let named = |p: &RefOr<Parameter>| matches!(p, RefOr::T(p) if p.name == "X-Request-Id");
    if !parameters.iter().any(named) {
        parameters.push(
            ParameterBuilder::new()
                .name("X-Request-Id")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Your id for the request, kept if it is 1 to 128 visible ASCII characters \
                     (`!` to `~`); anything else is replaced by a generated UUID v7, never refused",
                ))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build()
                .into(),
        );
    }
}

impl Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            let liveness = path == "/health/live";
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                complete(operation, liveness);
            }
        }
    }
}

/// Every status the examples cover is one [`ApiError`] renders with that status.
#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn every_example_is_a_problem_of_its_own_status() {
        for status in [400, 401, 403, 404, 409, 412, 413, 415, 422, 429, 503] {
            let example = example(status).expect("an example");
            assert_eq!(example["status"], status, "{example}");
            assert!(StatusCode::from_u16(status).is_ok());
            assert!(
                example["type"]
                    .as_str()
                    .unwrap()
                    .starts_with("urn:strata:problem:")
            );
        }
    }
}
