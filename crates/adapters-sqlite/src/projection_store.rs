//! `SqliteProjectionStore`: a batch is one `BEGIN IMMEDIATE` transaction, so it holds the
//! database's write lock — and with it the projection's checkpoint — from its first statement to
//! its commit: a second worker's batch waits, and the read-model changes, dead letters and
//! checkpoint commit together or not at all.
//!
//! Rebuilds fill copies of a projection's tables named `rebuild_<table>`, created from the live
//! tables' own definitions; the swap copies them over the live tables and drops them, in one
//! transaction (readers, in WAL mode, see the old rows until it commits). The copy makes the
//! swap's cost grow with the table, which suits the single-node sizes SQLite serves; PostgreSQL
//! renames instead.

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, SqliteConnection, SqlitePool};
use strata_ports::{
    DeadLetter, Generation, ProjectionBatch, ProjectionName, ProjectionStore, ReadModelError,
    RebuildSwap,
};
use time::OffsetDateTime;

use crate::codec::{self, micros};
use crate::error::read_model_error;
use crate::rows::{self, to_i64, to_u64};
use crate::write::{WriteTx, begin_write, execute_all, write_one};

/// What a generation's table names start with.
fn prefix(generation: Generation) -> &'static str {
    match generation {
        Generation::Live => "",
        Generation::Rebuild => "rebuild_",
    }
}

pub(crate) fn db(error: sqlx::Error) -> ReadModelError {
    read_model_error(&error)
}

/// The checkpoint of `key` (a projection's, or its rebuild's), if it has one.
pub(crate) async fn checkpoint_of<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    key: &str,
) -> Result<Option<u64>, ReadModelError> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE projection = ?1")
            .bind(key)
            .fetch_optional(executor)
            .await
            .map_err(db)?;
    position.map(|p| to_u64(p, "checkpoint")).transpose()
}

/// The checkpoint of `key`, created at 0 when missing (the caller holds the write lock).
async fn ensure_checkpoint(conn: &mut SqliteConnection, key: &str) -> Result<u64, ReadModelError> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection) VALUES (?1) \
         ON CONFLICT (projection) DO NOTHING",
    )
    .bind(key)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(checkpoint_of(&mut *conn, key).await?.unwrap_or(0))
}

fn now() -> i64 {
    micros(OffsetDateTime::now_utc())
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

    async fn write(&self) -> Result<WriteTx, ReadModelError> {
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
        let tables = projection.tables();
        let rebuild = projection.key(Generation::Rebuild);
        let mut tx = self.write().await?;
        for table in tables {
            let definition: Option<String> = sqlx::query_scalar(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
            )
            .bind(table)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            // The migrations write `CREATE TABLE <name> (`; anything else is not ours to copy.
            let live_head = format!("CREATE TABLE {table} (");
            let copy = definition
                .as_deref()
                .and_then(|sql| sql.strip_prefix(&live_head))
                .map(|rest| format!("CREATE TABLE rebuild_{table} ({rest}"))
                .ok_or_else(|| {
                    ReadModelError::Backend(format!("unexpected definition of table {table}"))
                })?;
            execute_all(
                &mut tx,
                [format!("DROP TABLE IF EXISTS rebuild_{table}"), copy],
            )
            .await
            .map_err(db)?;
        }
        sqlx::query("DELETE FROM projection_dead_letters WHERE projection = ?1")
            .bind(&rebuild)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO projection_checkpoints (projection, position, updated_at) \
             VALUES (?1, 0, ?2) ON CONFLICT (projection) DO UPDATE \
             SET position = 0, updated_at = excluded.updated_at",
        )
        .bind(&rebuild)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn finish_rebuild(
        &self,
        projection: ProjectionName,
        also: &dyn RebuildSwap,
    ) -> Result<bool, ReadModelError> {
        let tables = projection.tables();
        let live = projection.key(Generation::Live);
        let rebuild = projection.key(Generation::Rebuild);
        // The write lock keeps the live worker between two batches until the swap commits.
        let mut tx = self.write().await?;
        let live_position = ensure_checkpoint(&mut tx, &live).await?;
        let rebuilt_position = checkpoint_of(&mut *tx, &rebuild).await?.ok_or_else(|| {
            ReadModelError::NotFound(format!("no rebuild of {projection} in progress"))
        })?;
        if rebuilt_position < live_position {
            return Ok(false);
        }
        for table in tables {
            execute_all(
                &mut tx,
                [
                    format!("DELETE FROM {table}"),
                    format!("INSERT INTO {table} SELECT * FROM rebuild_{table}"),
                    format!("DROP TABLE rebuild_{table}"),
                ],
            )
            .await
            .map_err(db)?;
        }
        // The live dead letters belong to the replaced rows; the rebuild's take their place.
        sqlx::query("DELETE FROM projection_dead_letters WHERE projection = ?1")
            .bind(&live)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("UPDATE projection_dead_letters SET projection = ?1 WHERE projection = ?2")
            .bind(&live)
            .bind(&rebuild)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "UPDATE projection_checkpoints SET position = ?2, updated_at = ?3 \
             WHERE projection = ?1",
        )
        .bind(&live)
        .bind(to_i64(rebuilt_position, "checkpoint")?)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM projection_checkpoints WHERE projection = ?1")
            .bind(&rebuild)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // Last, so that a failure here still rolls everything above back.
        also.swap().await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn abandon_rebuild(&self, projection: ProjectionName) -> Result<(), ReadModelError> {
        let tables = projection.tables();
        let rebuild = projection.key(Generation::Rebuild);
        let mut tx = self.write().await?;
        let drops: Vec<String> = tables
            .iter()
            .map(|table| format!("DROP TABLE IF EXISTS rebuild_{table}"))
            .collect();
        execute_all(&mut tx, drops).await.map_err(db)?;
        for table in ["projection_dead_letters", "projection_checkpoints"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE projection = ?1"
            )))
            .bind(&rebuild)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
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

/// One batch: a write transaction, and the generation's table prefix. The read models' rows
/// are written by the impls in [`crate::rows`].
pub(crate) struct SqliteBatch {
    pub(crate) tx: WriteTx,
    key: String,
    checkpoint: u64,
    prefix: &'static str,
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
