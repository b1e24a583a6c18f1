//! Stored forms of the domain events: names, schema versions, camelCase JSON shapes, the
//! `OrderPlaced` v1 → v2 upcaster, and how unreadable payloads are refused.

mod support;

use std::fmt::Debug;

use serde_json::{Value, json};
use strata_domain::account::AccountEvent;
use strata_domain::order::{self, OrderEvent};
use strata_domain::{DomainEvent, EventDecodeError, EventPayload, UpcastError};

use support::fixtures::{
    currency, deposited, eur, item_added, line, opened, placed, product, reason, tracking,
    withdrawn,
};

fn payload(event_type: &str, schema_version: u32, data: Value) -> EventPayload {
    EventPayload {
        event_type: event_type.to_owned(),
        schema_version,
        data,
    }
}

/// Decodes `stored` both ways, owned and borrowed, and asserts they agree.
#[track_caller]
#[allow(clippy::expect_used)]
fn decoded<E>(stored: EventPayload) -> Result<E, EventDecodeError>
where
    E: DomainEvent + Debug + PartialEq,
{
    let borrowed = E::decode_stored(&stored.event_type, stored.schema_version, &stored.data);
    let text = serde_json::value::to_raw_value(&stored.data).expect("a Value is JSON text");
    let from_text = E::decode_stored_text(&stored.event_type, stored.schema_version, text.get());
    let owned = E::decode(stored);
    assert_eq!(borrowed, owned, "decode_stored agrees with decode");
    // Errors agree in kind; serde words them differently for text and for a `Value`.
    match (&from_text, &owned) {
        (Ok(_), _) | (_, Ok(_)) => assert_eq!(from_text, owned, "decode_stored_text agrees"),
        (Err(text), Err(value)) => assert_eq!(
            std::mem::discriminant(text),
            std::mem::discriminant(value),
            "decode_stored_text fails alike: {text:?} / {value:?}"
        ),
    }
    owned
}

/// Asserts both directions: `event` is written as exactly this payload, and this payload reads
/// back as `event`.
#[track_caller]
fn assert_stored_as<E>(event: E, event_type: &str, schema_version: u32, data: Value)
where
    E: DomainEvent + Debug + PartialEq,
{
    let stored = payload(event_type, schema_version, data);
    assert_eq!(event.encode(), stored, "written form");
    assert_eq!(E::current_version(event_type), Some(schema_version));
    assert_eq!(decoded::<E>(stored), Ok(event), "read-back form");
}

/// The JSON of an `OrderPlaced` v1 for the fixture customer, without a currency.
fn order_placed_v1_data() -> Value {
    json!({
        "customerId": "cust-42",
        "items": [{ "productId": "sku-1", "quantity": 3, "unitPriceCents": 333 }],
        "shippingAddress": "1 Main St, Springfield"
    })
}

#[track_caller]
fn assert_malformed<E: DomainEvent + Debug>(result: Result<E, EventDecodeError>, event_type: &str) {
    match result {
        Err(EventDecodeError::Malformed {
            event_type: found, ..
        }) => assert_eq!(found, event_type),
        other => panic!("expected {event_type} to be malformed, got {other:?}"),
    }
}

// The stored names and versions.

#[test]
fn the_event_type_names_and_schema_versions_are_pinned() {
    assert_eq!(
        OrderEvent::SCHEMA,
        &[
            ("OrderPlaced", 2),
            ("ItemAdded", 1),
            ("ItemRemoved", 1),
            ("OrderConfirmed", 1),
            ("OrderShipped", 1),
            ("OrderDelivered", 1),
            ("OrderCancelled", 1),
        ]
    );
    assert_eq!(
        AccountEvent::SCHEMA,
        &[
            ("AccountOpened", 1),
            ("MoneyDeposited", 1),
            ("MoneyWithdrawn", 1),
            ("AccountClosed", 1),
        ]
    );
}

// Order events: written and read back.

#[test]
fn order_placed_is_stored_as_version_2_with_camel_case_fields() {
    assert_stored_as(
        placed(vec![line("sku-1", 3, 333), line("sku-2", 1, 1)]),
        "OrderPlaced",
        2,
        json!({
            "customerId": "cust-42",
            "currency": "EUR",
            "items": [
                { "productId": "sku-1", "quantity": 3, "unitPriceCents": 333 },
                { "productId": "sku-2", "quantity": 1, "unitPriceCents": 1 }
            ],
            "shippingAddress": "1 Main St, Springfield"
        }),
    );
}

#[test]
fn item_added_is_stored_with_the_unit_price_in_cents() {
    assert_stored_as(
        item_added("sku-3", 2, 250),
        "ItemAdded",
        1,
        json!({ "productId": "sku-3", "quantity": 2, "unitPriceCents": 250 }),
    );
}

#[test]
fn item_removed_is_stored_with_its_product_id() {
    assert_stored_as(
        OrderEvent::ItemRemoved {
            product_id: product("sku-1"),
        },
        "ItemRemoved",
        1,
        json!({ "productId": "sku-1" }),
    );
}

#[test]
fn order_confirmed_is_stored_with_empty_data() {
    assert_stored_as(
        OrderEvent::OrderConfirmed {},
        "OrderConfirmed",
        1,
        json!({}),
    );
}

#[test]
fn order_shipped_is_stored_with_its_tracking_number() {
    assert_stored_as(
        OrderEvent::OrderShipped {
            tracking_number: tracking("1Z999AA10123456784"),
        },
        "OrderShipped",
        1,
        json!({ "trackingNumber": "1Z999AA10123456784" }),
    );
}

#[test]
fn order_delivered_is_stored_with_empty_data() {
    assert_stored_as(
        OrderEvent::OrderDelivered {},
        "OrderDelivered",
        1,
        json!({}),
    );
}

#[test]
fn order_cancelled_is_stored_with_its_reason() {
    assert_stored_as(
        OrderEvent::OrderCancelled {
            reason: reason("out of stock"),
        },
        "OrderCancelled",
        1,
        json!({ "reason": "out of stock" }),
    );
}

// Account events: written and read back.

#[test]
fn account_opened_is_stored_with_its_owner_and_currency() {
    assert_stored_as(
        opened(),
        "AccountOpened",
        1,
        json!({ "ownerCustomerId": "cust-42", "currency": "EUR" }),
    );
}

#[test]
fn money_deposited_is_stored_with_the_amount_in_cents() {
    assert_stored_as(
        deposited(1250),
        "MoneyDeposited",
        1,
        json!({ "amountCents": 1250, "reference": "inv-1" }),
    );
}

#[test]
fn money_withdrawn_is_stored_with_the_amount_in_cents() {
    assert_stored_as(
        withdrawn(99),
        "MoneyWithdrawn",
        1,
        json!({ "amountCents": 99, "reference": "tr-1" }),
    );
}

#[test]
fn account_closed_is_stored_with_empty_data() {
    assert_stored_as(
        AccountEvent::AccountClosed {},
        "AccountClosed",
        1,
        json!({}),
    );
}

// Upcasting OrderPlaced v1 (no currency) to v2.

#[test]
fn the_legacy_currency_is_eur() {
    assert_eq!(order::LEGACY_CURRENCY, "EUR");
}

#[test]
fn an_order_placed_v1_without_a_currency_reads_back_in_the_legacy_currency() {
    let event = decoded::<OrderEvent>(payload("OrderPlaced", 1, order_placed_v1_data())).unwrap();
    assert_eq!(event, placed(vec![line("sku-1", 3, 333)]));
    assert_eq!(eur(), currency(order::LEGACY_CURRENCY));
}

#[test]
fn an_order_placed_v1_that_already_carries_a_currency_keeps_it() {
    let mut data = order_placed_v1_data();
    data["currency"] = json!("USD");

    let event = decoded::<OrderEvent>(payload("OrderPlaced", 1, data)).unwrap();

    let OrderEvent::OrderPlaced {
        currency: found, ..
    } = event
    else {
        panic!("expected OrderPlaced, got {event:?}");
    };
    assert_eq!(found, currency("USD"));
}

#[test]
fn upcasting_an_order_placed_v1_adds_only_the_currency_and_bumps_the_version() {
    let upcast = OrderEvent::upcast(payload("OrderPlaced", 1, order_placed_v1_data())).unwrap();
    assert_eq!(
        upcast,
        payload(
            "OrderPlaced",
            2,
            json!({
                "customerId": "cust-42",
                "currency": "EUR",
                "items": [{ "productId": "sku-1", "quantity": 3, "unitPriceCents": 333 }],
                "shippingAddress": "1 Main St, Springfield"
            }),
        )
    );
}

#[test]
fn an_order_placed_v1_whose_data_is_not_an_object_is_refused_by_the_upcaster() {
    let result = decoded::<OrderEvent>(payload("OrderPlaced", 1, json!(["cust-42"])));
    match result {
        Err(EventDecodeError::Upcast(UpcastError {
            event_type,
            from_version,
            ..
        })) => assert_eq!((event_type.as_str(), from_version), ("OrderPlaced", 1)),
        other => panic!("expected an upcast error, got {other:?}"),
    }
}

#[test]
fn a_schema_version_without_an_upcaster_is_refused() {
    let result = decoded::<OrderEvent>(payload("ItemRemoved", 0, json!({ "productId": "sku-1" })));
    match result {
        Err(EventDecodeError::Upcast(UpcastError {
            event_type,
            from_version,
            ..
        })) => assert_eq!((event_type.as_str(), from_version), ("ItemRemoved", 0)),
        other => panic!("expected an upcast error, got {other:?}"),
    }
}

// Payloads this code cannot read.

#[test]
fn an_unknown_event_type_is_refused() {
    assert_eq!(
        decoded::<OrderEvent>(payload("OrderTeleported", 1, json!({}))),
        Err(EventDecodeError::UnknownType("OrderTeleported".to_owned()))
    );
}

#[test]
fn an_order_event_is_an_unknown_type_to_an_account_stream() {
    let stored = placed(vec![line("sku-1", 1, 100)]).encode();
    assert_eq!(
        decoded::<AccountEvent>(stored),
        Err(EventDecodeError::UnknownType("OrderPlaced".to_owned()))
    );
}

#[test]
fn a_schema_version_newer_than_this_code_is_refused() {
    let mut data = order_placed_v1_data();
    data["currency"] = json!("EUR");
    assert_eq!(
        decoded::<OrderEvent>(payload("OrderPlaced", 3, data)),
        Err(EventDecodeError::FromTheFuture {
            event_type: "OrderPlaced".to_owned(),
            found: 3,
            current: 2,
        })
    );
    assert_eq!(
        decoded::<AccountEvent>(payload("AccountClosed", 2, json!({}))),
        Err(EventDecodeError::FromTheFuture {
            event_type: "AccountClosed".to_owned(),
            found: 2,
            current: 1,
        })
    );
}

#[test]
fn data_missing_a_field_is_malformed() {
    assert_malformed(
        decoded::<OrderEvent>(payload(
            "ItemAdded",
            1,
            json!({ "productId": "sku-1", "quantity": 1 }),
        )),
        "ItemAdded",
    );
}

#[test]
fn data_of_the_wrong_json_type_is_malformed() {
    assert_malformed(
        decoded::<AccountEvent>(payload(
            "MoneyDeposited",
            1,
            json!({ "amountCents": "12.50", "reference": "inv-1" }),
        )),
        "MoneyDeposited",
    );
}

#[test]
fn snake_case_field_names_are_not_the_stored_shape() {
    assert_malformed(
        decoded::<OrderEvent>(payload("ItemRemoved", 1, json!({ "product_id": "sku-1" }))),
        "ItemRemoved",
    );
}

// Stored data goes through the same validated types as commands.

#[test]
fn a_stored_quantity_of_zero_is_refused_at_decode() {
    assert_malformed(
        decoded::<OrderEvent>(payload(
            "ItemAdded",
            1,
            json!({ "productId": "sku-1", "quantity": 0, "unitPriceCents": 100 }),
        )),
        "ItemAdded",
    );
}

#[test]
fn a_stored_order_line_with_a_quantity_of_zero_is_refused_at_decode_even_from_v1() {
    let mut data = order_placed_v1_data();
    data["items"][0]["quantity"] = json!(0);
    assert_malformed(
        decoded::<OrderEvent>(payload("OrderPlaced", 1, data)),
        "OrderPlaced",
    );
}

#[test]
fn a_stored_negative_unit_price_is_refused_at_decode() {
    assert_malformed(
        decoded::<OrderEvent>(payload(
            "ItemAdded",
            1,
            json!({ "productId": "sku-1", "quantity": 1, "unitPriceCents": -1 }),
        )),
        "ItemAdded",
    );
}

#[test]
fn a_stored_amount_of_zero_is_refused_at_decode() {
    assert_malformed(
        decoded::<AccountEvent>(payload(
            "MoneyWithdrawn",
            1,
            json!({ "amountCents": 0, "reference": "tr-1" }),
        )),
        "MoneyWithdrawn",
    );
}

#[test]
fn a_stored_unknown_currency_is_refused_at_decode() {
    assert_malformed(
        decoded::<AccountEvent>(payload(
            "AccountOpened",
            1,
            json!({ "ownerCustomerId": "cust-42", "currency": "XYZ" }),
        )),
        "AccountOpened",
    );
}

#[test]
fn a_stored_empty_customer_id_is_refused_at_decode() {
    let mut data = order_placed_v1_data();
    data["customerId"] = json!("  ");
    assert_malformed(
        decoded::<OrderEvent>(payload("OrderPlaced", 1, data)),
        "OrderPlaced",
    );
}

/// `decode_stored_text` is handed the stored text unchecked, so it must refuse text that is not
/// one whole JSON value, at the current schema version and at an older one alike.
#[test]
fn stored_text_that_is_not_json_is_refused_at_decode() {
    let texts = [
        r#"{"productId": "p-1", "quantity": 2"#,
        r#"{"productId": "p-1", "quantity": 2, "unitPriceCents": 150} trailing"#,
        r#"{"productId": "p-1", "quantity": 2, "unitPriceCents": 150,}"#,
        "",
    ];
    for text in texts {
        assert_malformed(
            OrderEvent::decode_stored_text("ItemAdded", 1, text),
            "ItemAdded",
        );
    }
    assert_malformed(
        OrderEvent::decode_stored_text("OrderPlaced", 1, r#"{"customerId": "c-1""#),
        "OrderPlaced",
    );
    let whole = r#"{"productId": "p-1", "quantity": 2, "unitPriceCents": 150}"#;
    assert!(OrderEvent::decode_stored_text("ItemAdded", 1, whole).is_ok());
}
