//! The live stream: Server-Sent Events of the signed-in user's item changes.
//!
//! Each change notice from the sync engine names one item (or "many changed"); the stream
//! re-reads that item from the user-scoped store and sends `item` `{key, item}` (`item` null when
//! it left the queue), or `reload`. A subscriber that falls behind gets `reload` rather than an
//! unbounded backlog. When the user's saved searches change (here, on another device, or found
//! by a sync) it sends `searches` `{html}`: the sidebar's list, rendered as the queue page
//! renders it. Cross-origin requests are refused (ASVS 4.4.2).
//!
//! The engine publishes every user's notices on one instance-wide channel; [`LiveHub`] reads it
//! once and forwards each notice to its own user's streams only, so a notice wakes O(that user's
//! tabs) streams instead of every open stream, and one user's burst cannot make another user's
//! stream fall behind (research P-9: "O(recipients) per event").

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::error::WebError;
use super::local_time::{ClockPref, LocalTime};
use super::present::{self, Context};
use super::session::ApiUser;
use crate::inbox::ItemKey;
use crate::store::UserId;
use crate::sync::{Cause, ItemChanged};

/// Notices buffered for one user's streams before they get `reload` instead.
const PER_USER_CAPACITY: usize = 256;

/// What one user's streams are told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// An item changed (`key: None`: many did, reload).
    Item(ItemChanged),
    /// The saved searches changed.
    Searches,
}

type Senders = Arc<Mutex<HashMap<String, broadcast::Sender<Notice>>>>;

/// Per-user fan-out of the engine's change notices (one dispatcher task per [`AppState`]).
#[derive(Default)]
pub struct LiveHub {
    users: Senders,
    started: OnceLock<()>,
}

impl LiveHub {
    /// A receiver of `user`'s notices only. The first call starts the dispatcher on `source`
    /// (the engine's instance-wide channels: item changes, and the users whose saved searches
    /// changed).
    pub fn subscribe(
        &self,
        user: &str,
        source: impl FnOnce() -> (
            broadcast::Receiver<ItemChanged>,
            broadcast::Receiver<String>,
        ),
    ) -> broadcast::Receiver<Notice> {
        self.started.get_or_init(|| {
            let (items, searches) = source();
            tokio::spawn(dispatch(items, searches, Arc::clone(&self.users)));
        });
        lock(&self.users)
            .entry(user.to_owned())
            .or_insert_with(|| broadcast::channel(PER_USER_CAPACITY).0)
            .subscribe()
    }

    /// Users with a subscription entry (streams open, or closed since the user's last notice).
    #[must_use]
    pub fn users(&self) -> usize {
        lock(&self.users).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn dispatch(
    mut items: broadcast::Receiver<ItemChanged>,
    mut searches: broadcast::Receiver<String>,
    users: Senders,
) {
    loop {
        let (user, notice) = tokio::select! {
            r = items.recv() => match r {
                Ok(change) => (change.user_id.clone(), Notice::Item(change)),
                // Notices were lost before reaching any stream: every stream reloads.
                Err(RecvError::Lagged(_)) => {
                    lock(&users).retain(|user, tx| {
                        tx.send(Notice::Item(ItemChanged {
                            user_id: user.clone(),
                            key: None,
                            cause: Cause::Event,
                        }))
                        .is_ok()
                    });
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
            r = searches.recv() => match r {
                Ok(user) => (user, Notice::Searches),
                // Whose were lost is unknown: every stream gets the list again.
                Err(RecvError::Lagged(_)) => {
                    lock(&users).retain(|_, tx| tx.send(Notice::Searches).is_ok());
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        let mut map = lock(&users);
        let gone = map.get(&user).is_some_and(|tx| tx.send(notice).is_err());
        if gone {
            // Every stream of this user has ended.
            map.remove(&user);
        }
    }
}

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

/// The event for one item of one user; after a delivery attempt (`outbox`), with the user's
/// actions on it that Mattermost refused (`failed`), so a page that does not show the
/// conversation can still say so at once.
fn item_event(
    state: &AppState,
    user: &UserId,
    key: &ItemKey,
    outbox: bool,
    clock: Option<ClockPref>,
) -> Option<Event> {
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
    let mut data = json!({ "key": key.to_string(), "item": item });
    if outbox {
        let time = LocalTime::new(clock, state.now());
        let failed: Vec<_> = us
            .undelivered(key)
            .ok()?
            .iter()
            .filter_map(|r| present::undelivered_view(r, &time))
            .filter(crate::web::views::UndeliveredView::failed)
            .map(|mut u| {
                // The text stays on the conversation page; the notice names the action.
                u.message = None;
                u
            })
            .collect();
        if !failed.is_empty() {
            data["failed"] = json!(failed);
        }
    }
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
    let engine = std::sync::Arc::clone(state.engine());
    let rx = state.live().subscribe(user.user_id.as_str(), move || {
        (engine.subscribe(), engine.subscribe_searches())
    });
    let reader = Reader {
        csrf: user.csrf.expose().to_owned(),
        clock: super::pages::PageCtx::from_headers(&headers, String::new()).clock,
    };
    let stream = changes(state, user.user_id, reader, rx);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The `searches` event: the sidebar's saved searches as the queue page renders them (none is
/// marked: the page marks the one it shows). `None` on a store or template failure (the page
/// keeps its list until the next load).
fn searches_event(state: &AppState, user: &UserId, csrf: &str) -> Option<Event> {
    use askama::Template as _;
    let us = state.store().for_user(user);
    let fragment = crate::web::views::SavedSearchesFragment {
        layout: crate::web::views::Layout {
            csrf: csrf.to_owned(),
            ..crate::web::views::Layout::default()
        },
        saved_searches: super::pages::saved_search_views(&us, "").ok()?,
    };
    let html = fragment.render().ok()?;
    Some(
        Event::default()
            .event("searches")
            .data(json!({ "html": html }).to_string()),
    )
}

/// What a stream's events are rendered for, besides the user: the page's CSRF token (the
/// saved searches' remove forms) and the reader's clock (`td_clock`, for times in the text).
struct Reader {
    csrf: String,
    clock: Option<ClockPref>,
}

fn changes(
    state: AppState,
    user: UserId,
    reader: Reader,
    rx: broadcast::Receiver<Notice>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let signed_out = state.inner().signed_out.subscribe();
    futures_util::stream::unfold(
        (state, user, reader, rx, signed_out),
        |(state, user, reader, mut rx, mut signed_out)| async move {
            loop {
                tokio::select! {
                    // Signed out (everywhere): the stream ends.
                    out = signed_out.recv() => match out {
                        Ok(uid) if uid == user.as_str() => return None,
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return None,
                    },
                    change = rx.recv() => match change {
                        Ok(Notice::Searches) => {
                            if let Some(ev) = searches_event(&state, &user, &reader.csrf) {
                                return Some((Ok(ev), (state, user, reader, rx, signed_out)));
                            }
                        }
                        Ok(Notice::Item(change)) if change.user_id == user.as_str() => {
                            let ev = match &change.key {
                                Some(key) => item_event(
                                    &state,
                                    &user,
                                    key,
                                    change.cause == Cause::Outbox,
                                    reader.clock,
                                ),
                                None => Some(Event::default().event("reload").data("{}")),
                            };
                            if let Some(ev) = ev {
                                return Some((Ok(ev), (state, user, reader, rx, signed_out)));
                            }
                        }
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => {
                            return Some((
                                Ok(Event::default().event("reload").data("{}")),
                                (state, user, reader, rx, signed_out),
                            ));
                        }
                        Err(RecvError::Closed) => return None,
                    },
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::ItemKey;

    fn notice(user: &str, n: usize) -> ItemChanged {
        ItemChanged {
            user_id: user.to_owned(),
            key: Some(ItemKey::Channel(format!("{n:026}"))),
            cause: Cause::Event,
        }
    }

    /// Before: every stream read the instance-wide channel, so 2,000 notices for B made A's
    /// stream lag (→ `reload`) and woke it 2,000 times. Now A sees only its own notice.
    #[tokio::test(flavor = "current_thread")]
    async fn a_stream_sees_only_its_users_notices_and_never_lags_on_others() {
        let (tx, _) = broadcast::channel(1024);
        let hub = LiveHub::default();
        let src = tx.clone();
        let (_stx, srx) = broadcast::channel(4);
        let mut a = hub.subscribe("a", move || (src.subscribe(), srx));
        let mut b = hub.subscribe("b", || unreachable!("started once"));
        for round in 0..20 {
            for n in 0..100 {
                tx.send(notice("b", round * 100 + n)).unwrap();
            }
            tokio::task::yield_now().await;
            while b.try_recv().is_ok() {}
        }
        tx.send(notice("a", 7)).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), a.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, Notice::Item(notice("a", 7)));
        assert!(matches!(
            a.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn lost_notices_make_every_stream_reload_and_closed_streams_are_forgotten() {
        let (tx, _) = broadcast::channel(16);
        let hub = LiveHub::default();
        let src = tx.clone();
        let (_stx, srx) = broadcast::channel(4);
        let mut a = hub.subscribe("a", move || (src.subscribe(), srx));
        let b = hub.subscribe("b", || unreachable!("started once"));
        drop(b);
        // The dispatcher cannot run in between: it misses notices.
        for n in 0..100 {
            tx.send(notice("c", n)).unwrap();
        }
        let got = tokio::time::timeout(Duration::from_secs(5), a.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            Notice::Item(ItemChanged {
                user_id: "a".into(),
                key: None,
                cause: Cause::Event
            })
        );
        assert_eq!(hub.users(), 1, "b's entry is dropped once nobody listens");
    }

    /// A saved-search notice reaches its user's streams only; lost ones reach every stream.
    #[tokio::test(flavor = "current_thread")]
    async fn saved_search_notices_reach_their_users_streams() {
        let (tx, _) = broadcast::channel::<ItemChanged>(16);
        let (stx, _) = broadcast::channel::<String>(4);
        let hub = LiveHub::default();
        let (src, ssrc) = (tx.clone(), stx.clone());
        let mut a = hub.subscribe("a", move || (src.subscribe(), ssrc.subscribe()));
        let mut b = hub.subscribe("b", || unreachable!("started once"));
        tokio::task::yield_now().await;
        stx.send("b".into()).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), b.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, Notice::Searches);
        tokio::task::yield_now().await;
        assert!(matches!(
            a.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
        // The dispatcher cannot run in between: it misses notices of "c".
        for _ in 0..10 {
            stx.send("c".into()).unwrap();
        }
        for rx in [&mut a, &mut b] {
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, Notice::Searches);
        }
    }
}
