//! The job's event stream: the kinds of event DESIGN.md names, and the one
//! constructor every writer uses.

use std::fmt;

use crate::Timestamp;

/// What a stream event carries (`kind` in the streams table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// Lines the script wrote on stdout.
    Stdout,
    /// Lines the script wrote on stderr, and the worker's own notes.
    Stderr,
    /// A status change; `data` is the new status's name.
    Status,
    /// The job's progress as JSON (`total`, `succeeded`, `failed`, ...).
    Progress,
    /// One collection item's result.
    Item,
}

impl EventKind {
    /// Every kind, in the order DESIGN.md lists them.
    pub const ALL: [EventKind; 5] = [
        EventKind::Stdout,
        EventKind::Stderr,
        EventKind::Status,
        EventKind::Progress,
        EventKind::Item,
    ];

    /// The stored name (`stdout`, `status`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Stdout => "stdout",
            EventKind::Stderr => "stderr",
            EventKind::Status => "status",
            EventKind::Progress => "progress",
            EventKind::Item => "item",
        }
    }

    /// The kind stored as `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The kind of a stored event, if it is one this version knows.
    pub fn of(event: &plus_proto::StreamEvent) -> Option<Self> {
        Self::parse(&event.kind)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream event stamped now. `seq` is microseconds since the epoch and
/// at least `after + 1`, so one writer's events are strictly increasing and
/// a relaunched attempt's sort after the last attempt's without reading the
/// stream first.
pub fn stream_event(
    stream_id: &str,
    kind: EventKind,
    data: String,
    ttl_days: u32,
    after: u64,
) -> plus_proto::StreamEvent {
    let now = Timestamp::now();
    plus_proto::StreamEvent {
        stream_id: stream_id.to_owned(),
        seq: (now.unix_micros().max(0) as u64).max(after + 1),
        kind: kind.as_str().to_owned(),
        at: now.to_string(),
        data,
        expires_at: (now.unix_seconds().max(0) as u64) + u64::from(ttl_days) * 86_400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("STDOUT"), None);
    }

    #[test]
    fn one_writers_events_are_strictly_increasing() {
        let a = stream_event("j", EventKind::Status, "RUNNING".into(), 1, 0);
        let b = stream_event("j", EventKind::Stdout, "x".into(), 1, a.seq);
        assert!(b.seq > a.seq);
        assert_eq!(b.kind, "stdout");
    }
}
