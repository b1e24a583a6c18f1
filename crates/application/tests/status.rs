//! The projection status: lag in events and seconds, and the state shown for each projection
//! from what its worker last reported and when.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::json;
use strata_application::StatusService;
use strata_ports::{
    CheckpointRow, Metadata, MockEventStore, MockReadModels, RecordedEvent, StreamId,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn row(projection: &str, position: u64, state: Option<(&str, i64)>) -> CheckpointRow {
    CheckpointRow {
        projection: projection.to_owned(),
        position,
        updated_at: None,
        position_recorded_at: None,
        dead_letters: 0,
        state: state.map(|(s, _)| s.to_owned()),
        state_updated_at: state.map(|(_, ago)| now() - Duration::seconds(ago)),
    }
}

fn service(head: u64, rows: Vec<CheckpointRow>) -> StatusService {
    let mut events = MockEventStore::new();
    events.expect_head_position().returning(move || Ok(head));
    events.expect_read_all().returning(|after, _| {
        Ok(vec![RecordedEvent {
            event_id: Uuid::now_v7(),
            stream_id: StreamId::new("order", Uuid::now_v7()),
            stream_version: 1,
            global_position: after + 1,
            event_type: "OrderPlaced".to_owned(),
            schema_version: 2,
            data: json!({}),
            metadata: Metadata::default(),
            // The oldest unprocessed event is 12 s old.
            recorded_at: now() - Duration::seconds(12),
        }])
    });
    let mut models = MockReadModels::new();
    models
        .expect_checkpoints()
        .returning(move || Ok(rows.clone()));
    StatusService::new(Arc::new(events), Arc::new(models))
}

#[tokio::test]
async fn lag_is_counted_in_events_and_in_the_age_of_the_oldest_waiting_event() {
    let status = service(10, vec![row("orders", 7, Some(("catching up", 1)))]);

    let statuses = status.statuses(now()).await.unwrap();

    let orders = &statuses[0];
    assert_eq!(
        (orders.checkpoint, orders.head, orders.lag_events),
        (7, 10, 3)
    );
    assert!(
        (orders.lag_seconds - 12.0).abs() < 1e-9,
        "{}",
        orders.lag_seconds
    );
    assert_eq!(orders.state, "catching up");
    assert_eq!(statuses[1].state, "never run");
    assert_eq!(statuses[1].lag_events, 10);
}

#[tokio::test]
async fn a_silent_worker_is_stalled_when_events_wait_and_stopped_otherwise() {
    let behind = service(10, vec![row("orders", 7, Some(("running", 120)))]);
    let caught_up = service(7, vec![row("orders", 7, Some(("running", 120)))]);

    assert_eq!(behind.statuses(now()).await.unwrap()[0].state, "stalled");
    let idle = &caught_up.statuses(now()).await.unwrap()[0];
    assert_eq!((idle.state.as_str(), idle.lag_seconds), ("stopped", 0.0));
}

#[tokio::test]
async fn a_rebuild_in_progress_shows_with_its_own_checkpoint() {
    let status = service(
        10,
        vec![
            row("orders", 10, Some(("running", 1))),
            CheckpointRow {
                updated_at: Some(now() - Duration::seconds(2)),
                ..row("orders:rebuild", 4, None)
            },
        ],
    );

    let orders = &status.statuses(now()).await.unwrap()[0];

    assert_eq!(orders.state, "rebuilding");
    assert_eq!(orders.rebuild_checkpoint, Some(4));
}

#[tokio::test]
async fn a_killed_rebuild_no_longer_hides_the_live_state() {
    let status = service(
        10,
        vec![
            row("orders", 10, Some(("running", 1))),
            CheckpointRow {
                updated_at: Some(now() - Duration::minutes(10)),
                ..row("orders:rebuild", 4, None)
            },
        ],
    );

    let orders = &status.statuses(now()).await.unwrap()[0];

    assert_eq!(orders.state, "running");
    assert_eq!(orders.rebuild_checkpoint, Some(4));
}
