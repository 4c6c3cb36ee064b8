//! Emoji, `/system/ping`, `/config/client` (research §7).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Auth, Params, bytes_response, path_id, png};
use crate::error::{ApiResult, AppError};
use crate::model;
use crate::{SERVER_VERSION, Sim};

fn emoji_not_found() -> AppError {
    AppError::not_found("app.emoji.get.no_result", "We couldn't find the emoji.")
}

/// `GET /emoji` (`page`, `per_page`, `sort=name`).
pub async fn emoji_list(State(sim): State<Sim>, _auth: Auth, q: Params) -> Json<Vec<model::Emoji>> {
    let per_page = q.per_page();
    let mut list = sim.with_state(|s| s.emoji.iter().map(|e| s.emoji_json(e)).collect::<Vec<_>>());
    if q.get("sort") == Some("name") {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Json(
        list.into_iter()
            .skip(q.page().saturating_mul(per_page))
            .take(per_page)
            .collect(),
    )
}

/// `GET /emoji/name/{name}`.
pub async fn emoji_by_name(
    State(sim): State<Sim>,
    _auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<model::Emoji>> {
    sim.with_state(|s| {
        s.emoji
            .iter()
            .find(|e| e.name == name)
            .map(|e| Json(s.emoji_json(e)))
    })
    .ok_or_else(emoji_not_found)
}

/// `GET /emoji/{id}`.
pub async fn emoji_get(
    State(sim): State<Sim>,
    _auth: Auth,
    Path(emoji_id): Path<String>,
) -> ApiResult<Json<model::Emoji>> {
    let id = path_id(&emoji_id, "emoji_id")?;
    sim.with_state(|s| {
        s.emoji
            .iter()
            .find(|e| e.id == id)
            .map(|e| Json(s.emoji_json(e)))
    })
    .ok_or_else(emoji_not_found)
}

/// `GET /emoji/{id}/image`.
pub async fn emoji_image(
    State(sim): State<Sim>,
    _auth: Auth,
    Path(emoji_id): Path<String>,
) -> ApiResult<Response> {
    let id = path_id(&emoji_id, "emoji_id")?;
    let name = sim
        .with_state(|s| s.emoji.iter().find(|e| e.id == id).map(|e| e.name.clone()))
        .ok_or_else(emoji_not_found)?;
    Ok(bytes_response(
        "image/png",
        png::avatar(png::color_for(name.as_bytes()), 64),
        Some("max-age=2592000, private"),
    ))
}

/// `GET /system/ping` (no session needed).
pub async fn ping(q: Params) -> Json<Value> {
    let mut body = json!({
        "status": "OK",
        "ActiveSearchBackend": "database",
        "AndroidLatestVersion": "",
        "AndroidMinVersion": "",
        "IosLatestVersion": "",
        "IosMinVersion": "",
    });
    if q.bool("get_server_status") {
        body["database_status"] = json!("OK");
        body["filestore_status"] = json!("OK");
    }
    Json(body)
}

/// `GET /config/client`: a flat map of strings (research §7).
pub async fn client_config(State(sim): State<Sim>) -> Json<Value> {
    let (site_url, pats) = sim.with_state(|s| {
        (
            s.settings.site_url.clone(),
            s.settings.enable_user_access_tokens,
        )
    });
    let b = |v: bool| if v { "true" } else { "false" };
    Json(json!({
        "Version": SERVER_VERSION,
        "BuildNumber": super::BUILD_NUMBER,
        "BuildHash": super::CONFIG_HASH,
        "BuildEnterpriseReady": "false",
        "SiteURL": site_url,
        "SiteName": "Mattermost",
        "DiagnosticsEnabled": "false",
        "CollapsedThreads": "always_on",
        "PostPriority": "true",
        "TeammateNameDisplay": "username",
        "EnableCustomEmoji": "true",
        "EnableUserAccessTokens": b(pats),
        "EnableOAuthServiceProvider": "true",
        "EnableLinkPreviews": "true",
        "EnableUserStatuses": "true",
        "AllowSyncedDrafts": "true",
        "EnableChannelViewedMessages": "true",
        "MaxFileSize": "104857600",
        "MaxPostSize": "16383",
        "ThreadAutoFollow": "true",
        "ExperimentalEnableAuthenticationTransfer": "true",
        "WebsocketURL": "",
        "EnableFile": "true",
    }))
}
