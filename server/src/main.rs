//! `socketswarm`: parse the command line, start logging, dispatch.
use clap::Parser;
use server::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A missing .env is fine; see .env.sample for every variable.
    let _ = dotenvy::dotenv();
    engine::install_crypto_provider();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Some(Command::Target(args)) => server::target(args).await,
        Some(Command::Serve(args)) => server::serve(args).await,
        None => server::serve(cli.serve).await,
    }
}
