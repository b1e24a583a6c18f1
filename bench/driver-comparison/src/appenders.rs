//! The appends under comparison: the real sqlx adapter, and the same transaction hand-written on
//! sqlx and on tokio-postgres through deadpool: statement by statement, pipelined, and as one
//! autocommit statement.
//!
//! Every variant keeps the adapter's semantics: lock the stream row (upserting it), check the
//! expected version against the version read under that lock, set the stream's version, bump the
//! single-row head counter and insert the events in the statement just before the commit; a
//! refused append writes nothing, and a failing statement rolls the whole append back. All but
//! the one-statement variants check the version in Rust, as the adapter does.
//!
//! These are the statements of 2026-11-23 (decision 0003), kept as measured: they bind the
//! payloads as `jsonb[]`, which PostgreSQL casts on insert since migration 0006 made the columns
//! `json`. The adapter itself now binds text (`--group-statement` times its current statement).

use std::time::Duration;

use anyhow::{Context, anyhow};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use strata_adapters_postgres::{PgEventStore, PgSettings};
use strata_ports::{AppendOutcome, AppendRequest, EventStore, EventStoreError, ExpectedVersion};
use time::OffsetDateTime;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::Variant;

/// The adapter's stream lock, verbatim.
const LOCK_STREAM: &str = "\
    INSERT INTO streams (stream_id, version) VALUES ($1, 0) \
    ON CONFLICT (stream_id) DO UPDATE SET version = streams.version \
    RETURNING version";

/// The adapter's `UPDATE streams` and its head-counter-and-insert statement folded into one:
/// the stream row is already locked by this transaction, so the extra CTE waits for nothing and
/// the head lock is still the last lock taken. Parameters as in the adapter's `INSERT_EVENTS`:
/// $1 stream id, $2 event count, $3 stream version before the append, $4..$9 the event columns,
/// $10..$12 the idempotency claim (all null without one).
const APPEND: &str = "\
    WITH bumped AS ( \
        UPDATE streams SET version = $3::bigint + $2::bigint WHERE stream_id = $1::text \
    ), head AS ( \
        UPDATE event_log_head SET position = position + $2 RETURNING position \
    ), appended AS ( \
        INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type, \
                            schema_version, data, metadata, recorded_at) \
        SELECT head.position - $2 + e.n, e.event_id, $1, $3 + e.n, e.event_type, \
               e.schema_version, e.data, e.metadata, e.recorded_at \
        FROM head, \
             UNNEST($4::uuid[], $5::text[], $6::int[], $7::jsonb[], $8::jsonb[], \
                    $9::timestamptz[]) \
             WITH ORDINALITY AS e(event_id, event_type, schema_version, data, metadata, \
                                  recorded_at, n) \
    ), claimed AS ( \
        INSERT INTO idempotency_keys (principal, key, fingerprint, stream_id, stream_version, \
                                      global_position) \
        SELECT $10::text, $11::text, $12::text, $1, $3 + $2, head.position \
        FROM head WHERE $10::text IS NOT NULL \
    ) \
    SELECT position FROM head";

/// The check moved into SQL, so that the whole append is one autocommit statement: 1 round trip
/// on any driver, no pipelining needed. `upserted` locks the stream row and bumps its version
/// only if it is at the expected version (an UPDATE or ON CONFLICT re-reads the row once a
/// concurrent holder commits, so the check is exact under the lock); `head` takes the head lock
/// only if that succeeded (its condition is a one-time filter evaluated before it scans, so the
/// stream lock is still taken first); the commit follows at once, in the same round trip.
/// A refused append writes nothing; a failing statement rolls back as a whole.
/// Parameters as in [`APPEND`], with $3 the expected version. Returns the new head position
/// (null when refused) and the stream's version as of the statement's snapshot, which may be
/// older than the version the refusal saw under the lock.
macro_rules! one_statement_tail {
    () => {
        "\
        , head AS ( \
            UPDATE event_log_head SET position = position + $2 \
            WHERE EXISTS (SELECT 1 FROM upserted) \
            RETURNING position \
        ), appended AS ( \
            INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type, \
                                schema_version, data, metadata, recorded_at) \
            SELECT head.position - $2 + e.n, e.event_id, $1, upserted.base + e.n, e.event_type, \
                   e.schema_version, e.data, e.metadata, e.recorded_at \
            FROM head, upserted, \
                 UNNEST($4::uuid[], $5::text[], $6::int[], $7::jsonb[], $8::jsonb[], \
                        $9::timestamptz[]) \
                 WITH ORDINALITY AS e(event_id, event_type, schema_version, data, metadata, \
                                      recorded_at, n) \
        ), claimed AS ( \
            INSERT INTO idempotency_keys (principal, key, fingerprint, stream_id, \
                                          stream_version, global_position) \
            SELECT $10::text, $11::text, $12::text, $1, upserted.base + $2, head.position \
            FROM head, upserted WHERE $10::text IS NOT NULL \
        ) \
        SELECT (SELECT position FROM head) AS position, \
               (SELECT version FROM streams WHERE stream_id = $1) AS seen"
    };
}

/// [`one_statement_tail`] for `Exact(0)`: creates the stream, or takes it if it is at 0.
const ONE_STATEMENT_NEW: &str = concat!(
    "WITH upserted AS ( \
        INSERT INTO streams AS s (stream_id, version) VALUES ($1::text, $3::bigint + $2::bigint) \
        ON CONFLICT (stream_id) DO UPDATE SET version = s.version + $2 \
        WHERE s.version = $3 \
        RETURNING s.version - $2 AS base \
    )",
    one_statement_tail!()
);

/// [`one_statement_tail`] for `Exact(n)`, n ≥ 1: the stream must exist, at n.
const ONE_STATEMENT_EXISTING: &str = concat!(
    "WITH upserted AS ( \
        UPDATE streams SET version = version + $2::bigint \
        WHERE stream_id = $1::text AND version = $3::bigint \
        RETURNING version - $2 AS base \
    )",
    one_statement_tail!()
);

/// Why an append did not land.
#[derive(Debug)]
pub enum AppendError {
    /// The expected version did not match; the transaction was rolled back.
    Conflict { actual: u64 },
    /// Anything else.
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for AppendError {
    fn from(error: E) -> Self {
        Self::Failed(error.into())
    }
}

/// One configured way of appending, with its own pool of `connections` connections.
pub enum Appender {
    Adapter(PgEventStore),
    SqlxFolded(PgPool),
    TpFolded(Pool),
    TpPipelined(Pool),
    SqlxOneStatement(PgPool),
    TpOneStatement(Pool),
}

impl Appender {
    /// Opens the variant's pool on `url` (connections are opened lazily, on first use).
    pub async fn open(variant: Variant, url: &str, connections: usize) -> anyhow::Result<Self> {
        let max = u32::try_from(connections)?;
        let timeout = Duration::from_secs(30);
        Ok(match variant {
            // Exactly what production gets: the adapter's own constructor, default pool options
            // (which ping every idle connection before handing it out).
            Variant::SqlxAdapter => {
                let settings = PgSettings {
                    url: url.to_owned(),
                    max_connections: max,
                    acquire_timeout: timeout,
                };
                Self::Adapter(PgEventStore::new(
                    strata_adapters_postgres::connect(&settings).await?,
                ))
            }
            Variant::SqlxAdapterNoPing => Self::Adapter(PgEventStore::new(
                sqlx_pool_without_ping(url, max, timeout).await?,
            )),
            Variant::SqlxFolded => {
                Self::SqlxFolded(sqlx_pool_without_ping(url, max, timeout).await?)
            }
            Variant::TpFolded => Self::TpFolded(deadpool(url, connections)?),
            Variant::TpPipelined => Self::TpPipelined(deadpool(url, connections)?),
            Variant::SqlxOneStatement => {
                Self::SqlxOneStatement(sqlx_pool_without_ping(url, max, timeout).await?)
            }
            Variant::TpOneStatement => Self::TpOneStatement(deadpool(url, connections)?),
            Variant::PgbenchSeq | Variant::PgbenchPipelined => {
                return Err(anyhow!("{variant:?} runs in pgbench, not here"));
            }
        })
    }

    pub async fn close(self) {
        match self {
            Self::Adapter(_) | Self::SqlxFolded(_) | Self::SqlxOneStatement(_) => {
                // PgEventStore does not expose its pool; dropping it closes the connections.
            }
            Self::TpFolded(pool) | Self::TpPipelined(pool) | Self::TpOneStatement(pool) => {
                pool.close();
            }
        }
    }

    pub async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        match self {
            Self::Adapter(store) => match store.append(request).await {
                Ok(outcome) => Ok(outcome),
                Err(EventStoreError::WrongExpectedVersion { actual, .. }) => {
                    Err(AppendError::Conflict { actual })
                }
                Err(other) => Err(AppendError::Failed(other.into())),
            },
            Self::SqlxFolded(pool) => sqlx_folded(pool, &request).await,
            Self::TpFolded(pool) => tp_folded(pool, &request).await,
            Self::TpPipelined(pool) => tp_pipelined(pool, &request).await,
            Self::SqlxOneStatement(pool) => sqlx_one_statement(pool, &request).await,
            Self::TpOneStatement(pool) => tp_one_statement(pool, &request).await,
        }
    }
}

/// The adapter's pool options, less the ping sqlx sends before handing out an idle connection.
async fn sqlx_pool_without_ping(url: &str, max: u32, timeout: Duration) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(timeout)
        .test_before_acquire(false)
        .connect(url)
        .await?)
}

/// A deadpool of tokio-postgres clients; `Fast` recycling sends nothing to the server.
fn deadpool(url: &str, connections: usize) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = url.parse()?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager).max_size(connections).build()?)
}

/// The adapter's optimistic concurrency check, verbatim.
fn accepted(expected: ExpectedVersion, actual: u64) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual == 0,
        ExpectedVersion::StreamExists => actual >= 1,
        ExpectedVersion::Exact(version) => actual == version,
    }
}

/// The events of one append as column arrays, as the adapter binds them.
struct Columns {
    count: i64,
    event_ids: Vec<Uuid>,
    event_types: Vec<String>,
    schema_versions: Vec<i32>,
    data: Vec<Value>,
    metadata: Vec<Value>,
    recorded_at: Vec<OffsetDateTime>,
}

impl Columns {
    fn of(request: &AppendRequest) -> anyhow::Result<Self> {
        let events = &request.events;
        anyhow::ensure!(!events.is_empty(), "an append needs at least one event");
        Ok(Self {
            count: i64::try_from(events.len())?,
            event_ids: events.iter().map(|e| e.event_id).collect(),
            event_types: events.iter().map(|e| e.event_type.clone()).collect(),
            schema_versions: events
                .iter()
                .map(|e| i32::try_from(e.schema_version))
                .collect::<Result<_, _>>()?,
            data: events.iter().map(|e| e.data.clone()).collect(),
            metadata: events
                .iter()
                .map(|e| serde_json::to_value(&e.metadata))
                .collect::<Result<_, _>>()?,
            recorded_at: events.iter().map(|e| e.recorded_at).collect(),
        })
    }
}

fn outcome(last_version: i64, last_position: i64) -> Result<AppendOutcome, AppendError> {
    Ok(AppendOutcome {
        stream_version: u64::try_from(last_version)?,
        global_position: u64::try_from(last_position)?,
    })
}

/// sqlx, 4 round trips: BEGIN; lock; (check); folded append; COMMIT.
async fn sqlx_folded(pool: &PgPool, request: &AppendRequest) -> Result<AppendOutcome, AppendError> {
    let stream = request.stream_id.as_str();
    let columns = Columns::of(request)?;
    let mut tx = pool.begin().await?;
    let current: i64 = sqlx::query_scalar(LOCK_STREAM)
        .bind(stream)
        .fetch_one(&mut *tx)
        .await?;
    let actual = u64::try_from(current)?;
    if !accepted(request.expected, actual) {
        tx.rollback().await?;
        return Err(AppendError::Conflict { actual });
    }
    let position: i64 = sqlx::query_scalar(APPEND)
        .bind(stream)
        .bind(columns.count)
        .bind(current)
        .bind(columns.event_ids)
        .bind(columns.event_types)
        .bind(columns.schema_versions)
        .bind(columns.data)
        .bind(columns.metadata)
        .bind(columns.recorded_at)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .fetch_optional(&mut *tx)
        .await?
        .context("the event log head row is missing")?;
    // A statement error above drops `tx`, and sqlx rolls back a dropped transaction.
    tx.commit().await?;
    outcome(current + columns.count, position)
}

/// tokio-postgres, 4 round trips, one statement at a time: the same as [`sqlx_folded`].
async fn tp_folded(pool: &Pool, request: &AppendRequest) -> Result<AppendOutcome, AppendError> {
    let stream = request.stream_id.as_str();
    let columns = Columns::of(request)?;
    let client = pool.get().await?;
    let lock = client.prepare_cached(LOCK_STREAM).await?;
    let append = client.prepare_cached(APPEND).await?;
    client.batch_execute("BEGIN").await?;
    let result = async {
        let current: i64 = client.query_one(&lock, &[&stream]).await?.try_get(0)?;
        let actual = u64::try_from(current)?;
        if !accepted(request.expected, actual) {
            return Err(AppendError::Conflict { actual });
        }
        let row = client
            .query_opt(&append, &append_params(&stream, &columns, &current))
            .await?
            .context("the event log head row is missing")?;
        let position: i64 = row.try_get(0)?;
        client.batch_execute("COMMIT").await?;
        outcome(current + columns.count, position)
    }
    .await;
    if result.is_err() {
        // Whatever failed, leave no transaction open on a connection going back to the pool.
        client.batch_execute("ROLLBACK").await?;
    }
    result
}

/// tokio-postgres, 2 round trips: [BEGIN, lock] sent together; (check in Rust); [folded append,
/// COMMIT] sent together. tokio-postgres sends each request when its future is first polled and
/// ends each with its own Sync, so `join!` puts both on the wire before either answer arrives.
/// If the append fails, the transaction is aborted and the pipelined COMMIT ends it as a
/// ROLLBACK: a failed append still leaves nothing behind. The price: nothing the client learns
/// from the append's answer can stop the commit, so every check after the stream lock must be
/// in SQL (here only "the head row exists", which the schema's triggers guarantee).
async fn tp_pipelined(pool: &Pool, request: &AppendRequest) -> Result<AppendOutcome, AppendError> {
    let stream = request.stream_id.as_str();
    let columns = Columns::of(request)?;
    let client = pool.get().await?;
    let lock = client.prepare_cached(LOCK_STREAM).await?;
    let append = client.prepare_cached(APPEND).await?;

    let lock_params: [Param<'_>; 1] = [&stream];
    let (begun, locked) = tokio::join!(
        client.batch_execute("BEGIN"),
        client.query_one(&lock, &lock_params)
    );
    let checked = (|| {
        begun?;
        let current: i64 = locked?.try_get(0)?;
        let actual = u64::try_from(current)?;
        if accepted(request.expected, actual) {
            Ok(current)
        } else {
            Err(AppendError::Conflict { actual })
        }
    })();
    let current = match checked {
        Ok(current) => current,
        Err(error) => {
            client.batch_execute("ROLLBACK").await?;
            return Err(error);
        }
    };

    let params = append_params(&stream, &columns, &current);
    let (appended, committed) = tokio::join!(
        client.query_opt(&append, &params),
        client.batch_execute("COMMIT")
    );
    let appended = appended.and_then(|row| row.map(|r| r.try_get::<_, i64>(0)).transpose());
    match (appended, committed) {
        (Ok(Some(position)), Ok(())) => outcome(current + columns.count, position),
        (Ok(None), _) => Err(anyhow!("the event log head row is missing").into()),
        (Err(error), _) | (Ok(_), Err(error)) => {
            // The COMMIT of an aborted transaction already rolled it back; this one only makes
            // sure, in case the append could not even be sent.
            client.batch_execute("ROLLBACK").await?;
            Err(error.into())
        }
    }
}

/// The expected version the one-statement variants support, and their statement for it.
fn one_statement(request: &AppendRequest) -> anyhow::Result<(i64, &'static str)> {
    match request.expected {
        ExpectedVersion::Exact(0) => Ok((0, ONE_STATEMENT_NEW)),
        ExpectedVersion::Exact(n) => Ok((i64::try_from(n)?, ONE_STATEMENT_EXISTING)),
        other => Err(anyhow!(
            "the one-statement bench variant supports exact versions only, not {other}"
        )),
    }
}

fn one_statement_outcome(
    expected: i64,
    count: i64,
    position: Option<i64>,
    seen: Option<i64>,
) -> Result<AppendOutcome, AppendError> {
    match position {
        Some(position) => outcome(expected + count, position),
        None => Err(AppendError::Conflict {
            actual: u64::try_from(seen.unwrap_or(0))?,
        }),
    }
}

/// sqlx, 1 round trip: the whole append in one autocommit statement.
async fn sqlx_one_statement(
    pool: &PgPool,
    request: &AppendRequest,
) -> Result<AppendOutcome, AppendError> {
    let (expected, sql) = one_statement(request)?;
    let columns = Columns::of(request)?;
    let (position, seen): (Option<i64>, Option<i64>) = sqlx::query_as(sql)
        .bind(request.stream_id.as_str())
        .bind(columns.count)
        .bind(expected)
        .bind(columns.event_ids)
        .bind(columns.event_types)
        .bind(columns.schema_versions)
        .bind(columns.data)
        .bind(columns.metadata)
        .bind(columns.recorded_at)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .fetch_one(pool)
        .await?;
    one_statement_outcome(expected, columns.count, position, seen)
}

/// tokio-postgres, 1 round trip: the same statement as [`sqlx_one_statement`].
async fn tp_one_statement(
    pool: &Pool,
    request: &AppendRequest,
) -> Result<AppendOutcome, AppendError> {
    let (expected, sql) = one_statement(request)?;
    let stream = request.stream_id.as_str();
    let columns = Columns::of(request)?;
    let client = pool.get().await?;
    let statement = client.prepare_cached(sql).await?;
    let row = client
        .query_one(&statement, &append_params(&stream, &columns, &expected))
        .await?;
    one_statement_outcome(expected, columns.count, row.try_get(0)?, row.try_get(1)?)
}

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

fn append_params<'a>(
    stream: &'a &'a str,
    columns: &'a Columns,
    current: &'a i64,
) -> [Param<'a>; 12] {
    [
        stream,
        &columns.count,
        current,
        &columns.event_ids,
        &columns.event_types,
        &columns.schema_versions,
        &columns.data,
        &columns.metadata,
        &columns.recorded_at,
        &NONE,
        &NONE,
        &NONE,
    ]
}

const NONE: Option<&str> = None;
