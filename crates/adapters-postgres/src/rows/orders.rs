//! The orders read model on PostgreSQL: order summaries and customer statistics to and from
//! their columns, written by a batch (one statement per batch for the bulk forms) and read by the
//! queries.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use strata_ports::limits::{MAX_LOOKUP_BYTES, check_text};
use strata_ports::{
    CustomerStatsRow, OrderLineRow, OrderQueries, OrderRows, OrderSummaryRow, OrderSummaryStatus,
    Positioned, ProjectionName, ReadModelError, StatusCounts,
};
use uuid::Uuid;

use super::{corrupt, to_i64, to_u64};
use crate::batch::PgBatch;
use crate::checkpoints::db;
use crate::queries::{PgReadModels, positioned};

/// The stored form of an order's lines: the serde form of [`OrderLineRow`] (as SQLite stores
/// them).
fn items_json(row: &OrderSummaryRow) -> Result<Value, ReadModelError> {
    serde_json::to_value(&row.items)
        .map_err(|e| ReadModelError::Backend(format!("order items: {e}")))
}

/// The stored form of a customer's lifetime value: `{"EUR": cents, ...}`.
fn lifetime_json(row: &CustomerStatsRow) -> Result<Value, ReadModelError> {
    serde_json::to_value(&row.lifetime_value_cents)
        .map_err(|e| ReadModelError::Backend(format!("lifetime value: {e}")))
}

fn order_of(row: &sqlx::postgres::PgRow) -> Result<OrderSummaryRow, ReadModelError> {
    let items: Value = row.try_get("items").map_err(corrupt)?;
    let items: Vec<OrderLineRow> = serde_json::from_value(items)
        .map_err(|e| ReadModelError::Corrupt(format!("malformed order items: {e}")))?;
    let status: String = row.try_get("status").map_err(corrupt)?;
    Ok(OrderSummaryRow {
        order_id: row.try_get("order_id").map_err(corrupt)?,
        customer_id: row.try_get("customer_id").map_err(corrupt)?,
        status: OrderSummaryStatus::parse(&status)
            .ok_or_else(|| ReadModelError::Corrupt(format!("order status {status:?}")))?,
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
    let lifetime_value_cents: BTreeMap<String, i64> = serde_json::from_value(lifetime)
        .map_err(|e| ReadModelError::Corrupt(format!("malformed lifetime value: {e}")))?;
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

/// The order summaries of many rows (distinct orders), one column array per parameter, each
/// replacing the stored row only from a lower stream version (a replay changes nothing).
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

/// The customer statistics of many rows (distinct customers), each replacing the stored one.
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

#[async_trait]
impl OrderRows for PgBatch {
    async fn order_summary(&mut self, id: Uuid) -> Result<Option<OrderSummaryRow>, ReadModelError> {
        Ok(self.order_summaries(&[id]).await?.pop())
    }

    async fn put_order_summary(&mut self, row: &OrderSummaryRow) -> Result<(), ReadModelError> {
        self.put_order_summaries(std::slice::from_ref(row)).await
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
            .bind(rows.iter().map(items_json).collect::<Result<Vec<_>, _>>()?)
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
            .bind(
                rows.iter()
                    .map(lifetime_json)
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }
}

#[async_trait]
impl OrderQueries for PgReadModels {
    async fn order_summary(
        &self,
        id: Uuid,
    ) -> Result<Positioned<Option<OrderSummaryRow>>, ReadModelError> {
        positioned(self, ProjectionName::Orders, async {
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
        positioned(self, ProjectionName::Orders, async {
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
        positioned(self, ProjectionName::Orders, async {
            let row = sqlx::query("SELECT * FROM customer_stats WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.as_ref().map(stats_of).transpose()
        })
        .await
    }
}
