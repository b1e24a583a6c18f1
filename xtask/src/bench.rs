//! `cargo xtask bench`: builds the workloads in release mode (cargo's bench profile), and the
//! two binaries that `rebuild` and the `http` workloads run, and runs them; their JSON lines reach stdout
//! untouched, everything else goes to stderr.

use std::path::Path;
use std::process::Command;

use crate::postgres::{self, TEST_DATABASE_URL};
use crate::process::{self, cargo};

/// Flags of `cargo xtask bench`, passed on to the harness.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// A workload to run (repeatable): append, append-contended, load-1000, load-10000,
    /// project, rebuild, lag, publish (100,000 events from the log to JetStream's
    /// acknowledgements), publish-lag (a command's acknowledgement to a JetStream consumer
    /// receiving it), http, http-commands (deposits without then with idempotency keys),
    /// http-contended (deposits on 100 accounts). All by default.
    #[arg(long = "workload", value_name = "W")]
    pub workloads: Vec<String>,
    /// Concurrent tasks of the append workloads; connections of the `http` workloads (8 by
    /// default; 64 for http-commands and http-contended).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Operations per workload (each has its own default).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Events per batch of `project` and `publish` (the projector's defaults: 500 and 2,000).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Commands per second of `lag`.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seconds of load of the `http` workloads (10 by default); given, `append` and the loads also run for
    /// that long instead of a number of operations.
    #[arg(long)]
    pub seconds: Option<u64>,
    /// `append` sends every command with a unique idempotency key, as a careful client does
    /// (Strata only: the peer has no idempotency keys).
    #[arg(long)]
    pub with_keys: bool,
    /// PostgreSQL server (a new database per workload) or `sqlite://PATH`; default
    /// `DATABASE_URL`, else the local server.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Also run the cqrs-es peer (bench/peer-cqrs-es) on the same workloads (append,
    /// load-1000), interleaved with Strata's, and print a summary with the ratios.
    #[arg(long)]
    pub peer: bool,
    /// Also run pgbench's ceiling scripts (bench/ceiling) beside `append`, interleaved.
    #[arg(long)]
    pub ceiling: bool,
    /// Repetitions of the interleaved runs of --peer / --ceiling (medians and ranges).
    #[arg(long, default_value_t = 1)]
    pub reps: usize,
    /// Run the loads only without (`off`) or only with (`on`) snapshots; both by default.
    #[arg(long, value_name = "off|on", value_parser = clap::builder::BoolishValueParser::new())]
    pub snapshots: Option<bool>,
    /// `http-commands` and `http-contended`: `strata-web` with the projection workers in its
    /// process (`on`, the default) or alone (`off`, as deployed in production).
    #[arg(long, value_name = "off|on", value_parser = clap::builder::BoolishValueParser::new())]
    pub projector: Option<bool>,
    /// Count the instructions per operation of `append` and `load-1000` with callgrind instead
    /// of timing them (Strata's process; with --peer the peer's beside it). --concurrency of
    /// `append` is 1 unless given; --ops sets the smaller of the two runs.
    #[arg(long)]
    pub instructions: bool,
}

/// `--snapshots`' value for a harness.
pub fn on_off(on: bool) -> String {
    if on { "on" } else { "off" }.to_owned()
}

pub fn run(root: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let url = database_url(args)?;
    // The binaries land beside the harness (the bench profile builds into target/release).
    process::run(cargo(root).args([
        "build",
        "--release",
        "--package",
        "strata-projector",
        "--package",
        "strata-web",
    ]))?;
    process::run(&mut command(root, args, &url))
}

/// `--database-url`, else `DATABASE_URL`, else the local server; a server checked reachable.
pub fn database_url(args: &BenchArgs) -> anyhow::Result<String> {
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| postgres::database_url_or(TEST_DATABASE_URL));
    if url.starts_with("postgres") {
        postgres::ensure_reachable(&url)?;
    }
    Ok(url)
}

/// `cargo bench` of the harness, to which a run adds `--` and its flags, or a build `--no-run`.
pub fn harness_build(root: &Path) -> Command {
    let mut command = cargo(root);
    command.args(["bench", "--package", "strata-tests", "--bench", "workloads"]);
    command
}

pub fn command(root: &Path, args: &BenchArgs, url: &str) -> Command {
    let mut command = harness_build(root);
    command.arg("--");
    for workload in &args.workloads {
        command.args(["--workload", workload]);
    }
    for (flag, value) in [
        ("--concurrency", args.concurrency.map(|v| v.to_string())),
        ("--ops", args.ops.map(|v| v.to_string())),
        ("--batch-size", args.batch_size.map(|v| v.to_string())),
        ("--rate", args.rate.map(|v| v.to_string())),
        ("--seconds", args.seconds.map(|v| v.to_string())),
        ("--snapshots", args.snapshots.map(on_off)),
        ("--projector", args.projector.map(on_off)),
    ] {
        if let Some(value) = value {
            command.args([flag, &value]);
        }
    }
    if args.with_keys {
        command.arg("--with-keys");
    }
    command.env("DATABASE_URL", url);
    command
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::inspect;

    #[test]
    fn the_flags_reach_the_harness_after_the_separator() {
        let args = BenchArgs {
            workloads: vec!["append".to_owned(), "project".to_owned()],
            concurrency: Some(32),
            ops: Some(100),
            batch_size: Some(2_000),
            rate: None,
            seconds: Some(5),
            with_keys: true,
            database_url: None,
            peer: false,
            ceiling: false,
            reps: 1,
            snapshots: Some(false),
            projector: Some(false),
            instructions: false,
        };

        let command = command(Path::new("."), &args, "sqlite://bench/x.db");

        assert_eq!(
            inspect::args(&command),
            [
                "bench",
                "--package",
                "strata-tests",
                "--bench",
                "workloads",
                "--",
                "--workload",
                "append",
                "--workload",
                "project",
                "--concurrency",
                "32",
                "--ops",
                "100",
                "--batch-size",
                "2000",
                "--seconds",
                "5",
                "--snapshots",
                "off",
                "--projector",
                "off",
                "--with-keys"
            ]
        );
        assert_eq!(
            inspect::env(&command, "DATABASE_URL"),
            Some(Some("sqlite://bench/x.db".to_owned()))
        );
    }
}
