//! What only SQLite can show, against real database files, one fresh directory per test: its
//! triggers, WAL mode, leases stored in the file, in-process wake-ups, and writers waiting for
//! their turn (the conformance suite, in `conformance.rs`, has every shared behaviour).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use strata_adapters_sqlite::{
    SqliteEventStore, SqliteLeases, SqliteProjectionStore, SqliteReadModels, SqliteSearchIndex,
    SqliteSettings,
};
use strata_ports::{
    AppendRequest, EventStore, ExpectedVersion, Generation, IdempotencyClaim, LogWakeups, Metadata,
    NewEvent, OrderLineRow, OrderQueries, OrderSummaryRow, OrderSummaryStatus, ProjectionLeases,
    ProjectionName, ProjectionStore, ReadModelError, SearchIndex, StreamId,
};
use time::OffsetDateTime;
use uuid::Uuid;

use support::fresh;

fn append_of(stream: &StreamId, key: Option<&str>) -> AppendRequest {
    AppendRequest {
        stream_id: stream.clone(),
        expected: ExpectedVersion::Any,
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "ItemAdded".into(),
            schema_version: 1,
            data: json!({"n": 1}),
            metadata: Metadata::default(),
            recorded_at: OffsetDateTime::now_utc(),
        }],
        idempotency: key.map(|key| IdempotencyClaim {
            principal: "alice".into(),
            key: key.into(),
            fingerprint: "f".into(),
        }),
    }
}

#[tokio::test]
async fn the_sqlite_search_index_shows_every_shared_search_behaviour() {
    let db = fresh().await;
    let pool = strata_adapters_sqlite::connect_search(&db.settings)
        .await
        .unwrap();
    let index = SqliteSearchIndex::new(pool);
    index.prepare().await.unwrap();
    index.prepare().await.unwrap();

    strata_ports::conformance::search::run(&index).await;
}

#[tokio::test]
async fn the_search_index_lives_in_its_own_file() {
    let db = fresh().await;
    let pool = strata_adapters_sqlite::connect_search(&db.settings)
        .await
        .unwrap();
    SqliteSearchIndex::new(pool).prepare().await.unwrap();

    assert!(db.dir.path().join("strata-search.db").exists());
    let main_tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name LIKE 'order_search%'")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(main_tables.is_empty(), "{main_tables:?}");
}

#[tokio::test]
async fn events_cannot_be_updated_or_deleted_even_with_raw_sql() {
    let db = fresh().await;
    let store = SqliteEventStore::new(db.pool.clone());
    let stream = StreamId::new("order", Uuid::now_v7());
    store.append(append_of(&stream, None)).await.unwrap();

    for sql in [
        "UPDATE events SET event_type = 'Forged'",
        "DELETE FROM events WHERE global_position = 1",
        "DELETE FROM events",
    ] {
        let refused = sqlx::query(sql).execute(&db.pool).await.unwrap_err();
        assert!(
            refused.to_string().contains("events are immutable"),
            "{sql}: {refused}"
        );
    }
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn idempotency_records_cannot_be_changed() {
    let db = fresh().await;
    let store = SqliteEventStore::new(db.pool.clone());
    let stream = StreamId::new("order", Uuid::now_v7());
    store.append(append_of(&stream, Some("k1"))).await.unwrap();

    let refused = sqlx::query("UPDATE idempotency_keys SET fingerprint = 'forged'")
        .execute(&db.pool)
        .await
        .unwrap_err();

    assert!(refused.to_string().contains("immutable"), "{refused}");
}

#[tokio::test]
async fn insert_or_replace_cannot_rewrite_an_event_or_an_idempotency_record() {
    let db = fresh().await;
    let store = SqliteEventStore::new(db.pool.clone());
    let stream = StreamId::new("order", Uuid::now_v7());
    store.append(append_of(&stream, Some("k1"))).await.unwrap();
    let original = store.read_all(0, 10).await.unwrap();
    // A client of its own, without the adapter's settings.
    let url = format!("sqlite://{}", db.settings.path.display());
    let other = sqlx::SqlitePool::connect(&url).await.unwrap();

    for (pool, who) in [(&db.pool, "adapter"), (&other, "other client")] {
        for sql in [
            "INSERT OR REPLACE INTO events SELECT 1, 'forged-id', stream_id, stream_version, \
             'Forged', schema_version, data, metadata, recorded_at FROM events",
            "REPLACE INTO events SELECT global_position + 1, event_id, stream_id, \
             stream_version, 'Forged', schema_version, data, metadata, recorded_at FROM events",
            "INSERT OR REPLACE INTO idempotency_keys SELECT principal, key, 'forged', \
             stream_id, stream_version, global_position, recorded_at FROM idempotency_keys",
        ] {
            let refused = sqlx::query(sql).execute(pool).await.unwrap_err();
            assert!(
                refused.to_string().contains("immutable"),
                "{who}: {sql}: {refused}"
            );
        }
    }
    assert_eq!(store.read_all(0, 10).await.unwrap(), original);
    let fingerprint: String = sqlx::query_scalar("SELECT fingerprint FROM idempotency_keys")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(fingerprint, "f");
}

#[tokio::test]
async fn two_processes_migrating_a_new_file_at_once_both_succeed() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let settings = SqliteSettings::at(dir.path().join("strata.db"));
        // Two pools on one file stand for the server and a projector starting together.
        let first = strata_adapters_sqlite::connect(&settings).await.unwrap();
        let second = strata_adapters_sqlite::connect(&settings).await.unwrap();

        let (a, b) = futures::join!(
            strata_adapters_sqlite::migrate(&first),
            strata_adapters_sqlite::migrate(&second)
        );

        a.unwrap();
        b.unwrap();
        assert!(strata_adapters_sqlite::is_migrated(&first).await.unwrap());
    }
}

#[tokio::test]
async fn the_database_runs_in_wal_mode_and_migrating_again_is_harmless() {
    let db = fresh().await;

    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    strata_adapters_sqlite::migrate(&db.pool).await.unwrap();

    assert_eq!(mode, "wal");
    assert!(strata_adapters_sqlite::is_migrated(&db.pool).await.unwrap());
}

#[tokio::test]
async fn a_new_file_is_not_migrated_until_migrate_runs() {
    let dir = tempfile::tempdir().unwrap();
    let settings = SqliteSettings::at(dir.path().join("nested/dir/strata.db"));
    let pool = strata_adapters_sqlite::connect(&settings).await.unwrap();

    assert!(!strata_adapters_sqlite::is_migrated(&pool).await.unwrap());
    strata_adapters_sqlite::migrate(&pool).await.unwrap();
    assert!(strata_adapters_sqlite::is_migrated(&pool).await.unwrap());
}

#[tokio::test]
async fn committed_events_survive_closing_and_reopening_the_file() {
    let db = fresh().await;
    let stream = StreamId::new("order", Uuid::now_v7());
    SqliteEventStore::new(db.pool.clone())
        .append(append_of(&stream, None))
        .await
        .unwrap();
    db.pool.close().await;

    let reopened = strata_adapters_sqlite::connect(&db.settings).await.unwrap();
    let events = SqliteEventStore::new(reopened)
        .read_stream(&stream, 0)
        .await
        .unwrap();

    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn a_held_lease_is_refused_to_anyone_else_until_it_is_dropped() {
    let db = fresh().await;
    let leases = SqliteLeases::new(db.pool.clone());
    let other_process =
        SqliteLeases::new(strata_adapters_sqlite::connect(&db.settings).await.unwrap());

    let mut held = leases
        .try_acquire(ProjectionName::Orders, Generation::Live)
        .await
        .unwrap()
        .unwrap();
    held.check().await.unwrap();
    assert!(
        other_process
            .try_acquire(ProjectionName::Orders, Generation::Live)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        other_process
            .try_acquire(ProjectionName::Accounts, Generation::Live)
            .await
            .unwrap()
            .is_some()
    );
    drop(held);

    let mut taken = None;
    for _ in 0..100 {
        taken = other_process
            .try_acquire(ProjectionName::Orders, Generation::Live)
            .await
            .unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(taken.is_some(), "the dropped lease was never released");
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_its_old_holder_learns_it_lost_it() {
    let db = fresh().await;
    let leases = SqliteLeases::new(db.pool.clone());
    let mut dead = leases
        .try_acquire(ProjectionName::Orders, Generation::Live)
        .await
        .unwrap()
        .unwrap();
    // The holder stopped renewing long ago (its process hung, say).
    sqlx::query("UPDATE projection_leases SET expires_at = 0")
        .execute(&db.pool)
        .await
        .unwrap();

    let standby = leases
        .try_acquire(ProjectionName::Orders, Generation::Live)
        .await
        .unwrap();

    assert!(standby.is_some());
    // The old holder finds out at its next renewal, within the renewal interval (5 s).
    let mut lost = false;
    for _ in 0..400 {
        if dead.check().await.is_err() {
            lost = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(lost, "the old holder still believes it holds the lease");
}

#[tokio::test]
async fn an_append_wakes_the_projectors_of_the_same_process() {
    let db = fresh().await;
    let store = SqliteEventStore::new(db.pool.clone());
    let mut wakeup = store.wakeups().subscribe().await.unwrap();
    let stream = StreamId::new("order", Uuid::now_v7());

    store.append(append_of(&stream, None)).await.unwrap();

    tokio::time::timeout(Duration::from_secs(5), wakeup.wait())
        .await
        .expect("woken")
        .unwrap();
}

#[tokio::test]
async fn concurrent_writers_on_separate_pools_all_commit_without_busy_errors() {
    let db = fresh().await;
    // Two pools on one file stand for two processes sharing it.
    let first = SqliteEventStore::new(db.pool.clone());
    let second =
        SqliteEventStore::new(strata_adapters_sqlite::connect(&db.settings).await.unwrap());
    let appends = (0..40).map(|n| {
        let store = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        async move {
            let stream = StreamId::new("order", Uuid::now_v7());
            store.append(append_of(&stream, None)).await
        }
    });

    let outcomes = futures::future::join_all(appends).await;

    let mut positions: Vec<u64> = outcomes
        .into_iter()
        .map(|o| o.unwrap().global_position)
        .collect();
    positions.sort_unstable();
    assert_eq!(positions, (1..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn appends_waiting_behind_a_batch_that_reads_the_log_do_not_starve_it_of_connections() {
    let db = fresh().await;
    let settings = SqliteSettings {
        max_connections: 2,
        ..db.settings.clone()
    };
    let pool = strata_adapters_sqlite::connect(&settings).await.unwrap();
    let events = SqliteEventStore::new(pool.clone());
    let store = SqliteProjectionStore::new(pool);

    // The batch holds the write lock and one connection, as a projection batch does.
    let mut batch = store
        .begin(ProjectionName::Orders, Generation::Live)
        .await
        .unwrap();
    let checkpoint = batch.checkpoint().await.unwrap();
    let appends = tokio::spawn({
        let events = events.clone();
        async move {
            let appends = (0..10).map(|_| {
                let events = events.clone();
                async move {
                    let stream = StreamId::new("order", Uuid::now_v7());
                    events.append(append_of(&stream, None)).await
                }
            });
            futures::future::join_all(appends).await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Reading the log takes a second connection while the appends wait for the lock.
    let read = tokio::time::timeout(Duration::from_secs(3), events.read_all(0, 10)).await;
    batch.commit(checkpoint).await.unwrap();
    let outcomes = appends.await.unwrap();

    assert!(
        matches!(read, Ok(Ok(_))),
        "the batch could not read the log: {read:?}"
    );
    for outcome in outcomes {
        outcome.unwrap();
    }
}

#[tokio::test]
async fn order_lines_are_stored_as_their_serde_text_and_an_unknown_status_is_corrupt() {
    let db = fresh().await;
    let store = SqliteProjectionStore::new(db.pool.clone());
    let models = SqliteReadModels::new(db.pool.clone());
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let row = OrderSummaryRow {
        order_id: Uuid::now_v7(),
        customer_id: "alice".to_owned(),
        status: OrderSummaryStatus::Pending,
        items: vec![OrderLineRow {
            line_total_cents: 2_500,
            product_id: "lamp-7".to_owned(),
            quantity: 2,
            unit_price_cents: 1_250,
        }],
        item_count: 2,
        total_cents: 2_500,
        currency: "EUR".to_owned(),
        shipping_address: "12 Harbour Street".to_owned(),
        tracking_number: None,
        cancellation_reason: None,
        placed_at: now,
        updated_at: now,
        version: 1,
        placed_position: 1,
    };
    let mut batch = store
        .begin(ProjectionName::Orders, Generation::Live)
        .await
        .unwrap();
    batch.put_order_summary(&row).await.unwrap();
    batch.commit(1).await.unwrap();

    let (items, status): (String, String) =
        sqlx::query_as("SELECT items, status FROM order_summaries")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    sqlx::query("UPDATE order_summaries SET status = 'LOST'")
        .execute(&db.pool)
        .await
        .unwrap();
    let lost = models.order_summary(row.order_id).await;

    // The text the hand-written codec wrote before OrderLineRow had a serde form.
    assert_eq!(
        items,
        r#"[{"lineTotalCents":2500,"productId":"lamp-7","quantity":2,"unitPriceCents":1250}]"#
    );
    assert_eq!(status, "PENDING");
    assert!(matches!(lost, Err(ReadModelError::Corrupt(_))), "{lost:?}");
}
