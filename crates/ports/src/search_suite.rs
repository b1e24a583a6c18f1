//! The behaviours every [`SearchIndex`] adapter must show, run by each adapter's own tests
//! against a real engine, so that the adapters cannot drift apart. Each function takes an index
//! that is prepared and empty. Nothing here looks at relevance scores: engines differ.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::projection::Generation;
use crate::search::{SearchDocument, SearchError, SearchIndex, SearchQuery};

/// A fixed instant, so documents have known ages.
fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap()
}

/// A document; `minutes` after `t0` it was placed.
pub fn document(
    customer: &str,
    status: &str,
    products: &[&str],
    address: &str,
    total_cents: i64,
    minutes: i64,
) -> SearchDocument {
    SearchDocument {
        order_id: Uuid::now_v7(),
        customer_id: customer.to_owned(),
        status: status.to_owned(),
        product_ids: products.iter().map(|p| (*p).to_owned()).collect(),
        shipping_address: address.to_owned(),
        tracking_number: None,
        total_cents,
        currency: "EUR".to_owned(),
        item_count: products.len() as u64,
        placed_at: t0() + Duration::minutes(minutes),
        updated_at: t0() + Duration::minutes(minutes),
        version: 1,
    }
}

fn query() -> SearchQuery {
    SearchQuery {
        limit: 100,
        ..SearchQuery::default()
    }
}

async fn ids(index: &dyn SearchIndex, query: &SearchQuery) -> Vec<Uuid> {
    index
        .search(query)
        .await
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.document.order_id)
        .collect()
}

async fn write(index: &dyn SearchIndex, documents: &[SearchDocument]) {
    let failures = index.upsert(Generation::Live, documents).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
}

/// Every behaviour, each on the same index (they clean up by using distinct customers).
pub async fn run(index: &dyn SearchIndex) {
    newer_versions_win_whatever_the_order_of_writes(index).await;
    filters_narrow_the_matches(index).await;
    words_match_products_and_addresses(index).await;
    without_words_the_newest_come_first_and_pages_cover_everything(index).await;
    facets_count_statuses_without_the_status_filter(index).await;
    an_abandoned_rebuild_leaves_the_live_generation_alone(index).await;
    a_rebuild_is_invisible_until_it_is_swapped_in(index).await;
    searches_with_nul_or_oversized_values_are_refused_as_invalid_input(index).await;
}

/// Words or filters with a NUL, or longer than [`crate::limits`] allows, are refused as invalid
/// input before the engine is asked (its refusal would be `Backend` or `Protocol`).
pub async fn searches_with_nul_or_oversized_values_are_refused_as_invalid_input(
    index: &dyn SearchIndex,
) {
    let long = "w".repeat(crate::limits::MAX_SEARCH_TEXT_BYTES + 1);
    let cases = [
        SearchQuery {
            text: Some("a\0b".to_owned()),
            ..query()
        },
        SearchQuery {
            text: Some(long),
            ..query()
        },
        SearchQuery {
            customer_id: Some("\0".to_owned()),
            ..query()
        },
        SearchQuery {
            status: Some("PENDING\0".to_owned()),
            ..query()
        },
    ];
    for case in cases {
        let found = index.search(&case).await;
        assert!(
            matches!(found, Err(SearchError::InvalidInput(_))),
            "{:?}: {found:?}",
            case.text.as_deref().map(|t| t.get(..8))
        );
    }
}

/// A replayed or late older version never overwrites a newer one, and counts as written.
pub async fn newer_versions_win_whatever_the_order_of_writes(index: &dyn SearchIndex) {
    let v1 = document("suite-versions", "PENDING", &["p-1"], "1 Old Road", 100, 0);
    let v3 = SearchDocument {
        status: "SHIPPED".to_owned(),
        tracking_number: Some("TRK-42".to_owned()),
        version: 3,
        ..v1.clone()
    };
    let v2 = SearchDocument {
        status: "CONFIRMED".to_owned(),
        version: 2,
        ..v1.clone()
    };
    write(index, std::slice::from_ref(&v1)).await;
    write(index, std::slice::from_ref(&v3)).await;
    write(index, &[v2, v1]).await; // late and replayed

    let page = index
        .search(&SearchQuery {
            customer_id: Some("suite-versions".to_owned()),
            ..query()
        })
        .await
        .unwrap();
    assert_eq!(page.hits.len(), 1);
    assert_eq!(page.hits[0].document, v3);
}

/// Customer, status, total and placement-time filters each narrow the result.
pub async fn filters_narrow_the_matches(index: &dyn SearchIndex) {
    let c = "suite-filters";
    let cheap = document(c, "PENDING", &["p-1"], "1 Main St", 500, 10);
    let dear = document(c, "DELIVERED", &["p-2"], "2 Main St", 50_000, 20);
    let other = document(
        "suite-someone-else",
        "PENDING",
        &["p-1"],
        "3 Main St",
        500,
        30,
    );
    write(index, &[cheap.clone(), dear.clone(), other.clone()]).await;
    let mine = || SearchQuery {
        customer_id: Some(c.to_owned()),
        ..query()
    };

    let mut both = ids(index, &mine()).await;
    both.sort();
    let mut expected = vec![cheap.order_id, dear.order_id];
    expected.sort();
    assert_eq!(both, expected, "the customer filter");
    let status = SearchQuery {
        status: Some("DELIVERED".to_owned()),
        ..mine()
    };
    assert_eq!(
        ids(index, &status).await,
        [dear.order_id],
        "the status filter"
    );
    let min = SearchQuery {
        min_total_cents: Some(501),
        ..mine()
    };
    assert_eq!(ids(index, &min).await, [dear.order_id], "the minimum total");
    let max = SearchQuery {
        max_total_cents: Some(500),
        ..mine()
    };
    assert_eq!(
        ids(index, &max).await,
        [cheap.order_id],
        "the maximum total (inclusive)"
    );
    let from = SearchQuery {
        placed_from: Some(t0() + Duration::minutes(15)),
        ..mine()
    };
    assert_eq!(ids(index, &from).await, [dear.order_id], "placed from");
    let to = SearchQuery {
        placed_to: Some(t0() + Duration::minutes(15)),
        ..mine()
    };
    assert_eq!(ids(index, &to).await, [cheap.order_id], "placed to");
}

/// Words find orders by product id and by words of the shipping address.
pub async fn words_match_products_and_addresses(index: &dyn SearchIndex) {
    let c = "suite-words";
    let lamp = document(c, "PENDING", &["lamp-7"], "12 Harbour Street Oslo", 100, 0);
    let desk = document(c, "PENDING", &["desk-3"], "4 Mill Lane Bergen", 100, 1);
    write(index, &[lamp.clone(), desk.clone()]).await;
    let words = |text: &str| SearchQuery {
        text: Some(text.to_owned()),
        customer_id: Some(c.to_owned()),
        ..query()
    };

    assert_eq!(ids(index, &words("lamp-7")).await, [lamp.order_id]);
    assert_eq!(ids(index, &words("harbour")).await, [lamp.order_id]);
    assert_eq!(ids(index, &words("Bergen")).await, [desk.order_id]);
    assert!(ids(index, &words("nowhere")).await.is_empty());
}

/// Without words, matches come newest first; cursors walk every match exactly once.
pub async fn without_words_the_newest_come_first_and_pages_cover_everything(
    index: &dyn SearchIndex,
) {
    let c = "suite-pages";
    let documents: Vec<SearchDocument> = (0..5)
        .map(|minutes| document(c, "PENDING", &["p-1"], "1 Main St", 100, minutes))
        .collect();
    write(index, &documents).await;
    let newest_first: Vec<Uuid> = documents.iter().rev().map(|d| d.order_id).collect();

    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = index
            .search(&SearchQuery {
                customer_id: Some(c.to_owned()),
                limit: 2,
                after,
                ..query()
            })
            .await
            .unwrap();
        assert!(page.hits.len() <= 2);
        seen.extend(page.hits.iter().map(|h| h.document.order_id));
        after = page.next;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(seen, newest_first);
}

/// Facets count every status of the matches, whatever the status filter says.
pub async fn facets_count_statuses_without_the_status_filter(index: &dyn SearchIndex) {
    let c = "suite-facets";
    write(
        index,
        &[
            document(c, "PENDING", &["p-1"], "1 Main St", 100, 0),
            document(c, "PENDING", &["p-1"], "1 Main St", 100, 1),
            document(c, "CANCELLED", &["p-1"], "1 Main St", 100, 2),
        ],
    )
    .await;

    let page = index
        .search(&SearchQuery {
            customer_id: Some(c.to_owned()),
            status: Some("CANCELLED".to_owned()),
            ..query()
        })
        .await
        .unwrap();

    assert_eq!(page.hits.len(), 1);
    let expected = BTreeMap::from([("CANCELLED".to_owned(), 1), ("PENDING".to_owned(), 2)]);
    assert_eq!(page.status_counts, expected);
}

/// Abandoning a rebuild drops only what it wrote; abandoning none is harmless.
pub async fn an_abandoned_rebuild_leaves_the_live_generation_alone(index: &dyn SearchIndex) {
    let c = "suite-abandon";
    let live = document(c, "PENDING", &["p-1"], "1 Main St", 100, 0);
    write(index, std::slice::from_ref(&live)).await;
    index.abandon_rebuild().await.unwrap();
    index.start_rebuild().await.unwrap();
    let unfinished = SearchDocument {
        status: "CANCELLED".to_owned(),
        version: 2,
        ..live.clone()
    };
    let failures = index
        .upsert(Generation::Rebuild, std::slice::from_ref(&unfinished))
        .await
        .unwrap();
    assert!(failures.is_empty(), "{failures:?}");

    index.abandon_rebuild().await.unwrap();

    let mine = SearchQuery {
        customer_id: Some(c.to_owned()),
        ..query()
    };
    let page = index.search(&mine).await.unwrap();
    assert_eq!(page.hits.len(), 1);
    assert_eq!(page.hits[0].document, live);
    // Nothing is left to swap in.
    assert!(index.finish_rebuild().await.is_err());
    assert_eq!(index.search(&mine).await.unwrap().hits[0].document, live);
}

/// A rebuild fills a generation readers do not see until it is swapped in.
pub async fn a_rebuild_is_invisible_until_it_is_swapped_in(index: &dyn SearchIndex) {
    let c = "suite-rebuild";
    let old = document(c, "PENDING", &["p-1"], "1 Main St", 100, 0);
    write(index, std::slice::from_ref(&old)).await;
    index.start_rebuild().await.unwrap();
    let rebuilt = SearchDocument {
        status: "CONFIRMED".to_owned(),
        version: 2,
        ..old.clone()
    };
    let failures = index
        .upsert(Generation::Rebuild, std::slice::from_ref(&rebuilt))
        .await
        .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    let mine = SearchQuery {
        customer_id: Some(c.to_owned()),
        ..query()
    };
    let before = index.search(&mine).await.unwrap();
    assert_eq!(before.hits[0].document.status, "PENDING");

    index.finish_rebuild().await.unwrap();

    let after = index.search(&mine).await.unwrap();
    assert_eq!(after.hits.len(), 1);
    assert_eq!(after.hits[0].document, rebuilt);
    // Only what the rebuild wrote is live now: the other suites' documents are gone.
    let everything = index.search(&query()).await.unwrap();
    assert_eq!(everything.hits.len(), 1);
}
