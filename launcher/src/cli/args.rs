//! The `plus` command line's grammar (clap): every command, flag and its
//! help text. Parsing only; [`super::run`] does the work.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
        command: CollectionCommand,
    },
    /// Actions: store a script with default params, read it back.
    Action {
        #[command(subcommand)]
        command: ActionCommand,
    },
    /// Schedules: launch a script, an action or a collection run on a
    /// cron or rate expression (locally `plus serve` fires them).
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
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
    /// Print a job's stored log: every attempt's, each under a header (a
    /// sharded job: every shard's).
    Logs {
        /// The job id.
        job: String,
        /// Only this attempt's log (1 is the first).
        #[arg(long, value_name = "N")]
        attempt: Option<u32>,
    },
    /// Print a collection job's per-item results as JSON lines (a sharded
    /// job: every shard's, in shard order).
    Results {
        /// The job id.
        job: String,
    },
    /// List the files a job's script left in $PLUS_OUTPUT_DIR, or download
    /// them.
    Outputs {
        /// The job id.
        job: String,
        /// Download every file into DIR (never writing outside it).
        #[arg(long, value_name = "DIR")]
        download: Option<PathBuf>,
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
        /// How many jobs at most (0: all of them).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Sum what your jobs used over a period: vCPU-seconds, GiB-seconds and
    /// the cost estimate.
    Usage {
        /// Jobs created in this period: 30m, 12h, 7d, 2w.
        #[arg(long, default_value = "30d", value_name = "PERIOD")]
        since: String,
    },
    /// Serve the HTTP API and the live job page on this machine (loopback
    /// only; prints the page's address and a fresh access token).
    Serve {
        /// Where to listen, HOST:PORT (a loopback address or name such as
        /// localhost); port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:8787")]
        addr: String,
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
    /// Try a failed attempt again when the exit code matches this glob
    /// (`3`, `1*`); a RETRY rule, while --max-attempts allows.
    #[arg(long, value_name = "GLOB")]
    pub retry_on_exit_code: Vec<String>,
    /// Try a failed attempt again when its reason matches this glob
    /// (`OutOfMemoryError*`); a RETRY rule.
    #[arg(long, value_name = "GLOB")]
    pub retry_on_reason: Vec<String>,
    /// A retry rule in full, AWS Batch's evaluateOnExit:
    /// `exit=GLOB,reason=GLOB,status=GLOB,action=RETRY|EXIT` (any of the
    /// conditions; action RETRY when left out). Rules apply in order:
    /// --retry first, then --retry-on-exit-code, then --retry-on-reason.
    #[arg(long, value_name = "RULE")]
    pub retry: Vec<String>,
    /// A secret for the script's environment, as NAME=REF: REF is a
    /// Secrets Manager name under plus/USER/ (or its ARN),
    /// ssm:/plus/USER/..., or on the local backend env:VARIABLE (read from
    /// this command's environment). Only the reference is stored.
    #[arg(long = "secret", value_name = "NAME=REF")]
    pub secrets: Vec<String>,
    /// Use this job id (a retried launch with the same id is harmless).
    #[arg(long)]
    pub id: Option<String>,
    /// A label for the job, shown in lists (at most 200 characters).
    #[arg(long, value_name = "LABEL")]
    pub name: Option<String>,
    /// Admission order when work waits: higher first, FIFO within (default 0).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub priority: Option<i32>,
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

/// `plus collection ...`
#[derive(Debug, clap::Subcommand)]
pub enum CollectionCommand {
    /// Import items from a JSON-lines file (one object per line, its id in
    /// `object_id` or `id`); importing again replaces the same items.
    Import {
        /// The collection's owner path, e.g. alice/collections/photos.
        owner: String,
        /// The JSON-lines file (`-` reads stdin).
        file: std::path::PathBuf,
    },
    /// Print a collection's items as JSON lines, in id order.
    List {
        /// The collection's owner path.
        owner: String,
        /// How many items at most (0: all of them).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// `plus action ...`
#[derive(Debug, clap::Subcommand)]
pub enum ActionCommand {
    /// Store (or replace) an action: a script and its default params.
    Put {
        /// The action's id (what `plus launch --action ID` names).
        id: String,
        /// The script file.
        script: std::path::PathBuf,
        /// A default parameter, as key=value (a job's own params override it).
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// The program that runs the script (default: its shebang, else /bin/sh).
        #[arg(long)]
        interpreter: Option<String>,
        /// A secret for its jobs' scripts, as NAME=REF (see `plus run
        /// --secret`); a job's own --secret of the same NAME wins.
        #[arg(long = "secret", value_name = "NAME=REF")]
        secrets: Vec<String>,
    },
    /// Print a stored action as JSON.
    Get {
        /// The action's id.
        id: String,
    },
}

/// `plus schedule ...`
// Parsed once per process: the size of `Create` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule: each firing launches the script (or action, or
    /// collection run) as `plus launch` would, with a job id derived from
    /// the schedule and the scheduled time.
    Create {
        /// The schedule's name: 1 to 64 letters, digits, '.', '_' or '-'.
        #[arg(id = "schedule_name", value_name = "NAME")]
        name: String,
        /// An EventBridge cron expression, six fields with a year, one of
        /// day-of-month and day-of-week `?`: `0 9 ? * MON-FRI *` (or
        /// `cron(0 9 ? * MON-FRI *)`).
        #[arg(long, value_name = "EXPR", conflicts_with_all = ["rate", "at"], required_unless_present_any = ["rate", "at"])]
        cron: Option<String>,
        /// A rate, at least one minute: `5 minutes`, `1 hour`, `2 days` (or
        /// `rate(5 minutes)`).
        #[arg(long, value_name = "EXPR", conflicts_with = "at")]
        rate: Option<String>,
        /// Once, at this local time: `2030-01-31T09:00:00`.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// The IANA time zone the expression is read in (default UTC).
        #[arg(long, value_name = "TZ", default_value = "UTC")]
        timezone: String,
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
        #[command(flatten)]
        opts: ScriptOpts,
    },
    /// List your schedules with their next firing.
    List,
    /// Show a schedule: its expression, launch request, state and last firing.
    Show {
        /// The schedule's name.
        name: String,
    },
    /// Pause a schedule (it stops firing until resumed).
    Pause {
        /// The schedule's name.
        name: String,
    },
    /// Resume a paused schedule.
    Resume {
        /// The schedule's name.
        name: String,
    },
    /// Delete a schedule (on AWS, its EventBridge schedule too).
    Delete {
        /// The schedule's name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_grammar_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
