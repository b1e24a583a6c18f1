//! The HTTP routes, one module per resource, and the router that assembles them.

pub mod accounts;
pub mod common;
pub mod health;
pub mod openapi;
pub mod orders;
