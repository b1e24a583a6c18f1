//! The orders read model on SQLite: order summaries and customer statistics to and from their
//! columns, written by a batch and read by the queries.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use strata_ports::limits::{MAX_LOOKUP_BYTES, check_text};
use strata_ports::{
    CustomerStatsRow, OrderLineRow, OrderQueries, OrderRows, OrderSummaryRow, OrderSummaryStatus,
    Positioned, ProjectionName, ReadModelError, StatusCounts,
};
use uuid::Uuid;

use super::{corrupt, count, id, instant, int, json_of, optional_text, text, to_i64};
use crate::batch::SqliteBatch;
use crate::checkpoints::db;
use crate::codec::{self, micros};
use crate::queries::SqliteReadModels;

/// An order's lines as stored: the serde form of [`OrderLineRow`] (as PostgreSQL stores them).
fn items_json(items: &[OrderLineRow]) -> Result<String, ReadModelError> {
    serde_json::to_string(items).map_err(|e| ReadModelError::Backend(format!("order items: {e}")))
}

/// Lifetime values as stored: `{"EUR": 1234, ...}`.
fn lifetime_json(values: &BTreeMap<String, i64>) -> Result<String, ReadModelError> {
    serde_json::to_string(values)
        .map_err(|e| ReadModelError::Backend(format!("lifetime value: {e}")))
}

fn order_of(row: &SqliteRow) -> Result<OrderSummaryRow, ReadModelError> {
    let status = text(row, "status")?;
    let items: Vec<OrderLineRow> = serde_json::from_str(&text(row, "items")?)
        .map_err(|e| corrupt(format!("malformed order items: {e}")))?;
    Ok(OrderSummaryRow {
        order_id: id(row, "order_id")?,
        customer_id: text(row, "customer_id")?,
        status: OrderSummaryStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("order status {status:?}")))?,
        items,
        item_count: count(row, "item_count")?,
        total_cents: int(row, "total_cents")?,
        currency: text(row, "currency")?,
        shipping_address: text(row, "shipping_address")?,
        tracking_number: optional_text(row, "tracking_number")?,
        cancellation_reason: optional_text(row, "cancellation_reason")?,
        placed_at: instant(row, "placed_at")?,
        updated_at: instant(row, "updated_at")?,
        version: count(row, "version")?,
        placed_position: count(row, "placed_position")?,
    })
}

fn stats_of(row: &SqliteRow) -> Result<CustomerStatsRow, ReadModelError> {
    let lifetime = json_of(row, "lifetime_value")?;
    let lifetime_value_cents: BTreeMap<String, i64> = serde_json::from_value(lifetime)
        .map_err(|e| corrupt(format!("malformed lifetime value: {e}")))?;
    Ok(CustomerStatsRow {
        customer_id: text(row, "customer_id")?,
        order_count: count(row, "order_count")?,
        by_status: StatusCounts {
            pending: count(row, "pending")?,
            confirmed: count(row, "confirmed")?,
            shipped: count(row, "shipped")?,
            delivered: count(row, "delivered")?,
            cancelled: count(row, "cancelled")?,
        },
        lifetime_value_cents,
        updated_at: instant(row, "updated_at")?,
    })
}

const UPSERT_ORDER: &str = "\
    INSERT INTO {p}order_summaries (order_id, customer_id, status, items, item_count, \
        total_cents, currency, shipping_address, tracking_number, cancellation_reason, \
        placed_at, updated_at, version, placed_position) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
    ON CONFLICT (order_id) DO UPDATE SET \
        customer_id = excluded.customer_id, status = excluded.status, items = excluded.items, \
        item_count = excluded.item_count, total_cents = excluded.total_cents, \
        currency = excluded.currency, shipping_address = excluded.shipping_address, \
        tracking_number = excluded.tracking_number, \
        cancellation_reason = excluded.cancellation_reason, placed_at = excluded.placed_at, \
        updated_at = excluded.updated_at, version = excluded.version, \
        placed_position = excluded.placed_position \
    WHERE {p}order_summaries.version < excluded.version";

const UPSERT_STATS: &str = "\
    INSERT INTO {p}customer_stats (customer_id, order_count, pending, confirmed, shipped, \
        delivered, cancelled, lifetime_value, updated_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
    ON CONFLICT (customer_id) DO UPDATE SET \
        order_count = excluded.order_count, pending = excluded.pending, \
        confirmed = excluded.confirmed, shipped = excluded.shipped, \
        delivered = excluded.delivered, cancelled = excluded.cancelled, \
        lifetime_value = excluded.lifetime_value, updated_at = excluded.updated_at";

#[async_trait]
impl OrderRows for SqliteBatch {
    async fn order_summary(&mut self, id: Uuid) -> Result<Option<OrderSummaryRow>, ReadModelError> {
        let sql = self.sql("SELECT * FROM {p}order_summaries WHERE order_id = ?1");
        let row = sqlx::query(sql)
            .bind(codec::text_id(id))
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db)?;
        row.as_ref().map(order_of).transpose()
    }

    async fn put_order_summary(&mut self, row: &OrderSummaryRow) -> Result<(), ReadModelError> {
        let sql = self.sql(UPSERT_ORDER);
        sqlx::query(sql)
            .bind(codec::text_id(row.order_id))
            .bind(&row.customer_id)
            .bind(row.status.as_str())
            .bind(items_json(&row.items)?)
            .bind(to_i64(row.item_count, "item count")?)
            .bind(row.total_cents)
            .bind(&row.currency)
            .bind(&row.shipping_address)
            .bind(&row.tracking_number)
            .bind(&row.cancellation_reason)
            .bind(micros(row.placed_at))
            .bind(micros(row.updated_at))
            .bind(to_i64(row.version, "version")?)
            .bind(to_i64(row.placed_position, "position")?)
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    // One statement per customer: SQLite's round trips are in-process calls.
    async fn customer_stats_many(
        &mut self,
        customer_ids: &[String],
    ) -> Result<Vec<CustomerStatsRow>, ReadModelError> {
        let mut rows = Vec::with_capacity(customer_ids.len());
        for customer_id in customer_ids {
            let sql = self.sql("SELECT * FROM {p}customer_stats WHERE customer_id = ?1");
            let row = sqlx::query(sql)
                .bind(customer_id)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(db)?;
            rows.extend(row.as_ref().map(stats_of).transpose()?);
        }
        Ok(rows)
    }

    async fn put_customer_stats_many(
        &mut self,
        rows: &[CustomerStatsRow],
    ) -> Result<(), ReadModelError> {
        for row in rows {
            let counts = &row.by_status;
            let sql = self.sql(UPSERT_STATS);
            sqlx::query(sql)
                .bind(&row.customer_id)
                .bind(to_i64(row.order_count, "order count")?)
                .bind(to_i64(counts.pending, "count")?)
                .bind(to_i64(counts.confirmed, "count")?)
                .bind(to_i64(counts.shipped, "count")?)
                .bind(to_i64(counts.delivered, "count")?)
                .bind(to_i64(counts.cancelled, "count")?)
                .bind(lifetime_json(&row.lifetime_value_cents)?)
                .bind(micros(row.updated_at))
                .execute(&mut *self.tx)
                .await
                .map_err(db)?;
        }
        Ok(())
    }
}

#[async_trait]
impl OrderQueries for SqliteReadModels {
    async fn order_summary(
        &self,
        id: Uuid,
    ) -> Result<Positioned<Option<OrderSummaryRow>>, ReadModelError> {
        self.positioned(ProjectionName::Orders, async {
            let row = sqlx::query("SELECT * FROM order_summaries WHERE order_id = ?1")
                .bind(codec::text_id(id))
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
        self.positioned(ProjectionName::Orders, async {
            let rows = sqlx::query(
                "SELECT * FROM order_summaries WHERE customer_id = ?1 AND placed_position < ?2 \
                 ORDER BY placed_position DESC LIMIT ?3",
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
        self.positioned(ProjectionName::Orders, async {
            let row = sqlx::query("SELECT * FROM customer_stats WHERE customer_id = ?1")
                .bind(customer_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.as_ref().map(stats_of).transpose()
        })
        .await
    }
}
