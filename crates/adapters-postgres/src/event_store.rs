//! `PgEventStore`: the event store port on PostgreSQL. An append locks its stream's row, checks
//! the expected version, then allocates global positions from the single-row head counter and
//! inserts its events in one statement, just before the commit (see the first migration for why).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::postgres::{PgRow, PgTypeInfo, PgValueRef};
use sqlx::{Column, PgPool, Postgres, Row, Type, TypeInfo, ValueRef};
use strata_ports::event_store::check_idempotency_lookup;
use strata_ports::{
    AppendOutcome, AppendRequest, EventStore, EventStoreError, IdempotencyRecord, Metadata,
    PayloadRef, PayloadVisitor, RecordedEvent, StreamId,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::append::to_u64;
use crate::error::event_store_error;
use crate::group_commit::GroupCommit;
use crate::readers::{self, ReaderPool};

const READ_STREAM: &str = "\
    SELECT global_position, event_id, stream_id, stream_version, event_type, schema_version, \
           data, metadata, recorded_at \
    FROM events WHERE stream_id = $1 AND stream_version > $2 \
    ORDER BY stream_version";

/// `READ_STREAM` with only what a fold needs.
const READ_STREAM_PAYLOADS: &str = "\
    SELECT global_position, stream_version, event_type, schema_version, data \
    FROM events WHERE stream_id = $1 AND stream_version > $2 \
    ORDER BY stream_version";

const READ_ALL: &str = "\
    SELECT global_position, event_id, stream_id, stream_version, event_type, schema_version, \
           data, metadata, recorded_at \
    FROM events WHERE global_position > $1 \
    ORDER BY global_position LIMIT $2";

const HEAD_POSITION: &str = "SELECT position FROM event_log_head";

const FIND_IDEMPOTENCY: &str = "\
    SELECT principal, key, fingerprint, stream_id, stream_version, global_position \
    FROM idempotency_keys WHERE principal = $1 AND key = $2";

/// The event store on a PostgreSQL pool (migrated with [`crate::migrate`]). Its clones share
/// one queue of appends, written in groups ([`crate::group_commit`]), and one pool of stream
/// readers.
#[derive(Debug, Clone)]
pub struct PgEventStore {
    pool: PgPool,
    /// Connections to the same database on which PostgreSQL may not sort, for the stream reads
    /// only ([`stream_readers`]); opened on the first read, inside the runtime.
    readers: Arc<OnceLock<ReaderPool>>,
    group: Arc<GroupCommit>,
}

impl PgEventStore {
    /// An event store on `pool`. Stream reads run on a second pool the store opens beside it,
    /// to the same database, with as many connections at most, each opened when first needed
    /// and closed after a minute unused ([`stream_readers`]).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            readers: Arc::default(),
            group: Arc::default(),
        }
    }

    /// A stream reader's connection.
    async fn reader(&self) -> Result<readers::Taken<'_>, EventStoreError> {
        readers::take(self.readers.get_or_init(|| stream_readers(&self.pool))).await
    }
}

/// A pool of readers like `pool`'s connections, to the same database, whose sessions have
/// `enable_sort` off ([`crate::readers`]).
///
/// Read by a bitmap scan and then sorted is how PostgreSQL reads a stream, analyzed table or
/// not: it prices the ordered walk of the `(stream_id, stream_version)` index as random heap
/// reads. The sort holds back the first row until the whole stream is read, so the client
/// cannot decode while the server reads. With sorting off it walks the index, and the rows
/// stream (decision 0012). The setting stays on these connections, which run only the two
/// stream reads, both ordered by that index; every other query keeps the server's planner.
/// `SET LOCAL` in a transaction around each read did the same for two more round trips, and
/// gained nothing.
fn stream_readers(pool: &PgPool) -> ReaderPool {
    let options = pool.options();
    readers::pool(
        pool.connect_options()
            .as_ref()
            .clone()
            .options([("enable_sort", "off")]),
        options.get_max_connections(),
        options.get_acquire_timeout(),
    )
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, EventStoreError> {
        if request.events.is_empty() {
            return Err(EventStoreError::EmptyAppend);
        }
        request.check_input()?;
        self.group.append(&self.pool, request).await
    }

    async fn read_stream(
        &self,
        stream_id: &StreamId,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        // Versions are at most i64::MAX, so nothing lies after a larger one.
        let Ok(after_version) = i64::try_from(after_version) else {
            return Ok(Vec::new());
        };
        let mut reader = self.reader().await?;
        let rows: Vec<EventRow> = sqlx::query_as(READ_STREAM)
            .bind(stream_id.as_str())
            .bind(after_version)
            .fetch_all(reader.start())
            .await
            .map_err(|e| event_store_error(&e))?;
        reader.done();
        recorded(rows)
    }

    async fn visit_stream<'v>(
        &self,
        stream_id: &StreamId,
        after_version: u64,
        visitor: &mut (dyn PayloadVisitor + 'v),
    ) -> Result<(), EventStoreError> {
        let Ok(after_version) = i64::try_from(after_version) else {
            return Ok(());
        };
        // On a connection of its own rather than on the pool: each row then passes through one
        // of sqlx's streams less, and nothing per row is copied or collected (decision 0012).
        let mut reader = self.reader().await?;
        let mut rows = sqlx::query(READ_STREAM_PAYLOADS)
            .bind(stream_id.as_str())
            .bind(after_version)
            .fetch(reader.start());
        let mut columns_checked = false;
        while let Some(row) = rows.try_next().await.map_err(|e| event_store_error(&e))? {
            // Every row of a result has its columns' types: checked on the first, so that no
            // value is checked again (sqlx's check per value was a tenth of a load).
            if !columns_checked {
                check_payload_columns(&row)?;
                columns_checked = true;
            }
            let payload = payload_of(&row).map_err(|e| event_store_error(&e))??;
            if visitor.visit(payload).is_break() {
                // The rest is not read: the connection is closed rather than handed on (its
                // server process would go on sending, and the next read would drain it).
                return Ok(());
            }
        }
        drop(rows);
        reader.done();
        Ok(())
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
        recorded(rows)
    }

    async fn head_position(&self) -> Result<u64, EventStoreError> {
        let position: Option<i64> = sqlx::query_scalar(HEAD_POSITION)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| event_store_error(&e))?;
        let position = position
            .ok_or_else(|| EventStoreError::Backend("the event log head row is missing".into()))?;
        u64::try_from(position)
            .map_err(|_| EventStoreError::Backend(format!("negative event log head {position}")))
    }

    async fn find_idempotency(
        &self,
        principal: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, EventStoreError> {
        check_idempotency_lookup(principal, key)?;
        let row: Option<IdempotencyRow> = sqlx::query_as(FIND_IDEMPOTENCY)
            .bind(principal)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| event_store_error(&e))?;
        row.map(IdempotencyRow::into_record).transpose()
    }
}

/// A row of `events`, as read (the columns of `READ_STREAM` and `READ_ALL`, in their order).
struct EventRow {
    global_position: i64,
    event_id: Uuid,
    stream_id: String,
    stream_version: i64,
    event_type: String,
    schema_version: i32,
    /// Decoded straight from the stored text; an error is kept for `into_recorded` to report.
    data: Result<Value, String>,
    metadata: Result<Metadata, String>,
    recorded_at: OffsetDateTime,
}

impl<'r> sqlx::FromRow<'r, PgRow> for EventRow {
    // By position: looking each column up by name, for every row, cost about 9% of a long
    // load (362 → 396 loads of 1,000 events per second).
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            global_position: row.try_get(0)?,
            event_id: row.try_get(1)?,
            stream_id: row.try_get(2)?,
            stream_version: row.try_get(3)?,
            event_type: row.try_get(4)?,
            schema_version: row.try_get(5)?,
            data: json_column(row, 6)?,
            metadata: json_column(row, 7)?,
            recorded_at: row.try_get(8)?,
        })
    }
}

impl EventRow {
    /// The envelope, or `Corrupt` when the row breaks its rules: stored data is never guessed at.
    /// `stream_id` is the row's stream, parsed already.
    fn into_recorded(self, stream_id: StreamId) -> Result<RecordedEvent, EventStoreError> {
        let data = self.data.map_err(|e| {
            EventStoreError::Corrupt(format!("data of event {}: {e}", self.event_id))
        })?;
        let metadata = self.metadata.map_err(|e| {
            EventStoreError::Corrupt(format!("metadata of event {}: {e}", self.event_id))
        })?;
        Ok(RecordedEvent {
            event_id: self.event_id,
            stream_id,
            stream_version: to_u64(self.stream_version, "stream version")?,
            global_position: to_u64(self.global_position, "global position")?,
            event_type: self.event_type,
            schema_version: u32::try_from(self.schema_version).map_err(|_| {
                EventStoreError::Corrupt(format!(
                    "schema version {} of event {}",
                    self.schema_version, self.event_id
                ))
            })?,
            data,
            metadata,
            recorded_at: self.recorded_at,
        })
    }
}

/// Whether a column's type reads as the Rust type a read takes it for.
type Fits = fn(&PgTypeInfo) -> bool;

/// The columns of `READ_STREAM_PAYLOADS` have the types [`payload_of`] reads them as. A schema
/// that differs is the database's fault, not the event's.
fn check_payload_columns(row: &PgRow) -> Result<(), EventStoreError> {
    let expected: [(&str, Fits); 5] = [
        ("BIGINT", <i64 as Type<Postgres>>::compatible),
        ("BIGINT", <i64 as Type<Postgres>>::compatible),
        ("TEXT", <&str as Type<Postgres>>::compatible),
        ("INT", <i32 as Type<Postgres>>::compatible),
        ("JSON", |found| found.name() == "JSON"),
    ];
    let columns = row.columns();
    if columns.len() != expected.len() {
        return Err(EventStoreError::Backend(format!(
            "a stream read returned {} columns, not {}",
            columns.len(),
            expected.len()
        )));
    }
    for (column, (wanted, fits)) in columns.iter().zip(expected) {
        if !fits(column.type_info()) {
            return Err(EventStoreError::Backend(format!(
                "column {} of a stream read is {}, not {wanted}",
                column.name(),
                column.type_info().name()
            )));
        }
    }
    Ok(())
}

/// A row of `READ_STREAM_PAYLOADS`, borrowed, its columns' types checked already
/// ([`check_payload_columns`]). The outer error is the driver's, the inner one a row breaking
/// the envelope's rules.
fn payload_of(row: &PgRow) -> Result<Result<PayloadRef<'_>, EventStoreError>, sqlx::Error> {
    let position: i64 = row.try_get_unchecked(0)?;
    let version: i64 = row.try_get_unchecked(1)?;
    let event_type: &str = row.try_get_unchecked(2)?;
    let schema_version: i32 = row.try_get_unchecked(3)?;
    let data = json_bytes(row.try_get_raw(4)?, 4)?;
    Ok((|| {
        let position = to_u64(position, "global position")?;
        let corrupt = |what: String| {
            EventStoreError::Corrupt(format!("{what} of the event at position {position}"))
        };
        let data = data.map_err(|e| corrupt(format!("data ({e})")))?;
        Ok(PayloadRef {
            stream_version: to_u64(version, "stream version")?,
            global_position: position,
            event_type,
            schema_version: u32::try_from(schema_version)
                .map_err(|_| corrupt(format!("schema version {schema_version}")))?,
            data: std::str::from_utf8(data).map_err(|e| corrupt(format!("data ({e})")))?,
        })
    })())
}

/// The stored text of a `json` column (migration 0006), which is what PostgreSQL sends for
/// `json` in either format. `Err` says why there is none: a row breaking its rules is corrupt,
/// not a failure of the database.
fn json_text(row: &PgRow, index: usize) -> Result<Result<&[u8], String>, sqlx::Error> {
    let value = row.try_get_raw(index)?;
    let stored_as = value.type_info();
    if stored_as.name() != "JSON" {
        return Ok(Err(format!("stored as {}, not JSON", stored_as.name())));
    }
    json_bytes(value, index)
}

/// [`json_text`] of a value known to be `json` (column `index`, for the driver's error).
fn json_bytes(value: PgValueRef<'_>, index: usize) -> Result<Result<&[u8], String>, sqlx::Error> {
    if value.is_null() {
        return Ok(Err("null".to_owned()));
    }
    value
        .as_bytes()
        .map(Ok)
        .map_err(|source| sqlx::Error::ColumnDecode {
            index: index.to_string(),
            source,
        })
}

/// A `json` column parsed from its stored text (see [`json_text`]); `Err` says why it is not a
/// `T`.
fn json_column<T: DeserializeOwned>(
    row: &PgRow,
    index: usize,
) -> Result<Result<T, String>, sqlx::Error> {
    Ok(json_text(row, index)?
        .and_then(|text| serde_json::from_slice(text).map_err(|e| e.to_string())))
}

/// A row of `idempotency_keys`, as read.
#[derive(sqlx::FromRow)]
struct IdempotencyRow {
    principal: String,
    key: String,
    fingerprint: String,
    stream_id: String,
    stream_version: i64,
    global_position: i64,
}

impl IdempotencyRow {
    fn into_record(self) -> Result<IdempotencyRecord, EventStoreError> {
        Ok(IdempotencyRecord {
            stream_id: parse_stream_id(&self.stream_id)?,
            stream_version: to_u64(self.stream_version, "stream version")?,
            global_position: to_u64(self.global_position, "global position")?,
            principal: self.principal,
            key: self.key,
            fingerprint: self.fingerprint,
        })
    }
}

/// The envelopes of `rows`. Runs of rows of one stream parse its id once: a stream read is one
/// run, and the log's batches are mostly runs too.
fn recorded(rows: Vec<EventRow>) -> Result<Vec<RecordedEvent>, EventStoreError> {
    let mut last: Option<StreamId> = None;
    rows.into_iter()
        .map(|row| {
            let stream_id = match &last {
                Some(id) if id.as_str() == row.stream_id => id.clone(),
                _ => {
                    let id = parse_stream_id(&row.stream_id)?;
                    last = Some(id.clone());
                    id
                }
            };
            row.into_recorded(stream_id)
        })
        .collect()
}

fn parse_stream_id(text: &str) -> Result<StreamId, EventStoreError> {
    StreamId::parse(text).map_err(|e| EventStoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::{AssertSqlSafe, PgConnection};
    use strata_ports::ExpectedVersion;
    use strata_ports::conformance::event_store::{request, stream};

    use super::*;

    /// The plan of `sql` for `stream` on `connection`, as text.
    async fn plan(connection: &mut PgConnection, sql: &str, stream: &StreamId) -> String {
        let lines: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("EXPLAIN {sql}")))
            .bind(stream.as_str())
            .bind(0_i64)
            .fetch_all(connection)
            .await
            .unwrap();
        lines.join("\n")
    }

    /// The server process behind a reader of `store`, read on it as a stream read would be.
    async fn reader_pid(store: &PgEventStore, end_the_read: bool) -> i32 {
        let mut reader = store.reader().await.unwrap();
        let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(reader.start())
            .await
            .unwrap();
        if end_the_read {
            reader.done();
        }
        pid
    }

    /// A reader goes back as it is after a read that ended, and serves the next read; one whose
    /// read did not end (an error, or a caller that gave up mid-read) is closed instead, and the
    /// next read opens a fresh connection.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_reader_serves_again_only_after_a_read_that_ended(pool: PgPool) {
        let store = PgEventStore::new(pool);

        let first = reader_pid(&store, true).await;
        let again = reader_pid(&store, false).await;
        let after_an_unended_read = reader_pid(&store, true).await;

        assert_eq!(again, first);
        assert_ne!(after_an_unended_read, first);
    }

    /// A store on `pool` and an order of three events appended through it.
    async fn an_order_of_three(pool: PgPool) -> (PgEventStore, StreamId) {
        let store = PgEventStore::new(pool);
        let order = stream("order");
        store
            .append(request(&order, ExpectedVersion::NoStream, 3))
            .await
            .unwrap();
        (store, order)
    }

    /// Counts the rows it is handed, and stops after `stop_after` of them if given.
    struct Count(usize, Option<usize>);

    impl PayloadVisitor for Count {
        fn visit(&mut self, _: PayloadRef<'_>) -> std::ops::ControlFlow<()> {
            self.0 += 1;
            match self.1 {
                Some(stop) if self.0 >= stop => std::ops::ControlFlow::Break(()),
                _ => std::ops::ControlFlow::Continue(()),
            }
        }
    }

    /// Both stream reads hand their connection on when they have read every row; a visit that
    /// stopped before the end leaves rows the server is still sending, and closes it instead.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn stream_reads_hand_their_connection_on_only_when_read_to_the_end(pool: PgPool) {
        let (store, order) = an_order_of_three(pool).await;
        let first = reader_pid(&store, true).await;

        assert_eq!(store.read_stream(&order, 0).await.unwrap().len(), 3);
        let mut all = Count(0, None);
        store.visit_stream(&order, 0, &mut all).await.unwrap();
        assert_eq!(all.0, 3);
        let after_whole_reads = reader_pid(&store, true).await;
        let mut some = Count(0, Some(1));
        store.visit_stream(&order, 0, &mut some).await.unwrap();
        assert_eq!(some.0, 1);
        let after_a_stopped_visit = reader_pid(&store, true).await;

        assert_eq!(after_whole_reads, first);
        assert_ne!(after_a_stopped_visit, first);
    }

    /// A reader idle for more than a second is pinged before it is handed out, so a connection
    /// the server closed meanwhile (a restart, a failover) is replaced instead of failing a read.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_reader_the_server_closed_while_idle_is_replaced(pool: PgPool) {
        let (store, order) = an_order_of_three(pool.clone()).await;
        let closed = reader_pid(&store, true).await;
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(closed)
            .execute(&pool)
            .await
            .unwrap();
        tokio::time::sleep(crate::PING_WHEN_IDLE_FOR + std::time::Duration::from_millis(200)).await;

        let read = store.read_stream(&order, 0).await;

        assert_eq!(read.unwrap().len(), 3);
        assert_ne!(reader_pid(&store, true).await, closed);
    }

    /// Both stream reads walk the stream's index in order, so their rows stream, on a fresh
    /// table and on an analyzed one with other streams, where the store's own pool would read
    /// by a bitmap scan and sort (`stream_readers`).
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn stream_reads_walk_the_index_in_order_without_a_sort(pool: PgPool) {
        let store = PgEventStore::new(pool.clone());
        let order = stream("order");
        store
            .append(request(&order, ExpectedVersion::NoStream, 1000))
            .await
            .unwrap();
        for analyzed in [false, true] {
            if analyzed {
                for _ in 0..20 {
                    let other = request(&stream("order"), ExpectedVersion::NoStream, 500);
                    store.append(other).await.unwrap();
                }
                sqlx::query("ANALYZE events").execute(&pool).await.unwrap();
            }
            for sql in [READ_STREAM, READ_STREAM_PAYLOADS] {
                let mut reader = store.reader().await.unwrap();
                let read = plan(reader.start(), sql, &order).await;
                reader.done();
                let shared = plan(&mut pool.acquire().await.unwrap(), sql, &order).await;
                assert!(
                    read.contains("Index Scan using events_stream_version_key")
                        && !read.contains("Sort"),
                    "analyzed: {analyzed}\n{read}\n(on the shared pool:\n{shared})"
                );
            }
        }
    }
}
