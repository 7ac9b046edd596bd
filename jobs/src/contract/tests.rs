//! The contract's round trip and its sentences.

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const STORES: [(&str, &str); 4] = [
    ("REGION", "eu-west-1"),
    ("DYNAMO_TABLE", "t"),
    ("DYNAMO_STREAMS_TABLE", "s"),
    ("PRIMARY_BUCKET", "b"),
];

#[test]
fn what_a_launcher_writes_the_worker_reads_back() {
    let aws = AwsSettings::from_vars(vars(&STORES)).unwrap();
    let mut job = crate::job::new_job(
        &JobId::parse("j1").unwrap(),
        "alice",
        RunMode::RunCollection,
        crate::Timestamp::now(),
    );
    job.collection_owner = "alice/collections/photos".into();
    let env = WorkerEnv::for_job(&job, &aws).unwrap();
    let back = WorkerEnv::from_vars(env.to_vars()).unwrap();
    assert_eq!(back, env);
    let names: Vec<_> = env.to_vars().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [
            "RUN_MODE",
            "JOB_ID",
            "USERNAME",
            "REGION",
            "DYNAMO_TABLE",
            "DYNAMO_STREAMS_TABLE",
            "PRIMARY_BUCKET",
            "COLLECTION_OWNER"
        ]
    );
}

#[test]
fn every_problem_is_named_at_once() {
    let err = WorkerEnv::from_vars(vars(&[("RUN_MODE", "RUN_COLLECTION")])).unwrap_err();
    let text = err.to_string();
    for name in [
        "JOB_ID ",
        "USERNAME ",
        "REGION ",
        "DYNAMO_TABLE ",
        "DYNAMO_STREAMS_TABLE ",
        "PRIMARY_BUCKET ",
        "COLLECTION_OWNER ",
    ] {
        assert!(text.contains(name), "{name}: {text}");
    }
    let err = AwsSettings::from_vars(vars(&[])).unwrap_err();
    assert_eq!(err.problems.len(), 4, "{err}");
}

#[test]
fn a_collection_of_another_user_is_refused() {
    let mut v = vars(&STORES);
    v.extend(vars(&[
        ("RUN_MODE", "RUN_COLLECTION"),
        ("JOB_ID", "j"),
        ("USERNAME", "alice"),
        ("COLLECTION_OWNER", "bob/collections/x"),
    ]));
    let err = WorkerEnv::from_vars(v).unwrap_err();
    assert!(err.to_string().contains("not alice's"), "{err}");
}

#[test]
fn aws_region_stands_in_for_region_everywhere() {
    let mut v = vars(&STORES[1..]);
    v.push(("AWS_REGION".into(), "us-west-2".into()));
    assert_eq!(AwsSettings::from_vars(v).unwrap().region, "us-west-2");
}

#[test]
fn owner_paths_name_their_user() {
    let p = OwnerPath::parse("alice/collections/photos").unwrap();
    assert_eq!(p.user(), "alice");
    assert!(p.belongs_to("alice") && !p.belongs_to("bob"));
    for bad in ["alice", "alice/", "/x", "a//b", "a/b\n"] {
        assert!(OwnerPath::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_secret_key_is_never_printed() {
    let mut v = vars(&STORES);
    v.extend(vars(&[
        ("RUN_MODE", "RUN_SCRIPT"),
        ("JOB_ID", "j"),
        ("USERNAME", "u"),
        ("ACCESS_KEY", "AKIA"),
        ("SECRET_KEY", "very-secret"),
    ]));
    let env = WorkerEnv::from_vars(v).unwrap();
    assert!(!format!("{env:?}").contains("very-secret"));
    assert!(!env.to_vars().iter().any(|(_, v)| v == "very-secret"));
}
