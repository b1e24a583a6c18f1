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
#[derive(Clone, PartialEq, Eq)]
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

impl std::fmt::Debug for ElasticSettings {
    // The URL may carry a password, and settings end up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticSettings")
            .field("url", &strata_ports::redact_url(&self.url))
            .field("index_prefix", &self.index_prefix)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
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
#[derive(Clone)]
pub struct EsSearchIndex {
    client: Elasticsearch,
    names: aliases::Names,
    max_retries: u32,
}

impl std::fmt::Debug for EsSearchIndex {
    // The client's transport holds the URL, password included: shown by neither.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsSearchIndex")
            .field("names", &self.names)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
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
            url: strata_ports::redact_url(&settings.url),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_of_the_cluster_url_is_shown_nowhere() {
        let password = "s3cret-do-not-print";
        let settings =
            ElasticSettings::for_cluster(&format!("https://elastic:{password}@es:9200"), "strata-");
        let index = EsSearchIndex::new(&settings).expect("a valid URL");
        let invalid =
            ElasticSettings::for_cluster(&format!("http://elastic:{password}@es:99999"), "strata-");
        let refused = EsSearchIndex::new(&invalid).expect_err("an invalid port");

        for shown in [
            format!("{settings:?}"),
            format!("{index:?}"),
            refused.to_string(),
            format!("{refused:?}"),
        ] {
            assert!(!shown.contains(password), "{shown}");
        }
        assert!(format!("{settings:?}").contains("elastic:***@es:9200"));
    }
}
