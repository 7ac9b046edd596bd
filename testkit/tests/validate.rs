//! The shared emulator's front refuses what AWS refuses, through the real
//! SDK: a request the emulator alone would take fails as it would in
//! production.

use aws_sdk_dynamodb::{error::ProvideErrorMetadata, types::AttributeValue};
use plus_testkit::{create_ecs, Moto};

#[tokio::test]
async fn a_number_dynamodb_cannot_store_is_refused() {
    let aws = Moto::shared().provision().await;
    let ddb = aws_sdk_dynamodb::Client::new(&aws.sdk_config().await);
    let put = |n: &str| {
        ddb.put_item()
            .table_name(&aws.table)
            .item("object_id", AttributeValue::S("n".into()))
            .item("p", AttributeValue::N(n.into()))
            .send()
    };
    put("0.5").await.expect("an ordinary number is stored");
    let err = put("1e-300").await.expect_err("AWS refuses 1e-300");
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    assert!(err.message().unwrap().contains("1E-130"), "{err:?}");
}

#[tokio::test]
async fn an_unused_expression_value_is_refused() {
    let aws = Moto::shared().provision().await;
    let ddb = aws_sdk_dynamodb::Client::new(&aws.sdk_config().await);
    let err = ddb
        .update_item()
        .table_name(&aws.table)
        .key("object_id", AttributeValue::S("u".into()))
        .update_expression("SET a = :a")
        .expression_attribute_values(":a", AttributeValue::S("x".into()))
        .expression_attribute_values(":unused", AttributeValue::S("y".into()))
        .send()
        .await
        .expect_err("AWS refuses an unused value");
    assert!(err.message().unwrap().contains(":unused"), "{err:?}");
}

#[tokio::test]
async fn a_tag_value_outside_ecs_characters_is_refused() {
    let aws = Moto::shared().provision().await;
    let (cluster, task_definition) = create_ecs(&aws).await;
    let ecs = aws_sdk_ecs::Client::new(&aws.sdk_config().await);
    let err = ecs
        .run_task()
        .cluster(&cluster)
        .task_definition(&task_definition)
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key("plus:username")
                .value("d'arcy")
                .build(),
        )
        .send()
        .await
        .expect_err("ECS refuses a quote in a tag value");
    assert_eq!(err.code(), Some("InvalidParameterException"), "{err:?}");
    assert!(err.message().unwrap().contains("tags[0].value"), "{err:?}");
}
