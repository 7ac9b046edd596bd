//! Test helpers shared by the workspace's integration tests (feature
//! `testkit`): the AWS emulator (`moto_server`) started on a free loopback
//! port, and the tables and bucket of DESIGN.md created in it.

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

use crate::backend::AwsConfig;

/// A running `moto_server`. It lives as long as the test process: a small
/// shell watchdog kills it when the test process exits and its stdin closes.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
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
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
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
        };
        create_resources(&aws).await;
        aws
    }
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
                .index_name(crate::store::dynamodb::OWNER_INDEX)
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
