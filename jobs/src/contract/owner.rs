//! Owner paths: the `owner` attribute that ties an object to its user.

use std::fmt;

/// An owner path, `{user}/{kind}` or `{user}/{kind}/{name}...`: the `owner`
/// attribute that ties an object to the user named by its first segment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnerPath(String);

/// Why a string is not an [`OwnerPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an owner path: expected something like alice/collections/photos (user/kind/name, no empty part)")]
pub struct InvalidOwnerPath(pub String);

impl OwnerPath {
    /// Validates `owner`: at least two `/`-separated segments, none empty,
    /// no control characters.
    ///
    /// # Errors
    /// [`InvalidOwnerPath`] naming the expected shape.
    pub fn parse(owner: &str) -> Result<Self, InvalidOwnerPath> {
        let ok = owner.split('/').count() >= 2
            && !owner.split('/').any(str::is_empty)
            && !owner.chars().any(char::is_control);
        if ok {
            Ok(Self(owner.to_owned()))
        } else {
            Err(InvalidOwnerPath(owner.to_owned()))
        }
    }

    /// The user the path belongs to: its first segment.
    pub fn user(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }

    /// Whether the path belongs to `username`.
    pub fn belongs_to(&self, username: &str) -> bool {
        self.user() == username
    }

    /// The path as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OwnerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
