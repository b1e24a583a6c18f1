//! The conformance suite of the ports (feature `testkit`): the behaviours every adapter must
//! show, as plain async functions that each adapter's own tests run against a real backend
//! (PostgreSQL, SQLite, Elasticsearch), so that the adapters cannot drift apart. A behaviour that
//! differs between adapters is a bug in one of them.

pub mod event_store;
pub mod read_models;
pub mod snapshots;

pub use crate::search_suite as search;
