//! Collections and actions as data in the jobs table: importing a
//! collection's items from JSON lines, listing them, and storing and reading
//! actions. The CLI's `plus collection ...` and `plus action ...` are thin
//! over it.

use std::io::BufRead;

use plus_jobs::{
    contract::OwnerPath,
    job::{ACTION_OBJECT_TYPE, SYSTEM_OBJECT_TYPES},
    store::Object,
    Action, JobStore, Script, StoreError, Timestamp,
};
use serde_json::{Map, Value};

use super::{
    request::{action_not_found, users_owner_path},
    InvalidRequest, Launcher,
};

/// Items written per `put_objects` call (DynamoDB's adapter splits it into
/// BatchWriteItem calls of 25).
pub const IMPORT_BATCH: usize = 500;
/// The longest item line accepted (DynamoDB allows 400 KB per item).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// Why a collection or action operation failed, each a sentence that says
/// what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A bad argument; nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// A bad input line; the lines before it were written.
    #[error("line {number} is not a valid item: {why}. {}{}; fix the line and import again (importing is idempotent by item id)", imported_note(*.imported), refused_note(.refused))]
    BadLine {
        /// The line's number, from 1.
        number: usize,
        /// Items imported before it.
        imported: u64,
        /// Items before it that were refused (see [`ImportReport::refused`]).
        refused: Vec<RefusedItem>,
        /// What is wrong with it.
        #[source]
        why: BadItem,
    },
    /// A line could not be read.
    #[error("line {number} cannot be read: {source} (is the file UTF-8 JSON lines?)")]
    Read {
        /// The line's number, from 1.
        number: usize,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Nothing with that id exists.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The refused items before a bad line, for its message.
/// "The 2 items before it were imported" (one item, no items alike).
fn imported_note(imported: u64) -> String {
    match imported {
        0 => "No item before it was imported".to_owned(),
        1 => "The 1 item before it was imported".to_owned(),
        n => format!("The {n} items before it were imported"),
    }
}

fn refused_note(refused: &[RefusedItem]) -> String {
    if refused.is_empty() {
        return String::new();
    }
    let each: Vec<String> = refused
        .iter()
        .map(|r| format!("line {} ({})", r.line, r.id))
        .collect();
    format!(
        " and {} refused because their ids belong to other objects: {}",
        refused.len(),
        each.join(", ")
    )
}

/// Why one input line is not an item.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BadItem {
    /// Over DynamoDB's item limit.
    #[error("it is {bytes} bytes; an item is at most {max} KB (DynamoDB's item limit): store large data in S3 and put its key in the item", max = MAX_ITEM_BYTES / 1024)]
    TooLarge {
        /// The line's length.
        bytes: usize,
    },
    /// Not JSON.
    #[error("it is not JSON ({0})")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not an object.
    #[error("it is JSON but not an object: each line must be one {{...}} object")]
    NotObject,
    /// An id of the wrong kind.
    #[error("its object_id (or id) must be a non-empty string")]
    BadId,
    /// No id.
    #[error("it has no object_id (or id): every item needs a unique id")]
    NoId,
    /// An `object_type` reserved for the system's own objects.
    #[error("its object_type is {0:?}, which is reserved for jobs, actions and schedules: rename or drop the attribute")]
    Reserved(String),
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Items written (an item of the same collection with the same id is
    /// replaced).
    pub imported: u64,
    /// Blank lines skipped.
    pub skipped: u64,
    /// Items not written because their id belongs to another object (a
    /// job, an action, a schedule, another collection's item): nothing
    /// was written for them.
    pub refused: Vec<RefusedItem>,
}

/// One item an import refused.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RefusedItem {
    /// The input line, from 1.
    pub line: usize,
    /// The item's id.
    pub id: String,
}

/// Checks that `owner` is an owner path of `username`'s: another user's
/// path reads as a missing collection.
///
/// # Errors
/// [`DataError::Invalid`] for a malformed path, [`DataError::NotFound`] for
/// another user's.
pub fn own_owner(owner: &str, username: &str) -> Result<OwnerPath, DataError> {
    users_owner_path(owner, username).map_err(|e| match e {
        InvalidRequest::NotFound(why) => DataError::NotFound(why),
        other => DataError::Invalid(other.to_string()),
    })
}

/// Imports JSON lines from `input` as items of `username`'s collection
/// `owner`, in batches. Each line is one JSON object with its id in
/// `object_id` (or `id`); `owner` is set to `owner`. Importing the same file
/// again replaces the same items: nothing is duplicated. An item whose id
/// belongs to another object (a job, an action, another collection's item)
/// is refused by a conditional write and listed in the report with its
/// line; nothing else is written for it. Stops at the first bad line (its
/// number says where); the lines before it are imported, so fixing the file
/// and importing again is safe.
///
/// # Errors
/// [`DataError::NotFound`] for another user's collection,
/// [`DataError::BadLine`] for a bad line, store errors.
pub async fn import(
    jobs: &dyn JobStore,
    username: &str,
    owner: &str,
    input: impl BufRead,
) -> Result<ImportReport, DataError> {
    let owner = own_owner(owner, username)?;
    let owner = owner.as_str();
    let mut report = ImportReport::default();
    let mut batch: Vec<Object> = Vec::with_capacity(IMPORT_BATCH);
    // Each id in the batch and the line it came from.
    let mut seen_in_batch = std::collections::HashMap::new();
    for (n, line) in input.lines().enumerate() {
        let number = n + 1;
        let line = line.map_err(|source| DataError::Read { number, source })?;
        if line.trim().is_empty() {
            report.skipped += 1;
            continue;
        }
        let parsed = if line.len() > MAX_ITEM_BYTES {
            Err(BadItem::TooLarge { bytes: line.len() })
        } else {
            item_from_line(&line, owner)
        };
        let item = match parsed {
            Ok(item) => item,
            Err(why) => {
                write_batch(jobs, owner, &batch, &seen_in_batch, &mut report).await?;
                return Err(DataError::BadLine {
                    number,
                    imported: report.imported,
                    refused: report.refused,
                    why,
                });
            }
        };
        let id = item["object_id"].as_str().unwrap_or_default().to_owned();
        if seen_in_batch.insert(id.clone(), number).is_some() {
            // The same id twice in one batch: the later line wins, as it
            // would across batches.
            batch.retain(|o| o["object_id"] != id.as_str());
            report.imported -= 1;
        }
        batch.push(item);
        report.imported += 1;
        if batch.len() >= IMPORT_BATCH {
            write_batch(jobs, owner, &batch, &seen_in_batch, &mut report).await?;
            batch.clear();
            seen_in_batch.clear();
        }
    }
    write_batch(jobs, owner, &batch, &seen_in_batch, &mut report).await?;
    Ok(report)
}

/// Writes `batch` by conditional writes and moves the ids the store refused
/// from `imported` to `refused`, with their lines (`lines`: id -> line).
async fn write_batch(
    jobs: &dyn JobStore,
    owner: &str,
    batch: &[Object],
    lines: &std::collections::HashMap<String, usize>,
    report: &mut ImportReport,
) -> Result<(), DataError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut refused: Vec<RefusedItem> = jobs
        .import_items(owner, batch)
        .await?
        .into_iter()
        .map(|id| RefusedItem {
            line: lines.get(&id).copied().unwrap_or_default(),
            id,
        })
        .collect();
    refused.sort_by_key(|r| r.line);
    report.imported -= refused.len() as u64;
    report.refused.extend(refused);
    Ok(())
}

/// One input line as a stored item of `owner`.
///
/// # Errors
/// Why the line is not an item.
pub fn item_from_line(line: &str, owner: &str) -> Result<Object, BadItem> {
    let value: Value = serde_json::from_str(line).map_err(BadItem::NotJson)?;
    let Value::Object(mut item) = value else {
        return Err(BadItem::NotObject);
    };
    let id = match item.get("object_id").or_else(|| item.get("id")) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(BadItem::BadId),
        None => return Err(BadItem::NoId),
    };
    if let Some(t) = item.get("object_type").and_then(Value::as_str) {
        if SYSTEM_OBJECT_TYPES.contains(&t) {
            return Err(BadItem::Reserved(t.to_owned()));
        }
    }
    item.insert("object_id".into(), Value::String(id));
    item.insert("owner".into(), Value::String(owner.to_owned()));
    Ok(item)
}

/// The items of `username`'s collection `owner` after `start` (ascending
/// id), at most `limit`, and where the next page starts.
///
/// # Errors
/// [`DataError::NotFound`] for another user's collection, store errors.
pub async fn list(
    jobs: &dyn JobStore,
    username: &str,
    owner: &str,
    start: Option<&str>,
    limit: usize,
) -> Result<plus_jobs::Page<Object>, DataError> {
    own_owner(owner, username)?;
    Ok(jobs.query_owner(owner, start, limit.clamp(1, 1000)).await?)
}

pub use plus_jobs::job::actions_owner;

/// Stores (or replaces) action `id` with `script`, default `params` and
/// `secrets` (references only, checked like a launch's).
///
/// # Errors
/// [`DataError::Invalid`] when the id is bad, the script empty, a secret
/// refused, or the id names something that is not an action.
pub async fn put_action(
    jobs: &dyn JobStore,
    username: &str,
    id: &str,
    script: Script,
    params: Map<String, Value>,
    secrets: std::collections::HashMap<String, String>,
) -> Result<Action, DataError> {
    plus_jobs::JobId::parse(id)
        .map_err(|e| DataError::Invalid(format!("the action id {id:?} is not valid: {e}")))?;
    if script.source.trim().is_empty() && script.s3_key.is_empty() {
        return Err(DataError::Invalid(
            "the action's script is empty: there would be nothing to run".into(),
        ));
    }
    crate::ops::request::check_secrets(&secrets, username)
        .map_err(|e| DataError::Invalid(e.to_string()))?;
    let now = Timestamp::now().to_string();
    let mut created_at = now.clone();
    if let Some(existing) = jobs.get_object(id).await? {
        let t = existing
            .get("object_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let owner = existing.get("owner").and_then(Value::as_str).unwrap_or("");
        let users = OwnerPath::parse(owner).is_ok_and(|o| o.belongs_to(username));
        if !users {
            // Another user's object is never replaced, nor described.
            return Err(DataError::Invalid(format!(
                "the action id {id} is taken: choose another action id"
            )));
        }
        if t != ACTION_OBJECT_TYPE {
            return Err(DataError::Invalid(format!(
                "object {id} already exists and is {}, not an Action: choose another action id",
                if t.is_empty() {
                    "a collection item".to_owned()
                } else {
                    format!("a {t}")
                }
            )));
        }
        if let Some(c) = existing.get("created_at").and_then(Value::as_str) {
            created_at = c.to_owned();
        }
    }
    let action = Action {
        object_id: id.to_owned(),
        object_type: ACTION_OBJECT_TYPE.to_owned(),
        owner: actions_owner(username),
        script: Some(script),
        params: plus_jobs::params::params_struct(&params).map_err(DataError::Invalid)?,
        created_at,
        updated_at: now,
        retry: Vec::new(),
        secrets,
    };
    let Ok(Value::Object(object)) = serde_json::to_value(&action) else {
        return Err(DataError::Invalid("the action cannot be serialized".into()));
    };
    jobs.put_objects(&[object]).await?;
    Ok(action)
}

/// Reads `username`'s action `id`: an action is usable only if its owner is
/// `{username}/actions`.
///
/// # Errors
/// [`DataError::NotFound`], the same sentence, when there is none, it is
/// another user's, or the id names something that is not an action.
pub async fn get_action(
    jobs: &dyn JobStore,
    username: &str,
    id: &str,
) -> Result<Action, DataError> {
    let not_found = || DataError::NotFound(action_not_found(id, username));
    let object = jobs.get_object(id).await?.ok_or_else(not_found)?;
    let mine = object.get("owner").and_then(Value::as_str) == Some(&actions_owner(username));
    if !mine {
        return Err(not_found());
    }
    plus_jobs::job::action_from_object(id, object).map_err(|_| not_found())
}

impl Launcher {
    /// [`import`] into this launcher's store.
    ///
    /// # Errors
    /// As [`import`].
    pub async fn import_items(
        &self,
        username: &str,
        owner: &str,
        input: impl BufRead,
    ) -> Result<ImportReport, DataError> {
        import(self.jobs().as_ref(), username, owner, input).await
    }

    /// [`list`] from this launcher's store.
    ///
    /// # Errors
    /// As [`list`].
    pub async fn list_items(
        &self,
        username: &str,
        owner: &str,
        start: Option<&str>,
        limit: usize,
    ) -> Result<plus_jobs::Page<Object>, DataError> {
        list(self.jobs().as_ref(), username, owner, start, limit).await
    }

    /// [`put_action`] into this launcher's store.
    ///
    /// # Errors
    /// As [`put_action`].
    pub async fn put_action(
        &self,
        username: &str,
        id: &str,
        script: Script,
        params: Map<String, Value>,
        secrets: std::collections::HashMap<String, String>,
    ) -> Result<Action, DataError> {
        put_action(self.jobs().as_ref(), username, id, script, params, secrets).await
    }

    /// [`get_action`] from this launcher's store.
    ///
    /// # Errors
    /// As [`get_action`].
    pub async fn get_action(&self, username: &str, id: &str) -> Result<Action, DataError> {
        get_action(self.jobs().as_ref(), username, id).await
    }
}

#[cfg(test)]
mod tests;
