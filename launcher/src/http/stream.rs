//! `GET /events`: the caller's Job State Change events as server-sent
//! events, so a page or a script learns of every status change without
//! polling. Served by `plus serve` on the local backend, which keeps the
//! last changes in its store; on AWS the same events go to `EVENT_BUS`
//! (subscribe there with an EventBridge rule).
//!
//! The stream opens with an `event: ready` whose `id` is where it starts;
//! each change is `event: job-state-change`, `id` its sequence number,
//! `data` the [`plus_jobs::announce::StateChange`] as JSON. A client that
//! reconnects with `Last-Event-ID` (or `?after=N`) gets what it missed. Only
//! the caller's own jobs are sent.

use std::{collections::VecDeque, convert::Infallible, time::Duration};

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
};
use futures_util::Stream;
use plus_jobs::{announce::StateChange, store::sqlite::SqliteStore};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{auth::Caller, error::ApiError, state::ApiState};

type Shared = State<std::sync::Arc<ApiState>>;

/// How often the store is read for new changes.
const POLL: Duration = Duration::from_millis(200);
/// Changes read at once.
const BATCH: usize = 200;

/// The query of `GET /events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Send the changes after this sequence number (as `Last-Event-ID`).
    pub after: Option<u64>,
}

/// `GET /events`: the caller's state changes from now on (or after
/// `Last-Event-ID` / `?after=N`), until the client leaves or the server
/// stops.
pub async fn events(
    caller: Caller,
    State(state): Shared,
    headers: HeaderMap,
    q: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Some(store) = state.launcher.state_changes().cloned() else {
        return Err(ApiError::NotFound(
            "the event stream is served by `plus serve` on the local backend; on AWS every status change goes to the EventBridge bus EVENT_BUS names: subscribe to it with a rule on source plus-worker".into(),
        ));
    };
    let Query(q) =
        q.map_err(|e| ApiError::BadRequest(format!("{e}: the only parameter is after=N")))?;
    let last_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(
                    "Last-Event-ID must be the id of an event this stream sent (a whole number)"
                        .into(),
                )
                })
        })
        .transpose()?;
    let after = match last_id.or(q.after) {
        Some(n) => n,
        None => store
            .last_change()
            .await
            .map_err(crate::ops::LauncherError::from)?,
    };
    let feed = Feed {
        store,
        username: caller.0,
        after,
        pending: VecDeque::new(),
        closing: state.closing.clone(),
        ready: false,
    };
    let stream = futures_util::stream::unfold(feed, Feed::next);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Where one client's stream stands.
struct Feed {
    store: SqliteStore,
    username: String,
    after: u64,
    pending: VecDeque<(u64, StateChange)>,
    closing: CancellationToken,
    ready: bool,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if !self.ready {
            self.ready = true;
            let event = Event::default()
                .event("ready")
                .id(self.after.to_string())
                .data(serde_json::json!({ "after": self.after }).to_string());
            return Some((Ok(event), self));
        }
        loop {
            if let Some((seq, change)) = self.pending.pop_front() {
                let data = serde_json::to_string(&change).unwrap_or_default();
                let event = Event::default()
                    .event("job-state-change")
                    .id(seq.to_string())
                    .data(data);
                return Some((Ok(event), self));
            }
            tokio::select! {
                () = self.closing.cancelled() => return None,
                () = tokio::time::sleep(POLL) => {}
            }
            match self
                .store
                .changes_after(&self.username, self.after, BATCH)
                .await
            {
                Ok(changes) => {
                    if let Some((seq, _)) = changes.last() {
                        self.after = *seq;
                    }
                    self.pending.extend(changes);
                }
                Err(e) => tracing::warn!(error = %e, "the state-change feed could not be read"),
            }
        }
    }
}
