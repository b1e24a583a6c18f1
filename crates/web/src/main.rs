//! `strata-web`: parse settings, start telemetry, build the application, serve until stopped.

use clap::Parser;
use strata_web::{Application, Cli, Command, Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    let settings = Settings::from_args(cli.serve)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => strata_web::startup::migrate(&settings).await,
        Command::Serve => Ok(Application::build(settings)
            .await?
            .run_until_stopped()
            .await?),
    }
}
