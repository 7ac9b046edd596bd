//! A sharded collection on the AWS backend reads its collection once: the
//! real `plus launch --shards 4` against the emulator (through a recording
//! proxy), then the real worker of each shard with the environment its
//! RunTask carried, and the DynamoDB items read are counted from the
//! emulator's answers (`ScannedCount` of each Query, the items of each
//! BatchGetItem).

use std::collections::BTreeMap;

use plus_jobs::{Backend, BackendConfig, JobStatus};
use plus_testkit::{create_ecs, default_security_group, default_subnet, Fault, FaultProxy, Moto};
use serde_json::{json, Value};

const PLUS: &str = env!("CARGO_BIN_EXE_plus");

/// The emulator's ECS, through the recording proxy.
struct Ecs {
    aws: plus_jobs::backend::AwsConfig,
    cluster: String,
    task_definition: String,
    subnet: String,
    sg: String,
    proxy: FaultProxy,
}

impl Ecs {
    async fn new() -> (Ecs, Backend) {
        let moto = Moto::shared();
        let aws = moto.provision().await;
        let (cluster, task_definition) = create_ecs(&aws).await;
        let backend = Backend::open(&BackendConfig::Aws(aws.clone()))
            .await
            .unwrap();
        let ecs = Ecs {
            cluster,
            task_definition,
            subnet: default_subnet(&moto.endpoint).await,
            sg: default_security_group(&moto.endpoint).await,
            proxy: FaultProxy::start(&moto.endpoint).await,
            aws,
        };
        (ecs, backend)
    }

    /// The real `plus` on the AWS backend.
    fn plus(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(PLUS)
            .args(["--backend", "aws"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("PLUS_USER", "alice")
            .env("AWS_REGION", &self.aws.region)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_ENDPOINT_URL", &self.proxy.endpoint)
            .env("DYNAMO_TABLE", &self.aws.table)
            .env("DYNAMO_STREAMS_TABLE", &self.aws.streams_table)
            .env("PRIMARY_BUCKET", &self.aws.bucket)
            .env("ECS_CLUSTER", &self.cluster)
            .env("TASK_DEFINITION", &self.task_definition)
            .env("SUBNETS", &self.subnet)
            .env("SECURITY_GROUPS", &self.sg)
            .output()
            .unwrap()
    }
}

/// Items DynamoDB read for the Query and BatchGetItem calls the proxy saw
/// on the collection `owner`.
fn items_read(proxy: &FaultProxy, owner: &str) -> u64 {
    let mut read = 0;
    for (request, answer) in proxy.exchanges("DynamoDB:Query") {
        if !request.contains(owner) {
            continue;
        }
        let answer: Value = serde_json::from_str(&answer).unwrap();
        read += answer["ScannedCount"].as_u64().unwrap_or(0);
    }
    for (_, answer) in proxy.exchanges("DynamoDB:BatchGetItem") {
        let answer: Value = serde_json::from_str(&answer).unwrap();
        if let Some(tables) = answer["Responses"].as_object() {
            read += tables
                .values()
                .map(|t| t.as_array().map_or(0, Vec::len) as u64)
                .sum::<u64>();
        }
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_read_a_collection_of_2000_items_once() {
    let (ecs, backend) = Ecs::new().await;
    let proxy = ecs.proxy.clone();
    let owner = "alice/collections/big";
    let items: Vec<_> = (0..2000)
        .map(|i| {
            json!({"object_id": format!("item-{i:05}"), "owner": owner, "n": i})
                .as_object()
                .unwrap()
                .clone()
        })
        .collect();
    // Written straight to the emulator: only the run is counted.
    backend.jobs.put_objects(&items).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("echo.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nwhile IFS= read -r line; do printf '{\"seen\":%s}\\n' \"$line\"; done\n",
    )
    .unwrap();

    let out = ecs.plus(&[
        "launch",
        "--collection",
        owner,
        script.to_str().unwrap(),
        "--streaming",
        "--shards",
        "4",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parent = serde_json::from_slice::<Value>(&out.stdout).unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let launch_reads = items_read(&proxy, owner);
    assert!(
        launch_reads <= 2,
        "the launch reads the first and last id only: {launch_reads}"
    );

    // What each shard's container would do: the real worker with the
    // environment of its RunTask.
    let runs = proxy.bodies("ECS:RunTask");
    assert_eq!(runs.len(), 4);
    let mut workers = Vec::new();
    for body in runs {
        let body: Value = serde_json::from_str(&body).unwrap();
        let mut env: Vec<(String, String)> = body["overrides"]["containerOverrides"][0]
            ["environment"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_owned(),
                    e["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        env.extend([
            ("AWS_ENDPOINT_URL".into(), proxy.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("PATH".into(), std::env::var("PATH").unwrap()),
            (
                "PLUS_WORK_DIR".into(),
                dir.path().join("work").display().to_string(),
            ),
        ]);
        let mut child = tokio::process::Command::new(PLUS)
            .arg("worker")
            .env_clear()
            .envs(env)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        workers.push(tokio::spawn(async move { child.wait().await }));
    }
    for worker in workers {
        assert!(worker.await.unwrap().unwrap().success());
    }

    let mut runs_of: BTreeMap<String, u32> = BTreeMap::new();
    let mut sizes = Vec::new();
    for i in 0..4 {
        let shard = backend
            .jobs
            .get_job(&format!("{parent}-s{i}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(shard.status(), JobStatus::Succeeded, "{}", shard.error);
        let key = format!("jobs/{}/results.jsonl", shard.object_id);
        let text =
            String::from_utf8(backend.blobs.get_bytes(&key).await.unwrap().unwrap()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        sizes.push(lines.len());
        for line in lines {
            *runs_of
                .entry(line["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(runs_of.len(), 2000, "every item ran: {sizes:?}");
    assert!(runs_of.values().all(|n| *n == 1), "each item once");
    let read = items_read(&proxy, owner);
    eprintln!(
        "REPORT 2,000 items over 4 shards: {read} items read from DynamoDB (shard sizes {sizes:?})"
    );
    assert!(read <= 2200, "{read} items read for a collection of 2,000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_that_cannot_start_every_shard_fails_its_parent_with_the_reason() {
    let (ecs, backend) = Ecs::new().await;
    let owner = "alice/collections/few";
    let items: Vec<_> = (0..10)
        .map(|i| {
            json!({"object_id": format!("f-{i}"), "owner": owner})
                .as_object()
                .unwrap()
                .clone()
        })
        .collect();
    backend.jobs.put_objects(&items).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("echo.sh");
    std::fs::write(&script, "#!/bin/sh\necho '{}'\n").unwrap();
    // The first shard's RunTask passes; the second's is refused for good.
    let missing = r#"{"tasks":[],"failures":[{"arn":"arn:aws:ecs:us-east-1:123456789012:cluster/x","reason":"MISSING"}]}"#;
    ecs.proxy
        .inject("ECS:RunTask", Fault::Delay(std::time::Duration::ZERO));
    ecs.proxy
        .inject("ECS:RunTask", Fault::Respond(200, missing.into()));
    let out = ecs.plus(&[
        "launch",
        "--collection",
        owner,
        script.to_str().unwrap(),
        "--shards",
        "3",
        "--id",
        "fan-1",
        "--json",
    ]);
    assert!(!out.status.success());
    let parent = backend.jobs.get_job("fan-1").await.unwrap().unwrap();
    assert_eq!(parent.status(), JobStatus::Failed, "{parent:?}");
    assert!(
        parent.error.contains("shard 2 of 3 could not be started")
            && parent.error.contains("MISSING"),
        "{}",
        parent.error
    );
    assert!(backend.jobs.get_job("fan-1-s2").await.unwrap().is_none());
}
