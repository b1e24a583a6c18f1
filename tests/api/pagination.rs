//! Paged lists over HTTP: page sizes, walking every page, and cursors that must come from the
//! very list they are used on.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// Places `count` orders for `customer`; returns their ids in placement order and the position
/// of the last one.
async fn place_orders(app: &TestApp, customer: &str, count: usize) -> (Vec<String>, u64) {
    let token = app.operator();
    let mut ids = Vec::new();
    let mut last = 0;
    for _ in 0..count {
        let (id, position) = app.place_order_at(&token, customer).await;
        ids.push(id);
        last = position;
    }
    (ids, last)
}

/// Walks a list page by page with `limit`; returns the pages (items' `key` values).
async fn walk(app: &TestApp, list: &str, limit: usize, key: &str, after: u64) -> Vec<Vec<Value>> {
    let token = app.operator();
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("{list}?limit={limit}"),
            Some(cursor) => format!("{list}?limit={limit}&cursor={cursor}"),
        };
        let page = app.get_after(&path, &token, after).await.expect(200);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= limit, "{path}: {} items", items.len());
        pages.push(items.iter().map(|i| i[key].clone()).collect());
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return pages,
        }
        assert!(pages.len() <= 20, "the walk does not end: {pages:?}");
    }
}

/// The cursor after the first item of a list.
async fn next_cursor(app: &TestApp, list: &str, after: u64) -> String {
    let page = app
        .get_after(&format!("{list}?limit=1"), &app.operator(), after)
        .await
        .expect(200);
    page.body["nextCursor"].as_str().unwrap().to_owned()
}

fn ids(values: &[&String]) -> Vec<Value> {
    values.iter().map(|id| json!(id)).collect()
}

#[tokio::test]
async fn limits_outside_one_to_a_hundred_and_unknown_parameters_are_400() {
    let app = spawn_app().await;
    let token = app.operator();
    let opened = app
        .post(
            "/v1/accounts",
            &token,
            json!({"ownerCustomerId": "c1", "currency": "EUR"}),
        )
        .await
        .expect(201);
    let account = opened.body["accountId"].as_str().unwrap();

    for list in [
        "/v1/customers/c1/orders".to_owned(),
        format!("/v1/accounts/{account}/transactions"),
    ] {
        for query in [
            "limit=0",
            "limit=101",
            "limit=-1",
            "limit=ten",
            "limit=",
            "limt=5",
        ] {
            let answer = app.get(&format!("{list}?{query}"), &token).await;
            answer.expect_problem(400);
        }
        for query in ["limit=1", "limit=100", ""] {
            app.get_after(&format!("{list}?{query}"), &token, opened.position())
                .await
                .expect(200);
        }
    }
}

#[tokio::test]
async fn a_page_size_of_one_walks_every_order_newest_first() {
    let app = spawn_app().await;
    let (placed, last) = place_orders(&app, "c1", 4).await;
    place_orders(&app, "c2", 1).await;

    let pages = walk(&app, "/v1/customers/c1/orders", 1, "orderId", last).await;

    let newest_first: Vec<&String> = placed.iter().rev().collect();
    let expected: Vec<Vec<Value>> = ids(&newest_first)
        .into_iter()
        .map(|id| vec![id])
        .chain([vec![]])
        .collect();
    assert_eq!(pages, expected);
}

#[tokio::test]
async fn a_last_page_exactly_full_is_followed_by_an_empty_page_without_cursor() {
    let app = spawn_app().await;
    let (placed, last) = place_orders(&app, "c1", 4).await;
    let newest_first: Vec<&String> = placed.iter().rev().collect();

    let by_two = walk(&app, "/v1/customers/c1/orders", 2, "orderId", last).await;
    let by_three = walk(&app, "/v1/customers/c1/orders", 3, "orderId", last).await;
    let by_default = walk(&app, "/v1/customers/c1/orders", 20, "orderId", last).await;

    assert_eq!(
        by_two,
        vec![ids(&newest_first[..2]), ids(&newest_first[2..]), Vec::new()]
    );
    assert_eq!(
        by_three,
        vec![ids(&newest_first[..3]), ids(&newest_first[3..])]
    );
    assert_eq!(by_default, vec![ids(&newest_first)]);
    let unpaged = app
        .get_after("/v1/customers/c1/orders", &app.operator(), last)
        .await
        .expect(200);
    assert_eq!(unpaged.body["items"].as_array().unwrap().len(), 4);
    assert_eq!(unpaged.body["nextCursor"], Value::Null);
}

#[tokio::test]
async fn transactions_are_walked_oldest_first_one_page_at_a_time() {
    let app = spawn_app().await;
    let token = app.operator();
    let account = app.open_account(&token, "c1").await;
    let mut last = 0;
    for cents in [10, 20, 30] {
        last = app
            .post(
                &format!("/v1/accounts/{account}/deposits"),
                &token,
                json!({"amountCents": cents, "reference": "r"}),
            )
            .await
            .expect(200)
            .position();
    }
    let list = format!("/v1/accounts/{account}/transactions");

    let by_one = walk(&app, &list, 1, "balanceAfterCents", last).await;
    let by_three = walk(&app, &list, 3, "version", last).await;

    assert_eq!(
        by_one,
        vec![vec![json!(10)], vec![json!(30)], vec![json!(60)], vec![]]
    );
    assert_eq!(by_three, vec![vec![json!(2), json!(3), json!(4)], vec![]]);
}

#[tokio::test]
async fn a_cursor_that_this_list_did_not_issue_is_400() {
    let app = spawn_app().await;
    let token = app.operator();
    place_orders(&app, "c1", 2).await;
    let (_, mut last) = place_orders(&app, "c2", 2).await;
    let account = app.open_account(&token, "c1").await;
    let other_account = app.open_account(&token, "c1").await;
    for id in [&account, &other_account] {
        last = app
            .post(
                &format!("/v1/accounts/{id}/deposits"),
                &token,
                json!({"amountCents": 5, "reference": "r"}),
            )
            .await
            .expect(200)
            .position();
    }
    let c1_cursor = next_cursor(&app, "/v1/customers/c1/orders", last).await;
    let c2_cursor = next_cursor(&app, "/v1/customers/c2/orders", last).await;
    let account_cursor = next_cursor(
        &app,
        &format!("/v1/accounts/{other_account}/transactions"),
        last,
    )
    .await;
    let (key, mac) = c1_cursor.split_once('.').unwrap();
    let flipped = if mac.ends_with('0') { '1' } else { '0' };
    let tampered_mac = format!("{key}.{}{flipped}", &mac[..mac.len() - 1]);
    let tampered_key = format!("{}.{mac}", key.parse::<u64>().unwrap() + 1);

    let c1_orders = "/v1/customers/c1/orders";
    app.get(&format!("{c1_orders}?cursor={c1_cursor}"), &token)
        .await
        .expect(200);
    for cursor in [
        "garbage",
        "",
        "12",
        "12.",
        &tampered_mac,
        &tampered_key,
        &c2_cursor,
        &account_cursor,
    ] {
        let answer = app
            .get(&format!("{c1_orders}?cursor={cursor}"), &token)
            .await;
        answer.expect_problem(400);
    }
    let transactions = format!("/v1/accounts/{account}/transactions");
    app.get(&format!("{transactions}?cursor={account_cursor}"), &token)
        .await
        .expect_problem(400);
    app.get(&format!("{transactions}?cursor={c1_cursor}"), &token)
        .await
        .expect_problem(400);
}
