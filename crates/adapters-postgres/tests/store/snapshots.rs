//! The snapshot store keeps the latest snapshot of each stream, never an older one.

use serde_json::json;
use sqlx::PgPool;
use strata_adapters_postgres::PgSnapshotStore;
use strata_ports::{Snapshot, SnapshotStore, StreamId};

use crate::helpers::{RECORDED_AT, stream};

fn snapshot(stream_id: &StreamId, stream_version: u64, state_version: u32) -> Snapshot {
    Snapshot {
        stream_id: stream_id.clone(),
        stream_version,
        state_version,
        state: json!({ "balance": stream_version * 100 }),
        taken_at: RECORDED_AT,
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_stream_without_snapshot_loads_none(pool: PgPool) {
    let snapshots = PgSnapshotStore::new(pool);

    let loaded = snapshots.load(&stream("account")).await.unwrap();

    assert_eq!(loaded, None);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_saved_snapshot_loads_back_unchanged(pool: PgPool) {
    let snapshots = PgSnapshotStore::new(pool);
    let account = stream("account");
    let saved = snapshot(&account, 10, 1);

    snapshots.save(saved.clone()).await.unwrap();

    assert_eq!(snapshots.load(&account).await.unwrap(), Some(saved));
    assert_eq!(snapshots.load(&stream("account")).await.unwrap(), None);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_newer_snapshot_replaces_the_stored_one(pool: PgPool) {
    let snapshots = PgSnapshotStore::new(pool);
    let account = stream("account");
    snapshots.save(snapshot(&account, 10, 1)).await.unwrap();

    snapshots.save(snapshot(&account, 20, 1)).await.unwrap();

    let loaded = snapshots.load(&account).await.unwrap().unwrap();
    assert_eq!(loaded, snapshot(&account, 20, 1));
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn an_older_snapshot_does_not_replace_a_newer_one(pool: PgPool) {
    let snapshots = PgSnapshotStore::new(pool);
    let account = stream("account");
    snapshots.save(snapshot(&account, 20, 1)).await.unwrap();

    snapshots.save(snapshot(&account, 10, 2)).await.unwrap();

    let loaded = snapshots.load(&account).await.unwrap().unwrap();
    assert_eq!(loaded, snapshot(&account, 20, 1));
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_snapshot_at_the_same_version_replaces_the_stored_one(pool: PgPool) {
    // After a change of the state's schema, a fresh snapshot at the same stream version must be
    // able to take the old one's place, or the old one would be ignored until the next event.
    let snapshots = PgSnapshotStore::new(pool);
    let account = stream("account");
    snapshots.save(snapshot(&account, 10, 1)).await.unwrap();

    snapshots.save(snapshot(&account, 10, 2)).await.unwrap();

    let loaded = snapshots.load(&account).await.unwrap().unwrap();
    assert_eq!(loaded.state_version, 2);
}
