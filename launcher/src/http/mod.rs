//! # The HTTP API and the live page
//!
//! One [`router`] serves frontends everywhere: `plus serve` runs it on a
//! loopback port ([`serve`], started by `crate::cli`), and in AWS the
//! `plus-api-lambda` binary runs the very same router behind an API Gateway
//! HTTP API or a Lambda function URL ([`lambda`]).
//!
//! ## Layout
//!
//! - [`auth`]: who the caller is. Locally a random bearer token printed at
//!   start; in AWS the claims of API Gateway's JWT authorizer.
//! - [`routes`]: the route table ([`router`]).
//! - [`state`]: what every handler shares.
//! - [`handlers`]: the routes' handlers, thin over [`crate::ops::Launcher`]; the
//!   launch body and its checks ([`handlers::launch_request`]).
//! - [`views`]: a job's log, output files and results; retry.
//! - [`cache`]: `ETag` / `If-None-Match` and the poll hint (`Retry-After`).
//! - [`error`]: every failure as a status code and a JSON sentence.
//! - [`page`]: the live page (plain HTML, CSS and JS embedded in the binary)
//!   and the OpenAPI document.
//! - [`lambda`]: the Lambda adapter.
//!
//! ## Routes
//!
//! | Route | What |
//! |---|---|
//! | `GET /jobs?status=S&q=TEXT` | the caller's jobs, newest first, paginated, filtered |
//! | `POST /jobs` | launch a job |
//! | `GET /jobs/{id}` | one job |
//! | `GET /jobs/{id}/events?after=SEQ` | output and progress since `SEQ` |
//! | `POST /jobs/{id}/cancel` | cancel a job |
//! | `POST /jobs/{id}/retry` | relaunch an interrupted job, or run a finished one again |
//! | `GET /jobs/{id}/log?attempt=N` | the stored log, every attempt under a header (or one) |
//! | `GET /jobs/{id}/outputs` | the output files, names and sizes |
//! | `GET /jobs/{id}/outputs/{name}` | one output file |
//! | `GET /jobs/{id}/results` | the per-item results, JSON lines |
//! | `GET /` | the live page (no data without a token) |
//! | `GET /openapi.yaml` | the OpenAPI document (`docs/openapi.yaml`) |
//!
//! JSON bodies are the proto3 JSON mapping of `proto/plus/v1/jobs.proto`
//! (snake_case names, enums by name, 64-bit integers as strings).

pub mod auth;
pub mod cache;
pub mod error;
pub mod handlers;
pub mod lambda;
pub mod page;
pub mod routes;
pub mod schedules;
pub mod state;
pub mod stream;
pub mod views;

#[cfg(test)]
mod tests;

use std::{net::SocketAddr, time::Duration};

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::{Auth, Caller};
pub use error::ApiError;
pub use routes::{router, router_until};
pub use state::{ApiState, MAX_BODY_BYTES};

/// How long a connection may take to send a request's headers before it
/// is closed: a client that opens connections and sends half a request
/// cannot hold them (and the server's sockets) for long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long requests in flight may take to finish once shutdown starts.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets
/// requests in flight finish (within [`DRAIN_TIMEOUT`]). A connection that
/// has not sent a request's headers within [`HEADER_READ_TIMEOUT`] is
/// closed.
///
/// # Errors
/// None today: a failed accept is logged and retried.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, then go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            let outcome = tokio::select! {
                outcome = conn.as_mut() => outcome,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = outcome {
                tracing::debug!(error = %e, "a connection ended with an error");
            }
        });
    }
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {} s were dropped",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

/// Why `plus serve` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address is not a loopback address.
    #[error("--addr {0} is not a loopback address: `plus serve` only listens on this machine (use 127.0.0.1:PORT or [::1]:PORT); in AWS deploy plus-api-lambda behind API Gateway instead")]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source} (pick another port with --addr 127.0.0.1:PORT, or 127.0.0.1:0 for any free one)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// No random token could be made.
    #[error("cannot make a random access token: {0}")]
    Random(#[source] getrandom::Error),
    /// Serving failed.
    #[error("serving HTTP failed: {0}")]
    Io(#[from] std::io::Error),
}
