//! # plus-testkit
//!
//! Test helpers shared by the workspace's tests (never published, never in
//! a product binary): the AWS emulator (`moto_server`) started on a free loopback
//! port, and the tables and bucket of DESIGN.md created in it.

pub mod peak_rss;
pub mod validate;

use std::{
    io::ErrorKind,
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use plus_jobs::backend::{AwsConfig, Backend, BackendConfig};

/// The embedded local backend (SQLite and a folder) in `dir`, with the
/// bucket name tests use.
pub async fn local_backend(dir: &std::path::Path) -> Backend {
    Backend::open(&BackendConfig::Local {
        dir: dir.to_owned(),
        bucket: "bucket".into(),
    })
    .await
    .expect("the local backend opens")
}

/// A running `moto_server`. It lives as long as the test process: a small
/// shell watchdog kills it when the test process exits and its stdin closes.
///
/// Clients reach it through [`Moto::endpoint`], a proxy that serializes
/// DynamoDB writes: the emulator serves requests on threads and does not
/// make a conditional write atomic against a concurrent one (two racing
/// claims could both win), which DynamoDB does per item. The proxy changes
/// nothing else.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:PORT` of the proxy in front of the emulator.
    pub endpoint: String,
    /// `http://127.0.0.1:PORT` of the emulator itself.
    pub emulator: String,
    _child: Child,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

impl Moto {
    /// The emulator shared by this test binary, started on first use.
    ///
    /// # Panics
    /// When `moto_server` is not installed (run `scripts/test.sh`, which
    /// installs it) or does not come up within 60 seconds.
    pub fn shared() -> &'static Moto {
        MOTO.get_or_init(Moto::start)
    }

    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"moto_server -H 127.0.0.1 -p "$1" >"${TMPDIR:-/tmp}/moto-$1.log" 2>&1 & pid=$!; cat >/dev/null; kill "$pid" 2>/dev/null"#)
            .arg("sh")
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!(
                    "moto_server did not start on port {port} ({e}); install it with `pip install 'moto[server]'` or run scripts/test.sh"
                ),
            }
        }
        let emulator = format!("http://127.0.0.1:{port}");
        // The proxy lives on a thread of its own, since each test has its
        // own runtime and this emulator outlives them all.
        let (tx, rx) = std::sync::mpsc::channel();
        let upstream = emulator.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the emulator's proxy");
            rt.block_on(async move {
                let proxy = FaultProxy::start_with(&upstream, ProxyOptions::ATOMIC_WRITES).await;
                let _ = tx.send(proxy.endpoint.clone());
                std::future::pending::<()>().await;
            });
        });
        let endpoint = rx.recv().expect("the emulator's proxy starts");
        Moto {
            endpoint,
            emulator,
            _child: child,
        }
    }

    /// A fresh set of uniquely named tables and bucket in the emulator, with
    /// the keys, index and TTL of DESIGN.md.
    pub async fn provision(&self) -> AwsConfig {
        let suffix = uuid::Uuid::now_v7().simple().to_string();
        let aws = AwsConfig {
            region: "us-east-1".to_owned(),
            table: format!("jobs-{suffix}"),
            streams_table: format!("streams-{suffix}"),
            bucket: format!("bucket-{suffix}"),
            endpoint_url: Some(self.endpoint.clone()),
            static_keys: Some(("testing".to_owned(), "testing".to_owned())),
            event_bus: None,
        };
        create_resources(&aws).await;
        aws
    }
}

/// Creates an ECS cluster and registers a Fargate task definition with a
/// container named `worker` in the emulator; returns their names.
pub async fn create_ecs(aws: &AwsConfig) -> (String, String) {
    use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, NetworkMode};
    let sdk = aws.sdk_config().await;
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let cluster = format!("plus-{suffix}");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .capacity_providers("FARGATE")
        .capacity_providers("FARGATE_SPOT")
        .send()
        .await
        .expect("create the cluster");
    let family = format!("plus-worker-{suffix}");
    ecs.register_task_definition()
        .family(&family)
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("worker")
                .image("123456789012.dkr.ecr.us-east-1.amazonaws.com/plus-worker:latest")
                .essential(true)
                .stop_timeout(120)
                // Fargate does not need a container-level size; the emulator
                // does to place the task (and echoes `memory` back as a
                // number, which the SDK refuses, so use the reservation).
                .memory_reservation(512)
                .build(),
        )
        .send()
        .await
        .expect("register the task definition");
    (cluster, family)
}

/// A subnet of the emulator's default VPC (RunTask checks subnets exist).
/// Read through EC2's query API directly: the workspace has no EC2 SDK.
pub async fn default_subnet(endpoint: &str) -> String {
    ec2_query(endpoint, "DescribeSubnets", "<subnetId>").await
}

async fn ec2_query(endpoint: &str, action: &str, tag: &str) -> String {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = hyper::Request::post(endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(Full::new(Bytes::from(format!("Action={action}&Version=2016-11-15"))))
        .unwrap();
    let response = client.request(request).await.expect("EC2 answers");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    let start = text
        .find(tag)
        .unwrap_or_else(|| panic!("no {tag} in the emulator's answer: {text}"))
        + tag.len();
    let end = start + text[start..].find('<').unwrap();
    text[start..end].to_owned()
}

/// The default security group of the emulator's default VPC.
pub async fn default_security_group(endpoint: &str) -> String {
    ec2_query(endpoint, "DescribeSecurityGroups", "<groupId>").await
}

/// Creates the two tables and the bucket `aws` names.
pub async fn create_resources(aws: &AwsConfig) {
    let sdk = aws.sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let attr = |name: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(t)
            .build()
            .unwrap()
    };
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .unwrap()
    };
    ddb.create_table()
        .table_name(&aws.table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("object_id", ScalarAttributeType::S))
        .attribute_definitions(attr("owner", ScalarAttributeType::S))
        .key_schema(key("object_id", KeyType::Hash))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(plus_jobs::store::dynamodb::OWNER_INDEX)
                .key_schema(key("owner", KeyType::Hash))
                .key_schema(key("object_id", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .attribute_definitions(attr(plus_jobs::store::ACTIVE, ScalarAttributeType::S))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(plus_jobs::store::ACTIVE_INDEX)
                .key_schema(key(plus_jobs::store::ACTIVE, KeyType::Hash))
                .key_schema(key("object_id", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create the jobs table");
    ddb.create_table()
        .table_name(&aws.streams_table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("stream_id", ScalarAttributeType::S))
        .attribute_definitions(attr("seq", ScalarAttributeType::N))
        .key_schema(key("stream_id", KeyType::Hash))
        .key_schema(key("seq", KeyType::Range))
        .send()
        .await
        .expect("create the streams table");
    ddb.update_time_to_live()
        .table_name(&aws.streams_table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("enable TTL");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(&aws.bucket)
        .send()
        .await
        .expect("create the bucket");
}

/// The emulator returns a task container's `cpu` and `memory` as JSON
/// numbers where ECS returns strings, which the Rust SDK (rightly) refuses;
/// the proxy turns them into strings. Nothing else is changed.
fn fix_ecs_shapes(body: hyper::body::Bytes) -> hyper::body::Bytes {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return body;
    };
    let mut changed = false;
    let mut tasks: Vec<&mut serde_json::Value> = Vec::new();
    if let Some(obj) = v.as_object_mut() {
        for (k, val) in obj.iter_mut() {
            match (k.as_str(), val) {
                ("tasks", serde_json::Value::Array(list)) => tasks.extend(list.iter_mut()),
                ("task", t @ serde_json::Value::Object(_)) => tasks.push(t),
                _ => {}
            }
        }
    }
    {
        for task in tasks {
            if let Some(containers) = task.get_mut("containers").and_then(|c| c.as_array_mut()) {
                for c in containers.iter_mut().filter_map(|c| c.as_object_mut()) {
                    for key in ["cpu", "memory", "memoryReservation"] {
                        if let Some(n) = c.get(key).filter(|n| n.is_number()).cloned() {
                            c.insert(key.to_owned(), serde_json::Value::String(n.to_string()));
                            changed = true;
                        }
                    }
                }
            }
        }
    }
    if changed {
        hyper::body::Bytes::from(v.to_string())
    } else {
        body
    }
}

/// The emulator answers CompleteMultipartUpload with a
/// `CompleteMultipartUploadResponse` root element where S3 uses
/// `CompleteMultipartUploadResult` (which the Rust SDK requires); the proxy
/// renames it. Nothing else is changed.
fn fix_s3_shapes(body: hyper::body::Bytes) -> hyper::body::Bytes {
    let text = String::from_utf8_lossy(&body);
    if text.contains("<CompleteMultipartUploadResponse") {
        hyper::body::Bytes::from(text.replace(
            "CompleteMultipartUploadResponse",
            "CompleteMultipartUploadResult",
        ))
    } else {
        body
    }
}

/// A fault to inject into one proxied request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long before forwarding.
    Delay(Duration),
    /// Answer HTTP 500 without forwarding.
    ServerError,
    /// Answer DynamoDB's `ThrottlingException` (HTTP 400) without forwarding.
    Throttle,
    /// Close the connection without an answer.
    Drop,
    /// Answer with this HTTP status and JSON body without forwarding.
    Respond(u16, String),
    /// Answer a BatchWriteItem (or BatchGetItem) without forwarding, as
    /// DynamoDB does when it processed none of it: HTTP 200 with every
    /// request handed back as `UnprocessedItems` (`UnprocessedKeys`).
    Unprocessed,
}

#[derive(Debug, Default)]
struct ProxyState {
    /// Faults for the next requests whose target contains the key ("" for any).
    faults: Vec<(String, Fault)>,
    /// Every request seen, as `DynamoDB:GetItem` or `S3:PUT`.
    seen: Vec<String>,
    /// The JSON bodies of API requests (not S3), with their target.
    bodies: Vec<(String, String)>,
    /// The S3 requests: method, path and query, and headers.
    s3: Vec<S3Request>,
    /// DynamoDB calls that were answered: target, request body, answer.
    exchanges: Vec<(String, String, String)>,
    /// S3 multipart uploads in flight, for [`validate::S3Uploads`].
    uploads: validate::S3Uploads,
}

/// One S3 request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct S3Request {
    /// `PUT`, `POST`, ...
    pub method: String,
    /// The path and query (`/bucket/key?uploads`).
    pub path_and_query: String,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl S3Request {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a [`FaultProxy`] behaves besides its faults.
#[derive(Clone, Copy, Debug)]
pub struct ProxyOptions {
    /// Record requests (targets, API bodies, S3 headers) for the test to read.
    pub record: bool,
    /// Forward DynamoDB writes one at a time (see [`Moto`]).
    pub serialize_writes: bool,
    /// Refuse, as AWS would, requests that break the service models or
    /// their documented rules (see [`validate`]).
    pub validate: bool,
}

impl ProxyOptions {
    /// A test's own proxy: records everything, serializes nothing.
    pub const TEST: ProxyOptions = ProxyOptions {
        record: true,
        serialize_writes: false,
        validate: false,
    };
    /// The shared emulator's front: records nothing, writes one at a time,
    /// refuses what AWS would refuse.
    pub const ATOMIC_WRITES: ProxyOptions = ProxyOptions {
        record: false,
        serialize_writes: true,
        validate: true,
    };
}

/// Answers an API request (not S3) in the emulator's place: given its
/// target (`ECS:RunTask`) and body, `Some((status, JSON))` is the answer,
/// `None` forwards it. For what the emulator only stores and never does
/// (a simulated Fargate's quota, rate and start failures in the benches).
pub type Intercept = std::sync::Arc<dyn Fn(&str, &[u8]) -> Option<(u16, String)> + Send + Sync>;

/// Sees each forwarded API request (not S3): its target, body and answer.
pub type Observe = std::sync::Arc<dyn Fn(&str, &[u8], &[u8]) + Send + Sync>;

/// Code a [`FaultProxy`] runs around the requests it forwards.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Runs before forwarding (after faults and validation).
    pub intercept: Option<Intercept>,
    /// Runs on each answer the emulator gave.
    pub observe: Option<Observe>,
}

/// DynamoDB operations that write.
const DYNAMODB_WRITES: [&str; 5] = [
    "DynamoDB:PutItem",
    "DynamoDB:UpdateItem",
    "DynamoDB:DeleteItem",
    "DynamoDB:BatchWriteItem",
    "DynamoDB:TransactWriteItems",
];

/// An HTTP proxy between the code under test and the emulator that counts
/// requests and injects faults: delays, HTTP 500s, `ThrottlingException`
/// bodies and dropped connections. The emulator cannot inject faults
/// itself, so this is the one stand-in the fault tests use.
#[derive(Clone, Debug)]
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    state: std::sync::Arc<std::sync::Mutex<ProxyState>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (e.g. the emulator's endpoint) on a free
    /// loopback port, serving on the current tokio runtime.
    pub async fn start(upstream: &str) -> FaultProxy {
        Self::start_with(upstream, ProxyOptions::TEST).await
    }

    /// Starts a proxy to `upstream` with `options`.
    pub async fn start_with(upstream: &str, options: ProxyOptions) -> FaultProxy {
        Self::start_with_hooks(upstream, options, Hooks::default()).await
    }

    /// Starts a proxy to `upstream` with `options` that runs `hooks`.
    pub async fn start_with_hooks(
        upstream: &str,
        options: ProxyOptions,
        hooks: Hooks,
    ) -> FaultProxy {
        use http_body_util::{BodyExt, Full};
        use hyper::{body::Bytes, service::service_fn, Request, Response};
        use hyper_util::rt::{TokioExecutor, TokioIo};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = std::sync::Arc::new(std::sync::Mutex::new(ProxyState::default()));
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build_http::<Full<Bytes>>();
        let upstream: hyper::Uri = upstream.parse().expect("upstream uri");
        let shared = state.clone();
        let writes = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (state, client, upstream, writes, hooks) = (
                    shared.clone(),
                    client.clone(),
                    upstream.clone(),
                    writes.clone(),
                    hooks.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (state, client, upstream, writes, hooks) = (
                            state.clone(),
                            client.clone(),
                            upstream.clone(),
                            writes.clone(),
                            hooks.clone(),
                        );
                        async move {
                            let target = req
                                .headers()
                                .get("x-amz-target")
                                .and_then(|v| v.to_str().ok())
                                .map(|t| {
                                    let service = if t.starts_with("DynamoDB") {
                                        "DynamoDB"
                                    } else if t.starts_with("AmazonEC2ContainerService") {
                                        "ECS"
                                    } else {
                                        t.split('.').next().unwrap_or(t)
                                    };
                                    format!("{service}:{}", t.rsplit('.').next().unwrap_or(t))
                                })
                                .unwrap_or_else(|| format!("S3:{}", req.method()));
                            let fault = {
                                let mut s = state.lock().unwrap();
                                if options.record {
                                    s.seen.push(target.clone());
                                }
                                // An S3 request also matches on its path:
                                // "S3:PUT /bucket/jobs/x/output/".
                                let path = req.uri().path();
                                let matched = if target.starts_with("S3:") {
                                    format!("{target} {path}")
                                } else {
                                    target.clone()
                                };
                                let pos = s
                                    .faults
                                    .iter()
                                    .position(|(k, _)| matched.contains(k.as_str()));
                                pos.map(|i| s.faults.remove(i).1)
                            };
                            let (mut parts, body) = req.into_parts();
                            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
                            if !options.record {
                            } else if !target.starts_with("S3:") {
                                let text = String::from_utf8_lossy(&body).into_owned();
                                state.lock().unwrap().bodies.push((target.clone(), text));
                            } else {
                                let request = S3Request {
                                    method: parts.method.to_string(),
                                    path_and_query: parts
                                        .uri
                                        .path_and_query()
                                        .map(|p| p.as_str().to_owned())
                                        .unwrap_or_default(),
                                    headers: parts
                                        .headers
                                        .iter()
                                        .map(|(k, v)| {
                                            (
                                                k.as_str().to_owned(),
                                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                            )
                                        })
                                        .collect(),
                                };
                                state.lock().unwrap().s3.push(request);
                            }
                            if options.validate {
                                let problems = if target.starts_with("S3:") {
                                    let headers: Vec<(String, String)> = parts
                                        .headers
                                        .iter()
                                        .map(|(k, v)| {
                                            (
                                                k.as_str().to_owned(),
                                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                            )
                                        })
                                        .collect();
                                    let path = parts
                                        .uri
                                        .path_and_query()
                                        .map(|p| p.as_str())
                                        .unwrap_or("/");
                                    state.lock().unwrap().uploads.request(
                                        parts.method.as_str(),
                                        path,
                                        &headers,
                                        &body,
                                    )
                                } else {
                                    validate::check_json(&target, &body)
                                };
                                if !problems.is_empty() {
                                    eprintln!(
                                        "plus-testkit: {target} would be refused by AWS: {}",
                                        problems.join("; ")
                                    );
                                    let (content_type, text) =
                                        validate::refusal(&target, &problems);
                                    return Ok(Response::builder()
                                        .status(400)
                                        .header("content-type", content_type)
                                        .body(Full::new(Bytes::from(text)))
                                        .unwrap());
                                }
                            }
                            match fault {
                                Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
                                Some(Fault::ServerError) => {
                                    return Ok(Response::builder()
                                        .status(500)
                                        .body(Full::new(Bytes::from_static(b"{\"__type\":\"InternalServerError\",\"message\":\"injected\"}")))
                                        .unwrap());
                                }
                                Some(Fault::Throttle) => {
                                    return Ok(Response::builder()
                                        .status(400)
                                        .header("content-type", "application/x-amz-json-1.0")
                                        .body(Full::new(Bytes::from_static(
                                            b"{\"__type\":\"com.amazonaws.dynamodb.v20120810#ThrottlingException\",\"message\":\"Rate of requests exceeds the allowed throughput.\"}",
                                        )))
                                        .unwrap());
                                }
                                Some(Fault::Drop) => {
                                    return Err("injected: connection dropped".to_owned())
                                }
                                Some(Fault::Unprocessed) => {
                                    let request: serde_json::Value =
                                        serde_json::from_slice(&body).unwrap_or_default();
                                    let answer = if target.ends_with("BatchGetItem") {
                                        serde_json::json!({"Responses": {}, "UnprocessedKeys": request["RequestItems"]})
                                    } else {
                                        serde_json::json!({"UnprocessedItems": request["RequestItems"]})
                                    };
                                    return Ok(Response::builder()
                                        .status(200)
                                        .header("content-type", "application/x-amz-json-1.0")
                                        .body(Full::new(Bytes::from(answer.to_string())))
                                        .unwrap());
                                }
                                Some(Fault::Respond(status, body)) => {
                                    return Ok(Response::builder()
                                        .status(status)
                                        .header("content-type", "application/x-amz-json-1.1")
                                        .body(Full::new(Bytes::from(body)))
                                        .unwrap());
                                }
                                None => {}
                            }
                            if let (Some(intercept), false) =
                                (&hooks.intercept, target.starts_with("S3:"))
                            {
                                if let Some((status, text)) = intercept(&target, &body) {
                                    return Ok(Response::builder()
                                        .status(status)
                                        .header("content-type", "application/x-amz-json-1.1")
                                        .body(Full::new(Bytes::from(text)))
                                        .unwrap());
                                }
                            }
                            let path = parts
                                .uri
                                .path_and_query()
                                .map(|p| p.as_str())
                                .unwrap_or("/")
                                .to_owned();
                            let method = parts.method.to_string();
                            parts.uri =
                                format!("{}{}", upstream.to_string().trim_end_matches('/'), path)
                                    .parse()
                                    .unwrap();
                            let _one_write_at_a_time = if options.serialize_writes
                                && DYNAMODB_WRITES.contains(&target.as_str())
                            {
                                Some(writes.lock().await)
                            } else {
                                None
                            };
                            let request_body = body.clone();
                            let resp = client
                                .request(Request::from_parts(parts, Full::new(body)))
                                .await
                                .map_err(|e| e.to_string())?;
                            let (mut parts, body) = resp.into_parts();
                            let mut body =
                                body.collect().await.map_err(|e| e.to_string())?.to_bytes();
                            if options.record && target.starts_with("DynamoDB:") {
                                state.lock().unwrap().exchanges.push((
                                    target.clone(),
                                    String::from_utf8_lossy(&request_body).into_owned(),
                                    String::from_utf8_lossy(&body).into_owned(),
                                ));
                            }
                            if target.starts_with("ECS:") {
                                body = fix_ecs_shapes(body);
                                parts.headers.remove("content-length");
                            }
                            if let (Some(observe), false) =
                                (&hooks.observe, target.starts_with("S3:"))
                            {
                                observe(&target, &request_body, &body);
                            }
                            if target.starts_with("S3:") {
                                if options.validate {
                                    state
                                        .lock()
                                        .unwrap()
                                        .uploads
                                        .response(&method, &path, &body);
                                }
                                body = fix_s3_shapes(body);
                                parts.headers.remove("content-length");
                            }
                            Ok::<_, String>(Response::from_parts(parts, Full::new(body)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy { endpoint, state }
    }

    /// Injects `fault` into the next request whose target contains `target`
    /// (`"UpdateItem"`, `"BatchWriteItem"`, `"S3"`, or `""` for any); an S3
    /// request's target is followed by its path (`"S3:PUT /bucket/jobs/"`).
    pub fn inject(&self, target: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .push((target.to_owned(), fault));
    }

    /// Injects `fault` into the next `n` matching requests.
    pub fn inject_n(&self, target: &str, fault: Fault, n: usize) {
        for _ in 0..n {
            self.inject(target, fault.clone());
        }
    }

    /// Forgets the faults not yet used (an outage ends).
    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// Faults not yet used.
    pub fn pending_faults(&self) -> usize {
        self.state.lock().unwrap().faults.len()
    }

    /// The requests seen so far (`DynamoDB:GetItem`, `S3:PUT`, ...).
    pub fn seen(&self) -> Vec<String> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The JSON bodies of the API requests whose target contains `target`.
    pub fn bodies(&self, target: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .bodies
            .iter()
            .filter(|(t, _)| t.contains(target))
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// The DynamoDB calls whose target contains `target` that the emulator
    /// answered, as (request body, answer body), in order: what was read
    /// (an answer's `Count`, `ScannedCount`, `Responses`) can be counted.
    pub fn exchanges(&self, target: &str) -> Vec<(String, String)> {
        self.state
            .lock()
            .unwrap()
            .exchanges
            .iter()
            .filter(|(t, _, _)| t.contains(target))
            .map(|(_, q, a)| (q.clone(), a.clone()))
            .collect()
    }

    /// The S3 requests seen so far, in order.
    pub fn s3_requests(&self) -> Vec<S3Request> {
        self.state.lock().unwrap().s3.clone()
    }

    /// Forgets the requests seen so far.
    pub fn reset(&self) {
        self.state.lock().unwrap().seen.clear();
    }
}
