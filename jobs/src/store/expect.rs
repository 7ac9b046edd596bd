//! [`Expect`]: the condition a conditional write requires, the one rule
//! both adapters implement (DynamoDB as a condition expression, SQLite in
//! a transaction).

use plus_proto::{Job, JobStatus};

use crate::job::{run_mode_name, status_name};

/// The condition a conditional write requires. Every status change names the
/// statuses it may start from; a worker adds the lease it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// The job must be in one of these statuses (empty: any status).
    pub statuses: Vec<JobStatus>,
    /// The job's `lease` must equal this.
    pub lease: Option<String>,
    /// The job's `username` must equal this (a worker's claim).
    pub username: Option<String>,
    /// The job's `run_mode` must equal this (a worker's claim).
    pub run_mode: Option<plus_proto::RunMode>,
    /// The job's `collection_owner`, when it has one, must equal this (the
    /// worker's `COLLECTION_OWNER`).
    pub collection_owner: Option<String>,
    /// The job's `action_id`, when it has one, must equal this (the
    /// worker's `ACTION_ID`).
    pub action_id: Option<String>,
    /// The job's `script.s3_key`, when it has one, must start with this
    /// (`jobs/{job_id}/`: a job reads only its own script).
    pub script_key_prefix: Option<String>,
}

impl Expect {
    /// Expect one of `statuses`.
    pub fn status(statuses: impl IntoIterator<Item = JobStatus>) -> Self {
        Self {
            statuses: statuses.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Also expect the lease `lease`.
    pub fn with_lease(mut self, lease: impl Into<String>) -> Self {
        self.lease = Some(lease.into());
        self
    }

    /// Also expect the job to belong to `username` and run as `run_mode`.
    pub fn for_worker(
        mut self,
        username: impl Into<String>,
        run_mode: plus_proto::RunMode,
    ) -> Self {
        self.username = Some(username.into());
        self.run_mode = Some(run_mode);
        self
    }

    /// Also expect what the worker's environment says of the job's origin:
    /// its collection, its action, and that its script is its own
    /// (DESIGN.md, Ownership). `None` checks nothing.
    pub fn with_origin(
        mut self,
        collection_owner: Option<String>,
        action_id: Option<String>,
        script_key_prefix: Option<String>,
    ) -> Self {
        self.collection_owner = collection_owner;
        self.action_id = action_id;
        self.script_key_prefix = script_key_prefix;
        self
    }

    /// The origin checks `job` fails, as sentences naming the attribute
    /// (empty when they all hold).
    pub fn origin_mismatches(&self, job: &Job) -> Vec<String> {
        let mut out = Vec::new();
        let differs = |want: &Option<String>, have: &str| {
            want.as_deref()
                .is_some_and(|w| !have.is_empty() && w != have)
        };
        if differs(&self.collection_owner, &job.collection_owner) {
            out.push(format!(
                "the record's collection_owner is {:?} but COLLECTION_OWNER is {:?}",
                job.collection_owner,
                self.collection_owner.as_deref().unwrap_or_default()
            ));
        }
        if differs(&self.action_id, &job.action_id) {
            out.push(format!(
                "the record's action_id is {:?} but ACTION_ID is {:?}",
                job.action_id,
                self.action_id.as_deref().unwrap_or_default()
            ));
        }
        let key = job.script.as_ref().map(|s| s.s3_key.as_str()).unwrap_or("");
        if let Some(prefix) = &self.script_key_prefix {
            if !key.is_empty() && !key.starts_with(prefix.as_str()) {
                out.push(format!(
                    "the record's script.s3_key {key:?} is not under {prefix:?}: a job runs only its own script"
                ));
            }
        }
        out
    }

    /// Whether `job` meets the condition (the rule both adapters implement).
    pub fn holds_for(&self, job: &Job) -> bool {
        let status_ok =
            self.statuses.is_empty() || self.statuses.iter().any(|s| *s as i32 == job.status);
        let lease_ok = self.lease.as_deref().is_none_or(|l| l == job.lease);
        let user_ok = self.username.as_deref().is_none_or(|u| u == job.username);
        let mode_ok = self.run_mode.is_none_or(|m| m as i32 == job.run_mode);
        status_ok && lease_ok && user_ok && mode_ok && self.origin_mismatches(job).is_empty()
    }

    /// A sentence for a [`StoreError::Conflict`]: what was expected, and
    /// what was found when the adapter knows it.
    pub fn conflict_reason(&self, found: Option<&Job>) -> String {
        let wanted: Vec<&str> = self.statuses.iter().map(|s| status_name(*s)).collect();
        let mut reason = format!("expected status {}", wanted.join(" or "));
        if let Some(lease) = &self.lease {
            reason.push_str(&format!(" held by {lease}"));
        }
        if let Some(user) = &self.username {
            reason.push_str(&format!(" of user {user}"));
        }
        if let Some(mode) = self.run_mode {
            reason.push_str(&format!(" in {}", run_mode_name(mode)));
        }
        if let Some(job) = found {
            for mismatch in self.origin_mismatches(job) {
                reason.push_str(&format!("; {mismatch}"));
            }
        }
        match found {
            Some(job) => {
                let status = JobStatus::try_from(job.status).unwrap_or_default();
                reason.push_str(&format!(", found {}", status_name(status)));
                if self.lease.is_some() && !job.lease.is_empty() {
                    reason.push_str(&format!(" held by {}", job.lease));
                }
                if self.username.is_some() {
                    reason.push_str(&format!(" of user {}", job.username));
                }
                if self.run_mode.is_some() {
                    reason.push_str(&format!(" in {}", run_mode_name(job.run_mode())));
                }
            }
            None => reason.push_str(", found no such job"),
        }
        reason
    }
}
