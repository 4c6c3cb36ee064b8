//! Saved searches: `GET/POST /api/v1/searches`, `DELETE /api/v1/searches/{name}`, and the
//! queue's forms `POST /searches` and `POST /searches/{name}/delete` (pages without
//! JavaScript). A search is saved in the user's Mattermost preferences before it is answered
//! ([`crate::sync::SyncEngine::save_search`]): the queue lists it on every device.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::WebError;
use super::session::{self, ApiUser, PageUser};
use super::views::{QueueFilter, QueuePage};
use crate::inbox::searches::{MAX_SAVED, SavedSearch};
use crate::store::UserId;
use crate::sync::SyncError;

/// Body of `POST /api/v1/searches` (the form has the same fields, plus `csrf`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    pub q: String,
    #[serde(default)]
    pub label: String,
    /// The view it was made in (`all` when absent).
    #[serde(default)]
    pub filter: String,
    /// A team id, or absent / empty for every team.
    #[serde(default)]
    pub team: String,
}

/// Where a saved search leads: the queue with its view, team and text.
#[must_use]
pub fn href(s: &SavedSearch) -> String {
    QueuePage::url(
        QueueFilter::parse(&s.filter).unwrap_or_default(),
        (!s.team.is_empty()).then_some(s.team.as_str()),
        &s.q,
    )
}

fn view(s: &SavedSearch) -> serde_json::Value {
    json!({ "name": s.name, "label": s.label, "q": s.q, "filter": s.filter, "team": s.team, "href": href(s) })
}

/// Checks and saves one search of the user (Mattermost first, then the cache).
async fn save(state: &AppState, user: &UserId, body: SearchBody) -> Result<SavedSearch, WebError> {
    let search = SavedSearch::new(&body.label, &body.q, &body.filter, &body.team)
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let saved = state
        .store()
        .for_user(user)
        .saved_searches()
        .map_err(WebError::internal)?;
    if saved.len() >= MAX_SAVED && !saved.iter().any(|s| s.name == search.name) {
        return Err(WebError::BadRequest(format!(
            "at most {MAX_SAVED} saved searches; remove one first"
        )));
    }
    state
        .engine()
        .save_search(user, search.clone())
        .await
        .map_err(upstream_error)?;
    Ok(search)
}

/// Forgets one saved search of the user; another user's (or an unknown) name is not found.
async fn forget(state: &AppState, user: &UserId, name: &str) -> Result<(), WebError> {
    let known = state
        .store()
        .for_user(user)
        .saved_searches()
        .map_err(WebError::internal)?
        .iter()
        .any(|s| s.name == name);
    if !known {
        return Err(WebError::NotFound);
    }
    state
        .engine()
        .forget_search(user, name)
        .await
        .map_err(upstream_error)
}

/// Mattermost's answer to a preference write, as the user should hear it.
fn upstream_error(e: SyncError) -> WebError {
    match e {
        SyncError::Mattermost(e) if e.is_retryable() || e.status().is_none() => {
            WebError::Unavailable
        }
        SyncError::Mattermost(e) => WebError::Upstream(
            e.api_id()
                .map_or_else(|| "it did not save the search".to_owned(), str::to_owned),
        ),
        SyncError::BadAction(_) => WebError::Unavailable,
        e => WebError::internal(e),
    }
}

/// `GET /api/v1/searches` — the user's saved searches, by label.
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Response, WebError> {
    let saved = state
        .store()
        .for_user(&user.user_id)
        .saved_searches()
        .map_err(WebError::internal)?;
    let searches: Vec<_> = saved.iter().map(view).collect();
    Ok(Json(json!({ "searches": searches })).into_response())
}

/// `POST /api/v1/searches` — save a search (201 once Mattermost has it).
pub async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    body: Bytes,
) -> Result<Response, WebError> {
    let body: SearchBody = serde_json::from_slice(&body).map_err(|e| {
        WebError::BadRequest(format!(
            "the body must be a JSON object with `q` (and `label`, `filter`, `team`): {e}"
        ))
    })?;
    let search = save(&state, &user.user_id, body).await?;
    Ok((StatusCode::CREATED, Json(view(&search))).into_response())
}

/// `DELETE /api/v1/searches/{name}` — forget a saved search (204).
pub async fn delete(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    forget(&state, &user.user_id, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /searches` — the queue's "Save search" form: back to the search it saved.
pub async fn create_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageUser(user): PageUser,
    body: Bytes,
) -> Result<Response, WebError> {
    session::check_fetch_site(&headers)?;
    let mut csrf = None;
    let mut fields = SearchBody::default();
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "csrf" => csrf = Some(v.into_owned()),
            "q" => fields.q = v.into_owned(),
            "label" => fields.label = v.into_owned(),
            "filter" => fields.filter = v.into_owned(),
            "team" => fields.team = v.into_owned(),
            _ => {}
        }
    }
    user.check_csrf(csrf.as_deref())?;
    let search = save(&state, &user.user_id, fields).await?;
    Ok(Redirect::to(&href(&search)).into_response())
}

/// `POST /searches/{name}/delete` — the sidebar's remove button: back to the queue.
pub async fn delete_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageUser(user): PageUser,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    session::check_fetch_site(&headers)?;
    let csrf = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    user.check_csrf(csrf.as_deref())?;
    forget(&state, &user.user_id, &name).await?;
    Ok(Redirect::to("/").into_response())
}
