//! The behaviours every [`SnapshotStore`] adapter must show: it keeps the latest snapshot of
//! each stream, never lets an older one replace it, and lets one at the same version replace it.
//!
//! [`run`] takes a freshly migrated, empty store and runs every case on it, one after another,
//! each on fresh streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

use crate::event_store::StreamId;
use crate::snapshot::{Snapshot, SnapshotStore};

/// Every behaviour, one after another on the same store.
pub async fn run(snapshots: &dyn SnapshotStore) {
    a_stream_without_snapshot_loads_none(snapshots).await;
    a_saved_snapshot_loads_back_unchanged(snapshots).await;
    a_newer_snapshot_replaces_the_stored_one(snapshots).await;
    an_older_snapshot_does_not_replace_a_newer_one(snapshots).await;
    a_snapshot_at_the_same_version_replaces_the_stored_one(snapshots).await;
}

/// A microsecond-precise instant, the precision every backend keeps, so snapshots compare equal.
const TAKEN_AT: OffsetDateTime = datetime!(2026-11-02 09:30:00.123456 UTC);

/// A fresh stream of accounts.
fn account() -> StreamId {
    StreamId::new("account", Uuid::now_v7())
}

fn snapshot(stream_id: &StreamId, stream_version: u64, state_version: u32) -> Snapshot {
    Snapshot {
        stream_id: stream_id.clone(),
        stream_version,
        state_version,
        state: json!({ "balance": stream_version * 100, "owner": { "id": "c-1" }, "tags": [] }),
        taken_at: TAKEN_AT,
    }
}

/// A stream nobody snapshotted loads as none, not as an error.
pub async fn a_stream_without_snapshot_loads_none(snapshots: &dyn SnapshotStore) {
    let loaded = snapshots.load(&account()).await.unwrap();

    assert_eq!(loaded, None);
}

/// A saved snapshot loads back field for field, and only for its own stream.
pub async fn a_saved_snapshot_loads_back_unchanged(snapshots: &dyn SnapshotStore) {
    let (mine, other) = (account(), account());
    let saved = snapshot(&mine, 10, 1);

    snapshots.save(saved.clone()).await.unwrap();

    assert_eq!(snapshots.load(&mine).await.unwrap(), Some(saved));
    assert_eq!(snapshots.load(&other).await.unwrap(), None);
}

/// A snapshot at a later stream version takes the stored one's place.
pub async fn a_newer_snapshot_replaces_the_stored_one(snapshots: &dyn SnapshotStore) {
    let stream = account();
    snapshots.save(snapshot(&stream, 10, 1)).await.unwrap();

    snapshots.save(snapshot(&stream, 20, 1)).await.unwrap();

    let loaded = snapshots.load(&stream).await.unwrap();
    assert_eq!(loaded, Some(snapshot(&stream, 20, 1)));
}

/// A slow writer's older snapshot never replaces a newer one, whatever its state version.
pub async fn an_older_snapshot_does_not_replace_a_newer_one(snapshots: &dyn SnapshotStore) {
    let stream = account();
    snapshots.save(snapshot(&stream, 20, 1)).await.unwrap();

    snapshots.save(snapshot(&stream, 10, 2)).await.unwrap();

    let loaded = snapshots.load(&stream).await.unwrap();
    assert_eq!(loaded, Some(snapshot(&stream, 20, 1)));
}

/// After a change of the state's schema, a fresh snapshot at the same stream version must take
/// the old one's place, or the old one would be ignored until the stream's next event.
pub async fn a_snapshot_at_the_same_version_replaces_the_stored_one(snapshots: &dyn SnapshotStore) {
    let stream = account();
    snapshots.save(snapshot(&stream, 10, 1)).await.unwrap();

    snapshots.save(snapshot(&stream, 10, 2)).await.unwrap();

    let loaded = snapshots.load(&stream).await.unwrap();
    assert_eq!(loaded, Some(snapshot(&stream, 10, 2)));
}
