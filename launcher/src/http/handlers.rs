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
    job::{job_json, normalize_numbers, status_name, JobId},
    Job, JobStatus, RunMode,
};
use serde::Deserialize;

use super::{
    auth::Caller,
    cache::{json_response, poll_hint, POLL_LIST},
    error::ApiError,
    ApiState,
};
use crate::{launch::LaunchRequest, ops::LauncherError};

/// Jobs per page when `page_size` is not given.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// The largest `page_size`.
pub const MAX_PAGE_SIZE: usize = 100;
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
                        "status {s:?} is not a status: use INITIALIZING, RUNNING, SUCCEEDED, FAILED, CANCELLED or INTERRUPTED"
                    ))
                })?,
        ),
    };
    let start = q.page_token.as_deref().filter(|t| !t.is_empty());
    let page = state.launcher.list(&caller.0, status, start, size).await?;
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

/// `GET /jobs/{id}`: one of the caller's jobs.
pub async fn status(
    caller: Caller,
    State(state): Shared,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = job_id(path)?;
    let job = state.launcher.status(&caller.0, &id).await?;
    Ok(json_response(
        &headers,
        StatusCode::OK,
        &job_json(&job),
        poll_hint(job.status()),
    ))
}

/// `GET /jobs/{id}/events?after=SEQ`: the job's events after `SEQ`, with the
/// job's status as it was just before they were read (so once the status is
/// final, the events include everything the job wrote before ending).
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
    // The owner check, and the status the answer reports.
    let job = state.launcher.status(&caller.0, &id).await?;
    let events = state
        .launcher
        .jobs()
        .events_after(&id, after, limit)
        .await
        .map_err(LauncherError::from)?;
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

/// `POST /jobs`: launches a job described by the proto3 JSON of a [`Job`]
/// (`run_mode`, `script`, `params`, ...). Fields the launcher and worker
/// write are ignored; the caller is the job's user. 201 for a new job, 200
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
            super::MAX_BODY_BYTES
        )),
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    let job: Job = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body is not a launch request (a Job in proto3 JSON, e.g. {{\"script\": {{\"source\": \"echo hi\"}}}}): {e}"
        ))
    })?;
    let req = launch_request(&caller.0, job)?;
    let launched = state
        .launcher
        .launch(&req, true)
        .await
        .map_err(|e| match e {
            LauncherError::NotFound(id) => ApiError::Conflict(format!(
                "the job id {id} is taken: choose another object_id, or leave it out for a new one"
            )),
            other => other.into(),
        })?;
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

/// Turns a launch body into a [`LaunchRequest`] for `user`.
///
/// # Errors
/// [`ApiError::BadRequest`] for what the HTTP API does not accept: a script
/// by bucket key (it could name another user's file) and another user's
/// collection.
pub fn launch_request(user: &str, mut job: Job) -> Result<LaunchRequest, ApiError> {
    let script = job.script.take().unwrap_or_default();
    if !script.s3_key.is_empty() {
        return Err(ApiError::BadRequest(
            "script.s3_key is not accepted over HTTP (it could name any file in the bucket): send the script's text as script.source, or launch a stored action with action_id".into(),
        ));
    }
    let run_mode = match job.run_mode() {
        RunMode::Unspecified if !job.action_id.is_empty() => RunMode::RunAction,
        RunMode::Unspecified if !job.collection_owner.is_empty() => RunMode::RunCollection,
        RunMode::Unspecified => RunMode::RunScript,
        mode => mode,
    };
    if !job.collection_owner.is_empty() && !job.collection_owner.starts_with(&format!("{user}/")) {
        return Err(ApiError::BadRequest(format!(
            "collection_owner {:?} is not one of your collections: it must start with \"{user}/\" (e.g. {user}/collections/photos)",
            job.collection_owner
        )));
    }
    let params = match job.params {
        Some(p) => {
            let mut v = serde_json::to_value(p)
                .map_err(|e| ApiError::BadRequest(format!("params cannot be read: {e}")))?;
            normalize_numbers(&mut v);
            match v {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            }
        }
        None => serde_json::Map::new(),
    };
    Ok(LaunchRequest {
        username: user.to_owned(),
        run_mode,
        script: (!script.source.is_empty()).then(|| script.source.into_bytes()),
        script_name: "script.source".into(),
        interpreter: script.interpreter,
        args: script.args,
        params,
        collection_owner: (!job.collection_owner.is_empty()).then_some(job.collection_owner),
        streaming: script.streaming,
        action_id: (!job.action_id.is_empty()).then_some(job.action_id),
        timeout_seconds: job.timeout_seconds,
        max_attempts: job.max_attempts,
        tolerated_failures: job.tolerated_failures,
        tolerated_failure_percent: job.tolerated_failure_percent,
        job_id: (!job.object_id.is_empty()).then_some(job.object_id),
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
