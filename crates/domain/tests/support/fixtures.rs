//! Small constructors of valid commands, events and values, so tests state only what matters.
// Fixture values are literals known to be valid; a failure here is a broken test, not a finding.
#![allow(clippy::expect_used)]

use strata_domain::account::{AccountCommand, AccountEvent};
use strata_domain::order::{LineItem, OrderCommand, OrderEvent, PlaceOrder};
use strata_domain::values::{
    Amount, CancellationReason, Currency, CustomerId, ProductId, Quantity, Reference,
    ShippingAddress, TrackingNumber, UnitPrice,
};

pub fn customer() -> CustomerId {
    CustomerId::new("cust-42").expect("valid customer id")
}

pub fn currency(code: &str) -> Currency {
    Currency::new(code).expect("valid currency")
}

pub fn eur() -> Currency {
    currency("EUR")
}

pub fn address() -> ShippingAddress {
    ShippingAddress::new("1 Main St, Springfield").expect("valid address")
}

pub fn product(id: &str) -> ProductId {
    ProductId::new(id).expect("valid product id")
}

/// A line of `quantity` units of `product_id` at `unit_price_cents` each.
pub fn line(product_id: &str, quantity: u32, unit_price_cents: i64) -> LineItem {
    LineItem {
        product_id: product(product_id),
        quantity: Quantity::new(quantity).expect("valid quantity"),
        unit_price: UnitPrice::new(unit_price_cents).expect("valid price"),
    }
}

pub fn tracking(number: &str) -> TrackingNumber {
    TrackingNumber::new(number).expect("valid tracking number")
}

pub fn reason(text: &str) -> CancellationReason {
    CancellationReason::new(text).expect("valid reason")
}

/// `PlaceOrder` in EUR for the fixture customer and address.
pub fn place(items: Vec<LineItem>) -> OrderCommand {
    OrderCommand::PlaceOrder(PlaceOrder {
        customer_id: customer(),
        currency: eur(),
        items,
        shipping_address: address(),
    })
}

/// The `OrderPlaced` that `place(items)` records.
pub fn placed(items: Vec<LineItem>) -> OrderEvent {
    OrderEvent::OrderPlaced {
        customer_id: customer(),
        currency: eur(),
        items,
        shipping_address: address(),
    }
}

pub fn item_added(product_id: &str, quantity: u32, unit_price_cents: i64) -> OrderEvent {
    let LineItem {
        product_id,
        quantity,
        unit_price,
    } = line(product_id, quantity, unit_price_cents);
    OrderEvent::ItemAdded {
        product_id,
        quantity,
        unit_price,
    }
}

pub fn amount(cents: i64) -> Amount {
    Amount::new(cents).expect("valid amount")
}

pub fn reference(text: &str) -> Reference {
    Reference::new(text).expect("valid reference")
}

/// `Open` in EUR for the fixture customer.
pub fn open() -> AccountCommand {
    AccountCommand::Open {
        owner_customer_id: customer(),
        currency: eur(),
    }
}

/// The `AccountOpened` that `open()` records.
pub fn opened() -> AccountEvent {
    AccountEvent::AccountOpened {
        owner_customer_id: customer(),
        currency: eur(),
    }
}

pub fn deposit(cents: i64) -> AccountCommand {
    AccountCommand::Deposit {
        amount: amount(cents),
        reference: reference("inv-1"),
    }
}

pub fn deposited(cents: i64) -> AccountEvent {
    AccountEvent::MoneyDeposited {
        amount: amount(cents),
        reference: reference("inv-1"),
    }
}

pub fn withdraw(cents: i64) -> AccountCommand {
    AccountCommand::Withdraw {
        amount: amount(cents),
        reference: reference("tr-1"),
    }
}

pub fn withdrawn(cents: i64) -> AccountEvent {
    AccountEvent::MoneyWithdrawn {
        amount: amount(cents),
        reference: reference("tr-1"),
    }
}
