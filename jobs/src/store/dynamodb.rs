//! The DynamoDB adapter: the jobs table (key `object_id`, index `owner-index`)
//! and the streams table (key `stream_id` + `seq`), laid out as DESIGN.md says.
//!
//! Jobs are stored as the proto3 JSON mapping of [`Job`] converted to
//! attribute values by `serde_dynamo`; this module is the only place that
//! knows about `AttributeValue`.

use aws_sdk_dynamodb::config::http::HttpResponse;
use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    error::{ProvideErrorMetadata, SdkError},
    types::{
        AttributeValue, PutRequest, ReturnValue, ReturnValuesOnConditionCheckFailure, WriteRequest,
    },
    Client,
};
use plus_proto::{Job, StreamEvent};
use serde_json::Value;

use super::{
    job_to_object, object_to_job, patch_attributes, Expect, JobStore, Object, Page, StoreError,
};
use crate::job::{run_mode_name, status_name};

/// The name of the jobs table's owner index.
pub const OWNER_INDEX: &str = "owner-index";
/// DynamoDB's limit on items in one BatchWriteItem.
const BATCH_LIMIT: usize = 25;
/// Conditional item writes an import keeps in flight.
const IMPORT_IN_FLIGHT: usize = 16;

/// The DynamoDB adapter of [`JobStore`].
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    streams_table: String,
}

impl DynamoStore {
    /// A store over `table` (jobs) and `streams_table` (events).
    pub fn new(client: Client, table: impl Into<String>, streams_table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            streams_table: streams_table.into(),
        }
    }

    /// One page of `owner-index` for `owner`, in `object_id` order
    /// (ascending when `forward`).
    async fn owner_page(
        &self,
        owner: &str,
        start: Option<&str>,
        limit: usize,
        forward: bool,
    ) -> Result<Page<Object>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OWNER_INDEX)
            .key_condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .scan_index_forward(forward)
            .limit(limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(start.map(|id| page_key(owner, id)))
            .send()
            .await
            .map_err(|e| classify(e, "Query", &self.table))?;
        let mut items = Vec::new();
        for item in out.items.unwrap_or_default() {
            let id = item
                .get("object_id")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            items.push(from_item(&id, item)?);
        }
        let next = out
            .last_evaluated_key
            .and_then(|k| k.get("object_id").and_then(|v| v.as_s().ok()).cloned());
        Ok(Page { items, next })
    }

    async fn batch_write(
        &self,
        table: &str,
        items: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<(), StoreError> {
        for chunk in items.chunks(BATCH_LIMIT) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    let put = PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .expect("item is set");
                    WriteRequest::builder().put_request(put).build()
                })
                .collect();
            // DynamoDB may accept part of a batch; the rest comes back as
            // UnprocessedItems and is retried with backoff, never dropped.
            let mut delay = Duration::from_millis(25);
            for round in 0.. {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(table, requests)
                    .send()
                    .await
                    .map_err(|e| classify(e, "BatchWriteItem", table))?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(table))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if round >= 10 {
                    return Err(StoreError::Unavailable(
                        format!(
                        "{} writes to {table} stayed unprocessed after {round} retries (throttled)",
                        requests.len()
                    )
                        .into(),
                    ));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
        Ok(())
    }
}

/// Turns an SDK error into a [`StoreError`] that says what to do; the
/// SDK's error is kept as the cause.
fn classify<E>(err: SdkError<E, HttpResponse>, op: &str, table: &str) -> StoreError
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

/// Refuses, as DynamoDB itself would (the emulator does not), a number
/// outside DynamoDB's range, naming where it is.
fn check_numbers(id: &str, name: &str, value: &Value) -> Result<(), StoreError> {
    match crate::params::dynamodb_number_problem(value, name) {
        None => Ok(()),
        Some(bad) => Err(StoreError::Rejected(format!(
            "object {id} cannot be stored in DynamoDB: {bad} is outside the numbers DynamoDB keeps (1E-130 to 9.99E+125)"
        ).into())),
    }
}

fn to_item(id: &str, object: Object) -> Result<HashMap<String, AttributeValue>, StoreError> {
    for (name, value) in &object {
        check_numbers(id, name, value)?;
    }
    serde_dynamo::to_item(Value::Object(object)).map_err(|e| {
        StoreError::Rejected(format!("object {id} cannot be stored in DynamoDB: {e}").into())
    })
}

fn from_item(id: &str, item: HashMap<String, AttributeValue>) -> Result<Object, StoreError> {
    match serde_dynamo::from_item::<_, Value>(item) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => unreachable!("an item is a map"),
        Err(e) => Err(StoreError::Malformed {
            id: id.to_owned(),
            reason: format!("its attributes cannot be read ({e})"),
        }),
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn event_to_item(e: &StreamEvent) -> HashMap<String, AttributeValue> {
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

fn event_from_item(item: &HashMap<String, AttributeValue>) -> Result<StreamEvent, StoreError> {
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

fn page_key(owner: &str, id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("owner".to_owned(), s(owner)),
        ("object_id".to_owned(), s(id)),
    ])
}

#[async_trait]
impl JobStore for DynamoStore {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        let item = to_item(&job.object_id, job_to_object(job)?)?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(object_id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict {
                    id: job.object_id.clone(),
                    reason: "an object with this id already exists".to_owned(),
                })
            }
            Err(e) => Err(classify(e, "PutItem", &self.table)),
        }
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        self.get_object(id)
            .await?
            .map(|o| object_to_job(id, o))
            .transpose()
    }

    async fn update_job_with(
        &self,
        id: &str,
        expect: &Expect,
        patch: &Job,
        if_absent: &Job,
    ) -> Result<Job, StoreError> {
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut sets = Vec::new();
        // `#aN = :aN` replaces; `#bN = if_not_exists(#bN, :bN)` only fills in.
        let set = patch_attributes(patch)?;
        let mut absent = patch_attributes(if_absent)?;
        // The patch wins where both name an attribute (DynamoDB refuses
        // overlapping paths; SQLite lets the patch win too).
        absent.retain(|k, _| !set.contains_key(k));
        let replace = set.into_iter().map(|kv| ("a", kv));
        let fill = absent.into_iter().map(|kv| ("b", kv));
        for (i, (kind, (name, value))) in replace.chain(fill).enumerate() {
            check_numbers(id, &name, &value)?;
            let v = serde_dynamo::to_attribute_value(value).map_err(|e| {
                StoreError::Rejected(
                    format!("attribute {name} of job {id} cannot be stored: {e}").into(),
                )
            })?;
            let (n, val) = (format!("#{kind}{i}"), format!(":{kind}{i}"));
            sets.push(match kind {
                "a" => format!("{n} = {val}"),
                _ => format!("{n} = if_not_exists({n}, {val})"),
            });
            names.insert(n, name);
            values.insert(val, v);
        }
        let mut conditions = vec!["attribute_exists(object_id)".to_owned()];
        let equal = [
            ("username", expect.username.clone()),
            (
                "run_mode",
                expect.run_mode.map(|m| run_mode_name(m).to_owned()),
            ),
            ("lease", expect.lease.clone()),
        ];
        for (attribute, wanted) in equal {
            if let Some(wanted) = wanted {
                names.insert(format!("#{attribute}"), attribute.to_owned());
                values.insert(format!(":{attribute}"), s(wanted));
                conditions.push(format!("#{attribute} = :{attribute}"));
            }
        }
        if expect.username.is_some() {
            // A worker's claim: only a job record, never another kind.
            names.insert("#object_type".to_owned(), "object_type".to_owned());
            values.insert(":object_type".to_owned(), s(crate::job::JOB_OBJECT_TYPE));
            conditions.push("#object_type = :object_type".to_owned());
        }
        let origin = [
            ("collection_owner", expect.collection_owner.clone()),
            ("action_id", expect.action_id.clone()),
        ];
        for (attribute, wanted) in origin {
            if let Some(wanted) = wanted {
                names.insert(format!("#{attribute}"), attribute.to_owned());
                values.insert(format!(":{attribute}"), s(wanted));
                conditions.push(format!(
                    "(attribute_not_exists(#{attribute}) OR #{attribute} = :{attribute})"
                ));
            }
        }
        if let Some(prefix) = &expect.script_key_prefix {
            names.insert("#script".to_owned(), "script".to_owned());
            names.insert("#s3_key".to_owned(), "s3_key".to_owned());
            values.insert(":script_prefix".to_owned(), s(prefix.clone()));
            conditions.push(
                "(attribute_not_exists(#script.#s3_key) OR begins_with(#script.#s3_key, :script_prefix))"
                    .to_owned(),
            );
        }
        if !expect.statuses.is_empty() {
            names.insert("#status".to_owned(), "status".to_owned());
            let mut alternatives = Vec::new();
            for (i, status) in expect.statuses.iter().enumerate() {
                alternatives.push(format!(":s{i}"));
                values.insert(format!(":s{i}"), s(status_name(*status)));
            }
            conditions.push(format!("#status IN ({})", alternatives.join(", ")));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("object_id", s(id))
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(conditions.join(" AND "))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => object_to_job(id, from_item(id, out.attributes.unwrap_or_default())?),
            Err(e) => match e.as_service_error() {
                Some(service) if service.is_conditional_check_failed_exception() => {
                    let found = match &service {
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => c
                            .item
                            .clone()
                            .and_then(|item| from_item(id, item).ok())
                            .and_then(|o| object_to_job(id, o).ok()),
                        _ => None,
                    };
                    let found = match found {
                        Some(job) => Some(job),
                        // Older emulators do not return the item; read it.
                        None => self.get_job(id).await.ok().flatten(),
                    };
                    match found {
                        // The record reads as meeting the condition, yet
                        // DynamoDB refused it: an attribute the condition
                        // compares is stored with another type (a status
                        // written as a number).
                        Some(job) if expect.holds_for(&job) => Err(StoreError::Malformed {
                            id: id.to_owned(),
                            reason: "its status, username, run_mode or lease is not stored as a string: write them as DESIGN.md's Records section types them".to_owned(),
                        }),
                        found => Err(StoreError::Conflict {
                            id: id.to_owned(),
                            reason: expect.conflict_reason(found.as_ref()),
                        }),
                    }
                }
                _ => Err(classify(e, "UpdateItem", &self.table)),
            },
        }
    }

    async fn fail_unreadable(
        &self,
        id: &str,
        username: &str,
        lease: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        let now = crate::Timestamp::now().to_string();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("object_id", s(id))
            .update_expression(
                "SET #status = :failed, #error = :error, completed_at = :now, updated_at = :now",
            )
            .condition_expression(
                "object_type = :type AND #username = :username AND (#status = :init OR (#status = :running AND #lease = :lease))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_names("#username", "username")
            .expression_attribute_names("#lease", "lease")
            .expression_attribute_values(":failed", s("FAILED"))
            .expression_attribute_values(":error", s(error))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":type", s(crate::job::JOB_OBJECT_TYPE))
            .expression_attribute_values(":username", s(username))
            .expression_attribute_values(":init", s("INITIALIZING"))
            .expression_attribute_values(":running", s("RUNNING"))
            .expression_attribute_values(":lease", s(lease))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict {
                    id: id.to_owned(),
                    reason: format!(
                        "expected an INITIALIZING job of user {username}, or a RUNNING one held by {lease}"
                    ),
                })
            }
            Err(e) => Err(classify(e, "UpdateItem", &self.table)),
        }
    }

    async fn list_jobs(
        &self,
        owner: &str,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Page<Job>, StoreError> {
        let page = self.owner_page(owner, start, limit, false).await?;
        let items = page
            .items
            .into_iter()
            .map(|o| {
                let id = o
                    .get("object_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                object_to_job(&id, o)
            })
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next: page.next,
        })
    }

    async fn list_active(
        &self,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Page<Job>, StoreError> {
        // A Scan's Limit counts items read before the filter, so keep
        // reading pages until `limit` matches or the table ends.
        let mut items = Vec::new();
        let mut key = start.map(|id| HashMap::from([("object_id".to_owned(), s(id))]));
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("object_type = :t AND #status IN (:a, :b, :c)")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":t", s(crate::job::JOB_OBJECT_TYPE))
                .expression_attribute_values(":a", s("INITIALIZING"))
                .expression_attribute_values(":b", s("RUNNING"))
                .expression_attribute_values(":c", s("INTERRUPTED"))
                .consistent_read(true)
                .limit(1000)
                .set_exclusive_start_key(key.take())
                .send()
                .await
                .map_err(|e| classify(e, "Scan", &self.table))?;
            for item in out.items.unwrap_or_default() {
                let id = item
                    .get("object_id")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                items.extend(super::readable_job(&id, from_item(&id, item)?));
            }
            key = out.last_evaluated_key;
            if key.is_none() || items.len() >= limit {
                break;
            }
        }
        let next = key.and_then(|k| k.get("object_id").and_then(|v| v.as_s().ok()).cloned());
        Ok(Page { items, next })
    }

    async fn put_objects(&self, objects: &[Object]) -> Result<(), StoreError> {
        let mut items = Vec::with_capacity(objects.len());
        for object in objects {
            let id = object
                .get("object_id")
                .and_then(Value::as_str)
                .ok_or_else(|| StoreError::Rejected("an object has no object_id".into()))?;
            items.push(to_item(id, object.clone())?);
        }
        self.batch_write(&self.table, items).await
    }

    async fn import_items(&self, owner: &str, items: &[Object]) -> Result<Vec<String>, StoreError> {
        // One conditional PutItem per item (BatchWriteItem takes no
        // condition), IMPORT_IN_FLIGHT at a time.
        let mut refused = Vec::new();
        for chunk in items.chunks(IMPORT_IN_FLIGHT) {
            let mut puts = tokio::task::JoinSet::new();
            for item in chunk {
                let id = item
                    .get("object_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| StoreError::Rejected("an item has no object_id".into()))?
                    .to_owned();
                let request = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(to_item(&id, item.clone())?))
                    .condition_expression(
                        "attribute_not_exists(object_id) OR (#owner = :owner AND (attribute_not_exists(object_type) OR NOT (object_type IN (:t0, :t1, :t2))))",
                    )
                    .expression_attribute_names("#owner", "owner")
                    .expression_attribute_values(":owner", s(owner))
                    .expression_attribute_values(":t0", s(crate::job::SYSTEM_OBJECT_TYPES[0]))
                    .expression_attribute_values(":t1", s(crate::job::SYSTEM_OBJECT_TYPES[1]))
                    .expression_attribute_values(":t2", s(crate::job::SYSTEM_OBJECT_TYPES[2]));
                puts.spawn(async move { (id, request.send().await) });
            }
            while let Some(done) = puts.join_next().await {
                let (id, result) = done.map_err(|e| {
                    StoreError::Unavailable(format!("an import write was lost: {e}").into())
                })?;
                match result {
                    Ok(_) => {}
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                    {
                        refused.push(id)
                    }
                    Err(e) => return Err(classify(e, "PutItem", &self.table)),
                }
            }
        }
        Ok(refused)
    }

    async fn get_object(&self, id: &str) -> Result<Option<Object>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("object_id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(e, "GetItem", &self.table))?;
        out.item.map(|item| from_item(id, item)).transpose()
    }

    async fn query_owner(
        &self,
        owner: &str,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Page<Object>, StoreError> {
        self.owner_page(owner, start, limit, true).await
    }

    async fn append_events(&self, events: &[StreamEvent]) -> Result<(), StoreError> {
        let items = events.iter().map(event_to_item).collect();
        self.batch_write(&self.streams_table, items).await
    }

    async fn events_after(
        &self,
        stream_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.streams_table)
            .key_condition_expression("stream_id = :id AND seq > :after")
            .expression_attribute_values(":id", s(stream_id))
            .expression_attribute_values(":after", AttributeValue::N(after.to_string()))
            .consistent_read(true)
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(|e| classify(e, "Query", &self.streams_table))?;
        out.items
            .unwrap_or_default()
            .iter()
            .map(event_from_item)
            .collect()
    }
}
