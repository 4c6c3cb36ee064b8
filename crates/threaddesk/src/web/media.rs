//! Avatars, file thumbnails/previews/downloads and custom emoji, fetched from the configured
//! Mattermost with the signed-in user's own token — so Mattermost's permission checks apply,
//! and the browser never loads anything from another origin.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::WebError;
use super::session::PageUser;
use crate::account;

/// A Mattermost id: 26 lowercase letters/digits.
#[must_use]
pub fn valid_id(id: &str) -> bool {
    crate::inbox::is_valid_id(id)
}

/// A per-user Mattermost client for media requests.
async fn client(state: &AppState, user: &PageUser) -> Result<mattermost::Client, WebError> {
    state
        .user_client(&user.0.user_id)
        .await
        .map_err(|e| match e {
            account::AccountError::Missing => WebError::Unauthenticated,
            account::AccountError::Revoked => WebError::AccessEnded,
            other => WebError::internal(other),
        })
}

/// [`respond`], but a token Mattermost refused (401) ends the user's access (see
/// [`super::session::end_access`]) and the answer says so.
async fn proxied(
    state: &AppState,
    user: &PageUser,
    result: mattermost::Result<mattermost::models::FileBytes>,
    cache: &'static str,
    attachment: bool,
) -> Response {
    match result {
        Err(e) if e.is_unauthorized() => {
            super::session::end_access(state, &user.0.user_id).await;
            super::session::access_ended_response(state, false)
        }
        other => respond(other, cache, attachment),
    }
}

/// The media client, or the end of the user's access when their refresh token was refused.
async fn client_or_end(state: &AppState, user: &PageUser) -> Result<mattermost::Client, Response> {
    match client(state, user).await {
        Ok(c) => Ok(c),
        Err(WebError::AccessEnded) => {
            super::session::end_access(state, &user.0.user_id).await;
            Err(super::session::access_ended_response(state, false))
        }
        Err(e) => Err(e.into_response()),
    }
}

fn respond(
    result: mattermost::Result<mattermost::models::FileBytes>,
    cache: &'static str,
    attachment: bool,
) -> Response {
    match result {
        Ok(f) => {
            // Only image types are shown inline; everything else downloads (no HTML/SVG from
            // message attachments is ever rendered in ThreadDesk's origin).
            let ct = f
                .content_type
                .filter(|c| c.starts_with("image/") && !c.contains("svg"))
                .unwrap_or_else(|| "application/octet-stream".to_owned());
            let inline_ok = ct.starts_with("image/");
            let mut res = (StatusCode::OK, f.bytes).into_response();
            let h = res.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&ct) {
                h.insert(header::CONTENT_TYPE, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            if attachment || !inline_ok {
                h.insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment"),
                );
            }
            res
        }
        Err(e) if e.is_not_found() || e.status() == Some(403) => WebError::NotFound.into_response(),
        Err(e) if e.is_unauthorized() => WebError::Unauthenticated.into_response(),
        Err(e) => {
            tracing::warn!(status = ?e.status(), "media fetch failed");
            WebError::Unavailable.into_response()
        }
    }
}

/// `GET /media/avatar/{user_id}`
pub async fn avatar(
    State(state): State<AppState>,
    user: PageUser,
    Path(user_id): Path<String>,
) -> Result<Response, WebError> {
    if !valid_id(&user_id) {
        return Err(WebError::BadRequest("not a Mattermost user id".into()));
    }
    let c = match client_or_end(&state, &user).await {
        Ok(c) => c,
        Err(res) => return Ok(res),
    };
    let url = format!("{}/api/v4/users/{user_id}/image", state.mattermost_url());
    Ok(proxied(
        &state,
        &user,
        c.get_url_bytes(&url).await,
        "private, max-age=3600",
        false,
    )
    .await)
}

/// `GET /media/files/{file_id}` (download).
pub async fn file(
    State(state): State<AppState>,
    user: PageUser,
    Path(file_id): Path<String>,
) -> Result<Response, WebError> {
    if !valid_id(&file_id) {
        return Err(WebError::BadRequest("not a Mattermost file id".into()));
    }
    let c = match client_or_end(&state, &user).await {
        Ok(c) => c,
        Err(res) => return Ok(res),
    };
    Ok(proxied(
        &state,
        &user,
        c.get_file(&file_id).await,
        "private, no-store",
        true,
    )
    .await)
}

/// `GET /media/files/{file_id}/thumbnail` and `/preview`.
pub async fn file_variant(
    State(state): State<AppState>,
    user: PageUser,
    Path((file_id, variant)): Path<(String, String)>,
) -> Result<Response, WebError> {
    if !valid_id(&file_id) {
        return Err(WebError::BadRequest("not a Mattermost file id".into()));
    }
    let c = match client_or_end(&state, &user).await {
        Ok(c) => c,
        Err(res) => return Ok(res),
    };
    let result = match variant.as_str() {
        "thumbnail" => c.get_file_thumbnail(&file_id).await,
        "preview" => c.get_file_preview(&file_id).await,
        _ => return Err(WebError::NotFound),
    };
    Ok(proxied(&state, &user, result, "private, max-age=3600", false).await)
}

/// `GET /media/emoji/{emoji_id}`
pub async fn emoji(
    State(state): State<AppState>,
    user: PageUser,
    Path(emoji_id): Path<String>,
) -> Result<Response, WebError> {
    if !valid_id(&emoji_id) {
        return Err(WebError::BadRequest("not a Mattermost emoji id".into()));
    }
    let c = match client_or_end(&state, &user).await {
        Ok(c) => c,
        Err(res) => return Ok(res),
    };
    let url = format!("{}/api/v4/emoji/{emoji_id}/image", state.mattermost_url());
    Ok(proxied(
        &state,
        &user,
        c.get_url_bytes(&url).await,
        "private, max-age=86400",
        false,
    )
    .await)
}
