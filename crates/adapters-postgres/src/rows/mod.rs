//! Read-model rows to and from PostgreSQL columns. A row that breaks the model's rules is
//! `Corrupt`: stored data is never guessed at. Each read model has a module here with its rows'
//! codecs and its batch and query impls ([`orders`], [`accounts`]); this one holds the
//! conversions they share and the dead letters' rows.

mod accounts;
mod orders;

use sqlx::Row;
use strata_ports::{DeadLetter, Metadata, ReadModelError, RecordedEvent, StreamId};

pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, ReadModelError> {
    i64::try_from(value).map_err(|_| ReadModelError::Backend(format!("{what} {value} too large")))
}

pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, ReadModelError> {
    u64::try_from(value).map_err(|_| ReadModelError::Corrupt(format!("negative {what} {value}")))
}

pub(crate) fn corrupt(error: sqlx::Error) -> ReadModelError {
    ReadModelError::Corrupt(error.to_string())
}

pub(crate) fn dead_letter_of(row: &sqlx::postgres::PgRow) -> Result<DeadLetter, ReadModelError> {
    let get = |e: sqlx::Error| ReadModelError::Corrupt(e.to_string());
    let metadata: Metadata = serde_json::from_value(row.try_get("metadata").map_err(get)?)
        .map_err(|e| ReadModelError::Corrupt(format!("dead letter metadata: {e}")))?;
    let stream_id: String = row.try_get("stream_id").map_err(get)?;
    let event = RecordedEvent {
        event_id: row.try_get("event_id").map_err(get)?,
        stream_id: StreamId::parse(&stream_id)
            .map_err(|e| ReadModelError::Corrupt(e.to_string()))?,
        stream_version: to_u64(row.try_get("stream_version").map_err(get)?, "version")?,
        global_position: to_u64(row.try_get("global_position").map_err(get)?, "position")?,
        event_type: row.try_get("event_type").map_err(get)?,
        schema_version: u32::try_from(row.try_get::<i32, _>("schema_version").map_err(get)?)
            .map_err(|_| ReadModelError::Corrupt("negative schema version".into()))?,
        data: row.try_get("data").map_err(get)?,
        metadata,
        recorded_at: row.try_get("recorded_at").map_err(get)?,
    };
    let blocked_by: Option<i64> = row.try_get("blocked_by").map_err(get)?;
    Ok(DeadLetter {
        projection: row.try_get("projection").map_err(get)?,
        event,
        error: row.try_get("error").map_err(get)?,
        attempts: u32::try_from(row.try_get::<i32, _>("attempts").map_err(get)?)
            .map_err(|_| ReadModelError::Corrupt("negative attempts".into()))?,
        blocked_by: blocked_by.map(|p| to_u64(p, "position")).transpose()?,
        parked_at: row.try_get("parked_at").map_err(get)?,
    })
}
