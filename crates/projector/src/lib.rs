//! `strata-projector`: keeps the read models up to date from the global event log (`run`),
//! reports on them (`status`), rebuilds them without downtime (`rebuild`) and manages the events
//! they parked (`dlq`). `follow` prints the log as JSON lines.
#![forbid(unsafe_code)]

pub mod console;
pub mod follow;
pub mod metrics;
pub mod report;
pub mod settings;
pub mod startup;
