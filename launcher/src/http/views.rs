//! The routes that read what a job left (its log, output files and
//! per-item results) and the retry route, thin over
//! [`crate::ops::views`] and [`crate::ops::Launcher::retry`].

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{
        rejection::{PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::Response,
};
use plus_jobs::job::{job_json, JobId};
use serde::Deserialize;

use super::{
    auth::Caller,
    cache::{json_response, poll_hint},
    error::ApiError,
    state::ApiState,
};
use crate::ops::{views::check_output_name, LauncherError};

type Shared = State<Arc<ApiState>>;

/// `GET /jobs/{id}/log` query.
#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    /// Only this attempt's log (1 is the first).
    pub attempt: Option<u32>,
}

fn parse_id(id: String) -> Result<String, ApiError> {
    JobId::parse(id.clone())
        .map(String::from)
        .map_err(|_| LauncherError::NotFound(id).into())
}

fn job_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    parse_id(id)
}

/// A download: `bytes` as `content_type`, saved as `filename`.
fn attachment(bytes: Vec<u8>, content_type: &'static str, filename: &str) -> Response {
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    // Keep the header one safe line whatever the name holds.
    let safe: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// `GET /jobs/{id}/log[?attempt=N]`: the whole log as text, every attempt
/// under a header line (a sharded parent: every shard's), or attempt N's
/// alone. 409 when no log is stored yet (the job exists; its log comes as it
/// runs), 404 when the job had no attempt N.
pub async fn log(
    caller: Caller,
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = job_id(path)?;
    let Query(q) = q.map_err(|e| {
        ApiError::BadRequest(format!(
            "the query string is not valid: {} (attempt is a number from 1)",
            e.body_text()
        ))
    })?;
    let bytes = state
        .launcher
        .full_log(&caller.0, &id, q.attempt)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "job {id} has no stored log yet (it is stored as the job runs and when it ends): read its output with GET /jobs/{id}/events"
            ))
        })?;
    Ok(attachment(
        bytes,
        "text/plain; charset=utf-8",
        &format!("{id}.log"),
    ))
}

/// `GET /jobs/{id}/outputs`: `{"files": [{"name", "size"}]}`.
pub async fn outputs(
    caller: Caller,
    State(state): Shared,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = job_id(path)?;
    let files = state.launcher.outputs(&caller.0, &id).await?;
    let body = serde_json::json!({ "files": files });
    Ok(json_response(&headers, StatusCode::OK, &body, None))
}

/// `GET /jobs/{id}/outputs/{*name}`: one output file's bytes, as a download.
pub async fn output(
    caller: Caller,
    State(state): Shared,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((id, name)) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let id = parse_id(id)?;
    check_output_name(&name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let bytes = state.launcher.output(&caller.0, &id, &name).await?;
    let base = name.rsplit('/').next().unwrap_or(&name).to_owned();
    Ok(attachment(bytes, "application/octet-stream", &base))
}

/// `GET /jobs/{id}/results`: the per-item results as JSON lines (a sharded
/// parent: every shard's, in shard order). 409 when none are stored: the
/// job exists, but is not a collection job or has finished no item yet.
pub async fn results(
    caller: Caller,
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = job_id(path)?;
    let bytes = state.launcher.results(&caller.0, &id).await?.ok_or_else(|| {
        ApiError::Conflict(format!(
            "job {id} has no per-item results: only a collection job stores them, once it has finished items; a script's result is the `result` of GET /jobs/{id}"
        ))
    })?;
    let mut response = attachment(
        bytes,
        "application/x-ndjson",
        &format!("{id}.results.jsonl"),
    );
    response.headers_mut().remove(header::CONTENT_DISPOSITION);
    Ok(response)
}

/// `POST /jobs/{id}/retry`: an INTERRUPTED job is relaunched as itself
/// (200); a finished one runs again as a new job (201, `Location` names
/// it). 409 while the job is still running.
pub async fn retry(
    caller: Caller,
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = job_id(path)?;
    let launched = state.launcher.retry(&caller.0, &id).await?;
    let created = launched.job.object_id != id;
    let status = if created {
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
