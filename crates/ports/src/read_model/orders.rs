//! The orders read model: the order summary (one row per order) and the customer statistics,
//! as a projection batch writes them ([`OrderRows`]) and as the queries read them
//! ([`OrderQueries`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Positioned, ReadModelError};

/// One line of an order summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLineRow {
    pub product_id: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
    pub line_total_cents: i64,
}

/// The order summary read model: everything `GET /v1/orders/{id}` answers, in one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummaryRow {
    pub order_id: Uuid,
    pub customer_id: String,
    /// `PENDING`, `CONFIRMED`, `SHIPPED`, `DELIVERED` or `CANCELLED`.
    pub status: String,
    pub items: Vec<OrderLineRow>,
    /// Units over all lines (the API's `unitCount`; its `itemCount` counts lines). The stored
    /// name predates the API's; renaming it would take migrations for nothing.
    pub item_count: u64,
    pub total_cents: i64,
    pub currency: String,
    pub shipping_address: String,
    pub tracking_number: Option<String>,
    pub cancellation_reason: Option<String>,
    pub placed_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The stream version of the last event applied: the per-row idempotency guard.
    pub version: u64,
    /// The global position of `OrderPlaced`: newest-first order and the pagination key.
    pub placed_position: u64,
}

/// Order counts of a customer by status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub pending: u64,
    pub confirmed: u64,
    pub shipped: u64,
    pub delivered: u64,
    pub cancelled: u64,
}

/// The customer statistics read model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerStatsRow {
    pub customer_id: String,
    pub order_count: u64,
    pub by_status: StatusCounts,
    /// Totals of delivered orders, per currency (orders of different currencies never add up).
    pub lifetime_value_cents: BTreeMap<String, i64>,
    pub updated_at: OffsetDateTime,
}

/// The orders read model inside a projection batch (see [`super::ProjectionBatch`]).
#[async_trait]
pub trait OrderRows: Send {
    async fn order_summary(&mut self, id: Uuid) -> Result<Option<OrderSummaryRow>, ReadModelError>;
    async fn put_order_summary(&mut self, row: &OrderSummaryRow) -> Result<(), ReadModelError>;
    // The bulk forms let a projection that folds a whole batch read and write each row once;
    // the defaults go one row at a time, an adapter with round trips to save overrides them.

    /// The summaries of those of `ids` that exist, in no particular order.
    async fn order_summaries(
        &mut self,
        ids: &[Uuid],
    ) -> Result<Vec<OrderSummaryRow>, ReadModelError> {
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            rows.extend(self.order_summary(*id).await?);
        }
        Ok(rows)
    }
    /// Writes each row as [`OrderRows::put_order_summary`] does (one row per order).
    async fn put_order_summaries(
        &mut self,
        rows: &[OrderSummaryRow],
    ) -> Result<(), ReadModelError> {
        for row in rows {
            self.put_order_summary(row).await?;
        }
        Ok(())
    }
    /// The statistics of those of `customer_ids` that have some, in no particular order.
    async fn customer_stats_many(
        &mut self,
        customer_ids: &[String],
    ) -> Result<Vec<CustomerStatsRow>, ReadModelError>;
    /// Writes each row, replacing the customer's (one row per customer; statistics carry no
    /// version: the projection reads, changes and writes them within its batch).
    async fn put_customer_stats_many(
        &mut self,
        rows: &[CustomerStatsRow],
    ) -> Result<(), ReadModelError>;
}

/// The queries of the orders read model; each answer carries the orders projection's position.
#[async_trait]
pub trait OrderQueries: Send + Sync {
    async fn order_summary(
        &self,
        id: Uuid,
    ) -> Result<Positioned<Option<OrderSummaryRow>>, ReadModelError>;
    /// A customer's orders, newest first, placed before `before` (a `placed_position`).
    async fn customer_orders(
        &self,
        customer_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Positioned<Vec<OrderSummaryRow>>, ReadModelError>;
    async fn customer_stats(
        &self,
        customer_id: &str,
    ) -> Result<Positioned<Option<CustomerStatsRow>>, ReadModelError>;
}
