//! The audit trail and time travel over HTTP, including events stored under an old schema.

use std::sync::Arc;

use reqwest::Method;
use serde_json::json;
use strata_adapters_postgres::{PgEventStore, PgSettings};
use strata_adapters_sqlite::SqliteEventStore;
use strata_ports::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use uuid::Uuid;

use crate::helpers::{item, spawn_app};

#[tokio::test]
async fn the_audit_trail_lists_every_event_with_its_envelope_and_who_caused_it() {
    let app = spawn_app().await;
    let token = app.customer("c1");
    let placed = app
        .send(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(crate::helpers::order_body("c1")),
            &[("X-Request-Id", "req-place-1")],
        )
        .await
        .expect(201);
    assert_eq!(placed.header("x-request-id"), Some("req-place-1"));
    let id = placed.body["orderId"].as_str().unwrap();
    app.post(
        &format!("/v1/orders/{id}/items"),
        &token,
        item("sku-9", 1, 99),
    )
    .await
    .expect(200);

    let trail = app
        .get(&format!("/v1/orders/{id}/events"), &app.auditor())
        .await
        .expect(200);

    let events = trail.body["events"].as_array().unwrap();
    assert_eq!(trail.body["aggregateId"], id);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["eventType"], "OrderPlaced");
    assert_eq!(events[0]["schemaVersion"], 2);
    assert_eq!(events[0]["streamVersion"], 1);
    assert_eq!(events[0]["globalPosition"], 1);
    assert_eq!(events[0]["data"]["customerId"], "c1");
    assert_eq!(events[0]["metadata"]["correlationId"], "req-place-1");
    assert_eq!(events[0]["metadata"]["userId"], "customer-c1");
    assert!(events[0]["recordedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(events[1]["eventType"], "ItemAdded");
    assert_eq!(events[1]["streamVersion"], 2);
    assert_eq!(
        events[1]["data"],
        json!({"productId": "sku-9", "quantity": 1, "unitPriceCents": 99})
    );
    assert!(
        events[1]["metadata"]["correlationId"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "a generated request id"
    );
}

#[tokio::test]
async fn an_order_can_be_seen_as_of_a_version_or_an_instant() {
    let app = spawn_app().await;
    let token = app.operator();
    let id = app.place_order(&token, "c1").await;
    app.post(
        &format!("/v1/orders/{id}/items"),
        &token,
        item("sku-2", 1, 500),
    )
    .await
    .expect(200);
    app.post_empty(&format!("/v1/orders/{id}/confirm"), &token)
        .await
        .expect(200);
    let trail = app
        .get(&format!("/v1/orders/{id}/events"), &token)
        .await
        .expect(200);
    let first_recorded = trail.body["events"][0]["recordedAt"]
        .as_str()
        .unwrap()
        .to_owned();

    let v2 = app
        .get(&format!("/v1/orders/{id}/state?version=2"), &token)
        .await
        .expect(200);
    let at_first = app
        .get(
            &format!("/v1/orders/{id}/state?at={first_recorded}"),
            &token,
        )
        .await
        .expect(200);
    let now = app
        .get(&format!("/v1/orders/{id}/state"), &token)
        .await
        .expect(200);

    assert_eq!(
        (
            v2.body["version"].clone(),
            v2.body["status"].clone(),
            v2.body["itemCount"].clone()
        ),
        (json!(2), json!("PENDING"), json!(2))
    );
    assert_eq!(v2.header("etag"), Some("\"2\""));
    assert_eq!(
        (
            at_first.body["version"].clone(),
            at_first.body["totalCents"].clone()
        ),
        (json!(1), json!(2500))
    );
    assert_eq!(now.body["status"], "CONFIRMED");
}

#[tokio::test]
async fn an_order_seen_before_it_existed_is_404_saying_when_it_began() {
    let app = spawn_app().await;
    let token = app.customer("c1");
    let id = app.place_order(&token, "c1").await;
    let trail = app
        .get(&format!("/v1/orders/{id}/events"), &token)
        .await
        .expect(200);
    let first_recorded = trail.body["events"][0]["recordedAt"].as_str().unwrap();

    let before = app
        .get(
            &format!("/v1/orders/{id}/state?at=2000-01-01T01:00:00%2B01:00"),
            &token,
        )
        .await
        .expect_problem(404);
    let version_zero = app
        .get(&format!("/v1/orders/{id}/state?version=0"), &token)
        .await
        .expect_problem(404);
    let unknown = app
        .get(
            &format!(
                "/v1/orders/{}/state?at=2000-01-01T00:00:00Z",
                Uuid::now_v7()
            ),
            &token,
        )
        .await
        .expect_problem(404);
    let stranger = app
        .get(
            &format!("/v1/orders/{id}/state?at=2000-01-01T00:00:00Z"),
            &app.customer("c2"),
        )
        .await
        .expect_problem(404);

    assert_eq!(
        before.body["detail"],
        format!(
            "order {id} did not exist yet at 2000-01-01T00:00:00Z \
             (its first event was recorded at {first_recorded})"
        )
    );
    assert_eq!(
        version_zero.body["detail"],
        format!("order {id} did not exist yet at version 0 (its first event is version 1)")
    );
    assert_eq!(unknown.body["detail"], "order not found");
    assert_eq!(
        stranger.body["detail"], "order not found",
        "who may not see the order learns nothing of it"
    );
}

#[tokio::test]
async fn a_balance_can_be_read_as_of_an_instant() {
    let app = spawn_app().await;
    let token = app.customer("c1");
    let id = app.open_account(&token, "c1").await;
    app.post(
        &format!("/v1/accounts/{id}/deposits"),
        &token,
        json!({"amountCents": 700, "reference": "a"}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/accounts/{id}/withdrawals"),
        &token,
        json!({"amountCents": 200, "reference": "b"}),
    )
    .await
    .expect(200);
    let trail = app
        .get(&format!("/v1/accounts/{id}/events"), &token)
        .await
        .expect(200);
    let after_deposit = trail.body["events"][1]["recordedAt"]
        .as_str()
        .unwrap()
        .to_owned();

    let then = app
        .get(
            &format!("/v1/accounts/{id}/balance?at={after_deposit}"),
            &token,
        )
        .await
        .expect(200);
    let now = app
        .get(&format!("/v1/accounts/{id}/balance"), &token)
        .await
        .expect(200);

    assert_eq!(then.body["balanceCents"], 700);
    assert_eq!(now.body["balanceCents"], 500);
    let before = app
        .get(
            &format!("/v1/accounts/{id}/balance?at=1999-12-31T23:59:59Z"),
            &token,
        )
        .await
        .expect_problem(404);
    let opened = trail.body["events"][0]["recordedAt"].as_str().unwrap();
    assert_eq!(
        before.body["detail"],
        format!(
            "account {id} did not exist yet at 1999-12-31T23:59:59Z \
             (its first event was recorded at {opened})"
        )
    );
    app.get(&format!("/v1/accounts/{id}/balance?at=soon"), &token)
        .await
        .expect_problem(400);
}

#[tokio::test]
async fn order_placed_v1_rows_stored_in_the_database_are_upcast_when_read() {
    let app = spawn_app().await;
    let store: Arc<dyn EventStore> = if let Some(sqlite) = app.sqlite() {
        let pool = strata_adapters_sqlite::connect(&sqlite).await.unwrap();
        Arc::new(SqliteEventStore::new(pool))
    } else {
        let pool = strata_adapters_postgres::connect(&PgSettings {
            url: app.database_url.clone(),
            max_connections: 1,
            acquire_timeout: std::time::Duration::from_secs(5),
        })
        .await
        .unwrap();
        Arc::new(PgEventStore::new(pool))
    };
    let id = Uuid::now_v7();
    // The shape written by the first release: no currency (every order was in EUR then).
    store
        .append(AppendRequest {
            stream_id: StreamId::new("order", id),
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "OrderPlaced".to_owned(),
                schema_version: 1,
                data: json!({"customerId": "c1", "items": [{"productId": "old", "quantity": 3, "unitPriceCents": 100}], "shippingAddress": "Old Town"}),
                metadata: Metadata::default(),
                recorded_at: time::OffsetDateTime::now_utc(),
            }],
            idempotency: None,
        })
        .await
        .unwrap();
    let token = app.customer("c1");

    let state = app
        .get(&format!("/v1/orders/{id}/state"), &token)
        .await
        .expect(200);
    app.post(
        &format!("/v1/orders/{id}/items"),
        &token,
        item("new", 1, 50),
    )
    .await
    .expect(200);
    let trail = app
        .get(&format!("/v1/orders/{id}/events"), &token)
        .await
        .expect(200);

    assert_eq!(state.body["currency"], "EUR");
    assert_eq!(state.body["totalCents"], 300);
    assert_eq!(
        trail.body["events"][0]["schemaVersion"], 1,
        "the audit trail shows the event as stored"
    );
    assert!(trail.body["events"][0]["data"].get("currency").is_none());
}

#[tokio::test]
async fn a_version_beyond_the_end_of_the_stream_is_404_not_the_latest_state() {
    let app = spawn_app().await;
    let token = app.operator();
    let order = app.place_order(&token, "c1").await;
    let account = app.open_account(&token, "c1").await;

    app.get(&format!("/v1/orders/{order}/state?version=1"), &token)
        .await
        .expect(200);
    let beyond = app
        .get(&format!("/v1/orders/{order}/state?version=2"), &token)
        .await
        .expect_problem(404);
    assert_eq!(
        beyond.body["detail"],
        format!("order {order} has no version 2 yet: its latest is 1")
    );
    app.get(&format!("/v1/accounts/{account}/balance?version=1"), &token)
        .await
        .expect(200);
    app.get(&format!("/v1/accounts/{account}/balance?version=9"), &token)
        .await
        .expect_problem(404);
}
