//! The unfinished jobs, read through the sparse `active-index` (keys only,
//! spread over [`ACTIVE_BUCKETS`] partitions) and then by their keys: no
//! Scan, and a cost that follows the number of unfinished jobs.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::{
    convert::{classify, s},
    DynamoStore,
};
use crate::store::{Page, StoreError, ACTIVE, ACTIVE_BUCKETS, ACTIVE_INDEX};

impl DynamoStore {
    /// Up to `limit` ids from the index, bucket by bucket, after `start`
    /// (a token `{bucket}/{id}` from an earlier page).
    pub(super) async fn active_ids(
        &self,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        let (mut bucket, mut after) = match start.and_then(|t| t.split_once('/')) {
            Some((b, id)) => (
                b.parse::<u32>().unwrap_or(ACTIVE_BUCKETS),
                (!id.is_empty()).then(|| id.to_owned()),
            ),
            None => (0, None),
        };
        let mut ids = Vec::new();
        while bucket < ACTIVE_BUCKETS {
            let key = bucket.to_string();
            let exclusive = after.take().map(|id| {
                HashMap::from([
                    (ACTIVE.to_owned(), s(key.clone())),
                    ("object_id".to_owned(), s(id)),
                ])
            });
            let want = limit.saturating_sub(ids.len()).max(1);
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ACTIVE_INDEX)
                .key_condition_expression("#active = :bucket")
                .expression_attribute_names("#active", ACTIVE)
                .expression_attribute_values(":bucket", s(key.clone()))
                .set_exclusive_start_key(exclusive)
                .limit(i32::try_from(want).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| classify(e, "Query", &self.table))?;
            for item in out.items.unwrap_or_default() {
                if let Some(id) = item.get("object_id").and_then(|v| v.as_s().ok()) {
                    ids.push(id.clone());
                }
            }
            let last = out
                .last_evaluated_key
                .and_then(|k| k.get("object_id").and_then(|v| v.as_s().ok()).cloned());
            if ids.len() >= limit {
                // `{bucket}/` (no id) starts at the top of that bucket.
                let next = match last {
                    Some(id) => Some(format!("{bucket}/{id}")),
                    None if bucket + 1 < ACTIVE_BUCKETS => Some(format!("{}/", bucket + 1)),
                    None => None,
                };
                return Ok(Page { items: ids, next });
            }
            match last {
                Some(id) => after = Some(id),
                None => bucket += 1,
            }
        }
        Ok(Page {
            items: ids,
            next: None,
        })
    }

    /// The items with these ids (strongly consistent), at most 100 per
    /// call; keys DynamoDB leaves unprocessed are asked for again.
    pub(super) async fn get_many(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, HashMap<String, AttributeValue>)>, StoreError> {
        let mut keys: Vec<_> = ids
            .iter()
            .map(|id| HashMap::from([("object_id".to_owned(), s(id.clone()))]))
            .collect();
        let mut found = Vec::with_capacity(ids.len());
        let mut delay = std::time::Duration::from_millis(25);
        for round in 0.. {
            if keys.is_empty() {
                break;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Rejected(crate::Cause::new("BatchGetItem", e)))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| classify(e, "BatchGetItem", &self.table))?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                if let Some(id) = item.get("object_id").and_then(|v| v.as_s().ok()) {
                    found.push((id.clone(), item));
                }
            }
            keys = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if !keys.is_empty() {
                if round >= 10 {
                    return Err(StoreError::Unavailable(
                        format!(
                            "{} reads of {} stayed unprocessed (throttled)",
                            keys.len(),
                            self.table
                        )
                        .into(),
                    ));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
        }
        Ok(found)
    }
}
