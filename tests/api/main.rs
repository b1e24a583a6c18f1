//! End-to-end tests of the HTTP API: a real server, a fresh PostgreSQL database per test, real
//! JWTs. Run with `cargo xtask test` (needs PostgreSQL at `DATABASE_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod auth;
mod concurrency;
mod contract;
mod edge;
mod events;
mod health;
mod helpers;
mod history;
mod hostile;
mod idempotency;
mod limits;
mod metrics;
mod orders;
mod pagination;
mod queries;
mod read_your_writes;
mod readme;
mod search;
mod shutdown;
mod surface;
mod validation;
