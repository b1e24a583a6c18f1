//! Strata's use cases, written against the ports only: command handling (authorisation,
//! optimistic concurrency with bounded retries, idempotency, snapshots, upcasting), history
//! queries (audit trail, time travel), the projections that build the read models and the
//! queries they serve.
#![forbid(unsafe_code)]

pub mod access;
mod cache;
pub mod command;
mod error;
pub mod history;
pub mod log_feed;
pub mod metrics;
pub mod projection;
pub mod queries;
pub mod rehydrate;
pub mod status;
mod wait;

pub use access::{Owned, Principal, Role};
pub use command::{CommandAck, CommandConfig, CommandContext, CommandService, Target};
pub use error::{CommandError, QueryError};
pub use history::{AsOf, HistoryService};
pub use log_feed::{LiveLog, LogFeed, LogPage, LogQuery};
pub use queries::{Page, QueryConfig, QueryService, SearchResults};
pub use rehydrate::{LoadError, Loaded, Rehydrator};
pub use status::{ProjectionStatus, StatusService};
