//! The search port: an index of one document per order, written by the search projection and
//! queried by words and filters. Two adapters implement it (Elasticsearch, and PostgreSQL
//! full-text search); `search_suite` (feature `testkit`) holds the behaviours both must show.

use std::collections::BTreeMap;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::projection::Generation;

/// What the index holds of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDocument {
    pub order_id: Uuid,
    pub customer_id: String,
    /// `PENDING`, `CONFIRMED`, `SHIPPED`, `DELIVERED` or `CANCELLED`.
    pub status: String,
    /// One per line of the order.
    pub product_ids: Vec<String>,
    pub shipping_address: String,
    pub tracking_number: Option<String>,
    pub total_cents: i64,
    pub currency: String,
    /// Units over all lines (the API's `unitCount`; its `itemCount` counts lines). The stored
    /// name predates the API's; renaming it would take migrations for nothing.
    pub item_count: u64,
    pub placed_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The order stream's version this document reflects: a stored document is replaced only
    /// by one with a higher version (Elasticsearch: `version_type=external`).
    pub version: u64,
}

impl SearchDocument {
    /// The words a search matches against: product ids, shipping address, tracking number and
    /// the order id (the same on every backend that indexes text itself).
    pub fn search_text(&self) -> String {
        let mut text = self.product_ids.join(" ");
        text.push(' ');
        text.push_str(&self.shipping_address);
        if let Some(tracking) = &self.tracking_number {
            text.push(' ');
            text.push_str(tracking);
        }
        text.push(' ');
        text.push_str(&self.order_id.to_string());
        text
    }
}

/// Where a search page ends: the sort values of its last hit (relevance, then recency, then id).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchCursor {
    pub score: f32,
    pub placed_at: OffsetDateTime,
    pub order_id: Uuid,
}

/// A search: words and filters, all optional; every filter narrows the result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchQuery {
    /// Words matched against product ids, the shipping address, the tracking number and the
    /// order id.
    pub text: Option<String>,
    pub status: Option<String>,
    pub customer_id: Option<String>,
    pub min_total_cents: Option<i64>,
    pub max_total_cents: Option<i64>,
    pub placed_from: Option<OffsetDateTime>,
    pub placed_to: Option<OffsetDateTime>,
    pub limit: usize,
    pub after: Option<SearchCursor>,
}

impl SearchQuery {
    /// Refuses text no index may be asked for ([`crate::limits`]).
    ///
    /// # Errors
    /// A NUL character, or a value longer than the limits.
    pub fn check_input(&self) -> Result<(), crate::limits::InputError> {
        use crate::limits::{MAX_LOOKUP_BYTES, MAX_SEARCH_TEXT_BYTES, check_optional};
        check_optional("search text", self.text.as_deref(), MAX_SEARCH_TEXT_BYTES)?;
        check_optional("status", self.status.as_deref(), MAX_LOOKUP_BYTES)?;
        check_optional("customer id", self.customer_id.as_deref(), MAX_LOOKUP_BYTES)
    }
}

/// One match.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub document: SearchDocument,
    /// Relevance as the engine computes it (engines differ: compare only within one answer).
    pub score: f32,
}

/// One page of matches, ranked by relevance, then newest first, then by id.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// Where the next page starts; `None` when this page is not full.
    pub next: Option<SearchCursor>,
    /// Matches per status for every criterion except `status` itself (so a client can offer
    /// the other statuses with their counts).
    pub status_counts: BTreeMap<String, u64>,
}

/// A document the index refused for good (a retryable failure is retried by the adapter first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFailure {
    pub order_id: Uuid,
    pub version: u64,
    pub reason: String,
}

/// Why the search index failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// The engine cannot be reached or keeps answering "not now" (429, 5xx, timeouts).
    #[error("search index unavailable: {0}")]
    Unavailable(String),
    /// The engine answered with something this code cannot read.
    #[error("unexpected answer from the search index: {0}")]
    Protocol(String),
    /// A value the index refuses before any request ([`crate::limits`]): a NUL character, or
    /// longer than the index accepts.
    #[error("refused input: {0}")]
    InvalidInput(#[from] crate::limits::InputError),
    /// Anything else.
    #[error("search index failed: {0}")]
    Backend(String),
}

/// The order search index.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait SearchIndex: Send + Sync {
    /// Creates what the index needs (Elasticsearch: an index with the explicit mapping behind
    /// the alias) if it is missing. Idempotent.
    ///
    /// # Errors
    /// `Unavailable` when the engine cannot be reached; `Protocol` / `Backend` when it refuses.
    async fn prepare(&self) -> Result<(), SearchError>;

    /// Writes documents into `generation`. A document whose stored version is the same or
    /// higher is left as it is and counts as written (a replay); documents refused for good
    /// are returned, never reported as written.
    ///
    /// # Errors
    /// `Unavailable` when retryable failures persist: nothing may be assumed written then;
    /// `Protocol` / `Backend`.
    async fn upsert(
        &self,
        generation: Generation,
        documents: &[SearchDocument],
    ) -> Result<Vec<IndexFailure>, SearchError>;

    /// Matching documents of the live generation.
    ///
    /// # Errors
    /// `InvalidInput` for words or filters the index refuses before any request
    /// ([`SearchQuery::check_input`]); `Unavailable`; `Protocol` / `Backend`.
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, SearchError>;

    /// Starts an empty rebuild generation (dropping an unfinished one).
    ///
    /// # Errors
    /// `Unavailable`; `Protocol` / `Backend`. The live generation is untouched.
    async fn start_rebuild(&self) -> Result<(), SearchError>;

    /// Makes the rebuild generation the live one, atomically for readers, and drops the old.
    ///
    /// # Errors
    /// `Unavailable`; `Protocol` / `Backend`. Readers keep the old generation then.
    async fn finish_rebuild(&self) -> Result<(), SearchError>;

    /// Drops an unfinished rebuild generation, if any; the live one is never touched.
    ///
    /// # Errors
    /// `Unavailable`; `Protocol` / `Backend`.
    async fn abandon_rebuild(&self) -> Result<(), SearchError>;
}
