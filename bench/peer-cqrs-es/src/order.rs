//! The order aggregate in cqrs-es style: the same commands, events and rules as Strata's
//! `strata_domain::order` uses in the `append` workload (place an order, add items to it).

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub product_id: String,
    pub quantity: u32,
    pub unit_price: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderCommand {
    PlaceOrder {
        customer_id: String,
        currency: String,
        items: Vec<LineItem>,
        shipping_address: String,
    },
    AddItem(LineItem),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEvent {
    OrderPlaced {
        customer_id: String,
        currency: String,
        items: Vec<LineItem>,
        shipping_address: String,
    },
    ItemAdded(LineItem),
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        match self {
            Self::OrderPlaced { .. } => "OrderPlaced",
            Self::ItemAdded(_) => "ItemAdded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrderError {
    #[error("the order is already placed")]
    AlreadyPlaced,
    #[error("the order is not placed")]
    NotPlaced,
    #[error("an order needs at least one item")]
    NoItems,
    #[error("a quantity must be positive")]
    ZeroQuantity,
}

/// The state the commands decide on; serialised as the snapshot's payload.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub placed: bool,
    pub customer_id: String,
    pub currency: String,
    pub shipping_address: String,
    pub items: Vec<LineItem>,
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: OrderCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), OrderError> {
        let event = match command {
            OrderCommand::PlaceOrder {
                customer_id,
                currency,
                items,
                shipping_address,
            } => {
                if self.placed {
                    return Err(OrderError::AlreadyPlaced);
                }
                if items.is_empty() {
                    return Err(OrderError::NoItems);
                }
                if items.iter().any(|item| item.quantity == 0) {
                    return Err(OrderError::ZeroQuantity);
                }
                OrderEvent::OrderPlaced {
                    customer_id,
                    currency,
                    items,
                    shipping_address,
                }
            }
            OrderCommand::AddItem(item) => {
                if !self.placed {
                    return Err(OrderError::NotPlaced);
                }
                if item.quantity == 0 {
                    return Err(OrderError::ZeroQuantity);
                }
                OrderEvent::ItemAdded(item)
            }
        };
        // cqrs-es 0.5: writing to the sink also applies the event to `self`.
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: OrderEvent) {
        match event {
            OrderEvent::OrderPlaced {
                customer_id,
                currency,
                items,
                shipping_address,
            } => {
                self.placed = true;
                self.customer_id = customer_id;
                self.currency = currency;
                self.shipping_address = shipping_address;
                self.items = items;
            }
            OrderEvent::ItemAdded(item) => self.items.push(item),
        }
    }
}

/// The `n`-th line item of a task, as Strata's harness makes it (20 products, prices 100–119).
pub fn line(n: u64) -> LineItem {
    LineItem {
        product_id: format!("sku-{}", n % 20),
        quantity: 1,
        unit_price: 100 + i64::try_from(n % 20).unwrap_or(0),
    }
}

/// The `n`-th order a task places, as Strata's harness makes it.
pub fn place(n: u64) -> OrderCommand {
    OrderCommand::PlaceOrder {
        customer_id: format!("customer-{}", n % 100),
        currency: "EUR".to_owned(),
        items: vec![line(n)],
        shipping_address: "1 Main Street".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn when(
        given: &[OrderEvent],
        command: OrderCommand,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        let mut order = Order::default();
        for event in given {
            order.apply(event.clone());
        }
        let sink = EventSink::default();
        order.handle(command, &(), &sink).await?;
        Ok(sink.collect().await)
    }

    fn placed() -> OrderEvent {
        OrderEvent::OrderPlaced {
            customer_id: "customer-0".to_owned(),
            currency: "EUR".to_owned(),
            items: vec![line(0)],
            shipping_address: "1 Main Street".to_owned(),
        }
    }

    #[tokio::test]
    async fn an_item_is_added_to_a_placed_order() {
        assert_eq!(
            when(&[placed()], OrderCommand::AddItem(line(3))).await,
            Ok(vec![OrderEvent::ItemAdded(line(3))])
        );
    }

    #[tokio::test]
    async fn an_item_cannot_be_added_to_an_order_never_placed() {
        assert_eq!(
            when(&[], OrderCommand::AddItem(line(3))).await,
            Err(OrderError::NotPlaced)
        );
    }

    #[tokio::test]
    async fn an_order_is_placed_once() {
        assert_eq!(
            when(&[placed()], place(1)).await,
            Err(OrderError::AlreadyPlaced)
        );
    }
}
