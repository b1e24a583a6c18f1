//! The HTTP routes, one module per resource (commands and queries of a resource apart), and the
//! router that assembles them.

pub mod account_queries;
pub mod accounts;
pub mod common;
pub mod events;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod order_queries;
pub mod orders;
pub mod projections;
pub mod search;
