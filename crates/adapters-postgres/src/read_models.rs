//! The read side on PostgreSQL: `PgProjectionStore` (a batch is one transaction that holds the
//! projection's checkpoint row from its first statement to its commit), `PgReadModels` (the
//! queries), `PgLogWakeup` (LISTEN on the channel every append notifies) and `PgLeases`
//! (session advisory locks on a connection taken out of the pool).
//!
//! Rebuilds: the tables of a projection are copied empty into the schema
//! `strata_rebuild_<projection>`; a rebuild batch puts that schema first on its `search_path`, so
//! the same unqualified statements fill the copies. The checkpoint and dead-letter tables are
//! always named `public.…`. The swap moves the live tables out and the rebuilt ones in, in one
//! transaction that holds the live checkpoint row.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgListener;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Row, Transaction};
use strata_ports::limits::{MAX_LOOKUP_BYTES, check_text};
use strata_ports::{
    AccountRow, CheckpointRow, CustomerStatsRow, DeadLetter, Generation, LogWakeup, LogWakeups,
    Metadata, OrderLineRow, OrderSummaryRow, Positioned, ProjectionBatch, ProjectionLease,
    ProjectionLeases, ProjectionStore, ReadModelError, ReadModels, RebuildSwap, RecordedEvent,
    StatusCounts, StreamId, TransactionKind, TransactionRow,
};
use uuid::Uuid;

use crate::error::read_model_error;

/// The channel every append notifies on commit (in the append functions, migrations 0005 to
/// 0007). The payload is empty: a notification is only a wake-up.
pub const EVENTS_CHANNEL: &str = "strata_events";

/// `GRANT` statements that give `schema`'s copy of a table what the table ($1) grants to roles
/// other than its owner.
const COPY_GRANTS: &str = "\
    SELECT format('GRANT %s ON %I.%I TO %s', a.privilege_type, $2, c.relname, \
                  CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
                       ELSE quote_ident(pg_get_userbyid(a.grantee)) END) \
    FROM pg_class c, aclexplode(c.relacl) a \
    WHERE c.oid = $1::regclass AND a.grantee <> c.relowner";

/// `ALTER INDEX` statements that rename the indexes of the new table ($2) to the names of the
/// old table's ($1) indexes with the same definition.
const RESTORE_INDEX_NAMES: &str = "\
    SELECT format('ALTER INDEX public.%I RENAME TO %I', n.relname, o.relname) \
    FROM pg_index oi JOIN pg_class o ON o.oid = oi.indexrelid, \
         pg_index ni JOIN pg_class n ON n.oid = ni.indexrelid \
    WHERE oi.indrelid = $1::regclass AND ni.indrelid = $2::regclass \
      AND n.relname <> o.relname \
      AND regexp_replace(pg_get_indexdef(oi.indexrelid), '^.* USING ', '') \
        = regexp_replace(pg_get_indexdef(ni.indexrelid), '^.* USING ', '') \
      AND oi.indisunique = ni.indisunique";

/// Grants `schema`'s copy of `public.<table>` what the live table grants.
pub(crate) async fn copy_grants(
    conn: &mut PgConnection,
    table: &str,
    schema: &str,
) -> Result<(), sqlx::Error> {
    let grants: Vec<String> = sqlx::query_scalar(COPY_GRANTS)
        .bind(format!("public.{table}"))
        .bind(schema)
        .fetch_all(&mut *conn)
        .await?;
    execute_all(conn, grants).await
}

/// Runs statements built from trusted parts (schema and table names of this adapter), in order.
pub(crate) async fn execute_all(
    conn: &mut PgConnection,
    statements: impl IntoIterator<Item = String>,
) -> Result<(), sqlx::Error> {
    for sql in statements {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Gives the indexes of `public.<table>` (just swapped in) the names of the indexes of
/// `<retired>.<table>` (just swapped out).
pub(crate) async fn restore_index_names(
    conn: &mut PgConnection,
    retired: &str,
    table: &str,
) -> Result<(), sqlx::Error> {
    let renames: Vec<String> = sqlx::query_scalar(RESTORE_INDEX_NAMES)
        .bind(format!("{retired}.{table}"))
        .bind(format!("public.{table}"))
        .fetch_all(&mut *conn)
        .await?;
    execute_all(conn, renames).await
}

/// DDL of rebuilds says "does not exist, skipping" and "drop cascades": expected, not news.
const QUIET: &str = "SET LOCAL client_min_messages = warning";

/// The tables of each projection, in the order a rebuild copies and swaps them.
const PROJECTIONS: &[(&str, &[&str])] = &[
    ("orders", &["order_summaries", "customer_stats"]),
    ("accounts", &["account_summaries", "account_transactions"]),
    // The search index lives behind the `SearchIndex` port; only its checkpoint and dead
    // letters are here.
    ("search", &[]),
];

fn tables_of(projection: &str) -> Result<&'static [&'static str], ReadModelError> {
    PROJECTIONS
        .iter()
        .find(|(name, _)| *name == projection)
        .map(|(_, tables)| *tables)
        .ok_or_else(|| ReadModelError::NotFound(format!("no projection named {projection:?}")))
}

/// The names of the projections this adapter stores.
pub fn projection_names() -> Vec<&'static str> {
    PROJECTIONS.iter().map(|(name, _)| *name).collect()
}

/// The row key of a projection's checkpoint and dead letters in a generation.
fn key(projection: &str, generation: Generation) -> String {
    match generation {
        Generation::Live => projection.to_owned(),
        Generation::Rebuild => format!("{projection}:rebuild"),
    }
}

/// The schema of a rebuild. `projection` comes from [`PROJECTIONS`], so it is a safe identifier.
fn rebuild_schema(projection: &str) -> String {
    format!("strata_rebuild_{projection}")
}

fn to_i64(value: u64, what: &str) -> Result<i64, ReadModelError> {
    i64::try_from(value).map_err(|_| ReadModelError::Backend(format!("{what} {value} too large")))
}

fn to_u64(value: i64, what: &str) -> Result<u64, ReadModelError> {
    u64::try_from(value).map_err(|_| ReadModelError::Corrupt(format!("negative {what} {value}")))
}

fn db(error: sqlx::Error) -> ReadModelError {
    read_model_error(&error)
}

const CREATE_CHECKPOINT: &str = "\
    INSERT INTO public.projection_checkpoints (projection) VALUES ($1) \
    ON CONFLICT (projection) DO NOTHING";

const LOCK_CHECKPOINT: &str =
    "SELECT position FROM public.projection_checkpoints WHERE projection = $1 FOR UPDATE";

// ---------------------------------------------------------------------------------------------
// Batches

/// The read models' storage on a PostgreSQL pool (migrated with [`crate::migrate`]).
#[derive(Debug, Clone)]
pub struct PgProjectionStore {
    pool: PgPool,
}

impl PgProjectionStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// One batch: a transaction holding the checkpoint row.
struct PgBatch {
    tx: Transaction<'static, Postgres>,
    key: String,
    checkpoint: u64,
}

impl std::fmt::Debug for PgBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBatch")
            .field("key", &self.key)
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
}

/// Locks (creating if missing) the checkpoint row of `key` in `conn`'s transaction. A
/// concurrent creator makes the INSERT wait for its commit; the SELECT, a new snapshot, then
/// sees the row either way.
async fn lock_checkpoint(conn: &mut PgConnection, key: &str) -> Result<u64, ReadModelError> {
    sqlx::query(CREATE_CHECKPOINT)
        .bind(key)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let position: i64 = sqlx::query_scalar(LOCK_CHECKPOINT)
        .bind(key)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    to_u64(position, "checkpoint")
}

#[async_trait]
impl ProjectionStore for PgProjectionStore {
    async fn begin(
        &self,
        projection: &str,
        generation: Generation,
    ) -> Result<Box<dyn ProjectionBatch>, ReadModelError> {
        tables_of(projection)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        if generation == Generation::Rebuild {
            // Without its schema the search path would silently fall back to the live tables.
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                    .bind(rebuild_schema(projection))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
            if !exists {
                return Err(ReadModelError::NotFound(format!(
                    "no rebuild of {projection} in progress"
                )));
            }
            let sql = format!(
                "SET LOCAL search_path TO {}, public",
                rebuild_schema(projection)
            );
            sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let key = key(projection, generation);
        let checkpoint = lock_checkpoint(&mut tx, &key).await?;
        Ok(Box::new(PgBatch {
            tx,
            key,
            checkpoint,
        }))
    }

    async fn set_state(&self, projection: &str, state: &str) -> Result<(), ReadModelError> {
        sqlx::query(
            "INSERT INTO public.projection_checkpoints (projection, state, state_updated_at) \
             VALUES ($1, $2, now()) ON CONFLICT (projection) DO UPDATE \
             SET state = EXCLUDED.state, state_updated_at = EXCLUDED.state_updated_at",
        )
        .bind(projection)
        .bind(state)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn start_rebuild(&self, projection: &str) -> Result<(), ReadModelError> {
        let tables = tables_of(projection)?;
        let schema = rebuild_schema(projection);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut statements = vec![
            QUIET.to_owned(),
            format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            format!("CREATE SCHEMA {schema}"),
        ];
        for table in tables {
            statements.push(format!(
                "CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)"
            ));
        }
        execute_all(&mut tx, statements).await.map_err(db)?;
        // LIKE copies no privileges: grant the copies what the live tables grant, so the roles
        // of decision 0006 can still read and write once they are swapped in.
        for table in tables {
            copy_grants(&mut tx, table, &schema).await.map_err(db)?;
        }
        let rebuild = key(projection, Generation::Rebuild);
        sqlx::query("DELETE FROM public.projection_dead_letters WHERE projection = $1")
            .bind(&rebuild)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO public.projection_checkpoints (projection, position, updated_at) \
             VALUES ($1, 0, now()) ON CONFLICT (projection) DO UPDATE \
             SET position = 0, updated_at = now()",
        )
        .bind(&rebuild)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn finish_rebuild(
        &self,
        projection: &str,
        also: &dyn RebuildSwap,
    ) -> Result<bool, ReadModelError> {
        let tables = tables_of(projection)?;
        let schema = rebuild_schema(projection);
        let live = key(projection, Generation::Live);
        let rebuild = key(projection, Generation::Rebuild);
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The swap needs an exclusive lock on each live table; waiting behind a long reader
        // would queue every new read behind the swap. Give up quickly instead: the caller
        // catches up and tries again.
        sqlx::query("SET LOCAL lock_timeout = '2s'")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // Holding the live checkpoint row keeps the live worker between two batches until the
        // swap commits; its next batch then continues from the rebuilt tables' position.
        let live_position = lock_checkpoint(&mut tx, &live).await?;
        let rebuilt_position = lock_checkpoint(&mut tx, &rebuild).await?;
        if rebuilt_position < live_position {
            return Ok(false);
        }
        let retired = format!("strata_retired_{projection}");
        let mut statements = vec![
            QUIET.to_owned(),
            format!("DROP SCHEMA IF EXISTS {retired} CASCADE"),
            format!("CREATE SCHEMA {retired}"),
        ];
        for table in tables {
            statements.push(format!("ALTER TABLE public.{table} SET SCHEMA {retired}"));
            statements.push(format!("ALTER TABLE {schema}.{table} SET SCHEMA public"));
        }
        execute_all(&mut tx, statements).await.map_err(db)?;
        // LIKE names the copied indexes after their columns: give them the live names back, so
        // the schema stays what the migrations created.
        for table in tables {
            restore_index_names(&mut tx, &retired, table)
                .await
                .map_err(db)?;
        }
        execute_all(
            &mut tx,
            [
                format!("DROP SCHEMA {retired} CASCADE"),
                format!("DROP SCHEMA {schema} CASCADE"),
            ],
        )
        .await
        .map_err(db)?;
        // The live dead letters belong to the retired tables; the rebuild's take their place.
        sqlx::query("DELETE FROM public.projection_dead_letters WHERE projection = $1")
            .bind(&live)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "UPDATE public.projection_dead_letters SET projection = $1 WHERE projection = $2",
        )
        .bind(&live)
        .bind(&rebuild)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "UPDATE public.projection_checkpoints SET position = $2, updated_at = now() \
             WHERE projection = $1",
        )
        .bind(&live)
        .bind(to_i64(rebuilt_position, "checkpoint")?)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM public.projection_checkpoints WHERE projection = $1")
            .bind(&rebuild)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // Last, so that a failure here still rolls everything above back. Should the commit
        // fail after it succeeded, the live worker replays from its old checkpoint into what
        // was swapped, which its idempotent writes allow.
        also.swap().await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn abandon_rebuild(&self, projection: &str) -> Result<(), ReadModelError> {
        tables_of(projection)?;
        let rebuild = key(projection, Generation::Rebuild);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let sql = format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            rebuild_schema(projection)
        );
        sqlx::query(AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for table in ["projection_dead_letters", "projection_checkpoints"] {
            let sql = format!("DELETE FROM public.{table} WHERE projection = $1");
            sqlx::query(AssertSqlSafe(sql))
                .bind(&rebuild)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn dead_letters(
        &self,
        projection: Option<&str>,
    ) -> Result<Vec<DeadLetter>, ReadModelError> {
        let rows = sqlx::query(
            "SELECT * FROM public.projection_dead_letters \
             WHERE $1::text IS NULL OR projection = $1 ORDER BY projection, global_position",
        )
        .bind(projection)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(dead_letter_of).collect()
    }
}

fn dead_letter_of(row: &sqlx::postgres::PgRow) -> Result<DeadLetter, ReadModelError> {
    let get = |e: sqlx::Error| ReadModelError::Corrupt(e.to_string());
    let metadata: Metadata = serde_json::from_value(row.try_get("metadata").map_err(get)?)
        .map_err(|e| ReadModelError::Corrupt(format!("dead letter metadata: {e}")))?;
    let stream_id: String = row.try_get("stream_id").map_err(get)?;
    let event = RecordedEvent {
        event_id: row.try_get("event_id").map_err(get)?,
        stream_id: StreamId::parse(&stream_id)
            .map_err(|e| ReadModelError::Corrupt(e.to_string()))?,
        stream_version: to_u64(row.try_get("stream_version").map_err(get)?, "version")?,
        global_position: to_u64(row.try_get("global_position").map_err(get)?, "position")?,
        event_type: row.try_get("event_type").map_err(get)?,
        schema_version: u32::try_from(row.try_get::<i32, _>("schema_version").map_err(get)?)
            .map_err(|_| ReadModelError::Corrupt("negative schema version".into()))?,
        data: row.try_get("data").map_err(get)?,
        metadata,
        recorded_at: row.try_get("recorded_at").map_err(get)?,
    };
    let blocked_by: Option<i64> = row.try_get("blocked_by").map_err(get)?;
    Ok(DeadLetter {
        projection: row.try_get("projection").map_err(get)?,
        event,
        error: row.try_get("error").map_err(get)?,
        attempts: u32::try_from(row.try_get::<i32, _>("attempts").map_err(get)?)
            .map_err(|_| ReadModelError::Corrupt("negative attempts".into()))?,
        blocked_by: blocked_by.map(|p| to_u64(p, "position")).transpose()?,
        parked_at: row.try_get("parked_at").map_err(get)?,
    })
}

const UPSERT_ORDER: &str = "\
    INSERT INTO order_summaries (order_id, customer_id, status, items, item_count, total_cents, \
        currency, shipping_address, tracking_number, cancellation_reason, placed_at, updated_at, \
        version, placed_position) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
    ON CONFLICT (order_id) DO UPDATE SET \
        customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, items = EXCLUDED.items, \
        item_count = EXCLUDED.item_count, total_cents = EXCLUDED.total_cents, \
        currency = EXCLUDED.currency, shipping_address = EXCLUDED.shipping_address, \
        tracking_number = EXCLUDED.tracking_number, \
        cancellation_reason = EXCLUDED.cancellation_reason, placed_at = EXCLUDED.placed_at, \
        updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, \
        placed_position = EXCLUDED.placed_position \
    WHERE order_summaries.version < EXCLUDED.version";

/// `UPSERT_ORDER` for many rows (distinct orders): one column array per parameter.
const UPSERT_ORDERS: &str = "\
    INSERT INTO order_summaries (order_id, customer_id, status, items, item_count, total_cents, \
        currency, shipping_address, tracking_number, cancellation_reason, placed_at, updated_at, \
        version, placed_position) \
    SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int8[], \
        $6::int8[], $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[], \
        $12::timestamptz[], $13::int8[], $14::int8[]) \
    ON CONFLICT (order_id) DO UPDATE SET \
        customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, items = EXCLUDED.items, \
        item_count = EXCLUDED.item_count, total_cents = EXCLUDED.total_cents, \
        currency = EXCLUDED.currency, shipping_address = EXCLUDED.shipping_address, \
        tracking_number = EXCLUDED.tracking_number, \
        cancellation_reason = EXCLUDED.cancellation_reason, placed_at = EXCLUDED.placed_at, \
        updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, \
        placed_position = EXCLUDED.placed_position \
    WHERE order_summaries.version < EXCLUDED.version";

/// `UPSERT_STATS` for many rows (distinct customers).
const UPSERT_STATS_MANY: &str = "\
    INSERT INTO customer_stats (customer_id, order_count, pending, confirmed, shipped, \
        delivered, cancelled, lifetime_value, updated_at) \
    SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], \
        $6::int8[], $7::int8[], $8::jsonb[], $9::timestamptz[]) \
    ON CONFLICT (customer_id) DO UPDATE SET \
        order_count = EXCLUDED.order_count, pending = EXCLUDED.pending, \
        confirmed = EXCLUDED.confirmed, shipped = EXCLUDED.shipped, \
        delivered = EXCLUDED.delivered, cancelled = EXCLUDED.cancelled, \
        lifetime_value = EXCLUDED.lifetime_value, updated_at = EXCLUDED.updated_at";

const UPSERT_STATS: &str = "\
    INSERT INTO customer_stats (customer_id, order_count, pending, confirmed, shipped, \
        delivered, cancelled, lifetime_value, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
    ON CONFLICT (customer_id) DO UPDATE SET \
        order_count = EXCLUDED.order_count, pending = EXCLUDED.pending, \
        confirmed = EXCLUDED.confirmed, shipped = EXCLUDED.shipped, \
        delivered = EXCLUDED.delivered, cancelled = EXCLUDED.cancelled, \
        lifetime_value = EXCLUDED.lifetime_value, updated_at = EXCLUDED.updated_at";

const UPSERT_ACCOUNT: &str = "\
    INSERT INTO account_summaries (account_id, owner_customer_id, currency, balance_cents, \
        closed, transaction_count, opened_at, updated_at, version) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
    ON CONFLICT (account_id) DO UPDATE SET \
        owner_customer_id = EXCLUDED.owner_customer_id, currency = EXCLUDED.currency, \
        balance_cents = EXCLUDED.balance_cents, closed = EXCLUDED.closed, \
        transaction_count = EXCLUDED.transaction_count, opened_at = EXCLUDED.opened_at, \
        updated_at = EXCLUDED.updated_at, version = EXCLUDED.version \
    WHERE account_summaries.version < EXCLUDED.version";

const INSERT_TRANSACTION: &str = "\
    INSERT INTO account_transactions (account_id, version, global_position, kind, amount_cents, \
        reference, balance_after_cents, recorded_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
    ON CONFLICT (account_id, version) DO NOTHING";

const PARK: &str = "\
    INSERT INTO public.projection_dead_letters (projection, global_position, event_id, \
        stream_id, stream_version, event_type, schema_version, data, metadata, recorded_at, \
        error, attempts, blocked_by, parked_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::json, $9::text::json, $10, $11, $12, $13, \
            $14) \
    ON CONFLICT (projection, global_position) DO NOTHING";

#[async_trait]
impl ProjectionBatch for PgBatch {
    async fn checkpoint(&mut self) -> Result<u64, ReadModelError> {
        Ok(self.checkpoint)
    }

    async fn savepoint(&mut self) -> Result<(), ReadModelError> {
        sqlx::query("SAVEPOINT strata_event")
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn rollback_to_savepoint(&mut self) -> Result<(), ReadModelError> {
        sqlx::query("ROLLBACK TO SAVEPOINT strata_event")
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn release_savepoint(&mut self) -> Result<(), ReadModelError> {
        sqlx::query("RELEASE SAVEPOINT strata_event")
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn order_summary(&mut self, id: Uuid) -> Result<Option<OrderSummaryRow>, ReadModelError> {
        let row = sqlx::query("SELECT * FROM order_summaries WHERE order_id = $1")
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db)?;
        row.as_ref().map(order_of).transpose()
    }

    async fn put_order_summary(&mut self, row: &OrderSummaryRow) -> Result<(), ReadModelError> {
        sqlx::query(UPSERT_ORDER)
            .bind(row.order_id)
            .bind(&row.customer_id)
            .bind(&row.status)
            .bind(items_json(row))
            .bind(to_i64(row.item_count, "item count")?)
            .bind(row.total_cents)
            .bind(&row.currency)
            .bind(&row.shipping_address)
            .bind(&row.tracking_number)
            .bind(&row.cancellation_reason)
            .bind(row.placed_at)
            .bind(row.updated_at)
            .bind(to_i64(row.version, "version")?)
            .bind(to_i64(row.placed_position, "position")?)
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn customer_stats(
        &mut self,
        customer_id: &str,
    ) -> Result<Option<CustomerStatsRow>, ReadModelError> {
        let row = sqlx::query("SELECT * FROM customer_stats WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db)?;
        row.as_ref().map(stats_of).transpose()
    }

    async fn put_customer_stats(&mut self, row: &CustomerStatsRow) -> Result<(), ReadModelError> {
        let counts = &row.by_status;
        sqlx::query(UPSERT_STATS)
            .bind(&row.customer_id)
            .bind(to_i64(row.order_count, "order count")?)
            .bind(to_i64(counts.pending, "count")?)
            .bind(to_i64(counts.confirmed, "count")?)
            .bind(to_i64(counts.shipped, "count")?)
            .bind(to_i64(counts.delivered, "count")?)
            .bind(to_i64(counts.cancelled, "count")?)
            .bind(lifetime_json(row))
            .bind(row.updated_at)
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn order_summaries(
        &mut self,
        ids: &[Uuid],
    ) -> Result<Vec<OrderSummaryRow>, ReadModelError> {
        let rows = sqlx::query("SELECT * FROM order_summaries WHERE order_id = ANY($1)")
            .bind(ids)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db)?;
        rows.iter().map(order_of).collect()
    }

    async fn put_order_summaries(
        &mut self,
        rows: &[OrderSummaryRow],
    ) -> Result<(), ReadModelError> {
        if rows.is_empty() {
            return Ok(());
        }
        let column = |f: fn(&OrderSummaryRow) -> Result<i64, ReadModelError>| {
            rows.iter().map(f).collect::<Result<Vec<i64>, _>>()
        };
        sqlx::query(UPSERT_ORDERS)
            .bind(rows.iter().map(|r| r.order_id).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.customer_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(items_json).collect::<Vec<_>>())
            .bind(column(|r| to_i64(r.item_count, "item count"))?)
            .bind(rows.iter().map(|r| r.total_cents).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.currency.as_str()).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.shipping_address.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|r| r.tracking_number.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|r| r.cancellation_reason.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.placed_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
            .bind(column(|r| to_i64(r.version, "version"))?)
            .bind(column(|r| to_i64(r.placed_position, "position"))?)
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn customer_stats_many(
        &mut self,
        customer_ids: &[String],
    ) -> Result<Vec<CustomerStatsRow>, ReadModelError> {
        let rows = sqlx::query("SELECT * FROM customer_stats WHERE customer_id = ANY($1)")
            .bind(customer_ids)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db)?;
        rows.iter().map(stats_of).collect()
    }

    async fn put_customer_stats_many(
        &mut self,
        rows: &[CustomerStatsRow],
    ) -> Result<(), ReadModelError> {
        if rows.is_empty() {
            return Ok(());
        }
        let count = |f: fn(&StatusCounts) -> u64| {
            rows.iter()
                .map(|r| to_i64(f(&r.by_status), "count"))
                .collect::<Result<Vec<i64>, _>>()
        };
        sqlx::query(UPSERT_STATS_MANY)
            .bind(
                rows.iter()
                    .map(|r| r.customer_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|r| to_i64(r.order_count, "order count"))
                    .collect::<Result<Vec<i64>, _>>()?,
            )
            .bind(count(|c| c.pending)?)
            .bind(count(|c| c.confirmed)?)
            .bind(count(|c| c.shipped)?)
            .bind(count(|c| c.delivered)?)
            .bind(count(|c| c.cancelled)?)
            .bind(rows.iter().map(lifetime_json).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn account(&mut self, id: Uuid) -> Result<Option<AccountRow>, ReadModelError> {
        let row = sqlx::query("SELECT * FROM account_summaries WHERE account_id = $1")
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db)?;
        row.as_ref().map(account_of).transpose()
    }

    async fn put_account(&mut self, row: &AccountRow) -> Result<(), ReadModelError> {
        sqlx::query(UPSERT_ACCOUNT)
            .bind(row.account_id)
            .bind(&row.owner_customer_id)
            .bind(&row.currency)
            .bind(row.balance_cents)
            .bind(row.closed)
            .bind(to_i64(row.transaction_count, "transaction count")?)
            .bind(row.opened_at)
            .bind(row.updated_at)
            .bind(to_i64(row.version, "version")?)
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn add_transaction(&mut self, row: &TransactionRow) -> Result<(), ReadModelError> {
        sqlx::query(INSERT_TRANSACTION)
            .bind(row.account_id)
            .bind(to_i64(row.version, "version")?)
            .bind(to_i64(row.global_position, "position")?)
            .bind(row.kind.as_str())
            .bind(row.amount_cents)
            .bind(&row.reference)
            .bind(row.balance_after_cents)
            .bind(row.recorded_at)
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn blocked_streams(
        &mut self,
        streams: &[String],
    ) -> Result<HashMap<String, u64>, ReadModelError> {
        let blocked: Vec<(String, i64)> = sqlx::query_as(
            "SELECT stream_id, global_position FROM public.projection_dead_letters \
             WHERE projection = $1 AND stream_id = ANY($2) AND blocked_by IS NULL",
        )
        .bind(&self.key)
        .bind(streams)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(db)?;
        blocked
            .into_iter()
            .map(|(stream, position)| Ok((stream, to_u64(position, "position")?)))
            .collect()
    }

    async fn park(&mut self, letter: &DeadLetter) -> Result<(), ReadModelError> {
        let event = &letter.event;
        // As text, as the log stores them (migration 0006).
        let data = serde_json::to_string(&event.data)
            .map_err(|e| ReadModelError::Backend(format!("data: {e}")))?;
        let metadata = serde_json::to_string(&event.metadata)
            .map_err(|e| ReadModelError::Backend(format!("metadata: {e}")))?;
        sqlx::query(PARK)
            .bind(&self.key)
            .bind(to_i64(event.global_position, "position")?)
            .bind(event.event_id)
            .bind(event.stream_id.as_str())
            .bind(to_i64(event.stream_version, "version")?)
            .bind(&event.event_type)
            .bind(i32::try_from(event.schema_version).unwrap_or(i32::MAX))
            .bind(data)
            .bind(metadata)
            .bind(event.recorded_at)
            .bind(&letter.error)
            .bind(i32::try_from(letter.attempts).unwrap_or(i32::MAX))
            .bind(
                letter
                    .blocked_by
                    .map(|p| to_i64(p, "position"))
                    .transpose()?,
            )
            .bind(letter.parked_at)
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn take_dead_letters(
        &mut self,
        position: u64,
    ) -> Result<Vec<DeadLetter>, ReadModelError> {
        let rows = sqlx::query(
            "DELETE FROM public.projection_dead_letters \
             WHERE projection = $1 AND (global_position = $2 OR blocked_by = $2) \
             AND EXISTS (SELECT 1 FROM public.projection_dead_letters \
                         WHERE projection = $1 AND global_position = $2 AND blocked_by IS NULL) \
             RETURNING *",
        )
        .bind(&self.key)
        .bind(to_i64(position, "position")?)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(db)?;
        let mut letters = rows
            .iter()
            .map(dead_letter_of)
            .collect::<Result<Vec<_>, _>>()?;
        // The statement removes nothing unless a failed event is at `position`.
        if letters.is_empty() {
            return Err(ReadModelError::NotFound(format!(
                "no failed event at position {position} in {}",
                self.key
            )));
        }
        letters.sort_by_key(|l| l.event.global_position);
        Ok(letters)
    }

    async fn commit(mut self: Box<Self>, position: u64) -> Result<(), ReadModelError> {
        let moved = sqlx::query(
            "UPDATE public.projection_checkpoints SET position = $2, updated_at = now() \
             WHERE projection = $1 AND position = $3",
        )
        .bind(&self.key)
        .bind(to_i64(position, "checkpoint")?)
        .bind(to_i64(self.checkpoint, "checkpoint")?)
        .execute(&mut *self.tx)
        .await
        .map_err(db)?;
        if moved.rows_affected() != 1 {
            return Err(ReadModelError::CheckpointMoved {
                projection: self.key.clone(),
                expected: self.checkpoint,
            });
        }
        self.tx.commit().await.map_err(db)
    }
}

/// The stored form of an order's lines.
fn items_json(row: &OrderSummaryRow) -> Value {
    Value::Array(
        row.items
            .iter()
            .map(|line| {
                json!({
                    "productId": line.product_id,
                    "quantity": line.quantity,
                    "unitPriceCents": line.unit_price_cents,
                    "lineTotalCents": line.line_total_cents,
                })
            })
            .collect(),
    )
}

/// The stored form of a customer's lifetime value: `{"EUR": cents, ...}`.
fn lifetime_json(row: &CustomerStatsRow) -> Value {
    Value::Object(
        row.lifetime_value_cents
            .iter()
            .map(|(currency, cents)| (currency.clone(), json!(cents)))
            .collect(),
    )
}

fn corrupt(error: sqlx::Error) -> ReadModelError {
    ReadModelError::Corrupt(error.to_string())
}

fn order_of(row: &sqlx::postgres::PgRow) -> Result<OrderSummaryRow, ReadModelError> {
    let items: Value = row.try_get("items").map_err(corrupt)?;
    let items = items
        .as_array()
        .ok_or_else(|| ReadModelError::Corrupt("order items are not an array".into()))?
        .iter()
        .map(|item| {
            let text = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_owned);
            let int = |name: &str| item.get(name).and_then(Value::as_i64);
            Some(OrderLineRow {
                product_id: text("productId")?,
                quantity: u32::try_from(int("quantity")?).ok()?,
                unit_price_cents: int("unitPriceCents")?,
                line_total_cents: int("lineTotalCents")?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ReadModelError::Corrupt("malformed order item".into()))?;
    Ok(OrderSummaryRow {
        order_id: row.try_get("order_id").map_err(corrupt)?,
        customer_id: row.try_get("customer_id").map_err(corrupt)?,
        status: row.try_get("status").map_err(corrupt)?,
        items,
        item_count: to_u64(row.try_get("item_count").map_err(corrupt)?, "item count")?,
        total_cents: row.try_get("total_cents").map_err(corrupt)?,
        currency: row.try_get("currency").map_err(corrupt)?,
        shipping_address: row.try_get("shipping_address").map_err(corrupt)?,
        tracking_number: row.try_get("tracking_number").map_err(corrupt)?,
        cancellation_reason: row.try_get("cancellation_reason").map_err(corrupt)?,
        placed_at: row.try_get("placed_at").map_err(corrupt)?,
        updated_at: row.try_get("updated_at").map_err(corrupt)?,
        version: to_u64(row.try_get("version").map_err(corrupt)?, "version")?,
        placed_position: to_u64(row.try_get("placed_position").map_err(corrupt)?, "position")?,
    })
}

fn stats_of(row: &sqlx::postgres::PgRow) -> Result<CustomerStatsRow, ReadModelError> {
    let count = |name: &str| -> Result<u64, ReadModelError> {
        to_u64(row.try_get(name).map_err(corrupt)?, name)
    };
    let lifetime: Value = row.try_get("lifetime_value").map_err(corrupt)?;
    let lifetime_value_cents = lifetime
        .as_object()
        .ok_or_else(|| ReadModelError::Corrupt("lifetime value is not an object".into()))?
        .iter()
        .map(|(currency, cents)| cents.as_i64().map(|c| (currency.clone(), c)))
        .collect::<Option<BTreeMap<_, _>>>()
        .ok_or_else(|| ReadModelError::Corrupt("malformed lifetime value".into()))?;
    Ok(CustomerStatsRow {
        customer_id: row.try_get("customer_id").map_err(corrupt)?,
        order_count: count("order_count")?,
        by_status: StatusCounts {
            pending: count("pending")?,
            confirmed: count("confirmed")?,
            shipped: count("shipped")?,
            delivered: count("delivered")?,
            cancelled: count("cancelled")?,
        },
        lifetime_value_cents,
        updated_at: row.try_get("updated_at").map_err(corrupt)?,
    })
}

fn account_of(row: &sqlx::postgres::PgRow) -> Result<AccountRow, ReadModelError> {
    Ok(AccountRow {
        account_id: row.try_get("account_id").map_err(corrupt)?,
        owner_customer_id: row.try_get("owner_customer_id").map_err(corrupt)?,
        currency: row.try_get("currency").map_err(corrupt)?,
        balance_cents: row.try_get("balance_cents").map_err(corrupt)?,
        closed: row.try_get("closed").map_err(corrupt)?,
        transaction_count: to_u64(
            row.try_get("transaction_count").map_err(corrupt)?,
            "transaction count",
        )?,
        opened_at: row.try_get("opened_at").map_err(corrupt)?,
        updated_at: row.try_get("updated_at").map_err(corrupt)?,
        version: to_u64(row.try_get("version").map_err(corrupt)?, "version")?,
    })
}

fn transaction_of(row: &sqlx::postgres::PgRow) -> Result<TransactionRow, ReadModelError> {
    let kind: String = row.try_get("kind").map_err(corrupt)?;
    Ok(TransactionRow {
        account_id: row.try_get("account_id").map_err(corrupt)?,
        version: to_u64(row.try_get("version").map_err(corrupt)?, "version")?,
        global_position: to_u64(row.try_get("global_position").map_err(corrupt)?, "position")?,
        kind: TransactionKind::parse(&kind)
            .ok_or_else(|| ReadModelError::Corrupt(format!("transaction kind {kind:?}")))?,
        amount_cents: row.try_get("amount_cents").map_err(corrupt)?,
        reference: row.try_get("reference").map_err(corrupt)?,
        balance_after_cents: row.try_get("balance_after_cents").map_err(corrupt)?,
        recorded_at: row.try_get("recorded_at").map_err(corrupt)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Queries

/// The read models' queries on a PostgreSQL pool.
#[derive(Debug, Clone)]
pub struct PgReadModels {
    pool: PgPool,
}

impl PgReadModels {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn checkpoint(&self, projection: &str) -> Result<u64, ReadModelError> {
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM public.projection_checkpoints WHERE projection = $1",
        )
        .bind(projection)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        to_u64(position.unwrap_or(0), "checkpoint")
    }
}

/// A query's rows with the checkpoint read just before them: the rows reflect at least that
/// position (the checkpoint and the rows commit together, and the rows are read later).
async fn positioned<T>(
    models: &PgReadModels,
    projection: &str,
    rows: impl std::future::Future<Output = Result<T, ReadModelError>>,
) -> Result<Positioned<T>, ReadModelError> {
    let position = models.checkpoint(projection).await?;
    Ok(Positioned {
        value: rows.await?,
        position,
    })
}

#[async_trait]
impl ReadModels for PgReadModels {
    async fn order_summary(
        &self,
        id: Uuid,
    ) -> Result<Positioned<Option<OrderSummaryRow>>, ReadModelError> {
        positioned(self, "orders", async {
            let row = sqlx::query("SELECT * FROM order_summaries WHERE order_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.as_ref().map(order_of).transpose()
        })
        .await
    }

    async fn customer_orders(
        &self,
        customer_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Positioned<Vec<OrderSummaryRow>>, ReadModelError> {
        let before = match before {
            Some(position) => to_i64(position, "cursor")?,
            None => i64::MAX,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        check_text("customer id", customer_id, MAX_LOOKUP_BYTES)?;
        positioned(self, "orders", async {
            let rows = sqlx::query(
                "SELECT * FROM order_summaries WHERE customer_id = $1 AND placed_position < $2 \
                 ORDER BY placed_position DESC LIMIT $3",
            )
            .bind(customer_id)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            rows.iter().map(order_of).collect()
        })
        .await
    }

    async fn customer_stats(
        &self,
        customer_id: &str,
    ) -> Result<Positioned<Option<CustomerStatsRow>>, ReadModelError> {
        check_text("customer id", customer_id, MAX_LOOKUP_BYTES)?;
        positioned(self, "orders", async {
            let row = sqlx::query("SELECT * FROM customer_stats WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.as_ref().map(stats_of).transpose()
        })
        .await
    }

    async fn account(&self, id: Uuid) -> Result<Positioned<Option<AccountRow>>, ReadModelError> {
        positioned(self, "accounts", async {
            let row = sqlx::query("SELECT * FROM account_summaries WHERE account_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.as_ref().map(account_of).transpose()
        })
        .await
    }

    async fn account_transactions(
        &self,
        id: Uuid,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Positioned<Vec<TransactionRow>>, ReadModelError> {
        let after = to_i64(after.unwrap_or(0), "cursor")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        positioned(self, "accounts", async {
            let rows = sqlx::query(
                "SELECT * FROM account_transactions WHERE account_id = $1 AND version > $2 \
                 ORDER BY version LIMIT $3",
            )
            .bind(id)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            rows.iter().map(transaction_of).collect()
        })
        .await
    }

    async fn position(&self, projection: &str) -> Result<u64, ReadModelError> {
        self.checkpoint(projection).await
    }

    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, ReadModelError> {
        let rows = sqlx::query(
            "SELECT c.projection, c.position, c.updated_at, c.state, c.state_updated_at, \
                    (SELECT e.recorded_at FROM events e WHERE e.global_position = c.position) \
                        AS position_recorded_at, \
                    (SELECT count(*) FROM public.projection_dead_letters d \
                      WHERE d.projection = c.projection) AS dead_letters \
             FROM public.projection_checkpoints c ORDER BY c.projection",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                Ok(CheckpointRow {
                    projection: row.try_get("projection").map_err(corrupt)?,
                    position: to_u64(row.try_get("position").map_err(corrupt)?, "checkpoint")?,
                    updated_at: row.try_get("updated_at").map_err(corrupt)?,
                    position_recorded_at: row.try_get("position_recorded_at").map_err(corrupt)?,
                    dead_letters: to_u64(row.try_get("dead_letters").map_err(corrupt)?, "count")?,
                    state: row.try_get("state").map_err(corrupt)?,
                    state_updated_at: row.try_get("state_updated_at").map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn oldest_open_transaction_age(&self) -> Result<Option<f64>, ReadModelError> {
        sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM (now() - min(xact_start)))::float8 \
             FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() \
             AND datname = current_database()",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }
}

// ---------------------------------------------------------------------------------------------
// Wake-up and leases

/// Wakes on the notification every append sends on commit.
#[derive(Debug)]
pub struct PgLogWakeup {
    listener: PgListener,
}

impl PgLogWakeup {
    /// Listens on [`EVENTS_CHANNEL`] on a connection of its own.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn listen(pool: &PgPool) -> Result<Self, ReadModelError> {
        let mut listener = PgListener::connect_with(pool).await.map_err(db)?;
        listener.listen(EVENTS_CHANNEL).await.map_err(db)?;
        Ok(Self { listener })
    }
}

#[async_trait]
impl LogWakeup for PgLogWakeup {
    async fn wait(&mut self) -> Result<(), ReadModelError> {
        // sqlx reconnects a lost listener inside `recv` (notifications sent meanwhile are lost:
        // the worker's poll covers them).
        self.listener.recv().await.map_err(db)?;
        // A burst of appends is one wake-up: drop what has already arrived, so the worker does
        // not run one empty batch per notification.
        while self.listener.next_buffered().is_some() {}
        Ok(())
    }
}

/// Opens a [`PgLogWakeup`] per subscription.
#[derive(Debug, Clone)]
pub struct PgLogWakeups {
    pool: PgPool,
}

impl PgLogWakeups {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl LogWakeups for PgLogWakeups {
    async fn subscribe(&self) -> Result<Box<dyn LogWakeup>, ReadModelError> {
        Ok(Box::new(PgLogWakeup::listen(&self.pool).await?))
    }
}

/// Session advisory locks, one per projection, each on a connection taken out of the pool: the
/// lock lives exactly as long as that connection (a dead process releases it at once).
#[derive(Debug, Clone)]
pub struct PgLeases {
    pool: PgPool,
}

impl PgLeases {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const LEASE_KEY: &str = "hashtextextended('strata.projection.' || $1, 0)";

#[async_trait]
impl ProjectionLeases for PgLeases {
    async fn try_acquire(
        &self,
        projection: &str,
    ) -> Result<Option<Box<dyn ProjectionLease>>, ReadModelError> {
        let mut connection: PoolConnection<Postgres> = self.pool.acquire().await.map_err(db)?;
        let taken: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT pg_try_advisory_lock({LEASE_KEY})"
        )))
        .bind(projection)
        .fetch_one(&mut *connection)
        .await
        .map_err(db)?;
        if !taken {
            // Nothing is held on it: back to the pool, no new connection per retry.
            return Ok(None);
        }
        // The lock lives as long as this session: take the connection out of the pool, and make
        // the server notice a vanished holder (host crash, partition) within about 20 seconds
        // instead of the default two hours of TCP keepalive.
        let mut connection = connection.detach();
        sqlx::query(
            "SELECT set_config('tcp_keepalives_idle', '10', false), \
                    set_config('tcp_keepalives_interval', '5', false), \
                    set_config('tcp_keepalives_count', '2', false)",
        )
        .execute(&mut connection)
        .await
        .map_err(db)?;
        Ok(Some(Box::new(PgLease { connection })))
    }
}

#[derive(Debug)]
struct PgLease {
    connection: PgConnection,
}

#[async_trait]
impl ProjectionLease for PgLease {
    async fn check(&mut self) -> Result<(), ReadModelError> {
        sqlx::query("SELECT 1")
            .execute(&mut self.connection)
            .await
            .map_err(db)?;
        Ok(())
    }
}
