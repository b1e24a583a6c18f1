//! `Idempotency-Key`: a replay gets the same answer and appends nothing.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{order_body, spawn_app};

#[tokio::test]
async fn replaying_a_creation_returns_the_same_status_and_body_and_appends_nothing() {
    let app = spawn_app().await;
    let token = app.customer("c1");
    let key = [("Idempotency-Key", "create-1")];

    let first = app
        .send(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(order_body("c1")),
            &key,
        )
        .await
        .expect(201);
    let again = app
        .send(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(order_body("c1")),
            &key,
        )
        .await
        .expect(201);

    assert_eq!(first.body, again.body);
    assert_eq!(first.header("location"), again.header("location"));
    let id = first.body["orderId"].as_str().unwrap();
    let trail = app
        .get(&format!("/v1/orders/{id}/events"), &token)
        .await
        .expect(200);
    assert_eq!(trail.body["events"].as_array().unwrap().len(), 1);
    assert_eq!(
        trail.body["events"][0]["metadata"]["idempotencyKey"],
        "create-1"
    );
}

#[tokio::test]
async fn replaying_a_command_on_an_existing_stream_appends_nothing() {
    let app = spawn_app().await;
    let token = app.operator();
    let id = app.open_account(&token, "c1").await;
    let path = format!("/v1/accounts/{id}/deposits");
    let body = json!({"amountCents": 500, "reference": "invoice-7"});
    let key = [("Idempotency-Key", "deposit-7")];

    let first = app
        .send(Method::POST, &path, Some(&token), Some(body.clone()), &key)
        .await
        .expect(200);
    let again = app
        .send(Method::POST, &path, Some(&token), Some(body), &key)
        .await
        .expect(200);

    assert_eq!(first.body, again.body);
    let balance = app
        .get(&format!("/v1/accounts/{id}/balance"), &token)
        .await
        .expect(200);
    assert_eq!(balance.body["balanceCents"], 500);
}

#[tokio::test]
async fn the_same_key_with_a_different_body_is_422() {
    let app = spawn_app().await;
    let token = app.operator();
    let id = app.open_account(&token, "c1").await;
    let path = format!("/v1/accounts/{id}/deposits");
    let key = [("Idempotency-Key", "k")];
    app.send(
        Method::POST,
        &path,
        Some(&token),
        Some(json!({"amountCents": 5, "reference": "a"})),
        &key,
    )
    .await
    .expect(200);

    let reused = app
        .send(
            Method::POST,
            &path,
            Some(&token),
            Some(json!({"amountCents": 6, "reference": "a"})),
            &key,
        )
        .await;

    reused.expect_problem(422);
    let other_route = app
        .send(
            Method::POST,
            &format!("/v1/accounts/{id}/withdrawals"),
            Some(&token),
            Some(json!({"amountCents": 5, "reference": "a"})),
            &key,
        )
        .await;
    other_route.expect_problem(422);
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_caller() {
    let app = spawn_app().await;
    let key = [("Idempotency-Key", "shared")];

    let a = app
        .send(
            Method::POST,
            "/v1/orders",
            Some(&app.customer("c1")),
            Some(order_body("c1")),
            &key,
        )
        .await;
    let b = app
        .send(
            Method::POST,
            "/v1/orders",
            Some(&app.customer("c2")),
            Some(order_body("c2")),
            &key,
        )
        .await;

    assert_ne!(a.expect(201).body["orderId"], b.expect(201).body["orderId"]);
}
