//! Attribute values: objects and events to and from DynamoDB items, the
//! numbers DynamoDB refuses, and SDK errors as [`StoreError`]s.

use std::collections::HashMap;

use aws_sdk_dynamodb::{
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
    types::AttributeValue,
};
use plus_proto::StreamEvent;
use serde_json::Value;

use crate::store::{Object, StoreError};

/// Turns an SDK error into a [`StoreError`] that says what to do; the
/// SDK's error is kept as the cause.
pub(super) fn classify<E>(err: SdkError<E, HttpResponse>, op: &str, table: &str) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    enum Kind {
        Rejected,
        Unavailable,
    }
    let (kind, message) = match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown");
            let message = e.message().unwrap_or("").to_owned();
            match code {
                "ResourceNotFoundException" => (Kind::Rejected, format!(
                    "DynamoDB table {table} does not exist (in this region and account): create it with scripts/setup.sh, or fix DYNAMO_TABLE / DYNAMO_STREAMS_TABLE"
                )),
                "AccessDeniedException" | "UnrecognizedClientException" => (Kind::Rejected, format!(
                    "{op} on {table} was denied ({code}: {message}): give the task role access to this table"
                )),
                "ProvisionedThroughputExceededException" | "ThrottlingException"
                | "RequestLimitExceeded" | "InternalServerError" | "ServiceUnavailable"
                | "LimitExceededException" => {
                    (Kind::Unavailable, format!("{op} on {table}: {code}: {message}"))
                }
                _ if service.raw().status().is_server_error() => {
                    (Kind::Unavailable, format!("{op} on {table}: {code}: {message}"))
                }
                _ => (Kind::Rejected, format!("{op} on {table} failed: {code}: {message}")),
            }
        }
        SdkError::ConstructionFailure(_) => (
            Kind::Rejected,
            format!(
                "{op} on {table} could not be built: {}",
                crate::error_chain(&err)
            ),
        ),
        _ => (
            Kind::Unavailable,
            format!("{op} on {table}: {}", crate::error_chain(&err)),
        ),
    };
    let cause = crate::Cause::new(message, err);
    match kind {
        Kind::Rejected => StoreError::Rejected(cause),
        Kind::Unavailable => StoreError::Unavailable(cause),
    }
}

/// Whether `err` is DynamoDB's answer to a condition that did not hold
/// (the one test every conditional write uses).
pub(super) fn condition_failed<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    err.as_service_error()
        .is_some_and(|e| e.code() == Some("ConditionalCheckFailedException"))
}

/// Refuses, as DynamoDB itself would (the emulator does not), a number
/// outside DynamoDB's range, naming where it is.
pub(super) fn check_numbers(id: &str, name: &str, value: &Value) -> Result<(), StoreError> {
    match crate::params::dynamodb_number_problem(value, name) {
        None => Ok(()),
        Some(bad) => Err(StoreError::Rejected(format!(
            "object {id} cannot be stored in DynamoDB: {bad} is outside the numbers DynamoDB keeps (1E-130 to 9.99E+125)"
        ).into())),
    }
}

pub(super) fn to_item(
    id: &str,
    object: Object,
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    for (name, value) in &object {
        check_numbers(id, name, value)?;
    }
    serde_dynamo::to_item(Value::Object(object)).map_err(|e| {
        StoreError::Rejected(format!("object {id} cannot be stored in DynamoDB: {e}").into())
    })
}

pub(super) fn from_item(
    id: &str,
    item: HashMap<String, AttributeValue>,
) -> Result<Object, StoreError> {
    match serde_dynamo::from_item::<_, Value>(item) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => unreachable!("an item is a map"),
        Err(e) => Err(StoreError::Malformed {
            id: id.to_owned(),
            reason: format!("its attributes cannot be read ({e})"),
        }),
    }
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn event_to_item(e: &StreamEvent) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("stream_id".to_owned(), s(&e.stream_id)),
        ("seq".to_owned(), AttributeValue::N(e.seq.to_string())),
        ("kind".to_owned(), s(&e.kind)),
        ("at".to_owned(), s(&e.at)),
        ("data".to_owned(), s(&e.data)),
        (
            "expires_at".to_owned(),
            AttributeValue::N(e.expires_at.to_string()),
        ),
    ])
}

pub(super) fn event_from_item(
    item: &HashMap<String, AttributeValue>,
) -> Result<StreamEvent, StoreError> {
    let text = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    let number = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_default()
    };
    let stream_id = text("stream_id");
    if stream_id.is_empty() {
        return Err(StoreError::Malformed {
            id: "stream event".to_owned(),
            reason: "it has no stream_id".to_owned(),
        });
    }
    Ok(StreamEvent {
        stream_id,
        seq: number("seq"),
        kind: text("kind"),
        at: text("at"),
        data: text("data"),
        expires_at: number("expires_at"),
    })
}

pub(super) fn page_key(owner: &str, id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("owner".to_owned(), s(owner)),
        ("object_id".to_owned(), s(id)),
    ])
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use aws_sdk_dynamodb::{
        error::{ConnectorError, ErrorMetadata},
        operation::put_item::PutItemError,
        types::error::ConditionalCheckFailedException,
    };
    use aws_smithy_types::body::SdkBody;

    use super::*;

    /// DynamoDB's answer with `status` and, when given, the error `code`
    /// its body named (as the SDK parses an error it has no type for).
    fn answer(status: u16, code: Option<&str>) -> SdkError<PutItemError, HttpResponse> {
        let mut meta = ErrorMetadata::builder().message("the service said no");
        if let Some(code) = code {
            meta = meta.code(code);
        }
        SdkError::service_error(
            PutItemError::generic(meta.build()),
            HttpResponse::new(status.try_into().unwrap(), SdkBody::empty()),
        )
    }

    fn unavailable(err: StoreError) -> String {
        match err {
            StoreError::Unavailable(cause) => {
                assert!(
                    cause.source().is_some(),
                    "the SDK error is kept as the cause"
                );
                cause.message().to_owned()
            }
            other => panic!("expected Unavailable (retrying may help), got {other:?}"),
        }
    }

    fn rejected(err: StoreError) -> String {
        match err {
            StoreError::Rejected(cause) => {
                assert!(
                    cause.source().is_some(),
                    "the SDK error is kept as the cause"
                );
                cause.message().to_owned()
            }
            other => panic!("expected Rejected (retrying will not help), got {other:?}"),
        }
    }

    #[test]
    fn throttling_is_transient_and_names_the_operation_and_table() {
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
        ] {
            let message = unavailable(classify(answer(400, Some(code)), "PutItem", "jobs"));
            assert!(
                message.contains("PutItem on jobs") && message.contains(code),
                "{message}"
            );
        }
    }

    #[test]
    fn a_server_error_is_transient_whatever_its_code() {
        for code in [
            Some("InternalServerError"),
            Some("ServiceUnavailable"),
            Some("SomethingNew"),
            None,
        ] {
            let message = unavailable(classify(answer(500, code), "Query", "jobs"));
            assert!(message.contains("Query on jobs"), "{message}");
        }
        unavailable(classify(answer(503, None), "GetItem", "jobs"));
    }

    #[test]
    fn a_dropped_connection_or_timeout_is_transient() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        let dropped: SdkError<PutItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(reset)));
        let message = unavailable(classify(dropped, "PutItem", "jobs"));
        assert!(message.contains("PutItem on jobs"), "{message}");

        let timeout: SdkError<PutItemError, HttpResponse> =
            SdkError::timeout_error("the read timed out");
        unavailable(classify(timeout, "PutItem", "jobs"));
    }

    #[test]
    fn a_validation_error_is_rejected_with_dynamodbs_message() {
        let message = rejected(classify(
            answer(400, Some("ValidationException")),
            "UpdateItem",
            "jobs",
        ));
        assert!(
            message.contains("UpdateItem on jobs failed: ValidationException: the service said no"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_table_says_how_to_create_it() {
        let message = rejected(classify(
            answer(400, Some("ResourceNotFoundException")),
            "GetItem",
            "plus-jobs",
        ));
        assert!(
            message.contains("DynamoDB table plus-jobs does not exist")
                && message.contains("scripts/setup.sh")
                && message.contains("DYNAMO_TABLE"),
            "{message}"
        );
    }

    #[test]
    fn a_denied_request_says_to_grant_the_task_role_access() {
        for code in ["AccessDeniedException", "UnrecognizedClientException"] {
            let message = rejected(classify(answer(400, Some(code)), "PutItem", "jobs"));
            assert!(
                message.contains("was denied") && message.contains("give the task role access"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_request_that_cannot_be_built_is_rejected() {
        let err: SdkError<PutItemError, HttpResponse> =
            SdkError::construction_failure("a required field is missing");
        let message = rejected(classify(err, "PutItem", "jobs"));
        assert!(message.contains("could not be built"), "{message}");
    }

    #[test]
    fn only_a_failed_condition_counts_as_a_lost_conditional_write() {
        let failed = SdkError::service_error(
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .message("The conditional request failed")
                    .meta(
                        ErrorMetadata::builder()
                            .code("ConditionalCheckFailedException")
                            .build(),
                    )
                    .build(),
            ),
            HttpResponse::new(400.try_into().unwrap(), SdkBody::empty()),
        );
        assert!(condition_failed(&failed));
        assert!(condition_failed(&answer(
            400,
            Some("ConditionalCheckFailedException")
        )));

        assert!(!condition_failed(&answer(400, Some("ValidationException"))));
        assert!(!condition_failed(&answer(500, None)));
        let timeout: SdkError<PutItemError, HttpResponse> = SdkError::timeout_error("timed out");
        assert!(!condition_failed(&timeout));
    }

    #[test]
    fn a_number_outside_dynamodbs_range_is_refused_with_its_place() {
        let err = check_numbers("job-1", "params", &serde_json::json!({"threshold": 1e-300}))
            .unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, StoreError::Rejected(_))
                && message.contains("object job-1 cannot be stored in DynamoDB")
                && message.contains("1E-130 to 9.99E+125"),
            "{message}"
        );
        check_numbers("job-1", "params", &serde_json::json!({"threshold": 0.5})).unwrap();
    }
}
