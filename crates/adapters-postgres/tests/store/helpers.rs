//! Builders of requests and events, and a reader that follows the log like a projector.

use serde_json::json;
use strata_adapters_postgres::PgEventStore;
use strata_ports::{
    AppendOutcome, AppendRequest, EventStore, EventStoreError, ExpectedVersion, IdempotencyClaim,
    Metadata, NewEvent, RecordedEvent, StreamId,
};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

/// A fresh stream of `category`.
pub fn stream(category: &str) -> StreamId {
    StreamId::new(category, Uuid::now_v7())
}

/// A microsecond-precise instant, as PostgreSQL stores them, so envelopes compare equal.
pub const RECORDED_AT: OffsetDateTime = datetime!(2026-11-02 09:30:00.123456 UTC);

/// An event of `event_type`, schema version 1, carrying `n` in its data.
pub fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data: json!({ "n": n }),
        metadata: Metadata {
            correlation_id: Some("req-1".into()),
            user_id: Some("alice".into()),
            ..Metadata::default()
        },
        recorded_at: RECORDED_AT,
    }
}

/// An append of `count` events to `stream_id`, without idempotency claim.
pub fn request(stream_id: &StreamId, expected: ExpectedVersion, count: u64) -> AppendRequest {
    AppendRequest {
        stream_id: stream_id.clone(),
        expected,
        events: (1..=count).map(|n| event("ItemAdded", n)).collect(),
        idempotency: None,
    }
}

/// `request`, claiming `key` for `principal`.
pub fn claiming(mut request: AppendRequest, principal: &str, key: &str) -> AppendRequest {
    request.idempotency = Some(IdempotencyClaim {
        principal: principal.to_owned(),
        key: key.to_owned(),
        fingerprint: format!("POST /orders {key}"),
    });
    request
}

/// Appends `count` events to `stream_id`.
pub async fn append(
    store: &PgEventStore,
    stream_id: &StreamId,
    expected: ExpectedVersion,
    count: u64,
) -> Result<AppendOutcome, EventStoreError> {
    store.append(request(stream_id, expected, count)).await
}

/// The whole log, in position order.
pub async fn read_everything(store: &PgEventStore) -> Vec<RecordedEvent> {
    store.read_all(0, 10_000).await.unwrap()
}

/// Follows the log from a checkpoint, a few events per read, as a projector does.
pub struct Reader {
    pub checkpoint: u64,
    pub delivered: Vec<RecordedEvent>,
}

impl Reader {
    pub fn new() -> Self {
        Self {
            checkpoint: 0,
            delivered: Vec::new(),
        }
    }

    /// Reads until the log has nothing after the checkpoint; returns how many events it got.
    pub async fn catch_up(&mut self, store: &PgEventStore) -> usize {
        let before = self.delivered.len();
        loop {
            let page = store.read_all(self.checkpoint, 2).await.unwrap();
            let Some(last) = page.last() else {
                return self.delivered.len() - before;
            };
            self.checkpoint = last.global_position;
            self.delivered.extend(page);
        }
    }

    pub fn positions(&self) -> Vec<u64> {
        self.delivered.iter().map(|e| e.global_position).collect()
    }
}

/// Waits until `count` sessions of this test's database are blocked on a lock, as the
/// server itself reports it. Tests use it to know that a writer is parked behind a held
/// transaction instead of guessing with a sleep; it panics after ten seconds, which in the
/// tests that use it means the writers were never made to wait.
pub async fn wait_for_lock_waiters(pool: &sqlx::PgPool, count: i64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {count} sessions waiting on a lock, saw {waiting}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
