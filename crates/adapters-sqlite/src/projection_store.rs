//! `SqliteProjectionStore`: a batch is one `BEGIN IMMEDIATE` transaction, so it holds the
//! database's write lock — and with it the projection's checkpoint — from its first statement to
//! its commit: a second worker's batch waits, and the read-model changes, dead letters and
//! checkpoint commit together or not at all.
//!
//! Batches are in [`crate::batch`], rebuilds in [`crate::rebuild`].

use async_trait::async_trait;
use sqlx::SqlitePool;
use strata_ports::{
    DeadLetter, Generation, ProjectionBatch, ProjectionName, ProjectionStore, ReadModelError,
    RebuildSwap,
};

use crate::batch::SqliteBatch;
use crate::checkpoints::{checkpoint_of, db, ensure_checkpoint, now};
use crate::rebuild;
use crate::rows;
use crate::write::{WriteTx, begin_write, write_one};

/// What a generation's table names start with.
fn prefix(generation: Generation) -> &'static str {
    match generation {
        Generation::Live => "",
        Generation::Rebuild => "rebuild_",
    }
}

/// The read models' storage on a SQLite pool (migrated with [`crate::migrate`]).
#[derive(Debug, Clone)]
pub struct SqliteProjectionStore {
    pool: SqlitePool,
}

impl SqliteProjectionStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    async fn write(&self) -> Result<WriteTx<'static>, ReadModelError> {
        begin_write(&self.pool).await.map_err(db)
    }
}

#[async_trait]
impl ProjectionStore for SqliteProjectionStore {
    async fn begin(
        &self,
        projection: ProjectionName,
        generation: Generation,
    ) -> Result<Box<dyn ProjectionBatch>, ReadModelError> {
        let key = projection.key(generation);
        let mut tx = self.write().await?;
        let checkpoint = match generation {
            Generation::Live => ensure_checkpoint(&mut tx, &key).await?,
            // The rebuild's checkpoint exists from `start_rebuild` until the swap or abandon;
            // without it there are no rebuild tables to write either.
            Generation::Rebuild => checkpoint_of(&mut *tx, &key).await?.ok_or_else(|| {
                ReadModelError::NotFound(format!("no rebuild of {projection} in progress"))
            })?,
        };
        Ok(Box::new(SqliteBatch {
            tx,
            key,
            checkpoint,
            prefix: prefix(generation),
        }))
    }

    async fn set_state(
        &self,
        projection: ProjectionName,
        state: &str,
    ) -> Result<(), ReadModelError> {
        let set = sqlx::query(
            "INSERT INTO projection_checkpoints (projection, state, state_updated_at) \
             VALUES (?1, ?2, ?3) ON CONFLICT (projection) DO UPDATE \
             SET state = excluded.state, state_updated_at = excluded.state_updated_at",
        )
        .bind(projection.as_str())
        .bind(state)
        .bind(now());
        write_one(&self.pool, set).await.map_err(db)?;
        Ok(())
    }

    async fn start_rebuild(&self, projection: ProjectionName) -> Result<(), ReadModelError> {
        rebuild::start(&self.pool, projection).await
    }

    async fn finish_rebuild(
        &self,
        projection: ProjectionName,
        also: &dyn RebuildSwap,
    ) -> Result<bool, ReadModelError> {
        rebuild::finish(&self.pool, projection, also).await
    }

    async fn abandon_rebuild(&self, projection: ProjectionName) -> Result<(), ReadModelError> {
        rebuild::abandon(&self.pool, projection).await
    }

    async fn dead_letters(
        &self,
        projection: Option<ProjectionName>,
    ) -> Result<Vec<DeadLetter>, ReadModelError> {
        let rows = sqlx::query(
            "SELECT * FROM projection_dead_letters \
             WHERE ?1 IS NULL OR projection = ?1 ORDER BY projection, global_position",
        )
        .bind(projection.map(ProjectionName::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::dead_letter_of).collect()
    }
}
