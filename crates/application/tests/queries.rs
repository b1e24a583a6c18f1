//! Queries against a mocked `ReadModels` and `SearchIndex`: ownership (a customer's search is
//! always their own), page limits and search parameters, sealed cursors, and waiting for a
//! projection position (read-your-writes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mockall::Sequence;
use strata_application::{QueryConfig, QueryError, QueryService};
use strata_ports::{
    MockEventStore, MockReadModels, MockSearchIndex, OrderSummaryRow, OrderSummaryStatus,
    Positioned, ProjectionName, SearchCursor, SearchError, SearchPage, SearchQuery,
};
use support::{auditor, customer, operator};
use time::OffsetDateTime;
use uuid::Uuid;

fn summary(customer_id: &str, placed_position: u64) -> OrderSummaryRow {
    OrderSummaryRow {
        order_id: Uuid::now_v7(),
        customer_id: customer_id.to_owned(),
        status: OrderSummaryStatus::Pending,
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
    search_service(models, MockSearchIndex::new(), max_wait)
}

fn search_service(
    models: MockReadModels,
    search: MockSearchIndex,
    max_wait: Duration,
) -> QueryService {
    QueryService::new(
        Arc::new(models),
        Arc::new(search),
        Arc::new(log_at(HEAD)),
        QueryConfig {
            max_wait,
            cursor_key: b"test-key".to_vec(),
        },
    )
}

/// Where the log's head is in these tests, unless a test says otherwise.
const HEAD: u64 = 1_000;

/// An event store that only knows where its head is.
fn log_at(head: u64) -> MockEventStore {
    let mut log = MockEventStore::new();
    log.expect_head_position().returning(move || Ok(head));
    log
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
        Arc::new(MockSearchIndex::new()),
        Arc::new(log_at(HEAD)),
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
        assert_eq!(projection, ProjectionName::Orders);
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
            projection: ProjectionName::Orders,
            position: 4,
            wanted: 5
        }
    );
}

#[tokio::test]
async fn a_position_beyond_the_head_of_the_log_is_refused_at_once() {
    let mut models = MockReadModels::new();
    models.expect_position().times(1).returning(|_| Ok(4));
    models.expect_order_summary().never();
    let queries = service(models, Duration::from_secs(60));

    let started = std::time::Instant::now();
    let error = queries
        .order(&customer("c-1"), Uuid::now_v7(), Some(HEAD + 1))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, QueryError::BadRequest(m) if m.contains("beyond the head")),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it did not wait"
    );
}

#[tokio::test]
async fn many_waiting_queries_share_one_poll_of_the_checkpoint() {
    const WAITERS: u64 = 100;
    let reads = Arc::new(AtomicU64::new(0));
    let caught_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut models = MockReadModels::new();
    let (counted, reached) = (reads.clone(), caught_up.clone());
    models.expect_position().returning(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok(if reached.load(Ordering::SeqCst) { 9 } else { 4 })
    });
    models.expect_order_summary().returning(|_| {
        Ok(Positioned {
            value: Some(summary("c-1", 1)),
            position: 9,
        })
    });
    let queries = service(models, Duration::from_secs(5));
    let waiting: Vec<_> = (0..WAITERS)
        .map(|_| {
            let queries = queries.clone();
            tokio::spawn(async move {
                queries
                    .order(&customer("c-1"), Uuid::now_v7(), Some(9))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    caught_up.store(true, Ordering::SeqCst);

    for waiter in waiting {
        waiter.await.unwrap().unwrap();
    }

    // One read each on arrival, then one shared poll every 10 ms: about 30 in 300 ms. Each
    // request polling on its own backoff read it about 6 times each, 600 in all.
    let total = reads.load(Ordering::SeqCst);
    assert!(
        total < WAITERS + 100,
        "{total} checkpoint reads for {WAITERS} waiting queries"
    );
}

fn search_position(models: &mut MockReadModels, position: u64) {
    models.expect_position().returning(move |projection| {
        assert_eq!(projection, ProjectionName::Search);
        Ok(position)
    });
}

fn search_request(limit: usize) -> SearchQuery {
    SearchQuery {
        limit,
        ..SearchQuery::default()
    }
}

fn empty_page() -> SearchPage {
    SearchPage {
        hits: vec![],
        next: None,
        status_counts: BTreeMap::new(),
    }
}

#[tokio::test]
async fn a_customers_search_is_always_restricted_to_their_own_orders() {
    let mut models = MockReadModels::new();
    search_position(&mut models, 9);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let mut search = MockSearchIndex::new();
    let seen = asked.clone();
    search.expect_search().returning(move |query| {
        seen.lock().unwrap().push(query.customer_id.clone());
        Ok(empty_page())
    });
    let queries = search_service(models, search, Duration::ZERO);
    let with_customer = |id: Option<&str>| SearchQuery {
        customer_id: id.map(str::to_owned),
        ..search_request(20)
    };

    for request in [with_customer(None), with_customer(Some("c-1"))] {
        queries
            .search_orders(&customer("c-1"), request, None, None)
            .await
            .unwrap();
    }
    let strangers = queries
        .search_orders(&customer("c-1"), with_customer(Some("c-2")), None, None)
        .await
        .unwrap();
    queries
        .search_orders(&operator(), with_customer(Some("c-2")), None, None)
        .await
        .unwrap();
    queries
        .search_orders(&auditor(), with_customer(None), None, None)
        .await
        .unwrap();

    // Another customer's orders are not searched at all: nothing, and no counts, comes back.
    assert!(strangers.value.hits.is_empty() && strangers.value.status_counts.is_empty());
    assert_eq!(strangers.position, 9);
    let own = Some("c-1".to_owned());
    assert_eq!(
        *asked.lock().unwrap(),
        vec![own.clone(), own, Some("c-2".to_owned()), None]
    );
}

#[tokio::test]
async fn search_parameters_are_checked_before_anything_is_read() {
    // No expectations: any read would panic.
    let queries = search_service(
        MockReadModels::new(),
        MockSearchIndex::new(),
        Duration::ZERO,
    );
    let bad = [
        search_request(0),
        search_request(101),
        SearchQuery {
            status: Some("LOST".to_owned()),
            ..search_request(20)
        },
        SearchQuery {
            min_total_cents: Some(10),
            max_total_cents: Some(9),
            ..search_request(20)
        },
        SearchQuery {
            placed_from: Some(OffsetDateTime::UNIX_EPOCH + time::Duration::DAY),
            placed_to: Some(OffsetDateTime::UNIX_EPOCH),
            ..search_request(20)
        },
        SearchQuery {
            text: Some("x".repeat(201)),
            ..search_request(20)
        },
    ];
    for (request, cursor) in bad
        .into_iter()
        .map(|r| (r, None))
        .chain([(search_request(20), Some("3f800000_0_not-a-uuid.00"))])
    {
        let error = queries
            .search_orders(&operator(), request.clone(), cursor, None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, QueryError::BadRequest(_)),
            "{request:?} {cursor:?}: {error:?}"
        );
    }
}

#[tokio::test]
async fn a_search_cursor_resumes_exactly_where_the_page_ended_and_only_for_that_search() {
    let last = SearchCursor {
        score: 1.234_567_9,
        placed_at: OffsetDateTime::from_unix_timestamp_nanos(1_790_000_000_123_456_789).unwrap(),
        order_id: Uuid::now_v7(),
    };
    let mut models = MockReadModels::new();
    search_position(&mut models, 3);
    let resumed = Arc::new(Mutex::new(Vec::new()));
    let mut search = MockSearchIndex::new();
    let seen = resumed.clone();
    search.expect_search().returning(move |query| {
        seen.lock().unwrap().push(query.after);
        Ok(SearchPage {
            next: query.after.is_none().then_some(last),
            ..empty_page()
        })
    });
    let queries = search_service(models, search, Duration::ZERO);
    let words = |q: &str| SearchQuery {
        text: Some(q.to_owned()),
        ..search_request(20)
    };

    let first = queries
        .search_orders(&customer("c-1"), words("road"), None, None)
        .await
        .unwrap();
    let cursor = first.value.next_cursor.expect("a next page");
    let second = queries
        .search_orders(&customer("c-1"), words("road"), Some(&cursor), None)
        .await
        .unwrap();

    assert_eq!(second.value.next_cursor, None);
    assert_eq!(*resumed.lock().unwrap(), vec![None, Some(last)]);
    let (key, mac) = cursor.rsplit_once('.').unwrap();
    let flipped = if key.ends_with('0') { '1' } else { '0' };
    let tampered = [
        format!("{}{flipped}.{mac}", &key[..key.len() - 1]),
        format!("{key}.{}", "0".repeat(mac.len())),
        key.to_owned(),
    ];
    for bad in &tampered {
        let error = queries
            .search_orders(&customer("c-1"), words("road"), Some(bad), None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, QueryError::BadRequest(_)),
            "{bad}: {error:?}"
        );
    }
    // Another search, or the same one by another customer, does not accept it.
    for (principal, q) in [(customer("c-1"), "street"), (customer("c-2"), "road")] {
        let error = queries
            .search_orders(&principal, words(q), Some(&cursor), None)
            .await
            .unwrap_err();
        assert!(matches!(error, QueryError::BadRequest(_)), "{error:?}");
    }
    // A page size of its own for the next page is fine.
    queries
        .search_orders(
            &customer("c-1"),
            SearchQuery {
                limit: 5,
                ..words("road")
            },
            Some(&cursor),
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn the_search_position_is_read_before_the_index_is_searched() {
    let mut sequence = Sequence::new();
    let mut models = MockReadModels::new();
    let mut search = MockSearchIndex::new();
    models
        .expect_position()
        .times(1)
        .in_sequence(&mut sequence)
        .returning(|_| Ok(12));
    search
        .expect_search()
        .times(1)
        .in_sequence(&mut sequence)
        .returning(|_| Ok(empty_page()));
    let queries = search_service(models, search, Duration::ZERO);

    let found = queries
        .search_orders(&operator(), search_request(20), None, None)
        .await
        .unwrap();

    assert_eq!(found.position, 12);
}

#[tokio::test]
async fn a_search_waits_for_the_search_projection_and_reports_an_unreachable_index() {
    let mut models = MockReadModels::new();
    search_position(&mut models, 4);
    let mut search = MockSearchIndex::new();
    search
        .expect_search()
        .returning(|_| Err(SearchError::Unavailable("connection refused".to_owned())));
    let queries = search_service(models, search, Duration::from_millis(20));

    let behind = queries
        .search_orders(&operator(), search_request(20), None, Some(5))
        .await
        .unwrap_err();
    let down = queries
        .search_orders(&operator(), search_request(20), None, Some(4))
        .await
        .unwrap_err();

    assert_eq!(
        behind,
        QueryError::NotCaughtUp {
            projection: ProjectionName::Search,
            position: 4,
            wanted: 5
        }
    );
    assert!(matches!(down, QueryError::Unavailable(_)), "{down:?}");
}
