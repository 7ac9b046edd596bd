//! # plus-launcher
//!
//! Launches plus-worker jobs and follows them. One library, several faces:
//! the `plus` CLI ([`cli`]), and later the Lambda handler and the HTTP API.
//!
//! ## Layout
//!
//! - [`launch`]: launch requests, validated before anything is written.
//! - [`ops`]: the operations (launch, status, events, cancel, list, retry),
//!   the one place their logic lives.
//! - [`local`]: the local runner: the worker as a child process with the
//!   Fargate task's environment.
//! - [`aws`]: the AWS backend's configuration.
//! - [`follow`]: following a job's output to its end.
//! - [`cli`]: the `plus` command line.
//! - [`data`]: collections and actions as data (`plus collection`, `plus action`).
//! - [`shards`]: fanning one collection job out across N tasks (`--shards N`).
//! - [`http`]: the HTTP API for frontends and the live page (`plus serve`,
//!   and the `plus-api-lambda` binary in AWS).

pub mod aws;
pub mod cli;
pub mod data;
pub mod ecs;
pub mod follow;
pub mod http;
pub mod lambda;
pub mod launch;
pub mod local;
pub mod monitor;
pub mod ops;
pub mod shards;

pub use launch::LaunchRequest;
pub use ops::{Launcher, LauncherError, Runner};
