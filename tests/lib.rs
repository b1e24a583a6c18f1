//! Shared helpers for the end-to-end suite live in `api/helpers.rs`.
