//! The HTTP API in AWS Lambda: the same [`router`] behind an
//! API Gateway HTTP API (payload 2.0) with a JWT authorizer, or a REST API
//! with a Cognito authorizer. `lambda_http` turns each event into an HTTP
//! request carrying the authorizer's verified claims, which
//! [`Auth::JwtAuthorizer`] reads to name the caller.

use crate::ops::Launcher;

use super::{auth::Auth, routes::router};

/// Serves Lambda invocations until the runtime stops the process.
///
/// # Errors
/// When the Lambda runtime API fails.
pub async fn run(launcher: Launcher) -> Result<(), lambda_http::Error> {
    lambda_http::run(router(launcher, Auth::JwtAuthorizer)).await
}
