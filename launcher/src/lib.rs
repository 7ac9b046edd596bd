//! # plus-launcher
//!
//! Launches plus-worker jobs and follows them. One library, three faces:
//! the `plus` CLI ([`cli`]), the JSON operations an engine Lambda invokes
//! ([`json_api`], the `plus-lambda` binary) and the HTTP API for frontends
//! ([`http`], `plus serve` and the `plus-api-lambda` binary). Each face
//! turns its input into one [`LaunchRequest`] and calls [`Launcher`].
//!
//! # Layout
//!
//! - [`ops`]: the operations, the one place their logic lives
//!   ([`Launcher`]: launch, status, events, cancel, list, retry, logs).
//!   - [`ops::request`]: the launch request and its validation.
//!   - [`ops::resources`]: Fargate's task-size rules.
//!   - [`ops::lifecycle`]: cancel, retry, relaunch.
//!   - [`ops::shards`]: one collection job fanned out across N tasks.
//!   - [`ops::monitor`]: settling jobs whose worker died without a word;
//!     its rules for a stopped task are [`ops::monitor::rules`], and
//!     [`ops::monitor::event`] settles a job from an ECS task state change
//!     event the same way.
//!   - [`ops::data`]: collections and actions as data.
//!   - [`ops::schedules`]: launches on a cron or rate expression (an
//!     EventBridge Scheduler schedule on AWS, `plus serve` locally).
//! - [`runner`]: where workers run, the port [`runner::Runner`] (the only
//!   place that chooses between them) and its adapters [`runner::local`]
//!   (a child process) and [`runner::ecs`] (a Fargate task); a job's worker
//!   is a [`runner::WorkerRef`].
//! - [`aws`]: the AWS backend's configuration, and the AWS launcher put
//!   together from it.
//! - [`cli`]: the `plus` command line, the only module that prints.
//! - [`json_api`]: the JSON operations (`{"op": "launch", ...}`) and ECS
//!   task state change events.
//! - [`http`]: the HTTP API and the live page; its routes are in
//!   [`http::router`].
//!
//! Dependencies point one way: the faces (`cli`, `json_api`, `http`) use
//! `ops`; `ops` uses `runner`; `runner` uses neither.

pub mod aws;
pub mod cli;
pub mod http;
pub mod json_api;
pub mod ops;
pub mod runner;

pub use ops::{LaunchRequest, Launcher, LauncherError};
pub use runner::Runner;
