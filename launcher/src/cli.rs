//! The `plus` command line: parsing and printing only; the work is done by
//! [`crate::ops::Launcher`].

use std::{io::Write, path::PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use plus_jobs::{job::status_name, Backend, BackendConfig, Job, JobStatus, RunMode};

use crate::{
    follow::{duration, follow, Printer},
    launch::{parse_params, LaunchRequest},
    local::{LocalRunner, LOCAL_BUCKET},
    ops::{Launched, Launcher, Runner},
};

/// Run long jobs on AWS Fargate (or on this machine) and follow them.
#[derive(Debug, Parser)]
#[command(name = "plus", version, about, propagate_version = true)]
pub struct Cli {
    /// Where jobs run: `local` (this machine, an embedded store) or `aws`
    /// (ECS Fargate, DynamoDB, S3). Default: aws when DYNAMO_TABLE is set,
    /// else local.
    #[arg(long, global = true, value_enum, env = "PLUS_BACKEND")]
    pub backend: Option<BackendKind>,
    /// The local backend's directory.
    #[arg(long, global = true, env = "PLUS_HOME")]
    pub home: Option<PathBuf>,
    /// Who you are (jobs are listed and shown per user).
    #[arg(long, global = true, env = "PLUS_USER")]
    pub user: Option<String>,
    /// Print one machine-readable JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// This machine: SQLite + a folder, the worker as a child process.
    Local,
    /// AWS: DynamoDB + S3 + ECS Fargate.
    Aws,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch a script and follow it to the end (exit 0 only if it succeeded).
    Run {
        /// The script file.
        script: PathBuf,
        #[command(flatten)]
        opts: ScriptOpts,
    },
    /// Launch a job; with --wait, follow it to the end.
    Launch {
        /// The script file (RUN_SCRIPT; with --collection, run per item).
        script: Option<PathBuf>,
        /// Run the stored action with this id (RUN_ACTION).
        #[arg(long, conflicts_with = "collection")]
        action: Option<String>,
        /// Run the script over every item whose owner is OWNER (RUN_COLLECTION).
        #[arg(long, value_name = "OWNER")]
        collection: Option<String>,
        /// RUN_COLLECTION: one process reads items as JSON lines on stdin.
        #[arg(long, requires = "collection")]
        streaming: bool,
        /// Follow the job until it ends.
        #[arg(long)]
        wait: bool,
        /// RUN_COLLECTION: split the items across N tasks (shard jobs
        /// `{job}-s0`..; the job's status aggregates them).
        #[arg(long, value_name = "N", requires = "collection")]
        shards: Option<u32>,
        /// RUN_COLLECTION: item failures tolerated (a count; default 0).
        #[arg(long, value_name = "N", requires = "collection")]
        tolerated_failures: Option<u32>,
        /// RUN_COLLECTION: item failures tolerated (a percentage).
        #[arg(long, value_name = "PERCENT", requires = "collection")]
        tolerated_failure_percent: Option<f32>,
        #[command(flatten)]
        opts: ScriptOpts,
    },
    /// Collections: import items from JSON lines, list them.
    Collection {
        #[command(subcommand)]
        command: crate::data::CollectionCommand,
    },
    /// Actions: store a script with default params, read it back.
    Action {
        #[command(subcommand)]
        command: crate::data::ActionCommand,
    },
    /// Show a job's record.
    Status {
        /// The job id.
        job: String,
    },
    /// Show a job's events (output, status, progress).
    Events {
        /// The job id.
        job: String,
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep following until the job ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Print a job's full log.
    Logs {
        /// The job id.
        job: String,
    },
    /// Cancel a job (a running script is stopped first).
    Cancel {
        /// The job id.
        job: String,
    },
    /// Relaunch an INTERRUPTED job, or run a finished one again as a new job.
    Retry {
        /// The job id.
        job: String,
        /// Follow the job until it ends.
        #[arg(long)]
        wait: bool,
    },
    /// List your jobs, newest first.
    List {
        /// Only jobs in this status (e.g. RUNNING).
        #[arg(long)]
        status: Option<String>,
        /// How many jobs at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Serve the HTTP API and the live job page on this machine (loopback
    /// only; prints the page's address and a fresh access token).
    Serve {
        /// Where to listen; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:8787")]
        addr: std::net::SocketAddr,
    },
    /// Settle jobs whose worker died without a word (stale heartbeat, stopped
    /// task, never started): relaunch interrupted ones while attempts remain,
    /// fail the rest with the reason.
    Monitor {
        /// One pass, then exit (for cron or a schedule).
        #[arg(long)]
        once: bool,
        /// Seconds between passes.
        #[arg(long, default_value_t = 60)]
        interval: u64,
        /// A RUNNING job's heartbeat older than this many seconds is stale.
        #[arg(long, default_value_t = 120)]
        stale_after: u64,
        /// An INITIALIZING job whose task has not started after this many seconds fails.
        #[arg(long, default_value_t = 600)]
        start_timeout: u64,
    },
    /// Run the worker (what a Fargate task runs; used by the local backend).
    #[command(hide = true)]
    Worker,
}

/// Options of a launched script.
#[derive(Debug, Clone, clap::Args)]
pub struct ScriptOpts {
    /// A parameter for the script (PLUS_PARAMS), as key=value.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// The program that runs the script (default: its shebang, else /bin/sh).
    #[arg(long)]
    pub interpreter: Option<String>,
    /// Stop the script and fail the job after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u32>,
    /// How many attempts an interrupted job gets.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Use this job id (a retried launch with the same id is harmless).
    #[arg(long)]
    pub id: Option<String>,
    /// The task's CPU units (AWS: 256, 512, 1024, 2048, 4096, 8192, 16384).
    #[arg(long)]
    pub cpu: Option<u32>,
    /// The task's memory in MiB (AWS: a valid Fargate combination with --cpu).
    #[arg(long)]
    pub memory: Option<u32>,
    /// The task's ephemeral storage in GiB (AWS: 21 to 200).
    #[arg(long, value_name = "GIB")]
    pub storage: Option<u32>,
    /// Run on Fargate Spot (cheaper; interrupted tasks are relaunched).
    #[arg(long)]
    pub spot: bool,
    /// Run with another worker image (a task definition is registered once for it).
    #[arg(long)]
    pub image: Option<String>,
    /// Arguments for the script.
    #[arg(last = true)]
    pub args: Vec<String>,
}

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

    async fn launcher(&self) -> Result<Launcher> {
        match self.backend_kind() {
            BackendKind::Local => {
                let dir = self.home();
                let backend = Backend::open(&BackendConfig::Local {
                    dir: dir.clone(),
                    bucket: LOCAL_BUCKET.into(),
                })
                .await
                .with_context(|| format!("opening the local backend in {}", dir.display()))?;
                Ok(Launcher {
                    backend,
                    runner: Runner::Local(LocalRunner::new(dir)),
                })
            }
            BackendKind::Aws => crate::aws::launcher_from_env().await,
        }
    }
}

/// Runs the command line; returns the process exit code.
///
/// # Errors
/// Anything that stops the command, as a sentence for people.
pub async fn run(cli: Cli) -> Result<u8> {
    if matches!(cli.command, Command::Worker) {
        return Ok(plus_worker::main_entry().await);
    }
    let user = cli.username();
    let launcher = cli.launcher().await?;
    match &cli.command {
        Command::Worker => unreachable!(),
        Command::Serve { addr } => {
            crate::http::run_local(launcher, &user, *addr, cli.json).await?;
            Ok(0)
        }
        Command::Run { script, opts } => {
            let req = script_request(&user, RunMode::RunScript, Some(script), opts)?;
            launch_and_report(&cli, &launcher, &user, req, true).await
        }
        Command::Collection { command } => crate::data::run_collection(launcher.jobs().as_ref(), command, cli.json).await,
        Command::Action { command } => crate::data::run_action(launcher.jobs().as_ref(), &user, command, cli.json).await,
        Command::Launch { script, action, collection, streaming, wait, shards, tolerated_failures, tolerated_failure_percent, opts } => {
            let mut req = match (action, collection) {
                (Some(action), _) => {
                    let mut req = script_request(&user, RunMode::RunAction, None, opts)?;
                    req.action_id = Some(action.clone());
                    req
                }
                (None, Some(owner)) => {
                    let Some(script) = script else { bail!("--collection needs a script to run per item: plus launch --collection OWNER SCRIPT") };
                    let mut req = script_request(&user, RunMode::RunCollection, Some(script), opts)?;
                    req.collection_owner = Some(owner.clone());
                    req
                }
                (None, None) => {
                    let Some(script) = script else { bail!("nothing to launch: give a SCRIPT, --action ID or --collection OWNER SCRIPT") };
                    script_request(&user, RunMode::RunScript, Some(script), opts)?
                }
            };
            req.streaming = *streaming;
            req.tolerated_failures = *tolerated_failures;
            req.tolerated_failure_percent = *tolerated_failure_percent;
            if let Some(n) = shards {
                return crate::shards::cli_launch(&launcher, &user, &req, *n, *wait, cli.json).await;
            }
            launch_and_report(&cli, &launcher, &user, req, *wait).await
        }
        Command::Status { job } => {
            let job = launcher.status(&user, job).await?;
            if cli.json {
                print_json(&job)?;
            } else {
                print_status(&job);
            }
            Ok(0)
        }
        Command::Events { job, after, follow: keep } => {
            if *keep {
                let printer = Printer { stdout_to_stderr: false, statuses: true };
                let job = follow(&launcher, &user, job, None, printer, *after).await?;
                return Ok(exit_for(&job));
            }
            let events = launcher.events(&user, job, *after, 10_000).await?;
            if cli.json {
                let list: Vec<serde_json::Value> = events.iter().map(|e| serde_json::to_value(e).unwrap_or_default()).collect();
                println!("{}", serde_json::json!({ "events": list }));
            } else {
                for e in &events {
                    println!("{:>20}  {:<8} {}", e.seq, e.kind, e.data.replace('\n', "\n                               "));
                }
            }
            Ok(0)
        }
        Command::Monitor { once, interval, stale_after, start_timeout } => {
            let policy = crate::monitor::Policy {
                stale_after: std::time::Duration::from_secs(*stale_after),
                start_timeout: std::time::Duration::from_secs(*start_timeout),
            };
            loop {
                let settled = launcher.monitor(&policy).await?;
                if cli.json {
                    println!("{}", serde_json::json!({ "settled": settled }));
                } else if settled.is_empty() {
                    eprintln!("monitor: every unfinished job has a live worker");
                } else {
                    for s in &settled {
                        eprintln!("monitor: job {} {}: {}", s.job_id, s.action, s.reason);
                    }
                }
                if *once {
                    return Ok(0);
                }
                tokio::time::sleep(std::time::Duration::from_secs(*interval)).await;
            }
        }
        Command::Logs { job } => match launcher.logs(&user, job).await? {
            Some(bytes) => {
                std::io::stdout().write_all(&bytes)?;
                Ok(0)
            }
            None => bail!("job {job} has no stored log yet (it is stored when the job ends); follow it live with `plus events {job} --follow`"),
        },
        Command::Cancel { job } => {
            let j = launcher.cancel(&user, job).await?;
            if cli.json {
                print_json(&j)?;
            } else if j.status() == JobStatus::Cancelled {
                eprintln!("job {job} is CANCELLED");
            } else {
                eprintln!("cancel requested: job {job}'s worker stops the script and records CANCELLED within one heartbeat");
            }
            Ok(0)
        }
        Command::Retry { job, wait } => {
            let launched = launcher.retry(&user, job, !*wait).await?;
            report_launched(&cli, &launcher, &user, launched, *wait).await
        }
        Command::List { status, limit } => {
            let status = match status {
                Some(s) => Some(JobStatus::from_str_name(&s.to_uppercase()).filter(|s| *s != JobStatus::Unspecified).with_context(|| {
                    format!("--status {s:?} is not a status: use INITIALIZING, RUNNING, SUCCEEDED, FAILED, CANCELLED or INTERRUPTED")
                })?),
                None => None,
            };
            let page = launcher.list(&user, status, None, *limit).await?;
            if cli.json {
                let jobs: Vec<serde_json::Value> = page.items.iter().map(plus_jobs::job::job_json).collect();
                println!("{}", serde_json::json!({ "jobs": jobs, "next": page.next }));
            } else if page.items.is_empty() {
                eprintln!("no jobs for {user} yet: start one with `plus run examples/hello.sh`");
            } else {
                println!("{:<38} {:<13} {:<15} {:<25} DURATION", "JOB", "STATUS", "MODE", "CREATED");
                for j in &page.items {
                    println!(
                        "{:<38} {:<13} {:<15} {:<25} {}",
                        j.object_id,
                        status_name(j.status()),
                        j.run_mode().as_str_name(),
                        j.created_at,
                        duration(j).unwrap_or_else(|| "-".into())
                    );
                }
            }
            Ok(0)
        }
    }
}

fn script_request(
    user: &str,
    mode: RunMode,
    script: Option<&PathBuf>,
    opts: &ScriptOpts,
) -> Result<LaunchRequest> {
    let (bytes, name) = match script {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| {
                format!(
                    "the script {} cannot be read: check the path (nothing was launched)",
                    path.display()
                )
            })?;
            (Some(bytes), path.display().to_string())
        }
        None => (None, String::new()),
    };
    Ok(LaunchRequest {
        username: user.to_owned(),
        run_mode: mode,
        script: bytes,
        script_name: name,
        interpreter: opts.interpreter.clone().unwrap_or_default(),
        args: opts.args.clone(),
        params: parse_params(&opts.params)?,
        timeout_seconds: opts.timeout,
        max_attempts: opts.max_attempts,
        job_id: opts.id.clone(),
        resources: plus_jobs::TaskResources {
            cpu: opts.cpu.unwrap_or(0),
            memory: opts.memory.unwrap_or(0),
            ephemeral_storage_gib: opts.storage.unwrap_or(0),
            spot: opts.spot,
            image: opts.image.clone().unwrap_or_default(),
        },
        ..LaunchRequest::default()
    })
}

async fn launch_and_report(
    cli: &Cli,
    launcher: &Launcher,
    user: &str,
    req: LaunchRequest,
    wait: bool,
) -> Result<u8> {
    let launched = launcher.launch(&req, !wait).await?;
    report_launched(cli, launcher, user, launched, wait).await
}

async fn report_launched(
    cli: &Cli,
    launcher: &Launcher,
    user: &str,
    launched: Launched,
    wait: bool,
) -> Result<u8> {
    let id = launched.job.object_id.clone();
    if !wait {
        if cli.json {
            println!(
                "{}",
                serde_json::json!({ "job_id": id, "status": status_name(launched.job.status()), "created": launched.created })
            );
        } else {
            eprintln!("launched job {id} ({})", status_name(launched.job.status()));
            eprintln!("  follow it: plus events {id} --follow");
        }
        return Ok(0);
    }
    if !cli.json {
        eprintln!("● job {id} launched");
    }
    // Ctrl-C reaches the worker too (same process group): it stops the
    // script and saves the job as INTERRUPTED, and we wait to show that.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupting: the worker saves the job's state first...");
        }
    });
    let printer = Printer {
        stdout_to_stderr: cli.json,
        statuses: !cli.json,
    };
    let job = follow(launcher, user, &id, launched.worker, printer, 0).await?;
    if cli.json {
        print_json(&job)?;
    } else {
        print_summary(&job);
    }
    Ok(exit_for(&job))
}

fn exit_for(job: &Job) -> u8 {
    u8::from(job.status() != JobStatus::Succeeded)
}

fn print_json(job: &Job) -> Result<()> {
    println!("{}", serde_json::to_string(&plus_jobs::job::job_json(job))?);
    Ok(())
}

fn print_summary(job: &Job) {
    let id = &job.object_id;
    let took = duration(job)
        .map(|d| format!(" in {d}"))
        .unwrap_or_default();
    match job.status() {
        JobStatus::Succeeded => eprintln!("✔ job {id} SUCCEEDED{took}"),
        status => {
            eprintln!("✘ job {id} {}{took}: {}", status_name(status), job.error);
            if !job.log_key.is_empty() {
                eprintln!("  full log: plus logs {id}");
            }
            if status == JobStatus::Interrupted {
                eprintln!("  resume it: plus retry {id} --wait");
            }
        }
    }
}

fn print_status(job: &Job) {
    let row = |k: &str, v: &str| {
        if !v.is_empty() {
            println!("{k:<12}{v}");
        }
    };
    row("job", &job.object_id);
    row("status", status_name(job.status()));
    row("mode", job.run_mode().as_str_name());
    row("user", &job.username);
    row(
        "attempt",
        &job.attempt.map(|a| a.to_string()).unwrap_or_default(),
    );
    row("created", &job.created_at);
    row("started", &job.started_at);
    row("completed", &job.completed_at);
    row("duration", &duration(job).unwrap_or_default());
    row("task", &job.fargate_task_arn);
    row("heartbeat", &job.heartbeat_at);
    if let Some(p) = &job.progress {
        row(
            "progress",
            &format!("{} ok, {} failed of {}", p.succeeded, p.failed, p.total),
        );
    }
    row(
        "exit code",
        &job.exit_code.map(|c| c.to_string()).unwrap_or_default(),
    );
    row("error", &job.error);
    if let Some(r) = &job.result {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        plus_jobs::job::normalize_numbers(&mut v);
        row("result", &v.to_string());
    }
    if job.cancel_requested {
        row("cancel", "requested");
    }
    if !job.log_key.is_empty() {
        row("log", &format!("plus logs {}", job.object_id));
    }
}
