//! The route table: every path the HTTP API and the live page answer.

use std::sync::Arc;

use axum::{
    extract::DefaultBodyLimit,
    routing::{get, post},
    Router,
};

use tokio_util::sync::CancellationToken;

use super::{
    auth::Auth,
    handlers, page, schedules,
    state::{ApiState, MAX_BODY_BYTES},
    stream, views,
};
use crate::ops::Launcher;

/// The HTTP API and the live page, ready to serve locally or in Lambda.
pub fn router(launcher: Launcher, auth: Auth) -> Router {
    router_until(launcher, auth, CancellationToken::new())
}

/// As [`router`]; long-lived answers (the event stream) end when `closing`
/// is cancelled, so a server stops promptly.
pub fn router_until(launcher: Launcher, auth: Auth, closing: CancellationToken) -> Router {
    let state = Arc::new(ApiState {
        launcher,
        auth,
        closing,
    });
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/app.css", get(page::style))
        .route("/openapi.yaml", get(page::openapi))
        .route("/events", get(stream::events))
        .route("/jobs", get(handlers::list).post(handlers::launch))
        .route("/jobs/{id}", get(handlers::status))
        .route("/jobs/{id}/events", get(handlers::events))
        .route("/jobs/{id}/cancel", post(handlers::cancel))
        .route("/jobs/{id}/retry", post(views::retry))
        .route("/jobs/{id}/log", get(views::log))
        .route("/jobs/{id}/outputs", get(views::outputs))
        .route("/jobs/{id}/outputs/{*name}", get(views::output))
        .route("/jobs/{id}/results", get(views::results))
        .route("/schedules", get(schedules::list).post(schedules::create))
        .route(
            "/schedules/{name}",
            get(schedules::show).delete(schedules::delete),
        )
        .route("/schedules/{name}/pause", post(schedules::pause))
        .route("/schedules/{name}/resume", post(schedules::resume))
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
