//! `strata-web`: parse settings, start telemetry, build the application, serve until stopped.

use std::process::ExitCode;

use clap::Parser;
use strata_web::{Application, Cli, Command, Settings, telemetry};

// mimalloc instead of glibc's malloc: decision 0017.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The whole cause chain on one line; no backtrace for an operator's mistake.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let storage = cli.serve.storage()?;
            Ok(strata_wiring::migrate(&storage).await?)
        }
        Command::Serve => {
            let settings = Settings::from_args(cli.serve)?;
            Ok(Application::build(settings)
                .await?
                .run_until_stopped()
                .await?)
        }
        Command::Roles { action } => {
            let storage = cli.serve.storage()?;
            let (step, args) = action.step();
            let done = strata_wiring::roles(&storage, step, &args.prefix, args.print).await?;
            print!("{done}");
            Ok(())
        }
        Command::Backup { to } => {
            let storage = cli.serve.storage()?;
            print!("{}", strata_wiring::backup(&storage, &to).await?);
            Ok(())
        }
    }
}
