//! The live stream: Server-Sent Events of the signed-in user's item changes.
//!
//! Each change notice from the sync engine names one item (or "many changed"); the stream
//! re-reads that item from the user-scoped store and sends `item` `{key, item}` (`item` null when
//! it left the queue), or `reload`. A subscriber that falls behind gets `reload` rather than an
//! unbounded backlog. Cross-origin requests are refused (ASVS 4.4.2).

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::error::WebError;
use super::present::{self, Context};
use super::session::ApiUser;
use crate::inbox::ItemKey;
use crate::store::UserId;

fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else {
        return true;
    };
    state
        .config()
        .public_url
        .as_ref()
        .is_some_and(|u| u.origin().ascii_serialization() == origin)
}

/// The event for one item of one user.
fn item_event(state: &AppState, user: &UserId, key: &ItemKey) -> Option<Event> {
    let us = state.store().for_user(user);
    let detail = us.item(key, 1).ok()?;
    let item = match detail {
        Some(d) => {
            let mut ctx = Context::load(&us, &state.mattermost_url(), HashMap::new()).ok()?;
            let me = ctx.me.user_id.clone();
            let people = present::row_people(&d.row, &me);
            ctx.want_profiles(&us, &people).ok()?;
            serde_json::to_value(present::summary(&d.row, &ctx)).ok()
        }
        None => None,
    };
    let data = json!({ "key": key.to_string(), "item": item });
    Some(Event::default().event("item").data(data.to_string()))
}

/// `GET /api/v1/events`
pub async fn events(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    headers: HeaderMap,
) -> Response {
    if !same_origin(&state, &headers) {
        return WebError::Csrf.into_response();
    }
    let rx = state.engine().subscribe();
    let stream = changes(state, user.user_id, rx);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn changes(
    state: AppState,
    user: UserId,
    rx: tokio::sync::broadcast::Receiver<crate::sync::ItemChanged>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let signed_out = state.inner().signed_out.subscribe();
    futures_util::stream::unfold(
        (state, user, rx, signed_out),
        |(state, user, mut rx, mut signed_out)| async move {
            loop {
                tokio::select! {
                    // Signed out (everywhere): the stream ends.
                    out = signed_out.recv() => match out {
                        Ok(uid) if uid == user.as_str() => return None,
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return None,
                    },
                    change = rx.recv() => match change {
                        Ok(change) if change.user_id == user.as_str() => {
                            let ev = match &change.key {
                                Some(key) => item_event(&state, &user, key),
                                None => Some(Event::default().event("reload").data("{}")),
                            };
                            if let Some(ev) = ev {
                                return Some((Ok(ev), (state, user, rx, signed_out)));
                            }
                        }
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => {
                            return Some((
                                Ok(Event::default().event("reload").data("{}")),
                                (state, user, rx, signed_out),
                            ));
                        }
                        Err(RecvError::Closed) => return None,
                    },
                }
            }
        },
    )
}
