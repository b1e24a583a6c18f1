//! `PgProjectionStore`: the read models' storage on PostgreSQL. A batch ([`crate::batch`]) is
//! one transaction that holds the projection's checkpoint row from its first statement to its
//! commit; a rebuild ([`crate::rebuild`]) fills copies of the tables in a schema of its own.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, PgPool};
use strata_ports::{
    DeadLetter, Generation, ProjectionBatch, ProjectionName, ProjectionStore, ReadModelError,
    RebuildSwap,
};

use crate::batch::PgBatch;
use crate::checkpoints::{db, lock_checkpoint};
use crate::rebuild::{self, rebuild_schema};
use crate::rows::dead_letter_of;

/// The read models' storage on a PostgreSQL pool (migrated with [`crate::migrate`]).
#[derive(Debug, Clone)]
pub struct PgProjectionStore {
    pool: PgPool,
}

impl PgProjectionStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl ProjectionStore for PgProjectionStore {
    async fn begin(
        &self,
        projection: ProjectionName,
        generation: Generation,
    ) -> Result<Box<dyn ProjectionBatch>, ReadModelError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        if generation == Generation::Rebuild {
            // Without its schema the search path would silently fall back to the live tables.
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                    .bind(rebuild_schema(projection))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
            if !exists {
                return Err(ReadModelError::NotFound(format!(
                    "no rebuild of {projection} in progress"
                )));
            }
            let sql = format!(
                "SET LOCAL search_path TO {}, public",
                rebuild_schema(projection)
            );
            sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let key = projection.key(generation);
        let checkpoint = lock_checkpoint(&mut tx, &key).await?;
        Ok(Box::new(PgBatch {
            tx,
            key,
            checkpoint,
        }))
    }

    async fn set_state(
        &self,
        projection: ProjectionName,
        state: &str,
    ) -> Result<(), ReadModelError> {
        sqlx::query(
            "INSERT INTO public.projection_checkpoints (projection, state, state_updated_at) \
             VALUES ($1, $2, now()) ON CONFLICT (projection) DO UPDATE \
             SET state = EXCLUDED.state, state_updated_at = EXCLUDED.state_updated_at",
        )
        .bind(projection.as_str())
        .bind(state)
        .execute(&self.pool)
        .await
        .map_err(db)?;
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
            "SELECT * FROM public.projection_dead_letters \
             WHERE $1::text IS NULL OR projection = $1 ORDER BY projection, global_position",
        )
        .bind(projection.map(ProjectionName::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(dead_letter_of).collect()
    }
}
