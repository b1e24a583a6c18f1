//! `cargo xtask test`: the whole test suite against a running PostgreSQL, then the end-to-end
//! HTTP suite a second time on the embedded SQLite storage.

use std::path::Path;

use crate::postgres::{self, TEST_DATABASE_URL};
use crate::process::{self, cargo};

/// Runs `cargo test --workspace --no-fail-fast` plus `extra`, with `DATABASE_URL` defaulting to
/// the local server, after checking that the server answers. A full run (no packages chosen in
/// `extra`) then runs the HTTP suite with `STRATA_TEST_STORAGE=sqlite`, whatever the first
/// run's outcome, so one command shows both storages' failures.
pub fn run(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    let url = postgres::database_url_or(TEST_DATABASE_URL);
    postgres::ensure_reachable(&url)?;
    let mut command = cargo(root);
    command.args(["test", "--no-fail-fast"]);
    let full = !selects_packages(extra);
    if full {
        command.arg("--workspace");
    }
    command.args(extra).env("DATABASE_URL", &url);
    let on_postgres = process::run(&mut command);
    if !full {
        return on_postgres;
    }
    eprintln!("\n==> the end-to-end HTTP suite again, on SQLite (STRATA_TEST_STORAGE=sqlite)");
    let on_sqlite = process::run(&mut sqlite_pass(root, extra, &url));
    match (on_postgres, on_sqlite) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(error), Ok(())) => Err(error.context("the suite failed on PostgreSQL")),
        (Ok(()), Err(error)) => Err(error.context("the HTTP suite failed on SQLite")),
        (Err(_), Err(error)) => {
            Err(error.context("the suite failed on PostgreSQL and the HTTP suite on SQLite"))
        }
    }
}

/// The HTTP suite on SQLite, with the test binary's arguments of `extra` (after `--`). Chosen
/// by its target in the whole workspace, not by its package: the features then resolve as in
/// the first run, so nothing is compiled again.
fn sqlite_pass(root: &Path, extra: &[String], url: &str) -> std::process::Command {
    let mut command = cargo(root);
    command
        .args(["test", "--no-fail-fast", "--workspace", "--test", "api"])
        .args(extra.iter().skip_while(|arg| *arg != "--"))
        .env("DATABASE_URL", url)
        .env("STRATA_TEST_STORAGE", "sqlite");
    command
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
    use crate::process::inspect;

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
    fn the_sqlite_pass_runs_the_http_suite_with_the_test_binarys_arguments() {
        let command = sqlite_pass(
            Path::new("."),
            &args(&["--lib", "--", "--nocapture"]),
            TEST_DATABASE_URL,
        );

        assert_eq!(
            inspect::args(&command),
            args(&[
                "test",
                "--no-fail-fast",
                "--workspace",
                "--test",
                "api",
                "--",
                "--nocapture"
            ])
        );
        assert_eq!(
            inspect::env(&command, "STRATA_TEST_STORAGE"),
            Some(Some("sqlite".to_owned()))
        );
    }

    #[test]
    fn test_binary_arguments_do_not_select_packages() {
        assert!(!selects_packages(&args(&[])));
        assert!(!selects_packages(&args(&["--", "-p"])));
        assert!(!selects_packages(&args(&["--lib", "--", "--nocapture"])));
    }
}
