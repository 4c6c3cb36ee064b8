//! Mattermost's `AppError` (research §9): `{id, message, detailed_error, request_id, status_code}`.
//!
//! `detailed_error` is always present (empty unless developer mode, trap 21) and `is_oauth` is
//! never serialized. Handlers return `AppError`; the `/api/v4` header middleware fills in
//! `request_id` (it finds the error in the response extensions and re-serializes it).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A Mattermost API error, serialized exactly like the server's `model.AppError`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{status_code} {id}: {message}")]
pub struct AppError {
    pub id: String,
    pub message: String,
    pub detailed_error: String,
    pub request_id: String,
    pub status_code: u16,
}

impl AppError {
    #[must_use]
    pub fn new(status: u16, id: &str, message: &str) -> Self {
        Self {
            id: id.to_owned(),
            message: message.to_owned(),
            detailed_error: String::new(),
            request_id: String::new(),
            status_code: status,
        }
    }

    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detailed_error = detail.into();
        self
    }

    /// 401 for a missing, unknown, revoked or expired token (`handlers.go` `ServeHTTP`).
    #[must_use]
    pub fn session_expired() -> Self {
        Self::new(
            401,
            "api.context.session_expired.app_error",
            "Invalid or expired session, please login again.",
        )
    }

    /// 403 `api.context.permissions.app_error`.
    #[must_use]
    pub fn permissions() -> Self {
        Self::new(
            403,
            "api.context.permissions.app_error",
            "You do not have the appropriate permissions.",
        )
    }

    /// 400 `api.context.invalid_url_param.app_error` (`c.SetInvalidURLParam`).
    #[must_use]
    pub fn invalid_url_param(name: &str) -> Self {
        Self::new(
            400,
            "api.context.invalid_url_param.app_error",
            &format!("Invalid or missing {name} parameter in request URL."),
        )
    }

    /// 400 `api.context.invalid_body_param.app_error` (`c.SetInvalidParam`), also used for
    /// malformed JSON bodies.
    #[must_use]
    pub fn invalid_body_param(name: &str) -> Self {
        Self::new(
            400,
            "api.context.invalid_body_param.app_error",
            &format!("Invalid or missing {name} in request body."),
        )
    }

    #[must_use]
    pub fn not_found(id: &str, message: &str) -> Self {
        Self::new(404, id, message)
    }

    #[must_use]
    pub fn internal(id: &str, message: &str) -> Self {
        Self::new(500, id, message)
    }

    /// The 404 for an unknown `/api/v4` route: untranslated (message == id) with a non-empty
    /// `detailed_error` (trap 21, `server/channels/web/web.go` `Handle404`).
    #[must_use]
    pub fn unknown_route(path: &str) -> Self {
        let id = "api.context.404.app_error";
        Self::new(404, id, id).with_detail(format!(
            "There doesn't appear to be an api call for the url='{path}'.  Typo? are you missing a team_id or user_id as part of the url?"
        ))
    }

    #[must_use]
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status_code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        resp.extensions_mut().insert(self);
        resp
    }
}

pub type ApiResult<T> = Result<T, AppError>;
