//! One web error type: the user sees a fixed, clear phrase; the detail goes to the log (ids and
//! error kinds only — never message text).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("sign in first")]
    Unauthenticated,
    /// Mattermost refused the user's token (revoked, logged out, deauthorized): the user's
    /// sessions have been ended (see [`super::session::end_access`]).
    #[error("{}", super::session::ACCESS_ENDED)]
    AccessEnded,
    #[error("the request was refused: missing or wrong CSRF token")]
    Csrf,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    /// The request is valid but the resource is not in a state that allows it (409).
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts; wait a minute and try again")]
    Throttled,
    #[error("Mattermost refused the request: {0}")]
    Upstream(String),
    #[error("Mattermost cannot be reached right now; try again shortly")]
    Unavailable,
    #[error(
        "ThreadDesk cannot write to its data directory right now (the disk is full, read-only or failing): this was not recorded and will not be sent; try again later"
    )]
    StorageUnavailable,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl WebError {
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated | Self::AccessEnded => StatusCode::UNAUTHORIZED,
            Self::Csrf => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable | Self::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let Self::Internal(e) = &self {
            // The chain holds only technical errors (store, I/O); message text never enters them.
            tracing::error!(error = %format!("{e:#}"), "request failed");
        }
        let status = self.status();
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}
