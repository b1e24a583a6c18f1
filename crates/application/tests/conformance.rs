//! The ports' conformance suite against the in-memory doubles of `support`: the application's
//! tests rely on them behaving like the real adapters, so they run the cases every adapter runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use strata_ports::conformance;
use support::{MemoryEventStore, MemorySnapshotStore};

#[tokio::test]
async fn the_memory_event_store_shows_every_behaviour_of_the_port() {
    conformance::event_store::run(&MemoryEventStore::default()).await;
}

#[tokio::test]
async fn the_memory_snapshot_store_shows_every_behaviour_of_the_port() {
    conformance::snapshots::run(&MemorySnapshotStore::default()).await;
}
