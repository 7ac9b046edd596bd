//! The live page and the OpenAPI document, embedded in the binary. The page
//! is plain HTML, CSS and JS (`launcher/static/`); it holds no data itself
//! and reads everything through the API with the caller's token.

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
};

/// The page.
pub const INDEX_HTML: &str = include_str!("../../static/index.html");
/// The page's script.
pub const APP_JS: &str = include_str!("../../static/app.js");
/// The page's style.
pub const APP_CSS: &str = include_str!("../../static/app.css");
/// The OpenAPI document describing every route.
pub const OPENAPI_YAML: &str = include_str!("../../../docs/openapi.yaml");

/// Only our own script, style and API: output shown on the page can never
/// run as code, and no other site can frame it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r
}

/// `GET /`: the live page.
pub async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

/// `GET /app.js`.
pub async fn script() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

/// `GET /app.css`.
pub async fn style() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

/// `GET /openapi.yaml`.
pub async fn openapi() -> Response {
    asset(OPENAPI_YAML, "application/yaml")
}
