//! `strata-projector`: parse the command line, log to stderr, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use strata_projector::console::LogWriter;
use strata_projector::settings::Cli;
use strata_projector::startup::run;

// mimalloc instead of glibc's malloc: decision 0017.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr (stdout carries the events), above a rebuild's progress bar.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(LogWriter::stderr())
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
