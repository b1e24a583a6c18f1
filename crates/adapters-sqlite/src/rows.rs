//! Read-model rows to and from SQLite columns (see `codec` for how values are stored). A row that
//! breaks the model's rules is `Corrupt`: stored data is never guessed at.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use strata_ports::{
    AccountRow, CheckpointRow, CustomerStatsRow, DeadLetter, Metadata, OrderLineRow,
    OrderSummaryRow, ReadModelError, RecordedEvent, StatusCounts, StreamId, TransactionKind,
    TransactionRow,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::codec;

fn corrupt(error: impl std::fmt::Display) -> ReadModelError {
    ReadModelError::Corrupt(error.to_string())
}

pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, ReadModelError> {
    codec::to_i64(value, what).map_err(ReadModelError::Backend)
}

pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, ReadModelError> {
    codec::to_u64(value, what).map_err(ReadModelError::Corrupt)
}

fn text(row: &SqliteRow, name: &str) -> Result<String, ReadModelError> {
    row.try_get(name).map_err(corrupt)
}

fn optional_text(row: &SqliteRow, name: &str) -> Result<Option<String>, ReadModelError> {
    row.try_get(name).map_err(corrupt)
}

fn int(row: &SqliteRow, name: &str) -> Result<i64, ReadModelError> {
    row.try_get(name).map_err(corrupt)
}

fn count(row: &SqliteRow, name: &str) -> Result<u64, ReadModelError> {
    to_u64(int(row, name)?, name)
}

fn id(row: &SqliteRow, name: &str) -> Result<Uuid, ReadModelError> {
    codec::uuid(&text(row, name)?).map_err(ReadModelError::Corrupt)
}

pub(crate) fn instant(row: &SqliteRow, name: &str) -> Result<OffsetDateTime, ReadModelError> {
    codec::instant(int(row, name)?).map_err(ReadModelError::Corrupt)
}

pub(crate) fn optional_instant(
    row: &SqliteRow,
    name: &str,
) -> Result<Option<OffsetDateTime>, ReadModelError> {
    let micros: Option<i64> = row.try_get(name).map_err(corrupt)?;
    micros
        .map(|m| codec::instant(m).map_err(ReadModelError::Corrupt))
        .transpose()
}

fn json_of(row: &SqliteRow, name: &str) -> Result<Value, ReadModelError> {
    codec::json(&text(row, name)?).map_err(ReadModelError::Corrupt)
}

/// An order's lines as stored: a JSON array of camelCase objects (as PostgreSQL stores them).
pub(crate) fn items_json(items: &[OrderLineRow]) -> String {
    let items: Vec<Value> = items
        .iter()
        .map(|line| {
            json!({
                "productId": line.product_id,
                "quantity": line.quantity,
                "unitPriceCents": line.unit_price_cents,
                "lineTotalCents": line.line_total_cents,
            })
        })
        .collect();
    Value::Array(items).to_string()
}

/// Lifetime values as stored: `{"EUR": 1234, ...}`.
pub(crate) fn lifetime_json(values: &BTreeMap<String, i64>) -> String {
    let map: serde_json::Map<String, Value> = values
        .iter()
        .map(|(currency, cents)| (currency.clone(), json!(cents)))
        .collect();
    Value::Object(map).to_string()
}

pub(crate) fn order_of(row: &SqliteRow) -> Result<OrderSummaryRow, ReadModelError> {
    let items = json_of(row, "items")?;
    let items = items
        .as_array()
        .ok_or_else(|| corrupt("order items are not an array"))?
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
        .ok_or_else(|| corrupt("malformed order item"))?;
    Ok(OrderSummaryRow {
        order_id: id(row, "order_id")?,
        customer_id: text(row, "customer_id")?,
        status: text(row, "status")?,
        items,
        item_count: count(row, "item_count")?,
        total_cents: int(row, "total_cents")?,
        currency: text(row, "currency")?,
        shipping_address: text(row, "shipping_address")?,
        tracking_number: optional_text(row, "tracking_number")?,
        cancellation_reason: optional_text(row, "cancellation_reason")?,
        placed_at: instant(row, "placed_at")?,
        updated_at: instant(row, "updated_at")?,
        version: count(row, "version")?,
        placed_position: count(row, "placed_position")?,
    })
}

pub(crate) fn stats_of(row: &SqliteRow) -> Result<CustomerStatsRow, ReadModelError> {
    let lifetime = json_of(row, "lifetime_value")?;
    let lifetime_value_cents = lifetime
        .as_object()
        .ok_or_else(|| corrupt("lifetime value is not an object"))?
        .iter()
        .map(|(currency, cents)| cents.as_i64().map(|c| (currency.clone(), c)))
        .collect::<Option<BTreeMap<_, _>>>()
        .ok_or_else(|| corrupt("malformed lifetime value"))?;
    Ok(CustomerStatsRow {
        customer_id: text(row, "customer_id")?,
        order_count: count(row, "order_count")?,
        by_status: StatusCounts {
            pending: count(row, "pending")?,
            confirmed: count(row, "confirmed")?,
            shipped: count(row, "shipped")?,
            delivered: count(row, "delivered")?,
            cancelled: count(row, "cancelled")?,
        },
        lifetime_value_cents,
        updated_at: instant(row, "updated_at")?,
    })
}

pub(crate) fn account_of(row: &SqliteRow) -> Result<AccountRow, ReadModelError> {
    Ok(AccountRow {
        account_id: id(row, "account_id")?,
        owner_customer_id: text(row, "owner_customer_id")?,
        currency: text(row, "currency")?,
        balance_cents: int(row, "balance_cents")?,
        closed: int(row, "closed")? != 0,
        transaction_count: count(row, "transaction_count")?,
        opened_at: instant(row, "opened_at")?,
        updated_at: instant(row, "updated_at")?,
        version: count(row, "version")?,
    })
}

pub(crate) fn transaction_of(row: &SqliteRow) -> Result<TransactionRow, ReadModelError> {
    let kind = text(row, "kind")?;
    Ok(TransactionRow {
        account_id: id(row, "account_id")?,
        version: count(row, "version")?,
        global_position: count(row, "global_position")?,
        kind: TransactionKind::parse(&kind)
            .ok_or_else(|| corrupt(format!("transaction kind {kind:?}")))?,
        amount_cents: int(row, "amount_cents")?,
        reference: text(row, "reference")?,
        balance_after_cents: int(row, "balance_after_cents")?,
        recorded_at: instant(row, "recorded_at")?,
    })
}

pub(crate) fn dead_letter_of(row: &SqliteRow) -> Result<DeadLetter, ReadModelError> {
    let metadata: Metadata = serde_json::from_value(json_of(row, "metadata")?)
        .map_err(|e| corrupt(format!("dead letter metadata: {e}")))?;
    let event = RecordedEvent {
        event_id: id(row, "event_id")?,
        stream_id: StreamId::parse(&text(row, "stream_id")?).map_err(corrupt)?,
        stream_version: count(row, "stream_version")?,
        global_position: count(row, "global_position")?,
        event_type: text(row, "event_type")?,
        schema_version: u32::try_from(int(row, "schema_version")?)
            .map_err(|_| corrupt("schema version out of range"))?,
        data: json_of(row, "data")?,
        metadata,
        recorded_at: instant(row, "recorded_at")?,
    };
    let blocked_by: Option<i64> = row.try_get("blocked_by").map_err(corrupt)?;
    Ok(DeadLetter {
        projection: text(row, "projection")?,
        event,
        error: text(row, "error")?,
        attempts: u32::try_from(int(row, "attempts")?)
            .map_err(|_| corrupt("attempts out of range"))?,
        blocked_by: blocked_by.map(|p| to_u64(p, "position")).transpose()?,
        parked_at: instant(row, "parked_at")?,
    })
}

pub(crate) fn checkpoint_row_of(row: &SqliteRow) -> Result<CheckpointRow, ReadModelError> {
    Ok(CheckpointRow {
        projection: text(row, "projection")?,
        position: count(row, "position")?,
        updated_at: optional_instant(row, "updated_at")?,
        position_recorded_at: optional_instant(row, "position_recorded_at")?,
        dead_letters: count(row, "dead_letters")?,
        state: optional_text(row, "state")?,
        state_updated_at: optional_instant(row, "state_updated_at")?,
    })
}
