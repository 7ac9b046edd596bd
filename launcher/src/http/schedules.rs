//! The schedule routes: `GET|POST /schedules`, `GET|DELETE
//! /schedules/{name}`, `POST /schedules/{name}/pause|resume`; each is one
//! [`crate::ops::Launcher`] schedule operation for the caller.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{
        rejection::{BytesRejection, PathRejection},
        Path, State,
    },
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::Response,
};
use serde::Deserialize;

use super::{
    auth::Caller,
    cache::json_response,
    error::ApiError,
    handlers::{launch_request, LaunchBody},
    state::ApiState,
};
use crate::ops::schedules::{NewSchedule, Schedule, ScheduleError};

type Shared = State<Arc<ApiState>>;

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            ScheduleError::NotFound(_) | ScheduleError::NotFoundAction(_) => {
                ApiError::NotFound(e.to_string())
            }
            ScheduleError::Conflict(_) => ApiError::Conflict(e.to_string()),
            ScheduleError::Launcher(l) => l.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The body of `POST /schedules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// The schedule's name: 1 to 64 of `[A-Za-z0-9._-]`.
    pub name: String,
    /// `rate(...)`, `cron(...)` or `at(...)`, as EventBridge Scheduler reads it.
    pub expression: String,
    /// An IANA time zone (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// What each firing launches: the body of `POST /jobs` (without
    /// `object_id`: each firing's id derives from the scheduled time).
    pub launch: LaunchBody,
}

fn name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(n)| n)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn answer(status: StatusCode, value: &serde_json::Value) -> Response {
    json_response(&HeaderMap::new(), status, value, None)
}

/// `GET /schedules`: the caller's schedules, by name.
pub async fn list(caller: Caller, State(state): Shared) -> Result<Response, ApiError> {
    let all = state.launcher.list_schedules(&caller.0).await?;
    let views: Vec<_> = all.iter().map(Schedule::view).collect();
    Ok(answer(
        StatusCode::OK,
        &serde_json::json!({ "schedules": views }),
    ))
}

/// `POST /schedules`: creates a schedule (201), after checking its name,
/// expression, time zone and launch request.
pub async fn create(
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
    let body = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let body: ScheduleBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body is not a schedule (e.g. {{\"name\": \"nightly\", \"expression\": \"cron(0 2 * * ? *)\", \"launch\": {{\"script\": {{\"source\": \"echo hi\"}}}}}}; see ScheduleRequest in /openapi.yaml): {e}"
        ))
    })?;
    let request = launch_request(&caller.0, body.launch)?;
    let schedule = state
        .launcher
        .create_schedule(NewSchedule {
            name: body.name,
            expression: body.expression,
            timezone: body.timezone.unwrap_or_default(),
            request,
        })
        .await?;
    let mut response = answer(StatusCode::CREATED, &schedule.view());
    if let Ok(location) = HeaderValue::from_str(&format!("/schedules/{}", schedule.name)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /schedules/{name}`.
pub async fn show(
    caller: Caller,
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let n = name(path)?;
    let s = state.launcher.show_schedule(&caller.0, &n).await?;
    Ok(answer(StatusCode::OK, &s.view()))
}

/// `DELETE /schedules/{name}`.
pub async fn delete(
    caller: Caller,
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let n = name(path)?;
    let s = state.launcher.delete_schedule(&caller.0, &n).await?;
    Ok(answer(
        StatusCode::OK,
        &serde_json::json!({ "deleted": s.name }),
    ))
}

/// `POST /schedules/{name}/pause`.
pub async fn pause(
    caller: Caller,
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let n = name(path)?;
    let s = state
        .launcher
        .set_schedule_state(&caller.0, &n, false)
        .await?;
    Ok(answer(StatusCode::OK, &s.view()))
}

/// `POST /schedules/{name}/resume`.
pub async fn resume(
    caller: Caller,
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let n = name(path)?;
    let s = state
        .launcher
        .set_schedule_state(&caller.0, &n, true)
        .await?;
    Ok(answer(StatusCode::OK, &s.view()))
}
