//! Bad input is answered with the right 4xx and a useful problem, never a 5xx.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{item, order_body, spawn_app, spawn_app_with};

#[tokio::test]
async fn values_that_break_a_rule_are_422() {
    let app = spawn_app().await;
    let token = app.operator();
    let mut cases = Vec::new();
    for (field, value) in [
        ("items", json!([])),
        ("items", json!([item("a", 0, 100)])),
        ("items", json!([item("a", -1, 100)])),
        ("items", json!([item("a", 1, -1)])),
        ("items", json!([item("a", 1, 1), item("a", 2, 1)])),
        ("items", json!([item("", 1, 1)])),
        ("currency", json!("XYZ")),
        ("currency", json!("eur")),
        ("customerId", json!("")),
        ("shippingAddress", json!("   ")),
    ] {
        let mut body = order_body("c1");
        body[field] = value;
        cases.push(body);
    }

    for body in cases {
        let answer = app.post("/v1/orders", &token, body.clone()).await;
        assert_eq!(answer.status, 422, "{body} → {}", answer.body);
        answer.expect_problem(422);
    }
    let id = app.place_order(&token, "c1").await;
    app.post(
        &format!("/v1/orders/{id}/ship"),
        &token,
        json!({"trackingNumber": ""}),
    )
    .await
    .expect_problem(422);
    app.post(
        &format!("/v1/orders/{id}/cancel"),
        &token,
        json!({"reason": ""}),
    )
    .await
    .expect_problem(422);
    app.post(
        "/v1/accounts",
        &token,
        json!({"ownerCustomerId": "c1", "currency": "ZZZ"}),
    )
    .await
    .expect_problem(422);
}

#[tokio::test]
async fn malformed_bodies_wrong_types_and_bad_parameters_are_400() {
    let app = spawn_app().await;
    let token = app.operator();
    let id = app.place_order(&token, "c1").await;
    let raw = |body: &'static str| {
        app.client
            .post(format!("{}/v1/orders", app.address))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    for body in ["{", "[]", "null", "{\"customerId\": 5}"] {
        let answer = raw(body).await.unwrap();
        assert_eq!(answer.status(), 400, "{body}");
    }
    let mut wrong_type = order_body("c1");
    wrong_type["items"][0]["quantity"] = json!("two");
    app.post("/v1/orders", &token, wrong_type)
        .await
        .expect_problem(400);
    let mut missing = order_body("c1");
    missing.as_object_mut().unwrap().remove("currency");
    app.post("/v1/orders", &token, missing)
        .await
        .expect_problem(400);
    let mut unknown_field = order_body("c1");
    unknown_field["colour"] = json!("red");
    app.post("/v1/orders", &token, unknown_field)
        .await
        .expect_problem(400);

    app.post_empty("/v1/orders/not-a-uuid/confirm", &token)
        .await
        .expect_problem(400);
    app.get(&format!("/v1/orders/{id}/state?version=abc"), &token)
        .await
        .expect_problem(400);
    app.get(&format!("/v1/orders/{id}/state?at=yesterday"), &token)
        .await
        .expect_problem(400);
    app.get(
        &format!("/v1/orders/{id}/state?version=1&at=2026-01-01T00:00:00Z"),
        &token,
    )
    .await
    .expect_problem(400);
    let path = format!("/v1/orders/{id}/confirm");
    app.send(
        Method::POST,
        &path,
        Some(&token),
        None,
        &[("If-Match", "yesterday")],
    )
    .await
    .expect_problem(400);
    app.send(
        Method::POST,
        &path,
        Some(&token),
        None,
        &[("Idempotency-Key", " ")],
    )
    .await
    .expect_problem(400);
}

#[tokio::test]
async fn a_body_that_is_not_declared_as_json_is_415() {
    let app = spawn_app().await;

    let answer = app
        .client
        .post(format!("{}/v1/orders", app.address))
        .bearer_auth(app.operator())
        .body(order_body("c1").to_string())
        .send()
        .await
        .unwrap();

    assert_eq!(answer.status(), 415);
}

#[tokio::test]
async fn a_body_over_the_configured_limit_is_413() {
    let app = spawn_app_with(|settings| settings.body_limit = 4 * 1024).await;
    let mut body = order_body("c1");
    body["shippingAddress"] = json!("x".repeat(8 * 1024));

    app.post("/v1/orders", &app.operator(), body)
        .await
        .expect_problem(413);
    app.post("/v1/orders", &app.operator(), order_body("c1"))
        .await
        .expect(201);
}

#[tokio::test]
async fn text_with_control_characters_is_422() {
    let app = spawn_app().await;
    let token = app.operator();
    let account = app.open_account(&token, "c1").await;

    for address in [
        "1 Main St\u{0}",
        "1 Main\tSt",
        "1 Main St\n2nd floor",
        "\u{85}1 Main St",
    ] {
        let mut body = order_body("c1");
        body["shippingAddress"] = json!(address);
        let answer = app.post("/v1/orders", &token, body).await;
        assert_eq!(answer.status, 422, "{address:?} → {}", answer.body);
        answer.expect_problem(422);
    }
    app.post(
        &format!("/v1/accounts/{account}/deposits"),
        &token,
        json!({"amountCents": 100, "reference": "inv\u{0}-1"}),
    )
    .await
    .expect_problem(422);
    let balance = app
        .get(&format!("/v1/accounts/{account}/balance"), &token)
        .await
        .expect(200);
    assert_eq!(balance.body["version"], 1, "nothing was deposited");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_even_on_a_route_that_reads_no_body() {
    let app = spawn_app().await;
    let token = app.operator();
    let id = app.place_order(&token, "c1").await;

    let answer = app
        .client
        .post(format!("{}/v1/orders/{id}/confirm", app.address))
        .bearer_auth(&token)
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();

    assert_eq!(answer.status(), 413);
    assert_eq!(
        answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let state = app
        .get(&format!("/v1/orders/{id}/state"), &token)
        .await
        .expect(200);
    assert_eq!(state.body["status"], "PENDING", "the command was not run");
}

#[tokio::test]
async fn unknown_or_conflicting_query_parameters_are_400() {
    let app = spawn_app().await;
    let token = app.operator();
    let order = app.place_order(&token, "c1").await;
    let account = app.open_account(&token, "c1").await;

    for path in [
        format!("/v1/orders/{order}/state?verison=1"),
        format!("/v1/accounts/{account}/balance?verison=1"),
        format!("/v1/accounts/{account}/balance?version=1&at=2026-01-01T00:00:00Z"),
    ] {
        let answer = app.get(&path, &token).await;
        assert_eq!(answer.status, 400, "{path} → {}", answer.body);
        answer.expect_problem(400);
    }
}
