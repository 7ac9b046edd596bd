//! The routes: each takes the [`Caller`] first (401 before anything is
//! read), checks its input, calls one [`crate::ops::Launcher`] operation and
//! answers with the proto3 JSON mapping of what it got.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{
        rejection::{BytesRejection, PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::Response,
};
use plus_jobs::{
    job::{job_json, status_name, JobId},
    JobStatus, RunMode,
};
use serde::Deserialize;

use super::{
    auth::Caller,
    cache::{json_response, poll_hint, POLL_LIST},
    error::ApiError,
    state::ApiState,
};
use crate::ops::{JobEvents, LaunchRequest, LauncherError};

/// Jobs per page when `page_size` is not given.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// The largest `page_size`.
pub const MAX_PAGE_SIZE: usize = 100;
/// The longest `q` of `GET /jobs`.
pub const MAX_QUERY_TEXT: usize = 200;
/// Events per answer when `limit` is not given.
pub const DEFAULT_EVENTS_LIMIT: usize = 500;
/// The largest events `limit`.
pub const MAX_EVENTS_LIMIT: usize = 1000;

type Shared = State<Arc<ApiState>>;

/// `GET /jobs` query.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// Jobs per page, 1 to 100.
    pub page_size: Option<usize>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
    /// Only jobs in this status (`RUNNING`, ...).
    pub status: Option<String>,
    /// Only jobs whose id or name contains this text (any case).
    pub q: Option<String>,
}

/// `GET /jobs/{id}/events` query.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// Only events with a greater sequence number (default 0: all).
    pub after: Option<u64>,
    /// Events per answer, 1 to 1000.
    pub limit: Option<usize>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| {
        ApiError::BadRequest(format!("the query string is not valid: {}", e.body_text()))
    })
}

/// The job id in the path. An id that cannot exist is simply not found.
fn job_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    JobId::parse(id.clone())
        .map(String::from)
        .map_err(|_| LauncherError::NotFound(id).into())
}

fn in_range(
    name: &str,
    value: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!(
            "{name} is {n}: it must be from 1 to {max}"
        ))),
    }
}

/// `GET /jobs`: the caller's jobs, newest first.
pub async fn list(
    caller: Caller,
    State(state): Shared,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let size = in_range("page_size", q.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            JobStatus::from_str_name(&s.to_uppercase())
                .filter(|s| *s != JobStatus::Unspecified)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "status {s:?} is not a status: use QUEUED, INITIALIZING, RUNNING, SUCCEEDED, FAILED, CANCELLED or INTERRUPTED"
                    ))
                })?,
        ),
    };
    let start = q.page_token.as_deref().filter(|t| !t.is_empty());
    if let Some(token) = start {
        // A position in the id order, not necessarily a job that exists:
        // any string an id could be made of is accepted.
        let is_position = token.len() <= 200
            && token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !is_position {
            return Err(ApiError::BadRequest(
                "page_token is not one this API gave out: pass the previous page's next_page_token unchanged".into(),
            ));
        }
    }
    let text = q.q.as_deref().unwrap_or("").trim();
    if text.chars().count() > MAX_QUERY_TEXT {
        return Err(ApiError::BadRequest(format!(
            "q is {} characters: search with at most {MAX_QUERY_TEXT} (a piece of a job id or name)",
            text.chars().count()
        )));
    }
    let page = state
        .launcher
        .find(&caller.0, status, text, start, size)
        .await?;
    let active = page.items.iter().any(|j| poll_hint(j.status()).is_some());
    let jobs: Vec<serde_json::Value> = page.items.iter().map(job_json).collect();
    let mut body = serde_json::json!({ "jobs": jobs });
    if let Some(next) = page.next {
        body["next_page_token"] = next.into();
    }
    Ok(json_response(
        &headers,
        StatusCode::OK,
        &body,
        active.then_some(POLL_LIST),
    ))
}

/// `GET /jobs/{id}`: one of the caller's jobs; a sharded parent's also
/// lists its shards (`shards: [{job_id, status, progress}]`).
pub async fn status(
    caller: Caller,
    State(state): Shared,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = job_id(path)?;
    let job = state.launcher.status(&caller.0, &id).await?;
    let mut body = job_json(&job);
    if crate::ops::shards::is_parent(&job) {
        let shards: Vec<serde_json::Value> = state
            .launcher
            .shards_of(&job)
            .await?
            .iter()
            .map(crate::ops::views::shard_summary)
            .collect();
        body["shards"] = shards.into();
    }
    Ok(json_response(
        &headers,
        StatusCode::OK,
        &body,
        poll_hint(job.status()),
    ))
}

/// `GET /jobs/{id}/events?after=SEQ`: the job's events after `SEQ`, with the
/// job's status as it was just before they were read (so once the status is
/// final, the events include everything the job wrote before ending). A
/// sharded parent's status is the one last aggregated (by `GET /jobs/{id}`,
/// which the page reads too): polling events writes nothing.
pub async fn events(
    caller: Caller,
    State(state): Shared,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = job_id(path)?;
    let q = query(q)?;
    let after = q.after.unwrap_or(0);
    let limit = in_range("limit", q.limit, DEFAULT_EVENTS_LIMIT, MAX_EVENTS_LIMIT)?;
    let JobEvents { job, events } = state.launcher.events(&caller.0, &id, after, limit).await?;
    let next_after = events.last().map_or(after, |e| e.seq);
    let more = events.len() >= limit;
    let events: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or_default())
        .collect();
    let body = serde_json::json!({
        "events": events,
        "next_after": next_after.to_string(),
        "status": status_name(job.status()),
        "more": more,
    });
    let poll = if more { None } else { poll_hint(job.status()) };
    Ok(json_response(&headers, StatusCode::OK, &body, poll))
}

/// `POST /jobs`: launches a job described by a [`LaunchBody`] (the fields
/// of a job's proto3 JSON a caller chooses); the caller is the job's user. 201 for a new job, 200
/// when a job with the given `object_id` already exists (a retried launch).
pub async fn launch(
    caller: Caller,
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json")
                || (v.starts_with("application/") && v.ends_with("+json"))
        });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType(
            "the body must be JSON: send `Content-Type: application/json`".into(),
        ));
    }
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
            "the body is larger than {} bytes: store a large script in the bucket and launch an action instead",
            super::state::MAX_BODY_BYTES
        )),
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    let body: LaunchBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body is not a launch request (e.g. {{\"script\": {{\"source\": \"echo hi\"}}}}; see LaunchRequest in /openapi.yaml): {e}"
        ))
    })?;
    let req = launch_request(&caller.0, body)?;
    let launched = state.launcher.launch(&req).await?;
    let status = if launched.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = json_response(
        &HeaderMap::new(),
        status,
        &job_json(&launched.job),
        poll_hint(launched.job.status()),
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/jobs/{}", launched.job.object_id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The body of `POST /jobs`: the fields of a [`Job`](plus_jobs::Job) a
/// caller chooses, with their proto3 JSON names, read strictly: an unknown
/// or misspelt field, a field the launcher or worker writes (`status`,
/// `username`, ...) or a value of the wrong JSON type is refused rather than
/// silently ignored. `null` means "not set", as in the proto3 mapping.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchBody {
    /// A job id of the caller's choosing (a retried launch is harmless).
    pub object_id: Option<String>,
    /// `RUN_SCRIPT`, `RUN_COLLECTION` or `RUN_ACTION`; inferred when absent.
    pub run_mode: Option<String>,
    /// The script (RUN_SCRIPT, RUN_COLLECTION).
    pub script: Option<LaunchScript>,
    /// Parameters handed to the script as `PLUS_PARAMS`.
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    /// RUN_COLLECTION: one of the caller's collections.
    pub collection_owner: Option<String>,
    /// RUN_ACTION: the stored action to run.
    pub action_id: Option<String>,
    /// `timeout_seconds`.
    pub timeout_seconds: Option<u32>,
    /// `max_attempts`.
    pub max_attempts: Option<u32>,
    /// RUN_COLLECTION: item failures tolerated (a count).
    pub tolerated_failures: Option<u32>,
    /// RUN_COLLECTION: item failures tolerated (a percentage).
    pub tolerated_failure_percent: Option<f32>,
    /// A label for the job, shown in lists (at most 200 characters).
    pub name: Option<String>,
    /// Retry rules (AWS Batch's `evaluateOnExit` shape, at most 5).
    pub retry: Option<Vec<crate::ops::request::RetryRuleInput>>,
    /// Higher is admitted first when work waits (default 0).
    pub priority: Option<i32>,
    /// Secrets for the script's environment: env var name -> reference
    /// (`plus/USER/...` or its ARN, `ssm:/plus/USER/...`; `env:` is refused
    /// here). Only the references are stored.
    pub secrets: Option<std::collections::HashMap<String, String>>,
}

/// The `script` of a [`LaunchBody`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchScript {
    /// The script's text.
    pub source: Option<String>,
    /// Refused over HTTP (it could name any file in the bucket); read only
    /// to say so.
    pub s3_key: Option<String>,
    /// The program that runs the script file.
    pub interpreter: Option<String>,
    /// Arguments after the script file.
    pub args: Option<Vec<String>>,
    /// RUN_COLLECTION: one process reads items as JSON lines on stdin.
    pub streaming: Option<bool>,
}

/// Turns a launch body into a [`LaunchRequest`] for `user`.
///
/// # Errors
/// [`ApiError::BadRequest`] naming the field: a script by bucket key (it
/// could name another user's file), fields that do not belong to the run
/// mode. Whose collection or action it is, [`crate::ops::Launcher::launch`]
/// checks for every face (another user's answers 404, like a missing one).
pub fn launch_request(user: &str, body: LaunchBody) -> Result<LaunchRequest, ApiError> {
    let bad = |m: String| Err(ApiError::BadRequest(m));
    let present = |s: &Option<String>| s.as_deref().is_some_and(|v| !v.is_empty());
    let run_mode = match body.run_mode.as_deref() {
        None | Some("RUN_MODE_UNSPECIFIED") if present(&body.action_id) => RunMode::RunAction,
        None | Some("RUN_MODE_UNSPECIFIED") if present(&body.collection_owner) => {
            RunMode::RunCollection
        }
        None | Some("RUN_MODE_UNSPECIFIED") => RunMode::RunScript,
        Some(name) => match RunMode::from_str_name(name) {
            Some(mode) => mode,
            None => {
                return bad(format!(
                "run_mode {name:?} is not a run mode: use RUN_SCRIPT, RUN_COLLECTION or RUN_ACTION"
            ))
            }
        },
    };
    let mode_name = run_mode.as_str_name();
    let mut stray = Vec::new();
    if run_mode != RunMode::RunCollection {
        if present(&body.collection_owner) {
            stray.push("collection_owner");
        }
        if body.tolerated_failures.is_some() {
            stray.push("tolerated_failures");
        }
        if body.tolerated_failure_percent.is_some() {
            stray.push("tolerated_failure_percent");
        }
    }
    if run_mode != RunMode::RunAction && present(&body.action_id) {
        stray.push("action_id");
    }
    if run_mode == RunMode::RunAction && body.script.is_some() {
        stray.push("script");
    }
    if !stray.is_empty() {
        return bad(format!(
            "{} do(es) not apply to a {mode_name} job: leave it out, or set run_mode to the mode it belongs to",
            stray.join(", ")
        ));
    }
    let script = body.script.unwrap_or_default();
    if script.s3_key.as_deref().is_some_and(|k| !k.is_empty()) {
        return bad("script.s3_key is not accepted over HTTP (it could name any file in the bucket): send the script's text as script.source, or launch a stored action with action_id".into());
    }
    let secrets = body.secrets.unwrap_or_default();
    if let Err(e) = crate::ops::request::refuse_env_secrets(&secrets) {
        return bad(e.to_string());
    }
    // Whose collection it is, like every launch check, is `prepare`'s.
    let collection_owner = body.collection_owner.filter(|o| !o.is_empty());
    Ok(LaunchRequest {
        username: user.to_owned(),
        run_mode,
        script: script
            .source
            .filter(|s| !s.is_empty())
            .map(String::into_bytes),
        script_name: "script.source".into(),
        interpreter: script.interpreter.unwrap_or_default(),
        args: script.args.unwrap_or_default(),
        params: body.params.unwrap_or_default(),
        collection_owner,
        streaming: script.streaming.unwrap_or_default(),
        action_id: body.action_id.filter(|a| !a.is_empty()),
        timeout_seconds: body.timeout_seconds,
        max_attempts: body.max_attempts,
        tolerated_failures: body.tolerated_failures,
        tolerated_failure_percent: body.tolerated_failure_percent,
        job_id: body.object_id.filter(|i| !i.is_empty()),
        name: body.name.filter(|n| !n.is_empty()),
        retry: body
            .retry
            .unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect(),
        priority: body.priority.unwrap_or_default(),
        secrets,
        // Fields added to LaunchRequest later keep their defaults until the
        // HTTP API reads them.
        ..LaunchRequest::default()
    })
}

/// `POST /jobs/{id}/cancel`: an INITIALIZING or INTERRUPTED job is
/// CANCELLED at once; a RUNNING one gets `cancel_requested` and its worker
/// stops the script. 409 when the job already ended.
pub async fn cancel(
    caller: Caller,
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = job_id(path)?;
    let job = state.launcher.cancel(&caller.0, &id).await?;
    Ok(json_response(
        &HeaderMap::new(),
        StatusCode::OK,
        &job_json(&job),
        poll_hint(job.status()),
    ))
}

/// Any other path: 404.
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!(
        "there is no {method} {}: the routes are listed in /openapi.yaml",
        uri.path()
    ))
}

/// A known path with a method it does not take: 405.
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} does not take {method}: the routes are listed in /openapi.yaml",
        uri.path()
    ))
}
