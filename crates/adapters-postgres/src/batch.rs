//! `PgBatch`: one batch of a projection, a transaction that holds the projection's checkpoint
//! row from its first statement to its commit, so that the read-model changes, dead letters and
//! checkpoint commit together or not at all. Each read model's rows are written by its module
//! in [`crate::rows`].

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};
use strata_ports::{DeadLetter, ProjectionBatch, ReadModelError};

use crate::checkpoints::db;
use crate::rows::{dead_letter_of, to_i64, to_u64};

/// One batch: a transaction holding the checkpoint row.
pub(crate) struct PgBatch {
    pub(crate) tx: Transaction<'static, Postgres>,
    pub(crate) key: String,
    pub(crate) checkpoint: u64,
}

impl std::fmt::Debug for PgBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBatch")
            .field("key", &self.key)
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
}

const PARK: &str = "\
    INSERT INTO public.projection_dead_letters (projection, global_position, event_id, \
        stream_id, stream_version, event_type, schema_version, data, metadata, recorded_at, \
        error, attempts, blocked_by, parked_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::json, $9::text::json, $10, $11, $12, $13, \
            $14) \
    ON CONFLICT (projection, global_position) DO NOTHING";

#[async_trait]
impl ProjectionBatch for PgBatch {
    async fn checkpoint(&mut self) -> Result<u64, ReadModelError> {
        Ok(self.checkpoint)
    }

    async fn savepoint(&mut self) -> Result<(), ReadModelError> {
        sqlx::query("SAVEPOINT strata_event")
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn rollback_to_savepoint(&mut self) -> Result<(), ReadModelError> {
        sqlx::query("ROLLBACK TO SAVEPOINT strata_event")
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn release_savepoint(&mut self) -> Result<(), ReadModelError> {
        sqlx::query("RELEASE SAVEPOINT strata_event")
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn blocked_streams(
        &mut self,
        streams: &[String],
    ) -> Result<HashMap<String, u64>, ReadModelError> {
        let blocked: Vec<(String, i64)> = sqlx::query_as(
            "SELECT stream_id, global_position FROM public.projection_dead_letters \
             WHERE projection = $1 AND stream_id = ANY($2) AND blocked_by IS NULL",
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
        // As text, as the log stores them (migration 0006).
        let data = serde_json::to_string(&event.data)
            .map_err(|e| ReadModelError::Backend(format!("data: {e}")))?;
        let metadata = serde_json::to_string(&event.metadata)
            .map_err(|e| ReadModelError::Backend(format!("metadata: {e}")))?;
        sqlx::query(PARK)
            .bind(&self.key)
            .bind(to_i64(event.global_position, "position")?)
            .bind(event.event_id)
            .bind(event.stream_id.as_str())
            .bind(to_i64(event.stream_version, "version")?)
            .bind(&event.event_type)
            .bind(i32::try_from(event.schema_version).unwrap_or(i32::MAX))
            .bind(data)
            .bind(metadata)
            .bind(event.recorded_at)
            .bind(&letter.error)
            .bind(i32::try_from(letter.attempts).unwrap_or(i32::MAX))
            .bind(
                letter
                    .blocked_by
                    .map(|p| to_i64(p, "position"))
                    .transpose()?,
            )
            .bind(letter.parked_at)
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
            "DELETE FROM public.projection_dead_letters \
             WHERE projection = $1 AND (global_position = $2 OR blocked_by = $2) \
             AND EXISTS (SELECT 1 FROM public.projection_dead_letters \
                         WHERE projection = $1 AND global_position = $2 AND blocked_by IS NULL) \
             RETURNING *",
        )
        .bind(&self.key)
        .bind(to_i64(position, "position")?)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(db)?;
        let mut letters = rows
            .iter()
            .map(dead_letter_of)
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
            "UPDATE public.projection_checkpoints SET position = $2, updated_at = now() \
             WHERE projection = $1 AND position = $3",
        )
        .bind(&self.key)
        .bind(to_i64(position, "checkpoint")?)
        .bind(to_i64(self.checkpoint, "checkpoint")?)
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
