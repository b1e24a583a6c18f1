//! `cargo xtask bench --peer` / `--ceiling`: Strata's harness, the cqrs-es peer
//! (`bench/peer-cqrs-es`) and pgbench's ceiling scripts (`bench/ceiling`) on the same workloads,
//! interleaved (which goes first alternates from one repetition to the next), `--reps` times;
//! every JSON line on stdout as it comes, then a summary on stderr: per workload and system the
//! median and range of ops/s, and Strata's ratio to each other system.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::bench::{self, BenchArgs};
use crate::postgres::{self, ScratchDatabase};
use crate::process::{self, cargo};

/// The peer's manifest, from the workspace root.
pub const PEER_MANIFEST: &str = "bench/peer-cqrs-es/Cargo.toml";
/// The peer's binary, from the workspace root (its own target/, as a detached project).
pub const PEER_BINARY: &str = "bench/peer-cqrs-es/target/release/strata-peer-cqrs-es";
/// The workloads the peer implements, run by default.
const PEER_WORKLOADS: &[&str] = &["append", "load-1000"];
/// The ceiling scripts (under bench/ceiling/), each a system of its own in the summary.
const CEILING_SCRIPTS: &[&str] = &["read-version-insert", "insert-only"];
/// How long a ceiling script runs without `--seconds`.
const CEILING_SECONDS: u64 = 10;
/// The tasks of `append` without `--concurrency` (both harnesses' default), decided here once
/// and passed to every system, so that the ceiling lands in the row it is compared with.
const DEFAULT_CONCURRENCY: usize = 8;

/// One run of one system on one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    Strata { workload: String },
    Peer { workload: String },
    Ceiling { script: &'static str },
}

/// The runs of repetition `rep`: per workload, Strata and the peer (and, beside `append`, the
/// ceiling scripts), in an order that is reversed on every other repetition.
fn schedule(workloads: &[String], peer: bool, ceiling: bool, rep: usize) -> Vec<Run> {
    let mut runs = Vec::new();
    for workload in workloads {
        let mut group = vec![Run::Strata {
            workload: workload.clone(),
        }];
        if peer {
            group.push(Run::Peer {
                workload: workload.clone(),
            });
        }
        if ceiling && workload == "append" {
            group.extend(
                CEILING_SCRIPTS
                    .iter()
                    .map(|&script| Run::Ceiling { script }),
            );
        }
        if rep % 2 == 1 {
            group.reverse();
        }
        runs.extend(group);
    }
    runs
}

pub fn run(root: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let url = &bench::database_url(args)?;
    anyhow::ensure!(
        url.starts_with("postgres"),
        "--peer and --ceiling run on PostgreSQL only"
    );
    let workloads: Vec<String> = if args.workloads.is_empty() {
        PEER_WORKLOADS.iter().map(|w| (*w).to_owned()).collect()
    } else {
        args.workloads.clone()
    };
    // The other workloads run Strata's release binaries, which only `cargo xtask bench` builds.
    for workload in &workloads {
        anyhow::ensure!(
            PEER_WORKLOADS.contains(&workload.as_str()),
            "--peer and --ceiling have no workload {workload:?} (they have: {})",
            PEER_WORKLOADS.join(", ")
        );
    }
    anyhow::ensure!(
        !(args.peer && args.with_keys),
        "the peer has no idempotency keys: --with-keys would compare different work"
    );
    if args.peer {
        process::run(cargo(root).args(["build", "--release", "--manifest-path", PEER_MANIFEST]))?;
    }
    let args = &BenchArgs {
        concurrency: Some(args.concurrency.unwrap_or(DEFAULT_CONCURRENCY)),
        ..args.clone()
    };
    let pgbench = if args.ceiling {
        Some(pgbench_program()?)
    } else {
        None
    };
    let mut lines = Vec::new();
    for rep in 0..args.reps.max(1) {
        eprintln!("==> repetition {} of {}", rep + 1, args.reps.max(1));
        for one in schedule(&workloads, args.peer, args.ceiling, rep) {
            let output = match &one {
                Run::Strata { workload } => {
                    let single = BenchArgs {
                        workloads: vec![workload.clone()],
                        ..args.clone()
                    };
                    process::capture(&mut bench::command(root, &single, url))?
                }
                Run::Peer { workload } => {
                    process::capture(&mut peer_command(root, args, workload, url))?
                }
                Run::Ceiling { script } => {
                    let pgbench = pgbench.as_ref().context("no pgbench")?;
                    ceiling(root, pgbench, script, args, url)?
                }
            };
            for line in output.lines().filter(|l| l.starts_with('{')) {
                println!("{line}");
                lines.push(line.to_owned());
            }
        }
    }
    eprint!("{}", summary(&lines)?);
    Ok(())
}

/// The peer's command line for one workload, with the flags it shares with Strata's harness.
fn peer_command(root: &Path, args: &BenchArgs, workload: &str, url: &str) -> Command {
    let mut command = Command::new(root.join(PEER_BINARY));
    command.current_dir(root);
    command.args(["--workload", workload]);
    for (flag, value) in [
        ("--concurrency", args.concurrency.map(|v| v.to_string())),
        ("--ops", args.ops.map(|v| v.to_string())),
        ("--seconds", args.seconds.map(|v| v.to_string())),
        ("--snapshots", args.snapshots.map(bench::on_off)),
    ] {
        if let Some(value) = value {
            command.args([flag, &value]);
        }
    }
    command.env("DATABASE_URL", url);
    command
}

/// pgbench's command line for one script: durable transactions (the server's settings, which
/// this does not change), prepared statements as the drivers use, at most one thread per core
/// of `cores`.
fn pgbench_command(
    program: &Path,
    script: &Path,
    clients: usize,
    cores: usize,
    seconds: u64,
    database_url: &str,
) -> Command {
    let mut command = Command::new(program);
    command
        .args(["-n", "-M", "prepared"])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(cores.max(1)).to_string(),
        ])
        .args(["-T", &seconds.to_string()])
        .arg("-f")
        .arg(script)
        .arg(database_url);
    command
}

/// Runs one ceiling script on a scratch database; its result as a line of the harness's format.
fn ceiling(
    root: &Path,
    pgbench: &Pgbench,
    script: &str,
    args: &BenchArgs,
    url: &str,
) -> anyhow::Result<String> {
    let clients = args.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let seconds = args.seconds.unwrap_or(CEILING_SECONDS);
    let name = format!("strata_ceiling_{}", std::process::id());
    let scratch = ScratchDatabase::create(url, &name)?;
    let schema = std::fs::read_to_string(root.join("bench/ceiling/schema.sql"))?;
    postgres::psql(&scratch.url, &schema)?;
    let path = root.join(format!("bench/ceiling/{script}.sql"));
    let stdout = process::capture(&mut pgbench_command(
        &pgbench.program,
        &path,
        clients,
        cores,
        seconds,
        &scratch.url,
    ))?;
    let (ops, tps) = parse_pgbench(&stdout)?;
    #[allow(clippy::cast_precision_loss)] // op counts are far below 2^52
    let elapsed = if tps > 0.0 { ops as f64 / tps } else { 0.0 };
    ceiling_line(&pgbench.system, script, clients, ops, elapsed, tps)
}

/// A ceiling script's result in the harness's format: its fields in its order (no latencies,
/// which pgbench reports only as an average).
fn ceiling_line(
    system: &str,
    script: &str,
    clients: usize,
    ops: u64,
    seconds: f64,
    tps: f64,
) -> anyhow::Result<String> {
    // serde_json keeps the fields in this order (no `preserve_order` needed for a struct).
    #[derive(serde::Serialize)]
    struct Line<'a> {
        system: &'a str,
        workload: String,
        storage: &'a str,
        concurrency: usize,
        ops: u64,
        seconds: f64,
        ops_per_sec: f64,
    }
    serde_json::to_string(&Line {
        system,
        workload: format!("ceiling-{script}"),
        storage: "postgres",
        concurrency: clients,
        ops,
        seconds: (seconds * 1000.0).round() / 1000.0,
        ops_per_sec: (tps * 10.0).round() / 10.0,
    })
    .context("cannot write a ceiling line")
}

/// The pgbench that runs the ceiling, and how its lines name it (`pgbench 15.14`).
#[derive(Debug)]
struct Pgbench {
    program: PathBuf,
    system: String,
}

/// Debian's pgbench on the PATH, else PostgreSQL 15's, with its version.
fn pgbench_program() -> anyhow::Result<Pgbench> {
    for program in ["pgbench", "/usr/lib/postgresql/15/bin/pgbench"] {
        let Ok(output) = Command::new(program).arg("--version").output() else {
            continue;
        };
        if output.status.success() {
            return Ok(Pgbench {
                program: PathBuf::from(program),
                system: system_of(&String::from_utf8_lossy(&output.stdout)),
            });
        }
    }
    bail!("no pgbench (Debian/Ubuntu: apt-get install postgresql-contrib or postgresql-15)")
}

/// `pgbench (PostgreSQL) 15.14 (Debian 15.14-1)` → `pgbench 15.14`.
fn system_of(version: &str) -> String {
    let number = version
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or("?");
    format!("pgbench {number}")
}

/// Transactions processed and transactions per second from pgbench's report.
fn parse_pgbench(report: &str) -> anyhow::Result<(u64, f64)> {
    let mut ops = None;
    let mut tps = None;
    for line in report.lines() {
        if let Some(rest) = line.strip_prefix("number of transactions actually processed: ") {
            ops = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(rest) = line.strip_prefix("tps = ") {
            tps = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }
    match (ops, tps) {
        (Some(ops), Some(tps)) => Ok((ops, tps)),
        _ => bail!("no transaction count or tps in pgbench's report: {report}"),
    }
}

/// The median, least and greatest of some figures (none: `None`).
fn spread(figures: &[f64]) -> Option<(f64, f64, f64)> {
    let mut sorted: Vec<f64> = figures.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (first, last) = (*sorted.first()?, *sorted.last()?);
    let middle = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        f64::midpoint(sorted[middle - 1], sorted[middle])
    } else {
        sorted[middle]
    };
    Some((median, first, last))
}

/// What a line measured: its row (workload, concurrency, snapshots), its system, its ops/s.
fn key(line: &Value) -> Option<(String, String, f64)> {
    let workload = line.get("workload")?.as_str()?;
    let concurrency = line.get("concurrency")?.as_u64()?;
    let row = match line.get("snapshots").and_then(Value::as_bool) {
        Some(true) => format!("{workload} (snapshots)"),
        Some(false) => format!("{workload} (no snapshots)"),
        None => format!("{workload} C={concurrency}"),
    };
    // The ceiling scripts are rows of `append`'s concurrency: compare them with `append`.
    let (row, system) = match workload.strip_prefix("ceiling-") {
        Some(script) => (
            format!("append C={concurrency}"),
            format!("ceiling {script}"),
        ),
        None => {
            let system = line.get("system")?.as_str()?;
            // A peer whose snapshot loads disagree with a full replay is measured, not trusted.
            match line.get("snapshot_equals_replay").and_then(Value::as_bool) {
                Some(false) => (row, format!("{system} (wrong state)")),
                _ => (row, system.to_owned()),
            }
        }
    };
    Some((row, system, line.get("ops_per_sec")?.as_f64()?))
}

/// The summary table: per row and system the median ops/s (range), and Strata's median over
/// the system's.
fn summary(lines: &[String]) -> anyhow::Result<String> {
    let mut figures: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for line in lines {
        let value: Value = serde_json::from_str(line).context("a line that is not JSON")?;
        if let Some((row, system, ops_per_sec)) = key(&value) {
            figures
                .entry(row)
                .or_default()
                .entry(system)
                .or_default()
                .push(ops_per_sec);
        }
    }
    let mut out =
        String::from("\nworkload | system | runs | median ops/s (min-max) | Strata / system\n");
    for (row, systems) in &figures {
        let strata = systems
            .iter()
            .find(|(system, _)| system.starts_with("strata"))
            .and_then(|(_, f)| spread(f))
            .map(|(median, _, _)| median);
        for (system, runs) in systems {
            let Some((median, least, most)) = spread(runs) else {
                continue;
            };
            let ratio = match strata {
                Some(strata) if !system.starts_with("strata") && median > 0.0 => {
                    format!("{:.2}x", strata / median)
                }
                _ => String::new(),
            };
            out.push_str(&format!(
                "{row} | {system} | {} | {median:.0} ({least:.0}-{most:.0}) | {ratio}\n",
                runs.len()
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::inspect;

    fn args() -> BenchArgs {
        BenchArgs {
            workloads: vec![],
            concurrency: Some(32),
            ops: None,
            batch_size: None,
            rate: None,
            seconds: Some(10),
            with_keys: false,
            database_url: None,
            peer: true,
            ceiling: true,
            reps: 3,
            snapshots: None,
            projector: None,
            instructions: false,
        }
    }

    #[test]
    fn the_peer_gets_the_workload_and_the_shared_flags() {
        let command = peer_command(Path::new("/repo"), &args(), "append", "postgres://h/db");

        assert_eq!(
            command.get_program(),
            Path::new("/repo/bench/peer-cqrs-es/target/release/strata-peer-cqrs-es")
        );
        assert_eq!(
            inspect::args(&command),
            [
                "--workload",
                "append",
                "--concurrency",
                "32",
                "--seconds",
                "10"
            ]
        );
        assert_eq!(
            inspect::env(&command, "DATABASE_URL"),
            Some(Some("postgres://h/db".to_owned()))
        );
    }

    #[test]
    fn pgbench_runs_the_script_durably_for_the_time_with_at_most_two_threads() {
        let command = pgbench_command(
            Path::new("pgbench"),
            Path::new("bench/ceiling/insert-only.sql"),
            8,
            2,
            10,
            "postgres://h/scratch",
        );

        assert_eq!(
            inspect::args(&command),
            [
                "-n",
                "-M",
                "prepared",
                "-c",
                "8",
                "-j",
                "2",
                "-T",
                "10",
                "-f",
                "bench/ceiling/insert-only.sql",
                "postgres://h/scratch"
            ]
        );
    }

    #[test]
    fn which_system_goes_first_alternates_and_the_ceiling_sits_beside_append() {
        let workloads = vec!["append".to_owned(), "load-1000".to_owned()];
        let strata = |w: &str| Run::Strata {
            workload: w.to_owned(),
        };
        let peer = |w: &str| Run::Peer {
            workload: w.to_owned(),
        };
        let ceiling = |script| Run::Ceiling { script };

        assert_eq!(
            schedule(&workloads, true, true, 0),
            [
                strata("append"),
                peer("append"),
                ceiling("read-version-insert"),
                ceiling("insert-only"),
                strata("load-1000"),
                peer("load-1000"),
            ]
        );
        assert_eq!(
            schedule(&workloads, true, false, 1),
            [
                peer("append"),
                strata("append"),
                peer("load-1000"),
                strata("load-1000"),
            ]
        );
    }

    #[test]
    fn a_ceiling_line_has_the_harness_fields_in_its_order() {
        assert_eq!(
            ceiling_line("pgbench 15", "insert-only", 8, 438_410, 10.000_4, 43_841.02).unwrap(),
            r#"{"system":"pgbench 15","workload":"ceiling-insert-only","storage":"postgres","concurrency":8,"ops":438410,"seconds":10.0,"ops_per_sec":43841.0}"#
        );
    }

    #[test]
    fn pgbench_is_named_by_its_version() {
        assert_eq!(
            system_of("pgbench (PostgreSQL) 15.14 (Debian 15.14-1.pgdg120+1)\n"),
            "pgbench 15.14"
        );
    }

    #[test]
    fn a_peer_whose_snapshots_disagree_with_a_replay_is_marked() {
        let lines = [
            r#"{"system":"cqrs-es 0.5.0","workload":"load-1000","concurrency":1,"snapshots":true,"snapshot_equals_replay":false,"ops_per_sec":400.0}"#.to_owned(),
        ];

        let table = summary(&lines).unwrap();

        assert!(table.contains("load-1000 (snapshots) | cqrs-es 0.5.0 (wrong state) | 1 |"));
    }

    #[test]
    fn the_spread_is_the_median_and_the_extremes() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 10.0]), Some((3.0, 1.0, 10.0)));
        assert_eq!(spread(&[]), None);
    }

    #[test]
    fn pgbench_figures_are_read_from_its_report() {
        let report = "number of clients: 8\n\
                      number of transactions actually processed: 192510\n\
                      latency average = 0.415 ms\n\
                      tps = 19251.123456 (without initial connection time)\n";

        assert_eq!(parse_pgbench(report).unwrap(), (192_510, 19_251.123_456));
        assert!(parse_pgbench("connection refused").is_err());
    }

    #[test]
    fn the_summary_gives_medians_ranges_and_strata_over_each_system() {
        let lines: Vec<String> = [
            r#"{"system":"strata 0.1.0","workload":"append","concurrency":8,"ops_per_sec":9000.0}"#,
            r#"{"system":"strata 0.1.0","workload":"append","concurrency":8,"ops_per_sec":11000.0}"#,
            r#"{"system":"cqrs-es 0.5.0","workload":"append","concurrency":8,"ops_per_sec":4000.0}"#,
            r#"{"system":"cqrs-es 0.5.0","workload":"append","concurrency":8,"ops_per_sec":6000.0}"#,
            r#"{"system":"pgbench 15","workload":"ceiling-insert-only","concurrency":8,"ops_per_sec":40000.0}"#,
            r#"{"system":"strata 0.1.0","workload":"load-1000","concurrency":1,"snapshots":true,"ops_per_sec":800.0}"#,
            r#"{"system":"cqrs-es 0.5.0","workload":"load-1000","concurrency":1,"snapshots":true,"ops_per_sec":400.0}"#,
        ]
        .map(str::to_owned)
        .to_vec();

        let table = summary(&lines).unwrap();

        assert!(table.contains("append C=8 | cqrs-es 0.5.0 | 2 | 5000 (4000-6000) | 2.00x\n"));
        assert!(table.contains("append C=8 | strata 0.1.0 | 2 | 10000 (9000-11000) | \n"));
        assert!(
            table.contains("append C=8 | ceiling insert-only | 1 | 40000 (40000-40000) | 0.25x\n")
        );
        assert!(
            table.contains("load-1000 (snapshots) | cqrs-es 0.5.0 | 1 | 400 (400-400) | 2.00x\n")
        );
    }
}
