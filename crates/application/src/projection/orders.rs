//! Projection `orders`: the order summary (one row per order, folded by the domain's own
//! `evolve`, so the read model cannot disagree with the aggregate) and the customer statistics,
//! adjusted only when the summary row actually moves to a new stream version.

use async_trait::async_trait;
use serde_json::{Value, json};
use strata_domain::Aggregate;
use strata_domain::order::{Order, OrderEvent, OrderState, OrderStatus, PlacedOrder};
use strata_ports::{
    CustomerStatsRow, OrderLineRow, OrderSummaryRow, ProjectionBatch, RecordedEvent, StatusCounts,
};

use super::{HandlerError, Projection};
use crate::rehydrate::decode;

/// Order summaries and customer statistics.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrdersProjection;

#[async_trait]
impl Projection for OrdersProjection {
    fn name(&self) -> &'static str {
        "orders"
    }

    fn handles(&self, category: &str) -> bool {
        category == Order::CATEGORY
    }

    async fn apply(
        &self,
        batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        let decoded: OrderEvent =
            decode::<Order>(event).map_err(|e| HandlerError::Rejected(e.to_string()))?;
        let id = event.stream_id.id();
        let current = batch.order_summary(id).await?;
        if !super::is_next("order", current.as_ref().map(|row| row.version), event)? {
            return Ok(()); // applied before: nothing changes
        }
        let state: OrderState = current.as_ref().map(state_of).transpose()?;
        let Some(order) = Order::evolve(state, &decoded) else {
            return Err(HandlerError::Rejected(format!(
                "order {id}: {} before OrderPlaced",
                event.event_type
            )));
        };
        let row = OrderSummaryRow {
            order_id: id,
            customer_id: order.customer_id.as_str().to_owned(),
            status: order.status.as_str().to_owned(),
            items: order
                .items
                .iter()
                .map(|item| {
                    let line_total_cents = item.line_total().ok_or_else(|| {
                        HandlerError::Rejected(format!(
                            "order {id}: the line of {} overflows",
                            item.product_id
                        ))
                    })?;
                    Ok(OrderLineRow {
                        product_id: item.product_id.as_str().to_owned(),
                        quantity: item.quantity.get(),
                        unit_price_cents: item.unit_price.cents(),
                        line_total_cents,
                    })
                })
                .collect::<Result<_, HandlerError>>()?,
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
            placed_at: current
                .as_ref()
                .map_or(event.recorded_at, |row| row.placed_at),
            updated_at: event.recorded_at,
            version: event.stream_version,
            placed_position: current
                .as_ref()
                .map_or(event.global_position, |row| row.placed_position),
        };
        batch.put_order_summary(&row).await?;

        let before = current.as_ref().map(|row| row.status.as_str());
        if before != Some(row.status.as_str()) {
            let mut stats = batch
                .customer_stats(&row.customer_id)
                .await?
                .unwrap_or_else(|| CustomerStatsRow {
                    customer_id: row.customer_id.clone(),
                    order_count: 0,
                    by_status: StatusCounts::default(),
                    lifetime_value_cents: Default::default(),
                    updated_at: event.recorded_at,
                });
            match before {
                None => stats.order_count += 1,
                Some(status) => {
                    let count = count_of(&mut stats.by_status, status)?;
                    *count = count.saturating_sub(1);
                }
            }
            *count_of(&mut stats.by_status, &row.status)? += 1;
            if order.status == OrderStatus::Delivered {
                let value = stats
                    .lifetime_value_cents
                    .entry(row.currency.clone())
                    .or_insert(0);
                *value = value.saturating_add(row.total_cents);
            }
            stats.updated_at = event.recorded_at;
            batch.put_customer_stats(&stats).await?;
        }
        Ok(())
    }

    async fn skip(
        &self,
        batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        skip_version!(batch, event, order_summary, put_order_summary)
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

fn count_of<'a>(counts: &'a mut StatusCounts, status: &str) -> Result<&'a mut u64, HandlerError> {
    Ok(match status {
        "PENDING" => &mut counts.pending,
        "CONFIRMED" => &mut counts.confirmed,
        "SHIPPED" => &mut counts.shipped,
        "DELIVERED" => &mut counts.delivered,
        "CANCELLED" => &mut counts.cancelled,
        other => {
            return Err(HandlerError::Rejected(format!(
                "unknown order status {other:?}"
            )));
        }
    })
}

/// The domain state a summary row was folded from (the row keeps every field of it).
fn state_of(row: &OrderSummaryRow) -> Result<PlacedOrder, HandlerError> {
    let items: Vec<Value> = row
        .items
        .iter()
        .map(|line| {
            json!({
                "productId": line.product_id,
                "quantity": line.quantity,
                "unitPriceCents": line.unit_price_cents,
            })
        })
        .collect();
    serde_json::from_value(json!({
        "customerId": row.customer_id,
        "currency": row.currency,
        "items": items,
        "shippingAddress": row.shipping_address,
        "status": row.status,
        "totalCents": row.total_cents,
        "trackingNumber": row.tracking_number,
        "cancellationReason": row.cancellation_reason,
    }))
    .map_err(|e| HandlerError::Rejected(format!("order summary {}: {e}", row.order_id)))
}
