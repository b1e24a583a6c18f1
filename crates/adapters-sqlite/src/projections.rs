//! The projections this adapter stores, with the tables of each, the row key of their
//! checkpoints and dead letters, and reading and creating a checkpoint row. Shared by every room
//! of the read side.

use sqlx::SqliteConnection;
use strata_ports::{Generation, ReadModelError};
use time::OffsetDateTime;

use crate::codec::micros;
use crate::error::read_model_error;
use crate::rows::to_u64;

/// The tables of each projection, as on PostgreSQL.
const PROJECTIONS: &[(&str, &[&str])] = &[
    ("orders", &["order_summaries", "customer_stats"]),
    ("accounts", &["account_summaries", "account_transactions"]),
    // The search index lives behind the `SearchIndex` port; only its checkpoint and dead
    // letters are here.
    ("search", &[]),
];

/// The names of the projections this adapter stores.
pub fn projection_names() -> Vec<&'static str> {
    PROJECTIONS.iter().map(|(name, _)| *name).collect()
}

pub(crate) fn tables_of(projection: &str) -> Result<&'static [&'static str], ReadModelError> {
    PROJECTIONS
        .iter()
        .find(|(name, _)| *name == projection)
        .map(|(_, tables)| *tables)
        .ok_or_else(|| ReadModelError::NotFound(format!("no projection named {projection:?}")))
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
