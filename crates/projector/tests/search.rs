//! The search projection through the real worker, on PostgreSQL full-text search and on an
//! Elasticsearch-compatible server (`osmem-server`): one document per order as its stream says,
//! replays that never move a document back, refused documents parked, an unreachable index
//! holding the checkpoint, and a rebuild swapped in inside the checkpoint's window.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use strata_adapters_elastic::testkit::Emulator;
use strata_adapters_elastic::{ElasticSettings, EsSearchIndex};
use strata_adapters_postgres::{PgEventStore, PgProjectionStore, PgReadModels, PgSearchIndex};
use strata_application::projection::{
    Projection, ProjectorError, SearchProjection, dlq_retry, dlq_skip, rebuild,
};
use strata_domain::order::OrderEvent;
use strata_domain::values::TrackingNumber;
use strata_ports::{
    EventStore, Generation, IndexFailure, ProjectionName, ProjectionStore, ReadModels,
    SearchDocument, SearchError, SearchIndex, SearchPage, SearchQuery, StreamId,
};
use support::log::{
    added, append, config, deps, order_stream, placed, spawn_live, spawn_writer, wait_for_head,
    worker,
};
use tokio::sync::watch;
use uuid::Uuid;

fn projection(pool: &PgPool, index: Arc<dyn SearchIndex>) -> Arc<dyn Projection> {
    Arc::new(SearchProjection::new(
        Arc::new(PgEventStore::new(pool.clone())),
        index,
    ))
}

async fn catch_up(pool: &PgPool, projection: &Arc<dyn Projection>) {
    let worker = worker(pool, projection.clone());
    while !worker.run_batch().await.unwrap().caught_up {}
}

async fn checkpoint(pool: &PgPool) -> u64 {
    PgReadModels::new(pool.clone())
        .position(ProjectionName::Search)
        .await
        .unwrap()
}

async fn everything(index: &dyn SearchIndex) -> Vec<SearchDocument> {
    let page = index
        .search(&SearchQuery {
            limit: 100,
            ..SearchQuery::default()
        })
        .await
        .unwrap();
    let mut documents: Vec<SearchDocument> = page.hits.into_iter().map(|h| h.document).collect();
    documents.sort_by_key(|d| d.order_id);
    documents
}

async fn document(index: &dyn SearchIndex, id: Uuid) -> Option<SearchDocument> {
    everything(index)
        .await
        .into_iter()
        .find(|d| d.order_id == id)
}

fn shipped(tracking: &str) -> OrderEvent {
    OrderEvent::OrderShipped {
        tracking_number: TrackingNumber::new(tracking).unwrap(),
    }
}

/// Order `a`: four events (positions 1..=4); order `b`: one (5).
async fn two_orders(pool: &PgPool) -> (StreamId, StreamId) {
    let (a, b) = (order_stream(), order_stream());
    append(
        pool,
        &a,
        &[placed("c-1", "p-1", 2, 100), added("p-2", 1, 50)],
    )
    .await;
    append(pool, &a, &[OrderEvent::OrderConfirmed {}, shipped("TRK-9")]).await;
    append(pool, &b, &[placed("c-2", "p-3", 1, 7)]).await;
    (a, b)
}

/// The document an order's stream says, computed here from the stored events.
async fn expected(
    pool: &PgPool,
    stream: &StreamId,
) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let events = PgEventStore::new(pool.clone())
        .read_stream(stream, 0)
        .await
        .unwrap();
    (
        events.first().unwrap().recorded_at,
        events.last().unwrap().recorded_at,
    )
}

/// What both engines must show for the orders of [`two_orders`].
async fn indexes_each_order_as_its_stream_says(pool: &PgPool, index: Arc<dyn SearchIndex>) {
    let (a, b) = two_orders(pool).await;
    let search = projection(pool, index.clone());

    catch_up(pool, &search).await;

    assert_eq!(checkpoint(pool).await, 5);
    let (placed_at, updated_at) = expected(pool, &a).await;
    assert_eq!(
        document(&*index, a.id()).await.unwrap(),
        SearchDocument {
            order_id: a.id(),
            customer_id: "c-1".to_owned(),
            status: "SHIPPED".to_owned(),
            product_ids: vec!["p-1".to_owned(), "p-2".to_owned()],
            shipping_address: "1 Main Street".to_owned(),
            tracking_number: Some("TRK-9".to_owned()),
            total_cents: 250,
            currency: "EUR".to_owned(),
            item_count: 3,
            placed_at,
            updated_at,
            version: 4,
        }
    );
    assert_eq!(document(&*index, b.id()).await.unwrap().version, 1);
    let by_tracking = index
        .search(&SearchQuery {
            text: Some("TRK-9".to_owned()),
            limit: 10,
            ..SearchQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_tracking.hits.len(), 1);
    assert_eq!(by_tracking.hits[0].document.order_id, a.id());

    // A replay from the start: its first batch ends at order a's version 3, older than what
    // the index holds, which must stay; the whole replay changes nothing.
    let once = everything(&*index).await;
    sqlx::query("UPDATE projection_checkpoints SET position = 0 WHERE projection = 'search'")
        .execute(pool)
        .await
        .unwrap();
    let replay = worker(pool, search.clone());
    let first = replay.run_batch().await.unwrap();
    assert_eq!((first.to, first.parked), (3, 0));
    assert_eq!(document(&*index, a.id()).await.unwrap().version, 4);
    while !replay.run_batch().await.unwrap().caught_up {}
    assert_eq!(everything(&*index).await, once);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn on_postgres_each_order_is_indexed_as_its_stream_says_and_replays_change_nothing(
    pool: PgPool,
) {
    let index = Arc::new(PgSearchIndex::new(pool.clone()));
    indexes_each_order_as_its_stream_says(&pool, index).await;
}

fn emulated(emulator: &Emulator) -> Arc<dyn SearchIndex> {
    Arc::new(
        EsSearchIndex::new(&ElasticSettings::for_cluster(&emulator.url, "strata-test-")).unwrap(),
    )
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn on_elasticsearch_each_order_is_indexed_as_its_stream_says_and_replays_change_nothing(
    pool: PgPool,
) {
    let Some(emulator) = Emulator::start("on_elasticsearch_each_order_is_indexed") else {
        return;
    };
    // Not prepared here: the projection creates the index before its first write.
    indexes_each_order_as_its_stream_says(&pool, emulated(&emulator)).await;
}

/// PostgreSQL's index, with failures injected: documents of chosen orders refused, or the whole
/// engine unreachable, or the rebuild swap failing.
struct Flaky {
    inner: PgSearchIndex,
    refuse: Mutex<HashSet<Uuid>>,
    unavailable: AtomicBool,
    swap_fails: AtomicBool,
}

impl Flaky {
    fn new(pool: &PgPool) -> Self {
        Self {
            inner: PgSearchIndex::new(pool.clone()),
            refuse: Mutex::default(),
            unavailable: AtomicBool::new(false),
            swap_fails: AtomicBool::new(false),
        }
    }

    fn down(&self) -> Result<(), SearchError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(SearchError::Unavailable("injected".to_owned()));
        }
        Ok(())
    }
}

#[async_trait]
impl SearchIndex for Flaky {
    async fn prepare(&self) -> Result<(), SearchError> {
        self.down()?;
        self.inner.prepare().await
    }

    async fn upsert(
        &self,
        generation: Generation,
        documents: &[SearchDocument],
    ) -> Result<Vec<IndexFailure>, SearchError> {
        self.down()?;
        let refuse = self.refuse.lock().unwrap().clone();
        let (refused, kept): (Vec<SearchDocument>, Vec<SearchDocument>) = documents
            .iter()
            .cloned()
            .partition(|d| refuse.contains(&d.order_id));
        let mut failures = self.inner.upsert(generation, &kept).await?;
        failures.extend(refused.into_iter().map(|d| IndexFailure {
            order_id: d.order_id,
            version: d.version,
            reason: "mapper_parsing_exception: injected".to_owned(),
        }));
        Ok(failures)
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, SearchError> {
        self.inner.search(query).await
    }

    async fn start_rebuild(&self) -> Result<(), SearchError> {
        self.inner.start_rebuild().await
    }

    async fn finish_rebuild(&self) -> Result<(), SearchError> {
        if self.swap_fails.load(Ordering::SeqCst) {
            return Err(SearchError::Backend("injected swap failure".to_owned()));
        }
        self.inner.finish_rebuild().await
    }

    async fn abandon_rebuild(&self) -> Result<(), SearchError> {
        self.inner.abandon_rebuild().await
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_refused_document_is_parked_and_the_other_orders_go_on(pool: PgPool) {
    let (a, b) = two_orders(&pool).await;
    let flaky = Arc::new(Flaky::new(&pool));
    flaky.refuse.lock().unwrap().insert(a.id());
    let search = projection(&pool, flaky.clone());

    catch_up(&pool, &search).await;

    assert_eq!(checkpoint(&pool).await, 5);
    assert!(document(&*flaky, a.id()).await.is_none());
    assert!(document(&*flaky, b.id()).await.is_some());
    let store = PgProjectionStore::new(pool.clone());
    let parked = store
        .dead_letters(Some(ProjectionName::Search))
        .await
        .unwrap();
    // The batches were positions 1..=3 and 4..=5: order a's last event of each was refused;
    // the second one waits behind the first.
    let found: Vec<(u64, Option<u64>)> = parked
        .iter()
        .map(|l| (l.event.global_position, l.blocked_by))
        .collect();
    assert_eq!(found, vec![(3, None), (4, Some(3))], "{parked:?}");
    assert!(
        parked[0].error.contains("mapper_parsing_exception"),
        "{parked:?}"
    );
    assert_eq!(parked[0].attempts, 1);

    flaky.refuse.lock().unwrap().clear();
    let outcome = dlq_retry(&deps(&pool), search.as_ref(), 3).await.unwrap();

    assert_eq!((outcome.applied, outcome.parked_again), (2, 0));
    assert_eq!(document(&*flaky, a.id()).await.unwrap().version, 4);
    assert!(
        store
            .dead_letters(Some(ProjectionName::Search))
            .await
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn while_the_index_is_unreachable_the_checkpoint_stays_and_nothing_is_parked(pool: PgPool) {
    let (a, _) = two_orders(&pool).await;
    let flaky = Arc::new(Flaky::new(&pool));
    flaky.unavailable.store(true, Ordering::SeqCst);
    let search = projection(&pool, flaky.clone());
    let worker = worker(&pool, search.clone());

    for _ in 0..3 {
        let error = worker.run_batch().await.unwrap_err();
        assert!(
            matches!(error, ProjectorError::Search(SearchError::Unavailable(_))),
            "{error:?}"
        );
        assert!(error.is_unavailable());
    }

    assert_eq!(checkpoint(&pool).await, 0);
    let store = PgProjectionStore::new(pool.clone());
    assert!(
        store
            .dead_letters(Some(ProjectionName::Search))
            .await
            .unwrap()
            .is_empty()
    );
    flaky.unavailable.store(false, Ordering::SeqCst);
    while !worker.run_batch().await.unwrap().caught_up {}
    assert_eq!(checkpoint(&pool).await, 5);
    assert_eq!(document(&*flaky, a.id()).await.unwrap().version, 4);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_failing_index_swap_swaps_nothing(pool: PgPool) {
    two_orders(&pool).await;
    let flaky = Arc::new(Flaky::new(&pool));
    let search = projection(&pool, flaky.clone());
    catch_up(&pool, &search).await;
    flaky.swap_fails.store(true, Ordering::SeqCst);
    let (_never, stop) = watch::channel(false);

    let error = rebuild(&deps(&pool), search.clone(), config(), &stop, &mut |_| {})
        .await
        .unwrap_err();

    assert!(
        error.to_string().contains("injected swap failure"),
        "{error}"
    );
    // The read models' swap ran in the same window and was rolled back with it: the rebuild's
    // checkpoint is still there, the live one unchanged.
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT projection, position FROM projection_checkpoints \
         WHERE projection LIKE 'search%' ORDER BY projection",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![("search".to_owned(), 5), ("search:rebuild".to_owned(), 5)]
    );
    let leftover: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'strata_rebuild_order_search'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leftover, 1, "the index swap was not rolled back");
}

/// A rebuild while orders keep arriving and the live worker runs: readers never see an empty
/// index or a position going back, and the result is what a fresh projection builds.
async fn a_rebuild_under_load_is_swapped_in_whole(pool: &PgPool, index: Arc<dyn SearchIndex>) {
    let streams: Vec<StreamId> = (0..4).map(|_| order_stream()).collect();
    for stream in &streams {
        append(pool, stream, &[placed("c-1", "p-1", 1, 10)]).await;
    }
    let search = projection(pool, index.clone());
    catch_up(pool, &search).await;
    let (stop_tx, stop) = watch::channel(false);
    let live = spawn_live(pool, search.clone(), &stop);
    let writer = spawn_writer(pool, &streams, 30);
    let watcher = tokio::spawn({
        let pool = pool.clone();
        let index = index.clone();
        let stop = stop.clone();
        async move {
            let mut served_position = 0;
            while !*stop.borrow() {
                let position = checkpoint(&pool).await;
                let found = everything(&*index).await.len();
                assert_eq!(found, 4, "the search index was served incomplete");
                assert!(
                    position >= served_position,
                    "the served position went back from {served_position} to {position}"
                );
                served_position = position;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });

    let (_never, no_stop) = watch::channel(false);
    let swapped = rebuild(&deps(pool), search.clone(), config(), &no_stop, &mut |_| {})
        .await
        .unwrap();
    writer.await.unwrap();
    wait_for_head(pool, ProjectionName::Search).await;
    stop_tx.send(true).unwrap();
    live.await.unwrap();
    watcher.await.unwrap();

    assert!(swapped);
    let documents = everything(&*index).await;
    assert_eq!(documents.len(), 4);
    let items: u64 = documents.iter().map(|d| d.item_count).sum();
    assert_eq!(items, 34);
    for document in &documents {
        let stream = StreamId::new("order", document.order_id);
        let events = PgEventStore::new(pool.clone())
            .read_stream(&stream, 0)
            .await
            .unwrap();
        assert_eq!(document.version, events.last().unwrap().stream_version);
    }
    let rebuild_rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM projection_checkpoints WHERE projection = 'search:rebuild'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(rebuild_rows, 0);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn on_postgres_a_search_rebuild_under_load_is_swapped_in_whole(pool: PgPool) {
    let index = Arc::new(PgSearchIndex::new(pool.clone()));
    a_rebuild_under_load_is_swapped_in_whole(&pool, index).await;
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'strata_%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(leftovers, 0, "the rebuild left schemas behind");
}

/// Every index of the emulator, with its aliases (`GET /_alias`).
async fn aliases_of(emulator: &Emulator) -> serde_json::Value {
    reqwest::get(format!("{}/_alias", emulator.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn on_elasticsearch_a_search_rebuild_under_load_is_swapped_in_whole(pool: PgPool) {
    let Some(emulator) = Emulator::start("on_elasticsearch_a_search_rebuild_under_load") else {
        return;
    };
    let index = emulated(&emulator);
    a_rebuild_under_load_is_swapped_in_whole(&pool, index).await;
    // The old index is gone: one concrete index behind the live alias, none behind the other.
    let aliases = aliases_of(&emulator).await;
    let indices: Vec<&String> = aliases.as_object().unwrap().keys().collect();
    assert_eq!(indices.len(), 1, "{aliases}");
    let only = &aliases[indices[0].as_str()]["aliases"];
    assert!(only.get("strata-test-orders").is_some(), "{aliases}");
    assert!(
        only.get("strata-test-orders-rebuild").is_none(),
        "{aliases}"
    );
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_wiped_index_is_created_again_and_nothing_is_lost(pool: PgPool) {
    let Some(emulator) = Emulator::start("a_wiped_index_is_created_again_and_nothing_is_lost")
    else {
        return;
    };
    let index = emulated(&emulator);
    let search = projection(&pool, index.clone());
    let first = order_stream();
    append(&pool, &first, &[placed("c-1", "p-1", 1, 10)]).await;
    catch_up(&pool, &search).await;
    // The cluster loses everything (a restart of an in-memory node, an operator's mistake).
    let client = reqwest::Client::new();
    let aliases = aliases_of(&emulator).await;
    for name in aliases.as_object().unwrap().keys() {
        let deleted = client
            .delete(format!("{}/{name}", emulator.url))
            .send()
            .await
            .unwrap();
        assert!(deleted.status().is_success());
    }
    let second = order_stream();
    append(&pool, &second, &[placed("c-2", "p-2", 1, 20)]).await;
    let worker = worker(&pool, search.clone());

    let failed = worker.run_batch().await.unwrap_err();
    assert!(failed.is_unavailable(), "{failed:?}");
    assert_eq!(checkpoint(&pool).await, 1);
    while !worker.run_batch().await.unwrap().caught_up {}

    assert!(document(&*index, second.id()).await.is_some());
    let store = PgProjectionStore::new(pool.clone());
    assert!(
        store
            .dead_letters(Some(ProjectionName::Search))
            .await
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn skipping_a_parked_search_event_writes_the_order_again(pool: PgPool) {
    let a = order_stream();
    append(
        &pool,
        &a,
        &[
            placed("c-1", "p-1", 1, 10),
            added("p-2", 1, 5),
            OrderEvent::OrderConfirmed {},
        ],
    )
    .await;
    let flaky = Arc::new(Flaky::new(&pool));
    flaky.refuse.lock().unwrap().insert(a.id());
    let search = projection(&pool, flaky.clone());
    catch_up(&pool, &search).await;
    assert!(document(&*flaky, a.id()).await.is_none());

    flaky.refuse.lock().unwrap().clear();
    dlq_skip(&deps(&pool), search.as_ref(), 3).await.unwrap();

    // Documents are folded from the whole stream: the skipped event is in it.
    let written = document(&*flaky, a.id()).await.unwrap();
    assert_eq!((written.version, written.status.as_str()), (3, "CONFIRMED"));
    let store = PgProjectionStore::new(pool.clone());
    assert!(
        store
            .dead_letters(Some(ProjectionName::Search))
            .await
            .unwrap()
            .is_empty()
    );
}

/// The event store, noting where each `read_stream` started.
struct Reads {
    inner: PgEventStore,
    after: Mutex<Vec<(Uuid, u64)>>,
}

#[async_trait]
impl EventStore for Reads {
    async fn append(
        &self,
        request: strata_ports::AppendRequest,
    ) -> Result<strata_ports::AppendOutcome, strata_ports::EventStoreError> {
        self.inner.append(request).await
    }

    async fn read_stream(
        &self,
        stream_id: &StreamId,
        after_version: u64,
    ) -> Result<Vec<strata_ports::RecordedEvent>, strata_ports::EventStoreError> {
        self.after
            .lock()
            .unwrap()
            .push((stream_id.id(), after_version));
        self.inner.read_stream(stream_id, after_version).await
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<strata_ports::RecordedEvent>, strata_ports::EventStoreError> {
        self.inner.read_all(after_position, limit).await
    }

    async fn head_position(&self) -> Result<u64, strata_ports::EventStoreError> {
        self.inner.head_position().await
    }

    async fn find_idempotency(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<strata_ports::IdempotencyRecord>, strata_ports::EventStoreError> {
        self.inner.find_idempotency(user_id, key).await
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_batch_reads_only_the_events_after_what_earlier_batches_folded(pool: PgPool) {
    let (a, b) = two_orders(&pool).await;
    let reads = Arc::new(Reads {
        inner: PgEventStore::new(pool.clone()),
        after: Mutex::default(),
    });
    let index = Arc::new(PgSearchIndex::new(pool.clone()));
    let search: Arc<dyn Projection> = Arc::new(SearchProjection::new(reads.clone(), index.clone()));

    // Batches of three: order a to version 3, then a's version 4 and order b.
    catch_up(&pool, &search).await;
    // A replay from an older position folds from the start again, then goes on from there.
    sqlx::query("UPDATE projection_checkpoints SET position = 0 WHERE projection = 'search'")
        .execute(&pool)
        .await
        .unwrap();
    catch_up(&pool, &search).await;

    let of = |stream: &StreamId| -> Vec<u64> {
        let reads = reads.after.lock().unwrap();
        reads
            .iter()
            .filter(|(id, _)| *id == stream.id())
            .map(|(_, after)| *after)
            .collect()
    };
    // Order b was at version 1 all along: the replay did not read it again.
    assert_eq!((of(&a), of(&b)), (vec![0, 3, 0, 3], vec![0]));
    assert_eq!(document(&*index, a.id()).await.unwrap().version, 4);
}

/// Written around the domain (which refuses it), an order whose lines add up beyond 64 bits is
/// parked instead of indexed with a saturated total; the other orders are indexed.
#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn an_order_whose_total_cannot_be_represented_is_parked_not_indexed(pool: PgPool) {
    let (bad, good) = (order_stream(), order_stream());
    append(&pool, &bad, &[support::log::placed_beyond_64_bits("c-1")]).await;
    append(&pool, &good, &[placed("c-2", "p-3", 1, 7)]).await;
    let index: Arc<dyn SearchIndex> = Arc::new(PgSearchIndex::new(pool.clone()));
    let search = projection(&pool, index.clone());

    catch_up(&pool, &search).await;

    assert!(document(&*index, bad.id()).await.is_none());
    assert_eq!(document(&*index, good.id()).await.unwrap().total_cents, 7);
    let parked = PgProjectionStore::new(pool.clone())
        .dead_letters(Some(ProjectionName::Search))
        .await
        .unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(
        parked[0].error.contains("does not fit in 64 bits"),
        "{parked:?}"
    );
}
