//! Row types the store takes and returns. Field names follow Mattermost's models.

use serde::{Deserialize, Serialize};

use super::text::{JsonText, MessageText};
use crate::inbox::{self, Counts, ItemKey, ItemKind, Millis};

/// The signed-in user (or another user's display profile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Profile {
    pub user_id: String,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub nickname: String,
    pub update_at: Millis,
    pub delete_at: Millis,
}

/// A team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Team {
    pub team_id: String,
    pub name: String,
    pub display_name: String,
    pub update_at: Millis,
    pub delete_at: Millis,
}

/// A channel (shared cache row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Channel {
    pub channel_id: String,
    /// `""` for DM/GM.
    pub team_id: String,
    /// `O`, `P`, `D` or `G`.
    pub channel_type: String,
    pub name: String,
    pub display_name: String,
    pub total_msg_count: i64,
    pub total_msg_count_root: i64,
    pub last_post_at: Millis,
    pub last_root_post_at: Millis,
    pub update_at: Millis,
    pub delete_at: Millis,
}

/// The user's membership of a channel. `msg_count*` are messages READ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Membership {
    pub channel_id: String,
    pub msg_count: i64,
    pub mention_count: i64,
    pub msg_count_root: i64,
    pub mention_count_root: i64,
    pub urgent_mention_count: i64,
    pub last_viewed_at: Millis,
    pub last_update_at: Millis,
}

/// A thread membership of the user (`ThreadResponse` + following flag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Thread {
    pub root_id: String,
    pub channel_id: String,
    /// Team used in API URLs; `""` for DM/GM threads.
    pub team_id: String,
    pub reply_count: i64,
    pub last_reply_at: Millis,
    pub last_viewed_at: Millis,
    pub unread_replies: i64,
    pub unread_mentions: i64,
    pub is_urgent: bool,
    pub following: bool,
    pub delete_at: Millis,
    /// Participant user ids, JSON array.
    pub participants: JsonText,
}

impl Thread {
    /// The fields the inbox rules use.
    #[must_use]
    pub fn facts(&self) -> inbox::ThreadFacts {
        inbox::ThreadFacts {
            root_id: self.root_id.clone(),
            channel_id: self.channel_id.clone(),
            team_id: self.team_id.clone(),
            reply_count: self.reply_count,
            last_reply_at: self.last_reply_at,
            last_viewed_at: self.last_viewed_at,
            unread_replies: self.unread_replies,
            unread_mentions: self.unread_mentions,
            is_urgent: self.is_urgent,
            following: self.following,
            delete_at: self.delete_at,
        }
    }
}

/// A cached post (shared row; read through [`super::UserStore`] only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Post {
    pub post_id: String,
    pub channel_id: String,
    /// `""` for a root post.
    pub root_id: String,
    pub user_id: String,
    /// Mattermost post type (`""` for a normal message, `system_*` …).
    pub post_type: String,
    pub create_at: Millis,
    pub update_at: Millis,
    pub edit_at: Millis,
    pub delete_at: Millis,
    pub message: MessageText,
    pub props: JsonText,
    pub file_ids: JsonText,
    pub reactions: JsonText,
    pub metadata: JsonText,
}

/// A root post that mentions the user (item kind `mention` until someone replies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    pub post_id: String,
    pub channel_id: String,
    pub team_id: String,
    pub create_at: Millis,
}

/// One row of the queue, with what a list needs to render it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueRow {
    pub key: ItemKey,
    #[serde(serialize_with = "ser_kind")]
    pub kind: ItemKind,
    pub channel_id: String,
    pub team_id: String,
    pub last_activity_at: Millis,
    #[serde(serialize_with = "ser_counts")]
    pub counts: Counts,
    pub done_at: Option<Millis>,
    pub snoozed_until: Option<Millis>,
    /// Channel display name (`""` for DMs: render from the other member's profile).
    pub channel_display_name: String,
    /// Channel name (for DMs: `<id>__<id>`).
    pub channel_name: String,
    /// Author of the preview post.
    pub preview_user_id: Option<String>,
    /// Root post (threads, mentions) or latest post (DM/GM), if cached.
    pub preview: Option<MessageText>,
}

impl serde::Serialize for ItemKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

fn ser_kind<S: serde::Serializer>(k: &ItemKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.as_str())
}

fn ser_counts<S: serde::Serializer>(c: &Counts, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("Counts", 3)?;
    st.serialize_field("unread", &c.unread)?;
    st.serialize_field("mentions", &c.mentions)?;
    st.serialize_field("urgent", &c.urgent)?;
    st.end()
}

/// Keyset cursor: the last row of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub last_activity_at: Millis,
    pub key: String,
}

impl Cursor {
    /// Opaque string form for URLs: `<ms>.<key>`.
    #[must_use]
    pub fn encode(&self) -> String {
        format!("{}.{}", self.last_activity_at, self.key)
    }

    /// Parses [`Cursor::encode`]'s output; `None` for anything else.
    #[must_use]
    pub fn decode(s: &str) -> Option<Self> {
        let (ms, key) = s.split_once('.')?;
        let last_activity_at = ms.parse().ok()?;
        ItemKey::parse(key).ok()?;
        Some(Self {
            last_activity_at,
            key: key.to_owned(),
        })
    }
}

/// A page of the queue.
/// How the user's triage went (the settings page's "Your triage"; no history is kept: it is
/// read from the marks and items the cache holds now).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TriageStats {
    /// Items marked done in the last 24 hours / 7 days (and not taken back), on any device.
    pub done_day: i64,
    pub done_week: i64,
    /// Items in the inbox now that have waited more than a day since their last activity.
    pub waiting_over_day: i64,
    /// The item in the inbox that has waited longest, and its last activity.
    #[serde(serialize_with = "ser_oldest")]
    pub oldest: Option<(ItemKey, Millis)>,
}

#[allow(clippy::ref_option)]
fn ser_oldest<S: serde::Serializer>(
    o: &Option<(ItemKey, Millis)>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match o {
        Some((k, at)) => serde::Serialize::serialize(
            &serde_json::json!({ "key": k.to_string(), "last_activity_at": at }),
            s,
        ),
        None => s.serialize_none(),
    }
}

/// A cached message that matched a search, and the user's item it belongs to.
#[derive(Debug, Clone)]
pub struct MessageMatch {
    pub key: ItemKey,
    /// Not done (done items have `is_open = false`).
    pub is_open: bool,
    pub snoozed_until: Option<Millis>,
    /// The item's team (`""` for DMs and GMs).
    pub team_id: String,
    pub post: Post,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueuePage {
    pub rows: Vec<QueueRow>,
    /// Cursor for the next page, if there may be one.
    #[serde(serialize_with = "ser_cursor")]
    pub next: Option<Cursor>,
}

#[allow(clippy::ref_option)]
fn ser_cursor<S: serde::Serializer>(c: &Option<Cursor>, s: S) -> Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.serialize_some(&c.encode()),
        None => s.serialize_none(),
    }
}

/// Item counts per filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    pub all: i64,
    pub mentions: i64,
    pub direct: i64,
    pub threads: i64,
    pub snoozed: i64,
    pub done: i64,
    /// Open items per team id (`""` = DM/GM and their threads).
    pub teams: Vec<(String, i64)>,
}

/// An item and its recent posts (oldest first).
#[derive(Debug, Clone, Serialize)]
pub struct ItemDetail {
    pub row: QueueRow,
    pub posts: Vec<Post>,
}

/// A signed-in browser session, found by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub user_id: super::UserId,
    pub csrf_token: super::text::SecretText,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
}

/// A pending OAuth sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthAttempt {
    pub pkce_verifier: super::text::SecretText,
    pub redirect: String,
    pub created_at: Millis,
}

/// Per-user sync cursors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncState {
    pub ws_connection_id: String,
    pub ws_next_seq: i64,
    pub last_full_sync_at: Millis,
    /// `(team_id, last_thread_sync_at)`.
    pub teams: Vec<(String, Millis)>,
}

/// What a retention purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    pub posts: usize,
    pub threads: usize,
    pub items: usize,
    pub mentions: usize,
    pub outbox: usize,
    pub marks: usize,
    /// Transactions the search index's merge took (0 when no post was purged).
    pub search_merge_steps: usize,
}
