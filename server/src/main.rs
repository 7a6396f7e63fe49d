//! `socketswarm`: parse the command line, start logging, dispatch.
use clap::Parser;
use server::config::{Cli, Command, PlanCommand};

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
        Some(Command::Agent(args)) => std::process::exit(server::agents::agent::run(args).await),
        Some(Command::Serve(args)) => server::serve(*args).await,
        Some(Command::Run(args)) => {
            let outputs = match server::cli::Outputs::parse(&args.out) {
                Ok(o) => server::cli::Outputs {
                    report: args.report.clone(),
                    server: args.server.clone(),
                    token: args.token.clone(),
                    ..o
                },
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(server::cli::EXIT_CANNOT_RUN);
                }
            };
            let code = server::cli::run(
                &args.plan,
                &outputs,
                std::time::Duration::from_millis(args.tick_ms.max(50)),
            )
            .await;
            std::process::exit(code)
        }
        Some(Command::Plan(PlanCommand::Init { file })) => {
            std::process::exit(server::cli::init(file.as_deref()))
        }
        Some(Command::Plan(PlanCommand::Check { file })) => {
            std::process::exit(server::cli::check(&file))
        }
        Some(Command::Plan(PlanCommand::Schema)) => {
            println!("{}", server::cli::schema());
            Ok(())
        }
        Some(Command::Plan(PlanCommand::ExportSchema)) => {
            println!("{}", server::export::schema());
            Ok(())
        }
        None => server::serve(cli.serve).await,
    }
}
