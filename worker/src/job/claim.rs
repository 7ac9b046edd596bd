//! The claim: one conditional write, INITIALIZING -> RUNNING, that also
//! requires the job's user and mode, so a job this worker must not run is
//! never touched. Only a refused claim reads the record, to say why
//! ([`ClaimError`]).

use std::sync::Arc;

use plus_jobs::{
    job::{is_terminal, run_mode_name, status_name},
    Expect, Job, JobStatus, JobStore, RunMode, StoreError, Timestamp,
};

use crate::{config::Config, outcome::Outcome};

/// Why this worker may not run the job, each a sentence that says what to
/// do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// There is no such job.
    #[error("job {id} was not found: check JOB_ID, and that DYNAMO_TABLE names the table the launcher wrote it to")]
    NotFound {
        /// JOB_ID.
        id: String,
    },
    /// The record could not be read as a job and was ended FAILED with
    /// this sentence.
    #[error("{sentence}")]
    FailedUnreadable {
        /// The recorded error.
        sentence: String,
    },
    /// The record cannot be read as a job.
    #[error("job {id} cannot be run: its record is malformed ({reason})")]
    Malformed {
        /// JOB_ID.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The worker was launched for another user.
    #[error("USERNAME is {expected:?} but job {id} belongs to {found:?}: a worker only runs jobs of the user it was launched for")]
    OtherUser {
        /// JOB_ID.
        id: String,
        /// USERNAME.
        expected: String,
        /// The record's `username`.
        found: String,
    },
    /// The worker was launched with another mode.
    #[error("RUN_MODE is {} but job {id} was launched as {}: launch the worker with the job's own mode", run_mode_name(*.expected), run_mode_name(*.found))]
    OtherMode {
        /// JOB_ID.
        id: String,
        /// RUN_MODE.
        expected: RunMode,
        /// The record's `run_mode`.
        found: RunMode,
    },
    /// Another worker holds the job.
    #[error("job {id} is already RUNNING, held by {lease}: only one worker runs a job at a time, so this one exits without running anything")]
    HeldByAnother {
        /// JOB_ID.
        id: String,
        /// The other worker's lease.
        lease: String,
    },
    /// The job must be relaunched first.
    #[error("job {id} is INTERRUPTED: relaunch it (`plus retry {id}`, or let the monitor do it) to move it back to INITIALIZING first")]
    Interrupted {
        /// JOB_ID.
        id: String,
    },
    /// The job has ended.
    #[error("job {id} is already {}: a finished job never runs again; launch a new one or `plus retry {id}`", status_name(*.status))]
    Finished {
        /// JOB_ID.
        id: String,
        /// Its terminal status.
        status: JobStatus,
    },
    /// Another worker's claim won the race.
    #[error("job {id} was claimed by another worker first ({reason}): this one exits without running anything")]
    ClaimedFirst {
        /// JOB_ID.
        id: String,
        /// The store's account of the lost write.
        reason: String,
    },
    /// The record and the worker's environment disagree about what the
    /// job may use (DESIGN.md, Ownership): nothing was written.
    #[error("job {id} cannot run here: {}; the record and the task's environment must name the same collection, action and the job's own script", .problems.join("; "))]
    Disagrees {
        /// JOB_ID.
        id: String,
        /// Each disagreement, naming the attribute.
        problems: Vec<String>,
    },
    /// The action the job names belongs to another user.
    #[error("ACTION_ID {action:?} does not name an action of {user}: a job may use only its own user's actions ({user}/actions)")]
    ForeignAction {
        /// ACTION_ID.
        action: String,
        /// USERNAME.
        user: String,
    },
    /// The store failed.
    #[error("{doing} failed: {source}")]
    Store {
        /// What the worker was doing.
        doing: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

impl ClaimError {
    /// Whether trying again later may succeed (the store was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, ClaimError::Store { source, .. } if source.is_transient())
    }
}

impl From<ClaimError> for Outcome {
    fn from(e: ClaimError) -> Self {
        match e {
            ClaimError::OtherUser { .. }
            | ClaimError::OtherMode { .. }
            | ClaimError::Disagrees { .. }
            | ClaimError::ForeignAction { .. } => Outcome::BadConfig(e.to_string()),
            ClaimError::Store {
                source: StoreError::Rejected(_),
                ..
            } => Outcome::BadConfig(e.to_string()),
            ClaimError::Store { .. } => Outcome::StoreUnreachable(e.to_string()),
            ClaimError::FailedUnreadable { sentence } => Outcome::Failed(sentence),
            _ => Outcome::NotClaimable(e.to_string()),
        }
    }
}

/// Claims the job `config` names for `lease`: RUNNING, with a fresh
/// heartbeat (and, on the first claim, `started_at` and attempt 1).
///
/// # Errors
/// [`ClaimError`] saying why this worker may not run it.
pub async fn claim(
    config: &Config,
    jobs: &Arc<dyn JobStore>,
    lease: &str,
) -> Result<Job, ClaimError> {
    let id = config.job_id.as_str();
    let now = Timestamp::now();
    // A task ARN (from the metadata endpoint) is written; a local id only
    // fills in, so it never hides the ARN the launcher recorded.
    let is_arn = lease.starts_with("arn:");
    let claim = Job {
        status: JobStatus::Running as i32,
        lease: lease.to_owned(),
        fargate_task_arn: if is_arn {
            lease.to_owned()
        } else {
            String::new()
        },
        heartbeat_at: now.to_string(),
        updated_at: now.to_string(),
        ..Job::default()
    };
    let first_claim = Job {
        fargate_task_arn: if is_arn {
            String::new()
        } else {
            lease.to_owned()
        },
        started_at: now.to_string(),
        attempt: Some(1),
        ..Job::default()
    };
    if config.run_mode == RunMode::RunAction {
        check_action(config, jobs).await?;
    }
    let expect = Expect::status([JobStatus::Initializing])
        .for_worker(&config.username, config.run_mode)
        .with_origin(
            config.collection_owner.clone(),
            config.action_id.clone(),
            Some(format!("jobs/{id}/")),
        );
    match jobs
        .update_job_with(id, &expect, &claim, &first_claim)
        .await
    {
        Ok(job) => Ok(job),
        Err(StoreError::Conflict { reason, .. }) => {
            Err(refused(config, jobs, &expect, reason).await)
        }
        // The record cannot be read as a job (an engine wrote an attribute
        // with the wrong type). On DynamoDB the claim wrote before the
        // answer could be read: end the job FAILED, naming the attribute,
        // rather than leave it RUNNING; if that is refused too, nothing
        // was changed.
        Err(StoreError::Malformed { reason, .. }) => {
            let sentence = format!("job {id} cannot be run: its record is malformed ({reason})");
            match jobs
                .fail_unreadable(id, &config.username, lease, &sentence)
                .await
            {
                Ok(()) => Err(ClaimError::FailedUnreadable { sentence }),
                Err(_) => Err(ClaimError::Malformed {
                    id: id.to_owned(),
                    reason,
                }),
            }
        }
        Err(source) => Err(ClaimError::Store {
            doing: "claiming the job",
            source,
        }),
    }
}

/// RUN_ACTION: the object ACTION_ID names, if it exists, must be this
/// user's (an action's owner is `{username}/actions`); checked before the
/// claim, so a job that names another user's action is never touched.
async fn check_action(config: &Config, jobs: &Arc<dyn JobStore>) -> Result<(), ClaimError> {
    let Some(action) = config.action_id.as_deref() else {
        return Ok(());
    };
    let object = jobs
        .get_object(action)
        .await
        .map_err(|source| ClaimError::Store {
            doing: "reading the action",
            source,
        })?;
    let owner = object
        .as_ref()
        .and_then(|o| o.get("owner"))
        .and_then(serde_json::Value::as_str);
    let user = owner.and_then(|o| o.split('/').next());
    match (&object, user) {
        // A missing action, or an object of this user that is not an
        // action, fails the job after the claim, saying so.
        (None, _) => Ok(()),
        (Some(_), Some(user)) if user == config.username => Ok(()),
        _ => Err(ClaimError::ForeignAction {
            action: action.to_owned(),
            user: config.username.clone(),
        }),
    }
}

/// Why a claim was refused, read from the record.
async fn refused(
    config: &Config,
    jobs: &Arc<dyn JobStore>,
    expect: &Expect,
    reason: String,
) -> ClaimError {
    let id = config.job_id.to_string();
    let job = match jobs.get_job(&id).await {
        Ok(Some(job)) => job,
        Ok(None) => return ClaimError::NotFound { id },
        Err(StoreError::Malformed { reason, .. }) => return ClaimError::Malformed { id, reason },
        Err(source) => {
            return ClaimError::Store {
                doing: "reading the job",
                source,
            }
        }
    };
    if job.username != config.username {
        return ClaimError::OtherUser {
            id,
            expected: config.username.clone(),
            found: job.username,
        };
    }
    if job.run_mode() != config.run_mode {
        return ClaimError::OtherMode {
            id,
            expected: config.run_mode,
            found: job.run_mode(),
        };
    }
    let problems = expect.origin_mismatches(&job);
    if !problems.is_empty() {
        return ClaimError::Disagrees { id, problems };
    }
    match job.status() {
        JobStatus::Running => ClaimError::HeldByAnother {
            id,
            lease: job.lease,
        },
        JobStatus::Interrupted => ClaimError::Interrupted { id },
        status if is_terminal(status) => ClaimError::Finished { id, status },
        _ => ClaimError::ClaimedFirst { id, reason },
    }
}
