//! The projections this adapter stores, with the tables of each, the row key of their
//! checkpoints and dead letters, and the lock on a checkpoint row that a batch and a rebuild's
//! swap hold until they commit. Shared by every room of the read side.

use sqlx::PgConnection;
use strata_ports::{Generation, ReadModelError};

use crate::error::read_model_error;
use crate::rows::to_u64;

/// The tables of each projection, in the order a rebuild copies and swaps them.
const PROJECTIONS: &[(&str, &[&str])] = &[
    ("orders", &["order_summaries", "customer_stats"]),
    ("accounts", &["account_summaries", "account_transactions"]),
    // The search index lives behind the `SearchIndex` port; only its checkpoint and dead
    // letters are here.
    ("search", &[]),
];

pub(crate) fn tables_of(projection: &str) -> Result<&'static [&'static str], ReadModelError> {
    PROJECTIONS
        .iter()
        .find(|(name, _)| *name == projection)
        .map(|(_, tables)| *tables)
        .ok_or_else(|| ReadModelError::NotFound(format!("no projection named {projection:?}")))
}

/// The names of the projections this adapter stores.
pub fn projection_names() -> Vec<&'static str> {
    PROJECTIONS.iter().map(|(name, _)| *name).collect()
}

/// The row key of a projection's checkpoint and dead letters in a generation.
pub(crate) fn key(projection: &str, generation: Generation) -> String {
    match generation {
        Generation::Live => projection.to_owned(),
        Generation::Rebuild => format!("{projection}:rebuild"),
    }
}

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
