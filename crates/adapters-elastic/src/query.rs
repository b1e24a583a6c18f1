//! Searching: the query body (words, filters, sort, cursor, status facet) and reading the hits.
//!
//! Facet counts must ignore the status filter, so the status filter is a `post_filter` (it
//! narrows the hits after the aggregation ran) and every other criterion is in the query.

use std::collections::BTreeMap;

use elasticsearch::{Elasticsearch, SearchParts};
use serde_json::{Value, json};
use strata_ports::{SearchCursor, SearchDocument, SearchError, SearchHit, SearchPage, SearchQuery};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::mapping::Source;
use crate::transport::Answer;

/// More than the number of statuses there are, so no bucket is ever cut off.
const STATUS_BUCKETS: usize = 20;

pub(crate) async fn search(
    client: &Elasticsearch,
    alias: &str,
    query: &SearchQuery,
) -> Result<SearchPage, SearchError> {
    let body = body(query)?;
    let sent = client
        .search(SearchParts::Index(&[alias]))
        .body(body)
        .send()
        .await;
    let answer = Answer::of(sent).await?;
    if answer.status == 404 {
        // The projector (or a starting server) creates it: "not yet", not a fault.
        return Err(SearchError::Unavailable(format!(
            "the search index {alias} does not exist yet: {}",
            crate::error::reason_of(&answer.body)
        )));
    }
    let answer = answer.json("search")?;
    page(&answer, query.limit)
}

fn rfc3339(at: OffsetDateTime) -> Result<String, SearchError> {
    at.format(&Rfc3339)
        .map_err(|e| SearchError::Backend(format!("cannot format {at}: {e}")))
}

/// The `date` field holds milliseconds since the epoch; the cursor is cut the same way.
fn epoch_millis(at: OffsetDateTime) -> Result<i64, SearchError> {
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000))
        .map_err(|_| SearchError::Backend(format!("{at} is out of range")))
}

fn text_of(query: &SearchQuery) -> Option<&str> {
    query
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Every word must be found in one of the text fields (like PostgreSQL's `websearch_to_tsquery`);
/// a whole product id, tracking number or order id also matches as it is.
fn words(text: &str) -> Value {
    json!({
        "bool": {
            "should": [
                {
                    "multi_match": {
                        "query": text,
                        "type": "cross_fields",
                        "operator": "and",
                        "fields": ["product_ids", "shipping_address", "tracking_number"]
                    }
                },
                { "term": { "order_id": text } },
                { "term": { "product_ids.keyword": text } },
                { "term": { "tracking_number.keyword": text } }
            ],
            "minimum_should_match": 1
        }
    })
}

pub(crate) fn body(query: &SearchQuery) -> Result<Value, SearchError> {
    let mut filters = Vec::new();
    if let Some(customer) = &query.customer_id {
        filters.push(json!({ "term": { "customer_id": customer } }));
    }
    if query.min_total_cents.is_some() || query.max_total_cents.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(min) = query.min_total_cents {
            range.insert("gte".to_owned(), json!(min));
        }
        if let Some(max) = query.max_total_cents {
            range.insert("lte".to_owned(), json!(max));
        }
        filters.push(json!({ "range": { "total_cents": range } }));
    }
    if query.placed_from.is_some() || query.placed_to.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(from) = query.placed_from {
            range.insert("gte".to_owned(), json!(rfc3339(from)?));
        }
        if let Some(to) = query.placed_to {
            range.insert("lte".to_owned(), json!(rfc3339(to)?));
        }
        filters.push(json!({ "range": { "placed_at": range } }));
    }
    let must: Vec<Value> = text_of(query).map(words).into_iter().collect();
    let mut body = json!({
        "size": query.limit,
        "track_total_hits": false,
        "query": { "bool": { "must": must, "filter": filters } },
        "sort": [
            { "_score": "desc" },
            { "placed_at": "desc" },
            { "order_id": "asc" }
        ],
        "aggs": {
            "status": { "terms": { "field": "status", "size": STATUS_BUCKETS } }
        }
    });
    if let Some(status) = &query.status {
        body["post_filter"] = json!({ "term": { "status": status } });
    }
    if let Some(after) = query.after {
        body["search_after"] = json!([
            after.score,
            epoch_millis(after.placed_at)?,
            after.order_id.to_string()
        ]);
    }
    Ok(body)
}

fn protocol(what: &str) -> SearchError {
    SearchError::Protocol(format!("search answer: {what}"))
}

pub(crate) fn page(answer: &Value, limit: usize) -> Result<SearchPage, SearchError> {
    let raw_hits = answer
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .ok_or_else(|| protocol("no hits"))?;
    let hits = raw_hits.iter().map(hit).collect::<Result<Vec<_>, _>>()?;
    let next = if limit > 0 && hits.len() == limit {
        hits.last().map(|h| SearchCursor {
            score: h.score,
            placed_at: h.document.placed_at,
            order_id: h.document.order_id,
        })
    } else {
        None
    };
    let buckets = answer
        .pointer("/aggregations/status/buckets")
        .and_then(Value::as_array)
        .ok_or_else(|| protocol("no status buckets"))?;
    let mut status_counts = BTreeMap::new();
    for bucket in buckets {
        let key = bucket.get("key").and_then(Value::as_str);
        let count = bucket.get("doc_count").and_then(Value::as_u64);
        match (key, count) {
            (Some(key), Some(count)) => {
                status_counts.insert(key.to_owned(), count);
            }
            _ => return Err(protocol(&format!("bad status bucket {bucket}"))),
        }
    }
    Ok(SearchPage {
        hits,
        next,
        status_counts,
    })
}

fn hit(raw: &Value) -> Result<SearchHit, SearchError> {
    let source = raw
        .get("_source")
        .ok_or_else(|| protocol("hit without _source"))?;
    let source: Source = serde_json::from_value(source.clone())
        .map_err(|e| protocol(&format!("unreadable document: {e}")))?;
    // The first sort value is the score the engine sorted by, which the cursor must repeat
    // exactly (`_score` itself may be null when sorting).
    let score = raw
        .pointer("/sort/0")
        .and_then(Value::as_f64)
        .or_else(|| raw.get("_score").and_then(Value::as_f64))
        .ok_or_else(|| protocol("hit without a score"))?;
    #[allow(clippy::cast_possible_truncation)] // Elasticsearch scores are 32-bit floats.
    let score = score as f32;
    let document = SearchDocument::from(source);
    Ok(SearchHit { document, score })
}
