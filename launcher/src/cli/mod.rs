//! # The `plus` command line
//!
//! Parsing, then one call into [`crate::ops::Launcher`], then printing: the
//! only place in the crate that prints to a terminal.
//!
//! - [`args`]: the grammar (clap).
//! - [`launch`]: `plus run`, `plus launch` (also `--shards`) and `plus retry`.
//! - [`follow`]: following a job's output to its end.
//! - [`print`](mod@print): a job's record, lists and events, as text or `--json`.
//! - [`data`]: `plus collection ...` and `plus action ...`.
//! - [`error`]: why a command stopped, and how it is worded.
//! - [`schedules`]: `plus schedule ...`.
//! - [`serve`]: `plus serve`, the HTTP API on a loopback port.
//! - [`usage`](mod@usage): `plus usage`, and the usage line of `plus status`.
//! - [`views`]: what a job shows: `status`, `logs`, `results`, `outputs`,
//!   a sharded job's events, `list`.

pub mod args;
pub mod data;
pub mod error;
pub mod follow;
pub mod launch;
pub mod print;
pub mod schedules;
pub mod serve;
pub mod usage;
pub mod views;

use std::path::PathBuf;

use plus_jobs::{Backend, BackendConfig, JobStatus, RunMode};

pub use args::{
    ActionCommand, BackendKind, Cli, CollectionCommand, Command, ScheduleCommand, ScriptOpts,
};
pub use error::{parse_failed, print_error, report, CliError};

use crate::{
    ops::{admission::Limits, monitor::Policy, Launcher},
    runner::{local::LOCAL_BUCKET, LocalRunner, Runner},
};

impl Cli {
    fn username(&self) -> String {
        self.user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "local".to_owned())
    }

    fn home(&self) -> PathBuf {
        self.home.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".plus")
        })
    }

    fn backend_kind(&self) -> BackendKind {
        self.backend.unwrap_or_else(|| {
            if std::env::var("DYNAMO_TABLE").is_ok_and(|t| !t.is_empty()) {
                BackendKind::Aws
            } else {
                BackendKind::Local
            }
        })
    }

    /// The launcher the flags choose: the runner is picked here, once.
    async fn launcher(&self) -> Result<Launcher, CliError> {
        match self.backend_kind() {
            BackendKind::Local => {
                let dir = self.home();
                check_home(&dir)?;
                let backend = Backend::open(&BackendConfig::Local {
                    dir: dir.clone(),
                    bucket: LOCAL_BUCKET.into(),
                })
                .await
                .map_err(|source| CliError::OpenLocal {
                    dir: dir.display().to_string(),
                    source,
                })?;
                let limits = Limits::local_from(|k| std::env::var(k).ok())
                    .map_err(|problems| CliError::Usage(problems.join("; ")))?;
                Ok(
                    Launcher::new(backend, Runner::Local(LocalRunner::new(dir)))
                        .with_limits(limits),
                )
            }
            BackendKind::Aws if self.command.starts_work() => {
                Ok(crate::aws::launcher_from_env().await?)
            }
            // Reading needs only the tables and the bucket.
            BackendKind::Aws => Ok(crate::aws::reader_from_env().await?),
        }
    }
}

impl Command {
    /// Whether the command starts, stops or looks at workers (and so needs
    /// the ECS settings on AWS); reading records needs only the stores.
    fn starts_work(&self) -> bool {
        matches!(
            self,
            Self::Run { .. }
                | Self::Launch { .. }
                | Self::Retry { .. }
                | Self::Cancel { .. }
                | Self::Monitor { .. }
                | Self::Serve { .. }
        )
    }
}

/// After `plus worker` ended its job on the local backend
/// (`PLUS_LOCAL_DIR` names the local folder): one dispatcher pass, starting
/// the queued jobs the freed capacity admits, so queued work starts with
/// no command needed. Problems go to the worker's log; the monitor's pass
/// (`plus monitor`) and the next launch dispatch too. Nothing on AWS.
pub fn dispatch_after_local_job() {
    if std::env::var_os("PLUS_LOCAL_DIR").is_none() {
        return;
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(dispatch_local()),
        Err(e) => eprintln!("plus-worker: queued jobs were not dispatched: {e}"),
    }
}

async fn dispatch_local() {
    let Some(dir) = std::env::var_os("PLUS_LOCAL_DIR").map(PathBuf::from) else {
        return;
    };
    let limits = match Limits::local_from(|k| std::env::var(k).ok()) {
        Ok(limits) => limits,
        Err(problems) => {
            eprintln!(
                "plus-worker: queued jobs were not dispatched: {}",
                problems.join("; ")
            );
            return;
        }
    };
    let config = BackendConfig::Local {
        dir: dir.clone(),
        bucket: LOCAL_BUCKET.into(),
    };
    let result = match Backend::open(&config).await {
        Ok(backend) => {
            Launcher::new(backend, Runner::Local(LocalRunner::new(dir)))
                .with_limits(limits)
                .dispatch()
                .await
        }
        Err(e) => Err(e.into()),
    };
    if let Err(e) = result {
        eprintln!("plus-worker: queued jobs were not dispatched: {e}");
    }
}

/// Checks the local backend's folder before the store opens it, so a
/// folder that cannot be made or a file that is not a store is named with
/// the fix (the store's own error says neither).
fn check_home(dir: &std::path::Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|source| CliError::HomeUnusable {
        dir: dir.display().to_string(),
        source,
    })?;
    let db = dir.join(plus_jobs::backend::LOCAL_DB_FILE);
    let mut head = [0u8; 16];
    let read = std::fs::File::open(&db).and_then(|mut f| {
        use std::io::Read;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    });
    // SQLite files start with this header; an empty file is a new store.
    if let Ok(n) = read {
        if n > 0 && head[..n] != b"SQLite format 3\0"[..n] {
            return Err(CliError::CorruptStore {
                path: db.display().to_string(),
            });
        }
    }
    Ok(())
}

/// Resolves `plus serve --addr` (`127.0.0.1:8787`, `localhost:8787`,
/// `[::1]:0`), preferring a loopback address among those a name gives.
async fn serve_addr(addr: &str) -> Result<std::net::SocketAddr, CliError> {
    let unresolved = |why: String| {
        CliError::Usage(format!(
            "--addr {addr:?} {why}: give HOST:PORT, e.g. 127.0.0.1:8787 or localhost:8787"
        ))
    };
    let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| unresolved(format!("cannot be resolved ({e})")))?
        .collect();
    found
        .iter()
        .find(|a| a.ip().is_loopback() && a.is_ipv4())
        .or_else(|| found.iter().find(|a| a.ip().is_loopback()))
        .or_else(|| found.first())
        .copied()
        .ok_or_else(|| unresolved("names no address".into()))
}

/// Runs the command line; returns the process exit code.
///
/// # Errors
/// Anything that stops the command, as a sentence for people
/// ([`report`] words it with its causes).
pub async fn run(cli: Cli) -> Result<u8, CliError> {
    if matches!(cli.command, Command::Worker) {
        return Ok(plus_worker::main_entry().await);
    }
    let user = cli.username();
    let launcher = cli.launcher().await?;
    let json = cli.json;
    match &cli.command {
        Command::Worker => unreachable!(),
        Command::Serve { addr } => {
            let addr = serve_addr(addr).await?;
            serve::run(launcher, &user, addr, json).await?;
            Ok(0)
        }
        Command::Run { script, opts } => {
            let req = launch::script_request(&user, RunMode::RunScript, Some(script), opts)?;
            launch::launch_and_report(json, &launcher, &user, req, true).await
        }
        Command::Collection { command } => {
            data::run_collection(&launcher, &user, command, json).await
        }
        Command::Action { command } => data::run_action(&launcher, &user, command, json).await,
        Command::Schedule { command } => schedules::run(&launcher, &user, command, json).await,
        Command::Launch { .. } => launch::run_launch(&cli.command, json, &launcher, &user).await,
        Command::Status { job } => views::status(&launcher, &user, job, json).await,
        Command::Usage { since } => usage::run(&launcher, &user, since, json).await,
        Command::Results { job } => views::results(&launcher, &user, job).await,
        Command::Outputs { job, download } => {
            views::outputs(&launcher, &user, job, download.as_deref(), json).await
        }
        Command::Events {
            job,
            after,
            follow: keep,
        } => {
            if *keep {
                let parent = launcher.owned(&user, job).await?;
                if crate::ops::shards::is_parent(&parent) {
                    return views::follow_parent(&launcher, &user, &parent, *after).await;
                }
                let printer = follow::Printer {
                    stdout_to_stderr: false,
                    statuses: true,
                };
                let job = follow::follow(
                    &launcher,
                    &user,
                    job,
                    None,
                    printer,
                    *after,
                    &Default::default(),
                )
                .await?;
                return Ok(print::exit_for(&job));
            }
            let found = launcher.events(&user, job, *after, 10_000).await?;
            if crate::ops::shards::is_parent(&found.job) {
                return views::parent_events(&launcher, &user, &found.job, *after, json).await;
            }
            print::print_events(&found.events, json);
            Ok(0)
        }
        Command::Monitor {
            once,
            interval,
            stale_after,
            start_timeout,
        } => {
            let policy = Policy {
                stale_after: std::time::Duration::from_secs(*stale_after),
                start_timeout: std::time::Duration::from_secs(*start_timeout),
                ..Policy::default()
            };
            loop {
                let settled = launcher.monitor(&policy).await?;
                print::print_settled(&settled, json);
                if *once {
                    return Ok(0);
                }
                tokio::time::sleep(std::time::Duration::from_secs(*interval)).await;
            }
        }
        Command::Logs { job, attempt } => views::logs(&launcher, &user, job, *attempt).await,
        Command::Cancel { job } => {
            let j = launcher.cancel(&user, job).await?;
            if json {
                print::print_json(&j)?;
            } else if j.status() == JobStatus::Cancelled {
                eprintln!("job {job} is CANCELLED");
            } else {
                eprintln!("cancel requested: job {job}'s worker stops the script and records CANCELLED within one heartbeat");
            }
            Ok(0)
        }
        Command::Retry { job, wait } => {
            let launched = if *wait {
                launcher.following().retry(&user, job).await?
            } else {
                launcher.retry(&user, job).await?
            };
            launch::report_launched(json, &launcher, &user, launched, *wait).await
        }
        Command::List { status, limit } => {
            let status = match status {
                Some(s) => Some(JobStatus::from_str_name(&s.to_uppercase()).filter(|s| *s != JobStatus::Unspecified).ok_or_else(|| {
                    CliError::Usage(format!("--status {s:?} is not a status: use QUEUED, INITIALIZING, RUNNING, SUCCEEDED, FAILED, CANCELLED or INTERRUPTED"))
                })?),
                None => None,
            };
            views::list(&launcher, &user, status, *limit, json).await
        }
    }
}
