//! `plus`: launch and follow jobs. See the crate docs and the README.

use clap::Parser as _;
use plus_launcher::cli::{self, Cli, Command};

fn main() -> std::process::ExitCode {
    // Its environment holds the user's AWS variables, and a local worker
    // (and its scripts) runs as its child: keep its /proc files closed to
    // them (the worker hardens itself the same way).
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("plus: warning: could not make this process non-dumpable: {e}");
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return std::process::ExitCode::from(cli::parse_failed(&e)),
    };
    let json = cli.json;
    if matches!(cli.command, Command::Worker) {
        // The worker builds its own runtime (a small blocking pool).
        let code = plus_worker::main();
        // Its job ended: a local worker starts the queued jobs it made room for.
        cli::dispatch_after_local_job();
        return std::process::ExitCode::from(code);
    }
    // Warnings (a record the store skipped, a job the monitor could not
    // settle) reach the person at the terminal; RUST_LOG widens it.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plus: the async runtime could not start: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            cli::print_error(&e, json);
            std::process::ExitCode::from(2)
        }
    }
}
