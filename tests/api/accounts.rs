//! The account (ledger) commands over HTTP.

use serde_json::json;

use crate::helpers::spawn_app;

fn movement(cents: i64, reference: &str) -> serde_json::Value {
    json!({"amountCents": cents, "reference": reference})
}

#[tokio::test]
async fn an_account_is_opened_funded_drained_and_closed() {
    let app = spawn_app().await;
    let token = app.customer("c1");

    let opened = app
        .post(
            "/v1/accounts",
            &token,
            json!({"ownerCustomerId": "c1", "currency": "USD"}),
        )
        .await;
    let opened = opened.expect(201);
    let id = opened.body["accountId"].as_str().unwrap().to_owned();
    let location = opened.header("location").unwrap();
    assert_eq!(location, format!("/v1/accounts/{id}/balance"));
    let created = app.get(location, &token).await.expect(200);
    assert_eq!(created.body["accountId"], id.as_str());

    app.post(
        &format!("/v1/accounts/{id}/deposits"),
        &token,
        movement(1000, "d1"),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/accounts/{id}/withdrawals"),
        &token,
        movement(400, "w1"),
    )
    .await
    .expect(200);
    let balance = app
        .get(&format!("/v1/accounts/{id}/balance"), &token)
        .await
        .expect(200);
    assert_eq!(balance.body["balanceCents"], 600);
    assert_eq!(balance.body["currency"], "USD");

    app.post_empty(&format!("/v1/accounts/{id}/close"), &token)
        .await
        .expect_problem(409);
    app.post(
        &format!("/v1/accounts/{id}/withdrawals"),
        &token,
        movement(600, "w2"),
    )
    .await
    .expect(200);
    let closed = app
        .post_empty(&format!("/v1/accounts/{id}/close"), &token)
        .await
        .expect(200);
    assert_eq!(closed.body["version"], 5);

    app.post(
        &format!("/v1/accounts/{id}/deposits"),
        &token,
        movement(1, "late"),
    )
    .await
    .expect_problem(409);
    let balance = app
        .get(&format!("/v1/accounts/{id}/balance"), &token)
        .await
        .expect(200);
    assert_eq!(
        (
            balance.body["balanceCents"].clone(),
            balance.body["closed"].clone()
        ),
        (json!(0), json!(true))
    );
}

#[tokio::test]
async fn withdrawing_beyond_the_balance_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    let token = app.operator();
    let id = app.open_account(&token, "c1").await;
    app.post(
        &format!("/v1/accounts/{id}/deposits"),
        &token,
        movement(100, "d"),
    )
    .await
    .expect(200);

    let refused = app
        .post(
            &format!("/v1/accounts/{id}/withdrawals"),
            &token,
            movement(101, "w"),
        )
        .await;

    assert!(
        refused.expect_problem(409).body["detail"]
            .as_str()
            .unwrap()
            .contains("insufficient funds")
    );
    let trail = app
        .get(&format!("/v1/accounts/{id}/events"), &token)
        .await
        .expect(200);
    assert_eq!(trail.body["events"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn zero_or_negative_amounts_are_422() {
    let app = spawn_app().await;
    let token = app.operator();
    let id = app.open_account(&token, "c1").await;

    for cents in [0, -5] {
        app.post(
            &format!("/v1/accounts/{id}/deposits"),
            &token,
            movement(cents, "r"),
        )
        .await
        .expect_problem(422);
        app.post(
            &format!("/v1/accounts/{id}/withdrawals"),
            &token,
            movement(cents, "r"),
        )
        .await
        .expect_problem(422);
    }
}

#[tokio::test]
async fn account_ownership_is_enforced() {
    let app = spawn_app().await;
    let owner = app.customer("c1");
    let id = app.open_account(&owner, "c1").await;
    let stranger = app.customer("c2");

    app.post(
        "/v1/accounts",
        &stranger,
        json!({"ownerCustomerId": "c1", "currency": "EUR"}),
    )
    .await
    .expect_problem(403);
    app.post(
        &format!("/v1/accounts/{id}/deposits"),
        &stranger,
        movement(5, "r"),
    )
    .await
    .expect_problem(404);
    app.get(&format!("/v1/accounts/{id}/balance"), &stranger)
        .await
        .expect_problem(404);
    app.get(&format!("/v1/accounts/{id}/events"), &stranger)
        .await
        .expect_problem(404);
    app.post(
        &format!("/v1/accounts/{id}/deposits"),
        &app.auditor(),
        movement(5, "r"),
    )
    .await
    .expect_problem(403);
    app.get(&format!("/v1/accounts/{id}/balance"), &app.auditor())
        .await
        .expect(200);
    app.get(
        &format!("/v1/accounts/{}/balance", uuid::Uuid::now_v7()),
        &app.operator(),
    )
    .await
    .expect_problem(404);
}
