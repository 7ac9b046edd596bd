//! The embedded store: one SQLite file (WAL mode, so the CLI can read while a
//! worker process writes). Objects are kept as their JSON mapping, with the
//! keys DynamoDB indexes (`object_id`, `owner`) as columns.
//!
//! Conditional writes run inside `BEGIN IMMEDIATE` transactions, which take
//! the database's write lock first, so the read-check-write is atomic across
//! processes exactly like a DynamoDB condition expression.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use plus_proto::{Job, StreamEvent};
use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::Value;

use crate::announce::{Sink, StateChange};

use super::{
    merge, object_to_job, patch_attributes, Expect, JobStore, Object, Page, PutWhen, StoreError,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    object_id TEXT PRIMARY KEY NOT NULL,
    owner     TEXT,
    body      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_owner ON objects (owner, object_id);
CREATE TABLE IF NOT EXISTS events (
    stream_id  TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    at         TEXT NOT NULL,
    data       TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (stream_id, seq)
);
CREATE TABLE IF NOT EXISTS state_changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL,
    body     TEXT NOT NULL
);
";

/// How many state changes the local store keeps (the oldest go first).
const KEPT_CHANGES: i64 = 10_000;

/// The SQLite adapter of [`JobStore`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating when missing) the store at `path`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be opened or created.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(crate::Cause::new(
                    format!("cannot create {}: {e}", dir.display()),
                    e,
                ))
            })?;
        }
        let conn = Connection::open(path).map_err(|e| open_error(path, e))?;
        let setup = || {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            // Switching to WAL takes an exclusive lock that SQLite does not
            // wait for: switch only a file that is not in WAL mode yet.
            let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                conn.pragma_update(None, "journal_mode", "WAL")?;
            }
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            // 256 KiB of page cache (SQLite's default is 2 MiB): the OS
            // caches the file anyway, and a small cache keeps a worker
            // reading a long collection flat in memory.
            conn.pragma_update(None, "cache_size", -256)?;
            conn.execute_batch(SCHEMA)
        };
        // A busy answer that SQLite's busy handler did not wait out (a
        // worker's first open racing `plus list`) is tried again, for as
        // long as the busy timeout.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match setup() {
                Ok(()) => break,
                Err(e) if rows::is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(open_error(path, e)),
            }
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps `change` in the local feed of state changes (the last
    /// [`KEPT_CHANGES`]) and returns its sequence number.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn record_change(&self, change: &StateChange) -> Result<u64, StoreError> {
        let body = serde_json::to_string(change).map_err(|e| {
            StoreError::Rejected(format!("a state change cannot be kept: {e}").into())
        })?;
        let username = change.username.clone();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO state_changes (username, body) VALUES (?1, ?2)",
                params![username, body],
            )
            .map_err(sql_error)?;
            let seq = conn.last_insert_rowid();
            if seq % 100 == 0 {
                conn.execute(
                    "DELETE FROM state_changes WHERE seq <= ?1",
                    params![seq - KEPT_CHANGES],
                )
                .map_err(sql_error)?;
            }
            Ok(seq as u64)
        })
        .await
    }

    /// `username`'s state changes after sequence number `after`, oldest
    /// first, at most `limit`.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn changes_after(
        &self,
        username: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, StateChange)>, StoreError> {
        let username = username.to_owned();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, body FROM state_changes
                     WHERE seq > ?1 AND username = ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![after as i64, username, limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
                })
                .map_err(sql_error)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, body) = row.map_err(sql_error)?;
                if let Ok(change) = serde_json::from_str(&body) {
                    out.push((seq, change));
                }
            }
            Ok(out)
        })
        .await
    }

    /// The sequence number of the newest state change (0 when none).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn last_change(&self) -> Result<u64, StoreError> {
        self.with(|conn| {
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM state_changes", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(sql_error)
        })
        .await
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(crate::Cause::new("the store's task failed", e)))?
    }
}

mod rows;

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
use rows::{id_bodies, open_error, owner_of, paginate, read_object, sql_error};

#[async_trait]
impl JobStore for SqliteStore {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        let object = super::new_job_object(job)?;
        let id = job.object_id.clone();
        self.with(move |conn| {
            let body = Value::Object(object.clone()).to_string();
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO objects (object_id, owner, body) VALUES (?1, ?2, ?3)",
                    params![id, owner_of(&object), body],
                )
                .map_err(sql_error)?;
            if inserted == 0 {
                return Err(StoreError::Conflict {
                    id,
                    reason: "an object with this id already exists".to_owned(),
                });
            }
            Ok(())
        })
        .await
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let id = id.to_owned();
        self.with(move |conn| {
            read_object(conn, &id)?
                .map(|o| object_to_job(&id, o))
                .transpose()
        })
        .await
    }

    async fn update_job_with(
        &self,
        id: &str,
        expect: &Expect,
        patch: &Job,
        if_absent: &Job,
    ) -> Result<Job, StoreError> {
        let absent = patch_attributes(if_absent)?;
        let id = id.to_owned();
        let expect = expect.clone();
        let patch_status = patch.status;
        let attributes = patch_attributes(patch)?;
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_error)?;
            let Some(mut object) = read_object(&tx, &id)? else {
                return Err(StoreError::Conflict {
                    reason: expect.conflict_reason(None),
                    id,
                });
            };
            let current = object_to_job(&id, object.clone())?;
            if !expect.holds_for(&current) {
                return Err(StoreError::Conflict {
                    reason: expect.conflict_reason(Some(&current)),
                    id,
                });
            }
            for name in super::cleared_by(patch_status) {
                if !attributes.contains_key(*name) {
                    object.remove(*name);
                }
            }
            merge(&mut object, attributes);
            match super::active_after(patch_status) {
                Some(true) => {
                    object.insert(
                        super::ACTIVE.to_owned(),
                        Value::String(super::active_bucket(&id)),
                    );
                }
                Some(false) => {
                    object.remove(super::ACTIVE);
                }
                None => {}
            }
            for (k, v) in absent {
                object.entry(k).or_insert(v);
            }
            let job = object_to_job(&id, object.clone())?;
            tx.execute(
                "UPDATE objects SET body = ?2, owner = ?3 WHERE object_id = ?1",
                params![
                    id,
                    Value::Object(object.clone()).to_string(),
                    owner_of(&object)
                ],
            )
            .map_err(sql_error)?;
            tx.commit().map_err(sql_error)?;
            Ok(job)
        })
        .await
    }

    async fn fail_unreadable(
        &self,
        id: &str,
        username: &str,
        lease: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        let (id, username, lease, error) = (
            id.to_owned(),
            username.to_owned(),
            lease.to_owned(),
            error.to_owned(),
        );
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_error)?;
            let object = read_object(&tx, &id)?;
            let text = |o: &Object, k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
            let held = object.as_ref().is_some_and(|o| {
                let status = text(o, "status");
                text(o, "object_type").as_deref() == Some(crate::job::JOB_OBJECT_TYPE)
                    && text(o, "username").as_deref() == Some(username.as_str())
                    && (status.as_deref() == Some("INITIALIZING")
                        || (status.as_deref() == Some("RUNNING")
                            && text(o, "lease").as_deref() == Some(lease.as_str())))
            });
            let Some(mut object) = object.filter(|_| held) else {
                return Err(super::unreadable_conflict(&id, &username, &lease));
            };
            let now = crate::Timestamp::now().to_string();
            for (k, v) in [
                ("status", "FAILED".to_owned()),
                ("error", error),
                ("completed_at", now.clone()),
                ("updated_at", now),
            ] {
                object.insert(k.to_owned(), Value::String(v));
            }
            object.remove(super::ACTIVE);
            tx.execute(
                "UPDATE objects SET body = ?2 WHERE object_id = ?1",
                params![id, Value::Object(object).to_string()],
            )
            .map_err(sql_error)?;
            tx.commit().map_err(sql_error)
        })
        .await
    }

    async fn list_jobs(
        &self,
        owner: &str,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Page<Job>, StoreError> {
        let owner = owner.to_owned();
        let start = start.map(str::to_owned);
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT object_id, body FROM objects WHERE owner = ?1 AND (?2 IS NULL OR object_id < ?2)
                     ORDER BY object_id DESC LIMIT ?3",
                )
                .map_err(sql_error)?;
            let items = id_bodies(&mut stmt, params![owner, start, limit as i64 + 1])?
                .into_iter()
                .filter_map(|(id, object)| super::readable_job(&id, object))
                .collect::<Vec<_>>();
            Ok(paginate(items, limit, |j: &Job| j.object_id.clone()))
        })
        .await
    }

    async fn list_active(
        &self,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Page<Job>, StoreError> {
        let start = start.map(str::to_owned);
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT object_id, body FROM objects
                     WHERE json_extract(body, '$.object_type') = 'PlusScriptJob'
                       AND json_extract(body, '$.status') IN ('QUEUED', 'INITIALIZING', 'RUNNING', 'INTERRUPTED')
                       AND (?1 IS NULL OR object_id > ?1)
                     ORDER BY object_id LIMIT ?2",
                )
                .map_err(sql_error)?;
            let items = id_bodies(&mut stmt, params![start, limit as i64 + 1])?
                .into_iter()
                .filter_map(|(id, object)| super::readable_job(&id, object))
                .collect::<Vec<_>>();
            Ok(paginate(items, limit, |j: &Job| j.object_id.clone()))
        })
        .await
    }

    async fn put_objects(&self, objects: &[Object]) -> Result<(), StoreError> {
        let objects = objects.to_vec();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(sql_error)?;
            for object in &objects {
                let id = object
                    .get("object_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| StoreError::Rejected("an object has no object_id".into()))?;
                tx.execute(
                    "INSERT OR REPLACE INTO objects (object_id, owner, body) VALUES (?1, ?2, ?3)",
                    params![
                        id,
                        owner_of(object),
                        Value::Object(object.clone()).to_string()
                    ],
                )
                .map_err(sql_error)?;
            }
            tx.commit().map_err(sql_error)
        })
        .await
    }

    async fn import_items(&self, owner: &str, items: &[Object]) -> Result<Vec<String>, StoreError> {
        let (owner, items) = (owner.to_owned(), items.to_vec());
        self.with(move |conn| {
            let tx = conn.transaction().map_err(sql_error)?;
            let mut refused = Vec::new();
            for item in &items {
                let id = item
                    .get("object_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| StoreError::Rejected("an item has no object_id".into()))?;
                let written = tx
                    .execute(
                        "INSERT INTO objects (object_id, owner, body) VALUES (?1, ?2, ?3)
                         ON CONFLICT(object_id) DO UPDATE SET owner = excluded.owner, body = excluded.body
                         WHERE objects.owner = excluded.owner
                           AND IFNULL(json_extract(objects.body, '$.object_type'), '') NOT IN (?4, ?5, ?6)",
                        params![
                            id,
                            owner,
                            Value::Object(item.clone()).to_string(),
                            crate::job::SYSTEM_OBJECT_TYPES[0],
                            crate::job::SYSTEM_OBJECT_TYPES[1],
                            crate::job::SYSTEM_OBJECT_TYPES[2],
                        ],
                    )
                    .map_err(sql_error)?;
                if written == 0 {
                    refused.push(id.to_owned());
                }
            }
            tx.commit().map_err(sql_error)?;
            Ok(refused)
        })
        .await
    }

    async fn put_object_if(&self, object: &Object, when: PutWhen) -> Result<(), StoreError> {
        let object = object.clone();
        self.with(move |conn| {
            let id = object
                .get("object_id")
                .and_then(Value::as_str)
                .ok_or_else(|| StoreError::Rejected("an object has no object_id".into()))?
                .to_owned();
            let (owner, object_type) = super::owner_and_type(&object);
            let body = Value::Object(object.clone()).to_string();
            let written = match when {
                PutWhen::Absent => conn
                    .execute(
                        "INSERT INTO objects (object_id, owner, body) VALUES (?1, ?2, ?3)
                         ON CONFLICT(object_id) DO NOTHING",
                        params![id, owner, body],
                    )
                    .map_err(sql_error)?,
                PutWhen::SameOwner => conn
                    .execute(
                        "UPDATE objects SET body = ?3 WHERE object_id = ?1 AND owner = ?2
                           AND IFNULL(json_extract(body, '$.object_type'), '') = ?4",
                        params![id, owner, body, object_type],
                    )
                    .map_err(sql_error)?,
            };
            if written == 0 {
                return Err(StoreError::Conflict {
                    id,
                    reason: match when {
                        PutWhen::Absent => "an object with this id already exists".to_owned(),
                        _ => format!("no {object_type} of {owner} has this id"),
                    },
                });
            }
            Ok(())
        })
        .await
    }

    async fn delete_object(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.with(move |conn| {
            let deleted = conn
                .execute(
                    "DELETE FROM objects WHERE object_id = ?1 AND owner = ?2",
                    params![id, owner],
                )
                .map_err(sql_error)?;
            if deleted == 0 {
                return Err(StoreError::Conflict {
                    id,
                    reason: format!("no object of {owner} has this id"),
                });
            }
            Ok(())
        })
        .await
    }

    async fn get_object(&self, id: &str) -> Result<Option<Object>, StoreError> {
        let id = id.to_owned();
        self.with(move |conn| read_object(conn, &id)).await
    }

    async fn query_owner(
        &self,
        owner: &str,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Page<Object>, StoreError> {
        let owner = owner.to_owned();
        let start = start.map(str::to_owned);
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT object_id, body FROM objects WHERE owner = ?1 AND (?2 IS NULL OR object_id > ?2)
                     ORDER BY object_id ASC LIMIT ?3",
                )
                .map_err(sql_error)?;
            let items: Vec<Object> = id_bodies(&mut stmt, params![owner, start, limit as i64 + 1])?
                .into_iter()
                .map(|(_, object)| object)
                .collect();
            Ok(paginate(items, limit, |o: &Object| {
                o.get("object_id").and_then(Value::as_str).unwrap_or_default().to_owned()
            }))
        })
        .await
    }

    async fn query_owner_until(
        &self,
        owner: &str,
        start: Option<&str>,
        until: &str,
        limit: usize,
    ) -> Result<Page<Object>, StoreError> {
        let owner = owner.to_owned();
        let start = start.map(str::to_owned);
        let until = until.to_owned();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT object_id, body FROM objects WHERE owner = ?1 AND (?2 IS NULL OR object_id > ?2)
                     AND object_id <= ?4 ORDER BY object_id ASC LIMIT ?3",
                )
                .map_err(sql_error)?;
            let items: Vec<Object> =
                id_bodies(&mut stmt, params![owner, start, limit as i64 + 1, until])?
                    .into_iter()
                    .map(|(_, object)| object)
                    .collect();
            Ok(paginate(items, limit, |o: &Object| {
                o.get("object_id").and_then(Value::as_str).unwrap_or_default().to_owned()
            }))
        })
        .await
    }

    async fn owner_id_bounds(&self, owner: &str) -> Result<Option<(String, String)>, StoreError> {
        let owner = owner.to_owned();
        self.with(move |conn| {
            conn.query_row(
                "SELECT MIN(object_id), MAX(object_id) FROM objects WHERE owner = ?1",
                params![owner],
                |row| {
                    Ok((
                        row.get::<_, Option<String>>(0)?,
                        row.get::<_, Option<String>>(1)?,
                    ))
                },
            )
            .map(|(a, b)| a.zip(b))
            .map_err(sql_error)
        })
        .await
    }

    async fn append_events(&self, events: &[StreamEvent]) -> Result<(), StoreError> {
        let events = events.to_vec();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(sql_error)?;
            for e in &events {
                tx.execute(
                    "INSERT OR REPLACE INTO events (stream_id, seq, kind, at, data, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        e.stream_id,
                        e.seq as i64,
                        e.kind,
                        e.at,
                        e.data,
                        e.expires_at as i64
                    ],
                )
                .map_err(sql_error)?;
            }
            tx.commit().map_err(sql_error)
        })
        .await
    }

    async fn events_after(
        &self,
        stream_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let stream_id = stream_id.to_owned();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, kind, at, data, expires_at FROM events
                     WHERE stream_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![stream_id, after as i64, limit as i64], |r| {
                    Ok(StreamEvent {
                        stream_id: stream_id.clone(),
                        seq: r.get::<_, i64>(0)? as u64,
                        kind: r.get(1)?,
                        at: r.get(2)?,
                        data: r.get(3)?,
                        expires_at: r.get::<_, i64>(4)? as u64,
                    })
                })
                .map_err(sql_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql_error)
        })
        .await
    }
}

#[async_trait]
impl Sink for SqliteStore {
    async fn publish(&self, change: &StateChange) {
        if let Err(e) = self.record_change(change).await {
            tracing::warn!(job_id = %change.job_id, error = %e, "a state change could not be kept in the local feed (the job is not affected)");
        }
    }
}
