//! `EsSearchIndex`: the search port on Elasticsearch (or an OpenSearch-compatible server)
//! through the official `elasticsearch` client. Reads and writes go through two aliases,
//! `<prefix>orders` (live) and `<prefix>orders-rebuild`; each generation is a concrete index
//! `<prefix>orders-<uuid v7>` with an explicit, strict mapping. Writes are `_bulk` requests with
//! `version_type=external`, so a replayed or late document never overwrites a newer one.
#![forbid(unsafe_code)]

mod aliases;
mod bulk;
mod error;
mod mapping;
mod query;
#[cfg(feature = "testkit")]
pub mod testkit;
mod transport;

use std::time::Duration;

use async_trait::async_trait;
use elasticsearch::Elasticsearch;
use elasticsearch::http::Url;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use strata_ports::{
    Generation, IndexFailure, SearchDocument, SearchError, SearchIndex, SearchPage, SearchQuery,
};

pub use error::ElasticSetupError;

/// Where the cluster is and how patient to be with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElasticSettings {
    /// The cluster's base URL, e.g. `http://localhost:9200`.
    pub url: String,
    /// Put before every index and alias name (`<prefix>orders`), so several deployments or test
    /// runs can share a cluster. Lowercase, like every index name.
    pub index_prefix: String,
    /// The limit of one request, from connecting until the whole answer is read.
    pub request_timeout: Duration,
    /// How many times a write that failed for a retryable reason (429, 5xx, timeout) is tried
    /// again before the write is reported `Unavailable`.
    pub max_retries: u32,
}

impl ElasticSettings {
    /// The settings the binaries use: 10 s per request, 3 retries of a retryable write.
    pub fn for_cluster(url: &str, index_prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            index_prefix: index_prefix.to_owned(),
            request_timeout: Duration::from_secs(10),
            max_retries: 3,
        }
    }
}

/// The order search index on Elasticsearch.
#[derive(Debug, Clone)]
pub struct EsSearchIndex {
    client: Elasticsearch,
    names: aliases::Names,
    max_retries: u32,
}

impl EsSearchIndex {
    /// A client for the cluster at `settings.url`; nothing is sent until the first call.
    ///
    /// # Errors
    /// `InvalidUrl` when the URL does not parse, `InvalidIndexPrefix` for a prefix that cannot
    /// start an index name, `Client` when the HTTP client cannot be built.
    pub fn new(settings: &ElasticSettings) -> Result<Self, ElasticSetupError> {
        let prefix = &settings.index_prefix;
        if !prefix
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase())
            || !prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(ElasticSetupError::InvalidIndexPrefix(prefix.clone()));
        }
        let url = Url::parse(&settings.url).map_err(|e| ElasticSetupError::InvalidUrl {
            url: settings.url.clone(),
            reason: e.to_string(),
        })?;
        // No proxy: the client would otherwise read proxy environment variables, and adapters
        // take everything they know from their settings.
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(settings.request_timeout)
            .disable_proxy()
            .build()
            .map_err(|e| ElasticSetupError::Client(e.to_string()))?;
        Ok(Self {
            client: Elasticsearch::new(transport),
            names: aliases::Names::new(&settings.index_prefix),
            max_retries: settings.max_retries,
        })
    }

    /// The alias readers use (`<prefix>orders`).
    pub fn live_alias(&self) -> &str {
        &self.names.live
    }

    /// The alias a rebuild writes through (`<prefix>orders-rebuild`).
    pub fn rebuild_alias(&self) -> &str {
        &self.names.rebuild
    }
}

#[async_trait]
impl SearchIndex for EsSearchIndex {
    async fn prepare(&self) -> Result<(), SearchError> {
        aliases::prepare(&self.client, &self.names).await
    }

    async fn upsert(
        &self,
        generation: Generation,
        documents: &[SearchDocument],
    ) -> Result<Vec<IndexFailure>, SearchError> {
        let alias = match generation {
            Generation::Live => &self.names.live,
            Generation::Rebuild => &self.names.rebuild,
        };
        // Live writes wait until they are visible to searches, so that a checkpoint advanced
        // after them means "searchable" (read your writes); a rebuild is refreshed once, when
        // it is swapped in.
        let wait_for_refresh = generation == Generation::Live;
        bulk::upsert(
            &self.client,
            alias,
            documents,
            wait_for_refresh,
            self.max_retries,
        )
        .await
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, SearchError> {
        query.check_input()?;
        query::search(&self.client, &self.names.live, query).await
    }

    async fn start_rebuild(&self) -> Result<(), SearchError> {
        aliases::start_rebuild(&self.client, &self.names).await
    }

    async fn finish_rebuild(&self) -> Result<(), SearchError> {
        aliases::finish_rebuild(&self.client, &self.names).await
    }

    async fn abandon_rebuild(&self) -> Result<(), SearchError> {
        aliases::abandon_rebuild(&self.client, &self.names).await
    }
}
