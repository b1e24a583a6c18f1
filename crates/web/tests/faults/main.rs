//! The fault suite: faults an operator and an attacker would cause, each under a command load
//! whose clients retry every unknown outcome with the same `Idempotency-Key` — `strata-web`
//! killed with SIGKILL and started again, PostgreSQL restarted and stopped on a private
//! cluster. After each: no client saw a 500 or a 503 without `Retry-After`, or waited past the
//! request deadline; every acknowledged command is in the log exactly once; positions are dense
//! and versions contiguous; a retry gets the original acknowledgement; the read models
//! converge. (The projector killed mid-catch-up is in `crates/projector/tests/faults.rs`.)
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod checks;
mod cluster;
mod load;
mod postgres_restarted;
mod support;
mod web_killed;
