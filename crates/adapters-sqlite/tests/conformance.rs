//! The ports' conformance suite against SQLite: the same cases every adapter runs, each suite
//! on its own fresh file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use strata_adapters_sqlite::{
    SqliteEventStore, SqliteProjectionStore, SqliteReadModels, SqliteSnapshotStore,
};
use strata_ports::conformance;
use support::fresh;

#[tokio::test]
async fn the_event_store_shows_every_behaviour_of_the_port() {
    let db = fresh().await;
    conformance::event_store::run(&SqliteEventStore::new(db.pool.clone())).await;
}

#[tokio::test]
async fn the_snapshot_store_shows_every_behaviour_of_the_port() {
    let db = fresh().await;
    conformance::snapshots::run(&SqliteSnapshotStore::new(db.pool.clone())).await;
}

#[tokio::test]
async fn the_read_models_show_every_behaviour_of_the_ports() {
    let db = fresh().await;
    let store = SqliteProjectionStore::new(db.pool.clone());
    let models = SqliteReadModels::new(db.pool.clone());
    conformance::read_models::run(&store, &models).await;
}
