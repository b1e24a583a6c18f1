//! What the adapter must do against a real engine (the emulator, or a cluster), one function
//! per behaviour. Nothing here looks at scores, nor at the order of equally relevant hits
//! other than the recency tie-break when no words are given.

use std::collections::{BTreeMap, BTreeSet};

use strata_ports::search_suite::document;
use strata_ports::{Generation, SearchDocument, SearchIndex, SearchQuery};
use time::Duration;
use uuid::Uuid;

use super::Target;

fn query() -> SearchQuery {
    SearchQuery {
        limit: 100,
        ..SearchQuery::default()
    }
}

async fn ids(index: &dyn SearchIndex, query: &SearchQuery) -> Vec<Uuid> {
    let page = index.search(query).await.unwrap();
    page.hits.iter().map(|h| h.document.order_id).collect()
}

fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids
}

async fn write(index: &dyn SearchIndex, generation: Generation, documents: &[SearchDocument]) {
    let failures = index.upsert(generation, documents).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
}

pub async fn the_live_index_has_an_explicit_strict_mapping(target: &Target) {
    let index = target.index().await;
    index.prepare().await.unwrap(); // idempotent

    let (status, aliases) = target.get(&format!("/_alias/{}", index.live_alias())).await;
    assert_eq!(status, 200);
    let behind: Vec<&String> = aliases.as_object().unwrap().keys().collect();
    assert_eq!(behind.len(), 1, "{aliases}");
    let suffix = behind[0]
        .strip_prefix(&format!("{}orders-", target.prefix))
        .unwrap();
    assert!(Uuid::try_parse(suffix).is_ok(), "{suffix}");

    let (status, mapping) = target
        .get(&format!("/{}/_mapping", index.live_alias()))
        .await;
    assert_eq!(status, 200);
    let mappings = &mapping[behind[0].as_str()]["mappings"];
    assert_eq!(mappings["dynamic"], "strict");
    let types: BTreeMap<&str, &str> = mappings["properties"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, field)| (name.as_str(), field["type"].as_str().unwrap()))
        .collect();
    for (field, expected) in [
        ("order_id", "keyword"),
        ("customer_id", "keyword"),
        ("status", "keyword"),
        ("currency", "keyword"),
        ("product_ids", "text"),
        ("shipping_address", "text"),
        ("tracking_number", "text"),
        ("total_cents", "long"),
        ("item_count", "long"),
        ("placed_at", "date"),
        ("updated_at", "date"),
    ] {
        assert_eq!(types.get(field), Some(&expected), "{field}: {types:?}");
    }
}

pub async fn a_finished_rebuild_replaces_the_live_index_and_deletes_the_old_one(target: &Target) {
    let index = target.index().await;
    let before_rebuild = target.indices().await;
    assert_eq!(before_rebuild.len(), 1);
    let old = document("c-rebuild", "PENDING", &["p-1"], "1 Old Road", 100, 0);
    write(&index, Generation::Live, std::slice::from_ref(&old)).await;

    index.start_rebuild().await.unwrap();
    let new = document("c-rebuild", "PENDING", &["p-2"], "2 New Road", 100, 1);
    write(&index, Generation::Rebuild, std::slice::from_ref(&new)).await;
    assert_eq!(
        ids(&index, &query()).await,
        [old.order_id],
        "readers see the live index"
    );

    index.finish_rebuild().await.unwrap();

    assert_eq!(ids(&index, &query()).await, [new.order_id]);
    let after = target.indices().await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before_rebuild, "the old index is deleted");
    let (status, _) = target.get(&format!("/{}", before_rebuild[0])).await;
    assert_eq!(status, 404);
    let (status, _) = target
        .get(&format!("/_alias/{}", index.rebuild_alias()))
        .await;
    assert_eq!(status, 404, "the rebuild alias is gone");
    // Writes to the live generation reach the new index.
    let later = document("c-rebuild", "PENDING", &["p-3"], "3 Later Road", 100, 2);
    write(&index, Generation::Live, std::slice::from_ref(&later)).await;
    assert_eq!(
        sorted(ids(&index, &query()).await),
        sorted(vec![new.order_id, later.order_id])
    );
}

pub async fn starting_a_rebuild_again_drops_the_unfinished_one(target: &Target) {
    let index = target.index().await;
    index.start_rebuild().await.unwrap();
    let abandoned = document("c-again", "PENDING", &["p-1"], "1 Main St", 100, 0);
    write(
        &index,
        Generation::Rebuild,
        std::slice::from_ref(&abandoned),
    )
    .await;
    assert_eq!(target.indices().await.len(), 2);

    index.start_rebuild().await.unwrap();

    assert_eq!(
        target.indices().await.len(),
        2,
        "live and one rebuild index"
    );
    index.finish_rebuild().await.unwrap();
    assert!(ids(&index, &query()).await.is_empty());
}

pub async fn older_versions_never_overwrite_newer_ones_and_count_as_written(target: &Target) {
    let index = target.index().await;
    let v1 = document("c-versions", "PENDING", &["p-1"], "1 Main St", 100, 0);
    let version = |v: u64, status: &str| SearchDocument {
        version: v,
        status: status.to_owned(),
        ..v1.clone()
    };
    write(&index, Generation::Live, &[version(2, "CONFIRMED")]).await;

    // A replay of an older version: refused by the engine (409), reported as written.
    write(&index, Generation::Live, std::slice::from_ref(&v1)).await;
    let page = index.search(&query()).await.unwrap();
    assert_eq!(page.hits.len(), 1);
    assert_eq!(page.hits[0].document, version(2, "CONFIRMED"));

    // Out of order within one batch: the newest stays.
    write(
        &index,
        Generation::Live,
        &[version(4, "DELIVERED"), version(3, "SHIPPED")],
    )
    .await;
    let page = index.search(&query()).await.unwrap();
    assert_eq!(page.hits[0].document, version(4, "DELIVERED"));
    // The same version again is a replay too.
    write(&index, Generation::Live, &[version(4, "DELIVERED")]).await;
    let (_, stored) = target
        .get(&format!("/{}/_doc/{}", index.live_alias(), v1.order_id))
        .await;
    assert_eq!(stored["_version"], 4);
}

pub async fn every_filter_and_the_words_narrow_the_matches(target: &Target) {
    let index = target.index().await;
    let c = "c-filters";
    let lamp = SearchDocument {
        tracking_number: Some("TRK-7731".to_owned()),
        ..document(c, "SHIPPED", &["lamp-7"], "12 Harbour Street Oslo", 500, 10)
    };
    let desk = document(c, "PENDING", &["desk-3"], "4 Mill Lane Bergen", 50_000, 20);
    let elsewhere = document(
        "c-other",
        "PENDING",
        &["lamp-7"],
        "9 Harbour Street Oslo",
        500,
        30,
    );
    write(
        &index,
        Generation::Live,
        &[lamp.clone(), desk.clone(), elsewhere.clone()],
    )
    .await;
    let t0 = lamp.placed_at - Duration::minutes(10);
    let mine = || SearchQuery {
        customer_id: Some(c.to_owned()),
        ..query()
    };
    let text = |words: &str| SearchQuery {
        text: Some(words.to_owned()),
        ..mine()
    };

    assert_eq!(
        sorted(ids(&index, &mine()).await),
        sorted(vec![lamp.order_id, desk.order_id]),
        "customer"
    );
    let status = SearchQuery {
        status: Some("SHIPPED".to_owned()),
        ..mine()
    };
    assert_eq!(ids(&index, &status).await, [lamp.order_id], "status");
    let min = SearchQuery {
        min_total_cents: Some(501),
        ..mine()
    };
    assert_eq!(ids(&index, &min).await, [desk.order_id], "min total");
    let max = SearchQuery {
        max_total_cents: Some(500),
        ..mine()
    };
    assert_eq!(
        ids(&index, &max).await,
        [lamp.order_id],
        "max total, inclusive"
    );
    let from = SearchQuery {
        placed_from: Some(t0 + Duration::minutes(20)),
        ..mine()
    };
    assert_eq!(
        ids(&index, &from).await,
        [desk.order_id],
        "placed from, inclusive"
    );
    let to = SearchQuery {
        placed_to: Some(t0 + Duration::minutes(10)),
        ..mine()
    };
    assert_eq!(
        ids(&index, &to).await,
        [lamp.order_id],
        "placed to, inclusive"
    );

    assert_eq!(
        ids(&index, &text("lamp-7")).await,
        [lamp.order_id],
        "product id"
    );
    assert_eq!(
        ids(&index, &text("harbour oslo")).await,
        [lamp.order_id],
        "address"
    );
    assert_eq!(
        ids(&index, &text("TRK-7731")).await,
        [lamp.order_id],
        "tracking number"
    );
    let order_id = desk.order_id.to_string();
    assert_eq!(
        ids(&index, &text(&order_id)).await,
        [desk.order_id],
        "order id"
    );
    assert!(
        ids(&index, &text("harbour bergen")).await.is_empty(),
        "every word"
    );
    assert_eq!(
        sorted(
            ids(
                &index,
                &SearchQuery {
                    text: Some("harbour".to_owned()),
                    ..query()
                }
            )
            .await
        ),
        sorted(vec![lamp.order_id, elsewhere.order_id]),
        "words without a customer"
    );
}

pub async fn facets_count_statuses_for_every_criterion_but_status(target: &Target) {
    let index = target.index().await;
    let c = "c-facets";
    write(
        &index,
        Generation::Live,
        &[
            document(c, "PENDING", &["lamp-1"], "1 Main St", 100, 0),
            document(c, "PENDING", &["lamp-1"], "1 Main St", 100, 1),
            document(c, "CANCELLED", &["lamp-1"], "1 Main St", 100, 2),
            document(c, "SHIPPED", &["desk-1"], "1 Main St", 100, 3),
            document("c-other", "PENDING", &["lamp-1"], "1 Main St", 100, 4),
        ],
    )
    .await;

    let page = index
        .search(&SearchQuery {
            text: Some("lamp".to_owned()),
            customer_id: Some(c.to_owned()),
            status: Some("CANCELLED".to_owned()),
            limit: 1,
            ..SearchQuery::default()
        })
        .await
        .unwrap();

    assert_eq!(page.hits.len(), 1);
    assert_eq!(page.hits[0].document.status, "CANCELLED");
    let expected = BTreeMap::from([("CANCELLED".to_owned(), 1), ("PENDING".to_owned(), 2)]);
    assert_eq!(page.status_counts, expected);
}

pub async fn cursors_walk_every_match_once_newest_first_without_words(target: &Target) {
    let index = target.index().await;
    let c = "c-pages";
    let documents: Vec<SearchDocument> = (0..5)
        .map(|minutes| document(c, "PENDING", &["lamp-1"], "1 Main St", 100, minutes))
        .collect();
    write(&index, Generation::Live, &documents).await;
    let newest_first: Vec<Uuid> = documents.iter().rev().map(|d| d.order_id).collect();

    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = index
            .search(&SearchQuery {
                limit: 2,
                after,
                ..query()
            })
            .await
            .unwrap();
        pages.push(
            page.hits
                .iter()
                .map(|h| h.document.order_id)
                .collect::<Vec<_>>(),
        );
        after = page.next;
        if after.is_none() || pages.len() > 5 {
            break;
        }
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(pages.concat(), newest_first);
}

/// With words, relevance decides the order: only check that every match comes once. Run
/// against real clusters only: `osmem-server` 0.1.6 prints scores rounded to 7 digits but
/// compares `search_after` with the unrounded ones, so a cursor on a scored page finds nothing.
pub async fn cursors_walk_every_match_once_with_words(target: &Target) {
    let index = target.index().await;
    let c = "c-pages-words";
    let documents: Vec<SearchDocument> = (0..5)
        .map(|minutes| document(c, "PENDING", &["lamp-1"], "1 Main St", 100, minutes))
        .collect();
    write(&index, Generation::Live, &documents).await;
    let newest_first: Vec<Uuid> = documents.iter().rev().map(|d| d.order_id).collect();

    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = index
            .search(&SearchQuery {
                text: Some("lamp".to_owned()),
                limit: 2,
                after,
                ..query()
            })
            .await
            .unwrap();
        seen.extend(page.hits.iter().map(|h| h.document.order_id));
        after = page.next;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>(),
        newest_first.iter().collect::<BTreeSet<_>>()
    );
}

pub async fn a_full_last_page_is_followed_by_an_empty_one(target: &Target) {
    let index = target.index().await;
    let documents: Vec<SearchDocument> = (0..2)
        .map(|minutes| document("c-full", "PENDING", &["p-1"], "1 Main St", 100, minutes))
        .collect();
    write(&index, Generation::Live, &documents).await;

    let first = index
        .search(&SearchQuery {
            limit: 2,
            ..query()
        })
        .await
        .unwrap();
    assert!(first.next.is_some(), "a full page has a cursor");
    let second = index
        .search(&SearchQuery {
            limit: 2,
            after: first.next,
            ..query()
        })
        .await
        .unwrap();
    assert!(second.hits.is_empty());
    assert_eq!(second.next, None);
    assert_eq!(
        second.status_counts.get("PENDING"),
        Some(&2),
        "facets ignore the cursor"
    );
}

/// The behaviours both adapters share (`strata_ports::search_suite`).
pub async fn the_shared_search_suite_passes(target: &Target) {
    let index = target.index().await;
    strata_ports::search_suite::run(&index).await;
}
