//! `plus`: launch and follow jobs. See the crate docs and the README.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = plus_launcher::cli::Cli::parse();
    match plus_launcher::cli::run(cli).await {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("plus: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
