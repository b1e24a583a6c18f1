//! `cargo xtask contract`: schemathesis against a live `strata-web` on a fresh PostgreSQL
//! database, once per kind of principal, with every check on; the settings are the committed
//! `tests/contract/schemathesis.toml`, the reports land in `target/contract/`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::postgres::{self, ScratchDatabase, TEST_DATABASE_URL};
use crate::process::{self, cargo};
use crate::service::Server;
use crate::token::{self, Role};

const SCHEMATHESIS_INSTALL: &str = "python3 -m venv .venv && .venv/bin/pip install \
     schemathesis==4.32.5, then put .venv/bin on PATH (`.ci/run` does this)";

/// The settings of every run, under version control.
const CONFIG: &str = "tests/contract/schemathesis.toml";

/// The environment variable the configuration reads the bearer token from, so that the token
/// never appears on a command line.
const TOKEN_VARIABLE: &str = "STRATA_CONTRACT_TOKEN";

/// Who the API is fuzzed as: staff sees everything, a customer only their own resources.
const PRINCIPALS: [(&str, Role, Option<&str>); 2] = [
    ("operator", Role::Operator, None),
    ("customer", Role::Customer, Some("contract-customer")),
];

pub fn run(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let schemathesis = process::on_path("schemathesis").with_context(|| {
        format!("schemathesis is not installed (on PATH): {SCHEMATHESIS_INSTALL}")
    })?;
    let url = postgres::database_url_or(TEST_DATABASE_URL);
    postgres::ensure_reachable(&url)?;
    // A debug build: the test suite has compiled everything it needs, and the run's time is
    // schemathesis's, not the server's.
    process::run(cargo(root).args(["build", "--package", "strata-web"]))?;
    let target = target_dir(root);
    let reports = target.join("contract");
    fs::create_dir_all(&reports).with_context(|| format!("cannot create {}", reports.display()))?;

    // Declared in this order, dropped in the reverse: the server stops before its database goes.
    let database = ScratchDatabase::create(&url, &format!("strata_contract_{}", random_hex(8)?))?;
    let secret = random_hex(32)?;
    let mut server = Server::start(
        &target.join("debug").join("strata-web"),
        &database.url,
        &secret,
        &reports.join("server.log"),
    )?;
    server.wait_ready(Duration::from_secs(60))?;
    eprintln!("==> ready after {} s", started.elapsed().as_secs());

    let mut runs = Vec::new();
    for (name, role, customer_id) in PRINCIPALS {
        let token = token::mint(role, customer_id, &secret, 3_600)?;
        let run = schemathesis_run(
            root,
            &schemathesis,
            &server.base_url(),
            name,
            &token,
            &reports,
        )?;
        runs.push(run);
    }
    drop(server);
    drop(database);

    report(&runs, started.elapsed())
}

/// What one schemathesis run answered, and what it printed.
struct Run {
    principal: &'static str,
    passed: bool,
    output: String,
}

fn schemathesis_run(
    root: &Path,
    schemathesis: &Path,
    base_url: &str,
    principal: &'static str,
    token: &str,
    reports: &Path,
) -> anyhow::Result<Run> {
    let mut command = schemathesis_command(schemathesis, root, base_url, principal, reports);
    command.env(TOKEN_VARIABLE, token);
    eprintln!("\n==> schemathesis as {principal} (report: target/contract/{principal}.txt)");
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", schemathesis.display()))?;
    let stdout = child.stdout.take().context("schemathesis has no stdout")?;
    // Shown as it runs, and kept for the report and the digest.
    let mut output = String::new();
    let mut file = File::create(reports.join(format!("{principal}.txt")))?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        writeln!(file, "{line}")?;
        output.push_str(&line);
        output.push('\n');
    }
    let status = child.wait()?;
    eprintln!("==> schemathesis as {principal}: {status}");
    Ok(Run {
        principal,
        passed: status.success(),
        output,
    })
}

fn schemathesis_command(
    schemathesis: &Path,
    root: &Path,
    base_url: &str,
    principal: &str,
    reports: &Path,
) -> Command {
    let mut command = Command::new(schemathesis);
    command
        .arg("--config-file")
        .arg(root.join(CONFIG))
        .args(["--no-color", "run"])
        .arg(format!("{base_url}/openapi.json"))
        .args([
            "--checks",
            "all",
            "--report",
            "junit",
            "--report-junit-path",
        ])
        .arg(reports.join(format!("{principal}.junit.xml")))
        // Whatever schemathesis or Hypothesis leaves in its working directory stays in target/.
        .current_dir(reports);
    command
}

/// Prints each run's failures by operation and schemathesis's own summary, then the verdict.
fn report(runs: &[Run], elapsed: Duration) -> anyhow::Result<()> {
    eprintln!("\n==> contract: {} s in all", elapsed.as_secs());
    for run in runs {
        eprintln!("\n--- as {} ---", run.principal);
        for (operation, checks) in failures_by_operation(&run.output) {
            let checks: Vec<String> = checks
                .iter()
                .map(|(check, count)| format!("{check} ×{count}"))
                .collect();
            eprintln!("  {operation}: {}", checks.join(", "));
        }
        eprintln!("{}", summary(&run.output));
    }
    let failed: Vec<&str> = runs
        .iter()
        .filter(|run| !run.passed)
        .map(|run| run.principal)
        .collect();
    if failed.is_empty() {
        eprintln!("contract: schemathesis found nothing, as operator and as customer");
        Ok(())
    } else {
        bail!(
            "schemathesis found failures as {} (reports in target/contract/)",
            failed.join(" and ")
        )
    }
}

/// From schemathesis's text output: per operation (as it names them, with "Stateful tests"),
/// how often each check failed. Sections open with `====` banners, the failures of one
/// operation with a `____` banner, and each failed check is a `- ` line.
fn failures_by_operation(output: &str) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut failures: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut in_failures = false;
    let mut operation = None;
    for line in output.lines() {
        if let Some(section) = banner(line, '=') {
            in_failures = section == "FAILURES";
            operation = None;
        } else if let Some(title) = banner(line, '_') {
            operation = in_failures.then(|| title.to_owned());
        } else if let (Some(operation), Some(check)) = (&operation, line.strip_prefix("- ")) {
            *failures
                .entry(operation.clone())
                .or_default()
                .entry(check.trim().to_owned())
                .or_default() += 1;
        }
    }
    failures
}

/// The title of a line such as `____ GET /path ____` when `fence` is `_`.
fn banner(line: &str, fence: char) -> Option<&str> {
    let title = line.trim_matches(fence);
    let fenced = line.starts_with(fence) && line.ends_with(fence) && line.len() > title.len() + 4;
    let title = title.trim();
    (fenced && !title.is_empty()).then_some(title)
}

/// Schemathesis's summary: its output from the `SUMMARY` banner on.
fn summary(output: &str) -> &str {
    let mut start = 0;
    for line in output.split_inclusive('\n') {
        if banner(line.trim_end(), '=') == Some("SUMMARY") {
            return &output[start..];
        }
        start += line.len();
    }
    "(schemathesis printed no summary)"
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else `target/` in the workspace.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir))
}

/// `bytes` random bytes from the kernel, as hex: the server's secret and the database's name.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0_u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut source| source.read_exact(&mut buffer))
        .context("cannot read /dev/urandom")?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::inspect;

    const OUTPUT: &str = "\
 ❌  Stateful (in 19.33s)

==================================== ERRORS ====================================
__________________________________ POST /v1/orders __________________________________
Runtime Error

- not a failed check

=================================== FAILURES ===================================
____________________________ GET /v1/accounts/{id} _____________________________
1. Test Case ID: wies8A

- ST105 Undocumented Content-Type

    Received: application/problem+json

_________________________ POST /v1/accounts/{id}/close _________________________
1. Test Case ID: NT7XzZ

- ST103 Undocumented status code

2. Test Case ID: MsTSux

- ST105 Undocumented Content-Type
- ST103 Undocumented status code

=================================== SUMMARY ====================================

Failures:
  ❌ ST103 Undocumented status code: 2
- not a failure line
";

    #[test]
    fn failures_are_counted_per_operation_and_check_and_nothing_else_is() {
        let failures = failures_by_operation(OUTPUT);

        let flat: Vec<(String, String, usize)> = failures
            .iter()
            .flat_map(|(operation, checks)| {
                checks
                    .iter()
                    .map(|(check, count)| (operation.clone(), check.clone(), *count))
            })
            .collect();
        let expected = [
            (
                "GET /v1/accounts/{id}",
                "ST105 Undocumented Content-Type",
                1,
            ),
            (
                "POST /v1/accounts/{id}/close",
                "ST103 Undocumented status code",
                2,
            ),
            (
                "POST /v1/accounts/{id}/close",
                "ST105 Undocumented Content-Type",
                1,
            ),
        ]
        .map(|(o, c, n)| (o.to_owned(), c.to_owned(), n));
        assert_eq!(flat, expected);
    }

    #[test]
    fn the_summary_starts_at_its_banner() {
        assert!(summary(OUTPUT).starts_with("=================================== SUMMARY"));
        assert!(summary(OUTPUT).ends_with("- not a failure line\n"));
        assert_eq!(summary("no banner"), "(schemathesis printed no summary)");
    }

    #[test]
    fn schemathesis_runs_every_check_with_the_committed_settings_and_a_junit_report() {
        let command = schemathesis_command(
            Path::new("schemathesis"),
            Path::new("/repo"),
            "http://127.0.0.1:4321",
            "customer",
            Path::new("/repo/target/contract"),
        );

        assert_eq!(
            inspect::args(&command),
            [
                "--config-file",
                "/repo/tests/contract/schemathesis.toml",
                "--no-color",
                "run",
                "http://127.0.0.1:4321/openapi.json",
                "--checks",
                "all",
                "--report",
                "junit",
                "--report-junit-path",
                "/repo/target/contract/customer.junit.xml"
            ]
        );
    }

    #[test]
    fn the_task_fails_when_schemathesis_failed_for_either_principal() {
        let run = |principal, passed| Run {
            principal,
            passed,
            output: OUTPUT.to_owned(),
        };

        assert!(
            report(
                &[run("operator", true), run("customer", true)],
                Duration::ZERO
            )
            .is_ok()
        );
        let error = report(
            &[run("operator", true), run("customer", false)],
            Duration::ZERO,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("as customer"), "{error}");
        assert!(!error.contains("operator"), "{error}");
    }

    #[test]
    fn random_hex_is_hex_of_the_asked_length_and_differs_each_time() {
        let (a, b) = (random_hex(8).unwrap(), random_hex(8).unwrap());
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
