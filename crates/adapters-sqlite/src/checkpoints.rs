//! Reading and creating a projection's checkpoint row, shared by every room of the read side
//! (the projections, their tables and row keys are `strata_ports::ProjectionName`'s).

use sqlx::SqliteConnection;
use strata_ports::ReadModelError;
use time::OffsetDateTime;

use crate::codec::micros;
use crate::error::read_model_error;
use crate::rows::to_u64;

/// A driver error as the read side's port error.
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
pub(crate) async fn ensure_checkpoint(
    conn: &mut SqliteConnection,
    key: &str,
) -> Result<u64, ReadModelError> {
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

pub(crate) fn now() -> i64 {
    micros(OffsetDateTime::now_utc())
}
