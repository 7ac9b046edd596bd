//! [`Mask`]: the job's resolved secret values, replaced by `***` in the
//! script's output before it reaches the log file, the live stream or the
//! worker's own JSON log.
//!
//! Output arrives in line-aligned pieces (see [`super::Piece`]); a piece
//! cut inside a very long line keeps back an end that could start a value
//! ([`Mask::partial_tail`]) until the rest arrives, so a value is found
//! wherever it sits in a line. A value with newlines is also masked line
//! by line. Values shorter than
//! [`plus_jobs::secrets::MIN_MASKED_BYTES`] are not masked: masking `1` or
//! `on` would garble every line and hide nothing.

use std::{
    borrow::Cow,
    sync::{Arc, OnceLock},
};

/// What replaces a secret value.
pub const MASK: &[u8] = b"***";

/// The values to mask, shared by the collector and whoever resolves the
/// secrets; set once, before any script starts.
#[derive(Clone, Default)]
pub struct Mask {
    values: Arc<OnceLock<Vec<Vec<u8>>>>,
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        f.debug_struct("Mask")
            .field("values", &self.values.get().map_or(0, Vec::len))
            .finish()
    }
}

impl Mask {
    /// Sets the values to mask (a second call is ignored: there is one set
    /// of secrets per job).
    pub fn set<'a>(&self, values: impl IntoIterator<Item = &'a str>) {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for value in values {
            let mut add = |p: &str| {
                if p.len() >= plus_jobs::secrets::MIN_MASKED_BYTES
                    && !patterns.iter().any(|q| q == p.as_bytes())
                {
                    patterns.push(p.as_bytes().to_vec());
                }
            };
            add(value);
            if value.contains('\n') {
                for line in value.lines() {
                    add(line.trim_end_matches('\r'));
                }
            }
        }
        // Longest first: a value that contains another is masked whole.
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let _ = self.values.set(patterns);
    }

    /// Whether there is anything to mask.
    pub fn is_empty(&self) -> bool {
        self.values.get().is_none_or(Vec::is_empty)
    }

    /// `bytes` with every value replaced by [`MASK`].
    pub fn apply<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let Some(patterns) = self.values.get() else {
            return Cow::Borrowed(bytes);
        };
        let mut out = Cow::Borrowed(bytes);
        for p in patterns {
            if let Some(masked) = replace(&out, p) {
                out = Cow::Owned(masked);
            }
        }
        out
    }

    /// How many bytes at the end of `bytes` could be the start of a value
    /// (the longest suffix that is a proper prefix of one): a piece cut in
    /// the middle of a very long line keeps them back until the rest
    /// arrives, so a value split across pieces is still masked.
    pub fn partial_tail(&self, bytes: &[u8]) -> usize {
        let Some(patterns) = self.values.get() else {
            return 0;
        };
        let mut longest = 0;
        for p in patterns {
            let window = bytes.len().min(p.len() - 1);
            let tail = &bytes[bytes.len() - window..];
            // Candidate starts: where the value's first byte is.
            for (i, b) in tail.iter().enumerate() {
                let k = window - i;
                if k <= longest {
                    break;
                }
                if *b == p[0] && p.starts_with(&tail[i..]) {
                    longest = k;
                    break;
                }
            }
        }
        longest
    }

    /// `text` with every value replaced by `***`.
    pub fn apply_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.apply(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    /// Every string in `value` (keys included) masked.
    pub fn apply_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Cow::Owned(m) = self.apply_str(s) {
                    *s = m;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.apply_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.apply_json(&mut v);
                    map.insert(self.apply_str(&k).into_owned(), v);
                }
            }
            _ => {}
        }
    }
}

/// `haystack` with each `needle` replaced, or `None` when there is none.
fn replace(haystack: &[u8], needle: &[u8]) -> Option<Vec<u8>> {
    let first = find(haystack, needle)?;
    let mut out = Vec::with_capacity(haystack.len());
    out.extend_from_slice(&haystack[..first]);
    out.extend_from_slice(MASK);
    let mut rest = &haystack[first + needle.len()..];
    while let Some(i) = find(rest, needle) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(MASK);
        rest = &rest[i + needle.len()..];
    }
    out.extend_from_slice(rest);
    Some(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last {
        let j = haystack[i..=last].iter().position(|b| *b == first)? + i;
        if &haystack[j..j + needle.len()] == needle {
            return Some(j);
        }
        i = j + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(values: &[&str]) -> Mask {
        let m = Mask::default();
        m.set(values.iter().copied());
        m
    }

    #[test]
    fn every_occurrence_is_replaced() {
        let m = mask(&["s3cr3t-value", "tok3n"]);
        assert_eq!(
            m.apply(b"a s3cr3t-value b s3cr3t-valuetok3n\n").as_ref(),
            b"a *** b ******\n"
        );
        assert!(matches!(m.apply(b"nothing here\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn short_values_are_not_masked_and_long_ones_win() {
        let m = mask(&["abc", "abcd", "abcdefgh"]);
        assert_eq!(m.apply(b"abc abcd abcdefgh").as_ref(), b"abc *** ***");
        assert!(mask(&["ab"]).is_empty());
    }

    #[test]
    fn multi_line_values_are_masked_line_by_line_too() {
        let m = mask(&["-----BEGIN KEY-----\nAAAABBBB\n-----END KEY-----"]);
        assert_eq!(m.apply(b"AAAABBBB\n").as_ref(), b"***\n");
        assert_eq!(
            m.apply(b"-----BEGIN KEY-----\nAAAABBBB\n-----END KEY-----\n")
                .as_ref(),
            b"***\n"
        );
    }

    #[test]
    fn json_strings_and_keys_are_masked() {
        let m = mask(&["hunter22"]);
        let mut v = serde_json::json!({"pw": "is hunter22", "hunter22": [1, "hunter22"]});
        m.apply_json(&mut v);
        assert_eq!(v, serde_json::json!({"pw": "is ***", "***": [1, "***"]}));
    }

    #[test]
    fn the_start_of_a_value_at_the_end_is_kept_back() {
        let m = mask(&["hunter22", "abcdefgh"]);
        assert_eq!(m.partial_tail(b"xx hunt"), 4);
        assert_eq!(m.partial_tail(b"xx abcdefg"), 7);
        assert_eq!(
            m.partial_tail(b"hunter22"),
            0,
            "a whole value is masked, not kept"
        );
        assert_eq!(m.partial_tail(b"nothing"), 0);
        assert_eq!(m.partial_tail(b"h"), 1);
        assert_eq!(Mask::default().partial_tail(b"hunt"), 0);
    }

    #[test]
    fn nothing_set_changes_nothing() {
        let m = Mask::default();
        assert!(m.is_empty());
        assert_eq!(m.apply(b"x").as_ref(), b"x");
        assert!(!format!("{:?}", mask(&["hunter22"])).contains("hunter"));
    }
}
