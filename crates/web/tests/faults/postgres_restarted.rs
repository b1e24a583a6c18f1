//! PostgreSQL restarted during a command load (`-m fast`), then stopped (`-m immediate`: every
//! session cut, crash recovery at the next start) for a few seconds, on a private cluster the
//! test starts itself; skipped, saying why, where it cannot.

use std::sync::Arc;
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

/// Runs `what` on the cluster without blocking the clients' runtime.
async fn on(cluster: &Arc<Cluster>, what: impl FnOnce(&Cluster) + Send + 'static) {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || what(&cluster))
        .await
        .expect("pg_ctl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_and_stopped_mid_load_costs_clients_only_retryable_503s_and_loses_nothing()
 {
    let cluster = match tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("start")
    {
        Ok(cluster) => Arc::new(cluster),
        Err(reason) => {
            eprintln!(
                "postgresql_restarted_and_stopped_mid_load_costs_clients_only_retryable_503s_and_loses_nothing: \
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
    let acked_at_restart = load.acked.load(Ordering::SeqCst);
    on(&cluster, |cluster| cluster.restart("fast")).await;
    wait_for_acks(&load, total * 2 / 3).await;
    let acked_at_stop = load.acked.load(Ordering::SeqCst);
    on(&cluster, |cluster| {
        cluster.stop("immediate");
        // Down for longer than the read-your-writes wait, shorter than the request deadline.
        std::thread::sleep(Duration::from_secs(3));
        cluster.start_again();
    })
    .await;
    for client in clients {
        client.await.expect("client task");
    }

    assert!(acked_at_stop < total, "stopped after the load ended");
    assert_ne!(cluster.postmaster_pid(), first_pid, "the cluster restarted");
    let (unavailable, unknown) = {
        let seen = load.seen.lock().unwrap();
        (seen.unavailable, seen.unknown_outcomes)
    };
    eprintln!(
        "restarted at {acked_at_restart}, stopped at {acked_at_stop} of {total} acknowledged; \
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
