//! Wire types (research §2.5, §3.1, §4.1, §5.2, §7; OpenAPI `definitions.yaml`), and the 26-char
//! Mattermost id. Field names, order and nullability follow the server's Go structs: where the
//! server has no `omitempty` the field is always present (possibly `null`).

use std::collections::BTreeMap;
use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// The z-base-32 alphabet of `model.NewId` (research §1).
const ID_ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// A 26-character Mattermost id, stored inline (no heap) to keep per-post overhead small.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id([u8; 26]);

impl Id {
    /// `model.NewId`: z-base-32 of 16 random bytes, 26 characters.
    pub fn new(rng: &mut impl RngCore) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// A fresh id from the OS-seeded thread RNG (for runtime objects and secrets).
    #[must_use]
    pub fn random() -> Self {
        Self::new(&mut rand::rng())
    }

    fn from_bytes(bytes: [u8; 16]) -> Self {
        let value = u128::from_be_bytes(bytes);
        let mut out = [0u8; 26];
        // 128 bits → 26 five-bit groups, the last one padded with two zero bits.
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 128i32 - 5 * (i as i32 + 1);
            let group = if shift >= 0 {
                (value >> shift) & 0x1f
            } else {
                (value << (-shift)) & 0x1f
            };
            *slot = ID_ALPHABET[group as usize];
        }
        Self(out)
    }

    /// `model.IsValidId`: exactly 26 ASCII letters or digits.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 26 || !bytes.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut out = [0u8; 26];
        out.copy_from_slice(bytes);
        Some(Self(out))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.as_str())
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<Id> for String {
    fn from(id: Id) -> Self {
        id.as_str().to_owned()
    }
}

pub type StringMap = BTreeMap<String, String>;

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `model.User` (research §2.5). `None` fields are the server's `omitempty` ones.
#[derive(Clone, Debug, Default, Serialize)]
pub struct User {
    pub id: String,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub username: String,
    pub auth_service: String,
    pub email: String,
    #[serde(skip_serializing_if = "is_false")]
    pub email_verified: bool,
    pub nickname: String,
    pub first_name: String,
    pub last_name: String,
    pub position: String,
    pub roles: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub props: Option<StringMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_props: Option<StringMap>,
    #[serde(skip_serializing_if = "is_zero")]
    pub last_password_update: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub last_picture_update: i64,
    pub locale: String,
    pub timezone: Option<StringMap>,
    #[serde(skip_serializing_if = "is_zero")]
    pub last_activity_at: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub is_bot: bool,
    pub disable_welcome_email: bool,
}

impl User {
    /// A participant without `extended=true`: only `id`, every other non-omitempty field empty
    /// (trap 11).
    #[must_use]
    pub fn id_only(id: Id) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }
}

/// `model.Team` (research §3.1).
#[derive(Clone, Debug, Serialize)]
pub struct Team {
    pub id: Id,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub display_name: String,
    pub name: String,
    pub description: String,
    pub email: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub company_name: String,
    pub allowed_domains: String,
    pub invite_id: String,
    pub allow_open_invite: bool,
    pub scheme_id: Option<String>,
    pub group_constrained: Option<bool>,
    pub policy_id: Option<String>,
    pub cloud_limits_archived: bool,
}

/// `model.TeamMember`.
#[derive(Clone, Debug, Serialize)]
pub struct TeamMember {
    pub team_id: Id,
    pub user_id: Id,
    pub roles: String,
    pub delete_at: i64,
    pub scheme_guest: bool,
    pub scheme_user: bool,
    pub scheme_admin: bool,
    pub explicit_roles: String,
}

/// `model.TeamUnread` (thread_* only with `include_collapsed_threads=true`).
#[derive(Clone, Debug, Serialize)]
pub struct TeamUnread {
    pub team_id: Id,
    pub msg_count: i64,
    pub mention_count: i64,
    pub mention_count_root: i64,
    pub msg_count_root: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_mention_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_urgent_mention_count: Option<i64>,
}

/// `model.Channel` (research §3.1).
#[derive(Clone, Debug, Serialize)]
pub struct Channel {
    pub id: Id,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub team_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub display_name: String,
    pub name: String,
    pub header: String,
    pub purpose: String,
    pub last_post_at: i64,
    pub total_msg_count: i64,
    pub extra_update_at: i64,
    pub creator_id: String,
    pub scheme_id: Option<String>,
    pub props: Option<Map<String, Value>>,
    pub group_constrained: Option<bool>,
    pub shared: Option<bool>,
    pub total_msg_count_root: i64,
    pub policy_id: Option<String>,
    pub last_root_post_at: i64,
    pub policy_enforced: bool,
    pub default_category_name: String,
}

/// `model.ChannelMember` (+ `ChannelMemberWithTeamData` when `team` is set).
#[derive(Clone, Debug, Serialize)]
pub struct ChannelMember {
    pub channel_id: Id,
    pub user_id: Id,
    pub roles: String,
    pub last_viewed_at: i64,
    pub msg_count: i64,
    pub mention_count: i64,
    pub mention_count_root: i64,
    pub urgent_mention_count: i64,
    pub msg_count_root: i64,
    pub notify_props: StringMap,
    pub last_update_at: i64,
    pub scheme_guest: bool,
    pub scheme_user: bool,
    pub scheme_admin: bool,
    pub explicit_roles: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub team: Option<MemberTeamData>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MemberTeamData {
    pub team_display_name: String,
    pub team_name: String,
    pub team_update_at: i64,
}

/// `model.ChannelUnread` (`msg_count` already *unread*, trap 8).
#[derive(Clone, Debug, Serialize)]
pub struct ChannelUnread {
    pub team_id: String,
    pub channel_id: Id,
    pub msg_count: i64,
    pub mention_count: i64,
    pub mention_count_root: i64,
    pub urgent_mention_count: i64,
    pub msg_count_root: i64,
}

/// `model.ChannelUnreadAt` (set_unread; *read* counts again, trap 8).
#[derive(Clone, Debug, Serialize)]
pub struct ChannelUnreadAt {
    pub team_id: String,
    pub user_id: Id,
    pub channel_id: Id,
    pub msg_count: i64,
    pub mention_count: i64,
    pub mention_count_root: i64,
    pub urgent_mention_count: i64,
    pub msg_count_root: i64,
    pub last_viewed_at: i64,
}

/// `model.Post` (research §4.1; `hashtags`, not the spec's `hashtag`, trap 10).
#[derive(Clone, Debug, Serialize)]
pub struct Post {
    pub id: Id,
    pub create_at: i64,
    pub update_at: i64,
    pub edit_at: i64,
    pub delete_at: i64,
    pub is_pinned: bool,
    pub user_id: Id,
    pub channel_id: Id,
    pub root_id: String,
    pub original_id: String,
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub props: Map<String, Value>,
    pub hashtags: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_ids: Vec<Id>,
    pub pending_post_id: String,
    #[serde(skip_serializing_if = "is_false")]
    pub has_reactions: bool,
    pub reply_count: i64,
    pub last_reply_at: i64,
    pub participants: Option<Vec<User>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_following: Option<bool>,
    pub metadata: PostMetadata,
}

/// `model.PostMetadata`: every field omitempty.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PostMetadata {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub emojis: Vec<Emoji>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<PostPriority>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PostPriority {
    #[serde(default)]
    pub priority: String,
    #[serde(default)]
    pub requested_ack: Option<bool>,
    #[serde(default)]
    pub persistent_notifications: Option<bool>,
}

/// `model.PostList` (research §4.1).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PostList {
    pub order: Vec<Id>,
    pub posts: BTreeMap<Id, Post>,
    pub next_post_id: String,
    pub prev_post_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_next: Option<bool>,
    pub first_inaccessible_post_time: i64,
}

/// `model.Reaction` (research §4.4).
#[derive(Clone, Debug, Serialize)]
pub struct Reaction {
    pub user_id: Id,
    pub post_id: Id,
    pub emoji_name: String,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub remote_id: String,
    pub channel_id: Id,
}

/// `model.FileInfo` (research §4.1).
#[derive(Clone, Debug, Serialize)]
pub struct FileInfo {
    pub id: Id,
    pub user_id: Id,
    pub post_id: String,
    pub channel_id: Id,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub name: String,
    pub extension: String,
    pub size: i64,
    pub mime_type: String,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub width: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub height: u32,
    #[serde(skip_serializing_if = "is_false")]
    pub has_preview_image: bool,
    pub mini_preview: Option<String>,
    pub remote_id: Option<String>,
    pub archived: bool,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// `model.Emoji` (custom emoji).
#[derive(Clone, Debug, Serialize)]
pub struct Emoji {
    pub id: Id,
    pub create_at: i64,
    pub update_at: i64,
    pub delete_at: i64,
    pub creator_id: Id,
    pub name: String,
}

/// `model.Status` (`dnd_end_time` in **seconds**, trap 9).
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub user_id: Id,
    pub status: String,
    pub manual: bool,
    pub last_activity_at: i64,
    pub dnd_end_time: i64,
}

/// `model.Preference`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Preference {
    pub user_id: String,
    pub category: String,
    pub name: String,
    pub value: String,
}

/// `model.ThreadResponse` (research §5.2): no `is_following`, no `team_id` (trap 11).
#[derive(Clone, Debug, Serialize)]
pub struct ThreadResponse {
    pub id: Id,
    pub reply_count: i64,
    pub last_reply_at: i64,
    pub last_viewed_at: i64,
    pub participants: Vec<User>,
    pub post: Option<Post>,
    pub unread_replies: i64,
    pub unread_mentions: i64,
    pub is_urgent: bool,
    pub delete_at: i64,
}

/// `model.Threads` (`threads` is `null` with `totalsOnly`, trap 13).
#[derive(Clone, Debug, Serialize)]
pub struct Threads {
    pub total: i64,
    pub total_unread_threads: i64,
    pub total_unread_mentions: i64,
    pub total_unread_urgent_mentions: i64,
    pub threads: Option<Vec<ThreadResponse>>,
}

/// `model.UserAccessToken` (`token` only in the creation response).
#[derive(Clone, Debug, Serialize)]
pub struct UserAccessToken {
    pub id: Id,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub token: String,
    pub user_id: Id,
    pub description: String,
    pub is_active: bool,
}

/// `model.OAuthApp` (research §2.4).
#[derive(Clone, Debug, Serialize)]
pub struct OAuthApp {
    pub id: Id,
    pub creator_id: String,
    pub create_at: i64,
    pub update_at: i64,
    pub client_secret: String,
    pub name: String,
    pub description: String,
    pub icon_url: String,
    pub callback_urls: Vec<String>,
    pub homepage: String,
    pub is_trusted: bool,
    /// Request-only on the real server (`OAuthAppRequest.is_public`, research §2.4): a public
    /// client shows as an empty `client_secret`, so the flag is not serialized.
    #[serde(skip)]
    pub is_public: bool,
    pub mattermost_app_id: String,
}

/// `{"status":"OK"}` (`ReturnStatusOK`).
#[derive(Clone, Debug, Serialize)]
pub struct StatusOk {
    pub status: &'static str,
}

pub const STATUS_OK: StatusOk = StatusOk { status: "OK" };

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ids_are_26_chars_of_the_alphabet_and_parse_back() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let id = Id::new(&mut rng);
            assert_eq!(id.as_str().len(), 26);
            assert!(id.as_str().bytes().all(|b| ID_ALPHABET.contains(&b)));
            assert_eq!(Id::parse(id.as_str()), Some(id));
        }
        assert_eq!(Id::parse("short"), None);
        assert_eq!(Id::parse("abcdefghijklmnopqrstuvwxy!"), None);
    }
}
