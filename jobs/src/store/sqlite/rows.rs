//! Rows: stored JSON bodies read back as objects, SQLite's errors as
//! [`StoreError`]s, and pages.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use crate::store::{Object, Page, StoreError};

pub(super) fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(crate::Cause::new(
        format!("cannot open the local store {}: {e}", path.display()),
        e,
    ))
}

/// Whether another connection holds the lock SQLite needed.
pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

pub(super) fn sql_error(e: rusqlite::Error) -> StoreError {
    match e {
        e if is_busy(&e) => StoreError::Unavailable(crate::Cause::new(
            format!("the local store is busy: {e}"),
            e,
        )),
        other => StoreError::Unavailable(crate::Cause::new(
            format!("local store error: {other}"),
            other,
        )),
    }
}

pub(super) fn parse_object(id: &str, body: &str) -> Result<Object, StoreError> {
    match serde_json::from_str(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(StoreError::Malformed {
            id: id.to_owned(),
            reason: "the stored body is not a JSON object".to_owned(),
        }),
    }
}

pub(super) fn read_object(conn: &Connection, id: &str) -> Result<Option<Object>, StoreError> {
    let body: Option<String> = conn
        .query_row("SELECT body FROM objects WHERE object_id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql_error)?;
    body.map(|b| parse_object(id, &b)).transpose()
}

/// Runs a `SELECT object_id, body` and parses each body.
pub(super) fn id_bodies(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<(String, Object)>, StoreError> {
    let rows = stmt
        .query_map(params, |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(sql_error)?;
    let mut items = Vec::new();
    for row in rows {
        let (id, body) = row.map_err(sql_error)?;
        let object = parse_object(&id, &body)?;
        items.push((id, object));
    }
    Ok(items)
}

pub(super) fn owner_of(object: &Object) -> Option<&str> {
    object.get("owner").and_then(Value::as_str)
}

/// Cuts a `limit + 1` result to `limit` items and a continuation key.
pub(super) fn paginate<T>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Page<T> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(key)
    } else {
        None
    };
    Page { items, next }
}
