//! How values are stored in SQLite: instants as INTEGER microseconds since the Unix epoch (UTC,
//! PostgreSQL's precision, and an order that sorts), UUIDs as hyphenated TEXT, JSON as TEXT.
//! Decoding errors are plain text; each port wraps them in its own "corrupt" variant.

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// The stored form of an instant (sub-microsecond digits are dropped, as PostgreSQL does).
pub(crate) fn micros(instant: OffsetDateTime) -> i64 {
    i64::try_from(instant.unix_timestamp_nanos().div_euclid(1000)).unwrap_or(i64::MAX)
}

pub(crate) fn instant(micros: i64) -> Result<OffsetDateTime, String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map_err(|e| format!("instant {micros}: {e}"))
}

/// The stored form of a UUID: lowercase hyphenated text, which sorts as the bytes do.
pub(crate) fn text_id(id: Uuid) -> String {
    id.hyphenated().to_string()
}

pub(crate) fn uuid(text: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text).map_err(|e| format!("uuid {text:?}: {e}"))
}

pub(crate) fn json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("json: {e}"))
}

/// A count, version or position as SQLite stores it (a signed 64-bit integer).
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("{what} {value} too large to store"))
}

pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("negative {what} {value}"))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn instants_round_trip_at_microsecond_precision() {
        let at = datetime!(2026-11-02 09:30:00.123456 UTC);
        assert_eq!(instant(micros(at)).unwrap(), at);
        let finer = datetime!(2026-11-02 09:30:00.123456789 UTC);
        assert_eq!(instant(micros(finer)).unwrap(), at);
    }

    #[test]
    fn stored_instants_sort_as_time_does() {
        let earlier = datetime!(1969-12-31 23:59:59.5 UTC);
        let later = datetime!(1970-01-01 00:00:00.25 UTC);
        assert!(micros(earlier) < micros(later));
    }
}
