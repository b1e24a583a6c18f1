//! The service on this machine: `db` migrates the development database, `dev` runs `strata-web`.

use std::path::Path;

use crate::postgres::{self, DEV_DATABASE_URL};
use crate::process::{cargo, run};

/// `cargo xtask db`: create the development database if missing and apply the migrations.
pub fn db(root: &Path) -> anyhow::Result<()> {
    let url = postgres::database_url_or(DEV_DATABASE_URL);
    postgres::ensure_reachable(&url)?;
    migrate(root, &url)
}

/// `cargo xtask dev`: migrate, then serve in development mode until interrupted.
pub fn dev(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    let url = postgres::database_url_or(DEV_DATABASE_URL);
    postgres::ensure_reachable(&url)?;
    // Serving migrates too, but `migrate` also creates the database when it is missing.
    migrate(root, &url)?;
    run(cargo(root)
        .args(["run", "--package", "strata-web", "--", "--dev"])
        .args(extra)
        .env("DATABASE_URL", &url))
}

fn migrate(root: &Path, url: &str) -> anyhow::Result<()> {
    run(cargo(root)
        .args(["run", "--package", "strata-web", "--", "migrate"])
        .env("DATABASE_URL", url))
}
