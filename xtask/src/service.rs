//! The service on this machine: `db` migrates the PostgreSQL development database, `dev` runs
//! `strata-web` with the projector in-process, on SQLite in `./data` unless `DATABASE_URL` names
//! another storage.

use std::path::Path;
use std::process::Command;

use crate::postgres::{self, DEV_DATABASE_URL};
use crate::process::{cargo, run};

/// `cargo xtask db`: create the PostgreSQL development database if missing and apply the
/// migrations.
pub fn db(root: &Path) -> anyhow::Result<()> {
    let url = postgres::database_url_or(DEV_DATABASE_URL);
    postgres::ensure_reachable(&url)?;
    run(&mut migrate(root, &url))
}

/// `cargo xtask dev`: serve in development mode until interrupted.
pub fn dev(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty());
    match url.as_deref() {
        Some(url) if url.starts_with("postgres") => postgres::ensure_reachable(url)?,
        Some(_) => {}
        None => eprintln!(
            "no DATABASE_URL: the embedded SQLite database in ./data (STRATA_DATA_DIR) is used"
        ),
    }
    for mut command in dev_commands(root, url.as_deref(), extra) {
        run(&mut command)?;
    }
    Ok(())
}

/// What `dev` runs, in order. Only the server, with the projection workers in-process
/// (`--with-projector`), so one command serves a complete system: its start-up creates the
/// database when it is missing and applies the migrations (`strata-web`'s `startup::migrate`,
/// the same code as `strata-web migrate`), so a separate migrate step would only do that work
/// twice. Without a URL the server stores everything in SQLite.
fn dev_commands(root: &Path, url: Option<&str>, extra: &[String]) -> Vec<Command> {
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
        .args(extra);
    match url {
        Some(url) => serve.env("DATABASE_URL", url),
        None => serve.env_remove("DATABASE_URL"),
    };
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
    use crate::process::inspect::{args, env};

    fn database_url(command: &Command) -> Option<Option<String>> {
        env(command, "DATABASE_URL")
    }

    #[test]
    fn dev_runs_the_server_once_with_the_projector_and_no_separate_migration() {
        let extra = vec!["--http-addr".to_owned(), "127.0.0.1:3000".to_owned()];

        let commands = dev_commands(Path::new("."), Some(DEV_DATABASE_URL), &extra);

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
        assert_eq!(
            database_url(&commands[0]),
            Some(Some(DEV_DATABASE_URL.to_owned()))
        );
    }

    #[test]
    fn dev_without_a_url_removes_any_inherited_one_so_the_server_uses_sqlite() {
        let commands = dev_commands(Path::new("."), None, &[]);

        assert_eq!(database_url(&commands[0]), Some(None));
    }
}
