//! Collections and actions as data in the jobs table: importing a
//! collection's items from JSON lines, listing them, and storing and reading
//! actions. The CLI's `plus collection ...` and `plus action ...` are thin
//! over it.

use std::io::BufRead;

use plus_jobs::{
    job::{ACTION_OBJECT_TYPE, JOB_OBJECT_TYPE},
    store::Object,
    Action, JobStore, Script, StoreError, Timestamp,
};
use serde_json::{Map, Value};

use super::Launcher;

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
    #[error("line {number} is not a valid item: {why}. The {imported} items before it were imported; fix the line and import again (importing is idempotent by item id)")]
    BadLine {
        /// The line's number, from 1.
        number: usize,
        /// Items imported before it.
        imported: u64,
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
    /// An `object_type` reserved for jobs and actions.
    #[error("its object_type is {0:?}, which is reserved for jobs and actions: rename or drop the attribute")]
    Reserved(String),
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Items written (an item already there with the same id is replaced).
    pub imported: u64,
    /// Blank lines skipped.
    pub skipped: u64,
}

/// Checks an owner path: `{user}/collections/{name}` style, at least two
/// segments, no empty segment.
///
/// # Errors
/// [`DataError::Invalid`] naming the rule.
pub fn check_owner(owner: &str) -> Result<(), DataError> {
    if owner.split('/').count() < 2 || owner.split('/').any(str::is_empty) {
        return Err(DataError::Invalid(format!(
            "the collection owner {owner:?} is not an owner path: expected something like alice/collections/photos"
        )));
    }
    Ok(())
}

/// Imports JSON lines from `input` as items of `owner`, in batches. Each
/// line is one JSON object with its id in `object_id` (or `id`); `owner`
/// is set to `owner`. Importing the same file again replaces the same
/// items: nothing is duplicated. Stops at the first bad line (its number
/// says where); the lines before it are imported, so fixing the file and
/// importing again is safe.
///
/// # Errors
/// [`DataError::Invalid`] for a bad line, store errors.
pub async fn import(
    jobs: &dyn JobStore,
    owner: &str,
    input: impl BufRead,
) -> Result<ImportReport, DataError> {
    check_owner(owner)?;
    let mut report = ImportReport::default();
    let mut batch: Vec<Object> = Vec::with_capacity(IMPORT_BATCH);
    let mut seen_in_batch = std::collections::HashSet::new();
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
                if !batch.is_empty() {
                    jobs.put_objects(&batch).await?;
                }
                return Err(DataError::BadLine {
                    number,
                    imported: report.imported,
                    why,
                });
            }
        };
        let id = item["object_id"].as_str().unwrap_or_default().to_owned();
        if !seen_in_batch.insert(id.clone()) {
            // The same id twice in one batch: the later line wins, as it
            // would across batches.
            batch.retain(|o| o["object_id"] != id.as_str());
            report.imported -= 1;
        }
        batch.push(item);
        report.imported += 1;
        if batch.len() >= IMPORT_BATCH {
            jobs.put_objects(&batch).await?;
            batch.clear();
            seen_in_batch.clear();
        }
    }
    if !batch.is_empty() {
        jobs.put_objects(&batch).await?;
    }
    Ok(report)
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
        if t == JOB_OBJECT_TYPE || t == ACTION_OBJECT_TYPE {
            return Err(BadItem::Reserved(t.to_owned()));
        }
    }
    item.insert("object_id".into(), Value::String(id));
    item.insert("owner".into(), Value::String(owner.to_owned()));
    Ok(item)
}

/// The items of `owner` after `start` (ascending id), at most `limit`, and
/// where the next page starts.
///
/// # Errors
/// Store errors.
pub async fn list(
    jobs: &dyn JobStore,
    owner: &str,
    start: Option<&str>,
    limit: usize,
) -> Result<plus_jobs::Page<Object>, DataError> {
    check_owner(owner)?;
    Ok(jobs.query_owner(owner, start, limit.clamp(1, 1000)).await?)
}

/// `{username}/actions`: a user's actions list through `owner-index`.
pub fn actions_owner(username: &str) -> String {
    format!("{username}/actions")
}

/// Stores (or replaces) action `id` with `script` and default `params`.
///
/// # Errors
/// [`DataError::Invalid`] when the id is bad, the script empty, or the id
/// names something that is not an action.
pub async fn put_action(
    jobs: &dyn JobStore,
    username: &str,
    id: &str,
    script: Script,
    params: Map<String, Value>,
) -> Result<Action, DataError> {
    plus_jobs::JobId::parse(id)
        .map_err(|e| DataError::Invalid(format!("the action id {id:?} is not valid: {e}")))?;
    if script.source.trim().is_empty() && script.s3_key.is_empty() {
        return Err(DataError::Invalid(
            "the action's script is empty: there would be nothing to run".into(),
        ));
    }
    let now = Timestamp::now().to_string();
    let mut created_at = now.clone();
    if let Some(existing) = jobs.get_object(id).await? {
        let t = existing
            .get("object_type")
            .and_then(Value::as_str)
            .unwrap_or("");
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
        params: plus_jobs::job::params_struct(&params).map_err(DataError::Invalid)?,
        created_at,
        updated_at: now,
    };
    let Ok(Value::Object(object)) = serde_json::to_value(&action) else {
        return Err(DataError::Invalid("the action cannot be serialized".into()));
    };
    jobs.put_objects(&[object]).await?;
    Ok(action)
}

/// Reads action `id`.
///
/// # Errors
/// [`DataError::NotFound`] when there is none; [`DataError::Invalid`] when
/// the id names something else.
pub async fn get_action(jobs: &dyn JobStore, id: &str) -> Result<Action, DataError> {
    let Some(object) = jobs.get_object(id).await? else {
        return Err(DataError::NotFound(format!(
            "action {id} does not exist: store it with `plus action put {id} SCRIPT`"
        )));
    };
    plus_jobs::job::action_from_object(id, object).map_err(|e| DataError::Invalid(e.to_string()))
}

impl Launcher {
    /// [`import`] into this launcher's store.
    ///
    /// # Errors
    /// As [`import`].
    pub async fn import_items(
        &self,
        owner: &str,
        input: impl BufRead,
    ) -> Result<ImportReport, DataError> {
        import(self.jobs().as_ref(), owner, input).await
    }

    /// [`list`] from this launcher's store.
    ///
    /// # Errors
    /// As [`list`].
    pub async fn list_items(
        &self,
        owner: &str,
        start: Option<&str>,
        limit: usize,
    ) -> Result<plus_jobs::Page<Object>, DataError> {
        list(self.jobs().as_ref(), owner, start, limit).await
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
    ) -> Result<Action, DataError> {
        put_action(self.jobs().as_ref(), username, id, script, params).await
    }

    /// [`get_action`] from this launcher's store.
    ///
    /// # Errors
    /// As [`get_action`].
    pub async fn get_action(&self, id: &str) -> Result<Action, DataError> {
        get_action(self.jobs().as_ref(), id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_items_of_the_owner() {
        let item = item_from_line(
            r#"{"id": "a1", "size": 3, "owner": "bob/x"}"#,
            "alice/collections/p",
        )
        .unwrap();
        assert_eq!(item["object_id"], "a1");
        assert_eq!(item["owner"], "alice/collections/p");
        assert_eq!(item["size"], 3);
        let why = |line: &str| item_from_line(line, "a/b").unwrap_err().to_string();
        assert!(why("[1]").contains("not an object"));
        assert!(why("{}").contains("has no object_id"));
        assert!(why("{x").contains("not JSON"));
        assert!(why(r#"{"id":"j","object_type":"PlusScriptJob"}"#).contains("reserved"));
        assert!(check_owner("photos").is_err());
        assert!(check_owner("alice//p").is_err());
    }

    #[tokio::test]
    async fn imports_are_idempotent_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = plus_jobs::store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let owner = "alice/collections/p";
        let body: String = (0..1203)
            .map(|i| format!("{{\"id\":\"i{i:05}\",\"n\":{i}}}\n"))
            .collect();
        let r = import(&store, owner, body.as_bytes()).await.unwrap();
        assert_eq!(r.imported, 1203);
        let r = import(&store, owner, body.as_bytes()).await.unwrap();
        assert_eq!(r.imported, 1203);
        let mut n = 0;
        let mut start = None;
        loop {
            let page = list(&store, owner, start.as_deref(), 1000).await.unwrap();
            n += page.items.len();
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        assert_eq!(n, 1203, "no duplicates after importing twice");
        let err = import(&store, owner, "{\"id\":\"a\"}\n\nnot json\n".as_bytes())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("line 3 is not a valid item: it is not JSON"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn actions_round_trip_and_refuse_other_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = plus_jobs::store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let script = Script {
            source: "echo hi".into(),
            ..Script::default()
        };
        let mut params = Map::new();
        params.insert("size".into(), serde_json::json!(2));
        put_action(&store, "alice", "resize", script.clone(), params)
            .await
            .unwrap();
        let a = get_action(&store, "resize").await.unwrap();
        assert_eq!(a.owner, "alice/actions");
        assert_eq!(a.script.unwrap().source, "echo hi");
        assert!(matches!(
            get_action(&store, "nope").await,
            Err(DataError::NotFound(_))
        ));
        import(
            &store,
            "alice/collections/p",
            "{\"id\":\"item1\"}".as_bytes(),
        )
        .await
        .unwrap();
        let err = put_action(&store, "alice", "item1", script, Map::new())
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("is a collection item, not an Action"),
            "{err}"
        );
        assert!(get_action(&store, "item1")
            .await
            .unwrap_err()
            .to_string()
            .contains("not an Action"));
    }
}
