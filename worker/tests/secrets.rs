//! Secrets (DESIGN.md, Secrets), with the real worker: Secrets Manager and
//! SSM values reach the script's environment and nothing else (not the
//! record, the stream, the stored log, any S3 object, nor the worker's own
//! log lines); a reference outside the user's prefix fails the job before
//! its script starts; a secret that cannot be read fails it naming the
//! secret and what to grant, never a value.

mod support;

use aws_sdk_ssm::types::ParameterType;
use plus_jobs::{Job, JobStatus};
use support::World;

/// A name no other test (sharing the emulator) uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}{}", plus_jobs::JobId::generate().as_str())
}

fn secrets(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Everything stored for the world's tables and bucket, as text.
async fn everything_stored(w: &World) -> String {
    let aws = w.aws.as_ref().unwrap();
    let sdk = aws.sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let mut all = String::new();
    for table in [&aws.table, &aws.streams_table] {
        let out = dynamo.scan().table_name(table).send().await.unwrap();
        all.push_str(&format!("{:?}\n", out.items()));
    }
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let listed = s3
        .list_objects_v2()
        .bucket(&aws.bucket)
        .send()
        .await
        .unwrap();
    for object in listed.contents() {
        let key = object.key().unwrap();
        let body = s3
            .get_object()
            .bucket(&aws.bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        all.push_str(&format!("{key}: {}\n", String::from_utf8_lossy(&body)));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_script_and_nothing_else() {
    let w = World::aws().await;
    let sdk = w.aws.as_ref().unwrap().sdk_config().await;
    let db_name = unique("plus/alice/db-");
    let db_value = unique("db-pass-");
    let token_name = unique("/plus/alice/token-");
    let token_value = unique("tok-");
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&db_name)
        .secret_string(&db_value)
        .send()
        .await
        .unwrap();
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(&token_name)
        .value(&token_value)
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let seen = w.shared("seen");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n%s\\n' \"$DB_PASSWORD\" \"$API_TOKEN\" > {seen}\necho \"db=$DB_PASSWORD token=$API_TOKEN\"\necho \"on stderr: $API_TOKEN\" >&2\necho '{{\"done\": true}}' > \"$PLUS_RESULT_FILE\"\n",
        seen = seen.display()
    );
    let job = w
        .job_with(&script, |j: &mut Job| {
            j.secrets = secrets(&[
                ("DB_PASSWORD", &db_name),
                ("API_TOKEN", &format!("ssm:{token_name}")),
            ]);
        })
        .await;
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{run:?} {done:?}");

    // The script saw both values.
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        format!("{db_value}\n{token_value}\n")
    );
    // Masked in the stream and the log.
    let output = w.output(&job.object_id).await;
    assert!(output.contains("db=*** token=***"), "{output}");
    assert!(output.contains("on stderr: ***"), "{output}");
    let log = w.log(&done).await;
    assert!(log.contains("db=*** token=***"), "{log}");
    // Nowhere in the tables, the bucket or the worker's own output.
    let stored = everything_stored(&w).await;
    assert!(
        stored.contains("DB_PASSWORD") && stored.contains(&db_name),
        "the references are stored"
    );
    for value in [&db_value, &token_value] {
        assert!(
            !stored.contains(value.as_str()),
            "a secret value is stored:\n{stored}"
        );
        assert!(
            !run.stdout.contains(value.as_str()) && !run.stderr.contains(value.as_str()),
            "the worker printed a secret value: {run:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_outside_the_users_prefix_fail_the_job_before_the_script() {
    let w = World::local().await;
    let ran = w.shared("ran");
    let script = format!("#!/bin/sh\ntouch {}\n", ran.display());
    for (reference, prefix) in [
        ("plus/bob/x", "plus/alice/"),
        ("prod/db", "plus/alice/"),
        ("ssm:/plus/bob/x", "/plus/alice/"),
    ] {
        let job = w
            .job_with(&script, |j: &mut Job| {
                j.secrets = secrets(&[("DB", reference)]);
            })
            .await;
        let (run, done) = w.run_with(&job, &[]).await;
        assert_eq!(done.status(), JobStatus::Failed, "{run:?}");
        assert_eq!(run.code, Some(1));
        assert!(
            done.error.contains(reference)
                && done.error.contains(prefix)
                && done.error.contains("not started"),
            "{}",
            done.error
        );
        assert!(!ran.exists(), "the script ran for {reference}");
    }
    // A reserved name is refused the same way.
    let job = w
        .job_with(&script, |j: &mut Job| {
            j.secrets = secrets(&[("AWS_SECRET_ACCESS_KEY", "plus/alice/x")]);
        })
        .await;
    let (_, done) = w.run_with(&job, &[]).await;
    assert_eq!(done.status(), JobStatus::Failed);
    assert!(done.error.contains("reserved"), "{}", done.error);
    assert!(!ran.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_cannot_be_read_fails_the_job_naming_what_to_grant() {
    let w = World::aws().await;
    let ran = w.shared("ran");
    let script = format!("#!/bin/sh\ntouch {}\n", ran.display());
    let missing = unique("plus/alice/missing-");
    let job = w
        .job_with(&script, |j: &mut Job| {
            j.secrets = secrets(&[("DB_PASSWORD", &missing)]);
        })
        .await;
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(done.status(), JobStatus::Failed, "{run:?}");
    for needle in [
        "DB_PASSWORD",
        missing.as_str(),
        "secretsmanager:GetSecretValue",
        ":secret:plus/alice/*",
    ] {
        assert!(done.error.contains(needle), "{needle}: {}", done.error);
    }
    let missing = unique("/plus/alice/missing-");
    let job = w
        .job_with(&script, |j: &mut Job| {
            j.secrets = secrets(&[("TOKEN", &format!("ssm:{missing}"))]);
        })
        .await;
    let (_, done) = w.run_with(&job, &[]).await;
    assert_eq!(done.status(), JobStatus::Failed);
    for needle in [
        "TOKEN",
        missing.as_str(),
        "ssm:GetParameter",
        "parameter/plus/alice/*",
        "kms:Decrypt",
    ] {
        assert!(done.error.contains(needle), "{needle}: {}", done.error);
    }
    assert!(!ran.exists(), "the script ran");
}
