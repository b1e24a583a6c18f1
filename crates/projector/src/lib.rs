//! `strata-projector`: follows the global event log from a position, in order, without skipping
//! or repeating an event. For now it prints each event as a JSON line; the read-side work turns
//! it into the projection worker.
#![forbid(unsafe_code)]

pub mod follow;
pub mod startup;
