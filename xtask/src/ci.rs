//! `cargo xtask ci`: the checks CI runs, in order, stopping at the first failure (CI itself is
//! `.ci/run`, which first starts PostgreSQL and installs the test tools).

use std::path::Path;

use crate::process::{cargo, run};
use crate::{contract, suite, tidy};

/// Format check, clippy, tidy, the test suite, then schemathesis against the API's document; the
/// first failure stops the run.
pub fn run_all(root: &Path) -> anyhow::Result<()> {
    run(cargo(root).args(["fmt", "--all", "--", "--check"]))?;
    run(cargo(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("==> cargo xtask tidy");
    tidy::run(root)?;
    eprintln!("==> cargo xtask test");
    suite::run(root, &[])?;
    eprintln!("==> cargo xtask contract");
    contract::run(root)
}
