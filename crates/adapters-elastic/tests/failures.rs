//! Failure paths the emulator cannot produce, against a wiremock stand-in answering with
//! Elasticsearch's documented bodies: 429 and 5xx answers, `_bulk` answers with failed items,
//! malformed bodies and timeouts. Also checks what the adapter sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use strata_adapters_elastic::{ElasticSettings, EsSearchIndex};
use strata_ports::search_suite::document;
use strata_ports::{Generation, SearchDocument, SearchError, SearchIndex, SearchQuery};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn index(server: &MockServer, max_retries: u32, request_timeout: Duration) -> EsSearchIndex {
    EsSearchIndex::new(&ElasticSettings {
        url: server.uri(),
        index_prefix: "t-".to_owned(),
        request_timeout,
        max_retries,
    })
    .unwrap()
}

fn patient(server: &MockServer, max_retries: u32) -> EsSearchIndex {
    index(server, max_retries, Duration::from_secs(5))
}

fn documents(n: usize) -> Vec<SearchDocument> {
    (0..n)
        .map(|i| SearchDocument {
            version: 7 + i as u64,
            ..document("c", "PENDING", &["p-1"], "1 Main St", 100, i as i64)
        })
        .collect()
}

/// An error answer as Elasticsearch writes it.
fn error_body(status: u16, ty: &str, reason: &str) -> Value {
    json!({
        "error": {
            "root_cause": [{ "type": ty, "reason": reason }],
            "type": ty,
            "reason": reason
        },
        "status": status
    })
}

fn created(id: &str, version: u64) -> Value {
    json!({ "index": {
        "_index": "t-orders-0193", "_id": id, "_version": version, "result": "created",
        "_shards": { "total": 2, "successful": 1, "failed": 0 },
        "_seq_no": 0, "_primary_term": 1, "status": 201
    }})
}

fn failed(id: &str, status: u16, ty: &str, reason: &str) -> Value {
    json!({ "index": {
        "_index": "t-orders-0193", "_id": id, "status": status,
        "error": { "type": ty, "reason": reason, "index_uuid": "aAsFqTI0Tc2W0LCWgPNrOA",
                   "shard": "0", "index": "t-orders-0193" }
    }})
}

fn bulk_answer(items: &[Value]) -> ResponseTemplate {
    let errors = items
        .iter()
        .any(|i| i["index"]["status"].as_u64().unwrap_or(500) >= 300);
    ResponseTemplate::new(200).set_body_json(json!({ "took": 3, "errors": errors, "items": items }))
}

fn all_created(documents: &[SearchDocument]) -> ResponseTemplate {
    let items: Vec<Value> = documents
        .iter()
        .map(|d| created(&d.order_id.to_string(), d.version))
        .collect();
    bulk_answer(&items)
}

/// The NDJSON lines of a `_bulk` request.
fn lines(request: &Request) -> Vec<Value> {
    let body = std::str::from_utf8(&request.body).unwrap();
    assert!(body.ends_with('\n'), "ndjson ends with a newline");
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn query_pairs(request: &Request) -> Vec<(String, String)> {
    request
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn bulk_requests(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/_bulk"))
        .collect()
}

#[tokio::test]
async fn a_bulk_sends_ndjson_with_external_versions_through_the_alias() {
    let server = MockServer::start().await;
    let docs = documents(2);
    Mock::given(method("POST"))
        .and(path("/t-orders/_bulk"))
        .respond_with(all_created(&docs))
        .mount(&server)
        .await;

    let failures = patient(&server, 0)
        .upsert(Generation::Live, &docs)
        .await
        .unwrap();

    assert!(failures.is_empty());
    let requests = bulk_requests(&server).await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let query = query_pairs(request);
    assert!(
        query.contains(&("require_alias".to_owned(), "true".to_owned())),
        "{query:?}"
    );
    assert!(
        query.contains(&("refresh".to_owned(), "wait_for".to_owned())),
        "{query:?}"
    );
    let lines = lines(request);
    assert_eq!(
        lines.len(),
        4,
        "an action line and a source line per document"
    );
    for (pair, doc) in lines.chunks(2).zip(&docs) {
        let action = &pair[0]["index"];
        assert_eq!(action["_id"], doc.order_id.to_string());
        assert_eq!(action["version"], doc.version);
        assert_eq!(action["version_type"], "external");
        assert_eq!(pair[1]["order_id"], doc.order_id.to_string());
        assert_eq!(pair[1]["total_cents"], 100);
    }
}

#[tokio::test]
async fn rebuild_writes_go_through_the_rebuild_alias() {
    let server = MockServer::start().await;
    let docs = documents(1);
    Mock::given(method("POST"))
        .and(path("/t-orders-rebuild/_bulk"))
        .respond_with(all_created(&docs))
        .mount(&server)
        .await;

    let failures = patient(&server, 0)
        .upsert(Generation::Rebuild, &docs)
        .await
        .unwrap();

    assert!(failures.is_empty());
    assert_eq!(bulk_requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_429_is_retried_and_then_succeeds() {
    let server = MockServer::start().await;
    let docs = documents(2);
    Mock::given(method("POST"))
        .and(path("/t-orders/_bulk"))
        .respond_with(ResponseTemplate::new(429).set_body_json(error_body(
            429,
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation",
        )))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/t-orders/_bulk"))
        .respond_with(all_created(&docs))
        .mount(&server)
        .await;

    let failures = patient(&server, 3)
        .upsert(Generation::Live, &docs)
        .await
        .unwrap();

    assert!(failures.is_empty());
    let requests = bulk_requests(&server).await;
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body, requests[1].body,
        "the same documents again"
    );
}

#[tokio::test]
async fn a_persistent_503_is_unavailable_after_the_retries() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/t-orders/_bulk"))
        .respond_with(ResponseTemplate::new(503).set_body_json(error_body(
            503,
            "unavailable_shards_exception",
            "[t-orders-0193][0] primary shard is not active",
        )))
        .mount(&server)
        .await;

    let result = patient(&server, 2)
        .upsert(Generation::Live, &documents(1))
        .await;

    assert!(
        matches!(result, Err(SearchError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(
        bulk_requests(&server).await.len(),
        3,
        "one try and two retries"
    );
}

#[tokio::test]
async fn failed_bulk_items_are_retried_refused_or_counted_as_written() {
    let server = MockServer::start().await;
    let docs = documents(4);
    let [rejected, unmappable, conflicting, fine] = [0, 1, 2, 3].map(|i| docs[i].clone());
    let id = |d: &SearchDocument| d.order_id.to_string();
    Mock::given(method("POST"))
        .and(path("/t-orders/_bulk"))
        .respond_with(bulk_answer(&[
            failed(
                &id(&rejected),
                429,
                "es_rejected_execution_exception",
                "rejected execution of primary operation",
            ),
            failed(
                &id(&unmappable),
                400,
                "document_parsing_exception",
                "[1:2] failed to parse field [total_cents] of type [long]",
            ),
            failed(
                &id(&conflicting),
                409,
                "version_conflict_engine_exception",
                "version conflict, current version [9] is higher or equal to the one provided [9]",
            ),
            created(&id(&fine), fine.version),
        ]))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/t-orders/_bulk"))
        .respond_with(bulk_answer(&[created(&id(&rejected), rejected.version)]))
        .mount(&server)
        .await;

    let failures = patient(&server, 3)
        .upsert(Generation::Live, &docs)
        .await
        .unwrap();

    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].order_id, unmappable.order_id);
    assert_eq!(failures[0].version, unmappable.version);
    assert!(
        failures[0].reason.contains("document_parsing_exception"),
        "{failures:?}"
    );
    let requests = bulk_requests(&server).await;
    assert_eq!(requests.len(), 2);
    let retried = lines(&requests[1]);
    assert_eq!(retried.len(), 2, "only the rejected document is sent again");
    assert_eq!(retried[0]["index"]["_id"], id(&rejected));
    assert_eq!(retried[0]["index"]["version_type"], "external");
}

#[tokio::test]
async fn an_item_that_keeps_failing_makes_the_write_unavailable() {
    let server = MockServer::start().await;
    let docs = documents(1);
    Mock::given(method("POST"))
        .and(path("/t-orders/_bulk"))
        .respond_with(bulk_answer(&[failed(
            &docs[0].order_id.to_string(),
            503,
            "unavailable_shards_exception",
            "primary shard is not active",
        )]))
        .mount(&server)
        .await;

    let result = patient(&server, 1).upsert(Generation::Live, &docs).await;

    assert!(
        matches!(result, Err(SearchError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(bulk_requests(&server).await.len(), 2);
}

#[tokio::test]
async fn a_malformed_body_is_a_protocol_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/t-orders/_bulk"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"took\": 3, \"items\": ["))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/t-orders/_search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "hits": "none" })))
        .mount(&server)
        .await;
    let index = patient(&server, 3);

    let written = index.upsert(Generation::Live, &documents(1)).await;
    let searched = index
        .search(&SearchQuery {
            limit: 10,
            ..SearchQuery::default()
        })
        .await;

    assert!(
        matches!(written, Err(SearchError::Protocol(_))),
        "{written:?}"
    );
    assert!(
        matches!(searched, Err(SearchError::Protocol(_))),
        "{searched:?}"
    );
    assert_eq!(
        bulk_requests(&server).await.len(),
        1,
        "a protocol error is not retried"
    );
}

#[tokio::test]
async fn a_bulk_answer_with_too_few_items_is_a_protocol_error() {
    let server = MockServer::start().await;
    let docs = documents(2);
    Mock::given(method("POST"))
        .and(path("/t-orders/_bulk"))
        .respond_with(all_created(&docs[..1]))
        .mount(&server)
        .await;

    let result = patient(&server, 0).upsert(Generation::Live, &docs).await;

    assert!(
        matches!(result, Err(SearchError::Protocol(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_timeout_is_unavailable() {
    let server = MockServer::start().await;
    let docs = documents(1);
    Mock::given(method("POST"))
        .and(path("/t-orders/_bulk"))
        .respond_with(all_created(&docs).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;

    let result = index(&server, 1, Duration::from_millis(200))
        .upsert(Generation::Live, &docs)
        .await;

    assert!(
        matches!(result, Err(SearchError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(bulk_requests(&server).await.len(), 2, "retried once");
}

#[tokio::test]
async fn search_errors_map_to_the_port() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/t-orders/_search"))
        .respond_with(ResponseTemplate::new(503).set_body_json(error_body(
            503,
            "search_phase_execution_exception",
            "all shards failed",
        )))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/t-orders/_search"))
        .respond_with(ResponseTemplate::new(400).set_body_json(error_body(
            400,
            "parsing_exception",
            "unknown query [foo]",
        )))
        .mount(&server)
        .await;
    let index = patient(&server, 3);
    let query = SearchQuery {
        limit: 10,
        ..SearchQuery::default()
    };

    let unavailable = index.search(&query).await;
    let refused = index.search(&query).await;

    assert!(
        matches!(unavailable, Err(SearchError::Unavailable(_))),
        "{unavailable:?}"
    );
    match refused {
        Err(SearchError::Backend(reason)) => assert!(reason.contains("parsing_exception")),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_cluster_is_unavailable() {
    // A port nothing listens on (wiremock keeps dropped servers listening in a pool).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let index = EsSearchIndex::new(&ElasticSettings {
        url: format!("http://127.0.0.1:{port}"),
        index_prefix: "t-".to_owned(),
        request_timeout: Duration::from_secs(5),
        max_retries: 0,
    })
    .unwrap();

    let result = index
        .search(&SearchQuery {
            limit: 10,
            ..SearchQuery::default()
        })
        .await;

    assert!(
        matches!(result, Err(SearchError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_missing_alias_or_a_blocked_index_makes_the_write_unavailable_not_refused() {
    for (status, ty) in [
        (404, "index_not_found_exception"),
        (403, "cluster_block_exception"),
    ] {
        let server = MockServer::start().await;
        let docs = documents(1);
        Mock::given(method("POST"))
            .and(path("/t-orders/_bulk"))
            .respond_with(bulk_answer(&[failed(
                &docs[0].order_id.to_string(),
                status,
                ty,
                "no such index [t-orders] and [require_alias] request flag is [true]",
            )]))
            .mount(&server)
            .await;

        let result = patient(&server, 1).upsert(Generation::Live, &docs).await;

        assert!(
            matches!(&result, Err(SearchError::Unavailable(reason)) if reason.contains(ty)),
            "{status}: {result:?}"
        );
        assert_eq!(bulk_requests(&server).await.len(), 2);
    }
}

#[tokio::test]
async fn searching_an_index_that_does_not_exist_yet_is_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/t-orders/_search"))
        .respond_with(ResponseTemplate::new(404).set_body_json(error_body(
            404,
            "index_not_found_exception",
            "no such index [t-orders]",
        )))
        .mount(&server)
        .await;

    let result = patient(&server, 1)
        .search(&SearchQuery {
            limit: 10,
            ..SearchQuery::default()
        })
        .await;

    assert!(
        matches!(&result, Err(SearchError::Unavailable(reason)) if reason.contains("does not exist yet")),
        "{result:?}"
    );
}

#[test]
fn an_index_prefix_that_cannot_start_an_index_name_is_refused() {
    for prefix in ["", "Strata-", "-strata", "strata orders", "strata/"] {
        let built = EsSearchIndex::new(&ElasticSettings::for_cluster(
            "http://127.0.0.1:9200",
            prefix,
        ));
        assert!(
            matches!(
                built,
                Err(strata_adapters_elastic::ElasticSetupError::InvalidIndexPrefix(_))
            ),
            "{prefix:?}"
        );
    }
    assert!(
        EsSearchIndex::new(&ElasticSettings::for_cluster(
            "http://127.0.0.1:9200",
            "strata_1-"
        ))
        .is_ok()
    );
}
