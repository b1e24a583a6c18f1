//! `GET /v1/orders/search`: orders by words and filters, from the `search` projection's index
//! (Elasticsearch, or PostgreSQL full-text search), ranked by relevance then recency, with
//! counts by status. A customer only ever finds their own orders.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use strata_application::SearchResults;
use strata_ports::{SearchHit, SearchQuery};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::extract::{ApiQuery, MinPosition, MinPositionParams};
use crate::routes::common::{
    DEFAULT_PAGE_LIMIT, OrderStatusName, identifier_schema, parse_instant, positioned,
};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    // A static segment: axum prefers it to `/v1/orders/{id}`.
    Router::new().route("/v1/orders/search", get(search))
}

/// What to look for; every parameter is optional and every filter narrows the result. Any
/// other parameter is a 400.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Words matched against product ids, the shipping address, the tracking number and the
    /// order id: at most 200 characters, no control characters, Unicode line or paragraph
    /// separators or bidirectional formatting characters; white space only is no words.
    #[param(
        pattern = r"^[^\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]*$",
        max_length = 200
    )]
    pub q: Option<String>,
    /// Only orders in this status.
    #[param(value_type = OrderStatusName, required = false)]
    pub status: Option<String>,
    /// Only this customer's orders (a customer's search is always restricted to their own).
    #[param(schema_with = identifier_schema)]
    pub customer_id: Option<String>,
    /// Orders whose total is at least this, in minor units (at most maxTotalCents).
    pub min_total_cents: Option<i64>,
    /// Orders whose total is at most this, in minor units.
    pub max_total_cents: Option<i64>,
    /// Orders placed at or after this RFC 3339 instant (not after placedTo).
    #[param(value_type = String, required = false, format = DateTime)]
    pub placed_from: Option<String>,
    /// Orders placed at or before this RFC 3339 instant.
    #[param(value_type = String, required = false, format = DateTime)]
    pub placed_to: Option<String>,
    /// Hits per page: 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<usize>,
    /// The `nextCursor` of the previous page of the same search (400 for any other value).
    pub cursor: Option<String>,
}

impl SearchParams {
    /// The search, and the cursor to resume after.
    fn into_search(self) -> Result<(SearchQuery, Option<String>), ApiError> {
        let instant = |name: &str, value: Option<String>| {
            value.map(|text| parse_instant(name, &text)).transpose()
        };
        let query = SearchQuery {
            text: self.q,
            status: self.status,
            customer_id: self.customer_id,
            min_total_cents: self.min_total_cents,
            max_total_cents: self.max_total_cents,
            placed_from: instant("placedFrom", self.placed_from)?,
            placed_to: instant("placedTo", self.placed_to)?,
            limit: self.limit.unwrap_or(DEFAULT_PAGE_LIMIT),
            after: None,
        };
        Ok((query, self.cursor))
    }
}

/// An order as the search index holds it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchHitDto {
    pub order_id: Uuid,
    pub customer_id: String,
    #[schema(value_type = OrderStatusName)]
    pub status: String,
    /// One per line of the order.
    pub product_ids: Vec<String>,
    pub shipping_address: String,
    pub tracking_number: Option<String>,
    pub total_cents: i64,
    pub currency: String,
    /// Lines: one per product, whatever its quantity.
    pub item_count: u64,
    /// Units: the quantities of all lines added up.
    pub unit_count: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub placed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// The order's stream version the document reflects.
    pub version: u64,
    /// Relevance as the engine computes it: compare it only within one answer.
    pub score: f32,
}

impl From<SearchHit> for SearchHitDto {
    fn from(hit: SearchHit) -> Self {
        let d = hit.document;
        // The document stores units; its product ids are one per line.
        let lines = u64::try_from(d.product_ids.len()).unwrap_or(u64::MAX);
        Self {
            order_id: d.order_id,
            customer_id: d.customer_id,
            status: d.status,
            product_ids: d.product_ids,
            shipping_address: d.shipping_address,
            tracking_number: d.tracking_number,
            total_cents: d.total_cents,
            currency: d.currency,
            item_count: lines,
            unit_count: d.item_count,
            placed_at: d.placed_at,
            updated_at: d.updated_at,
            version: d.version,
            score: hit.score,
        }
    }
}

/// A page of matches.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchResultsDto {
    /// Ranked by relevance, then newest first.
    pub items: Vec<SearchHitDto>,
    /// Matches per status (upper-case names, as in `status`) for every criterion except `status`
    /// itself.
    #[schema(example = json!({"PENDING": 3, "SHIPPED": 1}))]
    pub status_counts: BTreeMap<String, u64>,
    /// Pass it as `cursor` for the next page; `null` when this page is the last.
    pub next_cursor: Option<String>,
}

impl From<SearchResults> for SearchResultsDto {
    fn from(results: SearchResults) -> Self {
        Self {
            items: results.hits.into_iter().map(SearchHitDto::from).collect(),
            status_counts: results.status_counts,
            next_cursor: results.next_cursor,
        }
    }
}

/// Searches orders by words and filters, with counts by status.
#[utoipa::path(get, path = "/v1/orders/search", tag = "queries", operation_id = "searchOrders",
    params(SearchParams, MinPositionParams),
    responses(
        (status = 200, description = "A page of matching orders with counts by status", body = SearchResultsDto, headers(("X-Projection-Position" = u64, description = "The log position the projection had processed when it answered"))),
        (status = 400, description = "A bad parameter (limit, status, range, instant, cursor, an unknown one), or a malformed X-Min-Position or one beyond the head of the log"),
        (status = 401),
        (status = 503, description = "The search index is unreachable, or the search projection did not reach X-Min-Position in time")),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiQuery(params): ApiQuery<SearchParams>,
    MinPosition(min_position): MinPosition,
) -> Result<Response, ApiError> {
    let (query, cursor) = params.into_search()?;
    let found = state
        .queries
        .search_orders(&principal, query, cursor.as_deref(), min_position)
        .await?;
    Ok(positioned(
        SearchResultsDto::from(found.value),
        found.position,
    ))
}
