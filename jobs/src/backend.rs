//! Opens a matching job store and blob store from configuration: the local
//! backend (SQLite file + folder) or the AWS backend (DynamoDB + S3).

use std::{path::PathBuf, sync::Arc, time::Duration};

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region, SdkConfig};

use crate::{
    announce::{Announcing, EventBridge},
    blob::{local::LocalBlobs, s3::S3Blobs, BlobStore},
    store::{dynamodb::DynamoStore, sqlite::SqliteStore, JobStore, StoreError},
};

/// The file name of the local store inside the local directory.
pub const LOCAL_DB_FILE: &str = "plus.sqlite3";

/// Which backend to open, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendConfig {
    /// The embedded backend: `{dir}/plus.sqlite3` and `{dir}/blobs/{bucket}/`.
    Local {
        /// The local directory.
        dir: PathBuf,
        /// The bucket name (a folder under `blobs/`).
        bucket: String,
    },
    /// DynamoDB + S3.
    Aws(AwsConfig),
}

/// Where the AWS backend lives.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsConfig {
    /// The region.
    pub region: String,
    /// The jobs table.
    pub table: String,
    /// The streams table.
    pub streams_table: String,
    /// The primary bucket.
    pub bucket: String,
    /// A custom endpoint (the emulator in tests); `None` for AWS itself.
    pub endpoint_url: Option<String>,
    /// Static keys (`ACCESS_KEY` / `SECRET_KEY`) for older engines; `None`
    /// uses the standard credential chain (the ECS task role).
    pub static_keys: Option<(String, String)>,
    /// `EVENT_BUS`: the EventBridge bus every status change is published
    /// to; `None`: no events.
    pub event_bus: Option<String>,
}

impl std::fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret key.
        f.debug_struct("AwsConfig")
            .field("region", &self.region)
            .field("table", &self.table)
            .field("streams_table", &self.streams_table)
            .field("bucket", &self.bucket)
            .field("endpoint_url", &self.endpoint_url)
            .field("event_bus", &self.event_bus)
            .field(
                "static_keys",
                &self.static_keys.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl AwsConfig {
    /// The SDK configuration: region, endpoint, credentials, a standard
    /// retry policy (exponential backoff with jitter on throttling, 5xx and
    /// dropped connections) and timeouts so no call hangs forever.
    pub async fn sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(6)
                    .with_initial_backoff(Duration::from_millis(50))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .build(),
            );
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some((key, secret)) = &self.static_keys {
            loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                key,
                secret,
                None,
                None,
                "plus-static-keys",
            ));
        }
        loader.load().await
    }
}

/// A job store and a blob store that belong together.
#[derive(Clone, Debug)]
pub struct Backend {
    /// Jobs, actions, collection items and event streams.
    pub jobs: Arc<dyn JobStore>,
    /// Scripts, logs, outputs and results.
    pub blobs: Arc<dyn BlobStore>,
    /// The SDK configuration, on the AWS backend (the launcher builds its
    /// ECS client from it).
    pub sdk: Option<SdkConfig>,
    /// The local backend's feed of state changes (`plus serve` streams
    /// it); `None` on AWS, where they go to `EVENT_BUS`.
    pub changes: Option<SqliteStore>,
}

impl Backend {
    /// Opens the backend `config` names.
    ///
    /// # Errors
    /// When the local store cannot be opened. The AWS backend opens lazily:
    /// its errors show on first use.
    pub async fn open(config: &BackendConfig) -> Result<Self, StoreError> {
        match config {
            BackendConfig::Local { dir, bucket } => {
                let store = SqliteStore::open(&dir.join(LOCAL_DB_FILE))?;
                let blobs = LocalBlobs::new(dir.join("blobs").join(bucket));
                let jobs = Announcing::new(Arc::new(store.clone()), Arc::new(store.clone()));
                Ok(Self {
                    jobs: Arc::new(jobs),
                    blobs: Arc::new(blobs),
                    sdk: None,
                    changes: Some(store),
                })
            }
            BackendConfig::Aws(aws) => {
                let sdk = aws.sdk_config().await;
                let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
                let s3_config = aws_sdk_s3::config::Builder::from(&sdk)
                    // Path-style addressing for custom endpoints (emulators,
                    // VPC endpoints by IP); AWS itself uses virtual hosts.
                    .force_path_style(aws.endpoint_url.is_some())
                    .build();
                let s3 = aws_sdk_s3::Client::from_conf(s3_config);
                let mut jobs: Arc<dyn JobStore> =
                    Arc::new(DynamoStore::new(dynamo, &aws.table, &aws.streams_table));
                if let Some(bus) = &aws.event_bus {
                    jobs = Arc::new(Announcing::new(jobs, Arc::new(EventBridge::new(&sdk, bus))));
                }
                Ok(Self {
                    jobs,
                    blobs: Arc::new(S3Blobs::new(s3, &aws.bucket)),
                    sdk: Some(sdk),
                    changes: None,
                })
            }
        }
    }
}
