//! `PgReadModels`: the read side's queries on PostgreSQL. Each answer carries the projection's
//! checkpoint, read just before the rows: the rows reflect at least that position (they commit
//! together, and are read later). The read models' own queries are in [`crate::rows`].

use async_trait::async_trait;
use sqlx::{PgPool, Row};
use strata_ports::{CheckpointRow, Positioned, ProjectionName, ReadModelError, ReadModels};

use crate::checkpoints::db;
use crate::rows::{corrupt, to_u64};

/// The read models' queries on a PostgreSQL pool.
#[derive(Debug, Clone)]
pub struct PgReadModels {
    pub(crate) pool: PgPool,
}

impl PgReadModels {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn checkpoint(&self, projection: ProjectionName) -> Result<u64, ReadModelError> {
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM public.projection_checkpoints WHERE projection = $1",
        )
        .bind(projection.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        to_u64(position.unwrap_or(0), "checkpoint")
    }
}

/// A query's rows with the checkpoint read just before them: the rows reflect at least that
/// position (the checkpoint and the rows commit together, and the rows are read later).
pub(crate) async fn positioned<T>(
    models: &PgReadModels,
    projection: ProjectionName,
    rows: impl std::future::Future<Output = Result<T, ReadModelError>>,
) -> Result<Positioned<T>, ReadModelError> {
    let position = models.checkpoint(projection).await?;
    Ok(Positioned {
        value: rows.await?,
        position,
    })
}

#[async_trait]
impl ReadModels for PgReadModels {
    async fn position(&self, projection: ProjectionName) -> Result<u64, ReadModelError> {
        self.checkpoint(projection).await
    }

    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, ReadModelError> {
        let rows = sqlx::query(
            "SELECT c.projection, c.position, c.updated_at, c.state, c.state_updated_at, \
                    (SELECT e.recorded_at FROM events e WHERE e.global_position = c.position) \
                        AS position_recorded_at, \
                    (SELECT count(*) FROM public.projection_dead_letters d \
                      WHERE d.projection = c.projection) AS dead_letters \
             FROM public.projection_checkpoints c ORDER BY c.projection",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                Ok(CheckpointRow {
                    projection: row.try_get("projection").map_err(corrupt)?,
                    position: to_u64(row.try_get("position").map_err(corrupt)?, "checkpoint")?,
                    updated_at: row.try_get("updated_at").map_err(corrupt)?,
                    position_recorded_at: row.try_get("position_recorded_at").map_err(corrupt)?,
                    dead_letters: to_u64(row.try_get("dead_letters").map_err(corrupt)?, "count")?,
                    state: row.try_get("state").map_err(corrupt)?,
                    state_updated_at: row.try_get("state_updated_at").map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn oldest_open_transaction_age(&self) -> Result<Option<f64>, ReadModelError> {
        sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM (now() - min(xact_start)))::float8 \
             FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() \
             AND datname = current_database()",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }
}
