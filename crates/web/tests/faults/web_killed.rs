//! `strata-web` (with its projection workers) killed with SIGKILL mid-load, then started again
//! on the same database and port while the clients keep retrying.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::checks::assert_intact;
use crate::load::Load;
use crate::support::{FreshDatabase, Server};

const CLIENTS: usize = 8;
const ORDERS: usize = 5;
const ADDS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_load_loses_no_acknowledged_write_and_applies_no_retry_twice() {
    let database = FreshDatabase::create().await;
    let mut server = Server::start(&database.url).await;
    let load = Load::new(server.base());
    let total = CLIENTS * ORDERS * (1 + ADDS);

    let clients = load.spawn(CLIENTS, ORDERS, ADDS);
    let deadline = Instant::now() + Duration::from_secs(60);
    while load.acked.load(Ordering::SeqCst) < total / 3 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    let acked_at_kill = load.acked.load(Ordering::SeqCst);
    // Long enough for every client to find the port closed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().await;
    for client in clients {
        client.await.expect("client task");
    }

    assert!(acked_at_kill < total, "killed after the load ended");
    let unknown = load.seen.lock().unwrap().unknown_outcomes;
    assert!(unknown > 0, "no client noticed the kill");
    eprintln!("killed at {acked_at_kill}/{total} acknowledged; {unknown} unknown outcomes retried");
    assert_intact(&load, &server, &database.url).await;
    drop(server);
    database.drop_it().await;
}
