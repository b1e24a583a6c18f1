//! The index mapping, and the stored form (`_source`) of a search document.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_ports::SearchDocument;
use time::OffsetDateTime;
use uuid::Uuid;

/// The explicit mapping of an orders index. `strict`: a field the mapping does not know is an
/// error rather than a guess. Identifiers and statuses are `keyword` (exact match, terms
/// aggregation); the words people type are `text`; amounts and counts are integers (`long`).
pub(crate) fn index_body(alias: &str) -> Value {
    json!({
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "order_id": { "type": "keyword" },
                "customer_id": { "type": "keyword" },
                "status": { "type": "keyword" },
                "product_ids": { "type": "text", "fields": { "keyword": { "type": "keyword" } } },
                "shipping_address": { "type": "text" },
                "tracking_number": {
                    "type": "text",
                    "fields": { "keyword": { "type": "keyword" } }
                },
                "total_cents": { "type": "long" },
                "currency": { "type": "keyword" },
                "item_count": { "type": "long" },
                "placed_at": { "type": "date" },
                "updated_at": { "type": "date" },
                "version": { "type": "long" }
            }
        },
        "aliases": { alias: {} }
    })
}

/// A document as stored. Times keep their full precision in `_source` (the `date` field
/// itself holds milliseconds), so a document reads back exactly as it was written.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Source {
    pub order_id: Uuid,
    pub customer_id: String,
    pub status: String,
    pub product_ids: Vec<String>,
    pub shipping_address: String,
    pub tracking_number: Option<String>,
    pub total_cents: i64,
    pub currency: String,
    pub item_count: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub placed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub version: u64,
}

impl From<&SearchDocument> for Source {
    fn from(d: &SearchDocument) -> Self {
        Self {
            order_id: d.order_id,
            customer_id: d.customer_id.clone(),
            status: d.status.clone(),
            product_ids: d.product_ids.clone(),
            shipping_address: d.shipping_address.clone(),
            tracking_number: d.tracking_number.clone(),
            total_cents: d.total_cents,
            currency: d.currency.clone(),
            item_count: d.item_count,
            placed_at: d.placed_at,
            updated_at: d.updated_at,
            version: d.version,
        }
    }
}

impl From<Source> for SearchDocument {
    fn from(s: Source) -> Self {
        Self {
            order_id: s.order_id,
            customer_id: s.customer_id,
            status: s.status,
            product_ids: s.product_ids,
            shipping_address: s.shipping_address,
            tracking_number: s.tracking_number,
            total_cents: s.total_cents,
            currency: s.currency,
            item_count: s.item_count,
            placed_at: s.placed_at,
            updated_at: s.updated_at,
            version: s.version,
        }
    }
}
