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
//! - [`serve`]: `plus serve`, the HTTP API on a loopback port.
//! - [`views`]: what a job shows: `status`, `logs`, `results`, `outputs`,
//!   a sharded job's events, `list`.

pub mod args;
pub mod data;
pub mod error;
pub mod follow;
pub mod launch;
pub mod print;
pub mod serve;
pub mod views;

use std::path::PathBuf;

use plus_jobs::{Backend, BackendConfig, JobStatus, RunMode};

pub use args::{ActionCommand, BackendKind, Cli, CollectionCommand, Command, ScriptOpts};
pub use error::{report, CliError};

use crate::{
    ops::{monitor::Policy, Launcher},
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
                let backend = Backend::open(&BackendConfig::Local {
                    dir: dir.clone(),
                    bucket: LOCAL_BUCKET.into(),
                })
                .await
                .map_err(|source| CliError::OpenLocal {
                    dir: dir.display().to_string(),
                    source,
                })?;
                Ok(Launcher::new(backend, Runner::Local(LocalRunner::new(dir))))
            }
            BackendKind::Aws => Ok(crate::aws::launcher_from_env().await?),
        }
    }
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
            serve::run(launcher, &user, *addr, json).await?;
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
        Command::Launch { .. } => launch::run_launch(&cli.command, json, &launcher, &user).await,
        Command::Status { job } => views::status(&launcher, &user, job, json).await,
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
                let job = follow::follow(&launcher, &user, job, None, printer, *after).await?;
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
                    CliError::Usage(format!("--status {s:?} is not a status: use INITIALIZING, RUNNING, SUCCEEDED, FAILED, CANCELLED or INTERRUPTED"))
                })?),
                None => None,
            };
            views::list(&launcher, &user, status, *limit, json).await
        }
    }
}
