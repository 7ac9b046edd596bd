//! # plus-worker
//!
//! The worker that runs one job inside a Fargate task (or, on the local
//! backend, as a child process of `plus`), per the contract in DESIGN.md.
//!
//! ## Layout
//!
//! - [`config`]: the container's environment, validated all at once.
//! - [`runner`]: one job's life: load, check, claim, run, record; returns
//!   an [`Outcome`] that maps to the exit code.
//! - [`script`]: starting a script per the script contract and reading its
//!   output with bounded memory.
//! - [`events`]: the batched live event stream.
//! - [`action`], [`collection`]: the RUN_ACTION and RUN_COLLECTION modes.
//! - [`metadata`]: the ECS task metadata endpoint (task ARN, vCPUs).
//! - [`telemetry`]: JSON logs.
//!
//! [`run`] is the whole worker: `main` only adds telemetry and signals.

pub mod action;
pub mod collection;
pub mod config;
pub mod events;
pub mod metadata;
pub mod progress;
pub mod runner;
pub mod script;
pub mod telemetry;

pub use config::{Config, ConfigError};
pub use progress::ProgressCell;
pub use runner::Outcome;

use plus_jobs::Backend;
use tokio_util::sync::CancellationToken;

/// Runs the job `config` names until it ends or `shutdown` fires (SIGTERM).
pub async fn run(config: Config, shutdown: CancellationToken) -> Outcome {
    let backend = match Backend::open(&config.backend).await {
        Ok(backend) => backend,
        Err(e) => return Outcome::StoreUnreachable(format!("the job store cannot be opened: {e}")),
    };
    let lease = task_arn(&config).await;
    runner::execute(config, backend, lease, shutdown).await
}

/// This worker's identity and lease: the ECS task ARN from the metadata
/// endpoint, or `local:{host}:{pid}` outside ECS.
pub async fn task_arn(config: &Config) -> String {
    let local = format!(
        "local:{}:{}",
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into()),
        std::process::id()
    );
    match &config.metadata_uri {
        None => local,
        Some(uri) => match metadata::fetch(uri).await {
            Ok(m) if !m.task_arn.is_empty() => m.task_arn,
            Ok(_) => local,
            Err(e) => {
                tracing::warn!(error = %e, "using a local task id as the lease");
                local
            }
        },
    }
}

/// Blocking-pool threads at most (SQLite calls of the local store, file
/// I/O, DNS). Every thread that allocates gets a malloc arena of its own
/// that keeps its high-water mark: tokio's default pool (up to 512 threads)
/// let the worker's resident set grow by half over a 100k-item collection;
/// with two threads it stays within 15 % (BENCHMARKS.md, "Collections").
pub const BLOCKING_THREADS: usize = 2;

/// The worker's tokio runtime: one thread per core and a small blocking
/// pool ([`BLOCKING_THREADS`]).
///
/// # Errors
/// When the runtime cannot start (no threads).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
}

/// Runs the worker process to its end on its own [`runtime`]; returns the
/// exit code. Both `plus-worker` and `plus worker` call this (outside any
/// other runtime).
pub fn main() -> u8 {
    match runtime() {
        Ok(rt) => rt.block_on(main_entry()),
        Err(e) => {
            eprintln!("plus-worker: the async runtime could not start: {e}");
            1
        }
    }
}

/// The process entry point shared by `plus-worker` and `plus worker`: JSON
/// telemetry, configuration, SIGTERM/SIGINT, [`run`]; returns the exit code.
pub async fn main_entry() -> u8 {
    telemetry::init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(problems = ?e.problems, "bad configuration");
            eprintln!("plus-worker: {e}");
            return Outcome::BadConfig(String::new()).exit_code();
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(forward_signals(shutdown.clone()));
    let outcome = run(config, shutdown).await;
    match &outcome {
        Outcome::Succeeded | Outcome::Cancelled | Outcome::Interrupted => {
            tracing::info!(outcome = ?outcome, exit_code = outcome.exit_code(), "worker done");
        }
        Outcome::Failed(reason) => {
            tracing::info!(%reason, exit_code = 1, "worker done: the job failed")
        }
        Outcome::BadConfig(m) | Outcome::NotClaimable(m) | Outcome::StoreUnreachable(m) => {
            tracing::error!(reason = %m, exit_code = outcome.exit_code(), "worker stopped");
            eprintln!("plus-worker: {m}");
        }
    }
    outcome.exit_code()
}

async fn forward_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::warn!("SIGTERM: stopping the script and saving the job's state"),
        _ = int.recv() => tracing::warn!("SIGINT: stopping the script and saving the job's state"),
    }
    shutdown.cancel();
}
