//! `cargo xtask test`: the whole test suite against a running PostgreSQL.

use std::path::Path;

use crate::postgres::{self, TEST_DATABASE_URL};
use crate::process::{self, cargo};

/// Runs `cargo test --workspace --no-fail-fast` plus `extra`, with `DATABASE_URL` defaulting to
/// the local server, after checking that the server answers.
pub fn run(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    let url = postgres::database_url_or(TEST_DATABASE_URL);
    postgres::ensure_reachable(&url)?;
    let mut command = cargo(root);
    command.args(["test", "--no-fail-fast"]);
    if !selects_packages(extra) {
        command.arg("--workspace");
    }
    command.args(extra).env("DATABASE_URL", &url);
    process::run(&mut command)
}

/// Whether the extra arguments choose packages themselves (then `--workspace` is left out).
fn selects_packages(extra: &[String]) -> bool {
    extra
        .iter()
        .take_while(|arg| *arg != "--")
        .any(|arg| arg.starts_with("-p") || arg.starts_with("--package"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn package_selection_drops_workspace() {
        assert!(selects_packages(&args(&["-p", "strata-domain"])));
        assert!(selects_packages(&args(&["--package=strata-domain"])));
        assert!(selects_packages(&args(&["-pstrata-domain"])));
    }

    #[test]
    fn test_binary_arguments_do_not_select_packages() {
        assert!(!selects_packages(&args(&[])));
        assert!(!selects_packages(&args(&["--", "-p"])));
        assert!(!selects_packages(&args(&["--lib", "--", "--nocapture"])));
    }
}
