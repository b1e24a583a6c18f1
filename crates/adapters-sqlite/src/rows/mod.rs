//! Read-model rows to and from SQLite columns (see `codec` for how values are stored). A row that
//! breaks the model's rules is `Corrupt`: stored data is never guessed at. Each read model has a
//! module here with its rows' codecs and its batch and query impls ([`orders`], [`accounts`]);
//! this one holds the column readers they share and the rows of the projections' bookkeeping
//! (dead letters, checkpoints).

mod accounts;
mod orders;

use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use strata_ports::{CheckpointRow, DeadLetter, Metadata, ReadModelError, RecordedEvent, StreamId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::codec;

fn corrupt(error: impl std::fmt::Display) -> ReadModelError {
    ReadModelError::Corrupt(error.to_string())
}

pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, ReadModelError> {
    codec::to_i64(value, what).map_err(ReadModelError::Backend)
}

pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, ReadModelError> {
    codec::to_u64(value, what).map_err(ReadModelError::Corrupt)
}

fn text(row: &SqliteRow, name: &str) -> Result<String, ReadModelError> {
    row.try_get(name).map_err(corrupt)
}

fn optional_text(row: &SqliteRow, name: &str) -> Result<Option<String>, ReadModelError> {
    row.try_get(name).map_err(corrupt)
}

fn int(row: &SqliteRow, name: &str) -> Result<i64, ReadModelError> {
    row.try_get(name).map_err(corrupt)
}

fn count(row: &SqliteRow, name: &str) -> Result<u64, ReadModelError> {
    to_u64(int(row, name)?, name)
}

fn id(row: &SqliteRow, name: &str) -> Result<Uuid, ReadModelError> {
    codec::uuid(&text(row, name)?).map_err(ReadModelError::Corrupt)
}

pub(crate) fn instant(row: &SqliteRow, name: &str) -> Result<OffsetDateTime, ReadModelError> {
    codec::instant(int(row, name)?).map_err(ReadModelError::Corrupt)
}

pub(crate) fn optional_instant(
    row: &SqliteRow,
    name: &str,
) -> Result<Option<OffsetDateTime>, ReadModelError> {
    let micros: Option<i64> = row.try_get(name).map_err(corrupt)?;
    micros
        .map(|m| codec::instant(m).map_err(ReadModelError::Corrupt))
        .transpose()
}

fn json_of(row: &SqliteRow, name: &str) -> Result<Value, ReadModelError> {
    codec::json(&text(row, name)?).map_err(ReadModelError::Corrupt)
}

pub(crate) fn dead_letter_of(row: &SqliteRow) -> Result<DeadLetter, ReadModelError> {
    let metadata: Metadata = serde_json::from_value(json_of(row, "metadata")?)
        .map_err(|e| corrupt(format!("dead letter metadata: {e}")))?;
    let event = RecordedEvent {
        event_id: id(row, "event_id")?,
        stream_id: StreamId::parse(&text(row, "stream_id")?).map_err(corrupt)?,
        stream_version: count(row, "stream_version")?,
        global_position: count(row, "global_position")?,
        event_type: text(row, "event_type")?,
        schema_version: u32::try_from(int(row, "schema_version")?)
            .map_err(|_| corrupt("schema version out of range"))?,
        data: json_of(row, "data")?,
        metadata,
        recorded_at: instant(row, "recorded_at")?,
    };
    let blocked_by: Option<i64> = row.try_get("blocked_by").map_err(corrupt)?;
    Ok(DeadLetter {
        projection: text(row, "projection")?,
        event,
        error: text(row, "error")?,
        attempts: u32::try_from(int(row, "attempts")?)
            .map_err(|_| corrupt("attempts out of range"))?,
        blocked_by: blocked_by.map(|p| to_u64(p, "position")).transpose()?,
        parked_at: instant(row, "parked_at")?,
    })
}

pub(crate) fn checkpoint_row_of(row: &SqliteRow) -> Result<CheckpointRow, ReadModelError> {
    Ok(CheckpointRow {
        projection: text(row, "projection")?,
        position: count(row, "position")?,
        updated_at: optional_instant(row, "updated_at")?,
        position_recorded_at: optional_instant(row, "position_recorded_at")?,
        dead_letters: count(row, "dead_letters")?,
        state: optional_text(row, "state")?,
        state_updated_at: optional_instant(row, "state_updated_at")?,
    })
}
