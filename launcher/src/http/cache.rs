//! Cheap polling. Every JSON answer carries a strong `ETag` (a hash of the
//! body) and `Cache-Control: private, no-cache`; a client that sends it back
//! in `If-None-Match` gets `304 Not Modified` with no body when nothing
//! changed. While a job can still change, `Retry-After` says how many seconds
//! to wait before the next poll; a finished job's answers have none, since
//! they never change again.

use std::time::Duration;

use axum::{
    body::Body,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use plus_jobs::JobStatus;

/// Poll hint while a job is starting or running: output arrives steadily.
pub const POLL_ACTIVE: Duration = Duration::from_secs(1);
/// Poll hint while a job is INTERRUPTED and waits to be relaunched, or
/// QUEUED and waits for capacity.
pub const POLL_WAITING: Duration = Duration::from_secs(5);
/// Poll hint for a job listing that has jobs still going.
pub const POLL_LIST: Duration = Duration::from_secs(3);

/// How soon a job in `status` is worth polling again; `None` once it ended.
pub fn poll_hint(status: JobStatus) -> Option<Duration> {
    match status {
        JobStatus::Initializing | JobStatus::Running => Some(POLL_ACTIVE),
        JobStatus::Interrupted | JobStatus::Queued => Some(POLL_WAITING),
        _ => None,
    }
}

/// The strong entity tag of `body`: a 64-bit FNV-1a hash with the body's
/// length, quoted. Stable across processes, so every Lambda instance agrees.
pub fn etag_of(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}-{:x}\"", body.len())
}

/// Whether `If-None-Match` in `request` matches `etag` (weak comparison, as
/// RFC 9110 asks for `If-None-Match`).
pub fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// A JSON answer with `ETag`, `Cache-Control`, `Vary` and the poll hint, or
/// `304 Not Modified` when the client already has it.
pub fn json_response(
    request: &HeaderMap,
    status: StatusCode,
    value: &serde_json::Value,
    poll: Option<Duration>,
) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let etag = etag_of(&body);
    let fresh = status == StatusCode::OK && not_modified(request, &etag);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (status, Body::from(body)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Authorization"));
    if let Some(poll) = poll {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(poll.as_secs().max(1)),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_follow_the_body() {
        assert_eq!(etag_of(b"{}"), etag_of(b"{}"));
        assert_ne!(etag_of(b"{\"a\":1}"), etag_of(b"{\"a\":2}"));
        assert!(etag_of(b"").starts_with('"'));
    }

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        let etag = etag_of(b"x");
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &etag));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"other\", W/{etag}")).unwrap(),
        );
        assert!(not_modified(&h, &etag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, &etag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"nope\""));
        assert!(!not_modified(&h, &etag));
    }

    #[test]
    fn finished_jobs_need_no_more_polling() {
        assert_eq!(poll_hint(JobStatus::Running), Some(POLL_ACTIVE));
        assert_eq!(poll_hint(JobStatus::Interrupted), Some(POLL_WAITING));
        assert_eq!(poll_hint(JobStatus::Succeeded), None);
    }
}
