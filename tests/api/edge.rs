//! The edges of the HTTP surface: request ids, unknown routes and methods, the API document.

use reqwest::Method;

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_client_supplied_one_is_kept() {
    let app = spawn_app().await;

    let generated = app
        .send(Method::GET, "/health/live", None, None, &[])
        .await
        .expect(200);
    let supplied = app
        .send(
            Method::GET,
            "/health/live",
            None,
            None,
            &[("X-Request-Id", "abc-123")],
        )
        .await;

    assert!(
        generated
            .header("x-request-id")
            .is_some_and(|id| id.len() >= 32)
    );
    assert_eq!(supplied.header("x-request-id"), Some("abc-123"));
}

/// The request id the server answers when the client sends `supplied`.
async fn request_id_for(app: &crate::helpers::TestApp, supplied: &str) -> String {
    let answer = app
        .send(
            Method::GET,
            "/v1/nothing-here",
            None,
            None,
            &[("X-Request-Id", supplied)],
        )
        .await
        .expect_problem(404);
    let header = answer.header("x-request-id").unwrap().to_owned();
    assert_eq!(answer.body["requestId"], header.as_str());
    header
}

fn is_uuid_v7(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 7)
}

#[tokio::test]
async fn a_client_request_id_of_1_to_128_visible_ascii_characters_is_kept() {
    let app = spawn_app().await;
    let longest = format!("{}~", "a".repeat(127));

    for supplied in ["x", "!", "trace:01/abc=+", longest.as_str()] {
        assert_eq!(request_id_for(&app, supplied).await, supplied);
    }
}

#[tokio::test]
async fn a_client_request_id_that_is_too_long_or_not_visible_ascii_is_replaced() {
    let app = spawn_app().await;
    let too_long = "a".repeat(129);

    for supplied in [too_long.as_str(), "abc def", "abc\tdef", "café"] {
        let answer = request_id_for(&app, supplied).await;
        assert_ne!(answer, supplied);
        assert!(is_uuid_v7(&answer), "{answer} is a generated UUID v7");
    }
    let generated = app
        .send(Method::GET, "/health/live", None, None, &[])
        .await
        .expect(200);
    assert!(is_uuid_v7(generated.header("x-request-id").unwrap()));
}

#[tokio::test]
async fn a_problem_quotes_the_request_id() {
    let app = spawn_app().await;

    let answer = app
        .send(
            Method::POST,
            "/v1/orders",
            None,
            None,
            &[("X-Request-Id", "trace-me")],
        )
        .await;

    assert_eq!(answer.expect_problem(401).body["requestId"], "trace-me");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let app = spawn_app().await;

    app.send(Method::GET, "/v1/nothing-here", None, None, &[])
        .await
        .expect_problem(404);
    app.send(
        Method::DELETE,
        "/v1/orders",
        Some(&app.operator()),
        None,
        &[],
    )
    .await
    .expect_problem(405);
}

/// The OpenAPI document of a fresh server, as a client fetches it (no token).
async fn openapi_document() -> serde_json::Value {
    let app = spawn_app().await;
    app.send(Method::GET, "/openapi.json", None, None, &[])
        .await
        .expect(200)
        .body
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let document = openapi_document().await;

    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/v1/orders",
        "/v1/orders/{id}/items",
        "/v1/orders/{id}/items/{productId}/remove",
        "/v1/orders/{id}/confirm",
        "/v1/orders/{id}/ship",
        "/v1/orders/{id}/deliver",
        "/v1/orders/{id}/cancel",
        "/v1/orders/{id}/events",
        "/v1/orders/{id}/state",
        "/v1/accounts",
        "/v1/accounts/{id}/deposits",
        "/v1/accounts/{id}/withdrawals",
        "/v1/accounts/{id}/close",
        "/v1/accounts/{id}/events",
        "/v1/accounts/{id}/balance",
        "/v1/orders/{id}",
        "/v1/customers/{customerId}/orders",
        "/v1/customers/{customerId}/stats",
        "/v1/accounts/{id}",
        "/v1/accounts/{id}/transactions",
        "/v1/orders/search",
        "/v1/projections",
        "/metrics",
        "/health/live",
        "/health/ready",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_read_your_writes_headers_of_every_query() {
    let document = openapi_document().await;

    for path in [
        "/v1/orders/{id}",
        "/v1/customers/{customerId}/orders",
        "/v1/customers/{customerId}/stats",
        "/v1/accounts/{id}",
        "/v1/accounts/{id}/transactions",
    ] {
        let get = &document["paths"][path]["get"];
        let parameters = get["parameters"].as_array().unwrap();
        assert!(
            parameters
                .iter()
                .any(|p| p["name"] == "X-Min-Position" && p["in"] == "header"),
            "{path} does not document X-Min-Position: {parameters:?}"
        );
        assert!(
            get["responses"]["200"]["headers"]["X-Projection-Position"].is_object(),
            "{path} does not document X-Projection-Position"
        );
        assert!(
            get["responses"]["503"].is_object(),
            "{path} does not document its 503"
        );
    }
    for path in [
        "/v1/customers/{customerId}/orders",
        "/v1/accounts/{id}/transactions",
    ] {
        let parameters = document["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap();
        for name in ["limit", "cursor"] {
            assert!(
                parameters
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "query"),
                "{path} does not document ?{name}"
            );
        }
    }
}
