//! Streams a collection's items page by page into a bounded channel.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use backon::{ExponentialBuilder, Retryable};
use plus_jobs::{JobStore, StoreError};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{shard_of, CollectionError, Item, Shard, PAGE_SIZE};

/// What the reader sends.
#[derive(Debug)]
pub enum Msg {
    /// The next item (ascending id).
    Item(Item),
    /// The end of the collection, after this many items (of this shard).
    End(u64),
    /// The collection could not be read; the job fails with this reason.
    Failed(CollectionError),
}

/// Reads the items of `owner` after `start_after` and up to `until` (of
/// `shard`, if any; a shard with a range of ids passes no `shard`) and
/// sends them to `tx` in ascending id order. Memory holds one page plus the
/// channel's capacity. Transient store errors are retried with backoff.
///
/// As soon as the last page is read (it has no continuation: a collection
/// that fits one page knows at its first read), `total` gets the number of
/// items read in all, before that page's items are sent: the total shows
/// long before the end, and the collection is read once.
pub async fn read(
    jobs: Arc<dyn JobStore>,
    owner: String,
    start_after: Option<String>,
    shard: Option<Shard>,
    until: Option<String>,
    tx: mpsc::Sender<Msg>,
    total: Arc<OnceLock<u64>>,
) {
    let mut after = start_after;
    let mut seq = 0u64;
    loop {
        let query = || async {
            match &until {
                Some(until) => {
                    jobs.query_owner_until(&owner, after.as_deref(), until, PAGE_SIZE)
                        .await
                }
                None => jobs.query_owner(&owner, after.as_deref(), PAGE_SIZE).await,
            }
        };
        let page = query
            .retry(
                ExponentialBuilder::default()
                    .with_jitter()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(8),
            )
            .when(StoreError::is_transient)
            .await;
        let page = match page {
            Ok(page) => page,
            Err(source) => {
                let _ = tx
                    .send(Msg::Failed(CollectionError::Read {
                        owner,
                        after: seq,
                        source,
                    }))
                    .await;
                return;
            }
        };
        // An item of this run: it has an id, and is of this shard.
        let id_of = |object: &serde_json::Map<String, Value>| {
            let id = object.get("object_id").and_then(Value::as_str)?;
            match shard {
                Some(s) if shard_of(id, s.count) != s.index => None,
                _ => Some(id.to_owned()),
            }
        };
        if page.next.is_none() {
            let here = page.items.iter().filter(|o| id_of(o).is_some()).count();
            let _ = total.set(seq + here as u64);
        }
        for object in page.items {
            let Some(id) = id_of(&object) else {
                continue;
            };
            let json = serde_json::to_vec(&object).unwrap_or_default();
            if tx.send(Msg::Item(Item { seq, id, json })).await.is_err() {
                return;
            }
            seq += 1;
        }
        // DynamoDB may end a page early (1 MB) and say where to go on;
        // the last page has no continuation.
        match page.next {
            Some(next) => after = Some(next),
            None => {
                let _ = tx.send(Msg::End(seq)).await;
                return;
            }
        }
    }
}
