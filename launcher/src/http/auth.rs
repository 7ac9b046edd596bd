//! Who is calling. Every `/jobs` route takes a [`Caller`] first, so a
//! request without valid credentials gets 401 before anything is read.
//!
//! - Locally (`plus serve`), one random bearer token, printed at start, maps
//!   to the user who started the server. The page reads it from the URL's
//!   fragment (never sent to the server) and sends it as
//!   `Authorization: Bearer TOKEN`; no cookie is involved, so another site
//!   cannot make the browser act on the user's behalf.
//! - In AWS, API Gateway's JWT authorizer has already verified the token; the
//!   caller is the `cognito:username`, `username` or `sub` claim of the
//!   request context Lambda hands over. Headers a client sends can never
//!   set it.

use std::collections::HashMap;

use axum::{extract::FromRequestParts, http::request::Parts};
use lambda_http::{request::RequestContext, RequestExt};

use super::error::ApiError;

/// How callers are identified.
#[derive(Clone)]
#[non_exhaustive]
pub enum Auth {
    /// `plus serve`: requests must carry `Authorization: Bearer {token}`
    /// and act as `username`.
    Token {
        /// The access token (random, 256 bits, hex).
        token: String,
        /// The user every authenticated request acts as.
        username: String,
    },
    /// Behind API Gateway: the caller comes from the JWT authorizer's claims
    /// in the Lambda request context.
    JwtAuthorizer,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never print the token.
            Auth::Token { username, .. } => f
                .debug_struct("Token")
                .field("token", &"<redacted>")
                .field("username", username)
                .finish(),
            Auth::JwtAuthorizer => f.write_str("JwtAuthorizer"),
        }
    }
}

/// The authenticated caller: the username whose jobs the request may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller(pub String);

/// A router state that knows how callers are identified.
pub trait WithAuth {
    /// How callers are identified.
    fn auth(&self) -> &Auth;
}

impl<S: WithAuth + Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match state.auth() {
            Auth::Token { token, username } => match bearer(parts) {
                Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => {
                    Ok(Caller(username.clone()))
                }
                Some(_) => Err(ApiError::Unauthorized(
                    "the access token is not valid: use the token `plus serve` printed when it started (it changes at every start)".into(),
                )),
                None => Err(ApiError::Unauthorized(
                    "this request has no access token: send `Authorization: Bearer TOKEN` with the token `plus serve` printed when it started".into(),
                )),
            },
            Auth::JwtAuthorizer => parts
                .extensions
                .request_context_ref()
                .and_then(username_from_context)
                .map(Caller)
                .ok_or_else(|| {
                    ApiError::Unauthorized(
                        "no verified caller: the request carries no JWT authorizer claims with a username (`cognito:username`, `username` or `sub`); put the API behind an API Gateway JWT authorizer and send its token as `Authorization: Bearer TOKEN`".into(),
                    )
                }),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh access token: 32 random bytes as 64 hex digits.
///
/// # Errors
/// When the operating system's random source fails.
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The claims that name the user, in order of preference.
pub const USERNAME_CLAIMS: [&str; 3] = ["cognito:username", "username", "sub"];

/// The caller named by a JWT authorizer's claims: `cognito:username`, else
/// `username`, else `sub`. A name that could not be a job owner (empty, or
/// with a `/`) names nobody.
pub fn username_from_claims<V: AsRef<str>>(claims: &HashMap<String, V>) -> Option<String> {
    USERNAME_CLAIMS.iter().find_map(|name| {
        let value = claims.get(*name)?.as_ref().trim();
        (!value.is_empty() && !value.contains('/')).then(|| value.to_owned())
    })
}

/// The caller in a Lambda request context: the HTTP API's JWT authorizer
/// claims (payload 2.0), or a REST API Cognito authorizer's `claims`
/// (payload 1.0).
pub fn username_from_context(context: &RequestContext) -> Option<String> {
    let authorizer = context.authorizer()?;
    if let Some(jwt) = &authorizer.jwt {
        if let Some(user) = username_from_claims(&jwt.claims) {
            return Some(user);
        }
    }
    let claims = authorizer.fields.get("claims")?.as_object()?;
    let claims: HashMap<String, String> = claims
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    username_from_claims(&claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_name_the_user_in_order() {
        let mut claims = HashMap::from([("sub".to_owned(), "1234-abcd".to_owned())]);
        assert_eq!(username_from_claims(&claims).as_deref(), Some("1234-abcd"));
        claims.insert("username".into(), "bob".into());
        assert_eq!(username_from_claims(&claims).as_deref(), Some("bob"));
        claims.insert("cognito:username".into(), "alice".into());
        assert_eq!(username_from_claims(&claims).as_deref(), Some("alice"));
    }

    #[test]
    fn unusable_names_name_nobody() {
        let claims = HashMap::from([("username".to_owned(), "a/b".to_owned())]);
        assert_eq!(username_from_claims(&claims), None);
        let claims = HashMap::from([("sub".to_owned(), "  ".to_owned())]);
        assert_eq!(username_from_claims(&claims), None);
    }

    #[test]
    fn tokens_are_long_and_fresh() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(constant_time_eq(a.as_bytes(), a.as_bytes()));
        assert!(!constant_time_eq(a.as_bytes(), b.as_bytes()));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
