//! The operator scripts (`scripts/setup.sh`, `deploy.sh`, `run-task.sh`,
//! `show_logs.sh`) run for real against the AWS emulator (`moto_server`),
//! and what they made is read back with the AWS CLI; the lints of the
//! scripts, the CloudFormation template and the Dockerfile run too.
//!
//! Needs `aws`, `jq`, `shellcheck`, `cfn-lint` and `hadolint` on PATH;
//! `scripts/test.sh` installs the missing ones.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
};

use plus_testkit::{FaultProxy, Moto};
use serde_json::{json, Value};

const REGION: &str = "us-east-1";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed: run scripts/test.sh, which installs it"
    );
}

/// A unique resource prefix per deployment, so tests sharing the emulator
/// never see each other's resources.
fn unique_name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// One deployment's settings file and prefix.
struct Deployment {
    name: String,
    env_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Deployment {
        let dir = tempfile::tempdir().expect("temp dir");
        Deployment {
            name: unique_name(),
            env_file: dir.path().join(".env.deploy"),
            _dir: dir,
        }
    }

    /// Runs `bash scripts/SCRIPT ARGS` with only the environment an operator
    /// would set: credentials, the emulator's endpoint, PATH and ENV_FILE.
    fn run(&self, script: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let moto = Moto::shared();
        let mut cmd = Command::new("bash");
        cmd.arg(root().join("scripts").join(script))
            .args(args)
            .current_dir(root())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("REGION", REGION)
            .env("PLUS_NAME", &self.name)
            .env("ENV_FILE", &self.env_file);
        for key in ["HOME", "PYENV_ROOT", "PYENV_VERSION", "TMPDIR", "LANG"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(extra.iter().copied());
        let out = cmd.output().expect("bash runs");
        eprintln!(
            "--- {script} {args:?} exited {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn run_ok(&self, script: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let out = self.run(script, args, extra);
        assert!(out.status.success(), "{script} failed (output above)");
        out
    }

    /// The settings the scripts wrote.
    fn settings(&self) -> HashMap<String, String> {
        std::fs::read_to_string(&self.env_file)
            .expect("setup.sh writes ENV_FILE")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// `aws ... --output json` against the emulator, parsed.
fn aws(args: &[&str]) -> Value {
    let moto = Moto::shared();
    let out = Command::new("aws")
        .args([
            "--endpoint-url",
            &moto.endpoint,
            "--region",
            REGION,
            "--output",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_PAGER", "")
        .output()
        .expect("aws runs");
    assert!(
        out.status.success(),
        "aws {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).expect("aws prints JSON")
}

fn strings(v: &Value) -> BTreeSet<String> {
    match v {
        Value::String(s) => BTreeSet::from([s.clone()]),
        Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Every (action, resource) an inline policy allows.
fn statements(doc: &Value) -> Vec<(BTreeSet<String>, BTreeSet<String>, Value)> {
    doc["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| {
            assert_eq!(s["Effect"], "Allow");
            (
                strings(&s["Action"]),
                strings(&s["Resource"]),
                s["Condition"].clone(),
            )
        })
        .collect()
}

/// One deployment made by setup.sh, shared by the tests that only need one
/// to exist (the idempotence test makes its own).
fn shared_deployment() -> &'static Deployment {
    static SHARED: OnceLock<Deployment> = OnceLock::new();
    SHARED.get_or_init(|| {
        let d = Deployment::new();
        d.run_ok("setup.sh", &[], &[]);
        d
    })
}

#[test]
fn setup_twice_changes_nothing_and_leaves_what_the_contract_needs() {
    need("aws");
    need("jq");
    let d = Deployment::new();
    let first = d.run_ok("setup.sh", &[], &[]);
    assert!(String::from_utf8_lossy(&first.stderr).contains("  + dynamodb table"));
    let settings_after_first = std::fs::read_to_string(&d.env_file).unwrap();

    let second = d.run_ok("setup.sh", &[], &[]);
    let log = String::from_utf8_lossy(&second.stderr);
    assert!(
        log.contains("setup.sh: 0 change(s)"),
        "second run changed something:\n{log}"
    );
    assert!(
        !log.contains("  + "),
        "second run changed something:\n{log}"
    );
    assert_eq!(
        std::fs::read_to_string(&d.env_file).unwrap(),
        settings_after_first,
        "the second run rewrote the settings"
    );

    let s = d.settings();
    let n = &d.name;
    let jobs_table = format!("{n}-jobs");
    let streams_table = format!("{n}-streams");
    assert_eq!(s["DYNAMO_TABLE"], jobs_table);
    assert_eq!(s["DYNAMO_STREAMS_TABLE"], streams_table);
    assert_eq!(s["ECS_CLUSTER"], *n);
    assert_eq!(s["CONTAINER_NAME"], "worker");
    assert_eq!(s["REGION"], REGION);
    for key in [
        "PRIMARY_BUCKET",
        "SUBNETS",
        "SECURITY_GROUPS",
        "TASK_ROLE_ARN",
        "ECR_REPOSITORY_URI",
    ] {
        assert!(!s[key].is_empty(), "{key} is empty");
    }

    // Tables: keys, owner-index and TTL of DESIGN.md.
    let jobs = &aws(&["dynamodb", "describe-table", "--table-name", &jobs_table])["Table"];
    assert_eq!(
        jobs["KeySchema"],
        serde_json::json!([{"AttributeName": "object_id", "KeyType": "HASH"}])
    );
    let index_named = |name: &str| {
        jobs["GlobalSecondaryIndexes"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["IndexName"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name}: {jobs}"))
    };
    // The sparse index over unfinished jobs, keys only.
    let active = index_named("active-index");
    assert_eq!(
        active["KeySchema"],
        serde_json::json!([{"AttributeName": "active", "KeyType": "HASH"}, {"AttributeName": "object_id", "KeyType": "RANGE"}])
    );
    assert_eq!(active["Projection"]["ProjectionType"], "KEYS_ONLY");
    let index = &index_named("owner-index");
    assert_eq!(index["IndexName"], "owner-index");
    assert_eq!(
        index["KeySchema"],
        serde_json::json!([{"AttributeName": "owner", "KeyType": "HASH"}, {"AttributeName": "object_id", "KeyType": "RANGE"}])
    );
    assert_eq!(index["Projection"]["ProjectionType"], "ALL");
    let streams = &aws(&["dynamodb", "describe-table", "--table-name", &streams_table])["Table"];
    assert_eq!(
        streams["KeySchema"],
        serde_json::json!([{"AttributeName": "stream_id", "KeyType": "HASH"}, {"AttributeName": "seq", "KeyType": "RANGE"}])
    );
    let ttl = &aws(&[
        "dynamodb",
        "describe-time-to-live",
        "--table-name",
        &streams_table,
    ])["TimeToLiveDescription"];
    assert_eq!(ttl["TimeToLiveStatus"], "ENABLED");
    assert_eq!(ttl["AttributeName"], "expires_at");

    // Bucket: private and encrypted.
    let bucket = &s["PRIMARY_BUCKET"];
    let block = &aws(&["s3api", "get-public-access-block", "--bucket", bucket])
        ["PublicAccessBlockConfiguration"];
    for flag in [
        "BlockPublicAcls",
        "IgnorePublicAcls",
        "BlockPublicPolicy",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[flag], true, "{flag}");
    }
    let sse = aws(&["s3api", "get-bucket-encryption", "--bucket", bucket]);
    assert_eq!(
        sse["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
            ["SSEAlgorithm"],
        "AES256"
    );

    // Cluster with both Fargate capacity providers; log group with retention.
    let cluster = &aws(&["ecs", "describe-clusters", "--clusters", n])["clusters"][0];
    assert_eq!(
        strings(&cluster["capacityProviders"]),
        set(&["FARGATE", "FARGATE_SPOT"])
    );
    let groups = aws(&[
        "logs",
        "describe-log-groups",
        "--log-group-name-prefix",
        &s["LOG_GROUP"],
    ]);
    assert_eq!(groups["logGroups"][0]["retentionInDays"], 30);

    // Task role: only what the worker does, on exactly these resources.
    let task_role = format!("{n}-task");
    let role = &aws(&["iam", "get-role", "--role-name", &task_role])["Role"];
    assert_eq!(role["Arn"], s["TASK_ROLE_ARN"]);
    assert_eq!(
        role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"],
        "ecs-tasks.amazonaws.com"
    );
    let policies = aws(&["iam", "list-role-policies", "--role-name", &task_role]);
    assert_eq!(strings(&policies["PolicyNames"]), set(&["worker"]));
    let attached = aws(&[
        "iam",
        "list-attached-role-policies",
        "--role-name",
        &task_role,
    ]);
    assert_eq!(
        attached["AttachedPolicies"],
        serde_json::json!([]),
        "no managed policies"
    );
    let doc = &aws(&[
        "iam",
        "get-role-policy",
        "--role-name",
        &task_role,
        "--policy-name",
        "worker",
    ])["PolicyDocument"];
    let table_arn = format!("arn:aws:dynamodb:{REGION}:123456789012:table/{jobs_table}");
    let streams_arn = format!("arn:aws:dynamodb:{REGION}:123456789012:table/{streams_table}");
    let (mut actions, mut resources) = (BTreeSet::new(), BTreeSet::new());
    for (a, r, condition) in statements(doc) {
        if a.contains("s3:ListBucket") {
            assert_eq!(
                condition["StringLike"]["s3:prefix"],
                serde_json::json!(["jobs/*"])
            );
        }
        actions.extend(a);
        resources.extend(r);
    }
    assert_eq!(
        actions,
        set(&[
            "dynamodb:BatchWriteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "events:PutEvents",
            "s3:AbortMultipartUpload",
            "s3:GetObject",
            "s3:ListBucket",
            "s3:ListMultipartUploadParts",
            "s3:PutObject",
            "secretsmanager:GetSecretValue",
            "ssm:GetParameter",
        ])
    );
    // Secrets: read access to the plus/ prefixes only (the worker
    // enforces each user's part).
    assert_eq!(
        resources,
        set(&[
            table_arn.as_str(),
            &format!("{table_arn}/index/owner-index"),
            &streams_arn,
            &format!("arn:aws:s3:::{bucket}"),
            &format!("arn:aws:s3:::{bucket}/jobs/*"),
            &format!("arn:aws:secretsmanager:{REGION}:123456789012:secret:plus/*"),
            &format!("arn:aws:ssm:{REGION}:123456789012:parameter/plus/*"),
            &format!("arn:aws:events:{REGION}:123456789012:event-bus/{n}-jobs"),
        ])
    );
    // The bus status changes are published to (README, "Job events").
    assert_eq!(s["EVENT_BUS"], format!("{n}-jobs"));
    let bus = aws(&["events", "describe-event-bus", "--name", &s["EVENT_BUS"]]);
    assert_eq!(bus["Name"], s["EVENT_BUS"]);

    // Execution role: pull this image, write this log group.
    let doc = &aws(&[
        "iam",
        "get-role-policy",
        "--role-name",
        &format!("{n}-task-execution"),
        "--policy-name",
        "pull-and-log",
    ])["PolicyDocument"];
    for (a, r, _) in statements(doc) {
        if r.contains("*") {
            assert_eq!(
                a,
                set(&["ecr:GetAuthorizationToken"]),
                "only the ECR token is unscoped"
            );
        }
    }

    // Schedules: the group, and the scheduler's role, which may only invoke
    // the launcher Lambda; the launcher may manage the group's schedules
    // and pass that role alone.
    let group = aws(&[
        "scheduler",
        "get-schedule-group",
        "--name",
        &format!("{n}-worker"),
    ]);
    assert_eq!(group["Name"], format!("{n}-worker"));
    assert_eq!(s["PLUS_SCHEDULE_GROUP"], format!("{n}-worker"));
    let scheduler_role =
        &aws(&["iam", "get-role", "--role-name", &format!("{n}-scheduler")])["Role"];
    assert_eq!(scheduler_role["Arn"], s["PLUS_SCHEDULER_ROLE_ARN"]);
    assert_eq!(
        scheduler_role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"],
        "scheduler.amazonaws.com"
    );
    let function_arn = format!("arn:aws:lambda:{REGION}:123456789012:function:{n}-launcher");
    assert_eq!(s["PLUS_LAUNCHER_ARN"], function_arn);
    let doc = &aws(&[
        "iam",
        "get-role-policy",
        "--role-name",
        &format!("{n}-scheduler"),
        "--policy-name",
        "invoke-launcher",
    ])["PolicyDocument"];
    let only = statements(doc);
    assert_eq!(only.len(), 1, "{doc}");
    assert_eq!(only[0].0, set(&["lambda:InvokeFunction"]));
    assert_eq!(
        only[0].1,
        set(&[function_arn.as_str(), &format!("{function_arn}:*")])
    );
    let doc = &aws(&[
        "iam",
        "get-role-policy",
        "--role-name",
        &format!("{n}-launcher"),
        "--policy-name",
        "launcher",
    ])["PolicyDocument"];
    let schedules_arn = format!("arn:aws:scheduler:{REGION}:123456789012:schedule/{n}-worker/*");
    for (a, r, condition) in statements(doc) {
        if a.contains("scheduler:CreateSchedule") {
            assert_eq!(r, set(&[schedules_arn.as_str()]));
        }
        if a.contains("iam:PassRole") && r.contains(s["PLUS_SCHEDULER_ROLE_ARN"].as_str()) {
            assert_eq!(r.len(), 1);
            assert_eq!(
                condition["StringEquals"]["iam:PassedToService"],
                "scheduler.amazonaws.com"
            );
        }
    }

    // Task definition: one revision, container `worker`, SIGTERM window,
    // init process, awslogs, the two roles, no credentials.
    let list = aws(&[
        "ecs",
        "list-task-definitions",
        "--family-prefix",
        &format!("{n}-worker"),
    ]);
    assert_eq!(
        list["taskDefinitionArns"].as_array().unwrap().len(),
        1,
        "{list}"
    );
    let td = &aws(&[
        "ecs",
        "describe-task-definition",
        "--task-definition",
        &s["TASK_DEFINITION"],
    ])["taskDefinition"];
    assert_eq!(td["taskRoleArn"], s["TASK_ROLE_ARN"]);
    assert_eq!(td["executionRoleArn"], s["EXECUTION_ROLE_ARN"]);
    assert_eq!(td["networkMode"], "awsvpc");
    assert_eq!(
        td["requiresCompatibilities"],
        serde_json::json!(["FARGATE"])
    );
    let c = &td["containerDefinitions"][0];
    assert_eq!(c["name"], "worker");
    assert_eq!(c["stopTimeout"], 120);
    assert_eq!(c["linuxParameters"]["initProcessEnabled"], true);
    assert_eq!(c["logConfiguration"]["logDriver"], "awslogs");
    assert_eq!(
        c["logConfiguration"]["options"]["awslogs-group"],
        s["LOG_GROUP"]
    );
    assert_eq!(c["image"], format!("{}:latest", s["ECR_REPOSITORY_URI"]));
    let env: HashMap<&str, &str> = c["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(env["DYNAMO_TABLE"], jobs_table);
    assert_eq!(env["DYNAMO_STREAMS_TABLE"], streams_table);
    assert_eq!(env["PRIMARY_BUCKET"], bucket);
    assert_eq!(env["REGION"], REGION);
    assert_eq!(env["EVENT_BUS"], s["EVENT_BUS"]);
    assert!(!env.contains_key("ACCESS_KEY") && !env.contains_key("SECRET_KEY"));
}

#[test]
fn deploy_registers_a_revision_with_the_image_and_ships_the_lambda() {
    need("aws");
    need("jq");
    need("zip");
    let d = shared_deployment();
    let s = d.settings();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bootstrap"), "#!/bin/sh\n").unwrap();
    let zip = dir.path().join("bootstrap.zip");
    let zipped = Command::new("zip")
        .args(["-q", "-j"])
        .arg(&zip)
        .arg(dir.path().join("bootstrap"))
        .status()
        .unwrap();
    assert!(zipped.success());
    let image = format!("{}:v2", s["ECR_REPOSITORY_URI"]);
    let extra = [
        ("IMAGE", image.as_str()),
        ("LAMBDA_ZIP", zip.to_str().unwrap()),
    ];
    d.run_ok("deploy.sh", &[], &extra);
    let again = d.run_ok("deploy.sh", &[], &extra);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already uses"));

    let family = &s["TASK_DEFINITION"];
    let td = &aws(&[
        "ecs",
        "describe-task-definition",
        "--task-definition",
        family,
    ])["taskDefinition"];
    assert_eq!(td["containerDefinitions"][0]["image"], image);
    assert_eq!(
        td["containerDefinitions"][0]["stopTimeout"], 120,
        "the rest is kept"
    );
    let revisions = aws(&["ecs", "list-task-definitions", "--family-prefix", family]);
    assert_eq!(
        revisions["taskDefinitionArns"].as_array().unwrap().len(),
        2,
        "one new revision, once"
    );

    let f = &aws(&[
        "lambda",
        "get-function",
        "--function-name",
        &s["LAMBDA_FUNCTION"],
    ])["Configuration"];
    assert_eq!(f["Runtime"], "provided.al2023");
    assert_eq!(f["Handler"], "bootstrap");
    assert_eq!(f["Role"], s["LAUNCHER_ROLE_ARN"]);
    let vars = &f["Environment"]["Variables"];
    for key in [
        "DYNAMO_TABLE",
        "DYNAMO_STREAMS_TABLE",
        "PRIMARY_BUCKET",
        "ECS_CLUSTER",
        "TASK_DEFINITION",
        "SUBNETS",
        "SECURITY_GROUPS",
        "PLUS_SCHEDULE_GROUP",
        "PLUS_SCHEDULER_ROLE_ARN",
        "PLUS_LAUNCHER_ARN",
    ] {
        assert_eq!(vars[key], s[key], "{key}");
    }

    // Stopped tasks of this cluster started by the launcher go to the
    // launcher Lambda, which EventBridge may invoke.
    let rule_arn = &s["ECS_EVENTS_RULE_ARN"];
    let rule_name = rule_arn.rsplit('/').next().unwrap();
    let rule = aws(&["events", "describe-rule", "--name", rule_name]);
    let pattern: Value = serde_json::from_str(rule["EventPattern"].as_str().unwrap()).unwrap();
    assert_eq!(pattern["source"], json!(["aws.ecs"]));
    assert_eq!(pattern["detail-type"], json!(["ECS Task State Change"]));
    assert_eq!(pattern["detail"]["lastStatus"], json!(["STOPPED"]));
    assert_eq!(pattern["detail"]["startedBy"], json!(["plus-launcher"]));
    let cluster = pattern["detail"]["clusterArn"][0].as_str().unwrap();
    assert!(
        cluster.ends_with(&format!(":cluster/{}", s["ECS_CLUSTER"])),
        "{cluster}"
    );
    let targets = aws(&["events", "list-targets-by-rule", "--rule", rule_name]);
    assert_eq!(targets["Targets"][0]["Arn"], f["FunctionArn"], "{targets}");
    let policy = aws(&[
        "lambda",
        "get-policy",
        "--function-name",
        &s["LAMBDA_FUNCTION"],
    ]);
    let policy: Value = serde_json::from_str(policy["Policy"].as_str().unwrap()).unwrap();
    assert!(
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .any(|st| st["Principal"]["Service"] == "events.amazonaws.com"
                && st["Condition"]["ArnLike"]["AWS:SourceArn"] == rule_arn.as_str()),
        "{policy}"
    );

    // setup.sh after a deploy keeps the deployed image.
    let log = d.run_ok("setup.sh", &[], &[]);
    assert!(String::from_utf8_lossy(&log.stderr).contains("setup.sh: 0 change(s)"));
}

#[test]
fn run_task_launches_a_job_through_the_launcher_and_starts_its_ecs_task() {
    need("aws");
    need("jq");
    let d = shared_deployment();
    let s = d.settings();
    // The emulator cannot run the container, so the job cannot be followed
    // to its end: launch without waiting, then check what a real run
    // starts from, the job record and the RunTask.
    // moto returns a task container's `cpu` as a number where ECS has a
    // string, which the Rust SDK refuses; the testkit's proxy fixes that
    // shape and changes nothing else.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the proxy");
    let proxy = runtime
        .block_on(FaultProxy::start(&Moto::shared().endpoint))
        .endpoint;
    let out = d.run_ok(
        "run-task.sh",
        &["--no-wait", "--", "--param", "name=ops"],
        &[
            ("PLUS_BIN", env!("CARGO_BIN_EXE_plus")),
            ("PLUS_USER", "ops"),
            ("AWS_ENDPOINT_URL", &proxy),
        ],
    );
    let launched: Value =
        serde_json::from_slice(&out.stdout).expect("run-task.sh prints the launch as JSON");
    let job_id = launched["job_id"].as_str().expect("a job id").to_owned();

    let key = serde_json::json!({ "object_id": { "S": job_id } }).to_string();
    let item = &aws(&[
        "dynamodb",
        "get-item",
        "--table-name",
        &s["DYNAMO_TABLE"],
        "--key",
        &key,
    ])["Item"];
    assert_eq!(item["username"]["S"], "ops");
    assert_eq!(item["owner"]["S"], "ops/jobs");
    assert_eq!(item["run_mode"]["S"], "RUN_SCRIPT");
    let task_arn = item["fargate_task_arn"]["S"]
        .as_str()
        .unwrap_or_else(|| {
            panic!("the job record names no ECS task (the launcher did not call RunTask): {item}")
        })
        .to_owned();
    assert!(task_arn.starts_with("arn:aws:ecs:"), "{task_arn}");

    let listed = aws(&["ecs", "list-tasks", "--cluster", &s["ECS_CLUSTER"]]);
    assert!(strings(&listed["taskArns"]).contains(&task_arn), "{listed}");
    let task = &aws(&[
        "ecs",
        "describe-tasks",
        "--cluster",
        &s["ECS_CLUSTER"],
        "--tasks",
        &task_arn,
    ])["tasks"][0];
    assert!(
        task["taskDefinitionArn"]
            .as_str()
            .unwrap()
            .contains(&format!("task-definition/{}:", s["TASK_DEFINITION"])),
        "{task}"
    );
    let overrides = &task["overrides"]["containerOverrides"][0];
    assert_eq!(overrides["name"], "worker");
    let env: HashMap<&str, &str> = overrides["environment"]
        .as_array()
        .expect("the job's environment as overrides")
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(env["JOB_ID"], job_id);
    assert_eq!(env["RUN_MODE"], "RUN_SCRIPT");
    assert_eq!(env["USERNAME"], "ops");
    for secret in [
        "ACCESS_KEY",
        "SECRET_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        assert!(
            !env.contains_key(secret),
            "{secret} in the task's overrides: {env:?}"
        );
    }
}

#[test]
fn show_logs_prints_the_log_stream_of_the_task_that_ran_a_job() {
    need("aws");
    need("jq");
    let d = shared_deployment();
    let s = d.settings();
    let group = &s["LOG_GROUP"];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    for (task, message) in [("task-a", "worker of job-a"), ("task-b", "worker of job-b")] {
        let stream = format!("worker/worker/{task}");
        aws(&[
            "logs",
            "create-log-stream",
            "--log-group-name",
            group,
            "--log-stream-name",
            &stream,
        ]);
        let events = serde_json::json!([{ "timestamp": now, "message": message }]).to_string();
        aws(&[
            "logs",
            "put-log-events",
            "--log-group-name",
            group,
            "--log-stream-name",
            &stream,
            "--log-events",
            &events,
        ]);
    }
    let item = serde_json::json!({
        "object_id": { "S": "job-a" },
        "fargate_task_arn": { "S": format!("arn:aws:ecs:{REGION}:123456789012:task/{}/task-a", s["ECS_CLUSTER"]) },
    })
    .to_string();
    aws(&[
        "dynamodb",
        "put-item",
        "--table-name",
        &s["DYNAMO_TABLE"],
        "--item",
        &item,
    ]);

    let out = d.run_ok("show_logs.sh", &["--job", "job-a"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("worker of job-a"), "{text}");
    assert!(!text.contains("worker of job-b"), "{text}");

    let out = d.run_ok("show_logs.sh", &["--since", "1h"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("worker of job-a") && text.contains("worker of job-b"),
        "{text}"
    );

    let out = d.run("show_logs.sh", &["--job", "no-such-job"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("job no-such-job is not in table"));
}

fn lint(tool: &str, args: &[&str]) {
    need(tool);
    let out = Command::new(tool)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?} found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shell_scripts_pass_shellcheck() {
    let scripts: Vec<String> = std::fs::read_dir(root().join("scripts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .map(|p| format!("scripts/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    assert!(scripts.len() >= 5, "{scripts:?}");
    let mut args = vec!["-x"];
    args.extend(scripts.iter().map(String::as_str));
    lint("shellcheck", &args);
}

#[test]
fn cloudformation_template_passes_cfn_lint() {
    lint("cfn-lint", &["infra/plus-worker.yaml"]);
}

#[test]
fn dockerfile_passes_hadolint() {
    lint("hadolint", &["Dockerfile"]);
}
