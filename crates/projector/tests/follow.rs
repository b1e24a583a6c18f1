//! The follower against a real PostgreSQL: every event after the start position, in order,
//! exactly once, in catch-up batches and then live.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use strata_adapters_postgres::PgEventStore;
use strata_ports::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use strata_projector::follow::{FollowOptions, follow, to_json_line};
use tokio::sync::watch;
use uuid::Uuid;

async fn append(store: &PgEventStore, stream: &StreamId, count: usize) {
    let events = (0..count)
        .map(|n| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "Tested".to_owned(),
            schema_version: 1,
            data: json!({ "n": n }),
            metadata: Metadata::default(),
            recorded_at: time::OffsetDateTime::now_utc(),
        })
        .collect();
    let request = AppendRequest {
        stream_id: stream.clone(),
        expected: ExpectedVersion::Any,
        events,
        idempotency: None,
    };
    store.append(request).await.unwrap();
}

fn options(until_caught_up: bool) -> FollowOptions {
    FollowOptions {
        batch_size: 2,
        poll_interval: Duration::from_millis(20),
        until_caught_up,
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn catching_up_delivers_every_event_after_the_start_once_in_order(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let (a, b) = (
        StreamId::new("order", Uuid::now_v7()),
        StreamId::new("account", Uuid::now_v7()),
    );
    append(&store, &a, 3).await;
    append(&store, &b, 2).await;
    append(&store, &a, 2).await;
    let (_stop_tx, stop) = watch::channel(false);

    let mut seen = Vec::new();
    let last = follow(&store, 0, options(true), stop.clone(), &mut |e| {
        seen.push(e.global_position);
        Ok(())
    })
    .await
    .unwrap();
    let mut rest = Vec::new();
    follow(&store, 4, options(true), stop, &mut |e| {
        rest.push(e.global_position);
        Ok(())
    })
    .await
    .unwrap();

    assert_eq!(seen, (1..=7).collect::<Vec<u64>>());
    assert_eq!(last, 7);
    assert_eq!(rest, vec![5, 6, 7]);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_live_follower_sees_events_appended_after_it_started(pool: PgPool) {
    let store = Arc::new(PgEventStore::new(pool));
    let stream = StreamId::new("order", Uuid::now_v7());
    append(&store, &stream, 1).await;
    let (stop_tx, stop) = watch::channel(false);
    let seen = Arc::new(Mutex::new(Vec::new()));

    let follower = {
        let (store, seen) = (store.clone(), seen.clone());
        tokio::spawn(async move {
            follow(store.as_ref(), 0, options(false), stop, &mut |e| {
                seen.lock().unwrap().push(e.global_position);
                Ok(())
            })
            .await
        })
    };
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        append(&store, &stream, 2).await;
    }
    for _ in 0..200 {
        if seen.lock().unwrap().len() >= 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).unwrap();
    let last = follower.await.unwrap().unwrap();

    assert_eq!(*seen.lock().unwrap(), (1..=7).collect::<Vec<u64>>());
    assert_eq!(last, 7);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn each_event_is_printed_as_one_json_line_with_its_envelope(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let stream = StreamId::new("order", Uuid::now_v7());
    append(&store, &stream, 1).await;
    let event = store.read_all(0, 1).await.unwrap().remove(0);

    let line: serde_json::Value = serde_json::from_str(&to_json_line(&event)).unwrap();

    assert_eq!(line["globalPosition"], 1);
    assert_eq!(line["streamId"], stream.as_str());
    assert_eq!(line["eventType"], "Tested");
    assert_eq!(line["data"]["n"], 0);
    assert!(line["recordedAt"].as_str().unwrap().ends_with('Z'));
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_dropped_stop_sender_stops_a_live_follower(pool: PgPool) {
    let store = PgEventStore::new(pool);
    let stream = StreamId::new("order", Uuid::now_v7());
    append(&store, &stream, 3).await;
    let (stop_tx, stop) = watch::channel(false);
    drop(stop_tx);
    let mut seen = Vec::new();

    // A closed channel once made every pause return at once: the follower then polled the
    // store in a busy loop and never returned.
    let last = tokio::time::timeout(
        Duration::from_secs(10),
        follow(&store, 0, options(false), stop, &mut |e| {
            seen.push(e.global_position);
            Ok(())
        }),
    )
    .await
    .expect("follow returns once nobody can ask it to stop")
    .unwrap();

    assert_eq!(seen, Vec::<u64>::new());
    assert_eq!(last, 0);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_sender_dropped_while_the_follower_waits_stops_it(pool: PgPool) {
    let store = Arc::new(PgEventStore::new(pool));
    let stream = StreamId::new("order", Uuid::now_v7());
    append(&store, &stream, 1).await;
    let (stop_tx, stop) = watch::channel(false);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let follower = {
        let (store, seen) = (store.clone(), seen.clone());
        tokio::spawn(async move {
            let slow = FollowOptions {
                poll_interval: Duration::from_secs(3600),
                ..options(false)
            };
            follow(store.as_ref(), 0, slow, stop, &mut |e| {
                seen.lock().unwrap().push(e.global_position);
                Ok(())
            })
            .await
        })
    };
    for _ in 0..200 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    drop(stop_tx);
    let last = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("the follower wakes from its pause when the sender is dropped")
        .unwrap()
        .unwrap();

    assert_eq!(*seen.lock().unwrap(), vec![1]);
    assert_eq!(last, 1);
}
