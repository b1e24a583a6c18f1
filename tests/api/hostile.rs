//! Hostile input is normal input: every value from outside is checked at the edge, so NUL
//! bytes, Unicode tricks, oversized claims and unrepresentable totals get a 4xx (or are reported),
//! never a 5xx, and never reach the storage as they came.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, item, order_body, spawn_app};

/// An order worth exactly `i64::MAX` cents, delivered; returns the delivery's log position.
async fn deliver_largest_order(app: &TestApp, token: &str, customer: &str) -> u64 {
    let mut body = order_body(customer);
    body["items"] = json!([item("gold", 1, i64::MAX)]);
    let id = app.post("/v1/orders", token, body).await.expect(201).body["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post_empty(&format!("/v1/orders/{id}/confirm"), token)
        .await
        .expect(200);
    app.post(
        &format!("/v1/orders/{id}/ship"),
        token,
        json!({"trackingNumber": "1Z1"}),
    )
    .await
    .expect(200);
    app.post_empty(&format!("/v1/orders/{id}/deliver"), token)
        .await
        .expect(200)
        .position()
}

#[tokio::test]
async fn nul_bytes_and_paths_in_customer_ids_of_queries_are_400() {
    let app = spawn_app().await;
    let operator = app.operator();
    let alice = app.customer("alice");

    for path in [
        "/v1/customers/alice%00/orders",
        "/v1/customers/%00/stats",
        "/v1/customers/..%2Fadmin/stats",
        "/v1/customers/..%2Fadmin/orders",
        "/v1/customers/a%20b/stats",
        "/v1/customers/%E2%80%AEalice/stats",
    ] {
        for token in [&operator, &alice] {
            let answer = app.get(path, token).await;
            assert_eq!(answer.status, 400, "{path}: {}", answer.body);
            answer.expect_problem(400);
        }
    }
    let too_long = format!("/v1/customers/{}/stats", "a".repeat(65));
    app.get(&too_long, &operator).await.expect_problem(400);
    // A well-formed id still works, for its owner and for an operator.
    app.get("/v1/customers/alice/stats", &alice)
        .await
        .expect(200);
    app.get("/v1/customers/alice/orders", &operator)
        .await
        .expect(200);
}

#[tokio::test]
async fn nul_bytes_and_unicode_controls_in_a_search_are_400_for_every_role() {
    let app = spawn_app().await;

    for query in [
        "customerId=%00",
        "customerId=alice%00",
        "customerId=..%2Fadmin",
        "q=a%00b",
        "q=%00",
        "q=line%E2%80%A8break",
        "q=%E2%80%AEgpj.exe",
        "q=tab%09here",
    ] {
        for token in [app.operator(), app.auditor(), app.customer("alice")] {
            let answer = app.get(&format!("/v1/orders/search?{query}"), &token).await;
            assert_eq!(answer.status, 400, "{query}: {}", answer.body);
            answer.expect_problem(400);
        }
    }
    app.get(
        "/v1/orders/search?q=sku-1&customerId=alice",
        &app.operator(),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn an_oversized_subject_is_401_and_the_longest_allowed_one_can_use_idempotency_keys() {
    let app = spawn_app().await;
    let mut claims = crate::helpers::expired_claims("operator", None);
    claims.exp += 7200;
    claims.iat = None;

    claims.sub = "s".repeat(3000);
    let oversized = app.sign(claims.clone());
    claims.sub = "s".repeat(256);
    let longest = app.sign(claims.clone());
    claims.sub = "user\u{2028}name".to_owned();
    let separator = app.sign(claims);

    for token in [&oversized, &separator] {
        app.send(
            Method::POST,
            "/v1/orders",
            Some(token),
            Some(order_body("c1")),
            &[("Idempotency-Key", "k-1")],
        )
        .await
        .expect_problem(401);
    }
    for _ in 0..2 {
        // The second is a replay of the first: the record was stored and found again.
        app.send(
            Method::POST,
            "/v1/orders",
            Some(&longest),
            Some(order_body("c1")),
            &[("Idempotency-Key", &"k".repeat(200))],
        )
        .await
        .expect(201);
    }
}

#[tokio::test]
async fn an_idempotency_key_with_a_tab_is_400() {
    let app = spawn_app().await;

    app.send(
        Method::POST,
        "/v1/orders",
        Some(&app.operator()),
        Some(order_body("c1")),
        &[("Idempotency-Key", "a\tb")],
    )
    .await
    .expect_problem(400);
}

#[tokio::test]
async fn free_text_with_line_separators_or_bidi_overrides_is_422() {
    let app = spawn_app().await;
    let token = app.operator();

    for text in [
        "1 Main St\u{2028}x",
        "Para\u{2029}",
        "evil \u{202E}txt.exe",
        "\u{2066}x",
    ] {
        let mut body = order_body("c1");
        body["shippingAddress"] = Value::from(text);
        let answer = app.post("/v1/orders", &token, body).await;
        assert_eq!(answer.status, 422, "{text:?}: {}", answer.body);
        answer.expect_problem(422);
    }
    let id = app.place_order(&token, "c1").await;
    app.post(
        &format!("/v1/orders/{id}/cancel"),
        &token,
        json!({"reason": "no\u{2028}thanks"}),
    )
    .await
    .expect_problem(422);
}

#[tokio::test]
async fn an_order_is_bounded_to_100_lines() {
    let app = spawn_app().await;
    let token = app.operator();
    let lines =
        |n: usize| -> Vec<Value> { (0..n).map(|i| item(&format!("p-{i}"), 1, 1)).collect() };

    for count in [101, 15_000] {
        let mut body = order_body("c1");
        body["items"] = Value::from(lines(count));
        let answer = app.post("/v1/orders", &token, body).await;
        assert_eq!(answer.status, 422, "{count} lines: {}", answer.body);
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .contains("100 lines"),
            "{}",
            answer.body
        );
    }
    let mut body = order_body("c1");
    body["items"] = Value::from(lines(100));
    let id = app.post("/v1/orders", &token, body).await.expect(201).body["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        &format!("/v1/orders/{id}/items"),
        &token,
        item("one-more", 1, 1),
    )
    .await
    .expect_problem(422);
}

#[tokio::test]
async fn a_lifetime_value_that_cannot_be_represented_is_reported_not_saturated() {
    let app = spawn_app().await;
    let token = app.operator();

    let first = deliver_largest_order(&app, &token, "whale").await;
    let second = deliver_largest_order(&app, &token, "whale").await;

    let stats = app
        .get_after("/v1/customers/whale/stats", &token, second.max(first))
        .await
        .expect(200);
    assert_eq!(
        stats.body["lifetimeValueCents"]["EUR"],
        i64::MAX,
        "{}",
        stats.body
    );
    assert_eq!(
        stats.body["byStatus"]["DELIVERED"], 1,
        "the second delivery cannot be counted without a wrong total: {}",
        stats.body
    );
    let status = app.get("/v1/projections", &token).await.expect(200);
    let orders = status.body["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "orders")
        .unwrap();
    assert_eq!(
        orders["deadLetters"], 1,
        "the overflow is reported: {orders}"
    );
}
