//! Integration tests of the PostgreSQL adapters, one fresh migrated database per test
//! (`#[sqlx::test]`, with `DATABASE_URL` pointing at a server whose role may create databases).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod concurrency;
mod conformance;
mod errors;
mod expected_version;
mod helpers;
mod idempotency;
mod immutability;
mod ordering;
mod read_models;
mod reads;
mod search;
mod upgrade;
