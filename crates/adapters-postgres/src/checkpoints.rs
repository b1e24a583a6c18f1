//! The lock on a projection's checkpoint row that a batch and a rebuild's swap hold until they
//! commit, shared by every room of the read side (the projections, their tables and row keys
//! are `strata_ports::ProjectionName`'s).

use sqlx::PgConnection;
use strata_ports::ReadModelError;

use crate::error::read_model_error;
use crate::rows::to_u64;

/// A driver error as the read side's port error.
pub(crate) fn db(error: sqlx::Error) -> ReadModelError {
    read_model_error(&error)
}

const CREATE_CHECKPOINT: &str = "\
    INSERT INTO public.projection_checkpoints (projection) VALUES ($1) \
    ON CONFLICT (projection) DO NOTHING";

const LOCK_CHECKPOINT: &str =
    "SELECT position FROM public.projection_checkpoints WHERE projection = $1 FOR UPDATE";

/// Locks (creating if missing) the checkpoint row of `key` in `conn`'s transaction. A
/// concurrent creator makes the INSERT wait for its commit; the SELECT, a new snapshot, then
/// sees the row either way.
pub(crate) async fn lock_checkpoint(
    conn: &mut PgConnection,
    key: &str,
) -> Result<u64, ReadModelError> {
    sqlx::query(CREATE_CHECKPOINT)
        .bind(key)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let position: i64 = sqlx::query_scalar(LOCK_CHECKPOINT)
        .bind(key)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    to_u64(position, "checkpoint")
}
