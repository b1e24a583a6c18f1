//! The order commands over HTTP: the lifecycle, state rules and ownership.

use serde_json::json;

use crate::helpers::{item, order_body, spawn_app};

#[tokio::test]
async fn placing_an_order_answers_201_with_location_etag_and_acknowledgement() {
    let app = spawn_app().await;
    let token = app.customer("c1");

    let answer = app
        .post("/v1/orders", &token, order_body("c1"))
        .await
        .expect(201);

    let id = answer.body["orderId"].as_str().unwrap();
    let location = answer.header("location").unwrap();
    assert_eq!(location, format!("/v1/orders/{id}/state"));
    let created = app.get(location, &token).await.expect(200);
    assert_eq!(created.body["orderId"], id);
    assert_eq!(answer.header("etag"), Some("\"1\""));
    assert_eq!(answer.body["version"], 1);
    assert_eq!(answer.body["position"], 1);
    assert_eq!(
        answer.body.as_object().unwrap().len(),
        3,
        "only an acknowledgement: {}",
        answer.body
    );
}

#[tokio::test]
async fn an_order_goes_through_its_whole_lifecycle() {
    let app = spawn_app().await;
    let token = app.operator();
    let id = app.place_order(&token, "c1").await;

    let steps = [
        (
            format!("/v1/orders/{id}/items"),
            Some(item("sku-2", 1, 300)),
        ),
        (format!("/v1/orders/{id}/items/sku-2/remove"), None),
        (
            format!("/v1/orders/{id}/items"),
            Some(item("sku-3", 3, 100)),
        ),
        (format!("/v1/orders/{id}/confirm"), None),
        (
            format!("/v1/orders/{id}/ship"),
            Some(json!({"trackingNumber": "TRACK-1"})),
        ),
        (format!("/v1/orders/{id}/deliver"), None),
    ];
    for (expected_version, (path, body)) in (2..).zip(steps) {
        let answer = match body {
            Some(body) => app.post(&path, &token, body).await,
            None => app.post_empty(&path, &token).await,
        };
        let answer = answer.expect(200);
        assert_eq!(answer.body["orderId"], id.as_str());
        assert_eq!(answer.body["version"], expected_version, "{path}");
    }

    let state = app
        .get(&format!("/v1/orders/{id}/state"), &token)
        .await
        .expect(200);
    assert_eq!(state.body["status"], "DELIVERED");
    assert_eq!(state.body["trackingNumber"], "TRACK-1");
    assert_eq!(state.body["totalCents"], 2 * 1250 + 3 * 100);
    assert_eq!(state.body["itemCount"], 2);
    assert_eq!(state.body["version"], 7);
}

#[tokio::test]
async fn a_pending_order_can_be_cancelled_and_then_nothing_else_happens_to_it() {
    let app = spawn_app().await;
    let token = app.customer("c1");
    let id = app.place_order(&token, "c1").await;

    app.post(
        &format!("/v1/orders/{id}/cancel"),
        &token,
        json!({"reason": "changed my mind"}),
    )
    .await
    .expect(200);

    let confirm = app
        .post_empty(&format!("/v1/orders/{id}/confirm"), &token)
        .await
        .expect_problem(409);
    assert!(
        confirm.body["detail"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{}",
        confirm.body
    );
    app.post(&format!("/v1/orders/{id}/items"), &token, item("x", 1, 1))
        .await
        .expect_problem(409);
    app.post(
        &format!("/v1/orders/{id}/cancel"),
        &token,
        json!({"reason": "again"}),
    )
    .await
    .expect_problem(409);
}

#[tokio::test]
async fn state_rules_are_answered_with_409() {
    let app = spawn_app().await;
    let token = app.operator();
    let id = app.place_order(&token, "c1").await;

    app.post_empty(&format!("/v1/orders/{id}/deliver"), &token)
        .await
        .expect_problem(409);
    app.post(
        &format!("/v1/orders/{id}/ship"),
        &token,
        json!({"trackingNumber": "T"}),
    )
    .await
    .expect_problem(409);
    app.post_empty(&format!("/v1/orders/{id}/items/sku-1/remove"), &token)
        .await
        .expect_problem(409);
    app.post_empty(&format!("/v1/orders/{id}/items/nope/remove"), &token)
        .await
        .expect_problem(409);
    app.post(
        &format!("/v1/orders/{id}/items"),
        &token,
        item("sku-1", 1, 999),
    )
    .await
    .expect_problem(409);
}

#[tokio::test]
async fn an_unknown_order_is_404_for_commands_and_reads() {
    let app = spawn_app().await;
    let token = app.operator();
    let unknown = uuid::Uuid::now_v7();

    app.post_empty(&format!("/v1/orders/{unknown}/confirm"), &token)
        .await
        .expect_problem(404);
    app.get(&format!("/v1/orders/{unknown}/events"), &token)
        .await
        .expect_problem(404);
    app.get(&format!("/v1/orders/{unknown}/state"), &token)
        .await
        .expect_problem(404);
}

#[tokio::test]
async fn a_customer_cannot_see_or_touch_another_customers_order() {
    let app = spawn_app().await;
    let id = app.place_order(&app.customer("c1"), "c1").await;
    let stranger = app.customer("c2");

    app.post_empty(&format!("/v1/orders/{id}/confirm"), &stranger)
        .await
        .expect_problem(404);
    app.post(
        &format!("/v1/orders/{id}/items"),
        &stranger,
        item("x", 1, 1),
    )
    .await
    .expect_problem(404);
    app.get(&format!("/v1/orders/{id}/events"), &stranger)
        .await
        .expect_problem(404);
    app.get(&format!("/v1/orders/{id}/state"), &stranger)
        .await
        .expect_problem(404);
    app.get(&format!("/v1/orders/{id}/state"), &app.customer("c1"))
        .await
        .expect(200);
}

#[tokio::test]
async fn a_customer_may_place_orders_only_for_themselves() {
    let app = spawn_app().await;

    app.post("/v1/orders", &app.customer("c1"), order_body("c2"))
        .await
        .expect_problem(403);
    app.post("/v1/orders", &app.operator(), order_body("c2"))
        .await
        .expect(201);
}

#[tokio::test]
async fn an_auditor_reads_everything_but_commands_nothing() {
    let app = spawn_app().await;
    let id = app.place_order(&app.customer("c1"), "c1").await;
    let auditor = app.auditor();

    app.post("/v1/orders", &auditor, order_body("c1"))
        .await
        .expect_problem(403);
    app.post_empty(&format!("/v1/orders/{id}/confirm"), &auditor)
        .await
        .expect_problem(403);
    app.get(&format!("/v1/orders/{id}/events"), &auditor)
        .await
        .expect(200);
    app.get(&format!("/v1/orders/{id}/state"), &auditor)
        .await
        .expect(200);
}

#[tokio::test]
async fn an_auditors_command_is_403_before_its_body_is_read() {
    let app = spawn_app().await;
    let id = app.place_order(&app.operator(), "c1").await;
    let auditor = app.auditor();
    let malformed = |path: String| {
        app.client
            .post(format!("{}{path}", app.address))
            .bearer_auth(&auditor)
            .header("content-type", "application/json")
            .body("{")
            .send()
    };

    for path in [
        "/v1/orders".to_owned(),
        format!("/v1/orders/{id}/items"),
        "/v1/accounts".to_owned(),
    ] {
        let answer = malformed(path.clone()).await.unwrap();
        assert_eq!(answer.status(), 403, "{path}");
    }
}

#[tokio::test]
async fn if_match_with_a_stale_version_is_412_and_with_the_current_one_applies() {
    let app = spawn_app().await;
    let token = app.operator();
    let id = app.place_order(&token, "c1").await;
    app.post(
        &format!("/v1/orders/{id}/items"),
        &token,
        item("sku-2", 1, 1),
    )
    .await
    .expect(200);
    let path = format!("/v1/orders/{id}/confirm");

    let stale = app
        .send(
            reqwest::Method::POST,
            &path,
            Some(&token),
            None,
            &[("If-Match", "\"1\"")],
        )
        .await;
    let stale = stale.expect_problem(412);
    assert!(
        stale.body["detail"].as_str().unwrap().contains("version 2"),
        "{}",
        stale.body
    );

    let current = app
        .send(
            reqwest::Method::POST,
            &path,
            Some(&token),
            None,
            &[("If-Match", "\"2\"")],
        )
        .await;
    assert_eq!(current.expect(200).body["version"], 3);
}
