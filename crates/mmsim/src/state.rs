//! The organisation in memory and every mutation.
//!
//! Each mutation queues its WebSocket events (recipients resolved from memberships at that
//! moment) in `outbox`; [`crate::Sim::with_state`] publishes them to the hub while still holding
//! the lock, so every connection sees events in mutation order.
//!
//! Memory layout: posts live in one `Vec<PostRec>` (ids inline, message as `Box<str>`, rarely
//! used fields behind one `Option<Box<PostExtra>>`), channels and threads refer to posts by
//! `u32` index, so the `large` seed (hundreds of thousands of posts) stays small.

mod channels;
pub mod posts;
pub mod threads;
mod users;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{Map, Value};

use crate::events::{Broadcast, Delivery, WsEvent};
use crate::model::{self, Id, StringMap};

pub use channels::ChannelType;
pub use posts::{NewPost, PostListQuery, PostPatch, ThreadQuery};
pub use threads::{ThreadListQuery, ThreadTotals};

/// Wall-clock milliseconds plus an adjustable offset, so tests can jump past time windows
/// (the 30 s `pending_post_id` window, 10-minute OAuth codes) without sleeping.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    #[must_use]
    pub fn now(&self) -> i64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        wall + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Move this clock (and every clone of it) forward.
    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// Settings the state needs at run time (copied from [`crate::SimConfig`]).
#[derive(Clone, Debug)]
pub struct Settings {
    pub site_url: String,
    /// `ServiceSettings.EnableUserAccessTokens` (the simulator enables it by default).
    pub enable_user_access_tokens: bool,
    /// `pending_post_id` dedup window (30 s on a real server, trap 35).
    pub dedup_window_ms: i64,
    pub pkce: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            site_url: String::new(),
            enable_user_access_tokens: true,
            dedup_window_ms: 30_000,
            pkce: true,
        }
    }
}

pub struct UserRec {
    pub id: Id,
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub nickname: String,
    pub position: String,
    pub roles: String,
    pub password: String,
    pub create_at: i64,
    pub update_at: i64,
    pub last_picture_update: i64,
    pub timezone: String,
    pub is_bot: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// `POST /users/login` session.
    Web,
    /// Session created for a personal access token (token id).
    Pat(Id),
    /// OAuth access token (client id).
    OAuth(Id),
}

#[derive(Clone, Debug)]
pub struct SessionRec {
    pub user_id: Id,
    pub kind: SessionKind,
    pub csrf: String,
    /// 0 = never.
    pub expires_at: i64,
}

pub struct PatRec {
    pub id: Id,
    pub token: String,
    pub user_id: Id,
    pub description: String,
    pub is_active: bool,
}

pub struct TeamRec {
    pub id: Id,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub create_at: i64,
    pub invite_id: Id,
}

pub struct ChannelRec {
    pub id: Id,
    pub team_id: Option<Id>,
    pub kind: ChannelType,
    pub name: String,
    pub display_name: String,
    pub header: String,
    pub purpose: String,
    pub creator_id: Option<Id>,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub last_post_at: i64,
    pub last_root_post_at: i64,
    pub total_msg_count: i64,
    pub total_msg_count_root: i64,
}

/// A channel membership. `msg_count`/`msg_count_root` are *read* counts (trap 8).
#[derive(Clone, Debug, Default)]
pub struct MemberRec {
    pub last_viewed_at: i64,
    pub msg_count: i64,
    pub msg_count_root: i64,
    pub mention_count: i64,
    pub mention_count_root: i64,
    pub urgent_mention_count: i64,
    pub last_update_at: i64,
    /// Overrides of the default channel notify props.
    pub notify_props: Option<Box<StringMap>>,
}

pub struct PostRec {
    pub id: Id,
    pub user_id: Id,
    pub channel_id: Id,
    /// Index of the root post for replies.
    pub root: Option<u32>,
    pub create_at: i64,
    pub update_at: i64,
    pub edit_at: i64,
    pub delete_at: i64,
    pub message: Box<str>,
    pub is_pinned: bool,
    pub extra: Option<Box<PostExtra>>,
}

#[derive(Default)]
pub struct PostExtra {
    pub props: Map<String, Value>,
    pub file_ids: Vec<Id>,
    pub pending_post_id: String,
    pub priority: Option<model::PostPriority>,
    /// Post `type` ("" for normal posts).
    pub kind: String,
    pub reactions: Vec<ReactionRec>,
}

#[derive(Clone, Debug)]
pub struct ReactionRec {
    pub user_id: Id,
    pub emoji_name: String,
    pub create_at: i64,
}

/// Thread metadata, present once a root has its first reply (research §5.1).
#[derive(Default)]
pub struct ThreadRec {
    pub replies: Vec<u32>,
    /// Users who replied, oldest first.
    pub participants: Vec<Id>,
    pub reply_count: i64,
    pub last_reply_at: i64,
}

#[derive(Clone, Debug, Default)]
pub struct ThreadMemberRec {
    pub following: bool,
    pub last_view_at: i64,
    pub unread_mentions: i64,
    pub last_update_at: i64,
}

/// What a file's bytes are (generated on demand, nothing large is stored).
#[derive(Clone, Debug)]
pub enum FileBlob {
    /// A PNG image of the given size and colour.
    Png {
        color: [u8; 3],
    },
    Bytes(Arc<[u8]>),
}

pub struct FileRec {
    pub info: model::FileInfo,
    pub blob: FileBlob,
}

pub struct EmojiRec {
    pub id: Id,
    pub name: String,
    pub creator_id: Id,
    pub create_at: i64,
}

pub struct StatusRec {
    pub status: String,
    pub manual: bool,
    pub last_activity_at: i64,
}

/// A registered OAuth app (research §2.4).
pub struct OAuthAppRec {
    pub id: Id,
    pub secret: String,
    pub name: String,
    pub description: String,
    pub homepage: String,
    pub icon_url: String,
    pub callback_urls: Vec<String>,
    pub is_trusted: bool,
    pub is_public: bool,
    pub creator_id: Option<Id>,
    pub create_at: i64,
}

pub struct AuthCodeRec {
    pub client_id: Id,
    pub user_id: Id,
    pub redirect_uri: String,
    pub expires_at: i64,
    pub code_challenge: Option<String>,
}

#[derive(Clone, Debug)]
pub struct AccessDataRec {
    pub client_id: Id,
    pub user_id: Id,
    pub token: String,
    pub refresh_token: String,
    pub expires_at: i64,
}

/// `pending_post_id` dedup entry (trap 35).
pub struct PendingRec {
    pub at: i64,
    /// `None` while the first create is still running.
    pub post: Option<Id>,
}

/// The whole organisation.
#[derive(Default)]
pub struct State {
    pub clock: Clock,
    pub settings: Settings,

    pub users: HashMap<Id, UserRec>,
    pub usernames: HashMap<String, Id>,
    pub sessions: HashMap<String, SessionRec>,
    pub pats: BTreeMap<Id, PatRec>,
    pub statuses: HashMap<Id, StatusRec>,
    /// user → category → name → value.
    pub preferences: HashMap<Id, BTreeMap<(String, String), String>>,

    pub teams: BTreeMap<Id, TeamRec>,
    /// team → user → roles.
    pub team_members: BTreeMap<Id, BTreeMap<Id, String>>,
    pub user_teams: HashMap<Id, Vec<Id>>,

    pub channels: HashMap<Id, ChannelRec>,
    pub members: HashMap<(Id, Id), MemberRec>,
    pub channel_members: HashMap<Id, Vec<Id>>,
    pub user_channels: HashMap<Id, Vec<Id>>,
    /// DM/GM channel name → id.
    pub direct_names: HashMap<String, Id>,

    pub posts: Vec<PostRec>,
    pub post_index: HashMap<Id, u32>,
    /// channel → post indexes in creation order.
    pub channel_posts: HashMap<Id, Vec<u32>>,
    /// root post index → thread.
    pub threads: HashMap<u32, ThreadRec>,
    /// (user, root post index) → membership.
    pub thread_members: HashMap<(Id, u32), ThreadMemberRec>,
    pub user_threads: HashMap<Id, Vec<u32>>,

    pub files: HashMap<Id, FileRec>,
    pub emoji: Vec<EmojiRec>,

    pub oauth_apps: BTreeMap<Id, OAuthAppRec>,
    pub auth_codes: HashMap<String, AuthCodeRec>,
    /// refresh token → access data.
    pub access_data: HashMap<String, AccessDataRec>,

    pub pending_posts: HashMap<String, PendingRec>,
    /// `create_at` of the newest live (non-seeded) post.
    pub last_live_create_at: i64,
    /// `POST /posts` takes a read guard after the dedup check; tests hold the write guard
    /// ([`crate::Sim::hold_post_creation`]) to keep a create "in flight".
    pub post_gate: Arc<tokio::sync::RwLock<()>>,

    outbox: Vec<Delivery>,
    /// While seeding: the seed's RNG, so seeded ids (and the demo token) are deterministic.
    pub(crate) id_rng: Option<rand::rngs::StdRng>,
}

impl State {
    /// The simulator's present: the clock, but never before the newest live post. Posts made
    /// in the same millisecond get strictly increasing `create_at` here (a stable order), which
    /// can run a few ms ahead of the clock; a read mark taken "now" must still cover them, as
    /// on a real server, where no post is ever newer than the present (a "mark all read" right
    /// after a burst of replies left the last one unread: `rest_api::thread_read_unread_follow`
    /// failed under load).
    #[must_use]
    pub fn now(&self) -> i64 {
        self.clock.now().max(self.last_live_create_at)
    }

    /// The user a session / personal access / OAuth access token belongs to.
    #[must_use]
    pub fn user_for_token(&self, token: &str) -> Option<String> {
        self.session(token).map(|s| s.user_id.into())
    }

    /// A live session for `token` (expired sessions and PATs while PATs are disabled do not
    /// count, research §2.2).
    #[must_use]
    pub fn session(&self, token: &str) -> Option<&SessionRec> {
        let session = self.sessions.get(token)?;
        if session.expires_at != 0 && session.expires_at < self.now() {
            return None;
        }
        if let SessionKind::Pat(token_id) = session.kind {
            let active = self.pats.get(&token_id).is_some_and(|p| p.is_active);
            if !active || !self.settings.enable_user_access_tokens {
                return None;
            }
        }
        Some(session)
    }

    /// Events queued by mutations since the last call.
    pub fn take_outbox(&mut self) -> Vec<Delivery> {
        std::mem::take(&mut self.outbox)
    }

    /// Queue an event for `recipients`.
    pub(crate) fn emit(
        &mut self,
        event: &str,
        data: Map<String, Value>,
        broadcast: Broadcast,
        recipients: Vec<Id>,
        per_user_data: HashMap<String, Map<String, Value>>,
    ) {
        self.outbox.push(Delivery {
            event: WsEvent {
                event: event.to_owned(),
                data,
                broadcast,
            },
            recipients: recipients.into_iter().map(String::from).collect(),
            per_user_data,
        });
    }

    /// Queue a user-scoped event (`broadcast.user_id`, plus optional team/channel ids).
    pub(crate) fn emit_user(
        &mut self,
        event: &str,
        user: Id,
        team_id: &str,
        channel_id: &str,
        data: Map<String, Value>,
    ) {
        let broadcast = Broadcast {
            user_id: user.into(),
            team_id: team_id.to_owned(),
            channel_id: channel_id.to_owned(),
            ..Broadcast::default()
        };
        self.emit(event, data, broadcast, vec![user], HashMap::new());
    }

    /// Queue a channel-scoped event for the channel's current members.
    pub(crate) fn emit_channel(&mut self, event: &str, channel: Id, data: Map<String, Value>) {
        let recipients = self
            .channel_members
            .get(&channel)
            .cloned()
            .unwrap_or_default();
        let broadcast = Broadcast {
            channel_id: channel.into(),
            ..Broadcast::default()
        };
        self.emit(event, data, broadcast, recipients, HashMap::new());
    }

    /// A fresh id: from the seed's RNG while seeding, else from the OS-seeded RNG.
    pub fn new_id(&mut self) -> Id {
        match self.id_rng.as_mut() {
            Some(rng) => Id::new(rng),
            None => Id::random(),
        }
    }
}

/// JSON-encode a value as a string (the "string JSON" of WebSocket data, trap 22).
pub(crate) fn string_json<T: serde::Serialize>(value: &T) -> Value {
    Value::String(serde_json::to_string(value).unwrap_or_default())
}

/// Build a JSON object from `(key, value)` pairs.
pub(crate) fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

impl crate::Sim {
    /// Run `f` on the locked state, then publish the events it queued (still under the lock, so
    /// event order follows mutation order).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let inner = self.inner();
        let mut state = inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = f(&mut state);
        for delivery in state.take_outbox() {
            inner.hub.publish(delivery);
        }
        result
    }

    /// Keep every `POST /posts` that passed the `pending_post_id` check waiting until the guard
    /// is dropped (to test the "in flight" 500, trap 35, without sleeping).
    pub async fn hold_post_creation(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        let gate = self.with_state(|s| s.post_gate.clone());
        gate.write_owned().await
    }

    /// Whether a create with this `pending_post_id` is in flight right now.
    #[must_use]
    pub fn is_post_pending(&self, pending_post_id: &str) -> bool {
        self.with_state(|s| {
            s.pending_posts
                .get(pending_post_id)
                .is_some_and(|p| p.post.is_none())
        })
    }

    /// The simulator's clock (shared with the state); tests move it forward with
    /// [`Clock::advance`].
    #[must_use]
    pub fn clock(&self) -> Clock {
        self.with_state(|s| s.clock.clone())
    }
}
