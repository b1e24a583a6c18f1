//! The query routes over HTTP: what the read models answer, who may read them, and the status of
//! the projections.

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::{TestApp, item, spawn_app};

fn instant(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().unwrap(), &Rfc3339)
        .unwrap_or_else(|e| panic!("{value} is not RFC 3339: {e}"))
}

fn movement(cents: i64, reference: &str) -> Value {
    json!({"amountCents": cents, "reference": reference})
}

/// Places an order for `customer` and takes it through `steps` (`confirm`, `ship`, `deliver`,
/// `cancel`); returns its id and the position of the last command.
async fn order_in(app: &TestApp, customer: &str, steps: &[&str]) -> (String, u64) {
    let token = app.operator();
    let (id, mut position) = app.place_order_at(&token, customer).await;
    for step in steps {
        let path = format!("/v1/orders/{id}/{step}");
        let answer = match *step {
            "ship" => {
                app.post(&path, &token, json!({"trackingNumber": "T-1"}))
                    .await
            }
            "cancel" => {
                app.post(&path, &token, json!({"reason": "changed mind"}))
                    .await
            }
            _ => app.post_empty(&path, &token).await,
        };
        position = answer.expect(200).position();
    }
    (id, position)
}

/// Places an order for customer c1 with two lines, sku-1 × 2 at 12.50 (the helper's order) and
/// sku-2 × `units` at 5.00; returns its id.
async fn two_line_order(app: &TestApp, token: &str, units: i64) -> String {
    let id = app.place_order(token, "c1").await;
    app.post(
        &format!("/v1/orders/{id}/items"),
        token,
        item("sku-2", units, 500),
    )
    .await
    .expect(200);
    id
}

#[tokio::test]
async fn an_order_summary_shows_every_field_of_the_read_model() {
    let app = spawn_app().await;
    let token = app.customer("c1");
    let id = two_line_order(&app, &token, 1).await;
    app.post_empty(&format!("/v1/orders/{id}/confirm"), &app.operator())
        .await
        .expect(200);
    let shipped = app
        .post(
            &format!("/v1/orders/{id}/ship"),
            &app.operator(),
            json!({"trackingNumber": "1Z999"}),
        )
        .await
        .expect(200);

    let answer = app
        .get_after(&format!("/v1/orders/{id}"), &token, shipped.position())
        .await
        .expect(200);

    let body = &answer.body;
    assert_eq!(body["orderId"], id.as_str());
    assert_eq!(body["customerId"], "c1");
    assert_eq!(body["status"], "SHIPPED");
    assert_eq!(
        body["items"],
        json!([
            {"productId": "sku-1", "quantity": 2, "unitPriceCents": 1250, "lineTotalCents": 2500},
            {"productId": "sku-2", "quantity": 1, "unitPriceCents": 500, "lineTotalCents": 500},
        ])
    );
    assert_eq!(body["itemCount"], 2, "lines");
    assert_eq!(body["unitCount"], 3, "units over all lines");
    assert_eq!(body["totalCents"], 3000);
    assert_eq!(body["currency"], "EUR");
    assert_eq!(body["shippingAddress"], "1 Main Street, Springfield");
    assert_eq!(body["trackingNumber"], "1Z999");
    assert_eq!(body["cancellationReason"], Value::Null);
    assert_eq!(body["version"], 4);
    assert!(instant(&body["updatedAt"]) >= instant(&body["placedAt"]));
    assert!(answer.projection_position() >= shipped.position());
}

#[tokio::test]
async fn every_answer_counts_lines_as_items_and_quantities_as_units_and_spells_the_status_alike() {
    let app = spawn_app().await;
    let token = app.customer("c1");
    let id = two_line_order(&app, &token, 3).await;
    let confirmed = app
        .post_empty(&format!("/v1/orders/{id}/confirm"), &token)
        .await
        .expect(200)
        .position();
    // Two lines: sku-1 × 2 (the helper's order) and sku-2 × 3.
    let (lines, units) = (json!(2), json!(5));

    let state = app
        .get(&format!("/v1/orders/{id}/state"), &token)
        .await
        .expect(200)
        .body;
    let summary = app
        .get_after(&format!("/v1/orders/{id}"), &token, confirmed)
        .await
        .expect(200)
        .body;
    let listed = app
        .get_after("/v1/customers/c1/orders", &token, confirmed)
        .await
        .expect(200)
        .body["items"][0]
        .clone();
    let found = app
        .get_after("/v1/orders/search?status=CONFIRMED", &token, confirmed)
        .await
        .expect(200)
        .body;
    let stats = app
        .get_after("/v1/customers/c1/stats", &token, confirmed)
        .await
        .expect(200)
        .body;

    let hit = &found["items"][0];
    for (answer, body) in [
        ("state", &state),
        ("summary", &summary),
        ("customer's orders", &listed),
        ("search", hit),
    ] {
        assert_eq!(body["orderId"], id.as_str(), "{answer}: {body}");
        assert_eq!(body["itemCount"], lines, "{answer}: {body}");
        assert_eq!(body["unitCount"], units, "{answer}: {body}");
        assert_eq!(body["status"], "CONFIRMED", "{answer}: {body}");
    }
    assert_eq!(found["statusCounts"], json!({"CONFIRMED": 1}));
    assert_eq!(stats["byStatus"]["CONFIRMED"], 1, "{stats}");
    assert!(stats["byStatus"].get("confirmed").is_none(), "{stats}");
}

#[tokio::test]
async fn customer_statistics_count_by_status_and_value_only_delivered_orders() {
    let app = spawn_app().await;
    order_in(&app, "c1", &["confirm", "ship", "deliver"]).await;
    order_in(&app, "c1", &["confirm", "ship", "deliver"]).await;
    order_in(&app, "c1", &["cancel"]).await;
    order_in(&app, "c1", &["confirm"]).await;
    order_in(&app, "c1", &[]).await;
    let (_, last) = order_in(&app, "c2", &["confirm", "ship", "deliver"]).await;

    let stats = app
        .get_after("/v1/customers/c1/stats", &app.customer("c1"), last)
        .await
        .expect(200);

    assert_eq!(stats.body["customerId"], "c1");
    assert_eq!(stats.body["orderCount"], 5);
    assert_eq!(
        stats.body["byStatus"],
        json!({"PENDING": 1, "CONFIRMED": 1, "SHIPPED": 0, "DELIVERED": 2, "CANCELLED": 1})
    );
    assert_eq!(stats.body["lifetimeValueCents"], json!({"EUR": 5000}));
    let nobody = app
        .get_after("/v1/customers/nobody/stats", &app.operator(), last)
        .await
        .expect(200);
    assert_eq!(nobody.body["orderCount"], 0);
    assert_eq!(nobody.body["lifetimeValueCents"], json!({}));
}

#[tokio::test]
async fn an_account_and_its_transactions_show_the_running_balance() {
    let app = spawn_app().await;
    let token = app.customer("c1");
    let id = app.open_account(&token, "c1").await;
    let mut positions = Vec::new();
    for (path, cents, reference) in [
        ("deposits", 1000, "d1"),
        ("withdrawals", 300, "w1"),
        ("deposits", 50, "d2"),
    ] {
        let answer = app
            .post(
                &format!("/v1/accounts/{id}/{path}"),
                &token,
                movement(cents, reference),
            )
            .await
            .expect(200);
        positions.push(answer.position());
    }
    let last = positions[2];

    let account = app
        .get_after(&format!("/v1/accounts/{id}"), &token, last)
        .await
        .expect(200);
    let transactions = app
        .get_after(&format!("/v1/accounts/{id}/transactions"), &token, last)
        .await
        .expect(200);

    let body = &account.body;
    assert_eq!(body["accountId"], id.as_str());
    assert_eq!(body["ownerCustomerId"], "c1");
    assert_eq!(body["currency"], "EUR");
    assert_eq!(body["balanceCents"], 750);
    assert_eq!(body["closed"], false);
    assert_eq!(body["transactionCount"], 3);
    assert_eq!(body["version"], 4);
    assert!(instant(&body["updatedAt"]) >= instant(&body["openedAt"]));
    let items = transactions.body["items"].as_array().unwrap();
    let lines: Vec<Value> = items
        .iter()
        .map(|t| {
            json!([
                t["version"],
                t["position"],
                t["kind"],
                t["amountCents"],
                t["reference"],
                t["balanceAfterCents"]
            ])
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            json!([2, positions[0], "DEPOSIT", 1000, "d1", 1000]),
            json!([3, positions[1], "WITHDRAWAL", 300, "w1", 700]),
            json!([4, positions[2], "DEPOSIT", 50, "d2", 750]),
        ]
    );
    for t in items {
        instant(&t["recordedAt"]);
    }
    assert_eq!(transactions.body["nextCursor"], Value::Null);
}

#[tokio::test]
async fn every_query_route_shows_a_customer_only_their_own_data_and_staff_everything() {
    let app = spawn_app().await;
    let owner = app.customer("c1");
    let order = app.place_order(&owner, "c1").await;
    let account = app.open_account(&owner, "c1").await;
    let last = app
        .post(
            &format!("/v1/accounts/{account}/deposits"),
            &owner,
            movement(10, "d"),
        )
        .await
        .expect(200)
        .position();
    let routes = [
        format!("/v1/orders/{order}"),
        "/v1/customers/c1/orders".to_owned(),
        "/v1/customers/c1/stats".to_owned(),
        format!("/v1/accounts/{account}"),
        format!("/v1/accounts/{account}/transactions"),
    ];

    for route in &routes {
        for token in [&owner, &app.auditor(), &app.operator()] {
            let answer = app.get_after(route, token, last).await.expect(200);
            assert!(answer.projection_position() >= last, "{route}");
        }
        let stranger = app.get_after(route, &app.customer("c2"), last).await;
        assert_eq!(
            stranger.expect_problem(404).body["type"],
            "urn:strata:problem:not-found",
            "{route}"
        );
        app.send(Method::GET, route, None, None, &[])
            .await
            .expect_problem(401);
    }
    app.get(
        &format!("/v1/orders/{}", uuid::Uuid::now_v7()),
        &app.operator(),
    )
    .await
    .expect_problem(404);
    app.get(
        &format!("/v1/accounts/{}", uuid::Uuid::now_v7()),
        &app.operator(),
    )
    .await
    .expect_problem(404);
    app.get("/v1/orders/not-a-uuid", &app.operator())
        .await
        .expect_problem(400);
}

#[tokio::test]
async fn the_projections_status_is_for_operators_and_auditors_only() {
    let app = spawn_app().await;
    let token = app.operator();
    let (id, position) = order_in(&app, "c1", &[]).await;
    app.get_after(&format!("/v1/orders/{id}"), &token, position)
        .await
        .expect(200);

    let status = app.get("/v1/projections", &token).await.expect(200);
    app.get("/v1/projections", &app.auditor()).await.expect(200);
    app.get("/v1/projections", &app.customer("c1"))
        .await
        .expect_problem(403);
    app.send(Method::GET, "/v1/projections", None, None, &[])
        .await
        .expect_problem(401);

    let projections = status.body["projections"].as_array().unwrap();
    let mut names: Vec<&str> = projections
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["accounts", "orders", "search"]);
    let orders = projections.iter().find(|p| p["name"] == "orders").unwrap();
    assert!(orders["checkpoint"].as_u64().unwrap() >= position);
    assert!(orders["head"].as_u64().unwrap() >= position);
    assert_eq!(orders["deadLetters"], 0);
    assert!(orders["lagSeconds"].is_number());
    assert!(orders["lagEvents"].is_u64());
    assert!(orders["state"].is_string());
    assert_eq!(orders["rebuildCheckpoint"], Value::Null);
}

#[tokio::test]
async fn the_projections_status_has_the_fields_of_strata_projector_status() {
    let app = spawn_app().await;

    let status = app
        .get("/v1/projections", &app.operator())
        .await
        .expect(200);

    let sample = strata_application::ProjectionStatus {
        name: "orders".to_owned(),
        checkpoint: 0,
        head: 0,
        lag_events: 0,
        lag_seconds: 0.0,
        dead_letters: 0,
        state: "never run".to_owned(),
        rebuild_checkpoint: None,
    };
    let printed = strata_projector::report::statuses_json(&[sample]);
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&status.body), keys(&printed));
    assert_eq!(
        keys(&status.body["projections"][0]),
        keys(&printed["projections"][0])
    );
}
