//! Router tests: every route and status code, the auth rules and
//! ETag / 304, in process against the local backend. Workers are `true`, so
//! launched jobs stay INITIALIZING (the end-to-end runs are in
//! `launcher/tests/http_api.rs`).

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    Router,
};
use plus_jobs::{Backend, BackendConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{router, Auth};
use crate::{
    ops::Launcher,
    runner::{local::LOCAL_BUCKET, LocalRunner, Runner},
};

const TOKEN: &str = "test-token-0123456789";

struct App {
    router: Router,
    launcher: Launcher,
    _dir: tempfile::TempDir,
}

async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::open(&BackendConfig::Local {
        dir: dir.path().to_owned(),
        bucket: LOCAL_BUCKET.into(),
    })
    .await
    .unwrap();
    let launcher = Launcher::new(
        backend,
        Runner::Local(LocalRunner {
            dir: dir.path().to_owned(),
            worker: vec!["true".into()],
            tuning: vec![],
            attach: false,
        }),
    );
    let auth = Auth::Token {
        token: TOKEN.into(),
        username: "alice".into(),
    };
    App {
        router: router(launcher.clone(), auth),
        launcher,
        _dir: dir,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
    raw: Vec<u8>,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn send(router: &Router, req: Request<Body>) -> Answer {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let raw = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        raw,
    }
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::get(path).header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
}

async fn call(app: &App, method: &str, path: &str, body: Option<Value>) -> Answer {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    send(&app.router, b.body(body).unwrap()).await
}

async fn launch(app: &App, body: Value) -> Answer {
    call(app, "POST", "/jobs", Some(body)).await
}

fn hello() -> Value {
    json!({ "script": { "source": "echo hi\n" }, "params": { "n": 3 } })
}

#[tokio::test]
async fn every_jobs_route_needs_a_valid_token() {
    let app = app().await;
    let id = launch(&app, hello()).await.body["object_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let routes = [
        ("GET", "/jobs".to_owned()),
        ("POST", "/jobs".to_owned()),
        ("GET", format!("/jobs/{id}")),
        ("GET", format!("/jobs/{id}/events?after=0")),
        ("POST", format!("/jobs/{id}/cancel")),
        ("POST", format!("/jobs/{id}/retry")),
        ("GET", format!("/jobs/{id}/log")),
        ("GET", format!("/jobs/{id}/outputs")),
        ("GET", format!("/jobs/{id}/outputs/report.csv")),
        ("GET", format!("/jobs/{id}/results")),
    ];
    for (method, path) in &routes {
        for auth in [
            None,
            Some("Bearer wrong-token".to_owned()),
            Some(format!("Basic {TOKEN}")),
            Some("Bearer ".to_owned()),
        ] {
            let mut b = Request::builder().method(*method).uri(path);
            if let Some(a) = &auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            let a = send(
                &app.router,
                b.header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(hello().to_string()))
                    .unwrap(),
            )
            .await;
            assert_eq!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {auth:?}"
            );
            assert_eq!(a.body["code"], "unauthenticated");
            assert!(a.body["message"].as_str().unwrap().contains("plus serve"));
            assert!(a
                .header(header::WWW_AUTHENTICATE)
                .unwrap()
                .starts_with("Bearer"));
        }
    }
    // The rejected launch wrote nothing, and the cancel did not happen.
    let list = call(&app, "GET", "/jobs", None).await;
    assert_eq!(list.body["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["jobs"][0]["status"], "INITIALIZING");
    // The scheme name is case-insensitive.
    let a = send(
        &app.router,
        Request::get("/jobs")
            .header(header::AUTHORIZATION, format!("bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn another_users_job_is_not_found_on_every_route() {
    let app = app().await;
    let req = crate::LaunchRequest {
        username: "bob".into(),
        run_mode: plus_jobs::RunMode::RunScript,
        script: Some(b"echo secret\n".to_vec()),
        ..Default::default()
    };
    let bobs = app.launcher.launch(&req).await.unwrap().job.object_id;
    let missing = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    for id in [bobs.as_str(), missing] {
        for (method, path) in [
            ("GET", format!("/jobs/{id}")),
            ("GET", format!("/jobs/{id}/events")),
            ("POST", format!("/jobs/{id}/cancel")),
        ] {
            let a = call(&app, method, &path, None).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {path}");
            assert_eq!(a.body["code"], "not_found");
            assert_eq!(
                a.body["message"],
                format!("job {id} was not found (or belongs to another user)")
            );
        }
    }
    // Bob's job is not listed for alice, and is still INITIALIZING.
    let list = call(&app, "GET", "/jobs", None).await;
    assert_eq!(list.body["jobs"], json!([]));
    let job = app.launcher.status("bob", &bobs).await.unwrap();
    assert_eq!(job.status(), plus_jobs::JobStatus::Initializing);
    // Taking bob's id for a launch is a conflict, not a peek at his job.
    let a = launch(
        &app,
        json!({ "object_id": bobs, "script": { "source": "echo" } }),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(!a.raw.windows(6).any(|w| w == b"secret"));
}

#[tokio::test]
async fn launch_status_events_cancel_round_trip() {
    let app = app().await;
    let a = launch(&app, hello()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let id = a.body["object_id"].as_str().unwrap().to_owned();
    assert_eq!(
        a.header(header::LOCATION),
        Some(format!("/jobs/{id}").as_str())
    );
    assert_eq!(a.body["status"], "INITIALIZING");
    assert_eq!(a.body["run_mode"], "RUN_SCRIPT");
    assert_eq!(a.body["username"], "alice");
    assert_eq!(a.body["params"], json!({ "n": 3 }));

    let a = call(&app, "GET", &format!("/jobs/{id}"), None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["object_id"], id.as_str());
    assert_eq!(a.header(header::CONTENT_TYPE), Some("application/json"));
    assert_eq!(a.header(header::RETRY_AFTER), Some("1"));

    let a = call(
        &app,
        "GET",
        &format!("/jobs/{id}/events?after=0&limit=10"),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["events"], json!([]));
    assert_eq!(a.body["next_after"], "0");
    assert_eq!(a.body["status"], "INITIALIZING");
    assert_eq!(a.body["more"], false);

    let a = call(&app, "POST", &format!("/jobs/{id}/cancel"), None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["status"], "CANCELLED");
    assert_eq!(a.header(header::RETRY_AFTER), None);

    // The cancel wrote a status event; `after` moves past it.
    let a = call(&app, "GET", &format!("/jobs/{id}/events"), None).await;
    let events = a.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["kind"], "status");
    assert_eq!(events[0]["data"], "CANCELLED");
    assert_eq!(a.body["next_after"], events[0]["seq"]);
    assert_eq!(a.header(header::RETRY_AFTER), None);
    let after = a.body["next_after"].as_str().unwrap();
    let a = call(
        &app,
        "GET",
        &format!("/jobs/{id}/events?after={after}"),
        None,
    )
    .await;
    assert_eq!(a.body["events"], json!([]));

    let a = call(&app, "POST", &format!("/jobs/{id}/cancel"), None).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(a.body["message"]
        .as_str()
        .unwrap()
        .contains("already ended"));
}

#[tokio::test]
async fn a_retried_launch_with_the_same_id_is_harmless() {
    let app = app().await;
    let body = json!({ "object_id": "nightly-2026-01-01", "script": { "source": "echo 1" } });
    let first = launch(&app, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = launch(&app, body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["object_id"], "nightly-2026-01-01");
    let list = call(&app, "GET", "/jobs", None).await;
    assert_eq!(list.body["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn secrets_are_stored_as_references_and_others_are_refused() {
    let app = app().await;
    let mut body = hello();
    body["object_id"] = json!("with-secrets");
    body["secrets"] = json!({"DB": "plus/alice/db", "T": "ssm:/plus/alice/t"});
    let a = launch(&app, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let job = call(&app, "GET", "/jobs/with-secrets", None).await;
    assert_eq!(
        job.body["secrets"],
        json!({"DB": "plus/alice/db", "T": "ssm:/plus/alice/t"})
    );
    for (secrets, status, needle) in [
        (
            json!({"DB": "plus/bob/db"}),
            StatusCode::NOT_FOUND,
            "plus/alice/",
        ),
        (
            json!({"DB": "ssm:/prod/db"}),
            StatusCode::NOT_FOUND,
            "/plus/alice/",
        ),
        (
            json!({"JOB_ID": "plus/alice/db"}),
            StatusCode::BAD_REQUEST,
            "reserved",
        ),
        (
            json!({"T": "env:HOME"}),
            StatusCode::BAD_REQUEST,
            "env: references",
        ),
        (
            json!({"T": "no spaces"}),
            StatusCode::BAD_REQUEST,
            "reference",
        ),
    ] {
        let mut body = hello();
        body["object_id"] = json!("refused");
        body["secrets"] = secrets;
        let a = launch(&app, body).await;
        assert_eq!(a.status, status, "{:?}", a.body);
        assert!(a.body.to_string().contains(needle), "{:?}", a.body);
    }
    let gone = call(&app, "GET", "/jobs/refused", None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "nothing was written");
}

#[tokio::test]
async fn bad_launches_are_refused_with_the_reason() {
    let app = app().await;
    let cases = [
        (json!({}), "a script is required"),
        (json!({ "script": { "source": "  \n" } }), "is empty"),
        (
            json!({ "script": { "s3_key": "jobs/x/script" } }),
            "is not accepted over HTTP (it could name any file in the bucket)",
        ),
        (
            json!({ "collection_owner": "photos", "script": { "source": "echo" } }),
            "not an owner path",
        ),
        (
            json!({ "script": { "source": "echo" }, "status": "SUCCEEDED" }),
            "unknown field `status`",
        ),
        (
            json!({ "script": { "source": "echo" }, "timout_seconds": 5 }),
            "unknown field `timout_seconds`",
        ),
        (
            json!({ "script": { "source": "echo", "shell": "sh" } }),
            "unknown field `shell`",
        ),
        (
            json!({ "script": { "source": "echo" }, "run_mode": 1 }),
            "not a launch request",
        ),
        (
            json!({ "script": { "source": "echo" }, "run_mode": "RUN_FAST" }),
            "not a run mode",
        ),
        (
            json!({ "script": { "source": "echo" }, "max_attempts": "3" }),
            "not a launch request",
        ),
        (
            json!({ "script": { "source": "echo" }, "action_id": "nightly" }),
            "script do(es) not apply to a RUN_ACTION job",
        ),
        (
            json!({ "script": { "source": "echo" }, "tolerated_failures": 2 }),
            "tolerated_failures do(es) not apply to a RUN_SCRIPT job",
        ),
        (
            json!({ "run_mode": "RUN_SCRIPT", "script": { "source": "echo" }, "collection_owner": "alice/collections/x" }),
            "collection_owner do(es) not apply",
        ),
        (json!({ "run_mode": "RUN_ACTION" }), "--action"),
        (json!({ "action_id": "nightly\u{0}" }), "NUL"),
        (
            json!({ "script": { "source": "echo" }, "run_mode": "" }),
            "not a run mode",
        ),
        (
            json!({ "script": { "source": "echo" }, "max_attempts": 0 }),
            "max_attempts is 0: it must be from 1 to 100",
        ),
        (
            json!({ "script": { "source": "echo" }, "timeout_seconds": "soon" }),
            "not a launch request",
        ),
        (
            json!({ "object_id": "a b", "script": { "source": "echo" } }),
            "job id",
        ),
        (json!([1, 2]), "not a launch request"),
    ];
    for (body, expect) in cases {
        let a = launch(&app, body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(a.body["code"], "invalid_argument");
        let message = a.body["message"].as_str().unwrap();
        assert!(message.contains(expect), "{body}: {message}");
    }
    // Not JSON at all.
    let req = get("/jobs")
        .method("POST")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    assert_eq!(send(&app.router, req).await.status, StatusCode::BAD_REQUEST);
    // No content type.
    let req = get("/jobs")
        .method("POST")
        .body(Body::from(hello().to_string()))
        .unwrap();
    let a = send(&app.router, req).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(a.body["message"].as_str().unwrap().contains("Content-Type"));
    // Too large.
    let big = json!({ "script": { "source": "#".repeat(super::MAX_BODY_BYTES + 1) } });
    let a = launch(&app, big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.body["code"], "payload_too_large");
    // Another user's collection is not found, like another user's job.
    let a = launch(
        &app,
        json!({ "collection_owner": "bob/collections/x", "script": { "source": "echo" } }),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body["message"]
        .as_str()
        .unwrap()
        .contains("alice/collections/NAME"));
    // `null` is "not set", as in the proto3 JSON mapping.
    let a = launch(
        &app,
        json!({ "script": { "source": "echo", "args": null }, "params": null, "max_attempts": null }),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    call(
        &app,
        "POST",
        &format!("/jobs/{}/cancel", a.body["object_id"].as_str().unwrap()),
        None,
    )
    .await;
    // Huge integers in params are kept as the nearest double.
    let a = launch(
        &app,
        json!({ "script": { "source": "echo" }, "params": { "big": u64::MAX, "small": i64::MIN, "n": [7] } }),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.body["params"]["n"], json!([7]));
    assert_eq!(a.body["params"]["big"].as_f64(), Some(u64::MAX as f64));
    call(
        &app,
        "POST",
        &format!("/jobs/{}/cancel", a.body["object_id"].as_str().unwrap()),
        None,
    )
    .await;
    // Nothing was written by any of the refused ones.
    let list = call(&app, "GET", "/jobs", None).await;
    assert_eq!(list.body["jobs"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_queries_are_400_and_unknown_routes_404_and_wrong_methods_405() {
    let app = app().await;
    for path in [
        "/jobs?page_size=0",
        "/jobs?page_size=101",
        "/jobs?page_size=many",
        "/jobs?status=DONE",
        "/jobs?page_token=not%20a%20token",
        "/jobs/x/events?after=-1",
        "/jobs/x/events?limit=0",
        "/jobs/x/events?limit=1001",
    ] {
        let a = call(&app, "GET", path, None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(a.body["code"], "invalid_argument");
    }
    let a = call(&app, "GET", "/nothing/here", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body["message"]
        .as_str()
        .unwrap()
        .contains("/openapi.yaml"));
    let a = call(&app, "GET", "/jobs/bad%20id", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    for (method, path) in [
        ("DELETE", "/jobs/x"),
        ("PUT", "/jobs"),
        ("GET", "/jobs/x/cancel"),
    ] {
        let a = call(&app, method, path, None).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(a.body["code"], "method_not_allowed");
    }
}

#[tokio::test]
async fn a_new_jobs_log_and_results_are_not_there_yet_409_and_any_id_position_pages() {
    let app = app().await;
    let id = launch(&app, hello()).await.body["object_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The job exists: what it has not stored yet is a conflict with its
    // state, not a missing job.
    for path in [format!("/jobs/{id}/log"), format!("/jobs/{id}/results")] {
        let a = call(&app, "GET", &path, None).await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{path}: {:?}", a.body);
        assert!(a.body["message"].as_str().unwrap().contains(&id), "{path}");
    }
    // A page token is a position in the id order: any id-shaped text,
    // even one no job has, pages from there.
    for token in [".", "..", "zzzz", "0"] {
        let a = call(&app, "GET", &format!("/jobs?page_token={token}"), None).await;
        assert_eq!(a.status, StatusCode::OK, "{token}: {:?}", a.body);
    }
}

#[tokio::test]
async fn unchanged_answers_are_304_and_changed_ones_are_not() {
    let app = app().await;
    let id = launch(&app, hello()).await.body["object_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        format!("/jobs/{id}"),
        format!("/jobs/{id}/events?after=0"),
        "/jobs".to_owned(),
    ] {
        let first = call(&app, "GET", &path, None).await;
        let etag = first.header(header::ETAG).unwrap().to_owned();
        assert_eq!(
            first.header(header::CACHE_CONTROL),
            Some("private, no-cache")
        );
        let req = get(&path)
            .header(header::IF_NONE_MATCH, &etag)
            .body(Body::empty())
            .unwrap();
        let again = send(&app.router, req).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.raw.is_empty());
        assert_eq!(again.header(header::ETAG), Some(etag.as_str()));
        assert_eq!(
            again.header(header::RETRY_AFTER),
            first.header(header::RETRY_AFTER)
        );
        // A stale tag gets the full answer.
        let req = get(&path)
            .header(header::IF_NONE_MATCH, "\"stale\"")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app.router, req).await.status, StatusCode::OK);
    }
    let before = call(&app, "GET", &format!("/jobs/{id}"), None).await;
    let etag = before.header(header::ETAG).unwrap().to_owned();
    call(&app, "POST", &format!("/jobs/{id}/cancel"), None).await;
    for path in [format!("/jobs/{id}"), format!("/jobs/{id}/events?after=0")] {
        let req = get(&path)
            .header(header::IF_NONE_MATCH, &etag)
            .body(Body::empty())
            .unwrap();
        let after = send(&app.router, req).await;
        assert_eq!(after.status, StatusCode::OK, "{path}");
        assert_ne!(after.header(header::ETAG), Some(etag.as_str()));
    }
}

#[tokio::test]
async fn jobs_list_newest_first_in_pages_and_filter_by_status() {
    let app = app().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            launch(&app, hello()).await.body["object_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    call(&app, "POST", &format!("/jobs/{}/cancel", ids[0]), None).await;
    let p1 = call(&app, "GET", "/jobs?page_size=2", None).await;
    let got: Vec<&str> = p1.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["object_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    assert_eq!(p1.header(header::RETRY_AFTER), Some("3"));
    let token = p1.body["next_page_token"].as_str().unwrap();
    let p2 = call(
        &app,
        "GET",
        &format!("/jobs?page_size=2&page_token={token}"),
        None,
    )
    .await;
    assert_eq!(p2.body["jobs"][0]["object_id"], ids[0].as_str());
    assert!(p2.body.get("next_page_token").is_none());
    let cancelled = call(&app, "GET", "/jobs?status=cancelled", None).await;
    assert_eq!(cancelled.body["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(cancelled.body["jobs"][0]["object_id"], ids[0].as_str());
    assert_eq!(cancelled.header(header::RETRY_AFTER), None);
}

#[tokio::test]
async fn the_page_and_the_openapi_document_are_served_without_a_token() {
    let app = app().await;
    for (path, kind, needle) in [
        ("/", "text/html", "app.js"),
        ("/app.js", "text/javascript", "Authorization"),
        ("/app.css", "text/css", ".badge"),
        ("/openapi.yaml", "application/yaml", "openapi: 3.0"),
    ] {
        let a = send(&app.router, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert!(a.header(header::CONTENT_TYPE).unwrap().starts_with(kind));
        assert!(String::from_utf8_lossy(&a.raw).contains(needle), "{path}");
        assert!(a
            .header(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .contains("script-src 'self'"));
    }
}

/// An API Gateway HTTP API (payload 2.0) event for `GET path`, with the JWT
/// authorizer's `claims` when given.
fn gateway_event(path: &str, claims: Option<Value>) -> String {
    let mut context = json!({
        "accountId": "123456789012",
        "apiId": "api",
        "domainName": "api.execute-api.eu-west-1.amazonaws.com",
        "domainPrefix": "api",
        "http": { "method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "test" },
        "requestId": "req-1",
        "routeKey": "$default",
        "stage": "$default",
        "time": "01/Jan/2026:00:00:00 +0000",
        "timeEpoch": 1767225600000u64
    });
    if let Some(claims) = claims {
        context["authorizer"] = json!({ "jwt": { "claims": claims, "scopes": null } });
    }
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        // A client-sent header can never name the caller.
        "headers": { "accept": "application/json", "authorization": "Bearer forged", "x-username": "bob" },
        "requestContext": context,
        "isBase64Encoded": false
    })
    .to_string()
}

#[tokio::test]
async fn in_lambda_the_caller_comes_from_the_jwt_authorizer_claims() {
    let app = app().await;
    let carols = carols_job(&app).await;
    let lambda = router(app.launcher.clone(), Auth::JwtAuthorizer);
    let run = |event: String| invoke(lambda.clone(), event);
    let claims =
        json!({ "sub": "8f2c-uuid", "cognito:username": "carol", "email": "c@example.com" });
    let (status, body) = run(gateway_event("/jobs", Some(claims.clone()))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["jobs"][0]["object_id"], carols.as_str());
    let (status, body) = run(gateway_event(&format!("/jobs/{carols}"), Some(claims))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["username"], "carol");
    // `sub` alone names the user too; it is someone else here.
    let (status, _) = run(gateway_event(
        &format!("/jobs/{carols}"),
        Some(json!({ "sub": "dave" })),
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // No authorizer: 401, whatever the headers say.
    let (status, body) = run(gateway_event("/jobs", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["message"].as_str().unwrap().contains("JWT authorizer"));
    let (status, _) = run(gateway_event(
        "/jobs",
        Some(json!({ "email": "x@example.com" })),
    ))
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Launches a job for carol (the caller the Lambda events name): its id.
async fn carols_job(app: &App) -> String {
    let req = crate::LaunchRequest {
        username: "carol".into(),
        run_mode: plus_jobs::RunMode::RunScript,
        script: Some(b"echo hi\n".to_vec()),
        ..Default::default()
    };
    app.launcher.launch(&req).await.unwrap().job.object_id
}

/// Sends a Lambda event through `service`: the status and the JSON body.
async fn invoke<S>(service: S, event: String) -> (StatusCode, Value)
where
    S: tower::Service<lambda_http::Request, Response = axum::response::Response>,
    S::Error: std::fmt::Debug,
{
    let req = lambda_http::request::from_str(&event).unwrap();
    let res = service.oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
    )
}

/// An API Gateway REST API event (payload 1.0) at `stage` for `path`, from
/// a Cognito authorizer naming `user`.
fn rest_event(stage: &str, path: &str, query: Option<Value>, user: &str) -> String {
    json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "GET",
        "headers": { "accept": "application/json" },
        "multiValueHeaders": { "accept": ["application/json"] },
        "queryStringParameters": query,
        "multiValueQueryStringParameters": null,
        "pathParameters": { "proxy": path.trim_start_matches('/') },
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012",
            "resourceId": "abc123",
            "stage": stage,
            "requestId": "req-1",
            "identity": { "sourceIp": "192.0.2.1", "userAgent": "test" },
            "resourcePath": "/{proxy+}",
            "httpMethod": "GET",
            "apiId": "api",
            "path": format!("/{stage}{path}"),
            "authorizer": { "claims": { "cognito:username": user } }
        },
        "body": null,
        "isBase64Encoded": false
    })
    .to_string()
}

#[tokio::test]
async fn behind_a_rest_api_stage_the_routes_are_the_same() {
    let app = app().await;
    let carols = carols_job(&app).await;
    let lambda = super::lambda::app(app.launcher.clone());
    let run = |event: String| invoke(lambda.clone(), event);
    let (status, body) = run(rest_event("prod", "/jobs", None, "carol")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["jobs"][0]["object_id"], carols.as_str());
    let (status, body) = run(rest_event(
        "prod",
        &format!("/jobs/{carols}/events"),
        Some(json!({ "after": "0" })),
        "carol",
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = run(rest_event(
        "prod",
        &format!("/jobs/{carols}"),
        None,
        "carol",
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["username"], "carol");
    // The Cognito authorizer's claims name the caller: another user sees
    // none of carol's jobs, and a request without claims is refused.
    let (status, body) = run(rest_event("prod", "/jobs", None, "dave")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["jobs"], json!([]));
    let (status, _) = run(rest_event("prod", &format!("/jobs/{carols}"), None, "dave")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut anonymous: Value =
        serde_json::from_str(&rest_event("prod", "/jobs", None, "carol")).unwrap();
    anonymous["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let (status, body) = run(anonymous.to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("JWT authorizer"),
        "{body}"
    );
    // A path that is not a route is still 404, and names the path asked for.
    let (status, body) = run(rest_event("prod", "/nope", None, "carol")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["message"].as_str().unwrap().contains("GET /nope"),
        "{body}"
    );
}

/// The stores under `app`, opened a second time (as a worker would).
async fn stores(app: &App) -> Backend {
    Backend::open(&BackendConfig::Local {
        dir: app._dir.path().to_owned(),
        bucket: LOCAL_BUCKET.into(),
    })
    .await
    .unwrap()
}

/// A finished job of `user` with two attempts (the first INTERRUPTED), two
/// output files and per-item results. Written through the stores the way
/// the worker writes them: attempt 1's log at `jobs/{id}/log.txt`, attempt
/// 2's at `jobs/{id}/attempts/2/log.txt`.
async fn finished_job(app: &App, user: &str, id: &str) {
    use plus_jobs::{blob, job::new_job, JobId, JobStatus, RunMode, Timestamp};
    let b = stores(app).await;
    let mut job = new_job(
        &JobId::parse(id).unwrap(),
        user,
        RunMode::RunCollection,
        Timestamp::now(),
    );
    job.name = "nightly report".into();
    job.status = JobStatus::Succeeded as i32;
    job.attempt = Some(2);
    job.started_at = "2026-12-01T10:01:02.000Z".into();
    job.completed_at = "2026-12-01T10:02:30.000Z".into();
    job.exit_code = Some(0);
    job.log_key = format!("jobs/{id}/attempts/2/log.txt");
    job.output_prefix = blob::output_prefix(id);
    job.attempts = vec![
        plus_proto::Attempt {
            attempt: 1,
            task: "local:1".into(),
            started_at: "2026-12-01T10:01:02.000Z".into(),
            ended_at: "2026-12-01T10:01:09.000Z".into(),
            status: JobStatus::Interrupted as i32,
            exit_code: Some(143),
            error: "the task was stopped".into(),
            log_key: blob::log_key(id),
            usage: None,
        },
        plus_proto::Attempt {
            attempt: 2,
            task: "local:2".into(),
            started_at: "2026-12-01T10:02:00.000Z".into(),
            ended_at: "2026-12-01T10:02:30.000Z".into(),
            status: JobStatus::Succeeded as i32,
            exit_code: Some(0),
            error: String::new(),
            log_key: format!("jobs/{id}/attempts/2/log.txt"),
            usage: None,
        },
    ];
    b.jobs.create_job(&job).await.unwrap();
    let put = |key: String, text: &str| {
        let blobs = b.blobs.clone();
        let text = text.to_owned();
        async move {
            blobs
                .put_bytes(&key, text.into_bytes(), "text/plain")
                .await
                .unwrap()
        }
    };
    put(blob::log_key(id), "first try\n").await;
    put(format!("jobs/{id}/attempts/2/log.txt"), "second try\n").await;
    put(
        format!("{}report.csv", blob::output_prefix(id)),
        "a,b\n1,2\n",
    )
    .await;
    put(format!("{}sub/notes.txt", blob::output_prefix(id)), "hi").await;
    put(
        blob::results_key(id),
        "{\"id\":\"a\",\"ok\":true}\n{\"id\":\"b\",\"ok\":false}\n",
    )
    .await;
}

#[tokio::test]
async fn a_jobs_record_log_outputs_and_results_are_served_to_its_owner() {
    let app = app().await;
    finished_job(&app, "alice", "job-a").await;

    let a = call(&app, "GET", "/jobs/job-a", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["name"], "nightly report");
    assert_eq!(a.body["attempts"][0]["status"], "INTERRUPTED");
    assert_eq!(a.body["attempts"][0]["exit_code"], 143);
    assert_eq!(
        a.body["attempts"][1]["log_key"],
        "jobs/job-a/attempts/2/log.txt"
    );
    assert!(a.body.get("shards").is_none());

    let a = call(&app, "GET", "/jobs/job-a/log", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a
        .header(header::CONTENT_TYPE)
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(
        a.header(header::CONTENT_DISPOSITION),
        Some("attachment; filename=\"job-a.log\"")
    );
    assert_eq!(
        String::from_utf8(a.raw).unwrap(),
        "== attempt 1 (INTERRUPTED, 10:01:02 to 10:01:09, exit code 143) ==\nfirst try\n\
         == attempt 2 (SUCCEEDED, 10:02:00 to 10:02:30, exit code 0) ==\nsecond try\n"
    );
    let a = call(&app, "GET", "/jobs/job-a/log?attempt=2", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.raw, b"second try\n");
    let a = call(&app, "GET", "/jobs/job-a/log?attempt=3", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body["message"]
        .as_str()
        .unwrap()
        .contains("no attempt 3: its attempts are 1, 2"));

    let a = call(&app, "GET", "/jobs/job-a/outputs", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body,
        json!({ "files": [
            { "name": "report.csv", "size": 8 },
            { "name": "sub/notes.txt", "size": 2 },
        ] })
    );
    let a = call(&app, "GET", "/jobs/job-a/outputs/sub/notes.txt", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.raw, b"hi");
    assert_eq!(
        a.header(header::CONTENT_DISPOSITION),
        Some("attachment; filename=\"notes.txt\"")
    );
    let a = call(&app, "GET", "/jobs/job-a/outputs/missing.csv", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body["message"].as_str().unwrap().contains("missing.csv"));
    for escape in [
        "..%2F..%2Fjob-a%2Flog.txt",
        "sub%2F..%2F..%2Flog.txt",
        "%2Fetc%2Fpasswd",
    ] {
        let a = call(&app, "GET", &format!("/jobs/job-a/outputs/{escape}"), None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{escape}");
        assert!(!a.raw.windows(9).any(|w| w == b"first try"));
    }

    let a = call(&app, "GET", "/jobs/job-a/results", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(header::CONTENT_TYPE), Some("application/x-ndjson"));
    let lines: Vec<Value> = String::from_utf8(a.raw)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [json!({"id":"a","ok":true}), json!({"id":"b","ok":false})]
    );
}

#[tokio::test]
async fn another_users_log_outputs_results_and_retry_are_not_found() {
    let app = app().await;
    finished_job(&app, "bob", "job-b").await;
    for (method, path) in [
        ("GET", "/jobs/job-b/log"),
        ("GET", "/jobs/job-b/log?attempt=1"),
        ("GET", "/jobs/job-b/outputs"),
        ("GET", "/jobs/job-b/outputs/report.csv"),
        ("GET", "/jobs/job-b/results"),
        ("POST", "/jobs/job-b/retry"),
        ("GET", "/jobs/nobody/log"),
        ("GET", "/jobs/nobody/outputs"),
        ("GET", "/jobs/nobody/results"),
        ("POST", "/jobs/nobody/retry"),
    ] {
        let a = call(&app, method, path, None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert!(
            a.body["message"]
                .as_str()
                .unwrap()
                .contains("was not found (or belongs to another user)"),
            "{method} {path}: {}",
            a.body
        );
        for secret in [&b"first try"[..], b"a,b", b"\"ok\""] {
            assert!(!a.raw.windows(secret.len()).any(|w| w == secret));
        }
    }
    // Nothing was retried for alice.
    let list = call(&app, "GET", "/jobs", None).await;
    assert_eq!(list.body["jobs"], json!([]));
}

#[tokio::test]
async fn a_sharded_parent_lists_its_shards_and_joins_their_results_and_logs() {
    use plus_jobs::{blob, job::new_job, JobId, JobStatus, RunMode, Timestamp};
    let app = app().await;
    let b = stores(&app).await;
    let mut parent = new_job(
        &JobId::parse("fan").unwrap(),
        "alice",
        RunMode::RunCollection,
        Timestamp::now(),
    );
    parent.shard_count = 2;
    parent.status = JobStatus::Succeeded as i32;
    b.jobs.create_job(&parent).await.unwrap();
    for i in 0..2u32 {
        let id = format!("fan-s{i}");
        let shard = plus_jobs::Job {
            object_id: id.clone(),
            shard_index: i,
            parent_id: "fan".into(),
            log_key: blob::log_key(&id),
            progress: Some(plus_jobs::Progress {
                total: 2,
                succeeded: 2,
                ..Default::default()
            }),
            ..parent.clone()
        };
        b.jobs.create_job(&shard).await.unwrap();
        let line = format!("{{\"id\":\"item{i}\",\"ok\":true}}\n");
        b.blobs
            .put_bytes(&blob::results_key(&id), line.into_bytes(), "x")
            .await
            .unwrap();
        b.blobs
            .put_bytes(
                &blob::log_key(&id),
                format!("shard {i} says hi\n").into_bytes(),
                "x",
            )
            .await
            .unwrap();
    }
    let a = call(&app, "GET", "/jobs/fan", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body["shards"],
        json!([
            { "job_id": "fan-s0", "status": "SUCCEEDED", "progress": { "total": 2, "succeeded": 2 } },
            { "job_id": "fan-s1", "status": "SUCCEEDED", "progress": { "total": 2, "succeeded": 2 } },
        ])
    );
    let a = call(&app, "GET", "/jobs/fan/results", None).await;
    assert_eq!(
        String::from_utf8(a.raw).unwrap(),
        "{\"id\":\"item0\",\"ok\":true}\n{\"id\":\"item1\",\"ok\":true}\n"
    );
    let a = call(&app, "GET", "/jobs/fan/log", None).await;
    let log = String::from_utf8(a.raw).unwrap();
    let s0 = log.find("== shard 0 fan-s0 (SUCCEEDED) ==").unwrap();
    let s1 = log.find("== shard 1 fan-s1 (SUCCEEDED) ==").unwrap();
    assert!(s0 < log.find("shard 0 says hi").unwrap());
    assert!(s1 < log.find("shard 1 says hi").unwrap() && s0 < s1);
}

#[tokio::test]
async fn jobs_filter_by_a_piece_of_their_id_or_name() {
    let app = app().await;
    finished_job(&app, "alice", "job-nightly-1").await;
    finished_job(&app, "alice", "job-other").await;
    let named = launch(
        &app,
        json!({ "object_id": "weekly-7", "script": { "source": "echo" } }),
    )
    .await;
    assert_eq!(named.status, StatusCode::CREATED);
    let ids = |a: &Answer| -> Vec<String> {
        a.body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["object_id"].as_str().unwrap().to_owned())
            .collect()
    };
    // "REPORT" is in both finished jobs' name; "nightly-1" in one id.
    let a = call(&app, "GET", "/jobs?q=REPORT", None).await;
    assert_eq!(ids(&a), ["job-other", "job-nightly-1"]);
    let a = call(&app, "GET", "/jobs?q=nightly-1", None).await;
    assert_eq!(ids(&a), ["job-nightly-1"]);
    let a = call(&app, "GET", "/jobs?q=weekly&status=INITIALIZING", None).await;
    assert_eq!(ids(&a), ["weekly-7"]);
    let a = call(&app, "GET", "/jobs?q=weekly&status=SUCCEEDED", None).await;
    assert_eq!(ids(&a), Vec::<String>::new());
    let long = "x".repeat(201);
    let a = call(&app, "GET", &format!("/jobs?q={long}"), None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["message"]
        .as_str()
        .unwrap()
        .contains("q is 201 characters"));
    let a = call(&app, "GET", "/jobs?q=job&page_size=1", None).await;
    assert_eq!(ids(&a), ["job-other"]);
    let token = a.body["next_page_token"].as_str().unwrap().to_owned();
    let a = call(
        &app,
        "GET",
        &format!("/jobs?q=job&page_size=1&page_token={token}"),
        None,
    )
    .await;
    assert_eq!(ids(&a), ["job-nightly-1"]);
}

#[tokio::test]
async fn retry_runs_a_finished_job_again_and_refuses_a_running_one() {
    let app = app().await;
    let id = launch(&app, hello()).await.body["object_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = call(&app, "POST", &format!("/jobs/{id}/retry"), None).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    call(&app, "POST", &format!("/jobs/{id}/cancel"), None).await;
    let a = call(&app, "POST", &format!("/jobs/{id}/retry"), None).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let again = a.body["object_id"].as_str().unwrap();
    assert_ne!(again, id);
    assert_eq!(a.body["status"], "INITIALIZING");
    assert_eq!(a.body["params"], json!({ "n": 3 }));
    assert_eq!(
        a.header(header::LOCATION),
        Some(format!("/jobs/{again}").as_str())
    );
}

/// The store's own failures through the real router on the DynamoDB
/// adapter: an outage that outlasts the SDK's retries answers 503 with
/// `Retry-After`; a store that refuses (access denied) answers 500 with
/// the sentence that says what to grant. (The proxy answers for DynamoDB:
/// the emulator cannot fail.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outages_answer_503_with_retry_after_and_refusals_500() {
    let moto = plus_testkit::Moto::shared();
    let mut aws = moto.provision().await;
    let proxy = plus_testkit::FaultProxy::start(&moto.endpoint).await;
    aws.endpoint_url = Some(proxy.endpoint.clone());
    let backend = Backend::open(&BackendConfig::Aws(aws)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let launcher = Launcher::new(
        backend,
        Runner::Local(LocalRunner {
            dir: dir.path().to_owned(),
            worker: vec!["true".into()],
            tuning: vec![],
            attach: false,
        }),
    );
    let auth = Auth::Token {
        token: TOKEN.into(),
        username: "alice".into(),
    };
    let app = App {
        router: router(launcher.clone(), auth),
        launcher,
        _dir: dir,
    };

    // Every attempt of the SDK (6) fails.
    proxy.inject_n("GetItem", plus_testkit::Fault::ServerError, 6);
    let a = call(&app, "GET", "/jobs/some-job", None).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", a.body);
    assert_eq!(a.header(header::RETRY_AFTER), Some("5"));
    assert_eq!(a.body["code"], "unavailable");
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .contains("try again shortly"),
        "{:?}",
        a.body
    );

    proxy.inject(
        "GetItem",
        plus_testkit::Fault::Respond(
            400,
            json!({"__type": "com.amazonaws.dynamodb.v20120810#AccessDeniedException", "message": "not authorized to perform: dynamodb:GetItem"}).to_string(),
        ),
    );
    let a = call(&app, "GET", "/jobs/some-job", None).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{:?}", a.body);
    assert_eq!(a.body["code"], "internal");
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .contains("give the task role access to this table"),
        "{:?}",
        a.body
    );
    assert_eq!(a.header(header::RETRY_AFTER), None);
}

#[tokio::test]
async fn schedules_round_trip_and_bad_expressions_are_400_with_the_fix() {
    let app = app().await;
    let body = json!({
        "name": "nightly",
        "expression": "cron(0 2 * * ? *)",
        "timezone": "Europe/Paris",
        "launch": { "script": { "source": "echo hi\n" }, "params": { "n": 3 } }
    });
    let a = call(&app, "POST", "/schedules", Some(body.clone())).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.header(header::LOCATION), Some("/schedules/nightly"));
    assert_eq!(a.body["state"], "ENABLED");
    // The next firing is the coming 02:00 in Paris.
    let next = chrono::DateTime::parse_from_rfc3339(a.body["next_firing"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono_tz::Europe::Paris);
    let day = next.date_naive();
    // (Once a year 02:00 does not exist there; whatever follows is fine.)
    let two_exists = day
        .and_hms_opt(2, 0, 0)
        .unwrap()
        .and_local_timezone(chrono_tz::Europe::Paris)
        .earliest()
        .is_some();
    if two_exists {
        assert_eq!(next.format("%H:%M:%S").to_string(), "02:00:00", "{next}");
    }
    let ahead = next.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::zero() && ahead <= chrono::Duration::hours(24),
        "{next} is the next one"
    );
    let again = call(&app, "POST", "/schedules", Some(body)).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);

    for (expression, needle) in [
        ("rate(30 seconds)", "rate(1 minute) or more"),
        ("cron(0 2 * * * *)", "exactly one of day-of-month"),
        ("*/5 * * * *", "five-field Unix cron"),
    ] {
        let bad = json!({"name": "bad", "expression": expression, "launch": {"script": {"source": "echo\n"}}});
        let a = call(&app, "POST", "/schedules", Some(bad)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{expression}");
        assert!(
            a.body["message"].as_str().unwrap().contains(needle),
            "{}",
            a.body
        );
    }
    let bad_tz = json!({"name": "bad", "expression": "rate(1 hour)", "timezone": "Paris", "launch": {"script": {"source": "echo\n"}}});
    let a = call(&app, "POST", "/schedules", Some(bad_tz)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["message"].as_str().unwrap().contains("IANA"));

    let list = call(&app, "GET", "/schedules", None).await;
    let names: Vec<&str> = list.body["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nightly"], "the refused ones were not written");
    let paused = call(&app, "POST", "/schedules/nightly/pause", None).await;
    assert_eq!(paused.body["state"], "DISABLED");
    assert!(paused.body.get("next_firing").is_none());
    let resumed = call(&app, "POST", "/schedules/nightly/resume", None).await;
    assert_eq!(resumed.body["state"], "ENABLED");
    let shown = call(&app, "GET", "/schedules/nightly", None).await;
    assert_eq!(shown.body["launch"]["params"], json!({"n": 3}));
    let gone = call(&app, "DELETE", "/schedules/nightly", None).await;
    assert_eq!(gone.status, StatusCode::OK);
    let missing = call(&app, "GET", "/schedules/nightly", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}
