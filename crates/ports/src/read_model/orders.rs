//! The orders read model: the order summary (one row per order) and the customer statistics,
//! as a projection batch writes them ([`OrderRows`]) and as the queries read them
//! ([`OrderQueries`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Positioned, ReadModelError};

/// One line of an order summary. Its serde form is how both databases store an order's lines
/// (a JSON array of these objects, camelCase) and how the orders projection hands them back to
/// the domain: stored rows must keep decoding, so never rename a field. The fields are declared
/// in alphabetical order, the order serde writes them in: SQLite's stored text has always had
/// its keys sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineRow {
    pub line_total_cents: i64,
    pub product_id: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
}

/// The order summary read model: everything `GET /v1/orders/{id}` answers, in one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummaryRow {
    pub order_id: Uuid,
    pub customer_id: String,
    pub status: OrderSummaryStatus,
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

/// Where an order is, as its summary stores it (`PENDING`, `CONFIRMED`, `SHIPPED`, `DELIVERED`
/// or `CANCELLED`: the stored text, never renamed). A stored text outside these is
/// [`ReadModelError::Corrupt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderSummaryStatus {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderSummaryStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Confirmed,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
    ];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirmed => "CONFIRMED",
            Self::Shipped => "SHIPPED",
            Self::Delivered => "DELIVERED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// The status stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
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

impl StatusCounts {
    /// The count of `status`.
    pub fn of_mut(&mut self, status: OrderSummaryStatus) -> &mut u64 {
        match status {
            OrderSummaryStatus::Pending => &mut self.pending,
            OrderSummaryStatus::Confirmed => &mut self.confirmed,
            OrderSummaryStatus::Shipped => &mut self.shipped,
            OrderSummaryStatus::Delivered => &mut self.delivered,
            OrderSummaryStatus::Cancelled => &mut self.cancelled,
        }
    }
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
    /// The summary of order `id` in the batch's generation, as the batch sees it.
    ///
    /// # Errors
    /// `Corrupt` for a stored row this code cannot read; `Unavailable` / `Backend`.
    async fn order_summary(&mut self, id: Uuid) -> Result<Option<OrderSummaryRow>, ReadModelError>;
    /// Writes the summary, unless the stored row's version is the same or higher (a replayed
    /// or late older write changes nothing).
    ///
    /// # Errors
    /// `Backend` for a count or position beyond the storage's integers; `Unavailable` /
    /// `Backend` for the storage's failures.
    async fn put_order_summary(&mut self, row: &OrderSummaryRow) -> Result<(), ReadModelError>;
    // The bulk forms let a projection that folds a whole batch read and write each row once;
    // the defaults go one row at a time, an adapter with round trips to save overrides them.

    /// The summaries of those of `ids` that exist, in no particular order.
    ///
    /// # Errors
    /// As for [`OrderRows::order_summary`].
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
    ///
    /// # Errors
    /// As for [`OrderRows::put_order_summary`]; the batch is then to be dropped.
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
    ///
    /// # Errors
    /// `Corrupt` for a stored row this code cannot read; `Unavailable` / `Backend`.
    async fn customer_stats_many(
        &mut self,
        customer_ids: &[String],
    ) -> Result<Vec<CustomerStatsRow>, ReadModelError>;
    /// Writes each row, replacing the customer's (one row per customer; statistics carry no
    /// version: the projection reads, changes and writes them within its batch).
    ///
    /// # Errors
    /// `Backend` for a count beyond the storage's integers; `Unavailable` / `Backend`; the
    /// batch is then to be dropped.
    async fn put_customer_stats_many(
        &mut self,
        rows: &[CustomerStatsRow],
    ) -> Result<(), ReadModelError>;
}

/// The queries of the orders read model; each answer carries the orders projection's position.
#[async_trait]
pub trait OrderQueries: Send + Sync {
    /// The summary of order `id`, if the projection has one.
    ///
    /// # Errors
    /// `Corrupt` for a stored row this code cannot read; `Unavailable` / `Backend`.
    async fn order_summary(
        &self,
        id: Uuid,
    ) -> Result<Positioned<Option<OrderSummaryRow>>, ReadModelError>;
    /// A customer's orders, newest first, placed before `before` (a `placed_position`).
    ///
    /// # Errors
    /// `InvalidInput` for a customer id with a NUL or longer than
    /// [`crate::limits::MAX_LOOKUP_BYTES`], before any statement; `Backend` for a `before`
    /// beyond the storage's integers; `Corrupt`, `Unavailable` / `Backend`.
    async fn customer_orders(
        &self,
        customer_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Positioned<Vec<OrderSummaryRow>>, ReadModelError>;
    /// A customer's statistics, if they placed an order.
    ///
    /// # Errors
    /// `InvalidInput` as for [`OrderQueries::customer_orders`]; `Corrupt`, `Unavailable` /
    /// `Backend`.
    async fn customer_stats(
        &self,
        customer_id: &str,
    ) -> Result<Positioned<Option<CustomerStatsRow>>, ReadModelError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lamp() -> OrderLineRow {
        OrderLineRow {
            line_total_cents: 2_500,
            product_id: "lamp-7".to_owned(),
            quantity: 2,
            unit_price_cents: 1_250,
        }
    }

    #[test]
    fn order_lines_are_stored_as_the_camel_case_json_rows_already_hold() {
        let stored = serde_json::to_string(&[lamp()]).unwrap();

        assert_eq!(
            stored,
            r#"[{"lineTotalCents":2500,"productId":"lamp-7","quantity":2,"unitPriceCents":1250}]"#
        );
    }

    #[test]
    fn order_statuses_are_stored_as_their_upper_case_names() {
        let names: Vec<&str> = OrderSummaryStatus::ALL
            .map(OrderSummaryStatus::as_str)
            .to_vec();

        assert_eq!(
            names,
            ["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED", "CANCELLED"]
        );
        for status in OrderSummaryStatus::ALL {
            assert_eq!(OrderSummaryStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert_eq!(OrderSummaryStatus::parse("pending"), None);
    }

    #[test]
    fn stored_order_lines_decode_whatever_the_order_of_their_keys() {
        let written_by_postgres = r#"[{"productId": "lamp-7", "quantity": 2, "unitPriceCents": 1250, "lineTotalCents": 2500}]"#;

        let lines: Vec<OrderLineRow> = serde_json::from_str(written_by_postgres).unwrap();

        assert_eq!(lines, [lamp()]);
        assert!(serde_json::from_str::<Vec<OrderLineRow>>(r#"[{"productId":"x"}]"#).is_err());
        assert!(serde_json::from_str::<Vec<OrderLineRow>>(r#"{"productId":"x"}"#).is_err());
    }
}
