//! # plus-jobs
//!
//! The job record, its state machine and its stores: the one crate every
//! deployable part of plus-worker (worker, launcher, HTTP API) shares.
//!
//! ## Layout
//!
//! - [`job`]: the record ([`Job`], generated from `proto/`), its statuses and
//!   the transitions the state machine allows, plus [`JobId`] and timestamps.
//! - [`store`]: the [`JobStore`] port (jobs, actions, collection items and
//!   each job's event stream) with two adapters: [`store::dynamodb`] (the AWS
//!   backend: items and errors in `convert.rs`, the conditional writes in
//!   `writes.rs`, unfinished jobs through the sparse `active-index` in
//!   `active.rs`) and [`store::sqlite`] (the embedded local backend).
//! - [`blob`]: the [`BlobStore`] port for scripts, logs and outputs, with an
//!   S3 adapter and a local-folder adapter.
//! - [`backend`]: builds a matching pair of stores from configuration, so the
//!   worker and the launcher open the same backend the same way.
//! - [`params`]: how `--param key=value` is read, how params are stored
//!   (`params_struct`), and the numbers DynamoDB can store.
//! - [`error`]: [`Cause`], the sentence plus the library error behind it
//!   that store and blob errors carry, and [`error_chain`].
//! - [`pricing`]: Fargate's prices per region (the one table), task sizes
//!   and an attempt's [`Usage`] with its cost estimate.
//! - [`event`]: the kinds of stream event ([`EventKind`]) and the one
//!   constructor every writer uses.
//! - [`retry`]: retry rules (AWS Batch's `evaluateOnExit` shape): which
//!   failed attempts are tried again.
//! - [`secrets`]: secret references (`plus/{user}/...`, `ssm:/plus/{user}/...`,
//!   `env:NAME`), the prefix rule and the reserved env var names, checked
//!   alike by the launcher and the worker.
//! - [`contract`]: the container contract: the worker's environment
//!   ([`contract::WorkerEnv`], written by launchers and read by the worker),
//!   the AWS settings every part reads alike, and owner paths
//!   ([`contract::OwnerPath`]).
//!
//! - [`announce`]: Job State Change events: a store wrapper that publishes
//!   every status change after its write, to EventBridge (`EVENT_BUS`) or,
//!   locally, to the SQLite store's feed that `plus serve` streams.
//!
//! Dependencies inside the crate point one way: `store`, `blob`, `backend`
//! and `contract` use `job`, `params` and `event`; nothing points back. The
//! test helpers live in the separate, unpublished `plus-testkit` crate.
//!
//! Every status change is one conditional write ([`JobStore::update_job`] with an
//! [`store::Expect`]); a write that loses a race changes nothing and comes
//! back as [`StoreError::Conflict`].

pub mod announce;
pub mod backend;
pub mod blob;
pub mod contract;
pub mod error;
pub mod event;
pub mod job;
pub mod params;
pub mod pricing;
pub mod retry;
pub mod secrets;
pub mod store;

pub use backend::{Backend, BackendConfig};
pub use blob::{BlobError, BlobStore};
pub use event::EventKind;
pub use job::{JobId, Timestamp};
pub use plus_proto::{
    Action, Job, JobStatus, Progress, RunMode, Script, StreamEvent, TaskResources, Usage,
};
pub use store::{Expect, JobStore, Page, PutWhen, StoreError};

pub use error::{error_chain, Cause};
