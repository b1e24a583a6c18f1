//! `cargo xtask ci`: the checks CI runs, in order, stopping at the first failure (CI itself is
//! `.ci/run`, which first starts PostgreSQL and installs the test tools).

use std::path::Path;

use crate::process::{cargo, run};
use crate::{suite, tidy};

/// Format check, clippy, tidy, then the test suite; the first failure stops the run.
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
    suite::run(root, &[])
}
