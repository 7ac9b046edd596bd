//! The launch request: the one type every face (CLI, JSON operations, HTTP)
//! turns its input into, validated here before anything is written, and the
//! job record it becomes.

use plus_jobs::{
    blob,
    contract::OwnerPath,
    job::{new_job, JobId},
    Job, RunMode, Script, Timestamp,
};
use serde_json::Value;

/// Scripts up to this size are stored inline on the record; larger ones go
/// to the blob store as `jobs/{id}/script`.
pub const INLINE_SCRIPT_BYTES: usize = 32 * 1024;

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct LaunchRequest {
    /// Who launches it.
    pub username: String,
    /// The mode.
    pub run_mode: RunMode,
    /// The script's text (RUN_SCRIPT, RUN_COLLECTION).
    pub script: Option<Vec<u8>>,
    /// A script already in the blob store.
    pub script_key: Option<String>,
    /// Where the script came from, for messages.
    pub script_name: String,
    /// `interpreter`.
    pub interpreter: String,
    /// `args`.
    pub args: Vec<String>,
    /// Parameters (a JSON object).
    pub params: serde_json::Map<String, Value>,
    /// RUN_COLLECTION: the collection's owner path.
    pub collection_owner: Option<String>,
    /// RUN_COLLECTION: one streaming process instead of one per item.
    pub streaming: bool,
    /// RUN_ACTION: the action's id.
    pub action_id: Option<String>,
    /// `timeout_seconds`.
    pub timeout_seconds: Option<u32>,
    /// `max_attempts`.
    pub max_attempts: Option<u32>,
    /// RUN_COLLECTION: item failures tolerated (a count).
    pub tolerated_failures: Option<u32>,
    /// RUN_COLLECTION: item failures tolerated (a percentage).
    pub tolerated_failure_percent: Option<f32>,
    /// The Fargate task's size and kind (AWS backend).
    pub resources: plus_jobs::TaskResources,
    /// A caller-chosen job id (a retried launch with the same id is
    /// harmless); a new time-sortable id when `None`.
    pub job_id: Option<String>,
    /// A label a person gives the job (`name`), shown in lists; at most
    /// [`MAX_NAME_CHARS`] characters, no control characters.
    pub name: Option<String>,
    /// Retry rules (`retry`, AWS Batch's `evaluateOnExit` shape), checked
    /// by [`plus_jobs::retry::validate`] before anything is written.
    pub retry: Vec<plus_jobs::retry::RetryRule>,
    /// `priority`: higher is admitted first when work waits (default 0).
    pub priority: i32,
    /// `secrets`: env var name -> reference (DESIGN.md, Secrets), checked
    /// by [`plus_jobs::secrets::validate`] before anything is written;
    /// only the references are stored.
    pub secrets: std::collections::HashMap<String, String>,
}

/// One retry rule as the JSON operation and the HTTP API take it
/// (`{"on_exit_code": "3", "action": "RETRY"}`): the fields of
/// [`plus_jobs::retry::RetryRule`], unknown fields refused.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRuleInput {
    /// Glob on the exit code.
    #[serde(default)]
    pub on_exit_code: String,
    /// Glob on the reason.
    #[serde(default)]
    pub on_reason: String,
    /// Glob on the status reason.
    #[serde(default)]
    pub on_status_reason: String,
    /// `RETRY` or `EXIT`.
    #[serde(default)]
    pub action: String,
}

impl From<RetryRuleInput> for plus_jobs::retry::RetryRule {
    fn from(r: RetryRuleInput) -> Self {
        Self {
            on_exit_code: r.on_exit_code,
            on_reason: r.on_reason,
            on_status_reason: r.on_status_reason,
            action: r.action,
        }
    }
}

/// The longest `name` a job may have, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// The most `params` may hold, as JSON: they reach the script as one
/// environment variable (`PLUS_PARAMS`), and Linux refuses a single one
/// longer than 128 KiB (MAX_ARG_STRLEN) with "Argument list too long".
/// The rest of the margin is for the other variables.
pub const MAX_PARAMS_BYTES: usize = 100 * 1024;

/// Why a launch request was refused; nothing was written.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// A field is missing or wrong; the message names it and the fix.
    #[error("{0}")]
    Field(String),
    /// The task size breaks Fargate's rules.
    #[error(transparent)]
    Resources(#[from] super::resources::ResourceError),
    /// The request names an object the user does not have: missing,
    /// another user's, or of another kind all read the same, so an answer
    /// never tells another user's object apart from a missing one.
    #[error("{0}")]
    NotFound(String),
}

/// The one answer for a collection `owner` that is not among `username`'s.
pub fn collection_not_found(owner: &str, username: &str) -> String {
    format!(
        "collection {owner} was not found among yours: your collections are named {username}/collections/NAME"
    )
}

/// `owner` as an owner path of `username`'s. Another user's path reads as
/// a missing collection, well-formed or not.
///
/// # Errors
/// [`InvalidRequest::NotFound`] for another user's path,
/// [`InvalidRequest::Field`] for a malformed one of the user's.
pub fn users_owner_path(owner: &str, username: &str) -> Result<OwnerPath, InvalidRequest> {
    let not_found = || InvalidRequest::NotFound(collection_not_found(owner, username));
    match OwnerPath::parse(owner) {
        Ok(path) if path.belongs_to(username) => Ok(path),
        Ok(_) => Err(not_found()),
        Err(_)
            if owner
                .split_once('/')
                .is_some_and(|(user, _)| user != username) =>
        {
            Err(not_found())
        }
        Err(e) => Err(InvalidRequest::Field(format!("the collection owner {e}"))),
    }
}

/// The one answer for an action `id` that is not among `username`'s
/// (missing, another user's, or not an action).
pub fn action_not_found(id: &str, username: &str) -> String {
    format!(
        "action {id} was not found among {username}'s actions: store it with `plus action put {id} SCRIPT`"
    )
}

/// A validated request: the job record and, for large scripts, the script
/// bytes to upload before the record is written.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The record to write.
    pub job: Job,
    /// `(key, bytes)` to store first.
    pub upload: Option<(String, Vec<u8>)>,
}

/// Checks a request and builds its record.
///
/// # Errors
/// [`InvalidRequest`] naming the problem.
pub fn prepare(req: &LaunchRequest) -> Result<Prepared, InvalidRequest> {
    let bad = |s: String| Err(InvalidRequest::Field(s));
    for (name, value) in [
        ("the username", Some(req.username.as_str())),
        ("the action id", req.action_id.as_deref()),
        ("the collection owner", req.collection_owner.as_deref()),
        ("the interpreter", Some(req.interpreter.as_str())),
    ] {
        // A NUL cannot reach the worker (environment variables are C
        // strings): refuse it here rather than fail the task at start.
        if value.is_some_and(|v| v.contains('\0')) {
            return bad(format!(
                "{name} contains a NUL character, which cannot be passed to the worker"
            ));
        }
    }
    let action = req
        .action_id
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty());
    if let (RunMode::RunAction, Some(id)) = (req.run_mode, action) {
        if req.script.is_some() || req.script_key.is_some() {
            let script = if req.script_name.is_empty() {
                "a script"
            } else {
                req.script_name.as_str()
            };
            return bad(format!(
                "an action brings its own script: run action {id} without {script}, or launch {script} on its own (not as action {id})"
            ));
        }
        if !req.args.is_empty() || !req.interpreter.is_empty() {
            return bad(format!(
                "an action brings its own script, interpreter and arguments: run action {id} without them, or store them with `plus action put {id} SCRIPT`"
            ));
        }
    }
    if let Some(name) = &req.name {
        check_name(name)?;
    }
    let params_len = serde_json::to_string(&req.params).map_or(0, |s| s.len());
    if params_len > MAX_PARAMS_BYTES {
        return bad(format!(
            "the params are {} KiB as JSON, over the {} KiB that fit in the script's environment (PLUS_PARAMS): put big data in a file the script reads, or in a collection (plus collection import)",
            params_len.div_ceil(1024),
            MAX_PARAMS_BYTES / 1024
        ));
    }
    if req.args.iter().any(|a| a.contains('\0')) {
        return bad(
            "a script argument contains a NUL byte, which no program can receive".to_owned(),
        );
    }
    if req.username.trim().is_empty() || req.username.contains('/') {
        return bad(format!(
            "the username {:?} is not valid: it must be non-empty and have no '/'",
            req.username
        ));
    }
    let id = match &req.job_id {
        Some(id) => JobId::parse(id.clone())
            .map_err(|e| InvalidRequest::Field(format!("job id {id:?}: {e}")))?,
        None => JobId::generate(),
    };
    let mut job = new_job(&id, &req.username, req.run_mode, Timestamp::now());
    let mut upload = None;
    match req.run_mode {
        RunMode::RunScript | RunMode::RunCollection => {
            let mut script = Script {
                interpreter: req.interpreter.clone(),
                args: req.args.clone(),
                streaming: req.streaming,
                ..Script::default()
            };
            match (&req.script, &req.script_key) {
                (Some(bytes), _) => {
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        return bad(format!(
                            "the script {} is empty: there is nothing to run",
                            req.script_name
                        ));
                    }
                    match std::str::from_utf8(bytes) {
                        Ok(text) if bytes.len() <= INLINE_SCRIPT_BYTES => {
                            script.source = text.to_owned()
                        }
                        _ => {
                            let key = blob::script_key(id.as_str());
                            script.s3_key = key.clone();
                            upload = Some((key, bytes.clone()));
                        }
                    }
                }
                (None, Some(key)) => script.s3_key = key.clone(),
                (None, None) => {
                    return bad("a script is required: pass the script file to run".to_owned())
                }
            }
            job.script = Some(script);
        }
        RunMode::RunAction => {}
        RunMode::Unspecified => {
            return bad(
                "a run mode is required: RUN_SCRIPT, RUN_COLLECTION or RUN_ACTION".to_owned(),
            )
        }
    }
    match req.run_mode {
        RunMode::RunCollection => match req.collection_owner.as_deref().map(str::trim) {
            Some(owner) => {
                job.collection_owner = users_owner_path(owner, &req.username)?.to_string();
            }
            None => {
                return bad(
                    "RUN_COLLECTION needs a collection owner (--collection OWNER)".to_owned(),
                )
            }
        },
        RunMode::RunAction => match req.action_id.as_deref().map(str::trim) {
            Some(action) if !action.is_empty() => job.action_id = action.to_owned(),
            _ => return bad("RUN_ACTION needs an action id (--action ID)".to_owned()),
        },
        _ => {}
    }
    if let Some(t) = req.timeout_seconds {
        if t == 0 {
            return bad(
                "timeout_seconds must be at least 1 (leave it out for no limit)".to_owned(),
            );
        }
        job.timeout_seconds = Some(t);
    }
    if let Some(m) = req.max_attempts {
        if !(1..=100).contains(&m) {
            return bad(format!("max_attempts is {m}: it must be from 1 to 100"));
        }
        job.max_attempts = Some(m);
    }
    if let Some(p) = req.tolerated_failure_percent {
        if !(0.0..=100.0).contains(&p) {
            return bad(format!(
                "the tolerated failure percentage is {p}: it must be from 0 to 100"
            ));
        }
        job.tolerated_failure_percent = Some(p);
    }
    job.tolerated_failures = req.tolerated_failures;
    super::resources::validate(&req.resources)?;
    if req.resources != plus_jobs::TaskResources::default() {
        job.resources = Some(req.resources.clone());
    }
    job.params = plus_jobs::params::params_struct(&req.params).map_err(InvalidRequest::Field)?;
    job.name = req.name.clone().unwrap_or_default();
    plus_jobs::retry::validate(&req.retry).map_err(InvalidRequest::Field)?;
    job.retry = req.retry.clone();
    job.priority = req.priority;
    check_secrets(&req.secrets, &req.username)?;
    job.secrets = req.secrets.clone();
    Ok(Prepared { job, upload })
}

/// Checks a `secrets` map of `username`'s: names that may be environment
/// variables, well-formed references of the user's own prefix.
///
/// # Errors
/// [`InvalidRequest::Field`] naming a bad name or a malformed reference;
/// [`InvalidRequest::NotFound`] for a reference outside the user's prefix
/// (like another user's collection, it is not among theirs), naming the
/// reference and the prefix allowed.
pub fn check_secrets(
    secrets: &std::collections::HashMap<String, String>,
    username: &str,
) -> Result<(), InvalidRequest> {
    use plus_jobs::secrets::{check_env_name, SecretRef};
    let nothing = |e: String| format!("{e} (nothing was written)");
    for (name, text) in plus_jobs::secrets::sorted(secrets) {
        check_env_name(name).map_err(|e| InvalidRequest::Field(nothing(e)))?;
        let reference = SecretRef::parse(text)
            .map_err(|e| InvalidRequest::Field(nothing(format!("secret {name}: {e}"))))?;
        reference
            .check_owner(username)
            .map_err(|e| InvalidRequest::NotFound(nothing(format!("secret {name}: {e}"))))?;
    }
    Ok(())
}

/// For the faces that do not run in the user's own shell (the Lambda's
/// JSON operations, the HTTP API): `env:` references are refused, since
/// the only environment there is the server's.
///
/// # Errors
/// [`InvalidRequest::Field`] naming the first `env:` secret.
pub fn refuse_env_secrets(
    secrets: &std::collections::HashMap<String, String>,
) -> Result<(), InvalidRequest> {
    for (name, reference) in plus_jobs::secrets::sorted(secrets) {
        if reference.starts_with("env:") {
            return Err(InvalidRequest::Field(format!(
                "secret {name} ({reference}): env: references are read from the environment of `plus run` / `plus launch` only; here reference a Secrets Manager secret (plus/USER/...) or an SSM parameter (ssm:/plus/USER/...) (nothing was written)"
            )));
        }
    }
    Ok(())
}

/// Checks a job's `name`: at most [`MAX_NAME_CHARS`] characters, none of
/// them a control character.
///
/// # Errors
/// [`InvalidRequest::Field`] saying which rule it breaks.
pub fn check_name(name: &str) -> Result<(), InvalidRequest> {
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(InvalidRequest::Field(format!(
            "the name is {chars} characters long: a job's name has at most {MAX_NAME_CHARS}"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidRequest::Field(
            "the name contains a control character (a newline, tab or escape): give a name of printable characters".to_owned(),
        ));
    }
    Ok(())
}

/// Parses `key=value` parameters by DESIGN.md's rule
/// ([`plus_jobs::params::parse_pairs`]): a value is JSON only when it reads
/// back unchanged, otherwise the exact string.
///
/// # Errors
/// When an entry has no `=`, an empty key, or a key given twice.
pub fn parse_params(pairs: &[String]) -> Result<serde_json::Map<String, Value>, InvalidRequest> {
    plus_jobs::params::parse_pairs(pairs).map_err(InvalidRequest::Field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plus_jobs::JobStatus;

    fn script_request() -> LaunchRequest {
        LaunchRequest {
            username: "alice".into(),
            run_mode: RunMode::RunScript,
            script: Some(b"echo hi\n".to_vec()),
            script_name: "hello.sh".into(),
            ..LaunchRequest::default()
        }
    }

    #[test]
    fn a_script_request_becomes_an_initializing_record() {
        let p = prepare(&script_request()).unwrap();
        assert_eq!(p.job.status(), JobStatus::Initializing);
        assert_eq!(p.job.owner, "alice/jobs");
        assert_eq!(p.job.script.unwrap().source, "echo hi\n");
        assert!(p.upload.is_none());
    }

    #[test]
    fn large_scripts_go_to_the_blob_store() {
        let mut req = script_request();
        req.script = Some(vec![b'#'; INLINE_SCRIPT_BYTES + 1]);
        let p = prepare(&req).unwrap();
        let key = p.job.script.unwrap().s3_key;
        assert_eq!(key, format!("jobs/{}/script", p.job.object_id));
        assert_eq!(p.upload.unwrap().0, key);
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let mut req = script_request();
        req.script = Some(b"  \n".to_vec());
        assert!(prepare(&req).unwrap_err().to_string().contains("is empty"));
        let req = LaunchRequest {
            run_mode: RunMode::RunCollection,
            collection_owner: Some("photos".into()),
            ..script_request()
        };
        assert!(prepare(&req)
            .unwrap_err()
            .to_string()
            .contains("not an owner path"));
        let req = LaunchRequest {
            run_mode: RunMode::RunCollection,
            collection_owner: Some("bob/collections/x".into()),
            ..script_request()
        };
        assert_eq!(
            prepare(&req).unwrap_err(),
            InvalidRequest::NotFound(collection_not_found("bob/collections/x", "alice"))
        );
        let req = LaunchRequest {
            run_mode: RunMode::RunAction,
            ..script_request()
        };
        assert!(prepare(&req).unwrap_err().to_string().contains("--action"));
        let req = LaunchRequest {
            job_id: Some("a b".into()),
            ..script_request()
        };
        assert!(prepare(&req).unwrap_err().to_string().contains("job id"));
    }

    #[test]
    fn nul_characters_and_huge_integers_are_handled() {
        let req = LaunchRequest {
            run_mode: RunMode::RunAction,
            action_id: Some("a\0b".into()),
            ..script_request()
        };
        assert!(prepare(&req)
            .unwrap_err()
            .to_string()
            .contains("NUL character"));
        let mut req = script_request();
        req.params = parse_params(&["n=18446744073709551615".into()]).unwrap();
        let job = prepare(&req).unwrap().job;
        let stored = serde_json::to_value(job.params.unwrap()).unwrap();
        assert_eq!(
            stored["n"], "18446744073709551615",
            "a double cannot hold it: the exact string"
        );
    }

    #[test]
    fn secrets_outside_the_users_prefix_are_refused() {
        let mut req = script_request();
        req.secrets = [("DB".to_owned(), "plus/bob/x".to_owned())].into();
        let e = prepare(&req).unwrap_err().to_string();
        assert!(e.contains("plus/bob/x") && e.contains("plus/alice/"), "{e}");
        req.secrets = [("DB".to_owned(), "plus/alice/db".to_owned())].into();
        assert_eq!(prepare(&req).unwrap().job.secrets, req.secrets);
    }

    #[test]
    fn params_keep_their_json_types() {
        let p = parse_params(&[
            "n=3".into(),
            "name=bob".into(),
            "flag=true".into(),
            "s=\"3\"".into(),
        ])
        .unwrap();
        assert_eq!(
            Value::Object(p),
            serde_json::json!({"n": 3, "name": "bob", "flag": true, "s": "3"})
        );
        assert!(parse_params(&["oops".into()]).is_err());
        assert!(parse_params(&["=v".into()]).is_err());
        assert!(parse_params(&["a=1".into(), "a=2".into()]).is_err());
        let p = parse_params(&["v=1.10".into(), "id=0012".into(), "c=1e5".into()]).unwrap();
        assert_eq!(
            Value::Object(p),
            serde_json::json!({"v": "1.10", "id": "0012", "c": "1e5"})
        );
    }
}
