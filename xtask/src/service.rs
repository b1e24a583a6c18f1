//! The service on this machine: `db` migrates the development database, `dev` runs `strata-web`
//! with the projector in-process.

use std::path::Path;
use std::process::Command;

use crate::postgres::{self, DEV_DATABASE_URL};
use crate::process::{cargo, run};

/// `cargo xtask db`: create the development database if missing and apply the migrations.
pub fn db(root: &Path) -> anyhow::Result<()> {
    let url = postgres::database_url_or(DEV_DATABASE_URL);
    postgres::ensure_reachable(&url)?;
    run(&mut migrate(root, &url))
}

/// `cargo xtask dev`: serve in development mode until interrupted.
pub fn dev(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    let url = postgres::database_url_or(DEV_DATABASE_URL);
    postgres::ensure_reachable(&url)?;
    for mut command in dev_commands(root, &url, extra) {
        run(&mut command)?;
    }
    Ok(())
}

/// What `dev` runs, in order. Only the server, with the projection workers in-process
/// (`--with-projector`), so one command serves a complete system: its start-up creates the
/// database when it is missing and applies the migrations (`strata-web`'s `startup::migrate`,
/// the same code as `strata-web migrate`), so a separate migrate step would only do that work
/// twice.
fn dev_commands(root: &Path, url: &str, extra: &[String]) -> Vec<Command> {
    let mut serve = cargo(root);
    serve
        .args([
            "run",
            "--package",
            "strata-web",
            "--",
            "--dev",
            "--with-projector",
        ])
        .args(extra)
        .env("DATABASE_URL", url);
    vec![serve]
}

fn migrate(root: &Path, url: &str) -> Command {
    let mut command = cargo(root);
    command
        .args(["run", "--package", "strata-web", "--", "migrate"])
        .env("DATABASE_URL", url);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn dev_runs_the_server_once_with_the_projector_and_no_separate_migration() {
        let extra = vec!["--http-addr".to_owned(), "127.0.0.1:3000".to_owned()];

        let commands = dev_commands(Path::new("."), DEV_DATABASE_URL, &extra);

        let lines: Vec<Vec<String>> = commands.iter().map(args).collect();
        assert_eq!(
            lines,
            vec![vec![
                "run",
                "--package",
                "strata-web",
                "--",
                "--dev",
                "--with-projector",
                "--http-addr",
                "127.0.0.1:3000"
            ]]
        );
    }
}
