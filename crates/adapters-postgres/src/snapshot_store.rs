//! `PgSnapshotStore`: the snapshot port on PostgreSQL, one row per stream.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::PgPool;
use strata_ports::{Snapshot, SnapshotError, SnapshotStore, StreamId};
use time::OffsetDateTime;

use crate::error::snapshot_error;

const LOAD: &str = "\
    SELECT stream_version, state_version, state, taken_at \
    FROM snapshots WHERE stream_id = $1";

/// Replaces the stored snapshot only with one at the same or a later stream version, in one
/// statement, so two racing writers cannot leave the older snapshot behind. An equal version
/// replaces, so a snapshot of a new `state_version` can take over without waiting for an event.
const SAVE: &str = "\
    INSERT INTO snapshots (stream_id, stream_version, state_version, state, taken_at) \
    VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (stream_id) DO UPDATE SET \
        stream_version = EXCLUDED.stream_version, \
        state_version = EXCLUDED.state_version, \
        state = EXCLUDED.state, \
        taken_at = EXCLUDED.taken_at \
    WHERE snapshots.stream_version <= EXCLUDED.stream_version";

/// The snapshot store on a PostgreSQL pool (migrated with [`crate::migrate`]).
#[derive(Debug, Clone)]
pub struct PgSnapshotStore {
    pool: PgPool,
}

impl PgSnapshotStore {
    /// A snapshot store that runs every operation on a connection of `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(sqlx::FromRow)]
struct SnapshotRow {
    stream_version: i64,
    state_version: i32,
    state: Value,
    taken_at: OffsetDateTime,
}

#[async_trait]
impl SnapshotStore for PgSnapshotStore {
    async fn load(&self, stream_id: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        let row: Option<SnapshotRow> = sqlx::query_as(LOAD)
            .bind(stream_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| snapshot_error(&e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        // The port has no `Corrupt`; a snapshot is only a cache, so the caller replays instead.
        let (Ok(stream_version), Ok(state_version)) = (
            u64::try_from(row.stream_version),
            u32::try_from(row.state_version),
        ) else {
            return Err(SnapshotError::Backend(format!(
                "snapshot of {stream_id} has a negative version"
            )));
        };
        Ok(Some(Snapshot {
            stream_id: stream_id.clone(),
            stream_version,
            state_version,
            state: row.state,
            taken_at: row.taken_at,
        }))
    }

    async fn save(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        let (Ok(stream_version), Ok(state_version)) = (
            i64::try_from(snapshot.stream_version),
            i32::try_from(snapshot.state_version),
        ) else {
            return Err(SnapshotError::Backend(format!(
                "snapshot of {} has a version too large to store",
                snapshot.stream_id
            )));
        };
        let result = sqlx::query(SAVE)
            .bind(snapshot.stream_id.as_str())
            .bind(stream_version)
            .bind(state_version)
            .bind(&snapshot.state)
            .bind(snapshot.taken_at)
            .execute(&self.pool)
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
