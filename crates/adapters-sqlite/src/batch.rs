//! `SqliteBatch`: one batch of a projection, a `BEGIN IMMEDIATE` transaction that holds the
//! database's write lock, and with it the projection's checkpoint, from its first statement to
//! its commit, so that the read-model changes, dead letters and checkpoint commit together or
//! not at all. A rebuild's batch writes the `rebuild_` tables. Each read model's rows are
//! written by its module in [`crate::rows`].

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use strata_ports::{DeadLetter, ProjectionBatch, ReadModelError};

use crate::checkpoints::{db, now};
use crate::codec::{self, micros};
use crate::rows::{self, to_i64, to_u64};
use crate::write::WriteTx;

/// One batch: a write transaction, and the generation's table prefix.
pub(crate) struct SqliteBatch {
    pub(crate) tx: WriteTx<'static>,
    pub(crate) key: String,
    pub(crate) checkpoint: u64,
    pub(crate) prefix: &'static str,
}

impl std::fmt::Debug for SqliteBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBatch")
            .field("key", &self.key)
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
}

impl SqliteBatch {
    /// `template` with `{p}` replaced by the generation's table prefix.
    pub(crate) fn sql(&self, template: &str) -> AssertSqlSafe<String> {
        AssertSqlSafe(template.replace("{p}", self.prefix))
    }

    async fn run(&mut self, sql: &str) -> Result<(), ReadModelError> {
        sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }
}

const PARK: &str = "\
    INSERT INTO projection_dead_letters (projection, global_position, event_id, stream_id, \
        stream_version, event_type, schema_version, data, metadata, recorded_at, error, \
        attempts, blocked_by, parked_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
    ON CONFLICT (projection, global_position) DO NOTHING";

#[async_trait]
impl ProjectionBatch for SqliteBatch {
    async fn checkpoint(&mut self) -> Result<u64, ReadModelError> {
        Ok(self.checkpoint)
    }

    async fn savepoint(&mut self) -> Result<(), ReadModelError> {
        self.run("SAVEPOINT strata_event").await
    }

    async fn rollback_to_savepoint(&mut self) -> Result<(), ReadModelError> {
        self.run("ROLLBACK TO SAVEPOINT strata_event").await
    }

    async fn release_savepoint(&mut self) -> Result<(), ReadModelError> {
        self.run("RELEASE SAVEPOINT strata_event").await
    }

    async fn blocked_streams(
        &mut self,
        streams: &[String],
    ) -> Result<std::collections::HashMap<String, u64>, ReadModelError> {
        let streams = serde_json::to_string(streams)
            .map_err(|e| ReadModelError::Backend(format!("stream ids: {e}")))?;
        let blocked: Vec<(String, i64)> = sqlx::query_as(
            "SELECT stream_id, global_position FROM projection_dead_letters \
             WHERE projection = ?1 AND blocked_by IS NULL \
               AND stream_id IN (SELECT value FROM json_each(?2))",
        )
        .bind(&self.key)
        .bind(streams)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(db)?;
        blocked
            .into_iter()
            .map(|(stream, position)| Ok((stream, to_u64(position, "position")?)))
            .collect()
    }

    async fn park(&mut self, letter: &DeadLetter) -> Result<(), ReadModelError> {
        let event = &letter.event;
        let metadata = serde_json::to_string(&event.metadata)
            .map_err(|e| ReadModelError::Backend(format!("metadata: {e}")))?;
        sqlx::query(PARK)
            .bind(&self.key)
            .bind(to_i64(event.global_position, "position")?)
            .bind(codec::text_id(event.event_id))
            .bind(event.stream_id.as_str())
            .bind(to_i64(event.stream_version, "version")?)
            .bind(&event.event_type)
            .bind(i64::from(event.schema_version))
            .bind(event.data.to_string())
            .bind(metadata)
            .bind(micros(event.recorded_at))
            .bind(&letter.error)
            .bind(i64::from(letter.attempts))
            .bind(
                letter
                    .blocked_by
                    .map(|p| to_i64(p, "position"))
                    .transpose()?,
            )
            .bind(micros(letter.parked_at))
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn take_dead_letters(
        &mut self,
        position: u64,
    ) -> Result<Vec<DeadLetter>, ReadModelError> {
        let rows = sqlx::query(
            "DELETE FROM projection_dead_letters \
             WHERE projection = ?1 AND (global_position = ?2 OR blocked_by = ?2) \
             AND EXISTS (SELECT 1 FROM projection_dead_letters \
                         WHERE projection = ?1 AND global_position = ?2 AND blocked_by IS NULL) \
             RETURNING *",
        )
        .bind(&self.key)
        .bind(to_i64(position, "position")?)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(db)?;
        let mut letters = rows
            .iter()
            .map(rows::dead_letter_of)
            .collect::<Result<Vec<_>, _>>()?;
        // The statement removes nothing unless a failed event is at `position`.
        if letters.is_empty() {
            return Err(ReadModelError::NotFound(format!(
                "no failed event at position {position} in {}",
                self.key
            )));
        }
        letters.sort_by_key(|l| l.event.global_position);
        Ok(letters)
    }

    async fn commit(mut self: Box<Self>, position: u64) -> Result<(), ReadModelError> {
        let moved = sqlx::query(
            "UPDATE projection_checkpoints SET position = ?2, updated_at = ?4 \
             WHERE projection = ?1 AND position = ?3",
        )
        .bind(&self.key)
        .bind(to_i64(position, "checkpoint")?)
        .bind(to_i64(self.checkpoint, "checkpoint")?)
        .bind(now())
        .execute(&mut *self.tx)
        .await
        .map_err(db)?;
        if moved.rows_affected() != 1 {
            return Err(ReadModelError::CheckpointMoved {
                projection: self.key.clone(),
                expected: self.checkpoint,
            });
        }
        self.tx.commit().await.map_err(db)
    }
}
