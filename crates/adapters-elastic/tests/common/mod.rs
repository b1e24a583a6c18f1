//! Test helpers: an `osmem-server` emulator per test, or the real cluster of
//! `ELASTICSEARCH_URL`, each with its own index prefix.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod scenarios;

use std::time::Duration;

use elasticsearch::Elasticsearch;
use elasticsearch::http::Url;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::indices::{IndicesDeleteParts, IndicesGetParts};
use serde_json::Value;
use strata_adapters_elastic::testkit::{Emulator, skipped};
use strata_adapters_elastic::{ElasticSettings, EsSearchIndex};
use uuid::Uuid;

/// A cluster to test against, with a prefix no other test uses.
#[derive(Debug)]
pub struct Target {
    pub url: String,
    pub prefix: String,
    _emulator: Option<Emulator>,
}

impl Target {
    /// A fresh emulator, or `None` when it is not installed.
    pub fn emulator(test: &str) -> Option<Self> {
        let emulator = Emulator::start(test)?;
        Some(Self {
            url: emulator.url.clone(),
            prefix: "strata-test-".to_owned(),
            _emulator: Some(emulator),
        })
    }

    /// The cluster of `ELASTICSEARCH_URL`, or `None` (with a visible message) when it is unset.
    pub fn live(test: &str) -> Option<Self> {
        let Ok(url) = std::env::var("ELASTICSEARCH_URL") else {
            skipped(test, "ELASTICSEARCH_URL is not set");
            return None;
        };
        Some(Self {
            url,
            prefix: format!("strata-test-{}-", Uuid::now_v7().simple()),
            _emulator: None,
        })
    }

    pub fn settings(&self) -> ElasticSettings {
        ElasticSettings {
            url: self.url.clone(),
            index_prefix: self.prefix.clone(),
            request_timeout: Duration::from_secs(30),
            max_retries: 3,
        }
    }

    /// The adapter, prepared: the live alias and its index exist.
    pub async fn index(&self) -> EsSearchIndex {
        let index = EsSearchIndex::new(&self.settings()).unwrap();
        strata_ports::SearchIndex::prepare(&index).await.unwrap();
        index
    }

    /// A plain client, to look at what the adapter did.
    pub fn client(&self) -> Elasticsearch {
        let pool = SingleNodeConnectionPool::new(Url::parse(&self.url).unwrap());
        Elasticsearch::new(TransportBuilder::new(pool).disable_proxy().build().unwrap())
    }

    /// GET a path; the status and the JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client()
            .send::<(), ()>(
                elasticsearch::http::Method::Get,
                path,
                elasticsearch::http::headers::HeaderMap::new(),
                None,
                None,
                None,
            )
            .await
            .unwrap();
        let status = response.status_code().as_u16();
        (status, response.json().await.unwrap())
    }

    /// The names of the indices this test created.
    pub async fn indices(&self) -> Vec<String> {
        let pattern = format!("{}*", self.prefix);
        let response = self
            .client()
            .indices()
            .get(IndicesGetParts::Index(&[&pattern]))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        let mut names: Vec<String> = body
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Deletes every index this test created (by name: clusters refuse wildcard deletes).
    pub async fn clean_up(&self) {
        for name in self.indices().await {
            self.client()
                .indices()
                .delete(IndicesDeleteParts::Index(&[&name]))
                .send()
                .await
                .unwrap();
        }
    }
}

/// One test per scenario, each on its own target (`emulator` or `live`).
#[macro_export]
macro_rules! scenario_tests {
    ($target:ident: $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                let Some(target) = common::Target::$target(stringify!($scenario)) else {
                    return;
                };
                let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                    common::scenarios::$scenario(&target),
                ))
                .await;
                target.clean_up().await;
                if let Err(panic) = outcome {
                    std::panic::resume_unwind(panic);
                }
            }
        )*
    };
}
