//! Driver: make other users act, from Rust ([`Driver`]) or over HTTP (`/mmsim/admin/...`,
//! JSON, unauthenticated — the simulator listens on loopback). Every action goes through the
//! same state mutations as the REST API, so it publishes the same WebSocket events.

use std::time::Duration;

use axum::extract::State as AxState;
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Sim;
use crate::error::AppError;
use crate::model::{Id, Preference};
use crate::state::{ChannelType, NewPost, PostPatch, State};

/// Why a driver action failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("invalid id {0:?}")]
    InvalidId(String),
    #[error(transparent)]
    Api(#[from] AppError),
}

impl From<DriverError> for AppError {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::Api(e) => e,
            other => AppError::new(400, "mmsim.admin.bad_request", &other.to_string()),
        }
    }
}

pub type DriverResult<T> = Result<T, DriverError>;

/// Acts as any user. Users are given by username (`"bob"`, `"@bob"`) or id.
#[derive(Clone)]
pub struct Driver {
    sim: Sim,
}

fn user_id(s: &State, who: &str) -> DriverResult<Id> {
    s.find_user(who)
        .ok_or_else(|| DriverError::UnknownUser(who.to_owned()))
}

fn id(raw: &str) -> DriverResult<Id> {
    Id::parse(raw).ok_or_else(|| DriverError::InvalidId(raw.to_owned()))
}

impl Driver {
    #[must_use]
    pub fn new(sim: &Sim) -> Self {
        Self { sim: sim.clone() }
    }

    /// A new root post; returns its id.
    pub fn post(&self, as_user: &str, channel_id: &str, message: &str) -> DriverResult<String> {
        let channel = id(channel_id)?;
        self.sim.with_state(|s| {
            let user = user_id(s, as_user)?;
            Ok(s.create_post(user, NewPost::new(channel, message))?.into())
        })
    }

    /// A reply to the thread of `root_id` (in the root's channel).
    pub fn reply(&self, as_user: &str, root_id: &str, message: &str) -> DriverResult<String> {
        let root = id(root_id)?;
        self.sim.with_state(|s| {
            let user = user_id(s, as_user)?;
            let idx = s.post_idx(root)?;
            let channel = s.posts[idx as usize].channel_id;
            Ok(s.create_post(user, NewPost::reply(channel, root, message))?
                .into())
        })
    }

    /// A post (or reply, with `root_id`) that @-mentions `target`.
    pub fn mention(
        &self,
        as_user: &str,
        channel_id: &str,
        root_id: Option<&str>,
        target: &str,
        message: &str,
    ) -> DriverResult<String> {
        let text = format!("@{} {message}", target.trim_start_matches('@'));
        match root_id {
            Some(root) => self.reply(as_user, root, &text),
            None => self.post(as_user, channel_id, &text),
        }
    }

    /// A direct message from `from` to `to` (creates the DM channel if needed).
    pub fn dm(&self, from: &str, to: &str, message: &str) -> DriverResult<String> {
        self.sim.with_state(|s| {
            let a = user_id(s, from)?;
            let b = user_id(s, to)?;
            let channel = s.direct_channel(a, b)?;
            Ok(s.create_post(a, NewPost::new(channel, message))?.into())
        })
    }

    pub fn react(&self, as_user: &str, post_id: &str, emoji: &str) -> DriverResult<()> {
        let post = id(post_id)?;
        self.sim.with_state(|s| {
            let user = user_id(s, as_user)?;
            s.add_reaction(user, post, emoji)?;
            Ok(())
        })
    }

    pub fn unreact(&self, as_user: &str, post_id: &str, emoji: &str) -> DriverResult<()> {
        let post = id(post_id)?;
        self.sim.with_state(|s| {
            let user = user_id(s, as_user)?;
            Ok(s.remove_reaction(user, post, emoji)?)
        })
    }

    pub fn edit(&self, as_user: &str, post_id: &str, message: &str) -> DriverResult<()> {
        let post = id(post_id)?;
        self.sim.with_state(|s| {
            let user = user_id(s, as_user)?;
            let patch = PostPatch {
                message: Some(message.to_owned()),
                ..PostPatch::default()
            };
            s.patch_post(user, post, patch)?;
            Ok(())
        })
    }

    pub fn delete(&self, as_user: &str, post_id: &str) -> DriverResult<()> {
        let post = id(post_id)?;
        self.sim.with_state(|s| {
            let user = user_id(s, as_user)?;
            Ok(s.delete_post(user, post)?)
        })
    }

    pub fn add_member(&self, channel_id: &str, user: &str) -> DriverResult<()> {
        let channel = id(channel_id)?;
        self.sim.with_state(|s| {
            let user = user_id(s, user)?;
            Ok(s.join_channel(channel, user)?)
        })
    }

    pub fn remove_member(&self, channel_id: &str, user: &str) -> DriverResult<()> {
        let channel = id(channel_id)?;
        self.sim.with_state(|s| {
            let user = user_id(s, user)?;
            Ok(s.leave_channel(channel, user, user)?)
        })
    }

    /// Change a channel's display name and/or header (`channel_updated`).
    pub fn update_channel(
        &self,
        channel_id: &str,
        display_name: Option<&str>,
        header: Option<&str>,
    ) -> DriverResult<()> {
        let channel = id(channel_id)?;
        self.sim.with_state(|s| {
            Ok(s.update_channel(
                channel,
                display_name.map(str::to_owned),
                header.map(str::to_owned),
                None,
            )?)
        })
    }

    /// Set a channel's purpose (`channel_updated`).
    pub fn set_channel_purpose(&self, channel_id: &str, purpose: &str) -> DriverResult<()> {
        let channel = id(channel_id)?;
        self.sim
            .with_state(|s| Ok(s.update_channel(channel, None, None, Some(purpose.to_owned()))?))
    }

    /// Save preferences "from another device" (`preferences_changed`).
    pub fn set_preferences(&self, user: &str, prefs: &[(&str, &str, &str)]) -> DriverResult<()> {
        self.sim.with_state(|s| {
            let uid = user_id(s, user)?;
            Ok(s.save_preferences(uid, to_prefs(uid, prefs))?)
        })
    }

    /// Delete preferences "from another device" (`preferences_deleted`).
    pub fn delete_preferences(&self, user: &str, prefs: &[(&str, &str)]) -> DriverResult<()> {
        self.sim.with_state(|s| {
            let uid = user_id(s, user)?;
            let list: Vec<(&str, &str, &str)> = prefs.iter().map(|(c, n)| (*c, *n, "")).collect();
            Ok(s.delete_preferences(uid, to_prefs(uid, &list))?)
        })
    }

    /// Follow or unfollow a thread "in another client" (`thread_follow_changed`).
    pub fn set_following(&self, user: &str, thread_id: &str, follow: bool) -> DriverResult<()> {
        let root = id(thread_id)?;
        self.sim.with_state(|s| {
            let uid = user_id(s, user)?;
            let team = s
                .user_teams
                .get(&uid)
                .and_then(|t| t.first().copied())
                .unwrap_or(root);
            Ok(s.set_following(uid, team, root, follow)?)
        })
    }

    /// View a channel "in another client" (CRT-aware, `multiple_channels_viewed`).
    pub fn view_channel(&self, user: &str, channel_id: &str) -> DriverResult<()> {
        let channel = id(channel_id)?;
        self.sim.with_state(|s| {
            let uid = user_id(s, user)?;
            s.readable_channel(channel, uid)?;
            s.view_channels(uid, &[channel], true);
            Ok(())
        })
    }

    /// Read a thread "in another client" (`thread_read_changed`).
    pub fn read_thread(&self, user: &str, thread_id: &str) -> DriverResult<()> {
        let root = id(thread_id)?;
        self.sim.with_state(|s| {
            let uid = user_id(s, user)?;
            let team = s
                .user_teams
                .get(&uid)
                .and_then(|t| t.first().copied())
                .unwrap_or(root);
            let now = s.now();
            s.read_thread(uid, team, root, now)?;
            Ok(())
        })
    }

    /// Id of a channel by team name and channel name (DMs: use [`Self::dm`]).
    #[must_use]
    pub fn channel_id(&self, team_name: &str, channel_name: &str) -> Option<String> {
        self.sim.with_state(|s| {
            let team = s.teams.values().find(|t| t.name == team_name)?.id;
            s.channels
                .values()
                .find(|c| c.team_id == Some(team) && c.name == channel_name)
                .map(|c| c.id.to_string())
        })
    }

    /// Id of a user by username.
    #[must_use]
    pub fn user_id(&self, username: &str) -> Option<String> {
        self.sim
            .with_state(|s| s.find_user(username).map(String::from))
    }

    /// One random action by someone other than the demo user: usually a reply in a thread
    /// the demo user follows (sometimes mentioning them), sometimes a reaction or a new post.
    pub fn random_action(&self, rng: &mut StdRng) -> DriverResult<()> {
        let demo = crate::seed::DEMO_USERNAME;
        let plan = self.sim.with_state(|s| {
            let alice = s.find_user(demo)?;
            let roots = s.user_threads.get(&alice)?;
            let root = *roots.get(rng.random_range(0..roots.len().max(1)))?;
            let p = &s.posts[root as usize];
            if p.delete_at != 0 {
                return None;
            }
            let members = s.channel_members.get(&p.channel_id)?;
            let others: Vec<Id> = members.iter().copied().filter(|u| *u != alice).collect();
            let who = *others.get(rng.random_range(0..others.len().max(1)))?;
            let direct = s
                .channels
                .get(&p.channel_id)
                .is_some_and(|c| c.kind == ChannelType::Direct);
            Some((p.id, p.channel_id, who, direct))
        });
        let Some((root, channel, who, direct)) = plan else {
            return Ok(());
        };
        let (root, channel, who) = (root.to_string(), channel.to_string(), who.to_string());
        let line = LIVE_LINES[rng.random_range(0..LIVE_LINES.len())];
        match rng.random_range(0..10) {
            0..=5 => self.reply(&who, &root, line).map(drop),
            6 if !direct => self
                .mention(&who, &channel, Some(&root), demo, line)
                .map(drop),
            7 => self.react(
                &who,
                &root,
                ["+1", "eyes", "tada", "heart"][rng.random_range(0..4)],
            ),
            _ => self.post(&who, &channel, line).map(drop),
        }
    }

    /// Live activity for the demo: a random action every `interval`, until the task is
    /// aborted. Deterministic given `seed` (and the state).
    #[must_use]
    pub fn spawn_activity(&self, interval: Duration, seed: u64) -> tokio::task::JoinHandle<()> {
        let driver = self.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if let Err(e) = driver.random_action(&mut rng) {
                    tracing::debug!(error = %e, "activity step failed");
                }
            }
        })
    }
}

fn to_prefs(user: Id, prefs: &[(&str, &str, &str)]) -> Vec<Preference> {
    prefs
        .iter()
        .map(|(category, name, value)| Preference {
            user_id: user.into(),
            category: (*category).to_owned(),
            name: (*name).to_owned(),
            value: (*value).to_owned(),
        })
        .collect()
}

const LIVE_LINES: [&str; 12] = [
    "Quick update: this is done on my side.",
    "I can take a look in an hour.",
    "Good point — updated the doc.",
    "Can we discuss this in standup tomorrow?",
    "Pushed a fix, CI is running.",
    "+1 to that approach.",
    "Left a few comments, nothing blocking.",
    "Customer confirmed it works now :tada:",
    "Heads-up: staging will be down for 10 minutes.",
    "Do we have numbers for last week?",
    "Merged. Thanks everyone!",
    "I'm blocked on this until the migration lands.",
];

// ---------------------------------------------------------------------------------------------
// HTTP admin endpoints
// ---------------------------------------------------------------------------------------------

type AdminResult = Result<Json<Value>, AppError>;

pub fn admin_routes() -> Router<Sim> {
    Router::new()
        .route("/mmsim/admin/info", get(info))
        .route("/mmsim/admin/post", post(admin_post))
        .route("/mmsim/admin/react", post(admin_react))
        .route("/mmsim/admin/edit", post(admin_edit))
        .route("/mmsim/admin/delete", post(admin_delete))
        .route("/mmsim/admin/dm", post(admin_dm))
        .route("/mmsim/admin/members/add", post(admin_add_member))
        .route("/mmsim/admin/members/remove", post(admin_remove_member))
        .route("/mmsim/admin/preferences", post(admin_preferences))
        .route("/mmsim/admin/view", post(admin_view))
        .route("/mmsim/admin/read_thread", post(admin_read_thread))
        .route("/mmsim/admin/clock/advance", post(admin_clock))
        .route("/mmsim/admin/oauth/callback", post(admin_callback))
}

fn body<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, AppError> {
    crate::api::parse_body(raw, "body")
}

fn ok() -> AdminResult {
    Ok(Json(json!({"status": "OK"})))
}

/// `GET /mmsim/admin/info`: demo user and the ThreadDesk OAuth app.
async fn info(AxState(sim): AxState<Sim>) -> Json<Value> {
    let (user, app) =
        sim.with_state(|s| (crate::seed::demo_user(s), crate::seed::threaddesk_app(s)));
    Json(json!({
        "user": user.map(|u| json!({"id": u.id, "username": u.username, "password": u.password, "token": u.token})),
        "oauth_app": app.map(|a| json!({"client_id": a.client_id, "client_secret": a.client_secret})),
    }))
}

#[derive(Deserialize)]
struct PostReq {
    user: String,
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    root_id: Option<String>,
    message: String,
}

async fn admin_post(AxState(sim): AxState<Sim>, raw: axum::body::Bytes) -> AdminResult {
    let req: PostReq = body(&raw)?;
    let d = Driver::new(&sim);
    let id = match req.root_id.as_deref().filter(|r| !r.is_empty()) {
        Some(root) => d.reply(&req.user, root, &req.message)?,
        None => d.post(&req.user, &req.channel_id, &req.message)?,
    };
    Ok(Json(json!({"id": id})))
}

#[derive(Deserialize)]
struct ReactReq {
    user: String,
    post_id: String,
    emoji: String,
    #[serde(default)]
    remove: bool,
}

async fn admin_react(AxState(sim): AxState<Sim>, raw: axum::body::Bytes) -> AdminResult {
    let req: ReactReq = body(&raw)?;
    let d = Driver::new(&sim);
    if req.remove {
        d.unreact(&req.user, &req.post_id, &req.emoji)?;
    } else {
        d.react(&req.user, &req.post_id, &req.emoji)?;
    }
    ok()
}

#[derive(Deserialize)]
struct EditReq {
    user: String,
    post_id: String,
    #[serde(default)]
    message: String,
}

async fn admin_edit(AxState(sim): AxState<Sim>, raw: axum::body::Bytes) -> AdminResult {
    let req: EditReq = body(&raw)?;
    Driver::new(&sim).edit(&req.user, &req.post_id, &req.message)?;
    ok()
}

async fn admin_delete(AxState(sim): AxState<Sim>, raw: axum::body::Bytes) -> AdminResult {
    let req: EditReq = body(&raw)?;
    Driver::new(&sim).delete(&req.user, &req.post_id)?;
    ok()
}

#[derive(Deserialize)]
struct DmReq {
    from: String,
    to: String,
    message: String,
}

async fn admin_dm(AxState(sim): AxState<Sim>, raw: axum::body::Bytes) -> AdminResult {
    let req: DmReq = body(&raw)?;
    let id = Driver::new(&sim).dm(&req.from, &req.to, &req.message)?;
    Ok(Json(json!({"id": id})))
}

#[derive(Deserialize)]
struct MemberReq {
    channel_id: String,
    user: String,
}

async fn admin_add_member(AxState(sim): AxState<Sim>, raw: axum::body::Bytes) -> AdminResult {
    let req: MemberReq = body(&raw)?;
    Driver::new(&sim).add_member(&req.channel_id, &req.user)?;
    ok()
}

async fn admin_remove_member(AxState(sim): AxState<Sim>, raw: axum::body::Bytes) -> AdminResult {
    let req: MemberReq = body(&raw)?;
    Driver::new(&sim).remove_member(&req.channel_id, &req.user)?;
    ok()
}

#[derive(Deserialize)]
struct PrefItem {
    category: String,
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct PrefsReq {
    user: String,
    preferences: Vec<PrefItem>,
    #[serde(default)]
    delete: bool,
}

async fn admin_preferences(AxState(sim): AxState<Sim>, raw: axum::body::Bytes) -> AdminResult {
    let req: PrefsReq = body(&raw)?;
    let d = Driver::new(&sim);
    if req.delete {
        let list: Vec<(&str, &str)> = req
            .preferences
            .iter()
            .map(|p| (p.category.as_str(), p.name.as_str()))
            .collect();
        d.delete_preferences(&req.user, &list)?;
    } else {
        let list: Vec<(&str, &str, &str)> = req
            .preferences
            .iter()
            .map(|p| (p.category.as_str(), p.name.as_str(), p.value.as_str()))
            .collect();
        d.set_preferences(&req.user, &list)?;
    }
    ok()
}

async fn admin_view(AxState(sim): AxState<Sim>, raw: axum::body::Bytes) -> AdminResult {
    let req: MemberReq = body(&raw)?;
    Driver::new(&sim).view_channel(&req.user, &req.channel_id)?;
    ok()
}

#[derive(Deserialize)]
struct ThreadReq {
    user: String,
    thread_id: String,
}

async fn admin_read_thread(AxState(sim): AxState<Sim>, raw: axum::body::Bytes) -> AdminResult {
    let req: ThreadReq = body(&raw)?;
    Driver::new(&sim).read_thread(&req.user, &req.thread_id)?;
    ok()
}

#[derive(Deserialize)]
struct ClockReq {
    ms: i64,
}

async fn admin_clock(AxState(sim): AxState<Sim>, raw: axum::body::Bytes) -> AdminResult {
    let req: ClockReq = body(&raw)?;
    sim.clock().advance(req.ms);
    ok()
}

#[derive(Deserialize)]
struct CallbackReq {
    client_id: String,
    url: String,
}

async fn admin_callback(AxState(sim): AxState<Sim>, raw: axum::body::Bytes) -> AdminResult {
    let req: CallbackReq = body(&raw)?;
    if sim.add_oauth_callback(&req.client_id, &req.url) {
        ok()
    } else {
        Err(AppError::not_found(
            "app.oauth.get_app.find.app_error",
            "Unable to find the requested app.",
        ))
    }
}
