//! The ports' conformance suite against PostgreSQL: the same cases every adapter runs, each
//! suite on its own fresh database.

use sqlx::PgPool;
use strata_adapters_postgres::{PgEventStore, PgProjectionStore, PgReadModels, PgSnapshotStore};
use strata_ports::conformance;

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn the_event_store_shows_every_behaviour_of_the_port(pool: PgPool) {
    conformance::event_store::run(&PgEventStore::new(pool)).await;
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn the_snapshot_store_shows_every_behaviour_of_the_port(pool: PgPool) {
    conformance::snapshots::run(&PgSnapshotStore::new(pool)).await;
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn the_read_models_show_every_behaviour_of_the_ports(pool: PgPool) {
    let store = PgProjectionStore::new(pool.clone());
    let models = PgReadModels::new(pool);
    conformance::read_models::run(&store, &models).await;
}
