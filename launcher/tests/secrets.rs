//! `--secret NAME=REF` with the real `plus` binary: on the local backend an
//! `env:` secret reaches the script from the launching user's environment
//! and lands nowhere on disk (store, blobs, worker logs) and in no event;
//! an action's secrets reach its jobs under the job's own; references
//! outside the user's prefix, reserved names and unset variables are
//! refused at launch with exit 2 and nothing written, on both backends.

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use plus_testkit::Moto;
use serde_json::Value;

const PLUS: &str = env!("CARGO_BIN_EXE_plus");

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(PLUS);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PLUS_HOME", self.home())
            .env("PLUS_USER", "alice")
            .env("PLUS_HEARTBEAT_SECONDS", "0.2")
            .env("PLUS_GRACE_SECONDS", "2")
            .env("PLUS_FLUSH_MILLIS", "50")
            .env("PLUS_WORK_DIR", self.dir.path().join("work"));
        cmd
    }

    /// A path in a folder scripts can write whatever user they run as (a
    /// root worker runs them as another user).
    fn shared(&self, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir.path().join("shared");
        let _ = std::fs::create_dir(&dir);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        dir.join(name)
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn plus(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.cmd(args);
        cmd.envs(env.iter().copied());
        cmd.output().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.plus(args, &[]);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        {
            found.push(path);
        }
    }
    found
}

const TOKEN: &str = "tok-9f8e7d6c5b4a-value";

#[test]
fn an_env_secret_reaches_the_script_and_is_stored_nowhere() {
    let home = Home::new();
    let seen = home.shared("seen");
    let script = home.script(
        "show.sh",
        "#!/bin/sh\nprintf '%s' \"$TOKEN\" > \"$1\"\necho \"token is $TOKEN\"\nenv | grep -c MY_TOKEN | sed 's/^/my_token vars: /'\n",
    );
    let out = home.plus(
        &[
            "run",
            script.to_str().unwrap(),
            "--secret",
            "TOKEN=env:MY_TOKEN",
            "--",
            seen.to_str().unwrap(),
        ],
        &[("MY_TOKEN", TOKEN)],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), TOKEN);
    assert!(stdout.contains("token is ***"), "{stdout}");
    assert!(
        stdout.contains("my_token vars: 0"),
        "only the secret's own name reaches the script: {stdout}"
    );
    assert!(!stdout.contains(TOKEN) && !text(&out.stderr).contains(TOKEN));

    let id = home.json(&["list", "--json"])["jobs"][0]["object_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = home.plus(&["events", &id, "--json"], &[]);
    assert!(!text(&events.stdout).contains(TOKEN));
    assert!(text(&events.stdout).contains("token is ***"));
    // The store file, the blobs (log, result) and the worker's own log.
    assert_eq!(
        files_containing(&home.home(), TOKEN.as_bytes()),
        Vec::<PathBuf>::new()
    );
    // A retry of the finished job reads the variable from its own
    // environment, and is refused without it.
    let out = home.plus(&["retry", &id], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("MY_TOKEN is not set"));
    std::fs::remove_file(&seen).unwrap();
    let out = home.plus(&["retry", &id, "--wait"], &[("MY_TOKEN", TOKEN)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), TOKEN);
    let status = text(&home.plus(&["status", &id], &[]).stdout);
    assert!(
        status.contains("secrets") && status.contains("TOKEN") && status.contains("env:MY_TOKEN"),
        "{status}"
    );
}

#[test]
fn an_actions_secrets_reach_its_jobs_under_the_jobs_own() {
    let home = Home::new();
    let seen = home.shared("seen");
    let script = home.script(
        "act.sh",
        &format!(
            "#!/bin/sh\nprintf '%s %s' \"$A\" \"$B\" > {}\n",
            seen.display()
        ),
    );
    let out = home.plus(
        &[
            "action",
            "put",
            "act",
            script.to_str().unwrap(),
            "--secret",
            "A=env:VALUE_A",
            "--secret",
            "B=env:VALUE_B",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let env = [
        ("VALUE_A", "value-of-a"),
        ("VALUE_B", "value-of-b"),
        ("VALUE_C", "value-of-c"),
    ];
    let out = home.plus(
        &[
            "launch",
            "--action",
            "act",
            "--wait",
            "--secret",
            "B=env:VALUE_C",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        "value-of-a value-of-c"
    );
    let job = &home.json(&["list", "--json"])["jobs"][0];
    assert_eq!(
        job["secrets"],
        serde_json::json!({"A": "env:VALUE_A", "B": "env:VALUE_C"})
    );
    // A refused reference is refused for an action too.
    let out = home.plus(
        &[
            "action",
            "put",
            "bad",
            script.to_str().unwrap(),
            "--secret",
            "A=plus/bob/x",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("plus/bob/x"));
}

/// The refusals `plus run` and `plus launch` give before writing: the
/// reference (or name, or variable) and the rule.
const REFUSED: [(&str, &[&str]); 5] = [
    ("DB=plus/bob/x", &["plus/bob/x", "plus/alice/"]),
    ("DB=prod/db", &["prod/db", "plus/alice/"]),
    ("DB=ssm:/plus/bob/x", &["ssm:/plus/bob/x", "/plus/alice/"]),
    ("JOB_ID=plus/alice/x", &["JOB_ID", "reserved"]),
    (
        "1DB=plus/alice/x",
        &["1DB", "not a valid environment variable name"],
    ),
];

#[test]
fn refused_secrets_exit_2_and_write_nothing_locally() {
    let home = Home::new();
    let script = home.script("x.sh", "echo hi\n");
    for (secret, needles) in REFUSED.iter().copied().chain([(
        "T=env:NOT_SET_ANYWHERE",
        &["NOT_SET_ANYWHERE", "not set"][..],
    )]) {
        for verb in ["run", "launch"] {
            let out = home.plus(&[verb, script.to_str().unwrap(), "--secret", secret], &[]);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{verb} {secret}: {stderr}");
            for needle in needles {
                assert!(
                    stderr.contains(needle),
                    "{verb} {secret}: {needle}: {stderr}"
                );
            }
        }
    }
    assert_eq!(
        home.json(&["list", "--json"])["jobs"],
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_secrets_exit_2_and_write_nothing_on_aws() {
    let aws = Moto::shared().provision().await;
    let home = Home::new();
    let script = home.script("x.sh", "echo hi\n");
    let env = [
        ("AWS_REGION", aws.region.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ENDPOINT_URL", aws.endpoint_url.as_deref().unwrap()),
        ("DYNAMO_TABLE", aws.table.as_str()),
        ("DYNAMO_STREAMS_TABLE", aws.streams_table.as_str()),
        ("PRIMARY_BUCKET", aws.bucket.as_str()),
        // Refused before any task could start: no real cluster is needed.
        ("ECS_CLUSTER", "plus-test"),
        ("TASK_DEFINITION", "plus-worker"),
        ("SUBNETS", "subnet-12345678"),
        ("MY_TOKEN", TOKEN),
    ];
    for (secret, needles) in REFUSED.iter().copied().chain([(
        "T=env:MY_TOKEN",
        &["env:MY_TOKEN", "local backend only"][..],
    )]) {
        let out = home.plus(
            &[
                "--backend",
                "aws",
                "launch",
                script.to_str().unwrap(),
                "--secret",
                secret,
            ],
            &env,
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{secret}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{secret}: {needle}: {stderr}");
        }
    }
    let sdk = aws.sdk_config().await;
    let items = aws_sdk_dynamodb::Client::new(&sdk)
        .scan()
        .table_name(&aws.table)
        .send()
        .await
        .unwrap();
    assert_eq!(items.count(), 0, "nothing was written: {:?}", items.items());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_job_reads_secrets_manager_with_the_commands_aws_settings() {
    let aws = Moto::shared().provision().await;
    let name = format!("plus/alice/local-{}", plus_jobs::JobId::generate().as_str());
    let value = format!("sm-{}", plus_jobs::JobId::generate().as_str());
    aws_sdk_secretsmanager::Client::new(&aws.sdk_config().await)
        .create_secret()
        .name(&name)
        .secret_string(&value)
        .send()
        .await
        .unwrap();
    let home = Home::new();
    let seen = home.shared("seen");
    let script = home.script(
        "sm.sh",
        &format!(
            "#!/bin/sh\nprintf '%s' \"$DB\" > {}\necho \"db is $DB\"\nenv | grep -c '^AWS_' | sed 's/^/aws vars: /'\n",
            seen.display()
        ),
    );
    let secret = format!("DB={name}");
    let out = home.plus(
        &["run", script.to_str().unwrap(), "--secret", &secret],
        &[
            ("AWS_REGION", aws.region.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_ENDPOINT_URL", aws.endpoint_url.as_deref().unwrap()),
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), value);
    assert!(stdout.contains("db is ***"), "{stdout}");
    assert!(
        stdout.contains("aws vars: 0"),
        "the AWS settings reach the worker, not the script: {stdout}"
    );
    assert_eq!(
        files_containing(&home.home(), value.as_bytes()),
        Vec::<PathBuf>::new()
    );
}
