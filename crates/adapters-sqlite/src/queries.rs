//! `SqliteReadModels`: the read side's queries. Each answer carries the projection's checkpoint,
//! read just before the rows: the rows reflect at least that position (they commit together,
//! and are read later). The read models' own queries are in [`crate::rows`].

use async_trait::async_trait;
use sqlx::SqlitePool;
use strata_ports::{CheckpointRow, Positioned, ProjectionName, ReadModelError, ReadModels};

use crate::checkpoints::{checkpoint_of, db};
use crate::rows;

/// The read models' queries on a SQLite pool.
#[derive(Debug, Clone)]
pub struct SqliteReadModels {
    pub(crate) pool: SqlitePool,
}

impl SqliteReadModels {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    async fn checkpoint(&self, projection: ProjectionName) -> Result<u64, ReadModelError> {
        Ok(checkpoint_of(&self.pool, projection.as_str())
            .await?
            .unwrap_or(0))
    }

    pub(crate) async fn positioned<T>(
        &self,
        projection: ProjectionName,
        rows: impl std::future::Future<Output = Result<T, ReadModelError>>,
    ) -> Result<Positioned<T>, ReadModelError> {
        let position = self.checkpoint(projection).await?;
        Ok(Positioned {
            value: rows.await?,
            position,
        })
    }
}

#[async_trait]
impl ReadModels for SqliteReadModels {
    async fn position(&self, projection: ProjectionName) -> Result<u64, ReadModelError> {
        self.checkpoint(projection).await
    }

    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, ReadModelError> {
        let rows = sqlx::query(
            "SELECT c.projection, c.position, c.updated_at, c.state, c.state_updated_at, \
                    (SELECT e.recorded_at FROM events e WHERE e.global_position = c.position) \
                        AS position_recorded_at, \
                    (SELECT count(*) FROM projection_dead_letters d \
                      WHERE d.projection = c.projection) AS dead_letters \
             FROM projection_checkpoints c ORDER BY c.projection",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::checkpoint_row_of).collect()
    }

    async fn oldest_open_transaction_age(&self) -> Result<Option<f64>, ReadModelError> {
        // SQLite keeps no record of other connections' transactions. A long one cannot hold
        // readers back here anyway: positions follow commit order without a visibility horizon.
        Ok(None)
    }
}
