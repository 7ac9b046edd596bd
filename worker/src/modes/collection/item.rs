//! The unit of a collection job: an [`Item`] read from the store, its
//! [`Done`] line of `results.jsonl`, and which [`Shard`] it belongs to.

use serde_json::Value;

/// One collection item, as read from the store.
#[derive(Clone, Debug)]
pub struct Item {
    /// Its position in this attempt's run (0, 1, 2, ...), in id order.
    pub seq: u64,
    /// Its `object_id`.
    pub id: String,
    /// The item as one line of JSON (no newline).
    pub json: Vec<u8>,
}

/// How an item ended: one line of `results.jsonl`.
#[derive(Clone, Debug, PartialEq)]
pub struct Done {
    /// The item's position (see [`Item::seq`]).
    pub seq: u64,
    /// The item's id.
    pub id: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// The full results line, newline included.
    pub line: Vec<u8>,
}

impl Done {
    /// The result of an item: `{"id", "ok", "exit_code", "output", "error"}`
    /// (`exit_code` only in per-item mode, `error` only on failure).
    pub fn new(
        seq: u64,
        id: &str,
        ok: bool,
        exit_code: Option<i32>,
        output: Value,
        error: Option<String>,
    ) -> Self {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            id: &'a str,
            ok: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            exit_code: Option<i32>,
            output: Value,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<String>,
        }
        let mut line = serde_json::to_vec(&Line {
            id,
            ok,
            exit_code,
            output,
            error,
        })
        .unwrap_or_default();
        line.push(b'\n');
        Done {
            seq,
            id: id.to_owned(),
            ok,
            line,
        }
    }
}

/// Which part of a fanned-out collection this job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard (0-based).
    pub index: u32,
    /// How many shards there are (at least 2).
    pub count: u32,
}

/// A shard's range of item ids: after `after` (empty: from the first) and
/// at most `until` (empty: to the last). A shard with a range reads only
/// its own items.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdRange {
    /// Exclusive lower bound; empty for none.
    pub after: String,
    /// Inclusive upper bound; empty for none.
    pub until: String,
}

impl IdRange {
    /// The range of `job`, when it is a shard with one.
    pub fn of(job: &plus_jobs::Job) -> Option<IdRange> {
        let has =
            job.shard_count > 1 && !(job.shard_after.is_empty() && job.shard_until.is_empty());
        has.then(|| IdRange {
            after: job.shard_after.clone(),
            until: job.shard_until.clone(),
        })
    }
}

/// The shard an item id belongs to among `count`: FNV-1a (64 bit) of the id's
/// bytes modulo `count`. Deterministic across processes, machines and
/// versions, so every shard agrees on the partition without talking.
pub fn shard_of(id: &str, count: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(count.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shards_partition_ids_deterministically() {
        let counts = (0..3000).fold([0u32; 3], |mut acc, i| {
            acc[shard_of(&format!("item-{i:05}"), 3) as usize] += 1;
            acc
        });
        assert_eq!(counts.iter().sum::<u32>(), 3000);
        assert!(counts.iter().all(|c| *c > 800), "{counts:?}");
        assert_eq!(shard_of("abc", 3), shard_of("abc", 3));
        assert_eq!(shard_of("anything", 1), 0);
    }

    #[test]
    fn result_lines_are_one_json_object() {
        let d = Done::new(3, "a\"b", false, Some(2), json!("out"), Some("bad".into()));
        assert_eq!(
            String::from_utf8(d.line).unwrap(),
            "{\"id\":\"a\\\"b\",\"ok\":false,\"exit_code\":2,\"output\":\"out\",\"error\":\"bad\"}\n"
        );
    }
}
