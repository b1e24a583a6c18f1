//! The projection worker against a real PostgreSQL (a fresh database per test): batches commit
//! with their checkpoint or not at all, catch-up resumes from the checkpoint, replays change
//! nothing, failing events are retried then parked with their stream's later events behind
//! them, ordering holds under a held-open writer, and a rebuild swaps in identical tables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use strata_adapters_postgres::testkit::wait_for_lock_waiters;
use strata_adapters_postgres::{PgProjectionStore, PgReadModels, append_in};
use strata_application::projection::{
    AccountsProjection, HandlerError, OrdersProjection, Projection, ProjectionWorker,
    ProjectorConfig, dlq_retry, dlq_skip, rebuild,
};
use strata_domain::account::AccountEvent;
use strata_domain::order::OrderEvent;
use strata_domain::values::{Amount, Currency, CustomerId, Reference};
use strata_ports::{
    Generation, ProjectionBatch, ProjectionName, ProjectionStore, ReadModelError, ReadModels,
    RecordedEvent, StreamId,
};
use support::log::{
    added, append, append_request, config, deps, order_stream, placed, spawn_live, spawn_writer,
    wait_for_head, worker,
};
use tokio::sync::watch;
use uuid::Uuid;

/// Every order summary as (id, status, total, item count, version), by id.
async fn summaries(pool: &PgPool) -> Vec<(Uuid, String, i64, i64, i64)> {
    sqlx::query_as(
        "SELECT order_id, status, total_cents, item_count, version FROM order_summaries \
         ORDER BY order_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Every row of every read-model table, as JSON text, in a stable order.
async fn read_model_dump(pool: &PgPool) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, order) in [
        ("order_summaries", "order_id"),
        ("customer_stats", "customer_id"),
        ("account_summaries", "account_id"),
        ("account_transactions", "account_id, version"),
    ] {
        let sql = format!("SELECT row_to_json(t)::text FROM {table} t ORDER BY {order}");
        let found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .unwrap();
        rows.extend(found.into_iter().map(|r| format!("{table}: {r}")));
    }
    rows
}

/// Rebuilds `orders` (true when the rebuilt tables were swapped in).
async fn rebuild_orders(pool: &PgPool, stop: &watch::Receiver<bool>) -> bool {
    rebuild(
        &deps(pool),
        Arc::new(OrdersProjection),
        config(),
        stop,
        &mut |_| {},
    )
    .await
    .unwrap()
}

async fn checkpoint(pool: &PgPool, projection: ProjectionName) -> u64 {
    PgReadModels::new(pool.clone())
        .position(projection)
        .await
        .unwrap()
}

/// A projection that fails (or hangs) on chosen positions and otherwise is `orders`.
#[derive(Debug, Default)]
struct Faulty {
    reject: Mutex<HashSet<u64>>,
    unavailable: Mutex<HashSet<u64>>,
    unavailable_once: Mutex<HashSet<u64>>,
    hang: Mutex<HashSet<u64>>,
}

#[async_trait]
impl Projection for Faulty {
    fn name(&self) -> ProjectionName {
        ProjectionName::Orders
    }

    fn handles(&self, category: &str) -> bool {
        OrdersProjection.handles(category)
    }

    async fn skip(
        &self,
        batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        OrdersProjection.skip(batch, event).await
    }

    async fn apply(
        &self,
        batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        // Apply first, then fail: the failure must undo what this event already wrote.
        OrdersProjection.apply(batch, event).await?;
        let position = event.global_position;
        if self.reject.lock().unwrap().contains(&position) {
            return Err(HandlerError::Rejected(format!("injected at {position}")));
        }
        if self.unavailable_once.lock().unwrap().remove(&position)
            || self.unavailable.lock().unwrap().contains(&position)
        {
            return Err(ReadModelError::Unavailable(format!("injected at {position}")).into());
        }
        if self.hang.lock().unwrap().contains(&position) {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_restarted_worker_resumes_from_its_checkpoint(pool: PgPool) {
    let (a, b) = (order_stream(), order_stream());
    append(&pool, &a, &[placed("c-1", "p-1", 1, 100)]).await;
    append(
        &pool,
        &b,
        &[placed("c-1", "p-2", 2, 50), added("p-3", 1, 10)],
    )
    .await;
    let first = worker(&pool, Arc::new(OrdersProjection));
    first.run_batch().await.unwrap();
    assert_eq!(checkpoint(&pool, ProjectionName::Orders).await, 3);

    append(
        &pool,
        &a,
        &[added("p-4", 3, 5), OrderEvent::OrderConfirmed {}],
    )
    .await;
    let restarted = worker(&pool, Arc::new(OrdersProjection));
    let report = restarted.run_batch().await.unwrap();

    assert_eq!((report.from, report.to, report.events), (3, 5, 2));
    let rows = summaries(&pool).await;
    let mut expected = vec![
        (a.id(), "CONFIRMED".to_owned(), 115, 4, 3),
        (b.id(), "PENDING".to_owned(), 110, 3, 2),
    ];
    expected.sort();
    assert_eq!(rows, expected);
    let stats: (i64, i64, i64) = sqlx::query_as(
        "SELECT order_count, pending, confirmed FROM customer_stats WHERE customer_id = 'c-1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stats, (2, 1, 1));
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_batch_that_fails_half_way_leaves_nothing_behind(pool: PgPool) {
    let stream = order_stream();
    append(
        &pool,
        &stream,
        &[
            placed("c-1", "p-1", 1, 100),
            added("p-2", 1, 10),
            added("p-3", 1, 1),
        ],
    )
    .await;
    let faulty = Arc::new(Faulty::default());
    faulty.unavailable.lock().unwrap().insert(2);

    let failed = worker(&pool, faulty.clone()).run_batch().await;

    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        summaries(&pool).await,
        vec![],
        "event 1 of the batch stayed applied"
    );
    assert_eq!(checkpoint(&pool, ProjectionName::Orders).await, 0);
    let stats: i64 = sqlx::query_scalar("SELECT count(*) FROM customer_stats")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stats, 0);

    faulty.unavailable.lock().unwrap().clear();
    worker(&pool, faulty).run_batch().await.unwrap();
    assert_eq!(
        summaries(&pool).await,
        vec![(stream.id(), "PENDING".to_owned(), 111, 3, 3)]
    );
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_worker_killed_mid_batch_leaves_nothing_behind(pool: PgPool) {
    let stream = order_stream();
    append(
        &pool,
        &stream,
        &[
            placed("c-1", "p-1", 1, 100),
            added("p-2", 1, 10),
            added("p-3", 1, 1),
        ],
    )
    .await;
    let faulty = Arc::new(Faulty::default());
    faulty.hang.lock().unwrap().insert(2);
    let task = tokio::spawn({
        let worker = worker(&pool, faulty.clone());
        async move { worker.run_batch().await }
    });
    // Wait until the batch has written event 2 (it hangs right after), then kill it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let writing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state = 'idle in transaction'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if writing > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batch never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    assert_eq!(summaries(&pool).await, vec![]);
    assert_eq!(checkpoint(&pool, ProjectionName::Orders).await, 0);
    faulty.hang.lock().unwrap().clear();
    worker(&pool, faulty).run_batch().await.unwrap();
    assert_eq!(summaries(&pool).await.len(), 1);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn replaying_a_range_twice_changes_nothing(pool: PgPool) {
    let (a, b) = (order_stream(), order_stream());
    let account = StreamId::new("account", Uuid::now_v7());
    append(
        &pool,
        &a,
        &[placed("c-1", "p-1", 1, 100), OrderEvent::OrderConfirmed {}],
    )
    .await;
    append(
        &pool,
        &a,
        &[
            OrderEvent::OrderShipped {
                tracking_number: strata_domain::values::TrackingNumber::new("T-1").unwrap(),
            },
            OrderEvent::OrderDelivered {},
        ],
    )
    .await;
    append(&pool, &b, &[placed("c-1", "p-2", 2, 50)]).await;
    append(
        &pool,
        &account,
        &[
            AccountEvent::AccountOpened {
                owner_customer_id: CustomerId::new("c-1").unwrap(),
                currency: Currency::new("EUR").unwrap(),
            },
            AccountEvent::MoneyDeposited {
                amount: Amount::new(500).unwrap(),
                reference: Reference::new("r-1").unwrap(),
            },
            AccountEvent::MoneyWithdrawn {
                amount: Amount::new(200).unwrap(),
                reference: Reference::new("r-2").unwrap(),
            },
        ],
    )
    .await;
    for projection in [
        Arc::new(OrdersProjection) as Arc<dyn Projection>,
        Arc::new(AccountsProjection),
    ] {
        let worker = worker(&pool, projection);
        while !worker.run_batch().await.unwrap().caught_up {}
    }
    let once = read_model_dump(&pool).await;
    let figures: (serde_json::Value, i64) = sqlx::query_as(
        "SELECT (SELECT lifetime_value FROM customer_stats), \
                (SELECT balance_cents FROM account_summaries)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(figures, (serde_json::json!({ "EUR": 100 }), 300));

    // Move both checkpoints back to 2 and replay positions 3.. again.
    sqlx::query("UPDATE projection_checkpoints SET position = 2")
        .execute(&pool)
        .await
        .unwrap();
    for projection in [
        Arc::new(OrdersProjection) as Arc<dyn Projection>,
        Arc::new(AccountsProjection),
    ] {
        let worker = worker(&pool, projection);
        while !worker.run_batch().await.unwrap().caught_up {}
    }

    assert_eq!(read_model_dump(&pool).await, once);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_failing_event_is_parked_and_its_stream_waits_while_others_go_on(pool: PgPool) {
    let (bad, good) = (order_stream(), order_stream());
    append(&pool, &bad, &[placed("c-1", "p-1", 1, 100)]).await; // 1
    let failing = append(&pool, &bad, &[added("p-2", 1, 10)]).await; // 2
    append(&pool, &good, &[placed("c-2", "p-1", 1, 7)]).await; // 3
    append(&pool, &bad, &[added("p-3", 1, 1)]).await; // 4
    append(&pool, &good, &[added("p-4", 1, 1)]).await; // 5
    let faulty = Arc::new(Faulty::default());
    faulty.reject.lock().unwrap().insert(failing);
    let worker = worker(&pool, faulty.clone());

    while !worker.run_batch().await.unwrap().caught_up {}

    assert_eq!(checkpoint(&pool, ProjectionName::Orders).await, 5);
    assert_eq!(
        summaries(&pool)
            .await
            .into_iter()
            .map(|r| (r.0, r.4))
            .collect::<HashSet<_>>(),
        HashSet::from([(bad.id(), 1), (good.id(), 2)]),
        "the bad stream stops before its failed event; the good one goes on"
    );
    let store = PgProjectionStore::new(pool.clone());
    let parked = store
        .dead_letters(Some(ProjectionName::Orders))
        .await
        .unwrap();
    let summary: Vec<(u64, Option<u64>, u32)> = parked
        .iter()
        .map(|l| (l.event.global_position, l.blocked_by, l.attempts))
        .collect();
    assert_eq!(summary, vec![(2, None, 2), (4, Some(2), 0)]);
    assert!(
        parked[0].error.contains("injected at 2"),
        "{}",
        parked[0].error
    );

    // Still failing: a retry parks both again, in order, and applies nothing.
    let deps = deps(&pool);
    let outcome = dlq_retry(&deps, faulty.as_ref(), 2).await.unwrap();
    assert_eq!((outcome.applied, outcome.parked_again), (0, 2));
    assert_eq!(store.dead_letters(None).await.unwrap()[0].attempts, 3);

    // Fixed: the retry applies the parked event, then the one that waited, in order.
    faulty.reject.lock().unwrap().clear();
    let outcome = dlq_retry(&deps, faulty.as_ref(), 2).await.unwrap();
    assert_eq!((outcome.applied, outcome.parked_again), (2, 0));
    assert!(store.dead_letters(None).await.unwrap().is_empty());
    let bad_row = summaries(&pool)
        .await
        .into_iter()
        .find(|r| r.0 == bad.id())
        .unwrap();
    assert_eq!((bad_row.2, bad_row.4), (111, 3));
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn skipping_a_parked_event_applies_the_ones_behind_it(pool: PgPool) {
    let stream = order_stream();
    append(&pool, &stream, &[placed("c-1", "p-1", 1, 100)]).await;
    append(&pool, &stream, &[OrderEvent::OrderConfirmed {}]).await; // 2: fails
    append(&pool, &stream, &[OrderEvent::OrderDelivered {}]).await; // 3: waits
    let faulty = Arc::new(Faulty::default());
    faulty.reject.lock().unwrap().insert(2);
    let worker = worker(&pool, faulty.clone());
    while !worker.run_batch().await.unwrap().caught_up {}

    let outcome = dlq_skip(&deps(&pool), faulty.as_ref(), 2).await.unwrap();

    // The skipped event changed nothing but the row's version; the one behind it applied.
    let parked = PgProjectionStore::new(pool.clone())
        .dead_letters(None)
        .await
        .unwrap();
    assert_eq!(
        (outcome.applied, outcome.parked_again),
        (1, 0),
        "{parked:?}"
    );
    assert!(
        PgProjectionStore::new(pool.clone())
            .dead_letters(None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        summaries(&pool).await,
        vec![(stream.id(), "DELIVERED".to_owned(), 100, 1, 3)]
    );
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn an_unknown_dead_letter_is_not_found(pool: PgPool) {
    let error = dlq_retry(&deps(&pool), &OrdersProjection, 42)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            strata_application::projection::ProjectorError::ReadModel(ReadModelError::NotFound(_))
        ),
        "{error:?}"
    );
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn the_worker_skips_nothing_while_an_earlier_append_commits_last(pool: PgPool) {
    let (a, b) = (order_stream(), order_stream());
    let mut held = pool.begin().await.unwrap();
    append_in(
        &mut held,
        &append_request(&a, &[placed("c-1", "p-1", 1, 100)]),
    )
    .await
    .unwrap();
    let later = tokio::spawn({
        let pool = pool.clone();
        let b = b.clone();
        async move { append(&pool, &b, &[placed("c-2", "p-1", 1, 5)]).await }
    });
    wait_for_lock_waiters(&pool, 1).await;
    let worker = worker(&pool, Arc::new(OrdersProjection));

    let while_open = worker.run_batch().await.unwrap();
    assert_eq!(while_open.events, 0);
    held.commit().await.unwrap();
    later.await.unwrap();
    let after = worker.run_batch().await.unwrap();

    assert_eq!((after.from, after.to, after.applied), (0, 2, 2));
    assert_eq!(summaries(&pool).await.len(), 2);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_rebuild_under_load_swaps_in_what_a_fresh_projection_builds(pool: PgPool) {
    let streams: Vec<StreamId> = (0..5).map(|_| order_stream()).collect();
    for (n, stream) in streams.iter().enumerate() {
        append(
            &pool,
            stream,
            &[placed(&format!("c-{}", n % 2), "p-1", 1, 10)],
        )
        .await;
    }
    let (stop_tx, stop) = watch::channel(false);
    let live = spawn_live(&pool, Arc::new(OrdersProjection), &stop);
    // Commands keep arriving during the rebuild.
    let writer = spawn_writer(&pool, &streams, 60);
    // Whoever reads during the rebuild never sees an empty table.
    let watcher = tokio::spawn({
        let pool = pool.clone();
        let stop = stop.clone();
        async move {
            let mut seen_rows = false;
            let mut served_position = 0;
            while !*stop.borrow() {
                let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM order_summaries")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                assert!(!(seen_rows && rows == 0), "the read model was served empty");
                seen_rows |= rows > 0;
                let position = checkpoint(&pool, ProjectionName::Orders).await;
                assert!(
                    position >= served_position,
                    "the served position went back from {served_position} to {position}"
                );
                served_position = position;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            seen_rows
        }
    });

    let (_never, no_stop) = watch::channel(false);
    let swapped = rebuild_orders(&pool, &no_stop).await;
    writer.await.unwrap();
    wait_for_head(&pool, ProjectionName::Orders).await;
    stop_tx.send(true).unwrap();
    live.await.unwrap();
    assert!(
        watcher.await.unwrap(),
        "the watcher never saw the table filled"
    );
    assert!(swapped);
    let after_rebuild = read_model_dump(&pool).await;

    // A projection built from scratch with nothing else running.
    sqlx::query("TRUNCATE order_summaries, customer_stats")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE projection_checkpoints SET position = 0 WHERE projection = 'orders'")
        .execute(&pool)
        .await
        .unwrap();
    let fresh = worker(&pool, Arc::new(OrdersProjection));
    while !fresh.run_batch().await.unwrap().caught_up {}

    assert_eq!(read_model_dump(&pool).await, after_rebuild);
    let items: i64 = sqlx::query_scalar("SELECT sum(item_count)::bigint FROM order_summaries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(items, 65);
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'strata_%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(leftovers, 0, "the rebuild left schemas behind");
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn two_workers_racing_on_one_projection_apply_each_event_once(pool: PgPool) {
    for n in 0..12 {
        append(
            &pool,
            &order_stream(),
            &[placed("c-1", &format!("p-{n}"), 1, 1)],
        )
        .await;
    }
    let race = |pool: PgPool| async move {
        let worker = worker(&pool, Arc::new(OrdersProjection));
        let mut applied = 0;
        for _ in 0..20 {
            match worker.run_batch().await {
                Ok(report) => applied += report.applied,
                Err(error) => panic!("{error}"),
            }
        }
        applied
    };

    let (a, b) = tokio::join!(
        tokio::spawn(race(pool.clone())),
        tokio::spawn(race(pool.clone()))
    );

    assert_eq!(
        a.unwrap() + b.unwrap(),
        12,
        "an event was applied by both workers"
    );
    let count: i64 = sqlx::query_scalar("SELECT order_count FROM customer_stats")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 12);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_transient_failure_is_never_parked_and_attempts_are_counted_per_event(pool: PgPool) {
    let (bad, other) = (order_stream(), order_stream());
    append(&pool, &bad, &[placed("c-1", "p-1", 1, 100)]).await; // 1
    append(&pool, &bad, &[added("p-2", 1, 10)]).await; // 2: always rejected
    append(&pool, &other, &[placed("c-2", "p-1", 1, 7)]).await; // 3: unavailable once
    let faulty = Arc::new(Faulty::default());
    faulty.reject.lock().unwrap().insert(2);
    faulty.unavailable_once.lock().unwrap().insert(3);
    let worker = worker(&pool, faulty.clone());

    // The last attempt parks 2, then 3 finds the storage unavailable: the batch fails whole.
    let first = worker.run_batch().await;
    assert!(
        first.as_ref().is_err_and(|e| e.is_unavailable()),
        "{first:?}"
    );
    assert_eq!(checkpoint(&pool, ProjectionName::Orders).await, 0);
    assert!(
        PgProjectionStore::new(pool.clone())
            .dead_letters(None)
            .await
            .unwrap()
            .is_empty()
    );

    worker.run_batch().await.unwrap();

    let parked = PgProjectionStore::new(pool.clone())
        .dead_letters(None)
        .await
        .unwrap();
    let parked: Vec<(u64, u32)> = parked
        .iter()
        .map(|l| (l.event.global_position, l.attempts))
        .collect();
    assert_eq!(parked, vec![(2, 2)], "only the poison event, tried twice");
    assert_eq!(checkpoint(&pool, ProjectionName::Orders).await, 3);
    assert_eq!(summaries(&pool).await.len(), 2);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn replaying_over_a_blocked_stream_keeps_its_dead_letters_usable(pool: PgPool) {
    let stream = order_stream();
    append(&pool, &stream, &[placed("c-1", "p-1", 1, 100)]).await; // 1
    append(&pool, &stream, &[added("p-2", 1, 10)]).await; // 2: fails
    append(&pool, &stream, &[added("p-3", 1, 1)]).await; // 3: waits
    let faulty = Arc::new(Faulty::default());
    faulty.reject.lock().unwrap().insert(2);
    let worker = worker(&pool, faulty.clone());
    while !worker.run_batch().await.unwrap().caught_up {}

    sqlx::query("UPDATE projection_checkpoints SET position = 0")
        .execute(&pool)
        .await
        .unwrap();
    while !worker.run_batch().await.unwrap().caught_up {}

    let store = PgProjectionStore::new(pool.clone());
    let parked: Vec<(u64, Option<u64>)> = store
        .dead_letters(None)
        .await
        .unwrap()
        .iter()
        .map(|l| (l.event.global_position, l.blocked_by))
        .collect();
    assert_eq!(
        parked,
        vec![(2, None), (3, Some(2))],
        "event 1 is not parked behind 2"
    );
    faulty.reject.lock().unwrap().clear();
    let outcome = dlq_retry(&deps(&pool), faulty.as_ref(), 2).await.unwrap();
    assert_eq!((outcome.applied, outcome.parked_again), (2, 0));
    assert_eq!(
        summaries(&pool).await,
        vec![(stream.id(), "PENDING".to_owned(), 111, 3, 3)]
    );
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_rebuild_keeps_the_tables_grants_and_index_names(pool: PgPool) {
    append(&pool, &order_stream(), &[placed("c-1", "p-1", 1, 100)]).await;
    let role = format!("strata_reader_{}", Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {role}")))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "GRANT SELECT ON order_summaries, customer_stats TO {role}"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let indexes = |pool: PgPool| async move {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' \
             AND tablename IN ('order_summaries', 'customer_stats') ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        names
    };
    let before = indexes(pool.clone()).await;
    let (_stop_tx, stop) = watch::channel(false);

    let swapped = rebuild_orders(&pool, &stop).await;

    assert!(swapped);
    assert_eq!(indexes(pool.clone()).await, before);
    assert!(before.contains(&"order_summaries_by_customer".to_owned()));
    for table in ["order_summaries", "customer_stats"] {
        let can_read: bool = sqlx::query_scalar("SELECT has_table_privilege($1, $2, 'SELECT')")
            .bind(&role)
            .bind(table)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(can_read, "{role} lost SELECT on {table}");
    }
    for cleanup in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
        sqlx::query(sqlx::AssertSqlSafe(cleanup))
            .execute(&pool)
            .await
            .unwrap();
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn an_interrupted_rebuild_leaves_the_live_projection_as_it_was(pool: PgPool) {
    for _ in 0..5 {
        append(&pool, &order_stream(), &[placed("c-1", "p-1", 1, 100)]).await;
    }
    let live = worker(&pool, Arc::new(OrdersProjection));
    while !live.run_batch().await.unwrap().caught_up {}
    let before = read_model_dump(&pool).await;
    let (stop_tx, stop) = watch::channel(false);
    stop_tx.send(true).unwrap();

    let swapped = rebuild_orders(&pool, &stop).await;

    assert!(!swapped);
    assert_eq!(read_model_dump(&pool).await, before);
    assert_eq!(checkpoint(&pool, ProjectionName::Orders).await, 5);
    let leftovers: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'strata_%'), \
                (SELECT count(*) FROM projection_checkpoints WHERE projection LIKE '%:rebuild')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leftovers, (0, 0));
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_standby_that_stops_says_nothing_about_the_running_instance(pool: PgPool) {
    let (active_stop_tx, active_stop) = watch::channel(false);
    let active = tokio::spawn({
        let worker = worker(&pool, Arc::new(OrdersProjection));
        async move { worker.run(active_stop).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let state = |pool: PgPool| async move {
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state FROM projection_checkpoints WHERE projection = 'orders'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap()
        .flatten();
        state
    };
    while state(pool.clone()).await.as_deref() != Some("running") {
        assert!(tokio::time::Instant::now() < deadline, "never running");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (standby_stop_tx, standby_stop) = watch::channel(false);
    let standby = tokio::spawn({
        let worker = worker(&pool, Arc::new(OrdersProjection));
        async move { worker.run(standby_stop).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    standby_stop_tx.send(true).unwrap();
    standby.await.unwrap();

    assert_eq!(state(pool.clone()).await.as_deref(), Some("running"));
    active_stop_tx.send(true).unwrap();
    active.await.unwrap();
    assert_eq!(state(pool.clone()).await.as_deref(), Some("stopped"));
}

/// Folding a whole batch at once (one read and one write per row) must write exactly what
/// applying its events one batch at a time writes: summaries, versions, status counts and
/// lifetime values included.
#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_batch_folded_at_once_writes_what_one_event_per_batch_writes(pool: PgPool) {
    use strata_domain::values::{CancellationReason, ProductId, TrackingNumber};
    let (a, b, c) = (order_stream(), order_stream(), order_stream());
    append(&pool, &a, &[placed("c-1", "p-1", 1, 100)]).await;
    append(&pool, &b, &[placed("c-1", "p-2", 2, 50)]).await;
    append(
        &pool,
        &a,
        &[added("p-3", 2, 30), OrderEvent::OrderConfirmed {}],
    )
    .await;
    append(
        &pool,
        &c,
        &[placed("c-2", "p-1", 1, 70), added("p-4", 1, 5)],
    )
    .await;
    append(
        &pool,
        &b,
        &[OrderEvent::ItemRemoved {
            product_id: ProductId::new("p-2").unwrap(),
        }],
    )
    .await;
    append(
        &pool,
        &a,
        &[
            OrderEvent::OrderShipped {
                tracking_number: TrackingNumber::new("T-9").unwrap(),
            },
            OrderEvent::OrderDelivered {},
        ],
    )
    .await;
    append(
        &pool,
        &c,
        &[OrderEvent::OrderCancelled {
            reason: CancellationReason::new("changed mind").unwrap(),
        }],
    )
    .await;

    let one_by_one = ProjectionWorker::new(
        deps(&pool),
        Arc::new(OrdersProjection),
        Generation::Live,
        ProjectorConfig {
            batch_size: 1,
            ..config()
        },
    );
    while !one_by_one.run_batch().await.unwrap().caught_up {}
    let expected = read_model_dump(&pool).await;
    sqlx::query("TRUNCATE order_summaries, customer_stats")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE projection_checkpoints SET position = 0")
        .execute(&pool)
        .await
        .unwrap();
    let at_once = ProjectionWorker::new(
        deps(&pool),
        Arc::new(OrdersProjection),
        Generation::Live,
        ProjectorConfig {
            batch_size: 500,
            ..config()
        },
    );
    let report = at_once.run_batch().await.unwrap();

    assert_eq!((report.events, report.caught_up), (10, true));
    assert_eq!(read_model_dump(&pool).await, expected);
    assert!(
        expected
            .iter()
            .any(|r| r.contains(r#""lifetime_value":{"EUR": 160}"#)),
        "{expected:#?}"
    );
}

/// The next batch is read while one is applied; when the checkpoint is no longer where that
/// read started (moved back for a replay, or by another worker), the read is not used.
#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_read_ahead_from_another_position_is_not_used(pool: PgPool) {
    let stream = order_stream();
    append(&pool, &stream, &[placed("c-1", "p-1", 1, 100)]).await;
    for n in 0..8 {
        append(&pool, &stream, &[added(&format!("p-{n}"), 1, 10)]).await;
    }
    let worker = worker(&pool, Arc::new(OrdersProjection));
    let first = worker.run_batch().await.unwrap();
    assert_eq!((first.from, first.to), (0, 3), "a full batch of 3");

    sqlx::query("UPDATE projection_checkpoints SET position = 1")
        .execute(&pool)
        .await
        .unwrap();
    let replay = worker.run_batch().await.unwrap();
    let next = worker.run_batch().await.unwrap();

    assert_eq!(
        (replay.from, replay.to),
        (1, 4),
        "read again from the checkpoint"
    );
    assert_eq!(
        (next.from, next.to),
        (4, 7),
        "the read ahead from 4 is used"
    );
    assert_eq!(checkpoint(&pool, ProjectionName::Orders).await, 7);
}

/// Written around the domain (which refuses it), an order whose lines add up beyond 64 bits is
/// parked: its summary never shows a saturated total, and the other orders go on.
#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn an_order_whose_total_cannot_be_represented_is_parked_not_saturated(pool: PgPool) {
    let (bad, good) = (order_stream(), order_stream());
    append(&pool, &bad, &[support::log::placed_beyond_64_bits("c-1")]).await;
    append(&pool, &good, &[placed("c-2", "p-1", 1, 7)]).await;
    let worker = worker(&pool, Arc::new(OrdersProjection));

    while !worker.run_batch().await.unwrap().caught_up {}

    let shown: Vec<(Uuid, i64)> = summaries(&pool)
        .await
        .into_iter()
        .map(|r| (r.0, r.2))
        .collect();
    assert_eq!(shown, vec![(good.id(), 7)]);
    let parked = PgProjectionStore::new(pool.clone())
        .dead_letters(Some(ProjectionName::Orders))
        .await
        .unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(
        parked[0].error.contains("does not fit in 64 bits"),
        "{}",
        parked[0].error
    );
}
