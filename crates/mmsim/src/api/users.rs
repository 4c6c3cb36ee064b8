//! Users, login, tokens, statuses and preferences (research §2, §7).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Auth, Params, bytes_response, parse_body, parse_ids, png};
use crate::Sim;
use crate::error::{ApiResult, AppError};
use crate::model::{self, Id, STATUS_OK};

#[derive(Deserialize)]
pub struct LoginRequest {
    #[serde(default)]
    login_id: String,
    #[serde(default)]
    password: String,
}

/// `POST /users/login` (research §2.3): token in the `Token` header; cookies only for
/// `X-Requested-With: XMLHttpRequest`.
pub async fn login(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let req: LoginRequest = parse_body(&body, "login_id")?;
    if req.login_id.is_empty() {
        return Err(AppError::invalid_body_param("login_id"));
    }
    let (user, token, csrf) = sim.with_state(|s| {
        let (user, token) = s.login(&req.login_id, &req.password)?;
        let csrf = s
            .sessions
            .get(&token)
            .map(|x| x.csrf.clone())
            .unwrap_or_default();
        let json = s.user_json(s.user(user)?, Some(user));
        Ok::<_, AppError>((json, token, csrf))
    })?;
    let mut resp = Json(&user).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&token) {
        h.insert("token", v);
    }
    let xhr = headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes() == b"XMLHttpRequest");
    if xhr {
        let max_age = 720 * 3600;
        for c in [
            format!("MMAUTHTOKEN={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"),
            format!(
                "MMUSERID={}; Path=/; Max-Age={max_age}; SameSite=Lax",
                user.id
            ),
            format!("MMCSRF={csrf}; Path=/; Max-Age={max_age}; SameSite=Lax"),
        ] {
            if let Ok(v) = HeaderValue::from_str(&c) {
                h.append(header::SET_COOKIE, v);
            }
        }
    }
    Ok(resp)
}

/// `POST /users/logout`.
pub async fn logout(State(sim): State<Sim>, auth: Auth) -> Json<model::StatusOk> {
    sim.with_state(|s| s.logout(&auth.token));
    Json(STATUS_OK)
}

/// `GET /users/{user_id}` (`me` allowed).
pub async fn get_user(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<model::User>> {
    let id = auth.any_user(&user_id)?;
    sim.with_state(|s| Ok(Json(s.user_json(s.user(id)?, Some(auth.user)))))
}

/// `GET /users/username/{username}`.
pub async fn by_username(
    State(sim): State<Sim>,
    auth: Auth,
    Path(username): Path<String>,
) -> ApiResult<Json<model::User>> {
    sim.with_state(|s| {
        let id = s.usernames.get(&username.to_lowercase()).copied().ok_or_else(|| {
            AppError::not_found("app.user.get_by_username.app_error", "Unable to find an existing account matching your username for this team. This team may require an invite from the team owner to join.")
        })?;
        Ok(Json(s.user_json(s.user(id)?, Some(auth.user))))
    })
}

/// `POST /users/ids` (non-empty list; `since` filter).
pub async fn by_ids(
    State(sim): State<Sim>,
    auth: Auth,
    q: Params,
    body: Bytes,
) -> ApiResult<Json<Vec<model::User>>> {
    let ids = parse_ids(&body, "user_ids")?;
    if ids.is_empty() {
        return Err(AppError::invalid_body_param("user_ids"));
    }
    let since = q.i64("since");
    Ok(Json(
        sim.with_state(|s| s.users_by_ids(&ids, since, auth.user)),
    ))
}

/// `GET /users/{user_id}/image`: a generated PNG avatar.
pub async fn image(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Response> {
    let id = auth.any_user(&user_id)?;
    let (color, etag) = sim.with_state(|s| {
        let u = s.user(id)?;
        Ok::<_, AppError>((png::color_for(u.username.as_bytes()), u.last_picture_update))
    })?;
    let mut resp = bytes_response(
        "image/png",
        png::avatar(color, 128),
        Some("max-age=86400, private"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag.to_string()) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// `GET /users/{user_id}/status`.
pub async fn status(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<model::Status>> {
    let id = auth.any_user(&user_id)?;
    sim.with_state(|s| {
        s.user(id)?;
        Ok(Json(s.status_json(id)))
    })
}

/// `POST /users/status/ids`: ids must be exactly 26 chars.
pub async fn statuses_by_ids(
    State(sim): State<Sim>,
    _auth: Auth,
    body: Bytes,
) -> ApiResult<Json<Vec<model::Status>>> {
    let ids = parse_ids(&body, "user_ids")?;
    if ids.is_empty() {
        return Err(AppError::invalid_body_param("user_ids"));
    }
    Ok(Json(sim.with_state(|s| {
        ids.iter()
            .filter(|id| s.users.contains_key(id))
            .map(|id| s.status_json(*id))
            .collect()
    })))
}

#[derive(Deserialize)]
pub struct TokenRequest {
    #[serde(default)]
    description: String,
}

/// `POST /users/{user_id}/tokens` (research §2.2): 501 when disabled, 403 from an OAuth session.
pub async fn create_token(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<model::UserAccessToken>> {
    let user = auth.own_user(&user_id)?;
    let req: TokenRequest = parse_body(&body, "token")?;
    if auth.is_oauth() {
        return Err(AppError::new(
            403,
            "api.context.permissions.app_error",
            "You do not have the appropriate permissions.",
        ));
    }
    sim.with_state(|s| s.create_pat(user, &req.description))
        .map(Json)
}

/// `GET /users/{user_id}/tokens` (no `token` values).
pub async fn list_tokens(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Vec<model::UserAccessToken>>> {
    let user = auth.own_user(&user_id)?;
    Ok(Json(sim.with_state(|s| s.list_pats(user))))
}

#[derive(Deserialize)]
pub struct RevokeRequest {
    #[serde(default)]
    token_id: String,
}

/// `POST /users/tokens/revoke`.
pub async fn revoke_token(
    State(sim): State<Sim>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<Json<model::StatusOk>> {
    let req: RevokeRequest = parse_body(&body, "token_id")?;
    let id = Id::parse(&req.token_id).ok_or_else(|| AppError::invalid_body_param("token_id"))?;
    sim.with_state(|s| s.revoke_pat(auth.user, id))?;
    Ok(Json(STATUS_OK))
}

/// `GET /users/{user_id}/preferences`.
pub async fn get_preferences(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Vec<model::Preference>>> {
    let user = auth.own_user(&user_id)?;
    Ok(Json(sim.with_state(|s| s.preferences(user))))
}

/// `PUT /users/{user_id}/preferences` (1–100 items, all for the user) → `preferences_changed`.
pub async fn put_preferences(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<model::StatusOk>> {
    let user = auth.own_user(&user_id)?;
    let prefs: Vec<model::Preference> = parse_body(&body, "preferences")?;
    sim.with_state(|s| s.save_preferences(user, prefs))?;
    Ok(Json(STATUS_OK))
}

/// `POST /users/{user_id}/preferences/delete` → `preferences_deleted`.
pub async fn delete_preferences(
    State(sim): State<Sim>,
    auth: Auth,
    Path(user_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<model::StatusOk>> {
    let user = auth.own_user(&user_id)?;
    let prefs: Vec<model::Preference> = parse_body(&body, "preferences")?;
    sim.with_state(|s| s.delete_preferences(user, prefs))?;
    Ok(Json(STATUS_OK))
}

/// `GET /users/{user_id}/preferences/{category}`.
pub async fn preferences_by_category(
    State(sim): State<Sim>,
    auth: Auth,
    Path((user_id, category)): Path<(String, String)>,
) -> ApiResult<Json<Vec<model::Preference>>> {
    let user = auth.own_user(&user_id)?;
    let prefs = sim.with_state(|s| s.preferences(user));
    let list: Vec<_> = prefs
        .into_iter()
        .filter(|p| p.category == category)
        .collect();
    if list.is_empty() {
        return Err(preference_not_found());
    }
    Ok(Json(list))
}

/// `GET /users/{user_id}/preferences/{category}/name/{name}`.
pub async fn preference_by_name(
    State(sim): State<Sim>,
    auth: Auth,
    Path((user_id, category, name)): Path<(String, String, String)>,
) -> ApiResult<Json<model::Preference>> {
    let user = auth.own_user(&user_id)?;
    sim.with_state(|s| {
        s.preference(user, &category, &name)
            .map(|value| model::Preference {
                user_id: user.into(),
                category: category.clone(),
                name: name.clone(),
                value: value.to_owned(),
            })
    })
    .map(Json)
    .ok_or_else(preference_not_found)
}

fn preference_not_found() -> AppError {
    AppError::not_found(
        "app.preference.get.app_error",
        "Unable to get the preference.",
    )
}
