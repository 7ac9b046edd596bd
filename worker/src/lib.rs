//! # plus-worker
//!
//! The worker that runs one job inside a Fargate task (or, on the local
//! backend, as a child process of `plus`), per the contract in DESIGN.md.
//!
//! # Layout
//!
//! One job's life is [`lifecycle::execute`]: claim -> watchers -> mode ->
//! record. Layers only import downwards (modes -> job -> script -> output):
//!
//! ```text
//! lib.rs              run / main / main_entry: config, signals, backend, lease
//! config.rs           the container's environment, validated all at once
//! lifecycle.rs        execute: claim -> watchers -> mode -> record
//! outcome.rs          Outcome: how a run ended, and its exit code
//! signals.rs          SIGTERM / SIGINT -> the shutdown token
//! job/
//!   claim.rs          the conditional INITIALIZING -> RUNNING write; refusal sentences
//!   context.rs        JobContext (what the modes share) and the script environment
//!   control.rs        Control / StopReason: stop the work once, remember why
//!   watchers.rs       what runs beside the work: heartbeat, timeout, SIGTERM, event flush
//!   heartbeat.rs      the lease refresh; notices a cancel request or a lost lease; writes progress
//!   ending.rs         Ending: a Finish to record, or a lost lease; retry rules on a failure
//!   record.rs         the final write: log, last events, one conditional write
//!   usage.rs          this attempt's usage (task size x claim to end) and cost
//!   metrics.rs        the CloudWatch Embedded Metric Format record of the job's end
//! modes/
//!   script.rs         RUN_SCRIPT: the script once
//!   action.rs         RUN_ACTION: a stored Action's script, params merged
//!   collection/       RUN_COLLECTION
//!     mod.rs          run and finish the collection; failure tolerance
//!     item.rs         Item, Done (a results line), Shard
//!     reader.rs       items page by page into a bounded channel
//!     per_item.rs     one process per item
//!     streaming.rs    one long-lived process, JSON lines in and out
//!     results/mod.rs  commit finished items in item order; compose results.jsonl
//!     results/store.rs the parts and manifests in the blob store; the part uploader
//!     error.rs        CollectionError
//! script/
//!   prepare.rs        load the script, write the workspace, resolve the Program: once
//!   process.rs        start / start_piped / run_until; Running (stop, finish)
//!   program.rs        how a script file is executed (interpreter, shebang, /bin/sh)
//!   workspace.rs      the job's fresh directory (the script's user's)
//!   isolation.rs      non-dumpable, subreaper, the script's user; reaping strays
//!   artifacts.rs      the result file (large ones offloaded), output file upload
//!   error.rs          ScriptError
//! output/
//!   events.rs         EventSink: the batched live event stream (flush)
//!   collector.rs      the log collector: log file + line splitting for the live view
//!   progress.rs       ProgressCell: progress the heartbeat writes within a second
//! metadata.rs         the ECS task metadata endpoint (task ARN, vCPUs, memory)
//! telemetry.rs        JSON logs
//! ```
//!
//! [`run`] is the whole worker: `main` only adds telemetry and signals.

pub mod config;
pub mod job;
pub mod lifecycle;
pub mod metadata;
pub mod modes;
pub mod outcome;
pub mod output;
pub mod script;
pub mod signals;
pub mod telemetry;

pub use config::{Config, ConfigError};
pub use outcome::Outcome;

use plus_jobs::Backend;
use tokio_util::sync::CancellationToken;

/// Runs the job `config` names until it ends or `shutdown` fires (SIGTERM).
/// Scripts run as `config.script_user`; when the job ends, no process a
/// script started is left (see [`script::isolation`]).
pub async fn run(mut config: Config, shutdown: CancellationToken) -> Outcome {
    script::isolation::set_script_user(config.script_user);
    if config.script_user.is_none() && nix::unistd::geteuid().is_root() {
        tracing::warn!("PLUS_SCRIPT_USER opts out: scripts run as root, and can read the worker's credentials through /proc");
    }
    let zombies = tokio::spawn(script::isolation::reap_zombies());
    let outcome = async {
        let backend = match Backend::open(&config.backend).await {
            Ok(backend) => backend,
            Err(e) => {
                return Outcome::StoreUnreachable(format!("the job store cannot be opened: {e}"))
            }
        };
        let (lease, size) = identify(&config).await;
        // What ECS says the task has wins over PLUS_TASK_CPU/MEMORY.
        config.task_size = size.or(config.task_size);
        lifecycle::execute(config, backend, lease, shutdown).await
    }
    .await;
    zombies.abort();
    script::isolation::reap_strays().await;
    outcome
}

/// This worker's identity and lease: the ECS task ARN from the metadata
/// endpoint, or `local:{host}:{pid}` outside ECS.
pub async fn task_arn(config: &Config) -> String {
    identify(config).await.0
}

/// [`task_arn`] and the task's size from the same read of the metadata
/// endpoint (none outside ECS).
pub async fn identify(config: &Config) -> (String, Option<plus_jobs::pricing::TaskSize>) {
    let local = format!(
        "local:{}:{}",
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into()),
        std::process::id()
    );
    match &config.metadata_uri {
        None => (local, None),
        Some(uri) => match metadata::fetch(uri).await {
            Ok(m) => {
                let size = m.task_size();
                if m.task_arn.is_empty() {
                    (local, size)
                } else {
                    (m.task_arn, size)
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "using a local task id as the lease");
                (local, None)
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
    // Before the runtime's threads and any child exist.
    script::isolation::harden();
    match runtime() {
        Ok(rt) => rt.block_on(main_entry()),
        Err(e) => {
            eprintln!("plus-worker: the async runtime could not start: {e}");
            1
        }
    }
}

/// The process entry point shared by `plus-worker` and `plus worker`:
/// hardening ([`script::isolation::harden`]: non-dumpable, subreaper), JSON
/// telemetry, configuration, SIGTERM/SIGINT, [`run`]; returns the exit code.
pub async fn main_entry() -> u8 {
    script::isolation::harden();
    telemetry::init();
    for problem in script::isolation::hardening_problems() {
        tracing::warn!("{problem}");
    }
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(problems = ?e.problems, "bad configuration");
            eprintln!("plus-worker: {e}");
            return Outcome::BadConfig(String::new()).exit_code();
        }
    };
    if config.secrets_on_stdin {
        // Read before anything else, to its end: the pipe is then empty.
        match config::EnvValues::read(std::io::stdin().lock()) {
            Ok(values) => config.env_secrets = values,
            Err(e) => {
                eprintln!("plus-worker: {e}");
                return Outcome::BadConfig(String::new()).exit_code();
            }
        }
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(signals::forward(shutdown.clone()));
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
