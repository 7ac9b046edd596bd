//! The conditional writes: a transition (`update_job_with`), ending an
//! unreadable record, and an import that never replaces another owner's
//! object, each one condition expression DynamoDB checks atomically.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use plus_proto::Job;
use serde_json::Value;

use super::{
    convert::{check_numbers, classify, condition_failed, from_item, s, to_item},
    DynamoStore, IMPORT_IN_FLIGHT,
};
use crate::{
    job::{run_mode_name, status_name},
    store::{object_to_job, patch_attributes, Expect, JobStore, Object, StoreError},
};

impl DynamoStore {
    pub(super) async fn update_job_with_impl(
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
        let patched: Vec<String> = set.keys().cloned().collect();
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
        // `active` follows the status: set while not terminal (also on a
        // claim of a record an engine wrote), removed by the write that ends
        // the job.
        let mut expression = format!("SET {}", sets.join(", "));
        let mut removes = Vec::new();
        match crate::store::active_after(patch.status) {
            Some(true) => {
                names.insert("#active".to_owned(), crate::store::ACTIVE.to_owned());
                values.insert(":active".to_owned(), s(crate::store::active_bucket(id)));
                expression.push_str(", #active = :active");
            }
            Some(false) => {
                names.insert("#active".to_owned(), crate::store::ACTIVE.to_owned());
                removes.push("#active".to_owned());
            }
            None => {}
        }
        for (i, name) in crate::store::cleared_by(patch.status).iter().enumerate() {
            if !patched.iter().any(|p| p == name) {
                names.insert(format!("#c{i}"), (*name).to_owned());
                removes.push(format!("#c{i}"));
            }
        }
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("object_id", s(id))
            .update_expression(expression)
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

    pub(super) async fn fail_unreadable_impl(
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
                "SET #status = :failed, #error = :error, completed_at = :now, updated_at = :now REMOVE #active",
            )
            .condition_expression(
                "object_type = :type AND #username = :username AND (#status = :init OR (#status = :running AND #lease = :lease))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_names("#username", "username")
            .expression_attribute_names("#lease", "lease")
            .expression_attribute_names("#active", crate::store::ACTIVE)
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
            Err(e) if condition_failed(&e) => {
                Err(crate::store::unreadable_conflict(id, username, lease))
            }
            Err(e) => Err(classify(e, "UpdateItem", &self.table)),
        }
    }

    pub(super) async fn import_items_impl(
        &self,
        owner: &str,
        items: &[Object],
    ) -> Result<Vec<String>, StoreError> {
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
                    Err(e) if condition_failed(&e) => refused.push(id),
                    Err(e) => return Err(classify(e, "PutItem", &self.table)),
                }
            }
        }
        Ok(refused)
    }
}
