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

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = spawn_app().await;

    let document = app
        .send(Method::GET, "/openapi.json", None, None, &[])
        .await
        .expect(200)
        .body;

    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/v1/orders",
        "/v1/orders/{id}/items",
        "/v1/orders/{id}/items/{product_id}/remove",
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
