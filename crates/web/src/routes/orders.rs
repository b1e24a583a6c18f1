//! `/v1/orders`: the order commands, the audit trail and time travel of one order.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use strata_application::Target;
use strata_domain::order::{LineItem, Order, OrderCommand, OrderState, PlaceOrder, PlacedOrder};
use strata_domain::values::{
    CancellationReason, Currency, CustomerId, ProductId, Quantity, ShippingAddress, TrackingNumber,
    UnitPrice,
};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Authenticated, Commander};
use crate::error::ApiError;
use crate::extract::{
    ApiJson, ApiPath, ApiQuery, CommandHeaders, IdempotencyKeyParams, IfMatchParams, json_integer,
};
use crate::routes::common::{
    AsOfParams, AuditTrail, OrderStatusName, Resource, audit_trail, execute, free_text_schema,
    identifier_schema, view_as_of,
};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/orders", post(place_order))
        .route("/v1/orders/{id}/items", post(add_item))
        .route(
            "/v1/orders/{id}/items/{product_id}/remove",
            post(remove_item),
        )
        .route("/v1/orders/{id}/confirm", post(confirm))
        .route("/v1/orders/{id}/ship", post(ship))
        .route("/v1/orders/{id}/deliver", post(deliver))
        .route("/v1/orders/{id}/cancel", post(cancel))
        .route("/v1/orders/{id}/events", get(events))
        .route("/v1/orders/{id}/state", get(state))
}

impl Resource for Order {
    const ID_FIELD: &'static str = "orderId";
    type View = OrderStateDto;

    fn location(id: Uuid) -> String {
        format!("/v1/orders/{id}/state")
    }

    fn view(id: Uuid, version: u64, state: OrderState) -> Option<OrderStateDto> {
        state.map(|order| OrderStateDto::new(id, version, order))
    }

    fn command_name(command: &OrderCommand) -> &'static str {
        match command {
            OrderCommand::PlaceOrder(_) => "PlaceOrder",
            OrderCommand::AddItem(_) => "AddItem",
            OrderCommand::RemoveItem { .. } => "RemoveItem",
            OrderCommand::Confirm => "Confirm",
            OrderCommand::Ship { .. } => "Ship",
            OrderCommand::Deliver => "Deliver",
            OrderCommand::Cancel { .. } => "Cancel",
        }
    }
}

/// A line of an order: quantity ≥ 1, unit price ≥ 0 in minor units of the order's currency.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemRequest {
    #[schema(schema_with = identifier_schema)]
    pub product_id: String,
    /// Units of the product: 1 to 4294967295.
    #[schema(example = 2, minimum = 1, maximum = 4_294_967_295_u64)]
    #[serde(deserialize_with = "json_integer")]
    pub quantity: i64,
    /// Price of one unit in minor units of the order's currency (cents): 0 or more.
    #[schema(example = 1299, minimum = 0)]
    #[serde(deserialize_with = "json_integer")]
    pub unit_price_cents: i64,
}

impl ItemRequest {
    fn into_line(self) -> Result<LineItem, ApiError> {
        let quantity = u32::try_from(self.quantity).map_err(|_| {
            if self.quantity < 1 {
                ApiError::from(strata_domain::ValidationError::ZeroQuantity)
            } else {
                ApiError::Unprocessable(format!("quantity must be at most {}", u32::MAX))
            }
        })?;
        Ok(LineItem {
            product_id: ProductId::new(self.product_id)?,
            quantity: Quantity::new(quantity)?,
            unit_price: UnitPrice::new(self.unit_price_cents)?,
        })
    }
}

/// Places an order for a customer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrderRequest {
    #[schema(schema_with = identifier_schema)]
    pub customer_id: String,
    /// ISO 4217 code shared by every line (the enum lists every one accepted).
    #[schema(example = "EUR")]
    pub currency: String,
    /// One line per product, at most 100 lines (more: 422).
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<ItemRequest>,
    #[schema(schema_with = free_text_schema::<500>)]
    pub shipping_address: String,
}

/// Ships a confirmed order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShipRequest {
    #[schema(schema_with = free_text_schema::<100>)]
    pub tracking_number: String,
}

/// Cancels a pending or confirmed order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelRequest {
    #[schema(schema_with = free_text_schema::<500>)]
    pub reason: String,
}

/// Where an order command landed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderAck {
    pub order_id: Uuid,
    /// The order's stream version after the command (use it in `If-Match`).
    pub version: u64,
    /// The global log position of the command's last event.
    pub position: u64,
}

/// One line of an order's state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineDto {
    pub product_id: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
    pub line_total_cents: i64,
}

/// An order as rebuilt from its events.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderStateDto {
    pub order_id: Uuid,
    pub version: u64,
    pub customer_id: String,
    pub currency: String,
    #[schema(value_type = OrderStatusName)]
    pub status: String,
    pub items: Vec<LineDto>,
    /// Lines: one per product, whatever its quantity.
    pub item_count: u64,
    /// Units: the quantities of all lines added up.
    pub unit_count: u64,
    pub total_cents: i64,
    pub shipping_address: String,
    pub tracking_number: Option<String>,
    pub cancellation_reason: Option<String>,
}

impl OrderStateDto {
    fn new(order_id: Uuid, version: u64, order: PlacedOrder) -> Self {
        Self {
            order_id,
            version,
            customer_id: order.customer_id.to_string(),
            currency: order.currency.to_string(),
            status: order.status.as_str().to_owned(),
            item_count: u64::try_from(order.items.len()).unwrap_or(u64::MAX),
            unit_count: order
                .items
                .iter()
                .map(|line| u64::from(line.quantity.get()))
                .sum(),
            items: order
                .items
                .iter()
                .map(|line| LineDto {
                    product_id: line.product_id.to_string(),
                    quantity: line.quantity.get(),
                    unit_price_cents: line.unit_price.cents(),
                    line_total_cents: line.line_total().unwrap_or(i64::MAX),
                })
                .collect(),
            total_cents: order.total_cents,
            shipping_address: order.shipping_address.to_string(),
            tracking_number: order.tracking_number.map(|t| t.to_string()),
            cancellation_reason: order.cancellation_reason.map(|r| r.to_string()),
        }
    }
}

/// Place an order.
#[utoipa::path(post, path = "/v1/orders", tag = "orders", operation_id = "placeOrder", request_body = PlaceOrderRequest,
    params(IfMatchParams, IdempotencyKeyParams),
    responses(
        (status = 201, description = "Order placed (or the first answer to this Idempotency-Key, replayed)", body = OrderAck, headers(
            ("Location" = String, description = "Where the new order can be read: /v1/orders/{id}/state"),
            ("ETag" = String, description = "The order's version, for If-Match"))),
        (status = 400), (status = 401), (status = 403, description = "An auditor, or a customer placing an order for another customer"),
        (status = 412, description = "If-Match named a version other than 0: a new order has none yet"), (status = 415), (status = 422)),
    security(("bearer" = [])))]
pub async fn place_order(
    State(state): State<AppState>,
    Commander(principal): Commander,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    let items = body
        .items
        .into_iter()
        .map(ItemRequest::into_line)
        .collect::<Result<Vec<_>, _>>()?;
    let command = OrderCommand::PlaceOrder(PlaceOrder {
        customer_id: CustomerId::new(body.customer_id)?,
        currency: Currency::new(&body.currency)?,
        items,
        shipping_address: ShippingAddress::new(body.shipping_address)?,
    });
    execute::<Order>(&state, principal, headers, Target::New, command).await
}

/// Add an item (or more units of a product already in the order at the same price).
#[utoipa::path(post, path = "/v1/orders/{id}/items", tag = "orders", operation_id = "addOrderItem", request_body = ItemRequest,
    params(("id" = Uuid, Path, description = "The order's id"), IfMatchParams, IdempotencyKeyParams),
    responses((status = 200, description = "Applied (or the first answer to this Idempotency-Key, replayed)", body = OrderAck, headers(("ETag" = String, description = "The order's new version, for If-Match"))),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 412), (status = 415), (status = 422)),
    security(("bearer" = [])))]
pub async fn add_item(
    State(state): State<AppState>,
    Commander(principal): Commander,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<ItemRequest>,
) -> Result<Response, ApiError> {
    let command = OrderCommand::AddItem(body.into_line()?);
    execute::<Order>(&state, principal, headers, Target::Existing(id), command).await
}

/// Remove a product's line from a pending order.
#[utoipa::path(post, path = "/v1/orders/{id}/items/{productId}/remove", tag = "orders", operation_id = "removeOrderItem",
    params(("id" = Uuid, Path, description = "The order's id"), ("productId" = String, Path, description = "The product whose line to remove", pattern = "^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64), IfMatchParams, IdempotencyKeyParams),
    responses((status = 200, description = "Applied (or the first answer to this Idempotency-Key, replayed)", body = OrderAck, headers(("ETag" = String, description = "The order's new version, for If-Match"))),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 412), (status = 422)),
    security(("bearer" = [])))]
pub async fn remove_item(
    State(state): State<AppState>,
    Commander(principal): Commander,
    ApiPath((id, product_id)): ApiPath<(Uuid, String)>,
    headers: CommandHeaders,
) -> Result<Response, ApiError> {
    let command = OrderCommand::RemoveItem {
        product_id: ProductId::new(product_id)?,
    };
    execute::<Order>(&state, principal, headers, Target::Existing(id), command).await
}

/// Confirm a pending order.
#[utoipa::path(post, path = "/v1/orders/{id}/confirm", tag = "orders", operation_id = "confirmOrder",
    params(("id" = Uuid, Path, description = "The order's id"), IfMatchParams, IdempotencyKeyParams),
    responses((status = 200, description = "Applied (or the first answer to this Idempotency-Key, replayed)", body = OrderAck, headers(("ETag" = String, description = "The order's new version, for If-Match"))),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 412), (status = 422)),
    security(("bearer" = [])))]
pub async fn confirm(
    State(state): State<AppState>,
    Commander(principal): Commander,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
) -> Result<Response, ApiError> {
    execute::<Order>(
        &state,
        principal,
        headers,
        Target::Existing(id),
        OrderCommand::Confirm,
    )
    .await
}

/// Ship a confirmed order.
#[utoipa::path(post, path = "/v1/orders/{id}/ship", tag = "orders", operation_id = "shipOrder", request_body = ShipRequest,
    params(("id" = Uuid, Path, description = "The order's id"), IfMatchParams, IdempotencyKeyParams),
    responses((status = 200, description = "Applied (or the first answer to this Idempotency-Key, replayed)", body = OrderAck, headers(("ETag" = String, description = "The order's new version, for If-Match"))),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 412), (status = 415), (status = 422)),
    security(("bearer" = [])))]
pub async fn ship(
    State(state): State<AppState>,
    Commander(principal): Commander,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<ShipRequest>,
) -> Result<Response, ApiError> {
    let command = OrderCommand::Ship {
        tracking_number: TrackingNumber::new(body.tracking_number)?,
    };
    execute::<Order>(&state, principal, headers, Target::Existing(id), command).await
}

/// Mark a shipped order delivered.
#[utoipa::path(post, path = "/v1/orders/{id}/deliver", tag = "orders", operation_id = "deliverOrder",
    params(("id" = Uuid, Path, description = "The order's id"), IfMatchParams, IdempotencyKeyParams),
    responses((status = 200, description = "Applied (or the first answer to this Idempotency-Key, replayed)", body = OrderAck, headers(("ETag" = String, description = "The order's new version, for If-Match"))),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 412), (status = 422)),
    security(("bearer" = [])))]
pub async fn deliver(
    State(state): State<AppState>,
    Commander(principal): Commander,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
) -> Result<Response, ApiError> {
    execute::<Order>(
        &state,
        principal,
        headers,
        Target::Existing(id),
        OrderCommand::Deliver,
    )
    .await
}

/// Cancel a pending or confirmed order.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders", operation_id = "cancelOrder", request_body = CancelRequest,
    params(("id" = Uuid, Path, description = "The order's id"), IfMatchParams, IdempotencyKeyParams),
    responses((status = 200, description = "Applied (or the first answer to this Idempotency-Key, replayed)", body = OrderAck, headers(("ETag" = String, description = "The order's new version, for If-Match"))),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 412), (status = 415), (status = 422)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Commander(principal): Commander,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<CancelRequest>,
) -> Result<Response, ApiError> {
    let command = OrderCommand::Cancel {
        reason: CancellationReason::new(body.reason)?,
    };
    execute::<Order>(&state, principal, headers, Target::Existing(id), command).await
}

/// The order's audit trail: every event, as stored, with who caused it.
#[utoipa::path(get, path = "/v1/orders/{id}/events", tag = "orders", operation_id = "orderEvents",
    params(("id" = Uuid, Path, description = "The order's id")),
    responses((status = 200, description = "Every event of the order, oldest first", body = AuditTrail),
        (status = 400), (status = 401), (status = 404)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<AuditTrail>, ApiError> {
    audit_trail::<Order>(&state, &principal, id).await
}

/// The order as it was at a stream version or an instant (now by default), rebuilt from its events.
#[utoipa::path(get, path = "/v1/orders/{id}/state", tag = "orders", operation_id = "orderState",
    params(("id" = Uuid, Path, description = "The order's id"), AsOfParams),
    responses((status = 200, description = "The order at that point", body = OrderStateDto, headers(("ETag" = String, description = "The version the state is at"))),
        (status = 400, description = "Both version and at, a malformed one, or an unknown parameter"),
        (status = 401),
        (status = 404, description = "Unknown, not yours, not yet placed at that point, or a version beyond the end")),
    security(("bearer" = [])))]
pub async fn state(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<AsOfParams>,
) -> Result<Response, ApiError> {
    view_as_of::<Order>(&state, &principal, id, &params).await
}
