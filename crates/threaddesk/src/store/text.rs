//! Types that hold user content or secrets and cannot be logged by accident: their `Debug` and
//! `Display` print only a length. Serialisation (for the JSON API and exports) gives the content.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! redacted_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps content.
            #[must_use]
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            /// The content, for templates and the JSON API only. Never log it.
            #[must_use]
            pub fn expose(&self) -> &str {
                &self.0
            }
            /// Consumes the wrapper.
            #[must_use]
            pub fn into_inner(self) -> String {
                self.0
            }
            /// Length in bytes.
            #[must_use]
            pub fn len(&self) -> usize {
                self.0.len()
            }
            /// Whether empty.
            #[must_use]
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "[redacted {} bytes]", self.0.len())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "[redacted {} bytes]", self.0.len())
            }
        }
    };
}

redacted_string!(
    /// A message body (post message, reply text).
    MessageText
);

redacted_string!(
    /// A JSON document that may carry user content (post props, metadata, outbox payloads).
    /// Stored as text; parse it with `serde_json` where needed.
    JsonText
);

redacted_string!(
    /// A secret string (CSRF token, PKCE verifier).
    SecretText
);

/// Opaque encrypted bytes (tokens): the store never sees plaintext.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedBlob(pub Vec<u8>);

impl fmt::Debug for EncryptedBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[encrypted {} bytes]", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted() {
        let m = MessageText::new("canary secret");
        assert_eq!(format!("{m:?}"), "[redacted 13 bytes]");
        assert_eq!(format!("{m}"), "[redacted 13 bytes]");
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"canary secret\"");
        let j = JsonText::new("{\"a\":\"canary\"}");
        assert!(!format!("{j:?}").contains("canary"));
        assert_eq!(
            format!("{:?}", EncryptedBlob(vec![1, 2])),
            "[encrypted 2 bytes]"
        );
    }
}
