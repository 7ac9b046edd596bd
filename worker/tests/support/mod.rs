//! Shared helpers for the worker's integration tests: a backend (the local
//! store in a temp dir, or DynamoDB + S3 in `moto_server`), job records, and
//! the real `plus-worker` binary run as a process.
#![allow(dead_code)]

use std::{process::Stdio, time::Duration};

use plus_jobs::{
    backend::AwsConfig, job::new_job, Backend, BackendConfig, Job, JobId, JobStatus, RunMode,
    Script, Timestamp,
};
use plus_testkit::Moto;
use tokio::process::{Child, Command};

/// The worker binary under test.
pub const WORKER: &str = env!("CARGO_BIN_EXE_plus-worker");

/// One test's world: a backend and the environment a worker gets for it.
pub struct World {
    pub backend: Backend,
    pub vars: Vec<(String, String)>,
    pub aws: Option<AwsConfig>,
    pub dir: tempfile::TempDir,
}

impl World {
    pub async fn local() -> World {
        let dir = tempfile::tempdir().unwrap();
        let config = BackendConfig::Local {
            dir: dir.path().join("store"),
            bucket: "bucket".into(),
        };
        let backend = Backend::open(&config).await.unwrap();
        let mut vars = base_vars("jobs", "streams", "bucket");
        vars.push((
            "PLUS_LOCAL_DIR".into(),
            dir.path().join("store").display().to_string(),
        ));
        vars.push((
            "PLUS_WORK_DIR".into(),
            dir.path().join("work").display().to_string(),
        ));
        World {
            backend,
            vars,
            aws: None,
            dir,
        }
    }

    pub async fn aws() -> World {
        let dir = tempfile::tempdir().unwrap();
        let aws = Moto::shared().provision().await;
        let backend = Backend::open(&BackendConfig::Aws(aws.clone()))
            .await
            .unwrap();
        let mut vars = base_vars(&aws.table, &aws.streams_table, &aws.bucket);
        vars.retain(|(k, _)| k != "REGION");
        vars.push(("REGION".into(), aws.region.clone()));
        vars.push(("AWS_ENDPOINT_URL".into(), aws.endpoint_url.clone().unwrap()));
        vars.push(("ACCESS_KEY".into(), "testing".into()));
        vars.push(("SECRET_KEY".into(), "testing".into()));
        vars.push((
            "PLUS_WORK_DIR".into(),
            dir.path().join("work").display().to_string(),
        ));
        World {
            backend,
            vars,
            aws: Some(aws),
            dir,
        }
    }

    /// The AWS world with a fault-injecting proxy between the worker and the
    /// emulator (the test's own reads go to the emulator directly).
    pub async fn aws_via_proxy() -> (World, plus_testkit::FaultProxy) {
        let mut w = World::aws().await;
        let proxy = plus_testkit::FaultProxy::start(&Moto::shared().endpoint).await;
        w.vars.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
        w.vars
            .push(("AWS_ENDPOINT_URL".into(), proxy.endpoint.clone()));
        (w, proxy)
    }

    /// Writes an INITIALIZING RUN_SCRIPT job for alice with this inline script.
    pub async fn job(&self, source: &str) -> Job {
        self.job_with(source, |_| {}).await
    }

    pub async fn job_with(&self, source: &str, edit: impl FnOnce(&mut Job)) -> Job {
        let mut job = new_job(
            &JobId::generate(),
            "alice",
            RunMode::RunScript,
            Timestamp::now(),
        );
        job.script = Some(Script {
            source: source.into(),
            ..Script::default()
        });
        edit(&mut job);
        self.backend.jobs.create_job(&job).await.unwrap();
        job
    }

    /// A path for `name` in a folder scripts can write whatever user they
    /// run as (a root worker runs them as another user): for files a test
    /// and its script share.
    pub fn shared(&self, name: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir.path().join("shared");
        let _ = std::fs::create_dir(&dir);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        dir.join(name)
    }

    /// The worker's environment for `job`.
    pub fn env_for(&self, job: &Job) -> Vec<(String, String)> {
        let mut vars = self.vars.clone();
        vars.push(("JOB_ID".into(), job.object_id.clone()));
        vars.push(("RUN_MODE".into(), job.run_mode().as_str_name().into()));
        if !job.collection_owner.is_empty() {
            vars.push(("COLLECTION_OWNER".into(), job.collection_owner.clone()));
        }
        if !job.action_id.is_empty() {
            vars.push(("ACTION_ID".into(), job.action_id.clone()));
        }
        vars
    }

    /// Starts the worker for `job` with extra variables.
    pub fn spawn(&self, job: &Job, extra: &[(&str, &str)]) -> Child {
        let mut vars = self.env_for(job);
        for (k, v) in extra {
            vars.retain(|(key, _)| key != k);
            vars.push((k.to_string(), v.to_string()));
        }
        spawn_worker(&vars)
    }

    /// Runs the worker for `job` to its end.
    pub async fn run(&self, job: &Job) -> Run {
        finish(self.spawn(job, &[])).await
    }

    /// Waits for the worker `child` of `job`; the run and the record.
    pub async fn ended(&self, job: &Job, child: Child) -> (Run, Job) {
        let run = finish(child).await;
        let done = self.get(&job.object_id).await;
        (run, done)
    }

    /// Runs the worker for `job` with extra variables to its end; the run
    /// and the record.
    pub async fn run_with(&self, job: &Job, extra: &[(&str, &str)]) -> (Run, Job) {
        self.ended(job, self.spawn(job, extra)).await
    }

    pub async fn get(&self, id: &str) -> Job {
        self.backend
            .jobs
            .get_job(id)
            .await
            .unwrap()
            .expect("the job exists")
    }

    /// Polls the record until `pred` holds (30 s at most).
    pub async fn wait_for(&self, id: &str, what: &str, pred: impl Fn(&Job) -> bool) -> Job {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let job = self.get(id).await;
            if pred(&job) {
                return job;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; job is {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the stream until an output line contains `needle`.
    pub async fn wait_for_output(&self, id: &str, needle: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !self.output(id).await.contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for output {needle:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the job's stream shows on stdout and stderr.
    pub async fn output(&self, id: &str) -> String {
        let events = self
            .backend
            .jobs
            .events_after(id, 0, 100_000)
            .await
            .unwrap();
        events
            .iter()
            .filter(|e| e.kind == "stdout" || e.kind == "stderr")
            .map(|e| e.data.clone() + "\n")
            .collect()
    }

    /// The job's stored full log.
    pub async fn log(&self, job: &Job) -> String {
        let bytes = self
            .backend
            .blobs
            .get_bytes(&job.log_key)
            .await
            .unwrap()
            .expect("the log is stored");
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

pub fn base_vars(table: &str, streams: &str, bucket: &str) -> Vec<(String, String)> {
    vec![
        ("USERNAME".into(), "alice".into()),
        ("REGION".into(), "local".into()),
        ("DYNAMO_TABLE".into(), table.into()),
        ("DYNAMO_STREAMS_TABLE".into(), streams.into()),
        ("PRIMARY_BUCKET".into(), bucket.into()),
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("PLUS_HEARTBEAT_SECONDS".into(), "0.2".into()),
        ("PLUS_GRACE_SECONDS".into(), "2".into()),
        ("PLUS_FLUSH_MILLIS".into(), "50".into()),
        ("RUST_LOG".into(), "info".into()),
    ]
}

pub fn spawn_worker(vars: &[(String, String)]) -> Child {
    Command::new(WORKER)
        .env_clear()
        .envs(vars.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the worker starts")
}

/// A finished worker process.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub async fn finish(child: Child) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the worker ends within 2 minutes")
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends `signal` to a process.
pub fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
}

pub fn status(job: &Job) -> JobStatus {
    job.status()
}

/// Runs a test body against both stores.
#[macro_export]
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod local_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::support::World::local().await).await; })*
        }
        mod moto_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::support::World::aws().await).await; })*
        }
    };
}
