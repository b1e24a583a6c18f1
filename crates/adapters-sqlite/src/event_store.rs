//! `SqliteEventStore`: the event store port on SQLite. Appends are written by one writer per
//! store, in groups, each group one `BEGIN IMMEDIATE` transaction (`group_commit.rs`): it holds
//! the database's single write lock from its first read to its commit, so every expected-version
//! check is exact, the idempotency lookup sees every committed claim, and positions, numbered
//! after the highest stored one, follow commit order (see the first migration).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::SqlitePool;
use strata_ports::event_store::check_idempotency_lookup;
use strata_ports::{
    AppendOutcome, AppendRequest, EventStore, EventStoreError, IdempotencyRecord, Metadata,
    RecordedEvent, StreamId,
};

use crate::codec;
use crate::error::event_store_error;
use crate::group_commit::GroupCommit;
use crate::leases::SqliteLogWakeups;

pub(crate) const HEAD_POSITION: &str = "SELECT coalesce(max(global_position), 0) FROM events";

const READ_STREAM: &str = "\
    SELECT global_position, event_id, stream_id, stream_version, event_type, schema_version, \
           data, metadata, recorded_at \
    FROM events WHERE stream_id = ?1 AND stream_version > ?2 ORDER BY stream_version";

const READ_ALL: &str = "\
    SELECT global_position, event_id, stream_id, stream_version, event_type, schema_version, \
           data, metadata, recorded_at \
    FROM events WHERE global_position > ?1 ORDER BY global_position LIMIT ?2";

const FIND_IDEMPOTENCY: &str = "\
    SELECT principal, key, fingerprint, stream_id, stream_version, global_position \
    FROM idempotency_keys WHERE principal = ?1 AND key = ?2";

/// The event store on a SQLite pool (migrated with [`crate::migrate`]).
#[derive(Debug, Clone)]
pub struct SqliteEventStore {
    pool: SqlitePool,
    /// The one queue of appends of this store and its clones, and its writer.
    group: Arc<GroupCommit>,
}

impl SqliteEventStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            group: Arc::new(GroupCommit::default()),
        }
    }

    /// The group writer, for the tests that look inside it.
    #[cfg(test)]
    pub(crate) fn group(&self) -> &GroupCommit {
        &self.group
    }

    /// Wake-ups sent by the appends of this store (and its clones). Another process appending
    /// to the same file sends none: its projectors poll.
    pub fn wakeups(&self) -> SqliteLogWakeups {
        SqliteLogWakeups::new(self.group.appended())
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, EventStoreError> {
        if request.events.is_empty() {
            return Err(EventStoreError::EmptyAppend);
        }
        request.check_input()?;
        // No look at the stream's version before queueing, as there was before group commit:
        // that read cost as much as the append itself in the group (decision 0010, "SQLite").
        self.group.append(&self.pool, request).await
    }

    async fn read_stream(
        &self,
        stream_id: &StreamId,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let Ok(after_version) = i64::try_from(after_version) else {
            return Ok(Vec::new());
        };
        let rows: Vec<EventRow> = sqlx::query_as(READ_STREAM)
            .bind(stream_id.as_str())
            .bind(after_version)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| event_store_error(&e))?;
        rows.into_iter().map(EventRow::into_recorded).collect()
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let Ok(after_position) = i64::try_from(after_position) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<EventRow> = sqlx::query_as(READ_ALL)
            .bind(after_position)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| event_store_error(&e))?;
        rows.into_iter().map(EventRow::into_recorded).collect()
    }

    async fn head_position(&self) -> Result<u64, EventStoreError> {
        let head: i64 = sqlx::query_scalar(HEAD_POSITION)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| event_store_error(&e))?;
        to_u64(head, "head position")
    }

    async fn find_idempotency(
        &self,
        principal: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, EventStoreError> {
        check_idempotency_lookup(principal, key)?;
        let row: Option<(String, String, String, String, i64, i64)> =
            sqlx::query_as(FIND_IDEMPOTENCY)
                .bind(principal)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| event_store_error(&e))?;
        row.map(
            |(principal, key, fingerprint, stream_id, version, position)| {
                Ok(IdempotencyRecord {
                    principal,
                    key,
                    fingerprint,
                    stream_id: parse_stream_id(&stream_id)?,
                    stream_version: to_u64(version, "stream version")?,
                    global_position: to_u64(position, "global position")?,
                })
            },
        )
        .transpose()
    }
}

/// A row of `events`, as read.
#[derive(sqlx::FromRow)]
struct EventRow {
    global_position: i64,
    event_id: String,
    stream_id: String,
    stream_version: i64,
    event_type: String,
    schema_version: i64,
    data: String,
    metadata: String,
    recorded_at: i64,
}

impl EventRow {
    /// The envelope, or `Corrupt` when the row breaks its rules: stored data is never guessed at.
    fn into_recorded(self) -> Result<RecordedEvent, EventStoreError> {
        let corrupt = EventStoreError::Corrupt;
        let metadata: Metadata = serde_json::from_str(&self.metadata).map_err(|e| {
            corrupt(format!(
                "metadata of event at {}: {e}",
                self.global_position
            ))
        })?;
        Ok(RecordedEvent {
            event_id: codec::uuid(&self.event_id).map_err(corrupt)?,
            stream_id: parse_stream_id(&self.stream_id)?,
            stream_version: to_u64(self.stream_version, "stream version")?,
            global_position: to_u64(self.global_position, "global position")?,
            event_type: self.event_type,
            schema_version: u32::try_from(self.schema_version)
                .map_err(|_| corrupt(format!("schema version {}", self.schema_version)))?,
            data: codec::json(&self.data).map_err(corrupt)?,
            metadata,
            recorded_at: codec::instant(self.recorded_at).map_err(corrupt)?,
        })
    }
}

fn parse_stream_id(text: &str) -> Result<StreamId, EventStoreError> {
    StreamId::parse(text).map_err(|e| EventStoreError::Corrupt(e.to_string()))
}

pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, EventStoreError> {
    codec::to_u64(value, what).map_err(EventStoreError::Corrupt)
}
