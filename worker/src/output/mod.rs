//! Where a job's output goes while it runs.
//!
//! - [`events`]: the batched live event stream (output lines, status and
//!   progress events) written to the streams table ([`EventSink::flush`]).
//! - [`collector`]: the one task that takes every [`Piece`] of script output,
//!   writes it whole to the log file and splits it into lines for the live
//!   view.
//! - [`mask`]: the job's secret values, replaced by `***` in every piece
//!   before the collector writes it.
//! - [`progress`]: the progress counters the work updates and the heartbeat
//!   writes.
//!
//! This layer knows nothing of jobs, scripts or modes: the script layer
//! produces [`Piece`]s, the job layer owns the sink and the cell.

pub mod collector;
pub mod events;
pub mod mask;
pub mod progress;

pub use collector::Collector;
pub use events::EventSink;
pub use mask::Mask;
pub use progress::ProgressCell;

/// A piece of output is at most this long; a longer line arrives as several
/// pieces (only the first shows in the live view, all go to the log).
pub const PIECE_BYTES: usize = 64 * 1024;

/// stdout or stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The stream event kind its lines are stored as.
    pub fn kind(self) -> plus_jobs::EventKind {
        match self {
            Stream::Stdout => plus_jobs::EventKind::Stdout,
            Stream::Stderr => plus_jobs::EventKind::Stderr,
        }
    }
}

/// A chunk of one stream's output: at most [`PIECE_BYTES`], ending at a
/// line boundary whenever the output has one, so the combined log
/// interleaves stdout and stderr line by line.
#[derive(Debug)]
pub struct Piece {
    /// Which stream.
    pub stream: Stream,
    /// The bytes, newlines included.
    pub bytes: Vec<u8>,
}
