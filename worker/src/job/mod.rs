//! One claimed job, apart from what its mode does with it.
//!
//! - [`claim`](mod@claim): the conditional INITIALIZING -> RUNNING write and, when it
//!   is refused, why ([`ClaimError`]).
//! - [`context`]: [`JobContext`], what the modes share, and the script
//!   environment.
//! - [`control`]: [`Control`] and [`StopReason`]: stopping the work once.
//! - [`watchers`]: what runs beside the work: the [`heartbeat`], the
//!   timeout, SIGTERM and the periodic event flush.
//! - [`heartbeat`]: the lease refresh that also notices cancel requests and
//!   lost leases, and writes progress.
//! - [`ending`]: [`Ending`], how the work ended ([`Finish`] or a lost lease).
//! - [`record`](mod@record): the final write.
//! - [`secrets`]: the job's secrets, checked and read just before its
//!   first script starts, into the script's environment and the mask.
//! - [`usage`]: this attempt's usage and cost, added to the record's.
//! - [`metrics`]: the Embedded Metric Format record printed at the end.

pub mod claim;
pub mod context;
pub mod control;
pub mod ending;
pub mod heartbeat;
pub mod metrics;
pub mod record;
pub mod secrets;
pub mod usage;
pub mod watchers;

pub use claim::{claim, ClaimError};
pub use context::{struct_to_json, JobContext};
pub use control::{Control, StopReason};
pub use ending::{Ending, Finish};
pub use record::record;
pub use watchers::Watchers;
