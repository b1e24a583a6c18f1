//! `cargo xtask`: the project's tasks (database, local service, tokens, tests, the API contract,
//! tidy checks, CI).

mod bench;
mod ci;
mod contract;
mod instructions;
mod peer;
mod postgres;
mod process;
mod service;
mod suite;
mod tidy;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Project tasks for Strata, run as `cargo xtask <task>` from anywhere in the workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Create the PostgreSQL development database if missing and apply the migrations.
    Db,
    /// Run the service locally in development mode, projector included (it creates and migrates
    /// the database itself): on SQLite in ./data, or on DATABASE_URL when set.
    Dev {
        /// Extra arguments for `strata-web`, after `--` (e.g. `-- --http-addr 127.0.0.1:3000`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Print a signed development JWT on stdout.
    Token(token::TokenArgs),
    /// Run the benchmark workloads in release mode: one JSON line per workload on stdout.
    Bench(bench::BenchArgs),
    /// Run the whole test suite against PostgreSQL (`cargo test --workspace`).
    Test {
        /// Extra arguments for `cargo test`, after `--` (e.g. `-- -p strata-domain`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Fuzz the API against its own /openapi.json with schemathesis (on PATH), as an operator and
    /// as a customer, on a fresh PostgreSQL database; reports in target/contract/.
    Contract,
    /// Check the architecture and house rules (dependency rule, doc lines, no ignored tests, CI files).
    Tidy,
    /// The checks CI runs (fmt check, clippy, tidy, the test suite, then the contract) with the
    /// tools at hand; CI itself is `.ci/run`, which also starts PostgreSQL and installs the test
    /// tools.
    Ci,
}

fn main() -> ExitCode {
    // Print the error chain only: a backtrace of the task runner helps nobody.
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let root = process::workspace_root()?;
    match cli.task {
        Task::Db => service::db(&root),
        Task::Dev { args } => service::dev(&root, &args),
        Task::Token(args) => token::run(&args),
        Task::Bench(args) if args.instructions => instructions::run(&root, &args),
        Task::Bench(args) if args.peer || args.ceiling => peer::run(&root, &args),
        Task::Bench(args) => bench::run(&root, &args),
        Task::Test { args } => suite::run(&root, &args),
        Task::Contract => contract::run(&root),
        Task::Tidy => tidy::run(&root),
        Task::Ci => ci::run_all(&root),
    }
}
