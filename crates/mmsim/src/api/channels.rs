//! Teams, channels and memberships (research §3).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Auth, Params, parse_body, parse_ids, path_id};
use crate::Sim;
use crate::error::{ApiResult, AppError};
use crate::model::{self, Id, STATUS_OK, StringMap};

/// `GET /teams/{team_id}`.
pub async fn get_team(
    State(sim): State<Sim>,
    auth: Auth,
    Path(team_id): Path<String>,
) -> ApiResult<Json<model::Team>> {
    let team = path_id(&team_id, "team_id")?;
    sim.with_state(|s| {
        let t = s.team(team)?;
        if !s.is_team_member(team, auth.user) {
            return Err(AppError::permissions());
        }
        Ok(Json(s.team_json(t)))
    })
}

/// `GET /users/{u}/teams`.
pub async fn user_teams(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Vec<model::Team>>> {
    let user = auth.own_user(&user_id)?;
    Ok(Json(sim.with_state(|s| s.teams_for_user(user))))
}

/// `GET /users/{u}/teams/members`.
pub async fn user_team_members(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Vec<model::TeamMember>>> {
    let user = auth.own_user(&user_id)?;
    Ok(Json(sim.with_state(|s| s.team_members_for_user(user))))
}

/// `GET /users/{u}/teams/unread` (`include_collapsed_threads=true` literal adds thread counts).
pub async fn teams_unread(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
    q: Params,
) -> ApiResult<Json<Vec<model::TeamUnread>>> {
    let user = auth.own_user(&user_id)?;
    let exclude = q.id("exclude_team")?;
    let with_threads = q.literal_true("include_collapsed_threads");
    Ok(Json(sim.with_state(|s| {
        let threads = with_threads.then(|| s.thread_totals_by_team(user));
        s.user_teams
            .get(&user)
            .into_iter()
            .flatten()
            .filter(|t| Some(**t) != exclude)
            .map(|t| {
                let totals = threads
                    .as_ref()
                    .map(|m| m.get(t).copied().unwrap_or_default());
                s.team_unread(user, *t, totals)
            })
            .collect()
    })))
}

/// `GET /users/{u}/teams/{t}/unread`.
pub async fn team_unread(
    State(sim): State<Sim>,
    auth: Auth,
    Path((user_id, team_id)): Path<(String, String)>,
) -> ApiResult<Json<model::TeamUnread>> {
    let user = auth.own_user(&user_id)?;
    let team = path_id(&team_id, "team_id")?;
    sim.with_state(|s| {
        s.team(team)?;
        if !s.is_team_member(team, user) {
            return Err(AppError::permissions());
        }
        Ok(Json(s.team_unread(user, team, None)))
    })
}

/// `GET /users/{u}/channels`: all teams plus DMs/GMs (research §3.2).
pub async fn user_channels(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
    q: Params,
) -> ApiResult<Json<Vec<model::Channel>>> {
    let user = auth.own_user(&user_id)?;
    let include_deleted = q.bool("include_deleted");
    Ok(Json(sim.with_state(|s| {
        s.channels_for_user(user, None, include_deleted)
            .into_iter()
            .map(|c| s.channel_json(c))
            .collect()
    })))
}

/// `GET /users/{u}/teams/{t}/channels`: the team's channels plus DMs/GMs.
pub async fn team_channels(
    State(sim): State<Sim>,
    auth: Auth,
    Path((user_id, team_id)): Path<(String, String)>,
    q: Params,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let user = auth.own_user(&user_id)?;
    let team = path_id(&team_id, "team_id")?;
    let include_deleted = q.bool("include_deleted");
    let list: Vec<model::Channel> = sim.with_state(|s| {
        if !s.is_team_member(team, user) {
            return Err(AppError::permissions());
        }
        Ok(s.channels_for_user(user, Some(team), include_deleted)
            .into_iter()
            .map(|c| s.channel_json(c))
            .collect())
    })?;
    // The server's `ChannelList.Etag`: `{version}.{id}.{t}.{delta}.{len}` where t is the
    // newest `last_post_at` / `update_at` of the list and id that channel's; a matching
    // `If-None-Match` is answered 304 with an empty body (`Context.HandleEtag`).
    let (mut id, mut t) = ("0".to_owned(), 0i64);
    for c in &list {
        if c.last_post_at > t {
            t = c.last_post_at;
            id = c.id.to_string();
        }
        if c.update_at > t {
            t = c.update_at;
            id = c.id.to_string();
        }
    }
    let etag = format!("{}.{id}.{t}.0.{}", crate::SERVER_VERSION, list.len());
    let tag = HeaderValue::from_str(&etag).ok();
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Some(tag) = tag {
            resp.headers_mut().insert(header::ETAG, tag);
        }
        return Ok(resp);
    }
    let mut resp = Json(list).into_response();
    if let Some(tag) = tag {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    Ok(resp)
}

/// `GET /users/{u}/teams/{t}/channels/members`: team t plus DM/GM memberships.
pub async fn team_channel_members(
    State(sim): State<Sim>,
    auth: Auth,
    Path((user_id, team_id)): Path<(String, String)>,
) -> ApiResult<Json<Vec<model::ChannelMember>>> {
    let user = auth.own_user(&user_id)?;
    let team = path_id(&team_id, "team_id")?;
    sim.with_state(|s| {
        if !s.is_team_member(team, user) {
            return Err(AppError::permissions());
        }
        Ok(Json(
            s.channels_for_user(user, Some(team), false)
                .into_iter()
                .filter_map(|c| s.member_json(c.id, user, user, false))
                .collect(),
        ))
    })
}

/// `GET /users/{u}/channel_members`: `ChannelMemberWithTeamData[]`; `page=-1` streams NDJSON
/// (trap 19).
pub async fn user_channel_members(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
    q: Params,
) -> ApiResult<Response> {
    let user = auth.own_user(&user_id)?;
    let members: Vec<model::ChannelMember> = sim.with_state(|s| {
        s.channels_for_user(user, None, true)
            .into_iter()
            .filter_map(|c| s.member_json(c.id, user, user, true))
            .collect()
    });
    if q.i64("page") == Some(-1) {
        let mut body = Vec::new();
        for m in &members {
            if serde_json::to_writer(&mut body, m).is_ok() {
                body.push(b'\n');
            }
        }
        let mut resp = Response::new(Body::from(body));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        return Ok(resp);
    }
    let per_page = q.per_page();
    let page: Vec<_> = members
        .into_iter()
        .skip(q.page().saturating_mul(per_page))
        .take(per_page)
        .collect();
    Ok(Json(page).into_response())
}

/// `GET /channels/{c}`.
pub async fn get_channel(
    State(sim): State<Sim>,
    auth: Auth,
    Path(channel_id): Path<String>,
) -> ApiResult<Json<model::Channel>> {
    let channel = path_id(&channel_id, "channel_id")?;
    sim.with_state(|s| {
        s.channel(channel)?;
        let c = s.readable_channel(channel, auth.user)?;
        Ok(Json(s.channel_json(c)))
    })
}

/// `GET /channels/{c}/members/{u}`.
pub async fn get_member(
    State(sim): State<Sim>,
    auth: Auth,
    Path((channel_id, user_id)): Path<(String, String)>,
) -> ApiResult<Json<model::ChannelMember>> {
    let channel = path_id(&channel_id, "channel_id")?;
    let user = auth.any_user(&user_id)?;
    sim.with_state(|s| {
        s.readable_channel(channel, auth.user)?;
        s.member_json(channel, user, auth.user, false)
            .map(Json)
            .ok_or_else(|| {
                AppError::not_found(
                    "app.channel.get_member.missing.app_error",
                    "No channel member found for that user ID and channel ID.",
                )
            })
    })
}

/// `GET /users/{u}/channels/{c}/unread` (`msg_count` as unread, trap 8).
pub async fn channel_unread(
    State(sim): State<Sim>,
    auth: Auth,
    Path((user_id, channel_id)): Path<(String, String)>,
) -> ApiResult<Json<model::ChannelUnread>> {
    let user = auth.own_user(&user_id)?;
    let channel = path_id(&channel_id, "channel_id")?;
    sim.with_state(|s| s.channel_unread(user, channel))
        .map(Json)
}

#[derive(Deserialize)]
pub struct ViewRequest {
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    prev_channel_id: String,
    #[serde(default)]
    collapsed_threads_supported: bool,
}

fn view_response(times: Map<String, Value>) -> Json<Value> {
    Json(json!({"status": "OK", "last_viewed_at_times": times}))
}

/// `POST /channels/members/{u}/view` (traps 24-25: `collapsed_threads_supported` defaults to
/// false, which marks the channel's threads read too).
pub async fn view(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let user = auth.own_user(&user_id)?;
    let req: ViewRequest = parse_body(&body, "channel_view")?;
    let mut ids = Vec::new();
    for raw in [&req.channel_id, &req.prev_channel_id] {
        if raw.is_empty() {
            continue;
        }
        let id = Id::parse(raw).ok_or_else(|| AppError::invalid_body_param("channel_view"))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    sim.with_state(|s| {
        if let Some(first) = ids.first() {
            s.readable_channel(*first, user)?;
        }
        Ok(view_response(s.view_channels(
            user,
            &ids,
            req.collapsed_threads_supported,
        )))
    })
}

/// `POST /channels/members/{u}/mark_read` (always CRT-aware).
pub async fn mark_read(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let user = auth.own_user(&user_id)?;
    let ids = parse_ids(&body, "channel_ids")?;
    if ids.is_empty() {
        return Err(AppError::invalid_body_param("channel_ids"));
    }
    sim.with_state(|s| {
        for id in &ids {
            s.readable_channel(*id, user)?;
        }
        Ok(view_response(s.view_channels(user, &ids, true)))
    })
}

/// `POST /channels/direct`: 201 also when the DM already existed.
pub async fn create_direct(
    State(sim): State<Sim>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<model::Channel>)> {
    let ids = parse_ids(&body, "user_ids")?;
    let [a, b] = ids[..] else {
        return Err(AppError::invalid_body_param("user_ids"));
    };
    if a != auth.user && b != auth.user {
        return Err(AppError::permissions());
    }
    sim.with_state(|s| {
        let id = s.direct_channel(a, b)?;
        Ok((StatusCode::CREATED, Json(s.channel_json(s.channel(id)?))))
    })
}

/// `POST /channels/group`: 3–8 users including the caller.
pub async fn create_group(
    State(sim): State<Sim>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<model::Channel>)> {
    let ids = parse_ids(&body, "user_ids")?;
    sim.with_state(|s| {
        let id = s.group_channel(auth.user, &ids)?;
        Ok((StatusCode::CREATED, Json(s.channel_json(s.channel(id)?))))
    })
}

/// `PUT /channels/{c}/members/{u}/notify_props` → `channel_member_updated`.
pub async fn notify_props(
    State(sim): State<Sim>,
    auth: Auth,
    Path((channel_id, user_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<model::StatusOk>> {
    let channel = path_id(&channel_id, "channel_id")?;
    let user = auth.own_user(&user_id)?;
    let props: StringMap = parse_body(&body, "notify_props")?;
    sim.with_state(|s| s.update_notify_props(channel, user, props))?;
    Ok(Json(STATUS_OK))
}
