//! What the storage ports accept of text that came from outside, checked by every adapter before
//! it builds a statement: no NUL (PostgreSQL refuses it in text and jsonb, SQLite's FTS5 in a
//! query) and no value longer than the storage can index (a B-tree entry of PostgreSQL holds at
//! most 2,704 bytes). The HTTP edge refuses far more, and earlier; this is the last line, so a
//! caller that skipped the edge gets a typed refusal instead of a driver error.

/// Longest principal (a token's `sub`) an idempotency record or an event's metadata holds.
pub const MAX_PRINCIPAL_BYTES: usize = 256;

/// Longest idempotency key. With [`MAX_PRINCIPAL_BYTES`], the key of an idempotency record
/// (principal, key) stays far below any index's entry limit.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 200;

/// Longest identifier a read model or the search index is asked for (a customer id, a status).
pub const MAX_LOOKUP_BYTES: usize = 256;

/// Longest search text, in bytes (the edge allows 200 characters, up to 4 bytes each).
pub const MAX_SEARCH_TEXT_BYTES: usize = 1024;

/// A value refused before it reached the storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct InputError {
    pub field: &'static str,
    pub problem: &'static str,
}

/// Checks one value: no NUL character, at most `max_bytes` bytes.
///
/// # Errors
/// [`InputError`] naming the field and what is wrong with it.
pub fn check_text(field: &'static str, value: &str, max_bytes: usize) -> Result<(), InputError> {
    if value.contains('\0') {
        return Err(InputError {
            field,
            problem: "contains a NUL character",
        });
    }
    if value.len() > max_bytes {
        return Err(InputError {
            field,
            problem: "is longer than the storage accepts",
        });
    }
    Ok(())
}

/// Checks an optional value as [`check_text`] does.
///
/// # Errors
/// As [`check_text`].
pub fn check_optional(
    field: &'static str,
    value: Option<&str>,
    max_bytes: usize,
) -> Result<(), InputError> {
    value.map_or(Ok(()), |v| check_text(field, v, max_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_and_oversized_values_are_refused_and_others_pass() {
        assert!(check_text("key", "abc", 3).is_ok());
        assert!(check_text("key", "", 3).is_ok());
        assert_eq!(
            check_text("key", "a\0b", 10).unwrap_err().to_string(),
            "key contains a NUL character"
        );
        assert!(check_text("key", "abcd", 3).is_err());
        // Bytes, not characters: an index limits bytes.
        assert!(check_text("key", "éé", 3).is_err());
    }
}
