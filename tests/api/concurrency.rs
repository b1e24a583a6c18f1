//! Many clients writing to one order at once: nothing acknowledged is lost, nothing is doubled,
//! and the stream has no gap.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::helpers::{item, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_clients_adding_items_lose_nothing() {
    let app = Arc::new(spawn_app().await);
    let token = app.operator();
    let id = app.place_order(&token, "c1").await;

    // Each client warms its own connection, then all start together, so their loads overlap
    // and most of them lose the first race (without retries only one or two land).
    let start = Arc::new(tokio::sync::Barrier::new(32));
    let clients = (0..32).map(|n| {
        let (app, token, id, start) = (app.clone(), token.clone(), id.clone(), start.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            client
                .get(format!("{}/health/live", app.address))
                .send()
                .await
                .unwrap();
            start.wait().await;
            let answer = client
                .post(format!("{}/v1/orders/{id}/items", app.address))
                .bearer_auth(&token)
                .json(&item(&format!("p-{n}"), 1, 10))
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            (n, status, answer.json::<serde_json::Value>().await.unwrap())
        })
    });
    let results = futures::future::join_all(clients).await;

    let mut acknowledged = BTreeSet::new();
    let mut versions = BTreeSet::new();
    for result in results {
        let (n, status, body) = result.unwrap();
        assert!(
            status == 200 || status == 409,
            "client {n}: {status} {body}"
        );
        if status == 200 {
            acknowledged.insert(format!("p-{n}"));
            assert!(
                versions.insert(body["version"].as_u64().unwrap()),
                "two acknowledgements share a version"
            );
        }
    }
    let state = app
        .get(&format!("/v1/orders/{id}/state"), &token)
        .await
        .expect(200);
    let in_state: BTreeSet<String> = state.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["productId"].as_str().unwrap().to_owned())
        .filter(|p| p != "sku-1")
        .collect();
    let trail = app
        .get(&format!("/v1/orders/{id}/events"), &token)
        .await
        .expect(200);
    let stream_versions: Vec<u64> = trail.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["streamVersion"].as_u64().unwrap())
        .collect();

    assert_eq!(
        in_state, acknowledged,
        "every acknowledged item, and only those, is in the order"
    );
    assert_eq!(
        stream_versions,
        (1..=stream_versions.len() as u64).collect::<Vec<_>>(),
        "no gap in the stream"
    );
    assert_eq!(stream_versions.len(), acknowledged.len() + 1);
    assert!(
        acknowledged.len() >= 30,
        "bounded retries should let (nearly) all land: {}",
        acknowledged.len()
    );
}
