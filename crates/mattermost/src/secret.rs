//! Types that keep secrets and message text out of logs *by construction*.
//!
//! - [`Secret`]: bearer tokens, OAuth client secrets, PKCE verifiers. `Debug` prints
//!   `Secret([redacted])`; the value is only reachable through [`Secret::expose`].
//! - [`MessageText`]: the text of a post. `Debug` prints only its length, so `?post` in a
//!   `tracing` call can never leak what somebody wrote.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string (token, client secret, PKCE verifier). Cheap to clone.
///
/// There is deliberately no `Display` and no `Serialize`: to send or persist the value, call
/// [`Secret::expose`] at the one place that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    /// The secret value. Never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string (e.g. the `refresh_token` of a public OAuth client).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// The text of a post (or of a post being written).
///
/// Serialized and deserialized as a plain JSON string. `Debug` prints only the length in
/// bytes, e.g. `MessageText(len=42)`, and there is no `Display`: read the text with
/// [`MessageText::as_str`] where it is really needed (rendering, sending).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct MessageText(String);

impl MessageText {
    /// Wrap a message text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The text itself. Never log it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consume the wrapper and return the text.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty (deleted posts come back with `message: ""`, research §0 trap 10).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for MessageText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageText(len={})", self.0.len())
    }
}

impl From<String> for MessageText {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for MessageText {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl Serialize for MessageText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MessageText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `null` is tolerated as "" (a Go string is never null, but be lenient).
        Option::<String>::deserialize(deserializer).map(|s| Self(s.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2-token");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert!(!format!("{:?}", Some(s.clone())).contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-token");
    }

    #[test]
    fn message_text_debug_prints_length_only() {
        let m = MessageText::new("top secret plans");
        assert_eq!(format!("{m:?}"), "MessageText(len=16)");
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"top secret plans\"");
        let back: MessageText = serde_json::from_str("\"hi\"").unwrap();
        assert_eq!(back.as_str(), "hi");
        let null: MessageText = serde_json::from_str("null").unwrap();
        assert!(null.is_empty());
    }
}
