//! `GET /v1/orders/search` end to end, on both engines: PostgreSQL full-text search (the
//! default) and an Elasticsearch-compatible server (`osmem-server`, selected by
//! `ELASTICSEARCH_URL`): words and filters, counts by status, a customer always restricted to
//! their own orders, pages through sealed cursors, read-your-writes, and 4xx for bad input.

use std::collections::HashSet;

use serde_json::{Value, json};
use strata_adapters_elastic::testkit::Emulator;

use crate::helpers::{TestApp, item, spawn_app, spawn_app_with};

/// Places an order; returns its id and the position of its event.
async fn order(
    app: &TestApp,
    customer: &str,
    product: &str,
    cents: i64,
    address: &str,
) -> (String, u64) {
    let body = json!({
        "customerId": customer,
        "currency": "EUR",
        "items": [item(product, 1, cents)],
        "shippingAddress": address,
    });
    let answer = app
        .post("/v1/orders", &app.customer(customer), body)
        .await
        .expect(201);
    (
        answer.body["orderId"].as_str().unwrap().to_owned(),
        answer.position(),
    )
}

fn ids(answer: &Value) -> HashSet<String> {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["orderId"].as_str().unwrap().to_owned())
        .collect()
}

/// The hit of the order `id` in a search's answer.
fn hit<'a>(answer: &'a Value, id: &str) -> &'a Value {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|hit| hit["orderId"] == id)
        .unwrap_or_else(|| panic!("no hit for {id} in {answer}"))
}

/// What both engines must answer.
async fn searches_answer_the_same_on(app: &TestApp) {
    let operator = app.operator();
    let (lamp, _) = order(app, "c1", "lamp-shade", 1500, "12 Harbour Road, Portsmouth").await;
    let (chair, _) = order(app, "c1", "oak-chair", 9900, "12 Harbour Road, Portsmouth").await;
    let (kettle, _) = order(app, "c2", "kettle", 3000, "7 Mill Lane, Leeds").await;
    // A second line of three units: a hit counts lines as items and quantities as units.
    let lamp_bulbs = app
        .post(
            &format!("/v1/orders/{lamp}/items"),
            &app.customer("c1"),
            item("lamp-bulb", 3, 100),
        )
        .await
        .expect(200);
    app.post_empty(&format!("/v1/orders/{chair}/confirm"), &operator)
        .await
        .expect(200);
    let shipped = app
        .post(
            &format!("/v1/orders/{chair}/ship"),
            &operator,
            json!({"trackingNumber": "TRK-42"}),
        )
        .await
        .expect(200);
    let cancelled = app
        .post(
            &format!("/v1/orders/{kettle}/cancel"),
            &app.customer("c2"),
            json!({"reason": "changed my mind"}),
        )
        .await
        .expect(200);
    let last = shipped
        .position()
        .max(cancelled.position())
        .max(lamp_bulbs.position());

    // Read your writes: the search waits for the search projection to reach the commands.
    let all = app
        .get_after("/v1/orders/search", &operator, last)
        .await
        .expect(200);
    assert!(all.projection_position() >= last);
    assert_eq!(
        ids(&all.body),
        HashSet::from([lamp.clone(), chair.clone(), kettle.clone()])
    );
    assert_eq!(
        all.body["statusCounts"],
        json!({"PENDING": 1, "SHIPPED": 1, "CANCELLED": 1})
    );
    let shipped_hit = hit(&all.body, &chair);
    assert_eq!(shipped_hit["status"], "SHIPPED");
    assert_eq!(shipped_hit["trackingNumber"], "TRK-42");
    assert_eq!(shipped_hit["productIds"], json!(["oak-chair"]));
    assert_eq!(shipped_hit["totalCents"], 9900);
    assert_eq!(shipped_hit["version"], 3);
    assert!(shipped_hit["placedAt"].is_string() && shipped_hit["score"].is_number());
    let lamp_hit = hit(&all.body, &lamp);
    assert_eq!(lamp_hit["status"], "PENDING");
    assert_eq!(lamp_hit["productIds"], json!(["lamp-shade", "lamp-bulb"]));
    assert_eq!(
        (&lamp_hit["itemCount"], &lamp_hit["unitCount"]),
        (&json!(2), &json!(4))
    );

    let search = |query: &str, token: String| {
        let path = format!("/v1/orders/search{query}");
        async move { app.get(&path, &token).await.expect(200).body }
    };
    // Words: a tracking number, a product, an address.
    assert_eq!(
        ids(&search("?q=TRK-42", operator.clone()).await),
        HashSet::from([chair.clone()])
    );
    assert_eq!(
        ids(&search("?q=kettle", operator.clone()).await),
        HashSet::from([kettle.clone()])
    );
    assert_eq!(
        ids(&search("?q=Harbour", operator.clone()).await),
        HashSet::from([lamp.clone(), chair.clone()])
    );
    // Filters narrow; the counts ignore only the status filter.
    let shipped_only = search("?status=SHIPPED", operator.clone()).await;
    assert_eq!(ids(&shipped_only), HashSet::from([chair.clone()]));
    assert_eq!(shipped_only["statusCounts"], all.body["statusCounts"]);
    assert_eq!(
        ids(&search("?minTotalCents=2000&maxTotalCents=5000", operator.clone()).await),
        HashSet::from([kettle.clone()])
    );
    assert_eq!(
        ids(&search("?customerId=c2", operator.clone()).await),
        HashSet::from([kettle.clone()])
    );
    assert_eq!(
        ids(&search(
            "?placedFrom=2000-01-01T00:00:00Z&placedTo=2999-01-01T00:00:00Z",
            operator.clone()
        )
        .await)
        .len(),
        3
    );
    assert!(ids(&search("?placedTo=2000-01-01T00:00:00Z", operator.clone()).await).is_empty());

    // A customer finds only their own orders, whatever they ask for.
    let own = search("", app.customer("c1")).await;
    assert_eq!(ids(&own), HashSet::from([lamp.clone(), chair.clone()]));
    assert_eq!(own["statusCounts"], json!({"PENDING": 1, "SHIPPED": 1}));
    assert!(ids(&search("?q=kettle", app.customer("c1")).await).is_empty());
    let theirs = search("?customerId=c2", app.customer("c1")).await;
    assert!(ids(&theirs).is_empty(), "{theirs}");

    // Pages: one hit each, every order once, then no cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let query = match &cursor {
            Some(c) => format!("?limit=1&cursor={c}"),
            None => "?limit=1".to_owned(),
        };
        let page = search(&query, operator.clone()).await;
        seen.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    seen.sort();
    let mut expected = vec![lamp, chair, kettle];
    expected.sort();
    assert_eq!(seen, expected);
}

/// The 4xx of the search route, each a problem document.
async fn bad_searches_are_refused(app: &TestApp) {
    let operator = app.operator();
    let first = app
        .get("/v1/orders/search?limit=1", &operator)
        .await
        .expect(200);
    let cursor = first.body["nextCursor"]
        .as_str()
        .expect("the scenario left more than one order")
        .to_owned();
    let mut bad = vec![
        "?limit=0".to_owned(),
        "?limit=101".to_owned(),
        "?status=LOST".to_owned(),
        "?minTotalCents=10&maxTotalCents=9".to_owned(),
        "?minTotalCents=lots".to_owned(),
        "?placedFrom=yesterday".to_owned(),
        "?placedFrom=2026-02-01T00:00:00Z&placedTo=2026-01-01T00:00:00Z".to_owned(),
        format!("?q={}", "x".repeat(201)),
        "?sort=price".to_owned(),
        "?cursor=garbage".to_owned(),
    ];
    // A cursor of one search is refused by another.
    bad.push(format!("?limit=1&q=other&cursor={cursor}"));
    for query in bad {
        let answer = app
            .get(&format!("/v1/orders/search{query}"), &operator)
            .await
            .expect_problem(400);
        assert!(
            answer.body["detail"].as_str().unwrap().len() > 5,
            "{query}: {}",
            answer.body
        );
    }
    app.send(reqwest::Method::GET, "/v1/orders/search", None, None, &[])
        .await
        .expect_problem(401);
}

#[tokio::test]
async fn search_on_postgres_finds_orders_by_words_and_filters() {
    let app = spawn_app().await;
    searches_answer_the_same_on(&app).await;
    bad_searches_are_refused(&app).await;
}

#[tokio::test]
async fn search_on_elasticsearch_finds_orders_by_words_and_filters() {
    let Some(emulator) =
        Emulator::start("search_on_elasticsearch_finds_orders_by_words_and_filters")
    else {
        return;
    };
    let url = emulator.url.clone();
    let app = spawn_app_with(|settings| settings.elasticsearch_url = Some(url.into())).await;
    searches_answer_the_same_on(&app).await;
    bad_searches_are_refused(&app).await;
    // Everything came from the cluster: the database's own search stayed empty.
    if let Some(sqlite) = app.sqlite() {
        // The embedded index's file is not even opened.
        assert!(
            !sqlite.search_path().exists(),
            "the embedded search file was created"
        );
    } else {
        let in_database = app
            .search_database()
            .await
            .number("SELECT count(*) FROM order_search")
            .await;
        assert_eq!(in_database, 0);
    }
}

#[tokio::test]
async fn an_unreachable_search_engine_answers_503_and_the_rest_keeps_working() {
    // Nothing listens on port 9 of loopback.
    let app = spawn_app_with(|settings| {
        settings.elasticsearch_url = Some("http://127.0.0.1:9".into());
    })
    .await;
    let (id, position) = app.place_order_at(&app.customer("c1"), "c1").await;

    app.get("/v1/orders/search", &app.operator())
        .await
        .expect_problem(503);
    app.get_after(&format!("/v1/orders/{id}"), &app.operator(), position)
        .await
        .expect(200);
}

#[tokio::test]
async fn a_search_waits_for_the_search_projection_to_reach_x_min_position() {
    // No projection workers: the search projection never moves.
    let app = spawn_app_with(|settings| {
        settings.with_projector = false;
        settings.read_wait = std::time::Duration::from_millis(100);
    })
    .await;
    let (_, position) = app.place_order_at(&app.customer("c1"), "c1").await;

    let behind = app
        .get_after("/v1/orders/search", &app.operator(), position)
        .await
        .expect_problem(503);

    assert!(
        behind.body["detail"]
            .as_str()
            .unwrap()
            .contains("search projection"),
        "{}",
        behind.body
    );
    assert!(behind.header("retry-after").is_some());
    app.get("/v1/orders/search", &app.operator())
        .await
        .expect(200);
}
