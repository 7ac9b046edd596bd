//! The DynamoDB adapter: the jobs table (key `object_id`, index `owner-index`)
//! and the streams table (key `stream_id` + `seq`), laid out as DESIGN.md says.
//!
//! Jobs are stored as the proto3 JSON mapping of [`Job`] converted to
//! attribute values by `serde_dynamo`; this module is the only place that
//! knows about `AttributeValue`.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    types::{AttributeValue, PutRequest, WriteRequest},
    Client,
};
use plus_proto::{Job, StreamEvent};
use serde_json::Value;

use super::{object_to_job, Expect, JobStore, Object, Page, PutWhen, StoreError};

mod active;
mod convert;
mod writes;

use convert::{
    classify, condition_failed, event_from_item, event_to_item, from_item, page_key, s, to_item,
};

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

#[async_trait]
impl JobStore for DynamoStore {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        let item = to_item(&job.object_id, super::new_job_object(job)?)?;
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
            Err(e) if condition_failed(&e) => Err(StoreError::Conflict {
                id: job.object_id.clone(),
                reason: "an object with this id already exists".to_owned(),
            }),
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
        self.update_job_with_impl(id, expect, patch, if_absent)
            .await
    }

    async fn fail_unreadable(
        &self,
        id: &str,
        username: &str,
        lease: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        self.fail_unreadable_impl(id, username, lease, error).await
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
        // The sparse index holds only unfinished jobs: its cost follows them,
        // never the table (collection items and old jobs live there too).
        let ids = self.active_ids(start, limit).await?;
        let mut items = Vec::with_capacity(ids.items.len());
        for chunk in ids.items.chunks(100) {
            for (id, item) in self.get_many(chunk).await? {
                if let Some(job) = super::readable_job(&id, from_item(&id, item)?) {
                    // The index is eventually consistent: a job that just
                    // ended may still be in it.
                    if !crate::job::is_terminal(job.status()) && job.status != 0 {
                        items.push(job);
                    }
                }
            }
        }
        items.sort_by(|a, b| a.object_id.cmp(&b.object_id));
        Ok(Page {
            items,
            next: ids.next,
        })
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
        self.import_items_impl(owner, items).await
    }

    async fn put_object_if(&self, object: &Object, when: PutWhen) -> Result<(), StoreError> {
        let id = object
            .get("object_id")
            .and_then(Value::as_str)
            .ok_or_else(|| StoreError::Rejected("an object has no object_id".into()))?
            .to_owned();
        let (owner, object_type) = super::owner_and_type(object);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&id, object.clone())?));
        let put = match when {
            PutWhen::Absent => put.condition_expression("attribute_not_exists(object_id)"),
            PutWhen::SameOwner => put
                .condition_expression("#o = :o AND #t = :t")
                .expression_attribute_names("#o", "owner")
                .expression_attribute_names("#t", "object_type")
                .expression_attribute_values(":o", s(owner.clone()))
                .expression_attribute_values(":t", s(object_type.clone())),
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(StoreError::Conflict {
                id,
                reason: match when {
                    PutWhen::Absent => "an object with this id already exists".to_owned(),
                    _ => format!("no {object_type} of {owner} has this id"),
                },
            }),
            Err(e) => Err(classify(e, "PutItem", &self.table)),
        }
    }

    async fn delete_object(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("object_id", s(id))
            .condition_expression("#o = :o")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":o", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(StoreError::Conflict {
                id: id.to_owned(),
                reason: format!("no object of {owner} has this id"),
            }),
            Err(e) => Err(classify(e, "DeleteItem", &self.table)),
        }
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

    async fn query_owner_until(
        &self,
        owner: &str,
        start: Option<&str>,
        until: &str,
        limit: usize,
    ) -> Result<Page<Object>, StoreError> {
        if start.is_some_and(|s| s >= until) {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        // One sort-key condition bounds both ends (an ExclusiveStartKey
        // outside the condition is refused), so a page starts at `start`
        // itself, which is dropped: one extra item per page at most.
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OWNER_INDEX)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", s(until))
            .limit(limit.clamp(1, 1000) as i32);
        query = match start {
            Some(start) => query
                .key_condition_expression("#owner = :owner AND object_id BETWEEN :start AND :until")
                .expression_attribute_values(":start", s(start)),
            None => query.key_condition_expression("#owner = :owner AND object_id <= :until"),
        };
        let out = query
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
            if Some(id.as_str()) == start {
                continue;
            }
            items.push(from_item(&id, item)?);
        }
        let next = out
            .last_evaluated_key
            .and_then(|k| k.get("object_id").and_then(|v| v.as_s().ok()).cloned());
        Ok(Page { items, next })
    }

    async fn owner_id_bounds(&self, owner: &str) -> Result<Option<(String, String)>, StoreError> {
        let end = |forward: bool| async move {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(OWNER_INDEX)
                .key_condition_expression("#owner = :owner")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":owner", s(owner))
                .projection_expression("object_id")
                .scan_index_forward(forward)
                .limit(1)
                .send()
                .await
                .map_err(|e| classify(e, "Query", &self.table))?;
            Ok::<_, StoreError>(
                out.items
                    .unwrap_or_default()
                    .into_iter()
                    .next()
                    .and_then(|i| i.get("object_id").and_then(|v| v.as_s().ok()).cloned()),
            )
        };
        Ok(end(true).await?.zip(end(false).await?))
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
