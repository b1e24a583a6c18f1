//! The Order aggregate: PENDING → CONFIRMED → SHIPPED → DELIVERED, or CANCELLED from PENDING or
//! CONFIRMED; items change only while PENDING; totals are exact integers in minor units.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{DomainEvent, Upcast, UpcastError};
use crate::values::{
    CancellationReason, Currency, CustomerId, ProductId, Quantity, ShippingAddress, TrackingNumber,
    UnitPrice,
};
use crate::{Aggregate, DomainError, RejectionKind};

/// Where an order is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Confirmed,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
    ];

    /// Nothing can happen to an order in a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Delivered | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirmed => "CONFIRMED",
            Self::Shipped => "SHIPPED",
            Self::Delivered => "DELIVERED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str().to_lowercase())
    }
}

/// One line of an order: a product, how many, at what unit price (in the order's currency).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    pub product_id: ProductId,
    pub quantity: Quantity,
    #[serde(rename = "unitPriceCents")]
    pub unit_price: UnitPrice,
}

impl LineItem {
    /// quantity × unit price, or `None` when it does not fit in an `i64`.
    pub fn line_total(&self) -> Option<i64> {
        i64::from(self.quantity.get()).checked_mul(self.unit_price.cents())
    }
}

/// The most lines an order may have: bounds what one request can create and what one summary,
/// search document and response can grow to (a line per product; more units of a product add no
/// line).
pub const MAX_LINES_PER_ORDER: usize = 100;

/// A placed order, as folded from its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacedOrder {
    pub customer_id: CustomerId,
    pub currency: Currency,
    pub items: Vec<LineItem>,
    pub shipping_address: ShippingAddress,
    pub status: OrderStatus,
    pub total_cents: i64,
    pub tracking_number: Option<TrackingNumber>,
    pub cancellation_reason: Option<CancellationReason>,
}

impl PlacedOrder {
    /// The sum of the line totals, or `None` when it does not fit in an `i64`. `decide` never
    /// lets an order get there; `evolve` saturates `total_cents` instead of panicking on data
    /// written around it, so a reader that must never show a wrong total compares the two.
    pub fn checked_total(&self) -> Option<i64> {
        self.items.iter().try_fold(0_i64, |total, item| {
            item.line_total().and_then(|line| total.checked_add(line))
        })
    }

    fn item(&self, product_id: &ProductId) -> Option<&LineItem> {
        self.items.iter().find(|i| &i.product_id == product_id)
    }
}

/// The state of an order stream: `None` until `OrderPlaced`.
pub type OrderState = Option<PlacedOrder>;

/// Asks to place a new order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrder {
    pub customer_id: CustomerId,
    pub currency: Currency,
    pub items: Vec<LineItem>,
    pub shipping_address: ShippingAddress,
}

/// What can be asked of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all_fields = "camelCase")]
pub enum OrderCommand {
    PlaceOrder(PlaceOrder),
    /// Adds a line, or more units of a product already in the order at the same price.
    AddItem(LineItem),
    RemoveItem {
        product_id: ProductId,
    },
    Confirm,
    Ship {
        tracking_number: TrackingNumber,
    },
    Deliver,
    Cancel {
        reason: CancellationReason,
    },
}

/// What happened to an order. Stored names and shapes: change them only with a new schema
/// version and an upcaster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all_fields = "camelCase")]
pub enum OrderEvent {
    OrderPlaced {
        customer_id: CustomerId,
        currency: Currency,
        items: Vec<LineItem>,
        shipping_address: ShippingAddress,
    },
    ItemAdded {
        product_id: ProductId,
        quantity: Quantity,
        #[serde(rename = "unitPriceCents")]
        unit_price: UnitPrice,
    },
    ItemRemoved {
        product_id: ProductId,
    },
    OrderConfirmed {},
    OrderShipped {
        tracking_number: TrackingNumber,
    },
    OrderDelivered {},
    OrderCancelled {
        reason: CancellationReason,
    },
}

/// Orders stored before multi-currency support (`OrderPlaced` v1) were all in this currency.
pub const LEGACY_CURRENCY: &str = "EUR";

/// `OrderPlaced` v1 had no currency: every such order was in [`LEGACY_CURRENCY`].
fn order_placed_v1_to_v2(mut data: Value) -> Result<Value, UpcastError> {
    let object = data.as_object_mut().ok_or_else(|| UpcastError {
        event_type: "OrderPlaced".to_owned(),
        from_version: 1,
        reason: "data is not a JSON object".to_owned(),
    })?;
    object
        .entry("currency")
        .or_insert_with(|| Value::String(LEGACY_CURRENCY.to_owned()));
    Ok(data)
}

impl DomainEvent for OrderEvent {
    const SCHEMA: &'static [(&'static str, u32)] = &[
        ("OrderPlaced", 2),
        ("ItemAdded", 1),
        ("ItemRemoved", 1),
        ("OrderConfirmed", 1),
        ("OrderShipped", 1),
        ("OrderDelivered", 1),
        ("OrderCancelled", 1),
    ];
    const UPCASTERS: &'static [Upcast] = &[Upcast {
        event_type: "OrderPlaced",
        from_version: 1,
        apply: order_placed_v1_to_v2,
    }];

    fn event_type(&self) -> &'static str {
        match self {
            Self::OrderPlaced { .. } => "OrderPlaced",
            Self::ItemAdded { .. } => "ItemAdded",
            Self::ItemRemoved { .. } => "ItemRemoved",
            Self::OrderConfirmed {} => "OrderConfirmed",
            Self::OrderShipped { .. } => "OrderShipped",
            Self::OrderDelivered {} => "OrderDelivered",
            Self::OrderCancelled { .. } => "OrderCancelled",
        }
    }
}

/// Why an order command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the order has already been placed")]
    AlreadyPlaced,
    #[error("the order does not exist")]
    NotPlaced,
    #[error("an order needs at least one item")]
    NoItems,
    #[error("product {0} appears more than once")]
    DuplicateProduct(ProductId),
    #[error("the order total does not fit in 64 bits")]
    TotalOverflow,
    #[error("an order has at most {MAX_LINES_PER_ORDER} lines (one per product)")]
    TooManyLines,
    #[error("items cannot change once the order is {0}")]
    CannotChangeItems(OrderStatus),
    #[error("product {0} is not in the order")]
    ItemNotInOrder(ProductId),
    #[error("the last item cannot be removed; cancel the order instead")]
    CannotRemoveLastItem,
    #[error("product {product_id} is already in the order at {existing_cents} per unit")]
    PriceMismatch {
        product_id: ProductId,
        existing_cents: i64,
    },
    #[error("only a pending order can be confirmed; this one is {0}")]
    CannotConfirm(OrderStatus),
    #[error("only a confirmed order can be shipped; this one is {0}")]
    CannotShip(OrderStatus),
    #[error("only a shipped order can be delivered; this one is {0}")]
    CannotDeliver(OrderStatus),
    #[error("only a pending or confirmed order can be cancelled; this one is {0}")]
    CannotCancel(OrderStatus),
}

impl DomainError for OrderError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::NotPlaced => RejectionKind::NotFound,
            Self::NoItems
            | Self::DuplicateProduct(_)
            | Self::TotalOverflow
            | Self::TooManyLines => RejectionKind::Invalid,
            Self::AlreadyPlaced
            | Self::CannotChangeItems(_)
            | Self::ItemNotInOrder(_)
            | Self::CannotRemoveLastItem
            | Self::PriceMismatch { .. }
            | Self::CannotConfirm(_)
            | Self::CannotShip(_)
            | Self::CannotDeliver(_)
            | Self::CannotCancel(_) => RejectionKind::Conflict,
        }
    }
}

/// The Order aggregate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Order;

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    const STATE_VERSION: u32 = 1;
    type State = OrderState;
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn decide(state: &OrderState, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        let OrderCommand::PlaceOrder(place) = command else {
            let order = state.as_ref().ok_or(OrderError::NotPlaced)?;
            return decide_on_placed(order, command);
        };
        if state.is_some() {
            return Err(OrderError::AlreadyPlaced);
        }
        if place.items.is_empty() {
            return Err(OrderError::NoItems);
        }
        if place.items.len() > MAX_LINES_PER_ORDER {
            return Err(OrderError::TooManyLines);
        }
        let mut total: i64 = 0;
        for (index, item) in place.items.iter().enumerate() {
            if place.items[..index]
                .iter()
                .any(|i| i.product_id == item.product_id)
            {
                return Err(OrderError::DuplicateProduct(item.product_id.clone()));
            }
            total = item
                .line_total()
                .and_then(|line| total.checked_add(line))
                .ok_or(OrderError::TotalOverflow)?;
        }
        Ok(vec![OrderEvent::OrderPlaced {
            customer_id: place.customer_id,
            currency: place.currency,
            items: place.items,
            shipping_address: place.shipping_address,
        }])
    }

    fn evolve(state: OrderState, event: &OrderEvent) -> OrderState {
        if let OrderEvent::OrderPlaced {
            customer_id,
            currency,
            items,
            shipping_address,
        } = event
        {
            return Some(PlacedOrder {
                customer_id: customer_id.clone(),
                currency: *currency,
                total_cents: items
                    .iter()
                    .filter_map(LineItem::line_total)
                    .fold(0, i64::saturating_add),
                items: items.clone(),
                shipping_address: shipping_address.clone(),
                status: OrderStatus::Pending,
                tracking_number: None,
                cancellation_reason: None,
            });
        }
        // Any other event without an order is corrupt data; keep the state unchanged.
        let mut order = state?;
        match event {
            OrderEvent::OrderPlaced { .. } => {}
            OrderEvent::ItemAdded {
                product_id,
                quantity,
                unit_price,
            } => {
                // Incremental, so loading a long stream stays linear in its length.
                let added = i64::from(quantity.get()).saturating_mul(unit_price.cents());
                order.total_cents = order.total_cents.saturating_add(added);
                match order.items.iter_mut().find(|i| &i.product_id == product_id) {
                    Some(line) => {
                        // decide() guarantees the sum fits; saturate rather than wrap on corrupt data.
                        let merged = line.quantity.get().saturating_add(quantity.get());
                        line.quantity = Quantity::new(merged).unwrap_or(line.quantity);
                    }
                    None => order.items.push(LineItem {
                        product_id: product_id.clone(),
                        quantity: *quantity,
                        unit_price: *unit_price,
                    }),
                }
            }
            OrderEvent::ItemRemoved { product_id } => {
                if let Some(index) = order.items.iter().position(|i| &i.product_id == product_id) {
                    let removed = order.items.remove(index);
                    order.total_cents = order
                        .total_cents
                        .saturating_sub(removed.line_total().unwrap_or(0));
                }
            }
            OrderEvent::OrderConfirmed {} => order.status = OrderStatus::Confirmed,
            OrderEvent::OrderShipped { tracking_number } => {
                order.status = OrderStatus::Shipped;
                order.tracking_number = Some(tracking_number.clone());
            }
            OrderEvent::OrderDelivered {} => order.status = OrderStatus::Delivered,
            OrderEvent::OrderCancelled { reason } => {
                order.status = OrderStatus::Cancelled;
                order.cancellation_reason = Some(reason.clone());
            }
        }
        Some(order)
    }

    fn exists(state: &OrderState) -> bool {
        state.is_some()
    }
}

fn decide_on_placed(
    order: &PlacedOrder,
    command: OrderCommand,
) -> Result<Vec<OrderEvent>, OrderError> {
    let status = order.status;
    match command {
        OrderCommand::PlaceOrder(_) => Err(OrderError::AlreadyPlaced),
        OrderCommand::AddItem(item) => {
            if status != OrderStatus::Pending {
                return Err(OrderError::CannotChangeItems(status));
            }
            let added = item.line_total().ok_or(OrderError::TotalOverflow)?;
            order
                .total_cents
                .checked_add(added)
                .ok_or(OrderError::TotalOverflow)?;
            if let Some(existing) = order.item(&item.product_id) {
                if existing.unit_price != item.unit_price {
                    return Err(OrderError::PriceMismatch {
                        product_id: item.product_id,
                        existing_cents: existing.unit_price.cents(),
                    });
                }
                existing
                    .quantity
                    .get()
                    .checked_add(item.quantity.get())
                    .ok_or(OrderError::TotalOverflow)?;
            } else if order.items.len() >= MAX_LINES_PER_ORDER {
                return Err(OrderError::TooManyLines);
            }
            Ok(vec![OrderEvent::ItemAdded {
                product_id: item.product_id,
                quantity: item.quantity,
                unit_price: item.unit_price,
            }])
        }
        OrderCommand::RemoveItem { product_id } => {
            if status != OrderStatus::Pending {
                return Err(OrderError::CannotChangeItems(status));
            }
            if order.item(&product_id).is_none() {
                return Err(OrderError::ItemNotInOrder(product_id));
            }
            if order.items.len() == 1 {
                return Err(OrderError::CannotRemoveLastItem);
            }
            Ok(vec![OrderEvent::ItemRemoved { product_id }])
        }
        OrderCommand::Confirm => match status {
            OrderStatus::Pending => Ok(vec![OrderEvent::OrderConfirmed {}]),
            _ => Err(OrderError::CannotConfirm(status)),
        },
        OrderCommand::Ship { tracking_number } => match status {
            OrderStatus::Confirmed => Ok(vec![OrderEvent::OrderShipped { tracking_number }]),
            _ => Err(OrderError::CannotShip(status)),
        },
        OrderCommand::Deliver => match status {
            OrderStatus::Shipped => Ok(vec![OrderEvent::OrderDelivered {}]),
            _ => Err(OrderError::CannotDeliver(status)),
        },
        OrderCommand::Cancel { reason } => match status {
            OrderStatus::Pending | OrderStatus::Confirmed => {
                Ok(vec![OrderEvent::OrderCancelled { reason }])
            }
            _ => Err(OrderError::CannotCancel(status)),
        },
    }
}
