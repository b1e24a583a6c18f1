//! PostgreSQL restarted twice during a command load (`-m fast`, then `-m immediate`), on a
//! private cluster the test starts itself; skipped, saying why, where it cannot.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::checks::assert_intact;
use crate::cluster::Cluster;
use crate::load::Load;
use crate::support::Server;

const CLIENTS: usize = 8;
const ORDERS: usize = 5;
const ADDS: usize = 4;

async fn wait_for_acks(load: &Load, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while load.acked.load(Ordering::SeqCst) < count {
        assert!(
            Instant::now() < deadline,
            "the load stalled before {count} acks"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn restart(cluster: &std::sync::Arc<Cluster>, mode: &'static str) {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || cluster.restart(mode))
        .await
        .expect("restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_mid_load_costs_clients_only_retryable_503s_and_loses_nothing() {
    let cluster = match tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("start")
    {
        Ok(cluster) => std::sync::Arc::new(cluster),
        Err(reason) => {
            eprintln!(
                "postgresql_restarted_mid_load_costs_clients_only_retryable_503s_and_loses_nothing: \
                 skipped: cannot start a private PostgreSQL cluster ({reason})"
            );
            return;
        }
    };
    let url = cluster.url("strata");
    let server = Server::start(&url).await;
    let load = Load::new(server.base());
    let total = CLIENTS * ORDERS * (1 + ADDS);
    let first_pid = cluster.postmaster_pid();

    let clients = load.spawn(CLIENTS, ORDERS, ADDS);
    wait_for_acks(&load, total / 4).await;
    let acked_at_fast = load.acked.load(Ordering::SeqCst);
    restart(&cluster, "fast").await;
    wait_for_acks(&load, total * 2 / 3).await;
    let acked_at_immediate = load.acked.load(Ordering::SeqCst);
    restart(&cluster, "immediate").await;
    for client in clients {
        client.await.expect("client task");
    }

    assert!(acked_at_immediate < total, "restarted after the load ended");
    assert_ne!(cluster.postmaster_pid(), first_pid, "the cluster restarted");
    let (unavailable, unknown) = {
        let seen = load.seen.lock().unwrap();
        (seen.unavailable, seen.unknown_outcomes)
    };
    eprintln!(
        "restarted at {acked_at_fast} and {acked_at_immediate} of {total} acknowledged; \
         clients saw {unavailable} 503s and {unknown} cut connections"
    );
    assert_intact(&load, &server, &url).await;
    // And new commands go through once the database is back.
    let after = load
        .until_acked(
            "after-the-restarts".into(),
            "/v1/orders".into(),
            json!({
                "customerId": "customer-after",
                "currency": "EUR",
                "items": [{"productId": "sku-0", "quantity": 1, "unitPriceCents": 100}],
                "shippingAddress": "1 Main Street",
            }),
        )
        .await;
    assert!(after.position > 0);
    let seen = load.seen.lock().unwrap();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
}
