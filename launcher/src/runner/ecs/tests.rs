use super::*;

#[test]
fn tag_values_keep_to_the_characters_ecs_allows() {
    assert_eq!(tag_value("d'arcy@example.com"), "d_arcy@example.com");
    assert_eq!(tag_value("José Müller+1"), "José Müller+1");
    assert_eq!(tag_value("a\nb;c"), "a_b_c");
    assert_eq!(tag_value(&"x".repeat(300)).len(), 256);
}

#[test]
fn overrides_over_the_ecs_limit_are_refused_before_runtask() {
    let conf = aws_sdk_ecs::Config::builder()
        .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
        .build();
    let runner = EcsRunner::new(
        Client::from_conf(conf),
        EcsSettings {
            container_name: "worker".into(),
            ..EcsSettings::default()
        },
    );
    let mut job = plus_jobs::job::new_job(
        &plus_jobs::JobId::generate(),
        "alice",
        plus_jobs::RunMode::RunCollection,
        plus_jobs::Timestamp::now(),
    );
    job.collection_owner = format!("alice/collections/{}", "x".repeat(8000));
    let err = runner.overrides(&job).unwrap_err().to_string();
    assert!(err.contains("over ECS's limit of 8192"), "{err}");
    job.collection_owner = "alice/collections/photos".into();
    assert!(runner.overrides(&job).is_ok());
}

#[test]
fn client_tokens_are_stable_and_short() {
    let a = client_token(&"x".repeat(200), 1);
    assert_eq!(a, client_token(&"x".repeat(200), 1));
    assert_ne!(a, client_token(&"x".repeat(200), 2));
    assert!(a.len() <= 64);
}

#[test]
fn capacity_errors_are_retried_and_explained() {
    assert!(retryable_failure("Capacity is unavailable at this time. Please try again later or in a different availability zone"));
    assert!(!retryable_failure("MISSING"));
    assert!(hint("RunTask failed: Capacity is unavailable at this time").contains("without --spot"));
}
