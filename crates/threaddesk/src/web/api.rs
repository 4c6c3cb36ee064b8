//! The JSON API under `/api/v1` (documented in `openapi.json`, served at
//! `/api/v1/openapi.json`): the queue, a conversation, and actions on an item.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::WebError;
use super::pages::{self, QueueQuery};
use super::session::ApiUser;
use crate::inbox::ItemKey;
use crate::store::{MessageText, UserId};
use crate::sync::{Action, OutboxActionError, SyncError};

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Longest reply accepted (Mattermost's default `MaxPostSize`).
pub const MAX_MESSAGE_CHARS: usize = 16_383;

/// `GET /api/v1/openapi.json`
pub async fn openapi() -> Response {
    let mut res = OPENAPI.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// `GET /api/v1/items`
pub async fn items(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    query: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, WebError> {
    let Query(query) = query.map_err(|e| WebError::BadRequest(format!("bad query string: {e}")))?;
    let req = query.validate()?;
    let us = state.store().for_user(&user.user_id);
    let pages::LoadedQueue {
        items,
        next_cursor,
        counts,
        ..
    } = pages::load_queue(&state, &us, &req)?;
    let saved = saved_set(&us)?;
    let items: Vec<serde_json::Value> = items
        .iter()
        .map(|i| with_saved(i, item_post(&i.key), &saved))
        .collect();
    Ok(Json(json!({
        "items": items,
        "next_cursor": next_cursor,
        "counts": {
            "all": counts.all, "mentions": counts.mentions, "direct": counts.direct,
            "threads": counts.threads, "snoozed": counts.snoozed, "done": counts.done,
        },
    }))
    .into_response())
}

/// `GET /api/v1/items/{key}`
pub async fn item(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(key): Path<String>,
    pctx: pages::PageCtx,
) -> Result<Response, WebError> {
    if let Some(ended) =
        super::backfill::ensure_posts_or_ended(&state, &user.user_id, &key, false).await
    {
        return Ok(ended);
    }
    let us = state.store().for_user(&user.user_id);
    let loaded = pages::load_item(&state, &us, &key, &pctx.time(&state))?;
    let saved = &loaded.saved_posts;
    let item = with_saved(&loaded.item, item_post(&loaded.item.key), saved);
    let posts: Vec<serde_json::Value> = loaded
        .posts
        .iter()
        .map(|p| with_saved(p, Some(p.id.as_str()), saved))
        .collect();
    Ok(Json(json!({
        "item": item,
        "posts": posts,
        "has_older": loaded.has_older,
        "undelivered": loaded.undelivered,
    }))
    .into_response())
}

/// The user's saved posts (Mattermost's `flagged_post` preferences, mirrored by the sync).
pub(super) fn saved_set(
    us: &crate::store::UserStore<'_>,
) -> Result<std::collections::HashSet<String>, WebError> {
    Ok(us
        .saved_posts()
        .map_err(WebError::internal)?
        .into_iter()
        .collect())
}

/// The post whose saved state an item shows: a thread's root (what the `save` action on the
/// item saves); a DM/GM item has none (its messages carry their own `saved`).
pub(super) fn item_post(key: &str) -> Option<&str> {
    key.strip_prefix("t_")
}

/// `value` as JSON with `saved` added: whether `post_id` is among the saved posts.
fn with_saved(
    value: &impl serde::Serialize,
    post_id: Option<&str>,
    saved: &std::collections::HashSet<String>,
) -> serde_json::Value {
    let mut v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "saved".into(),
            serde_json::Value::Bool(post_id.is_some_and(|p| saved.contains(p))),
        );
    }
    v
}

/// Body of an action (all fields optional; which are needed depends on the action).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    pub message: Option<String>,
    pub until: Option<i64>,
    pub emoji: Option<String>,
    pub post_id: Option<String>,
    /// `react`: false removes the reaction. `save`: false un-saves.
    pub on: Option<bool>,
    /// `retry` / `discard`: the undelivered action (its outbox id).
    pub outbox_id: Option<i64>,
}

fn parse_body(body: &Bytes) -> Result<ActionBody, WebError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActionBody::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| WebError::BadRequest(format!("the body must be a JSON object: {e}")))
}

fn need<T>(v: Option<T>, what: &str) -> Result<T, WebError> {
    v.ok_or_else(|| WebError::BadRequest(format!("`{what}` is required for this action")))
}

/// `POST /api/v1/items/{key}/{action}` — answered once the action is in the outbox (202);
/// delivery to Mattermost continues in the background.
pub async fn act(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((key, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, WebError> {
    let body = parse_body(&body)?;
    let done = perform(&state, &user.user_id, &key, &action, body).await?;
    let mut answer = json!({ "ok": true, "pending": true, "outbox_ids": done.outbox_ids });
    if !done.reply_markers.is_empty() {
        answer["reply_markers"] = json!(done.reply_markers);
    }
    if let Some(post) = done.unread_from {
        answer["unread_from"] = json!(post);
    }
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// What [`perform`] recorded.
#[derive(Debug, Default)]
pub struct Performed {
    /// The outbox rows written.
    pub outbox_ids: Vec<i64>,
    /// A reply's marker: the `outbox_marker` of its post once it has arrived (see
    /// [`super::views::PostView::outbox_marker`]).
    pub reply_markers: Vec<String>,
    /// `read`: the oldest message that was unread before it. Marking the item unread from it
    /// (`unread` with this `post_id`) takes the read back exactly.
    pub unread_from: Option<String>,
}

/// Validate an action on one of the user's items and record it in the outbox; returns the
/// outbox row ids. Shared by the JSON API and the no-JavaScript forms.
pub async fn perform(
    state: &AppState,
    user_id: &UserId,
    key: &str,
    action: &str,
    body: ActionBody,
) -> Result<Performed, WebError> {
    let item_key = ItemKey::parse(key).map_err(|_| {
        WebError::BadRequest("item key must be t_<post id> or c_<channel id>".into())
    })?;
    if let "retry" | "discard" = action {
        // Before the item lookup: an action on an item that has left the queue since (e.g. a
        // reply refused because the channel was archived) can still be discarded.
        let id = need(body.outbox_id, "outbox_id")?;
        let engine = state.engine();
        let done = if action == "retry" {
            engine.retry(user_id, &item_key, id).await
        } else {
            engine.discard(user_id, &item_key, id).await
        };
        return match done {
            Ok(()) => Ok(Performed {
                outbox_ids: vec![id],
                reply_markers: Vec::new(),
                unread_from: None,
            }),
            Err(OutboxActionError::NotFound) => Err(WebError::NotFound),
            Err(OutboxActionError::WrongState(why)) => Err(WebError::Conflict(why.to_owned())),
            Err(OutboxActionError::Sync(e)) => Err(action_error(e)),
        };
    }
    let unread_from = unread_from(state, user_id, &item_key, action)?;
    let actions = plan(state, user_id, &item_key, action, body)?;
    let acks = state
        .engine()
        .act_all(user_id, actions)
        .await
        .map_err(action_error)?;
    Ok(Performed {
        outbox_ids: acks.iter().map(|a| a.outbox_id).collect(),
        reply_markers: acks.into_iter().filter_map(|a| a.marker).collect(),
        unread_from,
    })
}

/// For `read`, the message to mark unread from to take it back (read before the action).
fn unread_from(
    state: &AppState,
    user_id: &UserId,
    key: &ItemKey,
    action: &str,
) -> Result<Option<String>, WebError> {
    if action != "read" {
        return Ok(None);
    }
    state
        .store()
        .for_user(user_id)
        .first_unread_post(key)
        .map_err(WebError::internal)
}

/// The Mattermost actions one triage action on one item of the user stands for (checked
/// against the cache: another user's item is not found).
fn plan(
    state: &AppState,
    user_id: &UserId,
    item_key: &ItemKey,
    action: &str,
    body: ActionBody,
) -> Result<Vec<Action>, WebError> {
    let item_key = item_key.clone();
    let now = state.now();
    let us = state.store().for_user(user_id);
    // The item must be this user's: another user's id is simply not found.
    let Some(detail) = us.item(&item_key, 1).map_err(WebError::internal)? else {
        // An unfollowed thread leaves the queue but stays known: following it again (the `f`
        // toggle pressed twice) must work.
        if let (ItemKey::Thread(root_id), "follow") = (&item_key, action)
            && us.thread(root_id).map_err(WebError::internal)?.is_some()
        {
            return Ok(vec![Action::Follow {
                root_id: root_id.clone(),
            }]);
        }
        return Err(WebError::NotFound);
    };
    let row = &detail.row;
    let root = match &item_key {
        ItemKey::Thread(r) => Some(r.clone()),
        ItemKey::Channel(_) => None,
    };
    // The post an action on "the item" targets: the thread root, or the latest message.
    let target_post = |explicit: Option<String>| -> Result<String, WebError> {
        if let Some(p) = explicit {
            return Ok(p);
        }
        if let Some(r) = &root {
            return Ok(r.clone());
        }
        detail
            .posts
            .last()
            .map(|p| p.post_id.clone())
            .ok_or_else(|| {
                WebError::BadRequest("this conversation has no cached message to act on".into())
            })
    };
    // Mark unread "from the latest message": a thread's newest post; a DM/GM's newest root
    // post (its item counts root posts only, collapsed reply threads: marking a reply unread
    // there changed nothing the queue shows — the reply's thread is an item of its own).
    let latest_post = || -> Result<String, WebError> {
        let latest = match &item_key {
            // Newest first: the first is the newest.
            ItemKey::Thread(r) => us.thread_posts(r, 1).map(|p| p.into_iter().next()),
            ItemKey::Channel(c) => us.latest_root_post(c),
        }
        .map_err(WebError::internal)?;
        latest
            .map(|p| p.post_id)
            .ok_or_else(|| WebError::BadRequest("this conversation has no cached message".into()))
    };
    let mut actions = Vec::new();
    match action {
        "reply" => {
            let message = need(body.message, "message")?;
            let trimmed = message.trim();
            if trimmed.is_empty() {
                return Err(WebError::BadRequest("the message is empty".into()));
            }
            if message.chars().count() > MAX_MESSAGE_CHARS {
                return Err(WebError::BadRequest(format!(
                    "the message is longer than {MAX_MESSAGE_CHARS} characters"
                )));
            }
            actions.push(Action::Reply {
                channel_id: row.channel_id.clone(),
                root_id: root.clone().unwrap_or_default(),
                message: MessageText::new(message),
            });
        }
        "done" => actions.push(Action::Done {
            key: item_key.clone(),
            at: now.max(row.last_activity_at),
        }),
        // Undo the last triage, whichever it was: both marks are cleared (idempotent).
        "undo" => {
            actions.push(Action::UndoDone {
                key: item_key.clone(),
            });
            actions.push(Action::Unsnooze {
                key: item_key.clone(),
            });
        }
        "snooze" => actions.push(Action::Snooze {
            key: item_key.clone(),
            until: snooze_until(body.until, now)?,
        }),
        "unsnooze" => actions.push(Action::Unsnooze {
            key: item_key.clone(),
        }),
        "read" => actions.push(Action::MarkRead {
            key: item_key.clone(),
        }),
        "unread" => {
            let post_id = match body.post_id {
                Some(p) => p,
                None => latest_post()?,
            };
            actions.push(Action::MarkUnread {
                key: item_key.clone(),
                post_id,
            });
        }
        "follow" | "unfollow" => {
            let root_id = root
                .clone()
                .ok_or_else(|| WebError::BadRequest("only threads can be followed".into()))?;
            actions.push(if action == "follow" {
                Action::Follow { root_id }
            } else {
                Action::Unfollow { root_id }
            });
        }
        "react" => {
            let emoji_name = need(body.emoji, "emoji")?.trim_matches(':').to_owned();
            actions.push(Action::React {
                post_id: target_post(body.post_id)?,
                emoji_name,
                add: body.on.unwrap_or(true),
            });
        }
        "save" | "unsave" => actions.push(Action::Save {
            post_id: target_post(body.post_id)?,
            saved: action == "save" && body.on.unwrap_or(true),
        }),
        _ => {
            return Err(WebError::BadRequest(
                "unknown action; use reply, done, undo, snooze, unsnooze, read, unread, follow, unfollow, react, save, unsave, retry or discard".into(),
            ));
        }
    }
    Ok(actions)
}

/// A snooze's end time: given, in the future, within a year.
fn snooze_until(until: Option<i64>, now: i64) -> Result<i64, WebError> {
    let until = need(until, "until")?;
    if until <= now {
        return Err(WebError::BadRequest("`until` must be in the future".into()));
    }
    if until > now + 366 * 24 * 3600 * 1000 {
        return Err(WebError::BadRequest("snooze for at most a year".into()));
    }
    Ok(until)
}

/// Actions that apply to several items at once (triage of a selection).
pub const BULK_ACTIONS: &[&str] = &["done", "undo", "snooze", "unsnooze", "read", "unread"];

/// Most items one bulk request may name (a page of the queue is 50 rows).
pub const BULK_MAX: usize = 500;

/// Body of `POST /api/v1/bulk/{action}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    pub keys: Vec<String>,
    /// `snooze`: until when (ms since the epoch).
    pub until: Option<i64>,
    /// `unread`: per item key, the message to mark unread from (what a `read` answered as
    /// `unread_from`, to take it back exactly); the latest message otherwise.
    #[serde(default)]
    pub unread_from: HashMap<String, String>,
}

/// What happened to one item of a bulk action.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BulkResult {
    pub key: String,
    pub ok: bool,
    /// The outbox rows written (`ok`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbox_ids: Vec<i64>,
    /// `read`: the oldest message that was unread before it (see [`Performed`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread_from: Option<String>,
    /// HTTP status this item alone would have had, and why (not `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One action on each of `keys` (in order; recorded in the outbox together): what is
/// wrong with the request as a whole (unknown action, no or too many keys, a malformed key, a
/// bad `until`) is a 400 before anything is recorded; what is wrong with one item (not the
/// user's, no message to mark unread from) is reported for that item, the others go on.
/// Shared by the JSON API and the queue's form.
pub async fn perform_bulk(
    state: &AppState,
    user_id: &UserId,
    action: &str,
    keys: &[String],
    until: Option<i64>,
    unread_from_of: &HashMap<String, String>,
) -> Result<Vec<BulkResult>, WebError> {
    if !BULK_ACTIONS.contains(&action) {
        return Err(WebError::BadRequest(format!(
            "unknown bulk action; use {}",
            BULK_ACTIONS.join(", ")
        )));
    }
    if keys.is_empty() {
        return Err(WebError::BadRequest("select at least one item".into()));
    }
    if keys.len() > BULK_MAX {
        return Err(WebError::BadRequest(format!(
            "at most {BULK_MAX} items at once"
        )));
    }
    let parsed = keys
        .iter()
        .map(|k| {
            ItemKey::parse(k).map_err(|_| {
                WebError::BadRequest(format!(
                    "`{}` is not an item key (t_<post id> or c_<channel id>)",
                    k.chars().take(40).collect::<String>()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if action == "snooze" {
        snooze_until(until, state.now())?;
    }
    // Each item's actions are planned on their own (what is wrong with one item is reported
    // for it); then all are recorded together: one durable commit for the whole selection.
    let mut seen = std::collections::HashSet::new();
    let mut results = Vec::with_capacity(keys.len());
    let mut planned: Vec<(usize, usize)> = Vec::new(); // (result index, actions)
    let mut all = Vec::new();
    for (key, item_key) in keys
        .iter()
        .zip(&parsed)
        .filter(|(k, _)| seen.insert(k.as_str()))
    {
        let body = ActionBody {
            until,
            post_id: unread_from_of.get(key).cloned(),
            ..ActionBody::default()
        };
        let planned_one = plan(state, user_id, item_key, action, body)
            .and_then(|a| {
                a.iter()
                    .try_for_each(Action::validate)
                    .map(|()| a)
                    .map_err(action_error)
            })
            .and_then(|a| Ok((a, unread_from(state, user_id, item_key, action)?)));
        match planned_one {
            Ok((actions, unread_from)) => {
                planned.push((results.len(), actions.len()));
                all.extend(actions);
                results.push(BulkResult {
                    key: key.clone(),
                    ok: true,
                    outbox_ids: Vec::new(),
                    unread_from,
                    status: None,
                    error: None,
                });
            }
            Err(e) => results.push(BulkResult {
                key: key.clone(),
                ok: false,
                outbox_ids: Vec::new(),
                unread_from: None,
                status: Some(e.status().as_u16()),
                error: Some(e.to_string()),
            }),
        }
    }
    if all.is_empty() {
        return Ok(results);
    }
    let mut acks = state
        .engine()
        .act_all(user_id, all)
        .await
        .map_err(action_error)?
        .into_iter();
    for (at, n) in planned {
        results[at].outbox_ids = acks.by_ref().take(n).map(|a| a.outbox_id).collect();
    }
    Ok(results)
}

/// `POST /api/v1/bulk/{action}` — one triage action on several items; 202 once every item's
/// action is in the outbox (`ok` false when some item could not be acted on: see `results`).
pub async fn bulk(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(action): Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    let body: BulkBody = serde_json::from_slice(&body).map_err(|e| {
        WebError::BadRequest(format!(
            "the body must be a JSON object with `keys` (and `until` to snooze): {e}"
        ))
    })?;
    let results = perform_bulk(
        &state,
        &user.user_id,
        &action,
        &body.keys,
        body.until,
        &body.unread_from,
    )
    .await?;
    let ok = results.iter().all(|r| r.ok);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "ok": ok, "results": results })),
    )
        .into_response())
}

/// An engine error on an action, as the user sees it.
fn action_error(e: SyncError) -> WebError {
    match e {
        SyncError::BadAction(why) => WebError::BadRequest(why.to_owned()),
        SyncError::Store(crate::store::StoreError::Sqlite(e)) if storage_unavailable(&e) => {
            tracing::error!(error = %e, "action refused: the store cannot write");
            WebError::StorageUnavailable
        }
        e => WebError::internal(e),
    }
}

/// The database cannot take writes (disk full, I/O error, read-only): the action is refused
/// with a message that says so, not a bare "internal error".
fn storage_unavailable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        e.sqlite_error_code(),
        Some(C::DiskFull | C::SystemIoFailure | C::ReadOnly | C::CannotOpen)
    )
}

/// `GET /api/v1/me/triage` — the settings page's "Your triage" figures.
pub async fn triage(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Response, WebError> {
    let us = state.store().for_user(&user.user_id);
    Ok(Json(pages::triage_view(&state, &us)?).into_response())
}

/// `GET /api/v1/me/export` — everything ThreadDesk holds about the user, as JSON.
pub async fn export(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Response, WebError> {
    let export = state
        .store()
        .for_user(&user.user_id)
        .export()
        .map_err(WebError::internal)?;
    let mut res = Json(export).into_response();
    res.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"threaddesk-export.json\""),
    );
    Ok(res)
}
