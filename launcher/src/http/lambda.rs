//! The HTTP API in AWS Lambda: the same [`router`] behind an
//! API Gateway HTTP API (payload 2.0) with a JWT authorizer, or a REST API
//! (payload 1.0) with a Cognito authorizer. `lambda_http` turns each event
//! into an HTTP request carrying the authorizer's verified claims, which
//! [`Auth::JwtAuthorizer`] reads to name the caller.
//!
//! Behind a named stage (a REST API's `prod`, an HTTP API's non-default
//! stage) `lambda_http` puts the stage in front of the path (`/prod/jobs`);
//! [`app`] takes it off again ([`strip_stage`]), so the routes are the same
//! at every stage.

use axum::Router;
use lambda_http::{request::RequestContext, Request, RequestExt};
use tower::ServiceExt;

use crate::ops::Launcher;

use super::{auth::Auth, routes::router};

/// The variable with which `lambda_http` leaves the stage out of the path
/// itself; when it is set there is nothing to strip.
pub const IGNORE_STAGE_VARIABLE: &str = "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH";

/// The router as Lambda serves it: the caller from the authorizer, the
/// stage taken off the path (unless `lambda_http` was told to leave it out,
/// read once here).
pub fn app(
    launcher: Launcher,
) -> tower::util::MapRequest<Router, impl Fn(Request) -> Request + Clone> {
    let stage_in_path = std::env::var_os(IGNORE_STAGE_VARIABLE).is_none();
    let strip = move |req: Request| {
        if stage_in_path {
            strip_stage(req)
        } else {
            req
        }
    };
    router(launcher, Auth::JwtAuthorizer).map_request(strip)
}

/// Takes the request context's stage (`requestContext.stage`) off the front
/// of the path: `/prod/jobs` becomes `/jobs` at stage `prod`. A path that
/// does not start with the stage, and the `$default` stage, are left alone.
pub fn strip_stage(mut req: Request) -> Request {
    let stage = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(c)) => c.stage.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") else {
        return req;
    };
    let rest = match req.uri().path().strip_prefix(&format!("/{stage}")) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => return req,
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// Serves Lambda invocations until the runtime stops the process.
///
/// # Errors
/// When the Lambda runtime API fails.
pub async fn run(launcher: Launcher) -> Result<(), lambda_http::Error> {
    lambda_http::run(app(launcher)).await
}
