//! Wire types of the Mattermost REST API v4, written from the official OpenAPI description
//! (`spec/mattermost-openapi/definitions.yaml`) corrected by the server code facts in
//! `shared/research/mattermost-api.md` (§11.3 lists where the spec is wrong).
//!
//! Every struct tolerates unknown fields and missing fields (`#[serde(default)]`); lists and
//! maps the server may send as `null` decode as empty; fields that are pointers in the server
//! (`*string`, `*bool`) are `Option`. Times are int64 milliseconds since the epoch.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::de::null_default;
use crate::secret::{MessageText, Secret};

/// A Go `StringMap` (`notify_props`, `timezone`).
pub type StringMap = BTreeMap<String, String>;

/// Post `props` and other free-form JSON objects.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;

/// The literal `me`, accepted wherever a `{user_id}` path segment is (research §1).
pub const ME: &str = "me";

// ------------------------------------------------------------------------------------------
// Users

/// A user (`server/public/model/user.go`). Other users' objects are sanitized by the server;
/// thread `participants` without `extended=true` have only `id` filled (research §0 trap 11).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    pub id: String,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub username: String,
    pub auth_service: String,
    pub email: String,
    pub email_verified: bool,
    pub nickname: String,
    pub first_name: String,
    pub last_name: String,
    pub position: String,
    pub roles: String,
    pub locale: String,
    #[serde(deserialize_with = "null_default")]
    pub notify_props: StringMap,
    #[serde(deserialize_with = "null_default")]
    pub timezone: StringMap,
    #[serde(deserialize_with = "null_default")]
    pub props: StringMap,
    pub last_picture_update: i64,
    pub last_activity_at: i64,
    pub is_bot: bool,
    pub bot_description: String,
    pub mfa_active: bool,
    pub remote_id: Option<String>,
    pub disable_welcome_email: bool,
}

/// `POST /users/login` result: the user and the session token from the `Token` header.
#[derive(Debug, Clone)]
pub struct LoginResponse {
    pub user: User,
    pub token: Secret,
}

/// A user's status (`server/public/model/status.go`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub user_id: String,
    /// `online`, `away`, `dnd` or `offline`.
    pub status: String,
    pub manual: bool,
    pub last_activity_at: i64,
    pub active_channel: Option<String>,
    /// **Seconds** since the epoch, unlike every other time (research §0 trap 9).
    pub dnd_end_time: i64,
}

// ------------------------------------------------------------------------------------------
// Teams

/// A team (`server/public/model/team.go`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Team {
    pub id: String,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub display_name: String,
    pub name: String,
    pub description: String,
    pub email: String,
    /// `O` open, `I` invite only.
    #[serde(rename = "type")]
    pub team_type: String,
    pub company_name: String,
    pub allowed_domains: String,
    pub invite_id: String,
    pub allow_open_invite: bool,
    pub last_team_icon_update: i64,
    pub scheme_id: Option<String>,
    pub group_constrained: Option<bool>,
    pub policy_id: Option<String>,
    pub cloud_limits_archived: bool,
}

/// A team membership.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TeamMember {
    pub team_id: String,
    pub user_id: String,
    pub roles: String,
    pub delete_at: i64,
    pub scheme_guest: bool,
    pub scheme_user: bool,
    pub scheme_admin: bool,
    pub explicit_roles: String,
}

/// Unread counters of a team (`server/public/model/team_member.go`). The `thread_*` fields are
/// only filled with `include_collapsed_threads=true` and are missing from the OpenAPI schema
/// (research §3.1, reliability finding 4). DM/GM threads count in no team.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TeamUnread {
    pub team_id: String,
    pub msg_count: i64,
    pub mention_count: i64,
    pub mention_count_root: i64,
    pub msg_count_root: i64,
    pub thread_count: i64,
    pub thread_mention_count: i64,
    pub thread_urgent_mention_count: i64,
}

// ------------------------------------------------------------------------------------------
// Channels

/// Channel type. Unknown letters are kept as [`ChannelType::Other`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum ChannelType {
    /// `O` public channel.
    #[default]
    Open,
    /// `P` private channel.
    Private,
    /// `D` direct message (2 users).
    Direct,
    /// `G` group message (3–8 users).
    Group,
    /// Anything else.
    Other(String),
}

impl ChannelType {
    /// The one-letter wire form.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Open => "O",
            Self::Private => "P",
            Self::Direct => "D",
            Self::Group => "G",
            Self::Other(s) => s,
        }
    }

    /// `D` or `G`: a conversation outside any team (its `team_id` is `""`).
    #[must_use]
    pub fn is_direct_or_group(&self) -> bool {
        matches!(self, Self::Direct | Self::Group)
    }
}

impl From<&str> for ChannelType {
    fn from(s: &str) -> Self {
        match s {
            "O" => Self::Open,
            "P" => Self::Private,
            "D" => Self::Direct,
            "G" => Self::Group,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl Serialize for ChannelType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ChannelType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        Ok(Self::from(s.as_str()))
    }
}

/// A channel (`server/public/model/channel.go`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Channel {
    pub id: String,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    /// `""` for DM/GM channels.
    pub team_id: String,
    #[serde(rename = "type")]
    pub channel_type: ChannelType,
    pub display_name: String,
    pub name: String,
    pub header: String,
    pub purpose: String,
    pub last_post_at: i64,
    pub total_msg_count: i64,
    pub extra_update_at: i64,
    pub creator_id: String,
    pub scheme_id: Option<String>,
    pub props: Option<JsonMap>,
    pub group_constrained: Option<bool>,
    pub shared: Option<bool>,
    /// Root posts only (the CRT counter).
    pub total_msg_count_root: i64,
    pub policy_id: Option<String>,
    pub last_root_post_at: i64,
    pub policy_enforced: bool,
    pub default_category_name: String,
}

impl Channel {
    /// Unread messages for `member`: the channel's total minus the member's **read** count
    /// (`msg_count` counts messages read, not unread: research §0 trap 8). With
    /// `collapsed_threads`, the root-only counters are used. Never negative.
    #[must_use]
    pub fn unread_count(&self, member: &ChannelMember, collapsed_threads: bool) -> i64 {
        let (total, read) = if collapsed_threads {
            (self.total_msg_count_root, member.msg_count_root)
        } else {
            (self.total_msg_count, member.msg_count)
        };
        (total - read).max(0)
    }
}

/// A channel membership (`server/public/model/channel_member.go`), also the
/// `ChannelMemberWithTeamData` form of `GET /users/{u}/channel_members` (the `team_*` fields).
///
/// `msg_count` / `msg_count_root` are messages **read**; mention counts are unread mentions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelMember {
    pub channel_id: String,
    pub user_id: String,
    pub roles: String,
    pub last_viewed_at: i64,
    pub msg_count: i64,
    pub mention_count: i64,
    pub mention_count_root: i64,
    pub urgent_mention_count: i64,
    pub msg_count_root: i64,
    #[serde(deserialize_with = "null_default")]
    pub notify_props: StringMap,
    pub last_update_at: i64,
    pub scheme_guest: bool,
    pub scheme_user: bool,
    pub scheme_admin: bool,
    pub explicit_roles: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_update_at: Option<i64>,
}

impl ChannelMember {
    /// Muted: `notify_props.mark_unread == "mention"` (research §3.1).
    #[must_use]
    pub fn is_muted(&self) -> bool {
        self.notify_props.get("mark_unread").map(String::as_str) == Some("mention")
    }
}

/// Answer of `set_unread` and data of the `post_unread` event: the member's new **read**
/// counts (research §0 trap 8, §3.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelUnreadAt {
    pub team_id: String,
    pub channel_id: String,
    pub user_id: String,
    pub msg_count: i64,
    pub mention_count: i64,
    pub mention_count_root: i64,
    pub urgent_mention_count: i64,
    pub msg_count_root: i64,
    pub last_viewed_at: i64,
}

/// Answer of `POST /channels/members/{u}/view`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ViewChannelResponse {
    pub status: String,
    /// Channel id → new `last_viewed_at`.
    #[serde(deserialize_with = "null_default")]
    pub last_viewed_at_times: HashMap<String, i64>,
}

// ------------------------------------------------------------------------------------------
// Posts

/// Post `props`: a free-form JSON object. `Debug` lists the keys only, since values (e.g.
/// message attachments) can hold message text.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Props(#[serde(deserialize_with = "null_default")] pub JsonMap);

impl fmt::Debug for Props {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Props(keys=")?;
        f.debug_list().entries(self.0.keys()).finish()?;
        write!(f, ")")
    }
}

impl std::ops::Deref for Props {
    type Target = JsonMap;
    fn deref(&self) -> &JsonMap {
        &self.0
    }
}

impl std::ops::DerefMut for Props {
    fn deref_mut(&mut self) -> &mut JsonMap {
        &mut self.0
    }
}

/// A JSON value that may hold message content (link previews …). `Debug` prints nothing of it.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpaqueJson(pub serde_json::Value);

impl fmt::Debug for OpaqueJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpaqueJson([redacted])")
    }
}

/// A post (`server/public/model/post.go`). The text is a [`MessageText`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Post {
    pub id: String,
    pub create_at: i64,
    pub update_at: i64,
    /// 0 unless the message was edited.
    pub edit_at: i64,
    pub delete_at: i64,
    pub is_pinned: bool,
    pub user_id: String,
    pub channel_id: String,
    /// `""` for a root post.
    pub root_id: String,
    pub original_id: String,
    /// `""` for deleted posts (research §0 trap 10).
    pub message: MessageText,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_source: Option<MessageText>,
    /// `""` for normal posts; `system_*`, `me`, `custom_*` otherwise.
    #[serde(rename = "type")]
    pub post_type: String,
    pub props: Props,
    /// Space separated. The spec calls it `hashtag`; the server sends `hashtags` (trap 10).
    pub hashtags: String,
    #[serde(deserialize_with = "null_default")]
    pub file_ids: Vec<String>,
    pub pending_post_id: String,
    pub has_reactions: bool,
    pub remote_id: Option<String>,
    pub reply_count: i64,
    pub last_reply_at: i64,
    /// `null` (→ `None`) outside collapsed-threads responses (trap 10).
    pub participants: Option<Vec<User>>,
    /// Only present in collapsed-threads responses.
    pub is_following: Option<bool>,
    pub metadata: Option<PostMetadata>,
}

impl Post {
    /// A root post (not a reply).
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.root_id.is_empty()
    }

    /// The thread this post belongs to: its own id for a root, `root_id` for a reply.
    #[must_use]
    pub fn thread_id(&self) -> &str {
        if self.root_id.is_empty() {
            &self.id
        } else {
            &self.root_id
        }
    }

    /// Priority label from metadata (`urgent`, `important`, or `""`).
    #[must_use]
    pub fn priority(&self) -> &str {
        self.metadata
            .as_ref()
            .and_then(|m| m.priority.as_ref())
            .map_or("", |p| p.priority.as_str())
    }
}

/// `Post.metadata` (all parts optional; `{}` for deleted posts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostMetadata {
    #[serde(deserialize_with = "null_default")]
    pub embeds: Vec<OpaqueJson>,
    #[serde(deserialize_with = "null_default")]
    pub emojis: Vec<Emoji>,
    #[serde(deserialize_with = "null_default")]
    pub files: Vec<FileInfo>,
    #[serde(deserialize_with = "null_default")]
    pub images: HashMap<String, OpaqueJson>,
    #[serde(deserialize_with = "null_default")]
    pub reactions: Vec<Reaction>,
    pub priority: Option<PostPriority>,
    #[serde(deserialize_with = "null_default")]
    pub acknowledgements: Vec<PostAcknowledgement>,
}

/// Post priority metadata (roots only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostPriority {
    /// `urgent`, `important` or `""`.
    #[serde(deserialize_with = "null_default")]
    pub priority: String,
    pub requested_ack: Option<bool>,
    pub persistent_notifications: Option<bool>,
}

/// A post acknowledgement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostAcknowledgement {
    pub user_id: String,
    pub post_id: String,
    pub acknowledged_at: i64,
    pub channel_id: String,
}

/// A list of posts (`server/public/model/post_list.go`).
///
/// `order` lists ids newest first, except for `GET /posts/{id}/thread` (unsorted, research §0
/// trap 15; [`crate::Client::get_post_thread`] sorts it). `posts` may contain posts not in
/// `order` (thread context, roots of `since` results).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostList {
    #[serde(deserialize_with = "null_default")]
    pub order: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub posts: HashMap<String, Post>,
    pub next_post_id: String,
    pub prev_post_id: String,
    pub has_next: Option<bool>,
    pub first_inaccessible_post_time: i64,
}

impl PostList {
    /// The posts named in `order`, in that order (ids missing from `posts` are skipped).
    pub fn ordered(&self) -> impl Iterator<Item = &Post> {
        self.order.iter().filter_map(|id| self.posts.get(id))
    }
}

/// A reaction (`server/public/model/reaction.go`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reaction {
    pub user_id: String,
    pub post_id: String,
    pub emoji_name: String,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub remote_id: Option<String>,
    pub channel_id: String,
}

/// File metadata (`server/public/model/file_info.go`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileInfo {
    pub id: String,
    pub user_id: String,
    pub post_id: String,
    pub channel_id: String,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub name: String,
    pub extension: String,
    pub size: i64,
    pub mime_type: String,
    pub width: i64,
    pub height: i64,
    pub has_preview_image: bool,
    pub mini_preview: Option<String>,
    pub remote_id: Option<String>,
    pub archived: bool,
}

/// Bytes of a file, thumbnail or preview, with the server's `Content-Type`.
#[derive(Clone)]
pub struct FileBytes {
    pub bytes: bytes::Bytes,
    pub content_type: Option<String>,
}

impl fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBytes")
            .field("len", &self.bytes.len())
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// A custom emoji.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Emoji {
    pub id: String,
    pub creator_id: String,
    pub name: String,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
}

// ------------------------------------------------------------------------------------------
// Threads (collapsed reply threads)

/// A followed thread (`ThreadResponse` in `server/public/model/thread.go`; the spec's
/// `UserThread` lacks the unread fields). There is **no** `is_following`, `team_id` or
/// `channel_id` (use `post.channel_id`): research §0 trap 11, §5.2.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThreadResponse {
    /// The root post id.
    pub id: String,
    pub reply_count: i64,
    pub last_reply_at: i64,
    pub last_viewed_at: i64,
    /// Users who replied, oldest first; id-only without `extended=true`.
    #[serde(deserialize_with = "null_default")]
    pub participants: Vec<User>,
    /// The root post (`null` if unavailable).
    pub post: Option<Post>,
    pub unread_replies: i64,
    pub unread_mentions: i64,
    pub is_urgent: bool,
    /// The root's `delete_at`.
    pub delete_at: i64,
}

/// A page of followed threads with totals (`Threads` in `thread.go`). `threads` is `null` with
/// `totalsOnly=true` (decoded as empty, research §0 trap 13).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Threads {
    pub total: i64,
    pub total_unread_threads: i64,
    pub total_unread_mentions: i64,
    pub total_unread_urgent_mentions: i64,
    #[serde(deserialize_with = "null_default")]
    pub threads: Vec<ThreadResponse>,
}

// ------------------------------------------------------------------------------------------
// Preferences, config, system

/// A user preference (`server/public/model/preference.go`). Category ≤ 32 chars, name ≤ 32,
/// value ≤ 2000.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Preference {
    pub user_id: String,
    pub category: String,
    pub name: String,
    pub value: String,
}

/// `{"status": "OK"}` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusOk {
    pub status: String,
}

/// `GET /system/ping` answer: `status` plus whatever else the server reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PingResponse {
    pub status: String,
    #[serde(flatten)]
    pub other: JsonMap,
}

/// Client configuration: a flat map of strings (`"true"`, `"60"` …), research §7.
pub type ClientConfig = HashMap<String, String>;

/// Token endpoint answer (`POST /oauth/access_token`, research §2.4). `refresh_token` is `None`
/// for public clients (sent as `""`). `scope` and `id_token` are always `""`.
#[derive(Debug, Clone, Deserialize)]
pub struct OAuthTokenResponse {
    pub access_token: Secret,
    #[serde(default)]
    pub token_type: String,
    /// Seconds until the access token expires.
    #[serde(default)]
    pub expires_in: i64,
    #[serde(default)]
    pub scope: String,
    #[serde(default, deserialize_with = "empty_secret_as_none")]
    pub refresh_token: Option<Secret>,
}

fn empty_secret_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .map(Secret::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_real_shape_with_nulls_and_extras() {
        let json = r##"{"id":"p1","create_at":1700000000000,"update_at":1700000000001,"edit_at":0,
            "delete_at":0,"is_pinned":false,"user_id":"u1","channel_id":"c1","root_id":"",
            "original_id":"","message":"hello secret","type":"","props":{"from_bot":"true"},
            "hashtags":"#x","pending_post_id":"","reply_count":3,"last_reply_at":1700000000500,
            "participants":null,"file_ids":null,"brand_new_field":{"x":1},
            "metadata":{"reactions":[{"user_id":"u2","post_id":"p1","emoji_name":"+1","create_at":5,"remote_id":null}],
            "priority":{"priority":"urgent","requested_ack":null},"embeds":[{"type":"opengraph","url":"https://x"}]}}"##;
        let p: Post = serde_json::from_str(json).unwrap();
        assert_eq!(p.message.as_str(), "hello secret");
        assert_eq!(p.hashtags, "#x");
        assert!(p.participants.is_none());
        assert!(p.is_following.is_none());
        assert!(p.file_ids.is_empty());
        assert_eq!(p.priority(), "urgent");
        assert_eq!(p.thread_id(), "p1");
        let md = p.metadata.as_ref().unwrap();
        assert_eq!(md.reactions[0].emoji_name, "+1");
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        assert!(!dbg.contains("https://x"), "{dbg}");
        assert!(dbg.contains("from_bot"));
    }

    #[test]
    fn deleted_post_has_empty_message_and_metadata() {
        let p: Post = serde_json::from_str(
            r#"{"id":"p","delete_at":5,"message":"","metadata":{},"root_id":"r","participants":[]}"#,
        )
        .unwrap();
        assert!(p.message.is_empty());
        assert_eq!(p.thread_id(), "r");
        assert_eq!(p.participants, Some(vec![]));
    }

    #[test]
    fn threads_null_and_id_only_participants() {
        let t: Threads = serde_json::from_str(
            r#"{"total":4,"total_unread_threads":2,"total_unread_mentions":1,"total_unread_urgent_mentions":0,"threads":null}"#,
        )
        .unwrap();
        assert_eq!(t.total, 4);
        assert!(t.threads.is_empty());

        let t: ThreadResponse = serde_json::from_str(
            r#"{"id":"r1","reply_count":2,"last_reply_at":10,"last_viewed_at":0,
            "participants":[{"id":"u1","username":"","props":null,"notify_props":null,"timezone":null,"delete_at":0}],
            "post":{"id":"r1","channel_id":"c1","message":"m","props":null,"metadata":null,"file_ids":null},"unread_replies":2,"unread_mentions":1,
            "is_urgent":false,"delete_at":0}"#,
        )
        .unwrap();
        assert_eq!(t.participants[0].id, "u1");
        assert_eq!(t.post.unwrap().channel_id, "c1");
    }

    #[test]
    fn channel_and_member_unread_math() {
        let c: Channel = serde_json::from_str(
            r#"{"id":"c","type":"D","team_id":"","total_msg_count":10,"total_msg_count_root":6,
            "last_root_post_at":9,"scheme_id":null,"props":null,"group_constrained":null,"shared":null,"policy_id":null,"banner_info":null}"#,
        )
        .unwrap();
        assert_eq!(c.channel_type, ChannelType::Direct);
        assert!(c.channel_type.is_direct_or_group());
        let m: ChannelMember = serde_json::from_str(
            r#"{"channel_id":"c","user_id":"u","msg_count":7,"msg_count_root":6,"mention_count":1,
            "notify_props":{"mark_unread":"mention"},"team_display_name":"T"}"#,
        )
        .unwrap();
        assert_eq!(c.unread_count(&m, false), 3);
        assert_eq!(c.unread_count(&m, true), 0);
        assert!(m.is_muted());
        assert_eq!(m.team_display_name.as_deref(), Some("T"));
        let other: Channel = serde_json::from_str(r#"{"type":"X"}"#).unwrap();
        assert_eq!(other.channel_type, ChannelType::Other("X".into()));
        assert_eq!(serde_json::to_value(&other.channel_type).unwrap(), "X");
    }

    #[test]
    fn team_unread_with_thread_counts() {
        let u: Vec<TeamUnread> = serde_json::from_str(
            r#"[{"team_id":"t","msg_count":1,"mention_count":2,"mention_count_root":1,"msg_count_root":1,
            "thread_count":5,"thread_mention_count":2,"thread_urgent_mention_count":1}]"#,
        )
        .unwrap();
        assert_eq!(u[0].thread_count, 5);
        assert_eq!(u[0].thread_urgent_mention_count, 1);
    }

    #[test]
    fn oauth_token_response() {
        let t: OAuthTokenResponse = serde_json::from_str(
            r#"{"access_token":"aaaa","token_type":"bearer","expires_in":2592000,"scope":"","refresh_token":"","id_token":""}"#,
        )
        .unwrap();
        assert_eq!(t.access_token.expose(), "aaaa");
        assert!(t.refresh_token.is_none());
        assert!(!format!("{t:?}").contains("aaaa"));
    }
}
