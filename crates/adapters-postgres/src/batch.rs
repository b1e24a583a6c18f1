//! `PgBatch`: one batch of a projection, a transaction that holds the projection's checkpoint
//! row from its first statement to its commit, so that the read-model changes, dead letters and
//! checkpoint commit together or not at all.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};
use strata_ports::{
    AccountRow, CustomerStatsRow, DeadLetter, OrderSummaryRow, ProjectionBatch, ReadModelError,
    StatusCounts, TransactionRow,
};
use uuid::Uuid;

use crate::projections::db;
use crate::rows::{
    account_of, dead_letter_of, items_json, lifetime_json, order_of, stats_of, to_i64, to_u64,
};

/// One batch: a transaction holding the checkpoint row.
pub(crate) struct PgBatch {
    pub(crate) tx: Transaction<'static, Postgres>,
    pub(crate) key: String,
    pub(crate) checkpoint: u64,
}

impl std::fmt::Debug for PgBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBatch")
            .field("key", &self.key)
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
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
