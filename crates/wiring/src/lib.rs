//! `strata-wiring`: turns the storage settings the binaries read (`DATABASE_URL`,
//! `STRATA_DATA_DIR`, `ELASTICSEARCH_URL`, and the projector's `STRATA_NATS_*`) into the ports
//! they use — the event and snapshot stores, the read models, the projection store, leases and
//! wake-ups, the search index, the broker's publisher — and runs the storage's own operations
//! (migrate, backup, roles, closing the SQLite files). It is the only crate that names adapters
//! (`cargo xtask tidy` checks it, decision 0015); its API shows ports, application types and its
//! own, never an adapter's.
#![forbid(unsafe_code)]

mod backend;
mod backup;
mod database;
mod error;
mod publisher;
mod roles;
mod storage;

pub use backend::{Backend, SQLITE_LINGER, StorageFiles, Stores, elasticsearch};
pub use backup::backup;
pub use database::{Database, migrate};
pub use error::{Cause, WiringError};
pub use publisher::{PublisherSettings, publisher};
pub use roles::{RolesStep, roles};
pub use storage::{SQLITE_FILE, SecretUrl, Storage, StorageError};
