//! `SqliteEventStore`: the event store port on SQLite. An append is one `BEGIN IMMEDIATE`
//! transaction: it holds the database's single write lock from its first read (the stream's
//! version) to its commit, so the expected-version check is exact, the idempotency lookup sees
//! every committed claim, and positions, numbered after the highest stored one, follow commit
//! order (see the first migration).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{SqliteConnection, SqlitePool};
use strata_ports::event_store::check_idempotency_lookup;
use strata_ports::{
    AppendOutcome, AppendRequest, EventStore, EventStoreError, IdempotencyRecord, Metadata,
    RecordedEvent, StreamId,
};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::codec::{self, micros};
use crate::error::event_store_error;
use crate::leases::SqliteLogWakeups;
use crate::write::begin_write;

const STREAM_VERSION: &str = "SELECT version FROM streams WHERE stream_id = ?1";

const SET_STREAM_VERSION: &str = "\
    INSERT INTO streams (stream_id, version) VALUES (?1, ?2) \
    ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version";

const IDEMPOTENCY_KEY_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM idempotency_keys WHERE principal = ?1 AND key = ?2)";

const HEAD_POSITION: &str = "SELECT coalesce(max(global_position), 0) FROM events";

const INSERT_EVENT: &str = "\
    INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type, \
                        schema_version, data, metadata, recorded_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

const INSERT_IDEMPOTENCY: &str = "\
    INSERT INTO idempotency_keys (principal, key, fingerprint, stream_id, stream_version, \
                                  global_position, recorded_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

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
    /// Bumped after every committed append: the in-process projectors' wake-up.
    appended: Arc<watch::Sender<u64>>,
}

impl SqliteEventStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            appended: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Wake-ups sent by the appends of this store (and its clones). Another process appending
    /// to the same file sends none: its projectors poll.
    pub fn wakeups(&self) -> SqliteLogWakeups {
        SqliteLogWakeups::new(self.appended.clone())
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, EventStoreError> {
        if request.events.is_empty() {
            return Err(EventStoreError::EmptyAppend);
        }
        request.check_input()?;
        if request.idempotency.is_none() && request.expected.can_be_refused_for_good() {
            // Versions only grow: an append the current version already refuses for good is
            // refused without queueing for the write lock, so a writer that lost a race
            // reloads and retries sooner. The check under the lock still decides the rest.
            let current: Option<i64> = sqlx::query_scalar(STREAM_VERSION)
                .bind(request.stream_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| event_store_error(&e))?;
            let current = to_u64(current.unwrap_or(0), "stream version")?;
            if request.expected.refused_for_good(current) {
                request.expected.check(&request.stream_id, current)?;
            }
        }
        let mut tx = begin_write(&self.pool)
            .await
            .map_err(|e| event_store_error(&e))?;
        let outcome = match append_in(&mut tx, &request).await {
            Ok(outcome) => outcome,
            Err(error) => {
                // Give the write lock back now rather than when the pool recycles the
                // connection; the append failed already, so a failed rollback adds nothing.
                if let Err(rollback) = tx.rollback().await {
                    tracing::debug!(error = %rollback, "rollback after a failed append failed");
                }
                tracing::debug!(stream_id = %request.stream_id, %error, "append refused");
                return Err(error);
            }
        };
        tx.commit().await.map_err(|e| event_store_error(&e))?;
        self.appended
            .send_modify(|count| *count = count.wrapping_add(1));
        tracing::debug!(
            stream_id = %request.stream_id,
            stream_version = outcome.stream_version,
            global_position = outcome.global_position,
            events = request.events.len(),
            "appended"
        );
        Ok(outcome)
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

/// The append itself, inside the caller's `BEGIN IMMEDIATE` transaction (the write lock is
/// held, so nothing else changes the database between these statements).
async fn append_in(
    conn: &mut SqliteConnection,
    request: &AppendRequest,
) -> Result<AppendOutcome, EventStoreError> {
    let stream = request.stream_id.as_str();
    let current: Option<i64> = sqlx::query_scalar(STREAM_VERSION)
        .bind(stream)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| event_store_error(&e))?;
    let current = to_u64(current.unwrap_or(0), "stream version")?;
    // The key first, as on PostgreSQL: a retry of an applied command is a replay, not a
    // version conflict.
    if let Some(claim) = &request.idempotency {
        let taken: bool = sqlx::query_scalar(IDEMPOTENCY_KEY_EXISTS)
            .bind(&claim.principal)
            .bind(&claim.key)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| event_store_error(&e))?;
        if taken {
            return Err(EventStoreError::IdempotencyKeyTaken {
                key: claim.key.clone(),
            });
        }
    }
    request.expected.check(&request.stream_id, current)?;

    let head: i64 = sqlx::query_scalar(HEAD_POSITION)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| event_store_error(&e))?;
    let mut version = i64::try_from(current)
        .map_err(|_| EventStoreError::Corrupt(format!("stream {stream} at version {current}")))?;
    let mut position = head;
    for event in &request.events {
        version = version.checked_add(1).ok_or_else(|| {
            EventStoreError::Backend(format!("stream {stream} is out of versions"))
        })?;
        position = position
            .checked_add(1)
            .ok_or_else(|| EventStoreError::Backend("the log is out of positions".into()))?;
        let metadata = serde_json::to_string(&event.metadata).map_err(|e| {
            EventStoreError::Backend(format!("metadata of event {}: {e}", event.event_id))
        })?;
        sqlx::query(INSERT_EVENT)
            .bind(position)
            .bind(codec::text_id(event.event_id))
            .bind(stream)
            .bind(version)
            .bind(&event.event_type)
            .bind(i64::from(event.schema_version))
            .bind(event.data.to_string())
            .bind(metadata)
            .bind(micros(event.recorded_at))
            .execute(&mut *conn)
            .await
            .map_err(|e| event_store_error(&e))?;
    }
    sqlx::query(SET_STREAM_VERSION)
        .bind(stream)
        .bind(version)
        .execute(&mut *conn)
        .await
        .map_err(|e| event_store_error(&e))?;
    if let Some(claim) = &request.idempotency {
        sqlx::query(INSERT_IDEMPOTENCY)
            .bind(&claim.principal)
            .bind(&claim.key)
            .bind(&claim.fingerprint)
            .bind(stream)
            .bind(version)
            .bind(position)
            .bind(micros(OffsetDateTime::now_utc()))
            .execute(&mut *conn)
            .await
            .map_err(|e| event_store_error(&e))?;
    }
    Ok(AppendOutcome {
        stream_version: to_u64(version, "stream version")?,
        global_position: to_u64(position, "global position")?,
    })
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

fn to_u64(value: i64, what: &str) -> Result<u64, EventStoreError> {
    codec::to_u64(value, what).map_err(EventStoreError::Corrupt)
}
