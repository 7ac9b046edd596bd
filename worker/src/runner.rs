//! One job's life in the worker: load, check, claim, run, record.
//!
//! [`execute`] takes an opened backend, the lease (task ARN) and the
//! shutdown token, and returns an [`Outcome`], so tests drive one job
//! without a process. `main` maps the outcome to the exit code.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use backon::{ExponentialBuilder, Retryable};
use plus_jobs::{
    blob::{self, BlobStore},
    job::{is_terminal, run_mode_name, status_name},
    Backend, Expect, Job, JobStatus, JobStore, RunMode, Script, StoreError, Timestamp,
};
use serde_json::Value;
use tokio::{io::AsyncWriteExt, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use crate::{
    config::Config,
    events::EventSink,
    script::{self, Exit, Launch, Piece, Workspace},
};

/// The largest result kept inline on the job record; a larger one is stored
/// as `jobs/{id}/result.json` and the record points to it.
pub const INLINE_RESULT_BYTES: usize = 64 * 1024;

/// How a worker run ended; each maps to one exit code of DESIGN.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The job SUCCEEDED and that is recorded (exit 0).
    Succeeded,
    /// The job FAILED and that is recorded (exit 1).
    Failed(String),
    /// The job was CANCELLED and that is recorded (exit 1).
    Cancelled,
    /// SIGTERM: the job is INTERRUPTED with its state saved (exit 143).
    Interrupted,
    /// The configuration is wrong; nothing was written (exit 2).
    BadConfig(String),
    /// The job does not exist or may not be claimed (exit 3).
    NotClaimable(String),
    /// The store could not be reached; the outcome may not be recorded (exit 4).
    StoreUnreachable(String),
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Succeeded => 0,
            Outcome::Failed(_) | Outcome::Cancelled => 1,
            Outcome::BadConfig(_) => 2,
            Outcome::NotClaimable(_) => 3,
            Outcome::StoreUnreachable(_) => 4,
            Outcome::Interrupted => 143,
        }
    }
}

/// Why the running work was told to stop; the first reason wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A cancel was requested.
    Cancelled,
    /// `timeout_seconds` passed.
    TimedOut(u32),
    /// SIGTERM (a Spot interruption, StopTask, a deploy) or SIGINT.
    Interrupted,
    /// Another writer took the job (the monitor settled it, or a lease
    /// was lost): this worker must stop without writing.
    LostLease(String),
}

/// Stops the running work once, remembering why.
#[derive(Clone, Debug, Default)]
pub struct Control {
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl Control {
    /// Asks the work to stop (the first reason is kept).
    pub fn stop(&self, reason: StopReason) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        self.token.cancel();
    }

    /// Why the work was stopped, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Completes when the work is asked to stop.
    pub async fn stopped(&self) {
        self.token.cancelled().await;
    }

    /// Whether the work was asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// What one job run needs, shared by the modes.
#[derive(Clone, Debug)]
pub struct JobContext {
    /// The configuration.
    pub config: Arc<Config>,
    /// The job store.
    pub jobs: Arc<dyn JobStore>,
    /// The blob store.
    pub blobs: Arc<dyn BlobStore>,
    /// The job as claimed.
    pub job: Arc<Job>,
    /// The lease this worker holds (its task ARN).
    pub lease: String,
    /// The job's event stream.
    pub events: EventSink,
    /// Stops the work.
    pub control: Control,
    /// Sends output pieces to the log collector.
    pub output: mpsc::Sender<Piece>,
}

impl JobContext {
    /// The environment a script sees: a minimal base plus the PLUS_*
    /// variables. Never the worker's credentials.
    pub fn script_env(
        &self,
        ws: &Workspace,
        params: &Value,
        cwd: &std::path::Path,
    ) -> Vec<(String, String)> {
        let job = &self.job;
        vec![
            ("PATH".into(), self.config.script_path.clone()),
            ("HOME".into(), cwd.display().to_string()),
            ("LANG".into(), "C.UTF-8".into()),
            ("TMPDIR".into(), ws.tmp.display().to_string()),
            ("PLUS_JOB_ID".into(), job.object_id.clone()),
            ("PLUS_RUN_MODE".into(), run_mode_name(job.run_mode()).into()),
            ("PLUS_USERNAME".into(), job.username.clone()),
            ("PLUS_ATTEMPT".into(), job.attempt.unwrap_or(1).to_string()),
            ("PLUS_PARAMS".into(), params.to_string()),
            ("PLUS_OUTPUT_DIR".into(), ws.output.display().to_string()),
            ("PLUS_RESULT_FILE".into(), ws.result.display().to_string()),
        ]
    }
}

/// How the script part of a job ended, before it is recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Finish {
    /// The status to record.
    pub status: JobStatus,
    /// The exit code to record.
    pub exit_code: Option<i32>,
    /// The error to record (empty on success).
    pub error: String,
    /// The result to record.
    pub result: Option<Value>,
}

impl Finish {
    /// The same finish with `exit_code`.
    pub fn with_exit(mut self, exit_code: Option<i32>) -> Self {
        self.exit_code = exit_code;
        self
    }

    /// A failure before or around the script, with a reason.
    pub fn failed(error: impl Into<String>) -> Self {
        Finish {
            status: JobStatus::Failed,
            exit_code: None,
            error: error.into(),
            result: None,
        }
    }
}

/// Runs the job named in `config` on `backend`, holding `lease`, until it
/// ends or `shutdown` fires.
pub async fn execute(
    config: Config,
    backend: Backend,
    lease: String,
    shutdown: CancellationToken,
) -> Outcome {
    let span = tracing::info_span!("job", job_id = %config.job_id, lease = %lease);
    execute_inner(Arc::new(config), backend, lease, shutdown)
        .instrument(span)
        .await
}

async fn execute_inner(
    config: Arc<Config>,
    backend: Backend,
    lease: String,
    shutdown: CancellationToken,
) -> Outcome {
    let id = config.job_id.to_string();
    let jobs = backend.jobs.clone();

    // The claim first: one conditional write, INITIALIZING -> RUNNING, that
    // also requires the job's user and mode, so a job this worker must not
    // run is never touched. Only a refused claim reads the record, to say why.
    let now = Timestamp::now();
    // A task ARN (from the metadata endpoint) is written; a local id only
    // fills in, so it never hides the ARN the launcher recorded.
    let is_arn = lease.starts_with("arn:");
    let claim = Job {
        status: JobStatus::Running as i32,
        lease: lease.clone(),
        fargate_task_arn: if is_arn { lease.clone() } else { String::new() },
        heartbeat_at: now.to_string(),
        updated_at: now.to_string(),
        ..Job::default()
    };
    let first_claim = Job {
        fargate_task_arn: if is_arn { String::new() } else { lease.clone() },
        started_at: now.to_string(),
        attempt: Some(1),
        ..Job::default()
    };
    let expect =
        Expect::status([JobStatus::Initializing]).for_worker(&config.username, config.run_mode);
    let job = match jobs
        .update_job_with(&id, &expect, &claim, &first_claim)
        .await
    {
        Ok(job) => job,
        Err(StoreError::Conflict { reason, .. }) => return refused(&config, &jobs, &reason).await,
        Err(e) => return store_outcome(&e, "claiming the job"),
    };
    info!(attempt = job.attempt.unwrap_or(1), "claimed the job");

    let events = EventSink::new(
        jobs.clone(),
        &id,
        config.event_ttl_days,
        config.stream_max_bytes,
    );
    events.event("status", "RUNNING");
    let control = Control::default();
    let (output_tx, output_rx) = mpsc::channel::<Piece>(256);
    if let Err(e) = tokio::fs::create_dir_all(&config.work_root).await {
        warn!(error = %e, dir = %config.work_root.display(), "the work directory cannot be made");
    }
    let log_path = config
        .work_root
        .join(format!(".plus-log-{id}-{}", std::process::id()));
    let close_output = CancellationToken::new();
    let collector = tokio::spawn(
        collect_output(
            output_rx,
            close_output.clone(),
            log_path.clone(),
            events.clone(),
        )
        .in_current_span(),
    );
    let ctx = JobContext {
        config: config.clone(),
        jobs: jobs.clone(),
        blobs: backend.blobs.clone(),
        job: Arc::new(job),
        lease: lease.clone(),
        events: events.clone(),
        control: control.clone(),
        output: output_tx,
    };

    // Watchers: SIGTERM, the timeout, the heartbeat (which also notices a
    // cancel request), and the periodic flush of the event stream.
    let watchers = CancellationToken::new();
    tokio::spawn({
        let (control, watchers) = (control.clone(), watchers.clone());
        async move {
            tokio::select! {
                () = shutdown.cancelled() => control.stop(StopReason::Interrupted),
                () = watchers.cancelled() => {}
            }
        }
    });
    if let Some(limit) = ctx.job.timeout_seconds.filter(|t| *t > 0) {
        let (control, watchers) = (control.clone(), watchers.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(u64::from(limit))) => control.stop(StopReason::TimedOut(limit)),
                () = watchers.cancelled() => {}
            }
        });
    }
    let progress = crate::ProgressCell::default();
    tokio::spawn(heartbeat(ctx.clone(), progress.clone(), watchers.clone()).in_current_span());
    tokio::spawn({
        let (events, watchers, every) = (events.clone(), watchers.clone(), config.flush);
        async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {
                        if let Err(e) = events.flush().await {
                            warn!(error = %e, "event stream write failed; will retry");
                        }
                    }
                    () = watchers.cancelled() => break,
                }
            }
        }
        .in_current_span()
    });

    let finish = match ctx.job.run_mode() {
        RunMode::RunScript => run_script_mode(&ctx, None).await,
        RunMode::RunAction => run_action_mode(&ctx).await,
        RunMode::RunCollection => crate::collection::run(&ctx, &progress).await,
        RunMode::Unspecified => Finish::failed("the job has no run_mode"),
    };
    watchers.cancel();

    // Every script's readers are done (run_one waits for them): close the
    // collector and wait for the log file to be complete.
    close_output.cancel();
    let log_written = collector.await.unwrap_or(false);
    record(&ctx, finish, log_written, &log_path, &progress).await
}

/// Why a claim was refused, read from the record: the outcome and its
/// sentence (exit 2 for a worker launched for another user or mode, 3 for a
/// job that is gone, taken or finished).
async fn refused(config: &Config, jobs: &Arc<dyn JobStore>, reason: &str) -> Outcome {
    let id = config.job_id.as_str();
    let job = match jobs.get_job(id).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            return Outcome::NotClaimable(format!(
                "job {id} was not found: check JOB_ID, and that DYNAMO_TABLE names the table the launcher wrote it to"
            ))
        }
        Err(StoreError::Malformed { reason, .. }) => {
            return Outcome::NotClaimable(format!("job {id} cannot be run: its record is malformed ({reason})"))
        }
        Err(e) => return store_outcome(&e, "reading the job"),
    };
    if job.username != config.username {
        return Outcome::BadConfig(format!(
            "USERNAME is {:?} but job {id} belongs to {:?}: a worker only runs jobs of the user it was launched for",
            config.username, job.username
        ));
    }
    if job.run_mode() != config.run_mode {
        return Outcome::BadConfig(format!(
            "RUN_MODE is {} but job {id} was launched as {}: launch the worker with the job's own mode",
            run_mode_name(config.run_mode),
            run_mode_name(job.run_mode())
        ));
    }
    Outcome::NotClaimable(match job.status() {
        JobStatus::Running => format!(
            "job {id} is already RUNNING, held by {}: only one worker runs a job at a time, so this one exits without running anything",
            job.lease
        ),
        JobStatus::Interrupted => format!(
            "job {id} is INTERRUPTED: relaunch it (`plus retry {id}`, or let the monitor do it) to move it back to INITIALIZING first"
        ),
        status if is_terminal(status) => format!(
            "job {id} is already {}: a finished job never runs again; launch a new one or `plus retry {id}`",
            status_name(status)
        ),
        _ => format!("job {id} was claimed by another worker first ({reason}): this one exits without running anything"),
    })
}

fn store_outcome(e: &StoreError, doing: &str) -> Outcome {
    match e {
        StoreError::Rejected(msg) => Outcome::BadConfig(format!("{doing} failed: {msg}")),
        other => Outcome::StoreUnreachable(format!("{doing} failed: {other}")),
    }
}

/// Refreshes `heartbeat_at` (and progress) while the job runs; notices a
/// cancel request and a lost lease.
async fn heartbeat(ctx: JobContext, progress: crate::ProgressCell, done: CancellationToken) {
    let every = ctx.config.heartbeat;
    let expect = Expect::status([JobStatus::Running]).with_lease(&ctx.lease);
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = done.cancelled() => return,
        }
        let now = Timestamp::now().to_string();
        let mut patch = Job {
            heartbeat_at: now.clone(),
            updated_at: now,
            ..Job::default()
        };
        if let Some(p) = progress.take_changed() {
            ctx.events
                .event("progress", serde_json::to_string(&p).unwrap_or_default());
            patch.progress = Some(p);
        }
        match ctx
            .jobs
            .update_job(&ctx.job.object_id, &expect, &patch)
            .await
        {
            Ok(job) if job.cancel_requested => {
                info!("cancel requested; stopping the script");
                ctx.control.stop(StopReason::Cancelled);
            }
            Ok(_) => {}
            Err(StoreError::Conflict { reason, .. }) => {
                error!(%reason, "lost the job's lease; stopping without recording");
                ctx.control.stop(StopReason::LostLease(reason));
                return;
            }
            Err(e) => {
                if patch.progress.is_some() {
                    progress.mark_unwritten();
                }
                warn!(error = %e, "heartbeat failed; will retry");
            }
        }
    }
}

/// RUN_SCRIPT (and RUN_ACTION after its script is resolved): run the script
/// once and collect the result.
pub async fn run_script_mode(ctx: &JobContext, action: Option<(Script, Value)>) -> Finish {
    let (script, params) = match action {
        Some(found) => found,
        None => (
            ctx.job.script.clone().unwrap_or_default(),
            struct_to_json(ctx.job.params.as_ref()),
        ),
    };
    let source = match load_script(ctx, &script).await {
        Ok(bytes) => bytes,
        Err(finish) => return finish,
    };
    let ws = match Workspace::create(&ctx.config.work_root, &ctx.job.object_id, &source) {
        Ok(ws) => ws,
        Err(e) => {
            return Finish::failed(format!(
                "the job's working directory could not be made under {}: {e}",
                ctx.config.work_root.display()
            ))
        }
    };
    let program = match script::Program::resolve(&ws.script, &script.interpreter, &script.args) {
        Ok(program) => program,
        Err(e) => return Finish::failed(e.0),
    };
    let launch = Launch {
        program,
        env: ctx.script_env(&ws, &params, &ws.work),
        cwd: ws.work.clone(),
        stdin: None,
    };
    let exit = match run_one(ctx, &launch).await {
        Ok(exit) => exit,
        Err(e) => return Finish::failed(e.0),
    };
    upload_outputs(ctx, &ws).await;
    finish_from_exit(ctx, exit, read_result(ctx, &ws).await)
}

/// Starts the script and supervises it until it exits or is stopped.
///
/// # Errors
/// When it cannot be started.
pub async fn run_one(ctx: &JobContext, launch: &Launch) -> Result<Exit, script::StartError> {
    let mut running = script::start(launch, ctx.output.clone())?;
    let exit = tokio::select! {
        exit = running.wait() => exit.unwrap_or(Exit::Code(-1)),
        () = ctx.control.stopped() => running.stop(ctx.config.grace).await,
    };
    running.finish().await;
    Ok(exit)
}

/// Turns the script's exit (and the stop reason, if any) into a [`Finish`].
pub fn finish_from_exit(
    ctx: &JobContext,
    exit: Exit,
    result: Result<Option<Value>, String>,
) -> Finish {
    if let Some(reason) = ctx.control.reason() {
        return stopped_finish(ctx, reason, Some(exit));
    }
    match (exit.success(), result) {
        (true, Ok(result)) => Finish {
            status: JobStatus::Succeeded,
            exit_code: Some(0),
            error: String::new(),
            result,
        },
        (true, Err(problem)) => Finish {
            status: JobStatus::Failed,
            exit_code: Some(0),
            error: problem,
            result: None,
        },
        (false, result) => Finish {
            status: JobStatus::Failed,
            exit_code: Some(exit.code()),
            error: exit.describe(),
            result: result.ok().flatten(),
        },
    }
}

/// The [`Finish`] for work that was told to stop.
pub fn stopped_finish(ctx: &JobContext, reason: StopReason, exit: Option<Exit>) -> Finish {
    let exit_code = exit.map(Exit::code);
    let grace = ctx.config.grace.as_secs_f64();
    match reason {
        StopReason::Cancelled => Finish { status: JobStatus::Cancelled, exit_code, error: "cancelled on request; the script was stopped".into(), result: None },
        StopReason::TimedOut(limit) => Finish {
            status: JobStatus::Failed,
            exit_code,
            error: format!("the script ran past its limit of {limit} s (timeout_seconds) and was stopped: raise timeout_seconds or make the script faster"),
            result: None,
        },
        StopReason::Interrupted => Finish {
            status: JobStatus::Interrupted,
            exit_code,
            error: format!("the task was stopped (SIGTERM: a Spot interruption, StopTask or a deploy); the script was given {grace} s to exit and the job's state was saved: `plus retry` or the monitor relaunches it"),
            result: None,
        },
        StopReason::LostLease(reason) => Finish { status: JobStatus::Running, exit_code, error: reason, result: None },
    }
}

async fn run_action_mode(ctx: &JobContext) -> Finish {
    match crate::action::resolve(ctx).await {
        Ok(found) => run_script_mode(ctx, Some(found)).await,
        Err(finish) => finish,
    }
}

/// The job's params (a protobuf Struct) as a JSON object.
pub fn struct_to_json(s: Option<&plus_proto::pbjson_types::Struct>) -> Value {
    let mut v = s
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| Value::Object(Default::default()));
    plus_jobs::job::normalize_numbers(&mut v);
    v
}

/// The script's bytes: inline `source`, or the blob at `s3_key`.
pub async fn load_script(ctx: &JobContext, script: &Script) -> Result<Vec<u8>, Finish> {
    let bytes = if !script.s3_key.is_empty() {
        match ctx.blobs.get_bytes(&script.s3_key).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(Finish::failed(format!(
                    "the script {} does not exist: upload it, or fix script.s3_key",
                    ctx.blobs.locate(&script.s3_key)
                )))
            }
            Err(e) => return Err(Finish::failed(format!("the script could not be read: {e}"))),
        }
    } else if !script.source.is_empty() {
        script.source.clone().into_bytes()
    } else {
        return Err(Finish::failed(
            "the job has no script: set script.source (inline text) or script.s3_key",
        ));
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Finish::failed(
            "the script is empty: there is nothing to run",
        ));
    }
    Ok(bytes)
}

/// Reads PLUS_RESULT_FILE: `Ok(None)` when the script left none.
pub async fn read_result(ctx: &JobContext, ws: &Workspace) -> Result<Option<Value>, String> {
    let bytes = match tokio::fs::read(&ws.result).await {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => return Ok(None),
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("PLUS_RESULT_FILE could not be read: {e}")),
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        format!("the script left invalid JSON in PLUS_RESULT_FILE ({e}): write one JSON document, or nothing")
    })?;
    if bytes.len() <= INLINE_RESULT_BYTES {
        return Ok(Some(value));
    }
    let key = format!("jobs/{}/result.json", ctx.job.object_id);
    match ctx.blobs.put_bytes(&key, bytes, "application/json").await {
        Ok(()) => Ok(Some(
            serde_json::json!({ "truncated": true, "s3_key": key }),
        )),
        Err(e) => Err(format!(
            "the result is larger than {INLINE_RESULT_BYTES} bytes and could not be stored: {e}"
        )),
    }
}

/// Uploads the files the script left in PLUS_OUTPUT_DIR.
pub async fn upload_outputs(ctx: &JobContext, ws: &Workspace) {
    let prefix = blob::output_prefix(&ctx.job.object_id);
    let mut stack = vec![ws.output.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            continue;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            let Ok(kind) = entry.file_type().await else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(&ws.output)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                let key = format!("{prefix}{rel}");
                let put = || async {
                    ctx.blobs
                        .put_file(&key, &path, "application/octet-stream")
                        .await
                };
                if let Err(e) = put
                    .retry(ExponentialBuilder::default().with_jitter())
                    .when(|e| e.is_transient())
                    .await
                {
                    warn!(error = %e, file = %rel, "an output file could not be uploaded");
                    ctx.events.event(
                        "stderr",
                        format!("[plus] output file {rel} could not be uploaded: {e}"),
                    );
                }
            }
        }
    }
}

/// Splits one stream's chunks into lines for the live view.
#[derive(Debug, Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Feeds a chunk; calls `line` for each complete line while the view has
    /// room, and counts the rest as left out.
    fn feed(&mut self, bytes: &[u8], stream: script::Stream, events: &EventSink) {
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            if !events.has_room() {
                let more = rest.iter().filter(|b| **b == b'\n').count() as u64;
                events.omit(more);
                self.partial.clear();
                return;
            }
            let line = &rest[..i];
            if self.partial.is_empty() {
                show(stream, line, events);
            } else {
                self.take_partial(line);
                let joined = std::mem::take(&mut self.partial);
                show(stream, &joined, events);
            }
            rest = &rest[i + 1..];
        }
        self.take_partial(rest);
    }

    fn take_partial(&mut self, bytes: &[u8]) {
        // Only the start of a very long line can show; keep no more of it.
        let room = (crate::events::LINE_BYTES + 8).saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish(&mut self, stream: script::Stream, events: &EventSink) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            show(stream, &line, events);
        }
    }
}

fn show(stream: script::Stream, line: &[u8], events: &EventSink) {
    let text = String::from_utf8_lossy(line);
    if events.line(stream.kind(), &text) {
        info!(stream = stream.kind(), line = %text, "output");
    }
}

/// Writes every output chunk to the log file (all of it) and the live stream
/// and JSON log (a bounded view). Returns whether the log file is complete.
async fn collect_output(
    mut rx: mpsc::Receiver<Piece>,
    close: CancellationToken,
    path: std::path::PathBuf,
    events: EventSink,
) -> bool {
    let file = match tokio::fs::File::create(&path).await {
        Ok(f) => Some(f),
        Err(e) => {
            error!(error = %e, path = %path.display(), "the log file cannot be written; output goes to the stream only");
            None
        }
    };
    let mut ok = file.is_some();
    let mut log = file.map(|f| tokio::io::BufWriter::with_capacity(256 * 1024, f));
    let (mut out, mut err) = (Lines::default(), Lines::default());
    loop {
        let piece = tokio::select! {
            biased;
            piece = rx.recv() => match piece {
                Some(piece) => piece,
                None => break,
            },
            () = close.cancelled() => match rx.try_recv() {
                Ok(piece) => piece,
                Err(_) => break,
            },
        };
        if let Some(w) = log.as_mut() {
            if let Err(e) = w.write_all(&piece.bytes).await {
                error!(error = %e, "writing the log file failed");
                ok = false;
                log = None;
            }
        }
        let lines = match piece.stream {
            script::Stream::Stdout => &mut out,
            script::Stream::Stderr => &mut err,
        };
        lines.feed(&piece.bytes, piece.stream, &events);
    }
    out.finish(script::Stream::Stdout, &events);
    err.finish(script::Stream::Stderr, &events);
    if let Some(mut w) = log {
        if w.flush().await.is_err() {
            ok = false;
        }
    }
    ok
}

/// Records the job's end: flush the stream, store the log, then one
/// conditional write of the final status (kept trying until the grace
/// period runs out).
async fn record(
    ctx: &JobContext,
    finish: Finish,
    log_ok: bool,
    log_path: &std::path::Path,
    progress: &crate::ProgressCell,
) -> Outcome {
    let id = ctx.job.object_id.clone();
    let deadline = ctx.config.grace.max(Duration::from_secs(5));
    // After SIGTERM the task is killed at stopTimeout: recording as a whole
    // (log, last events, final write) then fits in one grace period, the
    // log and events taking at most half of it. A normal end has no such
    // limit, so a large log is never cut short.
    let started = tokio::time::Instant::now();
    let interrupted = finish.status == JobStatus::Interrupted;
    let retry = ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(3))
        .with_max_times(usize::MAX)
        .with_total_delay(Some(deadline));

    if let StopReason::LostLease(reason) = ctx.control.reason().unwrap_or(StopReason::Cancelled) {
        if finish.status == JobStatus::Running {
            let _ = ctx.events.flush().await;
            let _ = tokio::fs::remove_file(log_path).await;
            return Outcome::NotClaimable(format!(
                "job {id} was taken over while it ran ({reason}); nothing more was recorded"
            ));
        }
    }

    // A cancel often arrives as the flag and then StopTask's SIGTERM: the
    // job was cancelled, not interrupted.
    let mut finish = finish;
    if finish.status == JobStatus::Interrupted
        && matches!(ctx.jobs.get_job(&id).await, Ok(Some(j)) if j.cancel_requested)
    {
        finish = stopped_finish(ctx, StopReason::Cancelled, None).with_exit(finish.exit_code);
    }
    let status = finish.status;
    ctx.events.event("status", status_name(status));
    if let Some(p) = progress.take_changed() {
        ctx.events
            .event("progress", serde_json::to_string(&p).unwrap_or_default());
    }

    // The full log and the last events go out side by side; then the one
    // conditional write of the end.
    let log_key = blob::log_key(&id);
    let store_log = async {
        if !log_ok {
            return false;
        }
        let put = || async {
            ctx.blobs
                .put_file(&log_key, log_path, "text/plain; charset=utf-8")
                .await
        };
        match put.retry(retry).when(|e| e.is_transient()).await {
            Ok(()) => true,
            Err(e) => {
                error!(error = %e, "the full log could not be stored");
                ctx.events.event(
                    "stderr",
                    format!("[plus] the full log could not be stored: {e}"),
                );
                false
            }
        }
    };
    let flush = || async { ctx.events.flush().await };
    let side_by_side =
        async { tokio::join!(store_log, flush.retry(retry).when(|e| e.is_transient())) };
    let (log_stored, flushed) = if interrupted {
        tokio::time::timeout_at(started + deadline / 2, side_by_side)
            .await
            .unwrap_or((false, Err(StoreError::Unavailable("out of time".into()))))
    } else {
        side_by_side.await
    };
    if (!log_stored || flushed.is_err()) && !interrupted {
        if let Err(e) = flush.retry(retry).when(|e| e.is_transient()).await {
            warn!(error = %e, "the last events could not be written");
        }
    }
    let _ = tokio::fs::remove_file(log_path).await;

    let now = Timestamp::now().to_string();
    let patch = Job {
        status: status as i32,
        updated_at: now.clone(),
        completed_at: if is_terminal(status) {
            now.clone()
        } else {
            String::new()
        },
        heartbeat_at: now,
        exit_code: finish.exit_code,
        error: finish.error.clone(),
        result: finish
            .result
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok()),
        log_key: if log_stored { log_key } else { String::new() },
        output_prefix: blob::output_prefix(&id),
        progress: progress.current(),
        ..Job::default()
    };
    let expect = Expect::status([JobStatus::Running]).with_lease(&ctx.lease);
    let write = || async { ctx.jobs.update_job(&id, &expect, &patch).await };
    // Bounded as a whole (the SDK retries inside each attempt too), so the
    // worker answers within the grace period, well inside stopTimeout.
    let until = if interrupted {
        started + deadline
    } else {
        tokio::time::Instant::now() + deadline
    };
    let written = tokio::time::timeout_at(until, write.retry(retry).when(StoreError::is_transient))
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "no answer within {} s",
                deadline.as_secs()
            )))
        });
    match written {
        Ok(_) => {
            info!(status = status_name(status), exit_code = ?finish.exit_code, error = %finish.error, "recorded the job's end");
            match status {
                JobStatus::Succeeded => Outcome::Succeeded,
                JobStatus::Cancelled => Outcome::Cancelled,
                JobStatus::Interrupted => Outcome::Interrupted,
                _ => Outcome::Failed(finish.error),
            }
        }
        Err(StoreError::Conflict { reason, .. }) => Outcome::NotClaimable(format!(
            "job {id} changed hands before its end could be recorded ({reason}); nothing was overwritten"
        )),
        Err(e) => Outcome::StoreUnreachable(format!(
            "job {id} ended {} but that could not be recorded within {} s: {e}",
            status_name(status),
            deadline.as_secs()
        )),
    }
}
