//! `strata-web`: Strata's HTTP API on axum. Thin handlers convert DTOs into domain commands and
//! call the application services, and answer queries from the read models; `startup` wires
//! them over the ports `strata-wiring` opens (and can run the projection workers in-process).
#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
pub mod extract;
pub mod limits;
pub mod metrics;
pub mod request_id;
pub mod routes;
pub mod security;
pub mod serve;
pub mod settings;
pub mod startup;
pub mod state;
pub mod subscriptions;
pub mod telemetry;

pub use settings::{Cli, Command, RolesAction, Settings};
pub use startup::Application;
// The storage the settings name, and the stores `Application::with_stores` takes.
pub use strata_wiring::{Storage, Stores};
