//! Strata's use cases, written against the ports only: command handling (authorisation,
//! optimistic concurrency with bounded retries, idempotency, snapshots, upcasting) and history
//! queries (audit trail, time travel).
#![forbid(unsafe_code)]

pub mod access;
pub mod command;
pub mod history;
pub mod rehydrate;

pub use access::{Owned, Principal, Role};
pub use command::{
    CommandAck, CommandConfig, CommandContext, CommandError, CommandService, Target,
};
pub use history::{AsOf, HistoryService};
pub use rehydrate::{LoadError, Loaded, Rehydrator};
