//! `SqliteSnapshotStore`: the snapshot port on SQLite, one row per stream.

use async_trait::async_trait;
use sqlx::SqlitePool;
use strata_ports::{Snapshot, SnapshotError, SnapshotStore, StreamId};

use crate::codec::{self, micros};
use crate::error::snapshot_error;
use crate::write::write_one;

const LOAD: &str = "\
    SELECT stream_version, state_version, state, taken_at FROM snapshots WHERE stream_id = ?1";

/// Replaces the stored snapshot only with one at the same or a later stream version, in one
/// statement (as on PostgreSQL: an equal version replaces, so a new `state_version` can take
/// over without waiting for an event).
const SAVE: &str = "\
    INSERT INTO snapshots (stream_id, stream_version, state_version, state, taken_at) \
    VALUES (?1, ?2, ?3, ?4, ?5) \
    ON CONFLICT (stream_id) DO UPDATE SET \
        stream_version = excluded.stream_version, state_version = excluded.state_version, \
        state = excluded.state, taken_at = excluded.taken_at \
    WHERE snapshots.stream_version <= excluded.stream_version";

/// The snapshot store on a SQLite pool (migrated with [`crate::migrate`]).
#[derive(Debug, Clone)]
pub struct SqliteSnapshotStore {
    pool: SqlitePool,
}

impl SqliteSnapshotStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl SnapshotStore for SqliteSnapshotStore {
    async fn load(&self, stream_id: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        let row: Option<(i64, i64, String, i64)> = sqlx::query_as(LOAD)
            .bind(stream_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| snapshot_error(&e))?;
        let Some((stream_version, state_version, state, taken_at)) = row else {
            return Ok(None);
        };
        // The port has no `Corrupt`; a snapshot is only a cache, so the caller replays instead.
        let bad = |what: String| SnapshotError::Backend(format!("snapshot of {stream_id}: {what}"));
        Ok(Some(Snapshot {
            stream_id: stream_id.clone(),
            stream_version: codec::to_u64(stream_version, "stream version").map_err(bad)?,
            state_version: u32::try_from(state_version)
                .map_err(|_| bad(format!("state version {state_version}")))?,
            state: codec::json(&state).map_err(bad)?,
            taken_at: codec::instant(taken_at).map_err(bad)?,
        }))
    }

    async fn save(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        let stream_version = codec::to_i64(snapshot.stream_version, "stream version")
            .map_err(SnapshotError::Backend)?;
        let save = sqlx::query(SAVE)
            .bind(snapshot.stream_id.as_str())
            .bind(stream_version)
            .bind(i64::from(snapshot.state_version))
            .bind(snapshot.state.to_string())
            .bind(micros(snapshot.taken_at));
        let result = write_one(&self.pool, save)
            .await
            .map_err(|e| snapshot_error(&e))?;
        if result.rows_affected() == 0 {
            tracing::debug!(
                stream_id = %snapshot.stream_id,
                stream_version,
                "a newer snapshot is stored; kept it"
            );
        }
        Ok(())
    }
}
