//! Posts, reactions and files (research §4).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Auth, Params, bytes_response, parse_body, parse_ids, path_id, png};
use crate::Sim;
use crate::error::{ApiResult, AppError};
use crate::model::{self, Id, STATUS_OK};
use crate::state::posts::{Dedup, PostView};
use crate::state::{FileBlob, NewPost, PostListQuery, PostPatch, ThreadQuery};

/// `GET /channels/{c}/posts` (research §4.2; precedence since > after > before > page).
pub async fn channel_posts(
    State(sim): State<Sim>,
    auth: Auth,
    Path(channel_id): Path<String>,
    q: Params,
) -> ApiResult<Json<model::PostList>> {
    let channel = path_id(&channel_id, "channel_id")?;
    let since = q.i64("since").filter(|s| *s > 0);
    if q.get("since").is_some_and(|s| !s.is_empty()) && since.is_none() {
        return Err(AppError::invalid_url_param("since"));
    }
    let query = PostListQuery {
        page: q.page(),
        per_page: q.per_page(),
        since,
        before: q.id("before")?,
        after: q.id("after")?,
        skip_fetch_threads: q.bool("skipFetchThreads"),
        collapsed: q.bool("collapsedThreads"),
        extended: q.bool("collapsedThreadsExtended"),
    };
    if q.bool("include_deleted") {
        return Err(AppError::permissions());
    }
    sim.with_state(|s| s.channel_posts_list(auth.user, channel, &query))
        .map(Json)
}

#[derive(Deserialize)]
pub struct CreatePostBody {
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    root_id: String,
    #[serde(default)]
    file_ids: Vec<String>,
    #[serde(default)]
    props: Option<Map<String, Value>>,
    #[serde(default)]
    pending_post_id: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    metadata: Option<MetadataIn>,
}

#[derive(Deserialize)]
pub struct MetadataIn {
    #[serde(default)]
    priority: Option<model::PostPriority>,
}

fn new_post_from(body: CreatePostBody, auth: &Auth, set_online: bool) -> ApiResult<NewPost> {
    let channel_id = Id::parse(&body.channel_id)
        .ok_or_else(|| AppError::invalid_body_param("post.channel_id"))?;
    let root_id = match body.root_id.as_str() {
        "" => None,
        raw => Some(Id::parse(raw).ok_or_else(|| AppError::invalid_body_param("post.root_id"))?),
    };
    let file_ids = body
        .file_ids
        .iter()
        .map(|f| Id::parse(f).ok_or_else(|| AppError::invalid_body_param("post.file_ids")))
        .collect::<ApiResult<Vec<_>>>()?;
    let mut props = body.props.unwrap_or_default();
    if auth.is_oauth() {
        props.insert("from_oauth_app".to_owned(), json!("true"));
    }
    let priority = body
        .metadata
        .and_then(|m| m.priority)
        .filter(|p| !p.priority.is_empty() || p.requested_ack.is_some());
    Ok(NewPost {
        root_id,
        file_ids,
        props,
        priority,
        pending_post_id: body.pending_post_id,
        kind: body.kind,
        set_online,
        ..NewPost::new(channel_id, body.message)
    })
}

/// `POST /posts` → 201 (research §4.3). `pending_post_id` dedup (trap 35): a duplicate while
/// the first is in flight → 500; within the window → the existing post; failures forget the key.
pub async fn create(
    State(sim): State<Sim>,
    auth: Auth,
    q: Params,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<model::Post>)> {
    let body: CreatePostBody = parse_body(&body, "post")?;
    let set_online = q
        .get("set_online")
        .is_none_or(|v| !matches!(v, "0" | "f" | "F" | "false" | "FALSE" | "False"));
    let np = new_post_from(body, &auth, set_online)?;
    let pending = np.pending_post_id.clone();
    let (dedup, gate) = sim.with_state(|s| (s.dedup_begin(&pending), s.post_gate.clone()));
    match dedup {
        Dedup::InFlight => {
            return Err(AppError::internal(
                "api.post.deduplicate_create_post.pending",
                "Rejected post since another client is making the same request.",
            ));
        }
        Dedup::Existing(id) => {
            return sim
                .with_state(|s| s.get_post(auth.user, id))
                .map(|p| (StatusCode::CREATED, Json(p)));
        }
        Dedup::Proceed => {}
    }
    // Tests can hold creations here to observe the in-flight window.
    let _running = gate.read().await;
    sim.with_state(|s| {
        let result = s.create_post(auth.user, np);
        s.dedup_finish(&pending, result.as_ref().ok().copied());
        let id = result?;
        let idx = s.post_idx(id)?;
        let view = PostView {
            viewer: Some(auth.user),
            ..PostView::default()
        };
        Ok((StatusCode::CREATED, Json(s.post_json(idx, view))))
    })
}

/// `GET /posts/{id}`.
pub async fn get_post(
    State(sim): State<Sim>,
    auth: Auth,
    Path(post_id): Path<String>,
) -> ApiResult<Json<model::Post>> {
    let id = path_id(&post_id, "post_id")?;
    sim.with_state(|s| s.get_post(auth.user, id)).map(Json)
}

/// `POST /posts/ids` (≤ 1000 ids).
pub async fn by_ids(
    State(sim): State<Sim>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<Json<Vec<model::Post>>> {
    let ids = parse_ids(&body, "post_ids")?;
    if ids.is_empty() || ids.len() > 1000 {
        return Err(AppError::invalid_body_param("post_ids"));
    }
    Ok(Json(sim.with_state(|s| s.posts_by_ids(auth.user, &ids))))
}

#[derive(Deserialize)]
pub struct PatchBody {
    message: Option<String>,
    props: Option<Map<String, Value>>,
    is_pinned: Option<bool>,
    file_ids: Option<Vec<String>>,
    id: Option<String>,
}

fn to_patch(body: PatchBody) -> ApiResult<PostPatch> {
    let file_ids = body
        .file_ids
        .map(|ids| {
            ids.iter()
                .map(|f| Id::parse(f).ok_or_else(|| AppError::invalid_body_param("file_ids")))
                .collect::<ApiResult<Vec<_>>>()
        })
        .transpose()?;
    Ok(PostPatch {
        message: body.message,
        props: body.props,
        is_pinned: body.is_pinned,
        file_ids,
    })
}

/// `PUT /posts/{id}/patch` → `post_edited`.
pub async fn patch(
    State(sim): State<Sim>,
    auth: Auth,
    Path(post_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<model::Post>> {
    let id = path_id(&post_id, "post_id")?;
    let patch = to_patch(parse_body(&body, "patch")?)?;
    sim.with_state(|s| s.patch_post(auth.user, id, patch))
        .map(Json)
}

/// `PUT /posts/{id}`: full update; the body's `id` must match the URL.
pub async fn update(
    State(sim): State<Sim>,
    auth: Auth,
    Path(post_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<model::Post>> {
    let id = path_id(&post_id, "post_id")?;
    let body: PatchBody = parse_body(&body, "post")?;
    if body.id.as_deref() != Some(id.as_str()) {
        return Err(AppError::invalid_body_param("id"));
    }
    let patch = PostPatch {
        message: Some(body.message.clone().unwrap_or_default()),
        ..to_patch(body)?
    };
    sim.with_state(|s| s.patch_post(auth.user, id, patch))
        .map(Json)
}

/// `DELETE /posts/{id}` (trap 33).
pub async fn delete(
    State(sim): State<Sim>,
    auth: Auth,
    Path(post_id): Path<String>,
    q: Params,
) -> ApiResult<Json<model::StatusOk>> {
    let id = path_id(&post_id, "post_id")?;
    if q.bool("permanent") {
        return Err(AppError::new(
            501,
            "api.post.delete_post.not_enabled.app_error",
            "Post deletion through the API is disabled.",
        ));
    }
    sim.with_state(|s| s.delete_post(auth.user, id))?;
    Ok(Json(STATUS_OK))
}

/// `GET /posts/{id}/thread` (trap 15: camelCase params, `perPage` > 200 → 400, requested post
/// first in `order`).
pub async fn thread(
    State(sim): State<Sim>,
    auth: Auth,
    Path(post_id): Path<String>,
    q: Params,
) -> ApiResult<Json<model::PostList>> {
    let id = path_id(&post_id, "post_id")?;
    let per_page = match q.get("perPage") {
        None | Some("") => 0,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= 200)
            .ok_or_else(|| AppError::invalid_url_param("perPage"))?,
    };
    let from_create_at = match q.get("fromCreateAt") {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<i64>()
                .map_err(|_| AppError::invalid_url_param("fromCreateAt"))?,
        ),
    };
    let from_post = q.id("fromPost")?;
    if from_post.is_some() && from_create_at.is_none() {
        return Err(AppError::invalid_url_param("fromCreateAt"));
    }
    let up = match q.get("direction") {
        None | Some("" | "down") => false,
        Some("up") => true,
        Some(_) => return Err(AppError::invalid_url_param("direction")),
    };
    let query = ThreadQuery {
        per_page,
        from_post,
        from_create_at,
        up,
        collapsed: q.literal_true("collapsedThreads"),
        extended: q.literal_true("collapsedThreadsExtended"),
    };
    sim.with_state(|s| s.post_thread(auth.user, id, &query))
        .map(Json)
}

#[derive(Deserialize)]
pub struct ReactionBody {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    post_id: String,
    #[serde(default)]
    emoji_name: String,
}

/// `POST /reactions` → **200** (trap 18).
pub async fn add_reaction(
    State(sim): State<Sim>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<Json<model::Reaction>> {
    let body: ReactionBody = parse_body(&body, "reaction")?;
    let user = Id::parse(&body.user_id).ok_or_else(|| AppError::invalid_body_param("user_id"))?;
    let post = Id::parse(&body.post_id).ok_or_else(|| AppError::invalid_body_param("post_id"))?;
    if user != auth.user {
        return Err(AppError::permissions());
    }
    sim.with_state(|s| s.add_reaction(user, post, &body.emoji_name))
        .map(Json)
}

/// `DELETE /users/{u}/posts/{p}/reactions/{emoji_name}`.
pub async fn remove_reaction(
    State(sim): State<Sim>,
    auth: Auth,
    Path((user_id, post_id, emoji)): Path<(String, String, String)>,
) -> ApiResult<Json<model::StatusOk>> {
    let user = auth.own_user(&user_id)?;
    let post = path_id(&post_id, "post_id")?;
    sim.with_state(|s| s.remove_reaction(user, post, &emoji))?;
    Ok(Json(STATUS_OK))
}

/// `GET /posts/{p}/reactions`.
pub async fn reactions(
    State(sim): State<Sim>,
    auth: Auth,
    Path(post_id): Path<String>,
) -> ApiResult<Json<Vec<model::Reaction>>> {
    let post = path_id(&post_id, "post_id")?;
    sim.with_state(|s| s.reactions(auth.user, post)).map(Json)
}

/// `POST /posts/ids/reactions` → `{post_id: Reaction[]}`.
pub async fn reactions_by_ids(
    State(sim): State<Sim>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let ids = parse_ids(&body, "post_ids")?;
    if ids.is_empty() || ids.len() > 200 {
        return Err(AppError::invalid_body_param("post_ids"));
    }
    let map = sim.with_state(|s| s.reactions_for(auth.user, &ids));
    Ok(Json(serde_json::to_value(map).unwrap_or(Value::Null)))
}

/// `GET /posts/{p}/files/info`.
pub async fn files_info(
    State(sim): State<Sim>,
    auth: Auth,
    Path(post_id): Path<String>,
) -> ApiResult<Json<Vec<model::FileInfo>>> {
    let post = path_id(&post_id, "post_id")?;
    sim.with_state(|s| s.post_files(auth.user, post)).map(Json)
}

#[derive(Deserialize)]
pub struct SetUnreadBody {
    #[serde(default)]
    collapsed_threads_supported: bool,
}

/// `POST /users/{u}/posts/{p}/set_unread` → `ChannelUnreadAt` with *read* counts (trap 8).
pub async fn set_unread(
    State(sim): State<Sim>,
    auth: Auth,
    Path((user_id, post_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<model::ChannelUnreadAt>> {
    let user = auth.own_user(&user_id)?;
    let post = path_id(&post_id, "post_id")?;
    let body: SetUnreadBody = if body.is_empty() {
        SetUnreadBody {
            collapsed_threads_supported: false,
        }
    } else {
        parse_body(&body, "collapsed_threads_supported")?
    };
    sim.with_state(|s| s.set_channel_unread(user, post, body.collapsed_threads_supported))
        .map(Json)
}

/// `GET /users/{u}/posts/flagged`.
pub async fn flagged(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
    q: Params,
) -> ApiResult<Json<model::PostList>> {
    let user = auth.own_user(&user_id)?;
    Ok(Json(sim.with_state(|s| {
        s.flagged_posts(user, q.page(), q.per_page())
    })))
}

/// Which rendition of a file.
#[derive(Clone, Copy)]
enum Rendition {
    Original,
    Thumbnail,
    Preview,
}

fn file_bytes(sim: &Sim, auth: &Auth, raw: &str, which: Rendition) -> ApiResult<Response> {
    let id = path_id(raw, "file_id")?;
    let (info, blob) = sim.with_state(|s| {
        let f = s.file(auth.user, id)?;
        Ok::<_, AppError>((f.info.clone(), f.blob.clone()))
    })?;
    match (blob, which) {
        (FileBlob::Png { color }, which) => {
            let (w, h) = match which {
                Rendition::Original => (info.width, info.height),
                Rendition::Thumbnail => fit(info.width, info.height, 120, 100),
                Rendition::Preview => fit(info.width, info.height, 1920, 1080),
            };
            Ok(bytes_response(
                "image/png",
                png::picture(color, w, h),
                Some("max-age=2592000, private"),
            ))
        }
        (FileBlob::Bytes(bytes), Rendition::Original) => Ok(bytes_response(
            &info.mime_type,
            bytes.to_vec(),
            Some("max-age=2592000, private"),
        )),
        (FileBlob::Bytes(_), _) => Err(AppError::new(
            400,
            "api.file.get_file_thumbnail.no_thumbnail.app_error",
            "File doesn't have a thumbnail image.",
        )),
    }
}

/// Scale `(w, h)` to fit `(max_w, max_h)`, keeping the aspect ratio.
fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    let (w, h) = (w.max(1), h.max(1));
    if w <= max_w && h <= max_h {
        return (w, h);
    }
    let scale = f64::min(
        f64::from(max_w) / f64::from(w),
        f64::from(max_h) / f64::from(h),
    );
    let sw = (f64::from(w) * scale).round().max(1.0);
    let sh = (f64::from(h) * scale).round().max(1.0);
    (sw as u32, sh as u32)
}

/// `GET /files/{id}`.
pub async fn file_content(
    State(sim): State<Sim>,
    auth: Auth,
    Path(file_id): Path<String>,
) -> ApiResult<Response> {
    file_bytes(&sim, &auth, &file_id, Rendition::Original)
}

/// `GET /files/{id}/thumbnail`.
pub async fn file_thumbnail(
    State(sim): State<Sim>,
    auth: Auth,
    Path(file_id): Path<String>,
) -> ApiResult<Response> {
    file_bytes(&sim, &auth, &file_id, Rendition::Thumbnail)
}

/// `GET /files/{id}/preview`.
pub async fn file_preview(
    State(sim): State<Sim>,
    auth: Auth,
    Path(file_id): Path<String>,
) -> ApiResult<Response> {
    file_bytes(&sim, &auth, &file_id, Rendition::Preview)
}

/// `GET /files/{id}/info`.
pub async fn file_info(
    State(sim): State<Sim>,
    auth: Auth,
    Path(file_id): Path<String>,
) -> ApiResult<Json<model::FileInfo>> {
    let id = path_id(&file_id, "file_id")?;
    sim.with_state(|s| s.file(auth.user, id).map(|f| Json(f.info.clone())))
}
