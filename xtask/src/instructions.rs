//! `cargo xtask bench --instructions`: the instructions Strata's process (and with `--peer`
//! the peer's) executes per operation, counted by callgrind. Timings on this shared machine
//! move by a quarter between runs; an instruction count moves by well under a percent, so a
//! change that cuts work shows even when the clock cannot.
//!
//! Each workload runs twice under `valgrind --tool=callgrind`, with `few` and `many`
//! operations: start-up, the fresh database and the set-up are the same in both runs, so the
//! difference of the two totals over the difference of the operations is what one operation
//! costs. The database server's work is not counted (it runs outside valgrind; this machine's
//! virtual CPU has no instruction counter for `perf`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::bench::{self, BenchArgs};
use crate::peer::{PEER_BINARY, PEER_MANIFEST};
use crate::process::{self, cargo};

/// The workloads counted, and the operations of their two runs.
const COUNTED: &[(&str, Option<bool>, u64, u64)] = &[
    ("append", None, 300, 1_200),
    ("load-1000", Some(false), 10, 40),
    ("load-1000", Some(true), 300, 1_200),
];

pub fn run(root: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.ceiling && args.reps <= 1 && !args.with_keys && args.seconds.is_none(),
        "--instructions counts append and load-1000 as they are, by operations: --ceiling, \
         --reps, --with-keys and --seconds do not apply to it"
    );
    for workload in &args.workloads {
        anyhow::ensure!(
            COUNTED.iter().any(|&(counted, ..)| counted == workload),
            "--instructions has no workload {workload:?} (it counts append and load-1000)"
        );
    }
    process::on_path("valgrind").context(
        "--instructions counts with callgrind: install valgrind (Debian: apt-get install valgrind)",
    )?;
    let url = bench::database_url(args)?;
    let harness = harness(root)?;
    let mut systems = vec![("strata", harness)];
    if args.peer {
        anyhow::ensure!(
            url.starts_with("postgres"),
            "the peer runs on PostgreSQL only"
        );
        process::run(cargo(root).args(["build", "--release", "--manifest-path", PEER_MANIFEST]))?;
        systems.push(("peer", root.join(PEER_BINARY)));
    }
    let concurrency = args.concurrency.unwrap_or(1);
    // Kept after the run: `callgrind_annotate FILE` shows where the instructions went.
    let out = root.join("target/callgrind");
    std::fs::create_dir_all(&out).context("cannot make target/callgrind")?;
    let mut counts = Vec::new();
    for &(workload, snapshots, few, many) in COUNTED {
        if !args.workloads.is_empty() && !args.workloads.iter().any(|w| w == workload) {
            continue;
        }
        if args.snapshots.is_some() && snapshots.is_some() && args.snapshots != snapshots {
            continue;
        }
        let (few, many) = match args.ops {
            Some(ops) => (ops, ops * 4),
            None => (few, many),
        };
        for (system, program) in &systems {
            let run = Counted {
                program,
                workload,
                snapshots,
                concurrency: if workload == "append" { concurrency } else { 1 },
                url: &url,
            };
            let phase = match snapshots {
                Some(true) => "-snapshots",
                Some(false) => "-replay",
                None => "",
            };
            let file = |ops: u64| out.join(format!("{system}-{workload}{phase}-{ops}.out"));
            // One after the other: a failing short run stops before the long one.
            let few_total = run.instructions(few, &file(few))?;
            let many_total = run.instructions(many, &file(many))?;
            let count = line(system, &run, [few, many], [few_total, many_total])?;
            let json = serde_json::to_string(&count).context("cannot write a count")?;
            eprintln!("instructions: {json}");
            println!("{json}");
            counts.push(count);
        }
    }
    eprint!("{}", summary(&counts));
    Ok(())
}

/// One workload of one system under callgrind.
struct Counted<'a> {
    program: &'a Path,
    workload: &'a str,
    snapshots: Option<bool>,
    concurrency: usize,
    url: &'a str,
}

impl Counted<'_> {
    fn command(&self, ops: u64, out: &Path) -> Command {
        let mut command = Command::new("valgrind");
        command
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(self.program)
            .args(["--workload", self.workload])
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--ops", &ops.to_string()]);
        if let Some(on) = self.snapshots {
            command.args(["--snapshots", &bench::on_off(on)]);
        }
        command
            .env("DATABASE_URL", self.url)
            .env("RUST_LOG", "warn")
            // The figures are callgrind's; the workloads' lines would only confuse.
            .stdout(std::process::Stdio::null());
        command
    }

    /// The instructions of one run with `ops` operations.
    fn instructions(&self, ops: u64, out: &Path) -> anyhow::Result<u64> {
        let mut command = self.command(ops, out);
        let output = command
            .output()
            .with_context(|| format!("cannot run valgrind on {}", self.program.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "{} {} under callgrind failed: {}",
            self.program.display(),
            self.workload,
            String::from_utf8_lossy(&output.stderr)
        );
        let text = std::fs::read_to_string(out)
            .with_context(|| format!("callgrind wrote no {}", out.display()))?;
        totals(&text).with_context(|| format!("no totals in {}", out.display()))
    }
}

/// The `totals:` (or `summary:`) line of a callgrind output file: instructions executed.
fn totals(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// One workload of one system, counted: what `--instructions` prints as a JSON line.
#[derive(Debug, Serialize)]
struct Count<'a> {
    system: &'a str,
    workload: &'a str,
    snapshots: Option<bool>,
    concurrency: usize,
    instructions_per_op: u64,
    ops: [u64; 2],
    instructions: [u64; 2],
}

impl Count<'_> {
    /// The workload as the summary names it.
    fn name(&self) -> String {
        let phase = match self.snapshots {
            Some(true) => " (snapshots on)",
            Some(false) => " (snapshots off)",
            None => "",
        };
        format!("{}{phase}", self.workload)
    }
}

fn line<'a>(
    system: &'a str,
    run: &Counted<'a>,
    ops: [u64; 2],
    totals: [u64; 2],
) -> anyhow::Result<Count<'a>> {
    anyhow::ensure!(
        totals[1] > totals[0] && ops[1] > ops[0],
        "{system} {}: {} instructions for {} operations, {} for {}: more work counted less",
        run.workload,
        totals[0],
        ops[0],
        totals[1],
        ops[1]
    );
    Ok(Count {
        system,
        workload: run.workload,
        snapshots: run.snapshots,
        concurrency: run.concurrency,
        instructions_per_op: (totals[1] - totals[0]) / (ops[1] - ops[0]),
        ops,
        instructions: totals,
    })
}

/// Strata's count beside the peer's, per workload, when both ran.
fn summary(counts: &[Count<'_>]) -> String {
    let mut text = String::from("\ninstructions per operation (callgrind, client process):\n");
    for count in counts {
        let name = format!("{} {}", count.system, count.name());
        text.push_str(&format!(
            "  {name:<40} C={:<3} {:>12}\n",
            count.concurrency, count.instructions_per_op
        ));
    }
    for strata in counts.iter().filter(|c| c.system == "strata") {
        let peer = counts.iter().find(|c| {
            c.system == "peer" && c.workload == strata.workload && c.snapshots == strata.snapshots
        });
        if let Some(peer) = peer {
            #[allow(clippy::cast_precision_loss)] // a ratio of two counts, printed to 2 places
            let ratio = peer.instructions_per_op as f64 / strata.instructions_per_op as f64;
            text.push_str(&format!(
                "  peer / strata, {}: {ratio:.2}x\n",
                strata.name()
            ));
        }
    }
    text
}

/// Builds the harness in release mode and returns its executable (cargo names it).
fn harness(root: &Path) -> anyhow::Result<PathBuf> {
    let messages = process::capture(&mut build_command(root))?;
    executable(&messages).context("cargo named no executable of the harness")
}

/// `cargo bench --no-run` of the harness, naming what it built in JSON messages.
fn build_command(root: &Path) -> Command {
    let mut command = bench::harness_build(root);
    command.args(["--no-run", "--message-format=json"]);
    command
}

/// The executable of the `workloads` bench target in cargo's JSON messages.
fn executable(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["target"]["name"] == "workloads")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::inspect;

    #[test]
    fn callgrind_runs_one_phase_of_the_workload_with_the_ops_given() {
        let run = Counted {
            program: Path::new("/t/workloads"),
            workload: "load-1000",
            snapshots: Some(false),
            concurrency: 1,
            url: "postgres://h/db",
        };

        let command = run.command(40, Path::new("/o/x.out"));

        assert_eq!(command.get_program(), "valgrind");
        assert_eq!(
            inspect::args(&command),
            [
                "--tool=callgrind",
                "--callgrind-out-file=/o/x.out",
                "/t/workloads",
                "--workload",
                "load-1000",
                "--concurrency",
                "1",
                "--ops",
                "40",
                "--snapshots",
                "off"
            ]
        );
        assert_eq!(
            inspect::env(&command, "DATABASE_URL"),
            Some(Some("postgres://h/db".to_owned()))
        );
    }

    #[test]
    fn the_totals_are_read_from_callgrinds_file() {
        let text = "version: 1\ncmd: x\nevents: Ir\nfn=(1) main\n0 5\ntotals: 123456789\n";
        assert_eq!(totals(text), Some(123_456_789));
        assert_eq!(totals("summary: 42\n"), Some(42));
        assert_eq!(totals("events: Ir\n"), None);
    }

    #[test]
    fn one_operation_costs_the_difference_over_the_difference() {
        let run = Counted {
            program: Path::new("w"),
            workload: "append",
            snapshots: None,
            concurrency: 1,
            url: "u",
        };

        let counted = line("strata", &run, [100, 400], [5_000_000, 8_000_000]).unwrap();

        assert_eq!(counted.instructions_per_op, 10_000);
        assert!(line("strata", &run, [100, 400], [8_000_000, 5_000_000]).is_err());
    }

    #[test]
    fn the_summary_sets_the_peer_beside_strata() {
        let count = |system, instructions_per_op| Count {
            system,
            workload: "append",
            snapshots: None,
            concurrency: 1,
            instructions_per_op,
            ops: [0, 0],
            instructions: [0, 0],
        };
        let counts = [count("strata", 100_000), count("peer", 250_000)];

        let text = summary(&counts);

        assert!(text.contains("peer / strata, append: 2.50x"), "{text}");
    }

    #[test]
    fn the_harness_is_built_not_run() {
        // Without --no-run, cargo bench runs every workload of the harness.
        assert_eq!(
            inspect::args(&build_command(Path::new("."))),
            [
                "bench",
                "--package",
                "strata-tests",
                "--bench",
                "workloads",
                "--no-run",
                "--message-format=json"
            ]
        );
    }

    #[test]
    fn the_harness_is_found_among_cargos_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"strata_tests"},"executable":null}
{"reason":"compiler-artifact","target":{"name":"workloads"},"executable":"/t/release/deps/workloads-1"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable(messages),
            Some(PathBuf::from("/t/release/deps/workloads-1"))
        );
    }
}
