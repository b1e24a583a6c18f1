//! Read-your-writes: a query with `X-Min-Position` waits until its projection has processed that
//! position, and answers 503 with `Retry-After` when it does not get there in time.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{TestApp, skipped_on_sqlite, spawn_app, spawn_app_with};

/// A server without projection workers: its read models never move.
async fn spawn_app_without_projector(read_wait: Duration) -> TestApp {
    spawn_app_with(|settings| {
        settings.with_projector = false;
        settings.read_wait = read_wait;
    })
    .await
}

#[tokio::test]
async fn a_query_after_a_command_sees_the_change_it_made() {
    let app = spawn_app().await;
    let token = app.customer("c1");
    let id = app.place_order(&token, "c1").await;
    let confirmed = app
        .post_empty(&format!("/v1/orders/{id}/confirm"), &app.operator())
        .await
        .expect(200);
    let account = app.open_account(&token, "c1").await;
    let deposited = app
        .post(
            &format!("/v1/accounts/{account}/deposits"),
            &token,
            json!({"amountCents": 4200, "reference": "salary"}),
        )
        .await
        .expect(200);

    let order = app
        .get_after(&format!("/v1/orders/{id}"), &token, confirmed.position())
        .await
        .expect(200);
    let balance = app
        .get_after(
            &format!("/v1/accounts/{account}"),
            &token,
            deposited.position(),
        )
        .await
        .expect(200);

    assert_eq!(order.body["status"], "CONFIRMED");
    assert!(order.projection_position() >= confirmed.position());
    assert_eq!(balance.body["balanceCents"], 4200);
    assert!(balance.projection_position() >= deposited.position());
}

#[tokio::test]
async fn a_query_waits_while_its_projection_is_held_back_then_answers_with_the_change() {
    if skipped_on_sqlite("holds the projection back with a PostgreSQL row lock") {
        return;
    }
    let app = spawn_app().await;
    let token = app.operator();
    let (id, position) = app.place_order_at(&token, "c1").await;
    let placed = app
        .get_after(&format!("/v1/orders/{id}"), &token, position)
        .await
        .expect(200);
    assert_eq!(placed.body["status"], "PENDING");
    // A projection batch locks its checkpoint row: holding the lock holds the projection back.
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let mut hold = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE projection = 'orders' FOR UPDATE")
        .execute(&mut *hold)
        .await
        .unwrap();
    let confirmed = app
        .post_empty(&format!("/v1/orders/{id}/confirm"), &token)
        .await
        .expect(200);
    let query = {
        let request = app
            .client
            .get(format!("{}/v1/orders/{id}", app.address))
            .bearer_auth(&token)
            .header("x-min-position", confirmed.position().to_string());
        tokio::spawn(request.send())
    };

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !query.is_finished(),
        "the query answered before its projection reached the position"
    );
    hold.rollback().await.unwrap();
    let answer = query.await.unwrap().unwrap();

    assert_eq!(answer.status(), 200);
    let position: u64 = answer.headers()["x-projection-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(position >= confirmed.position());
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["status"], "CONFIRMED");
}

#[tokio::test]
async fn a_position_not_reached_within_the_wait_is_503_with_retry_after() {
    let app = spawn_app_without_projector(Duration::from_millis(300)).await;
    let token = app.operator();
    let (id, position) = app.place_order_at(&token, "c1").await;
    let account = app.open_account(&token, "c1").await;

    for route in [
        format!("/v1/orders/{id}"),
        "/v1/customers/c1/orders".to_owned(),
        "/v1/customers/c1/stats".to_owned(),
        format!("/v1/accounts/{account}"),
        format!("/v1/accounts/{account}/transactions"),
    ] {
        let started = Instant::now();
        let answer = app.get_after(&route, &token, position).await;
        let waited = started.elapsed();

        let answer = answer.expect_problem(503);
        assert_eq!(answer.header("retry-after"), Some("1"), "{route}");
        assert_eq!(answer.body["type"], "urn:strata:problem:not-caught-up");
        assert!(
            waited >= Duration::from_millis(300),
            "{route} gave up after {waited:?}"
        );
    }
}

#[tokio::test]
async fn a_malformed_min_position_is_400() {
    let app = spawn_app().await;
    let token = app.operator();
    let id = app.place_order(&token, "c1").await;

    for value in ["abc", "-1", "1.5", "18446744073709551616", ""] {
        let answer = app
            .get_after(&format!("/v1/orders/{id}"), &token, value)
            .await;
        answer.expect_problem(400);
    }
}

#[tokio::test]
async fn without_a_min_position_a_query_answers_at_once_with_the_projection_position() {
    let app = spawn_app_without_projector(Duration::from_secs(30)).await;

    let started = Instant::now();
    let answer = app
        .get("/v1/customers/c1/orders", &app.operator())
        .await
        .expect(200);

    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(answer.projection_position(), 0);
    assert_eq!(answer.body["items"], json!([]));
}
