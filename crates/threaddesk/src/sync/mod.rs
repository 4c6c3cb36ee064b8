//! The sync engine: Mattermost → store, kept live; user actions → outbox → Mattermost.
//!
//! | module | role |
//! |---|---|
//! | [`planner`] | pure: which reads an initial sync / resync needs (table- and property-tested) |
//! | [`ratelimit`] | the instance-wide request budget, fair per user, paused by 429s |
//! | [`outbox`] | pure: outbox delivery rules (retry, reconcile by marker, fail visibly) |
//! | `events` | pure: WebSocket event → one batch of store writes |
//! | `apply` | commits a batch in one store transaction |
//! | `engine` | the executor: initial sync, live loop, resync |
//! | `actions` | [`SyncEngine::act`] and the outbox worker |
//!
//! Use:
//! ```no_run
//! # async fn demo(store: std::sync::Arc<threaddesk::store::Store>, base: &str, token: &str,
//! #               user: threaddesk::store::UserId) -> Result<(), Box<dyn std::error::Error>> {
//! use threaddesk::sync::{SyncEngine, SyncSettings, ratelimit::{RateLimiter, LimiterSettings}};
//! let limiter = RateLimiter::new(LimiterSettings::default());
//! let engine = SyncEngine::new(store, SyncSettings::default(), limiter);
//! // One base client per server, built with the engine's gate; one token per user.
//! let base = mattermost::Client::builder(base).request_gate(engine.request_gate()).build()?;
//! engine.start_user(&user, base.with_token(token));
//! let mut changes = engine.subscribe();
//! while let Ok(change) = changes.recv().await { let _ = change; /* re-render that row */ }
//! # Ok(()) }
//! ```
//!
//! Logs carry ids, counts and timings only; message text stays in redacted types.

mod actions;
mod apply;
mod batch;
pub mod convert;
mod engine;
mod events;
pub mod gate;
pub mod outbox;
pub mod planner;
pub mod ratelimit;

use std::sync::Arc;

use mattermost::Client;
use tokio::sync::broadcast;

pub use actions::{Action, ActionAck, OutboxActionError};
pub use engine::{EngineStatus, MENTION_CHANNELS_MAX, Phase, SYNC_CONCURRENCY, UserStatus};

use crate::inbox::{ItemKey, Millis};
use crate::store::{Store, StoreError, UserId};
use ratelimit::RateLimiter;

/// Settings of the engine (from [`crate::config::Config`] via [`SyncSettings::from_config`]).
#[derive(Clone, Debug)]
pub struct SyncSettings {
    /// How far back the cache reaches (the `since` of the initial sync).
    pub retention_ms: Millis,
    /// WebSocket settings (4 KiB read buffer by default).
    pub ws: mattermost::ws::WsConfig,
    /// DM/GM conversations whose posts are read during the initial sync (newest first); the
    /// others are read right after, once the queue is live.
    pub initial_direct_posts_max: usize,
    /// A live user is fully synced again this often (± 25 % jitter, so users started together
    /// spread out). An incremental resync cannot see a few changes the API exposes nowhere
    /// cheaply (a read thread unfollowed elsewhere, a DM marked unread elsewhere with no new
    /// message); this bounds how long they can stay stale.
    pub full_sync_every: std::time::Duration,
    /// The clock of outbox delivery times (wall clock; tests move it, see [`outbox::OutboxClock`]).
    pub outbox_clock: outbox::OutboxClock,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            retention_ms: 14 * 86_400_000,
            ws: mattermost::ws::WsConfig::default(),
            initial_direct_posts_max: 10,
            full_sync_every: std::time::Duration::from_secs(24 * 3600),
            outbox_clock: outbox::OutboxClock::default(),
        }
    }
}

impl SyncSettings {
    /// From the validated configuration.
    #[must_use]
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            retention_ms: i64::from(config.retention_days) * 86_400_000,
            ..Self::default()
        }
    }
}

impl ratelimit::LimiterSettings {
    /// From the validated configuration.
    #[must_use]
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            requests_per_second: config.mattermost_rate_limit,
            burst: config.mattermost_rate_burst,
            max_concurrency: config.sync_concurrency.max(1),
        }
    }
}

/// Why an item changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    InitialSync,
    Resync,
    Event,
    Action,
    Outbox,
}

/// A notice to the web layer: this user's item `key` changed (re-read it from the store).
/// `key: None` means "many items changed" (after a sync): reload the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemChanged {
    pub user_id: String,
    pub key: Option<ItemKey>,
    pub cause: Cause,
}

/// Sync errors. `Display` carries no message content; [`SyncError::phrase`] is a fixed phrase
/// for logs and the status page.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Mattermost(Box<mattermost::Error>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the token belongs to another Mattermost user")]
    WrongUser,
    #[error("invalid action: {0}")]
    BadAction(&'static str),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl SyncError {
    /// Mattermost refused the token (401).
    #[must_use]
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Mattermost(e) if e.is_unauthorized())
            || matches!(self, Self::WrongUser)
    }

    /// A fixed phrase (no server text, no content).
    #[must_use]
    pub fn phrase(&self) -> &'static str {
        match self {
            Self::Mattermost(e) if e.is_unauthorized() => "Mattermost refused the token",
            Self::Mattermost(e) if e.retry_after().is_some() => "Mattermost rate limit",
            Self::Mattermost(e) if e.is_retryable() => "Mattermost unreachable or failing",
            Self::Mattermost(_) => "Mattermost refused a request",
            Self::Store(_) => "local store error",
            Self::WrongUser => "token of another user",
            Self::BadAction(_) => "invalid action",
            Self::Internal(_) => "internal error",
        }
    }
}

impl From<mattermost::Error> for SyncError {
    fn from(e: mattermost::Error) -> Self {
        Self::Mattermost(Box::new(e))
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The engine. Cheap to clone; create it inside a Tokio runtime (it spawns the outbox worker).
#[derive(Clone)]
pub struct SyncEngine {
    inner: Arc<engine::Inner>,
    _worker: Arc<AbortOnDrop>,
}

impl std::fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine").finish_non_exhaustive()
    }
}

impl SyncEngine {
    /// Create the engine and start the outbox worker, which first delivers whatever a previous
    /// run left pending (rows in flight at a crash are re-queued; replies reconcile first).
    #[must_use]
    pub fn new(store: Arc<Store>, settings: SyncSettings, limiter: RateLimiter) -> Self {
        let inner = Arc::new(engine::new_inner(store, settings, limiter));
        let worker = tokio::spawn(actions::outbox_worker(Arc::clone(&inner)));
        Self {
            inner,
            _worker: Arc::new(AbortOnDrop(worker)),
        }
    }

    /// The rate-limit gate to build the base [`mattermost::Client`] with.
    #[must_use]
    pub fn request_gate(&self) -> Arc<dyn mattermost::RequestGate> {
        gate::LimiterGate::shared(self.inner.limiter.clone())
    }

    /// Start (or restart, e.g. with a refreshed token) the sync of one user: a task connects the
    /// WebSocket, runs the initial sync, then applies live events until [`SyncEngine::stop_user`].
    /// Parked outbox rows of the user (after a 401) become due again.
    pub fn start_user(&self, user_id: &UserId, client: Client) {
        let store = Arc::clone(&self.inner.store);
        let uid = user_id.clone();
        tokio::task::spawn_blocking(move || {
            let _ = store.for_user(&uid).outbox_resume(engine::now_ms());
        });
        engine::spawn_user(&self.inner, user_id.clone(), client);
        self.inner.outbox_wake.notify_one();
    }

    /// Stop a user's sync (sign-out): the WebSocket is closed, the cache is kept.
    pub async fn stop_user(&self, user_id: &UserId) {
        let entry = self.inner.users().remove(user_id.as_str());
        if let Some(e) = entry {
            let ws =
                e.ws.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
            if let Some(ws) = ws {
                ws.close().await;
            }
            e.task.abort();
        }
    }

    /// Item-changed notices of every user (filter by `user_id`).
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<ItemChanged> {
        self.inner.changes.subscribe()
    }

    /// Saved-search notices of every user: the id of a user whose saved searches changed in
    /// the cache (saved or removed here or on another device, or found changed by a sync).
    #[must_use]
    pub fn subscribe_searches(&self) -> broadcast::Receiver<String> {
        self.inner.searches.subscribe()
    }

    /// Record a user action: the outbox row is committed durably and the store updated
    /// optimistically before this returns; delivery to Mattermost follows in the background.
    ///
    /// # Errors
    /// [`SyncError::BadAction`] for an invalid action; store failures (nothing was recorded).
    pub async fn act(&self, user_id: &UserId, action: Action) -> Result<ActionAck, SyncError> {
        actions::act_many(&self.inner, user_id, vec![action])
            .await?
            .pop()
            .ok_or(SyncError::Internal("no acknowledgement"))
    }

    /// Several actions of one user at once (a selection): recorded together, two commits in
    /// all; nothing is recorded unless every action is well-formed. Acks in order.
    ///
    /// # Errors
    /// [`SyncError::BadAction`] for a malformed action; store failures.
    pub async fn act_all(
        &self,
        user_id: &UserId,
        actions: Vec<Action>,
    ) -> Result<Vec<ActionAck>, SyncError> {
        actions::act_many(&self.inner, user_id, actions).await
    }

    /// Send a failed action of the user again (outbox row `id` on item `key`): it is queued,
    /// and what it changes is shown again at once.
    ///
    /// # Errors
    /// [`OutboxActionError::NotFound`] unless the user has that row on that item;
    /// [`OutboxActionError::WrongState`] unless it failed; store failures.
    pub async fn retry(
        &self,
        user_id: &UserId,
        key: &ItemKey,
        id: i64,
    ) -> Result<(), OutboxActionError> {
        actions::retry(&self.inner, user_id, key, id).await
    }

    /// Give up an action of the user not delivered yet (queued or failed): it is deleted, and
    /// what it showed ahead is replaced by Mattermost's value (read back, waited for a few
    /// seconds at most).
    ///
    /// # Errors
    /// [`OutboxActionError::NotFound`] unless the user has that row on that item;
    /// [`OutboxActionError::WrongState`] while it is being delivered; store failures.
    pub async fn discard(
        &self,
        user_id: &UserId,
        key: &ItemKey,
        id: i64,
    ) -> Result<(), OutboxActionError> {
        actions::discard(&self.inner, user_id, key, id).await
    }

    /// Saves a search of the user: written to their Mattermost preferences first (so it
    /// follows them to other devices and survives a reinstall), then to the cache. Unlike
    /// triage actions it is not queued: the answer says whether Mattermost has it.
    ///
    /// # Errors
    /// [`SyncError::BadAction`] when the user is not connected; Mattermost's refusal or
    /// absence; store failures.
    pub async fn save_search(
        &self,
        user_id: &UserId,
        search: crate::inbox::searches::SavedSearch,
    ) -> Result<(), SyncError> {
        self.write_search(user_id, &search.name.clone(), Some(search))
            .await
    }

    /// Forgets a saved search of the user (in Mattermost, then in the cache).
    ///
    /// # Errors
    /// As [`Self::save_search`].
    pub async fn forget_search(&self, user_id: &UserId, name: &str) -> Result<(), SyncError> {
        self.write_search(user_id, name, None).await
    }

    async fn write_search(
        &self,
        user_id: &UserId,
        name: &str,
        search: Option<crate::inbox::searches::SavedSearch>,
    ) -> Result<(), SyncError> {
        let ctx = self
            .inner
            .ctx(user_id.as_str())
            .ok_or(SyncError::BadAction("not connected to Mattermost yet"))?;
        let me = user_id.as_str();
        let pref = mattermost::models::Preference {
            user_id: me.to_owned(),
            category: crate::inbox::searches::SEARCH_CATEGORY.to_owned(),
            name: name.to_owned(),
            value: search.as_ref().map(|s| s.to_value()).unwrap_or_default(),
        };
        ctx.count_call();
        if search.is_some() {
            ctx.client.update_preferences(me, &[pref]).await?;
        } else {
            ctx.client.delete_preferences(me, &[pref]).await?;
        }
        let mut b = batch::Batch::default();
        b.push(batch::Write::SavedSearch {
            name: name.to_owned(),
            search,
        });
        ctx.commit(b, Cause::Action).await
    }

    /// Status for the admin page: per-user phase, last sync, call counts, errors, rate limit.
    #[must_use]
    pub fn status(&self) -> EngineStatus {
        let mut users: Vec<UserStatus> = self
            .inner
            .users()
            .values()
            .map(|e| e.ctx.status().clone())
            .collect();
        users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        EngineStatus {
            users,
            rate_limit: self.inner.limiter.status(),
        }
    }

    /// One user's status.
    #[must_use]
    pub fn user_status(&self, user_id: &UserId) -> Option<UserStatus> {
        self.inner.ctx(user_id.as_str()).map(|c| c.status().clone())
    }

    /// Whether Mattermost refused the user's token (401): ThreadDesk must ask them to sign in
    /// again. Cheap (one map lookup); the web layer asks on every authenticated request.
    #[must_use]
    pub fn needs_sign_in(&self, user_id: &UserId) -> bool {
        self.inner
            .ctx(user_id.as_str())
            .is_some_and(|c| c.status().phase == engine::Phase::NeedsSignIn)
    }

    /// REST calls made for a user since it was started (initial sync, events, resyncs, outbox).
    #[must_use]
    pub fn calls_made(&self, user_id: &UserId) -> Option<u64> {
        self.inner
            .ctx(user_id.as_str())
            .map(|c| c.calls.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Stop everything the engine does for users whose token Mattermost refused (phase
/// `NeedsSignIn`): the WebSocket is closed and the user's task ended, so a dead token is not
/// retried; the entry (and its status) stays until the user signs in again or out.
pub(crate) async fn park_refused(inner: &engine::Inner) {
    let parked: Vec<(Arc<engine::UserCtx>, Option<mattermost::ws::WsHandle>)> = inner
        .users()
        .values()
        .filter(|e| e.ctx.status().phase == engine::Phase::NeedsSignIn && !e.task.is_finished())
        .map(|e| {
            e.task.abort();
            let ws =
                e.ws.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
            (Arc::clone(&e.ctx), ws)
        })
        .collect();
    for (ctx, ws) in parked {
        tracing::warn!(user.id = %ctx.user_id.as_str(), "sync: token refused; stopped until the user signs in again");
        {
            let mut st = ctx.status();
            st.phase = engine::Phase::NeedsSignIn;
            st.connected = false;
            st.last_error = Some("Mattermost refused the token".into());
        }
        if let Some(ws) = ws {
            ws.close().await;
        }
    }
}
