//! Read-model rows to and from PostgreSQL columns. A row that breaks the model's rules is
//! `Corrupt`: stored data is never guessed at.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sqlx::Row;
use strata_ports::{
    AccountRow, CustomerStatsRow, DeadLetter, Metadata, OrderLineRow, OrderSummaryRow,
    ReadModelError, RecordedEvent, StatusCounts, StreamId, TransactionKind, TransactionRow,
};

pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, ReadModelError> {
    i64::try_from(value).map_err(|_| ReadModelError::Backend(format!("{what} {value} too large")))
}

pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, ReadModelError> {
    u64::try_from(value).map_err(|_| ReadModelError::Corrupt(format!("negative {what} {value}")))
}

pub(crate) fn corrupt(error: sqlx::Error) -> ReadModelError {
    ReadModelError::Corrupt(error.to_string())
}

/// The stored form of an order's lines.
pub(crate) fn items_json(row: &OrderSummaryRow) -> Value {
    Value::Array(
        row.items
            .iter()
            .map(|line| {
                json!({
                    "productId": line.product_id,
                    "quantity": line.quantity,
                    "unitPriceCents": line.unit_price_cents,
                    "lineTotalCents": line.line_total_cents,
                })
            })
            .collect(),
    )
}

/// The stored form of a customer's lifetime value: `{"EUR": cents, ...}`.
pub(crate) fn lifetime_json(row: &CustomerStatsRow) -> Value {
    Value::Object(
        row.lifetime_value_cents
            .iter()
            .map(|(currency, cents)| (currency.clone(), json!(cents)))
            .collect(),
    )
}

pub(crate) fn order_of(row: &sqlx::postgres::PgRow) -> Result<OrderSummaryRow, ReadModelError> {
    let items: Value = row.try_get("items").map_err(corrupt)?;
    let items = items
        .as_array()
        .ok_or_else(|| ReadModelError::Corrupt("order items are not an array".into()))?
        .iter()
        .map(|item| {
            let text = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_owned);
            let int = |name: &str| item.get(name).and_then(Value::as_i64);
            Some(OrderLineRow {
                product_id: text("productId")?,
                quantity: u32::try_from(int("quantity")?).ok()?,
                unit_price_cents: int("unitPriceCents")?,
                line_total_cents: int("lineTotalCents")?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ReadModelError::Corrupt("malformed order item".into()))?;
    Ok(OrderSummaryRow {
        order_id: row.try_get("order_id").map_err(corrupt)?,
        customer_id: row.try_get("customer_id").map_err(corrupt)?,
        status: row.try_get("status").map_err(corrupt)?,
        items,
        item_count: to_u64(row.try_get("item_count").map_err(corrupt)?, "item count")?,
        total_cents: row.try_get("total_cents").map_err(corrupt)?,
        currency: row.try_get("currency").map_err(corrupt)?,
        shipping_address: row.try_get("shipping_address").map_err(corrupt)?,
        tracking_number: row.try_get("tracking_number").map_err(corrupt)?,
        cancellation_reason: row.try_get("cancellation_reason").map_err(corrupt)?,
        placed_at: row.try_get("placed_at").map_err(corrupt)?,
        updated_at: row.try_get("updated_at").map_err(corrupt)?,
        version: to_u64(row.try_get("version").map_err(corrupt)?, "version")?,
        placed_position: to_u64(row.try_get("placed_position").map_err(corrupt)?, "position")?,
    })
}

pub(crate) fn stats_of(row: &sqlx::postgres::PgRow) -> Result<CustomerStatsRow, ReadModelError> {
    let count = |name: &str| -> Result<u64, ReadModelError> {
        to_u64(row.try_get(name).map_err(corrupt)?, name)
    };
    let lifetime: Value = row.try_get("lifetime_value").map_err(corrupt)?;
    let lifetime_value_cents = lifetime
        .as_object()
        .ok_or_else(|| ReadModelError::Corrupt("lifetime value is not an object".into()))?
        .iter()
        .map(|(currency, cents)| cents.as_i64().map(|c| (currency.clone(), c)))
        .collect::<Option<BTreeMap<_, _>>>()
        .ok_or_else(|| ReadModelError::Corrupt("malformed lifetime value".into()))?;
    Ok(CustomerStatsRow {
        customer_id: row.try_get("customer_id").map_err(corrupt)?,
        order_count: count("order_count")?,
        by_status: StatusCounts {
            pending: count("pending")?,
            confirmed: count("confirmed")?,
            shipped: count("shipped")?,
            delivered: count("delivered")?,
            cancelled: count("cancelled")?,
        },
        lifetime_value_cents,
        updated_at: row.try_get("updated_at").map_err(corrupt)?,
    })
}

pub(crate) fn account_of(row: &sqlx::postgres::PgRow) -> Result<AccountRow, ReadModelError> {
    Ok(AccountRow {
        account_id: row.try_get("account_id").map_err(corrupt)?,
        owner_customer_id: row.try_get("owner_customer_id").map_err(corrupt)?,
        currency: row.try_get("currency").map_err(corrupt)?,
        balance_cents: row.try_get("balance_cents").map_err(corrupt)?,
        closed: row.try_get("closed").map_err(corrupt)?,
        transaction_count: to_u64(
            row.try_get("transaction_count").map_err(corrupt)?,
            "transaction count",
        )?,
        opened_at: row.try_get("opened_at").map_err(corrupt)?,
        updated_at: row.try_get("updated_at").map_err(corrupt)?,
        version: to_u64(row.try_get("version").map_err(corrupt)?, "version")?,
    })
}

pub(crate) fn transaction_of(
    row: &sqlx::postgres::PgRow,
) -> Result<TransactionRow, ReadModelError> {
    let kind: String = row.try_get("kind").map_err(corrupt)?;
    Ok(TransactionRow {
        account_id: row.try_get("account_id").map_err(corrupt)?,
        version: to_u64(row.try_get("version").map_err(corrupt)?, "version")?,
        global_position: to_u64(row.try_get("global_position").map_err(corrupt)?, "position")?,
        kind: TransactionKind::parse(&kind)
            .ok_or_else(|| ReadModelError::Corrupt(format!("transaction kind {kind:?}")))?,
        amount_cents: row.try_get("amount_cents").map_err(corrupt)?,
        reference: row.try_get("reference").map_err(corrupt)?,
        balance_after_cents: row.try_get("balance_after_cents").map_err(corrupt)?,
        recorded_at: row.try_get("recorded_at").map_err(corrupt)?,
    })
}

pub(crate) fn dead_letter_of(row: &sqlx::postgres::PgRow) -> Result<DeadLetter, ReadModelError> {
    let get = |e: sqlx::Error| ReadModelError::Corrupt(e.to_string());
    let metadata: Metadata = serde_json::from_value(row.try_get("metadata").map_err(get)?)
        .map_err(|e| ReadModelError::Corrupt(format!("dead letter metadata: {e}")))?;
    let stream_id: String = row.try_get("stream_id").map_err(get)?;
    let event = RecordedEvent {
        event_id: row.try_get("event_id").map_err(get)?,
        stream_id: StreamId::parse(&stream_id)
            .map_err(|e| ReadModelError::Corrupt(e.to_string()))?,
        stream_version: to_u64(row.try_get("stream_version").map_err(get)?, "version")?,
        global_position: to_u64(row.try_get("global_position").map_err(get)?, "position")?,
        event_type: row.try_get("event_type").map_err(get)?,
        schema_version: u32::try_from(row.try_get::<i32, _>("schema_version").map_err(get)?)
            .map_err(|_| ReadModelError::Corrupt("negative schema version".into()))?,
        data: row.try_get("data").map_err(get)?,
        metadata,
        recorded_at: row.try_get("recorded_at").map_err(get)?,
    };
    let blocked_by: Option<i64> = row.try_get("blocked_by").map_err(get)?;
    Ok(DeadLetter {
        projection: row.try_get("projection").map_err(get)?,
        event,
        error: row.try_get("error").map_err(get)?,
        attempts: u32::try_from(row.try_get::<i32, _>("attempts").map_err(get)?)
            .map_err(|_| ReadModelError::Corrupt("negative attempts".into()))?,
        blocked_by: blocked_by.map(|p| to_u64(p, "position")).transpose()?,
        parked_at: row.try_get("parked_at").map_err(get)?,
    })
}
