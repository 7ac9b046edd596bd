//! What every handler shares.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::auth::{Auth, WithAuth};
use crate::ops::Launcher;

/// The largest request body accepted (a launch with an inline script).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler shares: the launcher and how callers are identified.
#[derive(Debug)]
pub struct ApiState {
    /// The operations.
    pub launcher: Launcher,
    /// How a request's caller is established.
    pub auth: Auth,
    /// Cancelled when the server stops: long-lived answers (the event
    /// stream) end then.
    pub closing: CancellationToken,
}

impl WithAuth for Arc<ApiState> {
    fn auth(&self) -> &Auth {
        &self.auth
    }
}
