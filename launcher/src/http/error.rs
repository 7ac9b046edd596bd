//! Every failure as a status code and a JSON body
//! `{"code": "not_found", "message": "..."}` whose message says what to do.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use plus_jobs::StoreError;

use crate::ops::{InvalidRequest, LauncherError};

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_UNAVAILABLE: u64 = 5;

/// Errors the HTTP API answers with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No valid credentials: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// A malformed request: 400.
    #[error("{0}")]
    BadRequest(String),
    /// No such resource for this caller: 404. Another user's job is not
    /// found either, so its existence is never confirmed.
    #[error("{0}")]
    NotFound(String),
    /// The method does not apply to the path: 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The job's state does not allow the operation: 409.
    #[error("{0}")]
    Conflict(String),
    /// The body is too large: 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is not JSON: 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The store is unreachable for now: 503 with `Retry-After`.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: 500.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `code` of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthenticated",
            ApiError::BadRequest(_) => "invalid_argument",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<LauncherError> for ApiError {
    fn from(e: LauncherError) -> Self {
        match e {
            LauncherError::NotFound(_) | LauncherError::Invalid(InvalidRequest::NotFound(_)) => {
                ApiError::NotFound(e.to_string())
            }
            LauncherError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            LauncherError::Conflict(_) => ApiError::Conflict(e.to_string()),
            LauncherError::Store(StoreError::Unavailable(_)) => {
                ApiError::Unavailable(format!("{e}; try again shortly"))
            }
            LauncherError::Store(StoreError::Conflict { .. }) => ApiError::Conflict(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "request failed");
        }
        let body = serde_json::json!({ "code": self.code(), "message": self.to_string() });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            ApiError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"plus\""),
                );
            }
            ApiError::Unavailable(_) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(RETRY_AFTER_UNAVAILABLE),
                );
            }
            _ => {}
        }
        response
    }
}
