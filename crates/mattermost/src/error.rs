//! The crate's error type.
//!
//! Error messages carry ids, statuses and endpoint names, never response bodies: a body can hold
//! somebody's message text (research "privacy" convention in `ARCHITECTURE.md`).

use std::time::Duration;

use serde::Deserialize;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to Mattermost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an `AppError` JSON body (research §9).
    #[error("{endpoint}: Mattermost error {status} {id}: {message}")]
    Api {
        /// HTTP status code.
        status: u16,
        /// The i18n id, e.g. `api.context.session_expired.app_error`.
        id: String,
        /// The server's (translated) message.
        message: String,
        /// The server's request id (`X-Request-ID`), for its logs.
        request_id: Option<String>,
        /// `detailed_error` (empty unless the server runs in developer mode).
        detailed_error: String,
        /// Method and path of the call, e.g. `GET /api/v4/users/me`.
        endpoint: String,
    },

    /// 429 Too Many Requests. Mattermost answers with a plain-text body and `Retry-After` /
    /// `X-RateLimit-Reset` headers, both in *seconds from now* (research §0 trap 20, §8).
    #[error("rate limited by the server; retry after {retry_after:?}")]
    RateLimited {
        /// How long to wait before the next request (`Retry-After`; 1 s if absent).
        retry_after: Duration,
        /// Time until the bucket is full again (`X-RateLimit-Reset`), when sent.
        reset: Option<Duration>,
    },

    /// A non-success status whose body is not an `AppError` (HTML error page, empty body …).
    #[error("{endpoint}: unexpected HTTP status {status}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// Method and path of the call.
        endpoint: String,
    },

    /// The call needs a token and the client has none.
    #[error("no access token configured")]
    NoToken,

    /// The request (connect or whole request) timed out.
    #[error("{endpoint}: request timed out")]
    Timeout {
        /// Method and path of the call.
        endpoint: String,
    },

    /// Connection refused/reset, TLS failure, broken body stream …
    #[error("{endpoint}: transport error: {source}")]
    Transport {
        /// Method and path of the call.
        endpoint: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// The response could not be decoded. `reason` names the JSON error class and position,
    /// never the body content.
    #[error("{endpoint}: could not decode the response: {reason}")]
    Decode {
        /// Method and path of the call.
        endpoint: String,
        /// Error class and position (e.g. `unexpected shape at line 1 column 52`).
        reason: String,
        /// The body ended early: Mattermost hand-streams some lists and an error mid-stream
        /// leaves a truncated body under status 200 (research §0 trap 19). Worth retrying.
        truncated: bool,
    },

    /// A request to a URL outside the configured Mattermost origin was refused (egress guard).
    #[error("refused to contact {origin}: only the configured Mattermost server may be called")]
    ForeignOrigin {
        /// The refused origin (scheme, host, port).
        origin: String,
    },

    /// The configured base URL is unusable.
    #[error("invalid Mattermost base URL: {0}")]
    InvalidBaseUrl(String),

    /// An argument was refused before any request was made (e.g. `per_page` > 200).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),

    /// WebSocket failure (connect, read, write, ping timeout, closed by the server).
    #[error("websocket: {0}")]
    WebSocket(String),
}

impl Error {
    /// The HTTP status, when the server answered.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Http { status, .. } => Some(*status),
            Self::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// The `AppError` id, when the server sent one.
    #[must_use]
    pub fn api_id(&self) -> Option<&str> {
        match self {
            Self::Api { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The token is missing, invalid, expired or revoked (401). For OAuth, refresh and retry;
    /// for a personal access token, the user must act.
    #[must_use]
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::NoToken) || self.status() == Some(401)
    }

    /// 404 from the server (note: Mattermost also answers 404 for an unknown route, with
    /// `message == id`, research §0 trap 21).
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Worth retrying later: 5xx, 429, timeouts and connection errors.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Timeout { .. } | Self::Transport { .. } => true,
            Self::Api { status, .. } | Self::Http { status, .. } => *status >= 500,
            Self::WebSocket(_) => true,
            Self::Decode { truncated, .. } => *truncated,
            _ => false,
        }
    }

    /// 500 `api.post.deduplicate_create_post.pending`: another request with the same
    /// `pending_post_id` is still being processed. Do not resend at once; wait and re-read
    /// (research §0 trap 35, §4.3).
    #[must_use]
    pub fn is_pending_post_duplicate(&self) -> bool {
        self.api_id() == Some("api.post.deduplicate_create_post.pending")
    }

    /// How long the server asked us to wait (429 only).
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// The server's error body (research §9). Unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AppError {
    pub id: String,
    pub message: String,
    pub detailed_error: String,
    pub request_id: Option<String>,
    #[allow(dead_code)] // decoded for completeness; the HTTP status is authoritative
    pub status_code: Option<u16>,
}

impl AppError {
    /// Decode an `AppError` body; `None` if the body is not one (needs a non-empty `id` or
    /// `message`).
    pub(crate) fn parse(body: &[u8]) -> Option<Self> {
        let e: Self = serde_json::from_slice(body).ok()?;
        (!e.id.is_empty() || !e.message.is_empty()).then_some(e)
    }
}

/// Whether a `serde_json` error means the document ended early.
pub(crate) fn is_truncation(e: &serde_json::Error) -> bool {
    e.classify() == serde_json::error::Category::Eof
}

/// Describe a `serde_json` error without quoting the input: `serde_json`'s own message may
/// include fragments of the document (`invalid type: string "…"`), which could be message text.
pub(crate) fn describe_json_error(e: &serde_json::Error) -> String {
    let class = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected shape",
        serde_json::error::Category::Eof => "truncated document",
    };
    format!("{class} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_error_parses_real_shape() {
        let body = br#"{"id":"api.context.session_expired.app_error","message":"Invalid or expired session, please login again.","detailed_error":"","request_id":"ym8u9ckhwpgq7ptu43izbkxdch","status_code":401}"#;
        let e = AppError::parse(body).unwrap();
        assert_eq!(e.id, "api.context.session_expired.app_error");
        assert_eq!(e.request_id.as_deref(), Some("ym8u9ckhwpgq7ptu43izbkxdch"));
        assert!(AppError::parse(b"limit exceeded\n").is_none());
        assert!(AppError::parse(b"{}").is_none());
    }

    #[test]
    fn helpers() {
        let api = |status: u16, id: &str| Error::Api {
            status,
            id: id.into(),
            message: String::new(),
            request_id: None,
            detailed_error: String::new(),
            endpoint: "POST /api/v4/posts".into(),
        };
        assert!(api(401, "x").is_unauthorized());
        assert!(Error::NoToken.is_unauthorized());
        assert!(api(503, "x").is_retryable());
        assert!(!api(400, "x").is_retryable());
        assert!(api(500, "api.post.deduplicate_create_post.pending").is_pending_post_duplicate());
        let rl = Error::RateLimited {
            retry_after: Duration::from_secs(2),
            reset: None,
        };
        assert!(rl.is_retryable());
        assert_eq!(rl.status(), Some(429));
        assert_eq!(rl.retry_after(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn json_error_description_does_not_quote_input() {
        let err = serde_json::from_str::<u64>("\"my secret message\"").unwrap_err();
        let d = describe_json_error(&err);
        assert!(!d.contains("secret"), "{d}");
        assert!(d.contains("line 1"));
    }
}
