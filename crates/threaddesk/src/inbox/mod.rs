//! Pure inbox rules: what is an item, when it is in the queue, in what order, with what counts,
//! and how done / snooze marks map to Mattermost preferences. No I/O here: the store calls
//! these functions to materialise its `items` table, so the SQL and these rules cannot drift.
//!
//! Times are Mattermost's: `i64` milliseconds since the epoch. Ids are 26-char Mattermost ids.

pub mod prefs;
pub mod search;
pub mod searches;

use std::cmp::Ordering;
use std::fmt;

pub use prefs::{
    DONE_CATEGORY, MarkKind, Preference, SNOOZE_CATEGORY, mark_preference, marks_to_preferences,
    preferences_to_marks,
};

/// Milliseconds since the Unix epoch (Mattermost's time unit).
pub type Millis = i64;

/// A Mattermost id is 26 characters of lowercase base32 (`a-z`, `0-9`).
#[must_use]
pub fn is_valid_id(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Identifies one queue item. The string form (`t_<root id>` / `c_<channel id>`) is stable: it is
/// the preference name of done / snooze marks and the id in URLs.
///
/// A root post that mentions the user is keyed `Thread(root_id)` before it has replies, so its
/// marks carry over when it becomes a followed thread.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemKey {
    /// A thread (or a root post that mentions the user), by its root post id.
    Thread(String),
    /// A DM or GM channel, by channel id.
    Channel(String),
}

/// A string that is not a valid item key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an item key (expected t_<26-char id> or c_<26-char id>)")]
pub struct BadItemKey;

impl ItemKey {
    /// Builds a thread key; `None` unless `root_id` is a valid Mattermost id.
    #[must_use]
    pub fn thread(root_id: &str) -> Option<Self> {
        is_valid_id(root_id).then(|| Self::Thread(root_id.to_owned()))
    }

    /// Builds a channel key; `None` unless `channel_id` is a valid Mattermost id.
    #[must_use]
    pub fn channel(channel_id: &str) -> Option<Self> {
        is_valid_id(channel_id).then(|| Self::Channel(channel_id.to_owned()))
    }

    /// Parses the stable string form.
    ///
    /// # Errors
    /// [`BadItemKey`] unless `s` is `t_<id>` or `c_<id>` with a valid id.
    pub fn parse(s: &str) -> Result<Self, BadItemKey> {
        let key = if let Some(id) = s.strip_prefix("t_") {
            Self::thread(id)
        } else if let Some(id) = s.strip_prefix("c_") {
            Self::channel(id)
        } else {
            None
        };
        key.ok_or(BadItemKey)
    }

    /// The id inside the key (root post id or channel id).
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            Self::Thread(id) | Self::Channel(id) => id,
        }
    }

    /// The stable string form (`t_<id>` / `c_<id>`), at most 28 bytes.
    #[must_use]
    pub fn as_string(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Thread(id) => write!(f, "t_{id}"),
            Self::Channel(id) => write!(f, "c_{id}"),
        }
    }
}

impl fmt::Debug for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for ItemKey {
    type Err = BadItemKey;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What kind of conversation an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// A followed CRT thread.
    Thread,
    /// A direct-message channel (two users, or a self-DM).
    Direct,
    /// A group-message channel (3–8 users).
    Group,
    /// A root post that mentions the user and has no reply yet (no thread exists on the server).
    Mention,
}

impl ItemKind {
    /// Stable short name, stored in the database.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thread => "thread",
            Self::Direct => "dm",
            Self::Group => "gm",
            Self::Mention => "mention",
        }
    }

    /// Inverse of [`ItemKind::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "thread" => Self::Thread,
            "dm" => Self::Direct,
            "gm" => Self::Group,
            "mention" => Self::Mention,
            _ => return None,
        })
    }
}

/// Mattermost channel type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelType {
    /// `O`
    Open,
    /// `P`
    Private,
    /// `D`
    Direct,
    /// `G`
    Group,
}

impl ChannelType {
    /// From Mattermost's one-letter code.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "O" => Self::Open,
            "P" => Self::Private,
            "D" => Self::Direct,
            "G" => Self::Group,
            _ => return None,
        })
    }

    /// Mattermost's one-letter code.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "O",
            Self::Private => "P",
            Self::Direct => "D",
            Self::Group => "G",
        }
    }
}

/// The user's done / snooze marks for one item (mirrored from Mattermost preferences).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// Marked done at this time: activity at or before it is not new.
    pub done_at: Option<Millis>,
    /// Hidden until this time (exclusive: at exactly this time it is back).
    pub snoozed_until: Option<Millis>,
}

/// Unread figures for an item, computed from Mattermost's read-count semantics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Unread replies (thread) or unread messages (DM/GM), or 1 for an unread mention post.
    pub unread: i64,
    /// Unread mentions.
    pub mentions: i64,
    /// Unread urgent mentions (or 1 for an urgent thread with unread replies).
    pub urgent: i64,
}

/// A derived queue item: what the store materialises per user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: ItemKey,
    pub kind: ItemKind,
    /// Channel the conversation lives in.
    pub channel_id: String,
    /// Team id, `""` for DM/GM (and DM/GM threads).
    pub team_id: String,
    /// Time of the latest activity that can bring the item back (reply, post, mention).
    pub last_activity_at: Millis,
    pub counts: Counts,
}

/// Where an item stands for a user at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemState {
    /// In the queue.
    Open,
    /// Done and nothing new since.
    Done,
    /// Has news, but snoozed past now.
    Snoozed,
}

/// True when the item has activity newer than the done mark. Activity exactly AT the done mark is
/// not new (the user saw it when marking done).
#[must_use]
pub fn has_news(last_activity_at: Millis, marks: &Marks) -> bool {
    marks.done_at.is_none_or(|done| last_activity_at > done)
}

/// True while snoozed: `snoozed_until` strictly after `now`. At exactly `now` it is back.
#[must_use]
pub fn is_snoozed(marks: &Marks, now: Millis) -> bool {
    marks.snoozed_until.is_some_and(|until| until > now)
}

/// The item's state for the user at `now`.
#[must_use]
pub fn state(last_activity_at: Millis, marks: &Marks, now: Millis) -> ItemState {
    if !has_news(last_activity_at, marks) {
        ItemState::Done
    } else if is_snoozed(marks, now) {
        ItemState::Snoozed
    } else {
        ItemState::Open
    }
}

/// In the queue: has news since the done mark and is not snoozed past now.
#[must_use]
pub fn in_queue(item: &Item, marks: &Marks, now: Millis) -> bool {
    state(item.last_activity_at, marks, now) == ItemState::Open
}

/// Queue order: last activity descending, then the key's string form ascending (deterministic).
#[must_use]
pub fn queue_order(a: &Item, b: &Item) -> Ordering {
    b.last_activity_at
        .cmp(&a.last_activity_at)
        .then_with(|| a.key.to_string().cmp(&b.key.to_string()))
}

/// A followed-thread membership as the server reports it (`ThreadResponse` + membership).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadFacts {
    pub root_id: String,
    pub channel_id: String,
    pub team_id: String,
    pub reply_count: i64,
    pub last_reply_at: Millis,
    pub last_viewed_at: Millis,
    pub unread_replies: i64,
    pub unread_mentions: i64,
    pub is_urgent: bool,
    pub following: bool,
    /// Root's `delete_at` (> 0: deleted).
    pub delete_at: Millis,
}

/// The root post as far as the rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootFacts {
    pub create_at: Millis,
    pub delete_at: Millis,
    /// Last time the user viewed the channel (for "is this mention unread").
    pub channel_last_viewed_at: Millis,
    /// Whether any reply to it is known (locally cached or counted by the server).
    pub has_replies: bool,
}

/// Channel + the user's membership, for DM/GM items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelFacts {
    pub channel_id: String,
    pub channel_type: ChannelType,
    pub team_id: String,
    pub total_msg_count: i64,
    pub total_msg_count_root: i64,
    pub last_post_at: Millis,
    pub delete_at: Millis,
    pub member: Option<MemberCounts>,
}

/// `ChannelMember` counters. `msg_count` / `msg_count_root` are messages READ, not unread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberCounts {
    pub msg_count: i64,
    pub msg_count_root: i64,
    pub mention_count: i64,
    pub mention_count_root: i64,
    pub urgent_mention_count: i64,
    pub last_viewed_at: Millis,
}

/// Unread counts of a channel for a member. Unread = total − read (never negative). With CRT on
/// (Mattermost's default) only root posts count, replies are counted on their threads. In a DM
/// every message from the other side is a mention, so mentions ≥ unread messages there.
#[must_use]
pub fn channel_counts(
    channel_type: ChannelType,
    total_msg_count: i64,
    total_msg_count_root: i64,
    member: &MemberCounts,
    crt: bool,
) -> Counts {
    let (unread, mentions) = if crt {
        (
            total_msg_count_root
                .saturating_sub(member.msg_count_root)
                .max(0),
            member.mention_count_root.max(0),
        )
    } else {
        (
            total_msg_count.saturating_sub(member.msg_count).max(0),
            member.mention_count.max(0),
        )
    };
    let mentions = if channel_type == ChannelType::Direct {
        mentions.max(unread)
    } else {
        mentions
    };
    Counts {
        unread,
        mentions,
        urgent: member.urgent_mention_count.max(0),
    }
}

/// Inputs for the item keyed `Thread(root_id)`: the followed thread (if any), whether the user
/// is still a member of its channel, the root post (if cached) and whether the root mentions the
/// user (known to the sync engine from `posted` event `mentions` / search).
#[derive(Debug, Clone, Default)]
pub struct ThreadItemInputs<'a> {
    pub thread: Option<&'a ThreadFacts>,
    pub is_member: bool,
    pub root: Option<RootFacts>,
    /// `Some((channel_id, team_id))` when the root post mentions the user.
    pub mention: Option<(&'a str, &'a str)>,
}

/// The item keyed `Thread(root_id)`, if any: a followed thread, else a root post that mentions
/// the user before anyone replied. Gone when the root is deleted or the user left the channel.
#[must_use]
pub fn derive_thread_item(root_id: &str, inputs: &ThreadItemInputs<'_>) -> Option<Item> {
    let key = ItemKey::thread(root_id)?;
    if !inputs.is_member || inputs.root.is_some_and(|r| r.delete_at > 0) {
        return None;
    }
    if let Some(t) = inputs.thread.filter(|t| t.following) {
        if t.delete_at > 0 {
            return None;
        }
        let root_at = inputs.root.map_or(0, |r| r.create_at);
        let unread = t.unread_replies.max(0);
        return Some(Item {
            key,
            kind: ItemKind::Thread,
            channel_id: t.channel_id.clone(),
            team_id: t.team_id.clone(),
            last_activity_at: t.last_reply_at.max(root_at),
            counts: Counts {
                unread,
                mentions: t.unread_mentions.max(0),
                urgent: i64::from(t.is_urgent && (unread > 0 || t.unread_mentions > 0)),
            },
        });
    }
    let (channel_id, team_id) = inputs.mention?;
    let root = inputs.root?;
    let replied = root.has_replies || inputs.thread.is_some_and(|t| t.reply_count > 0);
    if replied {
        return None;
    }
    let unread = i64::from(root.create_at > root.channel_last_viewed_at);
    Some(Item {
        key,
        kind: ItemKind::Mention,
        channel_id: channel_id.to_owned(),
        team_id: team_id.to_owned(),
        last_activity_at: root.create_at,
        counts: Counts {
            unread,
            mentions: unread,
            urgent: 0,
        },
    })
}

/// The item keyed `Channel(channel_id)`, if any: a DM/GM the user is a member of, not archived,
/// with at least one post.
#[must_use]
pub fn derive_channel_item(ch: &ChannelFacts, crt: bool) -> Option<Item> {
    let key = ItemKey::channel(&ch.channel_id)?;
    let kind = match ch.channel_type {
        ChannelType::Direct => ItemKind::Direct,
        ChannelType::Group => ItemKind::Group,
        ChannelType::Open | ChannelType::Private => return None,
    };
    let member = ch.member.as_ref()?;
    if ch.delete_at > 0 || ch.last_post_at <= 0 {
        return None;
    }
    Some(Item {
        key,
        kind,
        channel_id: ch.channel_id.clone(),
        team_id: String::new(),
        last_activity_at: ch.last_post_at,
        counts: channel_counts(
            ch.channel_type,
            ch.total_msg_count,
            ch.total_msg_count_root,
            member,
            crt,
        ),
    })
}

/// A queue filter, as offered by the web layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every open item.
    All,
    /// Open items with unread mentions.
    Mentions,
    /// Open DM/GM items.
    Direct,
    /// Open threads (and mention posts, which are threads-to-be).
    Threads,
    /// Open items of one team (DM/GM items have team `""`).
    Team(String),
    /// Items with news that are snoozed past now.
    Snoozed,
    /// Items done with nothing new since.
    Done,
}

impl Filter {
    /// Whether an item passes this filter at `now` (the reference for the store's SQL).
    #[must_use]
    pub fn matches(&self, item: &Item, marks: &Marks, now: Millis) -> bool {
        let st = state(item.last_activity_at, marks, now);
        match self {
            Self::Snoozed => st == ItemState::Snoozed,
            Self::Done => st == ItemState::Done,
            _ if st != ItemState::Open => false,
            Self::All => true,
            Self::Mentions => item.counts.mentions > 0,
            Self::Direct => matches!(item.kind, ItemKind::Direct | ItemKind::Group),
            Self::Threads => matches!(item.kind, ItemKind::Thread | ItemKind::Mention),
            Self::Team(t) => &item.team_id == t,
        }
    }
}

#[cfg(test)]
mod tests;
