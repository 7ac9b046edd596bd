//! The local adapter: the worker as a child process with exactly the
//! environment a Fargate task would get (plus `PLUS_LOCAL_DIR`, which points
//! it at the embedded store instead of DynamoDB and S3). The child process
//! and whether it is detached from this process's group stay in here.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use plus_jobs::Job;
use tokio::process::{Child, Command};

use super::{
    port::{RunnerError, TaskState},
    worker_ref::WorkerRef,
};

/// The table, stream table and bucket names the local backend uses.
pub const LOCAL_TABLE: &str = "plus-jobs";
/// See [`LOCAL_TABLE`].
pub const LOCAL_STREAMS_TABLE: &str = "plus-job-streams";
/// See [`LOCAL_TABLE`].
pub const LOCAL_BUCKET: &str = "plus-primary";

/// Starts workers on this machine.
#[derive(Clone, Debug)]
pub struct LocalRunner {
    /// The local directory (store file, blobs, worker logs).
    pub dir: PathBuf,
    /// The worker program and its leading arguments.
    pub worker: Vec<String>,
    /// Extra variables for the worker (tuning knobs such as
    /// `PLUS_HEARTBEAT_SECONDS`), taken from this process's `PLUS_*`
    /// variables.
    pub tuning: Vec<(String, String)>,
    /// Keep workers in this process's group, so Ctrl-C reaches them and
    /// they save their job as INTERRUPTED (for a caller that follows the
    /// job); otherwise each runs in its own group and outlives this process.
    pub attach: bool,
}

impl LocalRunner {
    /// A runner for `dir`. The worker is `PLUS_WORKER_BIN` when set, else
    /// this very program run as `plus worker` (the same code as the
    /// `plus-worker` binary).
    pub fn new(dir: PathBuf) -> Self {
        let worker = match std::env::var("PLUS_WORKER_BIN") {
            Ok(bin) if !bin.is_empty() => vec![bin],
            _ => vec![
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "plus".into()),
                "worker".into(),
            ],
        };
        let tuning = std::env::vars()
            .filter(|(k, _)| {
                k.starts_with("PLUS_")
                    && !matches!(
                        k.as_str(),
                        "PLUS_WORKER_BIN"
                            | "PLUS_HOME"
                            | "PLUS_USER"
                            | "PLUS_LOCAL_DIR"
                            | "PLUS_SECRETS_STDIN"
                    )
            })
            .chain(std::env::vars().filter(|(k, _)| k == "RUST_LOG"))
            .collect();
        Self {
            dir,
            worker,
            tuning,
            attach: false,
        }
    }

    /// The worker's environment for `job`: the container contract of
    /// DESIGN.md. Nothing else of this process's environment is passed on.
    ///
    /// # Errors
    /// [`RunnerError::Invalid`] when the job's id cannot be a `JOB_ID`.
    pub fn env_for(&self, job: &Job) -> Result<Vec<(String, String)>, RunnerError> {
        let stores = plus_jobs::contract::AwsSettings {
            region: "local".to_owned(),
            table: LOCAL_TABLE.to_owned(),
            streams_table: LOCAL_STREAMS_TABLE.to_owned(),
            bucket: LOCAL_BUCKET.to_owned(),
            endpoint_url: None,
            event_bus: None,
        };
        let mut env = super::port::worker_env(job, &stores)?;
        env.push(("PLUS_LOCAL_DIR".to_owned(), self.dir.display().to_string()));
        env.push((
            "PATH".to_owned(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ));
        env.extend(self.tuning.iter().cloned());
        Ok(env)
    }

    /// The worker's own log (its JSON lines), like a task's CloudWatch stream.
    pub fn worker_log(&self, job_id: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{job_id}.worker.jsonl"))
    }

    /// Starts a worker for `job` (detached from this process's group
    /// unless [`LocalRunner::attach`]).
    ///
    /// # Errors
    /// [`RunnerError::Spawn`] when the worker program cannot be started.
    pub fn start(&self, job: &Job) -> Result<LocalWorker, RunnerError> {
        let env = self.env_for(job)?;
        self.spawn(job, env)
            .map(|child| LocalWorker { child })
            .map_err(|source| RunnerError::Spawn {
                program: self.worker.join(" "),
                source,
            })
    }

    fn spawn(&self, job: &Job, mut env: Vec<(String, String)>) -> std::io::Result<Child> {
        let log = self.worker_log(&job.object_id);
        std::fs::create_dir_all(log.parent().unwrap_or(Path::new(".")))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        // The values of `env:` secrets, from this process's environment,
        // reach the worker on its stdin (never as its variables, never in
        // the store); the worker reads them before anything else.
        // Secrets Manager and SSM references are read with this command's
        // AWS settings (its AWS_* variables, and ~/.aws through HOME), as
        // a task's worker reads them with the task role; the worker never
        // hands them to the script.
        if reads_aws_secrets(job) {
            for (k, v) in std::env::vars() {
                if (k.starts_with("AWS_") || k == "HOME") && !env.iter().any(|(e, _)| *e == k) {
                    env.push((k, v));
                }
            }
        }
        let stdin = match env_values(job) {
            None => Stdio::null(),
            Some(json) => {
                env.push(("PLUS_SECRETS_STDIN".to_owned(), "1".to_owned()));
                prefilled(json.as_bytes())?
            }
        };
        let mut cmd = Command::new(&self.worker[0]);
        cmd.args(&self.worker[1..])
            .env_clear()
            .envs(env)
            .stdin(stdin)
            .stdout(log.try_clone()?)
            .stderr(log);
        if !self.attach {
            cmd.process_group(0);
        }
        cmd.spawn()
    }
}

/// The job's `env:` secrets: (secret name, variable), in name order.
pub fn env_refs(job: &Job) -> Vec<(String, String)> {
    plus_jobs::secrets::sorted(&job.secrets)
        .into_iter()
        .filter_map(
            |(name, reference)| match plus_jobs::secrets::SecretRef::parse(reference) {
                Ok(plus_jobs::secrets::SecretRef::Env { var }) => Some((name.clone(), var)),
                _ => None,
            },
        )
        .collect()
}

/// Whether the job has a Secrets Manager or SSM secret.
fn reads_aws_secrets(job: &Job) -> bool {
    job.secrets.values().any(|r| {
        !matches!(
            plus_jobs::secrets::SecretRef::parse(r),
            Ok(plus_jobs::secrets::SecretRef::Env { .. })
        )
    })
}

/// The values of the job's `env:` secrets set in this process's
/// environment, as the JSON object the worker reads on its stdin; `None`
/// when the job has none.
fn env_values(job: &Job) -> Option<String> {
    let refs = env_refs(job);
    if refs.is_empty() {
        return None;
    }
    let values: serde_json::Map<String, serde_json::Value> = refs
        .into_iter()
        .filter_map(|(_, var)| Some((var.clone(), std::env::var(&var).ok()?.into())))
        .collect();
    Some(serde_json::Value::Object(values).to_string())
}

/// The most the values of `env:` secrets may take together: they are
/// written into the worker's stdin pipe before it starts, and a pipe holds
/// at least 64 KiB.
pub const MAX_ENV_SECRET_BYTES: usize = 60 * 1024;

/// A pipe holding `bytes`, its write end closed.
fn prefilled(bytes: &[u8]) -> std::io::Result<Stdio> {
    use std::io::Write;
    if bytes.len() > MAX_ENV_SECRET_BYTES {
        return Err(std::io::Error::other(format!(
            "the values of the job's env: secrets take {} KiB, over the {} KiB a local worker takes: store big secrets in a file the script reads",
            bytes.len().div_ceil(1024),
            MAX_ENV_SECRET_BYTES / 1024
        )));
    }
    let (reader, mut writer) = std::io::pipe()?;
    writer.write_all(bytes)?;
    drop(writer);
    Ok(Stdio::from(reader))
}

/// A worker process started on this machine.
#[derive(Debug)]
pub struct LocalWorker {
    child: Child,
}

impl LocalWorker {
    /// How the record names it (`local:pid/{pid}`).
    pub fn worker_ref(&self) -> WorkerRef {
        WorkerRef::local_pid(self.child.id().unwrap_or_default())
    }

    /// How it ended, once it has (`exited with code N`, `was killed`).
    pub fn ended(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok().flatten()?;
        Some(match status.code() {
            Some(c) => format!("exited with code {c}"),
            None => "was killed".to_owned(),
        })
    }
}

/// The process id of `worker` when it is a local process on this machine.
fn pid_here(worker: &WorkerRef) -> Option<nix::unistd::Pid> {
    let WorkerRef::Local { host, pid } = worker else {
        return None;
    };
    if let Some(host) = host {
        let me = nix::unistd::gethostname().ok()?.into_string().ok()?;
        if *host != me {
            return None;
        }
    }
    let pid: i32 = pid.parse().ok().filter(|p| *p > 1)?;
    Some(nix::unistd::Pid::from_raw(pid))
}

/// Wakes a local worker on this machine (SIGUSR1: "read the job's record
/// now"), so a cancel request is seen at once, not at its next heartbeat.
/// Only a worker that holds a RUNNING job is woken: it has its handler.
pub fn wake(worker: &WorkerRef) {
    if let Some(pid) = pid_here(worker) {
        if let Err(e) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1) {
            tracing::debug!(%worker, error = %e, "could not wake the worker; its heartbeat sees the cancel");
        }
    }
}

/// Whether a local worker process is alive; `None` when `worker` is not a
/// local process or it cannot be told from here (another host).
pub fn state(worker: &WorkerRef) -> Option<TaskState> {
    let pid = pid_here(worker)?;
    let alive = nix::sys::signal::kill(pid, None).is_ok();
    Some(if alive {
        TaskState::Alive {
            status: "RUNNING".to_owned(),
        }
    } else {
        TaskState::Vanished
    })
}

/// The worker's last error line from its JSON log, for a job it left
/// without an end.
pub fn last_words(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find_map(|line| {
        if let Some(msg) = line.strip_prefix("plus-worker: ") {
            return Some(msg.to_owned());
        }
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v.get("level")?.as_str()? == "ERROR" {
            v.get("reason")
                .or_else(|| v.get("error"))
                .and_then(|r| r.as_str())
                .map(str::to_owned)
        } else {
            None
        }
    })
}
