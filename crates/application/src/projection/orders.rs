//! Projection `orders`: the order summary (one row per order, folded by the domain's own
//! `evolve`, so the read model cannot disagree with the aggregate) and the customer statistics,
//! adjusted only when the summary row actually moves to a new stream version.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::Serialize;
use strata_domain::Aggregate;
use strata_domain::order::{Order, OrderEvent, OrderState, OrderStatus, PlacedOrder};
use strata_ports::{
    CustomerStatsRow, OrderLineRow, OrderSummaryRow, OrderSummaryStatus, ProjectionBatch,
    ProjectionName, RecordedEvent, StatusCounts,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{HandlerError, Projection};
use crate::rehydrate::decode;

/// Order summaries and customer statistics.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrdersProjection;

#[async_trait]
impl Projection for OrdersProjection {
    fn name(&self) -> ProjectionName {
        ProjectionName::Orders
    }

    fn handles(&self, category: &str) -> bool {
        category == Order::CATEGORY
    }

    async fn apply(
        &self,
        batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        self.apply_all(batch, &[event]).await.map_err(|(_, e)| e)
    }

    /// Folds each order's events of the batch in memory from its stored row, then writes every
    /// changed summary and customer statistics row once: two reads and two writes per batch,
    /// whatever its size.
    async fn apply_all<'e>(
        &self,
        batch: &mut dyn ProjectionBatch,
        events: &[&'e RecordedEvent],
    ) -> Result<(), (&'e RecordedEvent, HandlerError)> {
        let (Some(&first), Some(&last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let mut ids: Vec<Uuid> = events.iter().map(|e| e.stream_id.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        let stored = batch
            .order_summaries(&ids)
            .await
            .map_err(|e| (first, e.into()))?;
        let mut orders: HashMap<Uuid, Folding> = HashMap::with_capacity(ids.len());
        for row in stored {
            let state = state_of(&row).map_err(|e| (first, e))?;
            orders.insert(row.order_id, Folding::stored(&row, state));
        }
        let mut changes: Vec<StatusChange> = Vec::new();
        for &event in events {
            let folding = orders.entry(event.stream_id.id()).or_default();
            if let Some(change) = folding.apply(event).map_err(|e| (event, e))? {
                changes.push(change);
            }
        }

        let rows: Vec<OrderSummaryRow> = orders
            .into_iter()
            .filter_map(|(id, folding)| folding.into_changed_row(id))
            .collect();
        batch
            .put_order_summaries(&rows)
            .await
            .map_err(|e| (last, e.into()))?;

        if changes.is_empty() {
            return Ok(());
        }
        let mut customers: Vec<String> = changes.iter().map(|c| c.customer_id.clone()).collect();
        customers.sort_unstable();
        customers.dedup();
        let mut stats: HashMap<String, CustomerStatsRow> = batch
            .customer_stats_many(&customers)
            .await
            .map_err(|e| (last, e.into()))?
            .into_iter()
            .map(|row| (row.customer_id.clone(), row))
            .collect();
        for change in changes {
            let row = stats
                .entry(change.customer_id.clone())
                .or_insert_with(|| CustomerStatsRow {
                    customer_id: change.customer_id.clone(),
                    order_count: 0,
                    by_status: StatusCounts::default(),
                    lifetime_value_cents: Default::default(),
                    updated_at: change.event.recorded_at,
                });
            change.apply_to(row).map_err(|e| (change.event, e))?;
        }
        let stats: Vec<CustomerStatsRow> = stats.into_values().collect();
        batch
            .put_customer_stats_many(&stats)
            .await
            .map_err(|e| (last, e.into()))
    }

    async fn skip(
        &self,
        batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        skip_version!(batch, event, order_summary, put_order_summary)
    }
}

/// One order being folded through a batch: its domain state at `version`, where and when it
/// was placed, and when the batch last changed it (`None`: the batch changed nothing).
#[derive(Default)]
struct Folding {
    state: OrderState,
    version: u64,
    /// The global position and time of its `OrderPlaced`.
    placed: Option<(u64, OffsetDateTime)>,
    updated_at: Option<OffsetDateTime>,
}

impl Folding {
    fn stored(row: &OrderSummaryRow, state: PlacedOrder) -> Self {
        Self {
            state: Some(state),
            version: row.version,
            placed: Some((row.placed_position, row.placed_at)),
            updated_at: None,
        }
    }

    /// Applies one event, as the order summary's handler: nothing for one applied before, an
    /// error for one out of order or one the domain cannot fold. Returns the status change of
    /// the customer's statistics, if the status moved.
    fn apply<'e>(
        &mut self,
        event: &'e RecordedEvent,
    ) -> Result<Option<StatusChange<'e>>, HandlerError> {
        let id = event.stream_id.id();
        let row_version = self.state.is_some().then_some(self.version);
        if !super::is_next("order", row_version, event)? {
            return Ok(None); // applied before: nothing changes
        }
        let decoded: OrderEvent =
            decode::<Order>(event).map_err(|e| HandlerError::Rejected(e.to_string()))?;
        let before = self.state.as_ref().map(|o| summary_status(o.status));
        let Some(order) = Order::evolve(self.state.take(), &decoded) else {
            return Err(HandlerError::Rejected(format!(
                "order {id}: {} before OrderPlaced",
                event.event_type
            )));
        };
        if let Some(item) = order.items.iter().find(|i| i.line_total().is_none()) {
            return Err(HandlerError::Rejected(format!(
                "order {id}: the line of {} overflows",
                item.product_id
            )));
        }
        // The domain refuses a total beyond 64 bits and `evolve` saturates only on data written
        // around it: such a total is parked, never shown.
        if order.checked_total() != Some(order.total_cents) {
            return Err(HandlerError::Rejected(format!(
                "order {id}: the total does not fit in 64 bits"
            )));
        }
        let after = summary_status(order.status);
        let change = (before != Some(after)).then(|| StatusChange {
            event,
            customer_id: order.customer_id.as_str().to_owned(),
            before,
            after,
            delivered_total: (order.status == OrderStatus::Delivered)
                .then(|| (order.currency.as_str().to_owned(), order.total_cents)),
        });
        self.placed
            .get_or_insert((event.global_position, event.recorded_at));
        self.version = event.stream_version;
        self.updated_at = Some(event.recorded_at);
        self.state = Some(order);
        Ok(change)
    }

    /// The summary row to write, when the batch applied something to it.
    fn into_changed_row(self, id: Uuid) -> Option<OrderSummaryRow> {
        let updated_at = self.updated_at?;
        let order = self.state?;
        let (placed_position, placed_at) = self.placed?;
        let items = order
            .items
            .iter()
            .map(|item| OrderLineRow {
                product_id: item.product_id.as_str().to_owned(),
                quantity: item.quantity.get(),
                unit_price_cents: item.unit_price.cents(),
                // Checked when the event was applied.
                line_total_cents: item.line_total().unwrap_or(i64::MAX),
            })
            .collect();
        Some(OrderSummaryRow {
            order_id: id,
            customer_id: order.customer_id.as_str().to_owned(),
            status: summary_status(order.status),
            items,
            item_count: order
                .items
                .iter()
                .map(|i| u64::from(i.quantity.get()))
                .sum(),
            total_cents: order.total_cents,
            currency: order.currency.as_str().to_owned(),
            shipping_address: order.shipping_address.as_str().to_owned(),
            tracking_number: order
                .tracking_number
                .as_ref()
                .map(|t| t.as_str().to_owned()),
            cancellation_reason: order
                .cancellation_reason
                .as_ref()
                .map(|r| r.as_str().to_owned()),
            placed_at,
            updated_at,
            version: self.version,
            placed_position,
        })
    }
}

/// An order's move from one status to another, as the customer's statistics count it.
struct StatusChange<'e> {
    event: &'e RecordedEvent,
    customer_id: String,
    /// `None`: the order was just placed.
    before: Option<OrderSummaryStatus>,
    after: OrderSummaryStatus,
    /// The order's total when it was delivered by this change.
    delivered_total: Option<(String, i64)>,
}

impl StatusChange<'_> {
    fn apply_to(&self, stats: &mut CustomerStatsRow) -> Result<(), HandlerError> {
        match self.before {
            None => stats.order_count += 1,
            Some(status) => {
                let count = stats.by_status.of_mut(status);
                *count = count.saturating_sub(1);
            }
        }
        *stats.by_status.of_mut(self.after) += 1;
        if let Some((currency, total)) = &self.delivered_total {
            let value = stats
                .lifetime_value_cents
                .entry(currency.clone())
                .or_insert(0);
            // A total that cannot be represented is refused (the event is parked and shows in
            // the dead letters), never saturated into a wrong figure.
            *value = value.checked_add(*total).ok_or_else(|| {
                HandlerError::Rejected(format!(
                    "customer {}: the lifetime value in {currency} does not fit in 64 bits",
                    self.customer_id
                ))
            })?;
        }
        stats.updated_at = self.event.recorded_at;
        Ok(())
    }
}

/// The skip of both projections: move the row's version past the event, if it is the next.
macro_rules! skip_version {
    ($batch:expr, $event:expr, $load:ident, $put:ident) => {{
        if let Some(mut row) = $batch.$load($event.stream_id.id()).await? {
            if row.version + 1 == $event.stream_version {
                row.version = $event.stream_version;
                row.updated_at = $event.recorded_at;
                $batch.$put(&row).await?;
            }
        }
        Ok(())
    }};
}
pub(super) use skip_version;

/// The read model's name of a domain status (the same text: the domain's serde form).
fn summary_status(status: OrderStatus) -> OrderSummaryStatus {
    match status {
        OrderStatus::Pending => OrderSummaryStatus::Pending,
        OrderStatus::Confirmed => OrderSummaryStatus::Confirmed,
        OrderStatus::Shipped => OrderSummaryStatus::Shipped,
        OrderStatus::Delivered => OrderSummaryStatus::Delivered,
        OrderStatus::Cancelled => OrderSummaryStatus::Cancelled,
    }
}

/// A summary row in the serde form of the domain's `PlacedOrder` (the row keeps every field of
/// it; its lines carry their serde form from the ports, the extra `lineTotalCents` is ignored).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredOrder<'r> {
    customer_id: &'r str,
    currency: &'r str,
    items: &'r [OrderLineRow],
    shipping_address: &'r str,
    status: OrderSummaryStatus,
    total_cents: i64,
    tracking_number: Option<&'r str>,
    cancellation_reason: Option<&'r str>,
}

/// The domain state a summary row was folded from: decoded by the domain's own types, so a
/// value it would refuse is refused here too.
fn state_of(row: &OrderSummaryRow) -> Result<PlacedOrder, HandlerError> {
    let stored = StoredOrder {
        customer_id: &row.customer_id,
        currency: &row.currency,
        items: &row.items,
        shipping_address: &row.shipping_address,
        status: row.status,
        total_cents: row.total_cents,
        tracking_number: row.tracking_number.as_deref(),
        cancellation_reason: row.cancellation_reason.as_deref(),
    };
    serde_json::to_value(&stored)
        .and_then(serde_json::from_value)
        .map_err(|e| HandlerError::Rejected(format!("order summary {}: {e}", row.order_id)))
}
