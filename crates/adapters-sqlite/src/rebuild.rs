//! Rebuilds on SQLite: they fill copies of a projection's tables named `rebuild_<table>`,
//! created from the live tables' own definitions; the swap copies them over the live tables and
//! drops them, in one transaction (readers, in WAL mode, see the old rows until it commits). The
//! copy makes the swap's cost grow with the table, which suits the single-node sizes SQLite
//! serves; PostgreSQL renames instead.

use sqlx::{AssertSqlSafe, SqlitePool};
use strata_ports::{Generation, ProjectionName, ReadModelError, RebuildSwap};

use crate::checkpoints::{checkpoint_of, db, ensure_checkpoint, now};
use crate::rows::to_i64;
use crate::write::{begin_write, execute_all};

/// Creates empty copies of the tables of `projection`, and resets the rebuild's checkpoint and
/// dead letters.
pub(crate) async fn start(
    pool: &SqlitePool,
    projection: ProjectionName,
) -> Result<(), ReadModelError> {
    let tables = projection.tables();
    let rebuild = projection.key(Generation::Rebuild);
    let mut tx = begin_write(pool).await.map_err(db)?;
    for table in tables {
        let definition: Option<String> =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1")
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

/// Copies the rebuilt tables of `projection` over the live ones, once the rebuild has caught up
/// with the live checkpoint (`false`, changing nothing, until then).
pub(crate) async fn finish(
    pool: &SqlitePool,
    projection: ProjectionName,
    also: &dyn RebuildSwap,
) -> Result<bool, ReadModelError> {
    let tables = projection.tables();
    let live = projection.key(Generation::Live);
    let rebuild = projection.key(Generation::Rebuild);
    // The write lock keeps the live worker between two batches until the swap commits.
    let mut tx = begin_write(pool).await.map_err(db)?;
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

/// Drops the rebuild tables of `projection` with the rebuild's checkpoint and dead letters.
pub(crate) async fn abandon(
    pool: &SqlitePool,
    projection: ProjectionName,
) -> Result<(), ReadModelError> {
    let tables = projection.tables();
    let rebuild = projection.key(Generation::Rebuild);
    let mut tx = begin_write(pool).await.map_err(db)?;
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
