//! REST routes under `/api/v4` (research §1-§7). All routes are listed here; one handler module
//! per resource. Handlers stay short: parse, lock the state once, answer.

mod channels;
pub mod png;
mod posts;
mod system;
mod threads;
mod users;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderValue, Method, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use crate::Sim;
use crate::error::{ApiResult, AppError};
use crate::model::Id;
use crate::state::SessionKind;

/// Build number and client-config hash in `X-Version-Id` (`{version}.{build}.{hash}.{licensed}`).
pub const BUILD_NUMBER: &str = "dev";
pub const CONFIG_HASH: &str = "6f1bd2bb1bd0e4a9cdbc8a9d7b9c4e53";

pub fn routes() -> Router<Sim> {
    let v4 = Router::new()
        // users, sessions, tokens, statuses, preferences
        .route("/users/login", post(users::login))
        .route("/users/logout", post(users::logout))
        .route("/users/ids", post(users::by_ids))
        .route("/users/status/ids", post(users::statuses_by_ids))
        .route("/users/tokens/revoke", post(users::revoke_token))
        .route("/users/username/{username}", get(users::by_username))
        .route("/users/{user_id}", get(users::get_user))
        .route("/users/{user_id}/image", get(users::image))
        .route("/users/{user_id}/status", get(users::status))
        .route(
            "/users/{user_id}/tokens",
            get(users::list_tokens).post(users::create_token),
        )
        .route(
            "/users/{user_id}/preferences",
            get(users::get_preferences).put(users::put_preferences),
        )
        .route(
            "/users/{user_id}/preferences/delete",
            post(users::delete_preferences),
        )
        .route(
            "/users/{user_id}/preferences/{category}",
            get(users::preferences_by_category),
        )
        .route(
            "/users/{user_id}/preferences/{category}/name/{name}",
            get(users::preference_by_name),
        )
        // teams and channels
        .route("/teams/{team_id}", get(channels::get_team))
        .route("/users/{user_id}/teams", get(channels::user_teams))
        .route(
            "/users/{user_id}/teams/members",
            get(channels::user_team_members),
        )
        .route("/users/{user_id}/teams/unread", get(channels::teams_unread))
        .route(
            "/users/{user_id}/teams/{team_id}/unread",
            get(channels::team_unread),
        )
        .route(
            "/users/{user_id}/teams/{team_id}/channels",
            get(channels::team_channels),
        )
        .route(
            "/users/{user_id}/teams/{team_id}/channels/members",
            get(channels::team_channel_members),
        )
        .route("/users/{user_id}/channels", get(channels::user_channels))
        .route(
            "/users/{user_id}/channel_members",
            get(channels::user_channel_members),
        )
        .route(
            "/users/{user_id}/channels/{channel_id}/unread",
            get(channels::channel_unread),
        )
        .route("/channels/direct", post(channels::create_direct))
        .route("/channels/group", post(channels::create_group))
        .route("/channels/members/{user_id}/view", post(channels::view))
        .route(
            "/channels/members/{user_id}/mark_read",
            post(channels::mark_read),
        )
        .route("/channels/{channel_id}", get(channels::get_channel))
        .route(
            "/channels/{channel_id}/members/{user_id}",
            get(channels::get_member),
        )
        .route(
            "/channels/{channel_id}/members/{user_id}/notify_props",
            put(channels::notify_props),
        )
        // posts, reactions, files
        .route("/channels/{channel_id}/posts", get(posts::channel_posts))
        .route("/posts", post(posts::create))
        .route("/posts/ids", post(posts::by_ids))
        .route("/posts/ids/reactions", post(posts::reactions_by_ids))
        .route(
            "/posts/{post_id}",
            get(posts::get_post)
                .put(posts::update)
                .delete(posts::delete),
        )
        .route("/posts/{post_id}/patch", put(posts::patch))
        .route("/posts/{post_id}/thread", get(posts::thread))
        .route("/posts/{post_id}/reactions", get(posts::reactions))
        .route("/posts/{post_id}/files/info", get(posts::files_info))
        .route("/reactions", post(posts::add_reaction))
        .route(
            "/users/{user_id}/posts/{post_id}/reactions/{emoji_name}",
            axum::routing::delete(posts::remove_reaction),
        )
        .route(
            "/users/{user_id}/posts/{post_id}/set_unread",
            post(posts::set_unread),
        )
        .route("/users/{user_id}/posts/flagged", get(posts::flagged))
        .route("/files/{file_id}", get(posts::file_content))
        .route("/files/{file_id}/thumbnail", get(posts::file_thumbnail))
        .route("/files/{file_id}/preview", get(posts::file_preview))
        .route("/files/{file_id}/info", get(posts::file_info))
        // collapsed reply threads
        .route(
            "/users/{user_id}/teams/{team_id}/threads",
            get(threads::list),
        )
        .route(
            "/users/{user_id}/teams/{team_id}/threads/read",
            put(threads::read_all),
        )
        .route(
            "/users/{user_id}/teams/{team_id}/threads/{thread_id}",
            get(threads::get_one),
        )
        .route(
            "/users/{user_id}/teams/{team_id}/threads/{thread_id}/read/{timestamp}",
            put(threads::read),
        )
        .route(
            "/users/{user_id}/teams/{team_id}/threads/{thread_id}/set_unread/{post_id}",
            post(threads::set_unread),
        )
        .route(
            "/users/{user_id}/teams/{team_id}/threads/{thread_id}/following",
            put(threads::follow).delete(threads::unfollow),
        )
        // emoji, system, config
        .route("/emoji", get(system::emoji_list))
        .route("/emoji/name/{name}", get(system::emoji_by_name))
        .route("/emoji/{emoji_id}", get(system::emoji_get))
        .route("/emoji/{emoji_id}/image", get(system::emoji_image))
        .route("/system/ping", get(system::ping))
        .route("/config/client", get(system::client_config))
        .merge(crate::oauth::api_routes())
        .route("/{*rest}", any(unknown_route));
    Router::new()
        .nest("/api/v4", v4)
        .layer(middleware::from_fn(api_headers))
}

/// 404 for an unknown `/api/v4` route (trap 21).
async fn unknown_route(axum::extract::OriginalUri(uri): axum::extract::OriginalUri) -> AppError {
    AppError::unknown_route(uri.path())
}

/// `X-Version-Id` value.
#[must_use]
pub fn version_id() -> String {
    format!(
        "{}.{BUILD_NUMBER}.{CONFIG_HASH}.false",
        crate::SERVER_VERSION
    )
}

/// Headers every API response carries (`handlers.go` `ServeHTTP`, research §1), and the
/// request id filled into AppError bodies.
pub async fn api_headers(req: Request, next: Next) -> Response {
    let is_get = req.method() == Method::GET;
    let request_id = Id::random().to_string();
    let mut resp = next.run(req).await;
    if let Some(mut err) = resp.extensions_mut().remove::<AppError>() {
        err.request_id.clone_from(&request_id);
        let status = resp.status();
        let cookies: Vec<HeaderValue> = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        resp = (status, Json(&err)).into_response();
        for c in cookies {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&version_id()) {
        h.insert("x-version-id", v);
    }
    h.entry(header::CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/json"));
    if is_get && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::EXPIRES, HeaderValue::from_static("0"));
    }
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// An authenticated request (research §2.1): cookie `MMAUTHTOKEN` first, then
/// `Authorization: Bearer|Token`, then `access_token` query (OAuth sessions only). A
/// cookie-authenticated non-GET needs `X-CSRF-Token` (or `X-Requested-With: XMLHttpRequest`).
#[derive(Clone, Debug)]
pub struct Auth {
    pub user: Id,
    pub token: String,
    pub kind: SessionKind,
}

impl Auth {
    #[must_use]
    pub fn is_oauth(&self) -> bool {
        matches!(self.kind, SessionKind::OAuth(_))
    }

    /// Resolve a `{user_id}` path segment (`me` allowed); other users → 403.
    pub fn own_user(&self, raw: &str) -> ApiResult<Id> {
        let id = self.any_user(raw)?;
        if id == self.user {
            Ok(id)
        } else {
            Err(AppError::permissions())
        }
    }

    /// Resolve a `{user_id}` path segment (`me` allowed) without the ownership check.
    pub fn any_user(&self, raw: &str) -> ApiResult<Id> {
        if raw == "me" {
            return Ok(self.user);
        }
        Id::parse(raw).ok_or_else(|| AppError::invalid_url_param("user_id"))
    }
}

/// The token a request carries and whether it came from the cookie.
#[must_use]
pub fn request_token(headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(token) = cookie(headers, "MMAUTHTOKEN") {
        return Some((token, true));
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if auth.len() > 6 && auth[..6].eq_ignore_ascii_case("bearer") {
        return Some((auth.get(7..)?.trim().to_owned(), false));
    }
    if auth.len() > 5 && auth[..5].eq_ignore_ascii_case("token") {
        return Some((auth.get(6..)?.trim().to_owned(), false));
    }
    None
}

/// A cookie value from the `Cookie` headers.
#[must_use]
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

impl FromRequestParts<Sim> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, sim: &Sim) -> Result<Self, Self::Rejection> {
        let from_query = || {
            let q = Params::from_query(parts.uri.query());
            q.get("access_token").map(|t| (t.to_owned(), false))
        };
        let (token, from_cookie) = request_token(&parts.headers)
            .or_else(from_query)
            .ok_or_else(AppError::session_expired)?;
        let session = sim
            .with_state(|s| s.session(&token).cloned())
            .ok_or_else(AppError::session_expired)?;
        if from_cookie && parts.method != Method::GET {
            let csrf_ok = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| !session.csrf.is_empty() && v == session.csrf);
            let xhr = parts
                .headers
                .get("x-requested-with")
                .is_some_and(|v| v.as_bytes() == b"XMLHttpRequest");
            if !csrf_ok && !xhr {
                return Err(AppError::session_expired().with_detail("Appears to be a CSRF attempt"));
            }
        }
        Ok(Self {
            user: session.user_id,
            token,
            kind: session.kind,
        })
    }
}

/// Query parameters, parsed leniently like `web/params.go`.
#[derive(Clone, Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    #[must_use]
    pub fn from_query(q: Option<&str>) -> Self {
        Self(serde_urlencoded::from_str(q.unwrap_or_default()).unwrap_or_default())
    }

    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Go `strconv.ParseBool`, invalid → false.
    #[must_use]
    pub fn bool(&self, name: &str) -> bool {
        matches!(
            self.get(name),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }

    /// Flags compared with the literal `"true"` (research §1).
    #[must_use]
    pub fn literal_true(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }

    #[must_use]
    pub fn i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(|v| v.parse().ok())
    }

    /// `page`: default 0, invalid or negative → 0.
    #[must_use]
    pub fn page(&self) -> usize {
        self.i64("page")
            .and_then(|p| usize::try_from(p).ok())
            .unwrap_or(0)
    }

    /// `per_page`: default 60, clamped to 200, negative or invalid → 60, 0 allowed (trap 16).
    #[must_use]
    pub fn per_page(&self) -> usize {
        match self.i64("per_page") {
            Some(n) if n > 200 => 200,
            Some(n) if n >= 0 => usize::try_from(n).unwrap_or(60),
            _ => 60,
        }
    }

    /// An optional id parameter: absent/empty → `None`, malformed → 400.
    pub fn id(&self, name: &str) -> ApiResult<Option<Id>> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => Id::parse(v)
                .map(Some)
                .ok_or_else(|| AppError::invalid_url_param(name)),
        }
    }
}

/// Query extractor (never fails).
impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_query(parts.uri.query()))
    }
}

/// Parse a JSON body; malformed → 400 `api.context.invalid_body_param.app_error` naming `what`.
pub fn parse_body<T: DeserializeOwned>(body: &[u8], what: &str) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|_| AppError::invalid_body_param(what))
}

/// Parse a path id; malformed → 400 `api.context.invalid_url_param.app_error`.
pub fn path_id(raw: &str, name: &str) -> ApiResult<Id> {
    Id::parse(raw).ok_or_else(|| AppError::invalid_url_param(name))
}

/// A JSON array of ids from a body.
pub fn parse_ids(body: &[u8], what: &str) -> ApiResult<Vec<Id>> {
    let raw: Vec<String> = parse_body(body, what)?;
    raw.iter()
        .map(|s| Id::parse(s).ok_or_else(|| AppError::invalid_body_param(what)))
        .collect()
}

/// A binary response (images, files) with its content type.
pub fn bytes_response(content_type: &str, bytes: Vec<u8>, cache: Option<&'static str>) -> Response {
    let mut resp = Response::new(Body::from(bytes));
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if let Some(c) = cache {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(c));
    }
    resp
}
