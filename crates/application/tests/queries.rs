//! Queries against a mocked `ReadModels`: ownership, page limits, sealed cursors, and waiting
//! for a projection position (read-your-writes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use strata_application::{QueryConfig, QueryError, QueryService};
use strata_ports::{MockReadModels, OrderSummaryRow, Positioned};
use support::{auditor, customer, operator};
use time::OffsetDateTime;
use uuid::Uuid;

fn summary(customer_id: &str, placed_position: u64) -> OrderSummaryRow {
    OrderSummaryRow {
        order_id: Uuid::now_v7(),
        customer_id: customer_id.to_owned(),
        status: "PENDING".to_owned(),
        items: vec![],
        item_count: 0,
        total_cents: 0,
        currency: "EUR".to_owned(),
        shipping_address: "1 Main St".to_owned(),
        tracking_number: None,
        cancellation_reason: None,
        placed_at: OffsetDateTime::UNIX_EPOCH,
        updated_at: OffsetDateTime::UNIX_EPOCH,
        version: 1,
        placed_position,
    }
}

fn service(models: MockReadModels, max_wait: Duration) -> QueryService {
    QueryService::new(
        Arc::new(models),
        QueryConfig {
            max_wait,
            cursor_key: b"test-key".to_vec(),
        },
    )
}

/// A customer's list of orders placed at positions 1..=n, newest first, honouring `before`.
fn orders_of(customer_id: &'static str, n: u64) -> MockReadModels {
    let mut models = MockReadModels::new();
    models
        .expect_customer_orders()
        .returning(move |customer, before, limit| {
            assert_eq!(customer, customer_id);
            let value = (1..=n)
                .rev()
                .filter(|p| before.is_none_or(|b| *p < b))
                .take(limit)
                .map(|p| summary(customer_id, p))
                .collect();
            Ok(Positioned { value, position: n })
        });
    models
}

#[tokio::test]
async fn a_customer_sees_only_their_own_order() {
    let mut models = MockReadModels::new();
    models.expect_order_summary().returning(|_| {
        Ok(Positioned {
            value: Some(summary("c-1", 1)),
            position: 1,
        })
    });
    let queries = service(models, Duration::ZERO);
    let id = Uuid::now_v7();

    assert!(queries.order(&customer("c-1"), id, None).await.is_ok());
    assert!(queries.order(&operator(), id, None).await.is_ok());
    assert!(queries.order(&auditor(), id, None).await.is_ok());
    assert_eq!(
        queries.order(&customer("c-2"), id, None).await.unwrap_err(),
        QueryError::NotFound("order")
    );
}

#[tokio::test]
async fn another_customers_list_is_not_found_without_reading_it() {
    let queries = service(MockReadModels::new(), Duration::ZERO);

    let error = queries
        .customer_orders(&customer("c-2"), "c-1", 10, None, None)
        .await
        .unwrap_err();

    assert_eq!(error, QueryError::NotFound("customer"));
}

#[tokio::test]
async fn page_limits_outside_one_to_a_hundred_are_bad_requests() {
    let queries = service(orders_of("c-1", 3), Duration::ZERO);
    for limit in [0, 101] {
        let error = queries
            .customer_orders(&customer("c-1"), "c-1", limit, None, None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, QueryError::BadRequest(_)),
            "{limit}: {error:?}"
        );
    }
    for limit in [1, 100] {
        assert!(
            queries
                .customer_orders(&customer("c-1"), "c-1", limit, None, None)
                .await
                .is_ok()
        );
    }
}

#[tokio::test]
async fn cursors_walk_every_page_newest_first_and_stop() {
    let queries = service(orders_of("c-1", 5), Duration::ZERO);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let page = queries
            .customer_orders(&customer("c-1"), "c-1", 2, cursor.as_deref(), None)
            .await
            .unwrap()
            .value;
        seen.extend(page.items.iter().map(|o| o.placed_position));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, [5, 4, 3, 2, 1]);
}

#[tokio::test]
async fn a_full_last_page_is_followed_by_an_empty_one() {
    let queries = service(orders_of("c-1", 4), Duration::ZERO);
    let first = queries
        .customer_orders(&customer("c-1"), "c-1", 2, None, None)
        .await
        .unwrap()
        .value;
    let second = queries
        .customer_orders(
            &customer("c-1"),
            "c-1",
            2,
            first.next_cursor.as_deref(),
            None,
        )
        .await
        .unwrap()
        .value;
    let third = queries
        .customer_orders(
            &customer("c-1"),
            "c-1",
            2,
            second.next_cursor.as_deref(),
            None,
        )
        .await
        .unwrap()
        .value;
    assert_eq!(second.items.len(), 2);
    assert!(third.items.is_empty());
    assert_eq!(third.next_cursor, None);
}

#[tokio::test]
async fn tampered_foreign_or_garbage_cursors_are_bad_requests() {
    let queries = service(orders_of("c-1", 5), Duration::ZERO);
    let page = queries
        .customer_orders(&operator(), "c-1", 2, None, None)
        .await
        .unwrap()
        .value;
    let cursor = page.next_cursor.unwrap();
    let (key, mac) = cursor.split_once('.').unwrap();
    let tampered_key = format!("{}.{mac}", key.parse::<u64>().unwrap() + 1);
    let tampered_mac = format!("{key}.{}", "0".repeat(mac.len()));
    for bad in [
        tampered_key.as_str(),
        tampered_mac.as_str(),
        "garbage",
        "",
        "12",
    ] {
        let error = queries
            .customer_orders(&operator(), "c-1", 2, Some(bad), None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, QueryError::BadRequest(_)),
            "{bad:?}: {error:?}"
        );
    }
    // The same cursor on another customer's list (or another deployment's key) is refused.
    let other_list = service(orders_of("c-2", 5), Duration::ZERO)
        .customer_orders(&operator(), "c-2", 2, Some(&cursor), None)
        .await
        .unwrap_err();
    assert!(matches!(other_list, QueryError::BadRequest(_)));
    let other_key = QueryService::new(
        Arc::new(orders_of("c-1", 5)),
        QueryConfig {
            max_wait: Duration::ZERO,
            cursor_key: b"another-key".to_vec(),
        },
    )
    .customer_orders(&operator(), "c-1", 2, Some(&cursor), None)
    .await
    .unwrap_err();
    assert!(matches!(other_key, QueryError::BadRequest(_)));
}

#[tokio::test]
async fn a_query_waits_until_its_projection_reaches_the_position() {
    let position = Arc::new(AtomicU64::new(3));
    let mut models = MockReadModels::new();
    let moving = position.clone();
    models.expect_position().returning(move |projection| {
        assert_eq!(projection, "orders");
        // The projection advances by one every time it is asked.
        Ok(moving.fetch_add(1, Ordering::SeqCst))
    });
    models.expect_order_summary().returning(|_| {
        Ok(Positioned {
            value: Some(summary("c-1", 1)),
            position: 7,
        })
    });
    let queries = service(models, Duration::from_secs(5));

    let found = queries
        .order(&customer("c-1"), Uuid::now_v7(), Some(6))
        .await
        .unwrap();

    assert_eq!(found.position, 7);
    assert!(position.load(Ordering::SeqCst) >= 7);
}

#[tokio::test]
async fn a_query_gives_up_when_the_projection_stays_behind() {
    let mut models = MockReadModels::new();
    models.expect_position().returning(|_| Ok(4));
    models.expect_order_summary().never();
    let queries = service(models, Duration::from_millis(50));

    let error = queries
        .order(&customer("c-1"), Uuid::now_v7(), Some(5))
        .await
        .unwrap_err();

    assert_eq!(
        error,
        QueryError::NotCaughtUp {
            projection: "orders",
            position: 4,
            wanted: 5
        }
    );
}
