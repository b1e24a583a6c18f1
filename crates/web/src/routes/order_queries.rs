//! The order queries, answered by the `orders` projection's read models (never the event store):
//! an order's summary, a customer's orders newest first, and a customer's statistics.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;
use strata_application::Page;
use strata_ports::{CustomerStatsRow, OrderLineRow, OrderSummaryRow};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, MinPosition, MinPositionParams};
use crate::routes::common::{OrderStatusName, PageParams, positioned};
use crate::routes::orders::LineDto;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/orders/{id}", get(order))
        .route("/v1/customers/{customerId}/orders", get(customer_orders))
        .route("/v1/customers/{customerId}/stats", get(customer_stats))
}

/// An order as the orders projection last saw it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummaryDto {
    pub order_id: Uuid,
    pub customer_id: String,
    #[schema(value_type = OrderStatusName)]
    pub status: String,
    pub items: Vec<LineDto>,
    /// Lines: one per product, whatever its quantity.
    pub item_count: u64,
    /// Units: the quantities of all lines added up.
    pub unit_count: u64,
    pub total_cents: i64,
    pub currency: String,
    pub shipping_address: String,
    pub tracking_number: Option<String>,
    pub cancellation_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub placed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// The order's stream version the summary includes.
    pub version: u64,
}

impl From<OrderLineRow> for LineDto {
    fn from(line: OrderLineRow) -> Self {
        Self {
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price_cents: line.unit_price_cents,
            line_total_cents: line.line_total_cents,
        }
    }
}

impl From<OrderSummaryRow> for OrderSummaryDto {
    fn from(row: OrderSummaryRow) -> Self {
        Self {
            order_id: row.order_id,
            customer_id: row.customer_id,
            status: row.status.as_str().to_owned(),
            // The read model stores units; its lines are the items themselves.
            item_count: u64::try_from(row.items.len()).unwrap_or(u64::MAX),
            unit_count: row.item_count,
            items: row.items.into_iter().map(LineDto::from).collect(),
            total_cents: row.total_cents,
            currency: row.currency,
            shipping_address: row.shipping_address,
            tracking_number: row.tracking_number,
            cancellation_reason: row.cancellation_reason,
            placed_at: row.placed_at,
            updated_at: row.updated_at,
            version: row.version,
        }
    }
}

/// A page of a customer's orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPage {
    pub items: Vec<OrderSummaryDto>,
    /// Pass it as `cursor` for the next page; `null` when this page is the last.
    pub next_cursor: Option<String>,
}

impl From<Page<OrderSummaryRow>> for OrderPage {
    fn from(page: Page<OrderSummaryRow>) -> Self {
        Self {
            items: page.items.into_iter().map(OrderSummaryDto::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

/// A customer's orders counted by status, keyed by the status names of [`OrderStatusName`]
/// (upper-case, as in `status` and a search's `statusCounts`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub struct StatusCountsDto {
    pub pending: u64,
    pub confirmed: u64,
    pub shipped: u64,
    pub delivered: u64,
    pub cancelled: u64,
}

/// A customer's order statistics (zeros for a customer without orders).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerStatsDto {
    pub customer_id: String,
    pub order_count: u64,
    pub by_status: StatusCountsDto,
    /// Totals of delivered orders, per currency, in minor units: `{"EUR": 2500}`.
    #[schema(example = json!({"EUR": 2500}))]
    pub lifetime_value_cents: BTreeMap<String, i64>,
}

impl From<CustomerStatsRow> for CustomerStatsDto {
    fn from(row: CustomerStatsRow) -> Self {
        let counts = row.by_status;
        Self {
            customer_id: row.customer_id,
            order_count: row.order_count,
            by_status: StatusCountsDto {
                pending: counts.pending,
                confirmed: counts.confirmed,
                shipped: counts.shipped,
                delivered: counts.delivered,
                cancelled: counts.cancelled,
            },
            lifetime_value_cents: row.lifetime_value_cents,
        }
    }
}

/// An order's summary, from the read model.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "queries", operation_id = "orderSummary",
    params(("id" = Uuid, Path, description = "The order's id"), MinPositionParams),
    responses(
        (status = 200, description = "The order's summary", body = OrderSummaryDto, headers(("X-Projection-Position" = u64, description = "The log position the projection had processed when it answered"))),
        (status = 400, description = "A malformed id or X-Min-Position, or one beyond the head of the log"),
        (status = 401),
        (status = 404, description = "Unknown, or not yours"),
        (status = 503, description = "The orders projection did not reach X-Min-Position in time")),
    security(("bearer" = [])))]
pub async fn order(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    MinPosition(min_position): MinPosition,
) -> Result<Response, ApiError> {
    let found = state.queries.order(&principal, id, min_position).await?;
    Ok(positioned(
        OrderSummaryDto::from(found.value),
        found.position,
    ))
}

/// A customer's orders, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/customers/{customerId}/orders", tag = "queries", operation_id = "customerOrders",
    params(("customerId" = String, Path, description = "The customer's id", pattern = "^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64), PageParams, MinPositionParams),
    responses(
        (status = 200, description = "A page of the customer's orders, newest first", body = OrderPage, headers(("X-Projection-Position" = u64, description = "The log position the projection had processed when it answered"))),
        (status = 400, description = "A malformed customer id or X-Min-Position, one beyond the head of the log, a limit outside 1..=100, a cursor this list did not issue, an unknown parameter"),
        (status = 401),
        (status = 404, description = "Another customer's"),
        (status = 503, description = "The orders projection did not reach X-Min-Position in time")),
    security(("bearer" = [])))]
pub async fn customer_orders(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(customer_id): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageParams>,
    MinPosition(min_position): MinPosition,
) -> Result<Response, ApiError> {
    let found = state
        .queries
        .customer_orders(
            &principal,
            &customer_id,
            page.limit(),
            page.cursor.as_deref(),
            min_position,
        )
        .await?;
    Ok(positioned(OrderPage::from(found.value), found.position))
}

/// A customer's order statistics: counts by status and the lifetime value of delivered orders.
#[utoipa::path(get, path = "/v1/customers/{customerId}/stats", tag = "queries", operation_id = "customerStats",
    params(("customerId" = String, Path, description = "The customer's id", pattern = "^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64), MinPositionParams),
    responses(
        (status = 200, description = "The customer's order statistics", body = CustomerStatsDto, headers(("X-Projection-Position" = u64, description = "The log position the projection had processed when it answered"))),
        (status = 400, description = "A malformed customer id or X-Min-Position, or one beyond the head of the log"),
        (status = 401),
        (status = 404, description = "Another customer's"),
        (status = 503, description = "The orders projection did not reach X-Min-Position in time")),
    security(("bearer" = [])))]
pub async fn customer_stats(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(customer_id): ApiPath<String>,
    MinPosition(min_position): MinPosition,
) -> Result<Response, ApiError> {
    let found = state
        .queries
        .customer_stats(&principal, &customer_id, min_position)
        .await?;
    Ok(positioned(
        CustomerStatsDto::from(found.value),
        found.position,
    ))
}
