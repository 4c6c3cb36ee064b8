//! A batch of store writes, produced by pure functions (REST results, WebSocket events) and
//! committed in ONE transaction by [`super::apply::commit`]. Keeping the production pure means
//! every event handler is testable without a database, and that an event's effects are atomic.

use mattermost::models as mm;

use crate::inbox::{ItemKey, MarkKind, Marks, Millis};
use crate::store;

/// One write. Applied in order; every write is idempotent (absolute values, compared by
/// `update_at` / `last_reply_at` in the store — never increments).
#[derive(Debug, Clone)]
pub enum Write {
    /// The user's own row (must exist before any other row of the user).
    SelfProfile(store::Profile),
    Profiles(Vec<store::Profile>),
    /// The user's complete team list (replaces the previous one).
    Teams(Vec<store::Team>),
    Channels(Vec<store::Channel>),
    /// Memberships; with `replace_all`, memberships not listed are removed (left channels).
    Memberships {
        rows: Vec<store::Membership>,
        replace_all: bool,
    },
    /// The complete membership set of one scope, as listed by a team-scoped read
    /// (`/users/me/teams/{team_id}/channels[/members]`: the team's channels plus every DM/GM):
    /// memberships of channels in team `team_id` (and, with `include_direct`, of DMs/GMs) that
    /// are not in `keep` are removed (the user left or was removed while events were lost).
    MembershipScope {
        team_id: String,
        include_direct: bool,
        keep: Vec<String>,
    },
    /// The user left / was removed from a channel.
    RemoveMembership {
        channel_id: String,
    },
    /// Full thread rows (from a thread list or `thread_updated`).
    Threads(Vec<store::Thread>),
    /// After a complete listing of every team's followed threads since `since`: threads the
    /// store still has as followed, active since then, but absent from the lists were
    /// unfollowed elsewhere.
    UnfollowMissing {
        listed: std::collections::HashSet<String>,
        since: i64,
    },
    /// Read state of one thread changed (`thread_read_changed`, our own mark read / unread).
    ThreadRead {
        root_id: String,
        last_viewed_at: Millis,
        unread_replies: Option<i64>,
        unread_mentions: Option<i64>,
    },
    /// Our own mark unread from `post_id` on, shown before Mattermost echoes it: the read point
    /// moves to just before the post (as `set_unread` does) and the unread counts become those
    /// of the cached posts from it on; the echoed `thread_read_changed` / `post_unread` brings
    /// the server's counts.
    MarkedUnread {
        key: ItemKey,
        post_id: String,
    },
    /// Mark-all-read of a team (and of all DM/GM threads): every followed thread read at `at`.
    ThreadsAllRead {
        team_id: String,
        at: Millis,
    },
    /// Follow state changed.
    Follow {
        root_id: String,
        following: bool,
    },
    Posts(Vec<store::Post>),
    /// A new post in a channel (`posted`). Idempotent by post id: the channel totals (and, for
    /// a DM from the other side, the member's mention count) move only the first time this
    /// post id is seen; `last_post_at` moves by max.
    ChannelPostAdded {
        post: store::Post,
        mentions_me: bool,
        from_me: bool,
    },
    /// A post was deleted at `at` (a deleted root takes its replies and thread with it).
    PostDeleted {
        post_id: String,
        root_id: String,
        at: Millis,
    },
    /// A reaction added or removed (the post row's reaction list is edited by value).
    Reaction {
        reaction: mm::Reaction,
        added: bool,
    },
    /// Root posts that mention the user (item kind `mention` until someone replies).
    Mentions(Vec<store::Mention>),
    /// Done / snooze marks; with `replace_all`, marks not listed are cleared (a full read of
    /// the user's preferences).
    Marks {
        marks: Vec<(ItemKey, Marks)>,
        replace_all: bool,
    },
    /// One mark set (`Some`) or cleared (`None`), e.g. from another device.
    MarkSet {
        key: ItemKey,
        kind: MarkKind,
        at: Option<Millis>,
    },
    /// A channel was viewed at `at` (another client, or our own mark read): read counts = totals.
    ChannelViewed {
        channel_id: String,
        at: Millis,
    },
    /// `post_unread` / `set_unread`: the member's new **read** counts.
    MemberReadCounts {
        channel_id: String,
        msg_count: i64,
        msg_count_root: i64,
        mention_count: i64,
        mention_count_root: i64,
        urgent_mention_count: i64,
        last_viewed_at: Millis,
    },
    /// Saved-post (flagged) state of one post (`flagged_post` preference event, our own
    /// save / unsave).
    Flagged {
        post_id: String,
        saved: bool,
    },
    /// Every saved post of the user (a full read of the preferences); with `replace_all`,
    /// saved posts not listed are cleared.
    SavedPosts {
        post_ids: Vec<String>,
        replace_all: bool,
    },
    /// One saved search of the user (`threaddesk_search` preference event, or our own save):
    /// `None` = forgotten.
    SavedSearch {
        name: String,
        search: Option<crate::inbox::searches::SavedSearch>,
    },
    /// Every saved search of the user (a full read of the preferences).
    SavedSearches(Vec<crate::inbox::searches::SavedSearch>),
    /// The WebSocket position the store now reflects: events up to `next_seq − 1` of
    /// `connection_id` are applied (resumed from after a restart).
    WsPosition {
        connection_id: String,
        next_seq: i64,
    },
    /// A complete sync finished at `at`.
    SyncedAt {
        at: Millis,
    },
}

/// Writes plus the item keys they are known to touch (the commit adds the keys it derives).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub writes: Vec<Write>,
    pub keys: Vec<ItemKey>,
    /// The user's own action shown at once ([`super::actions`]); otherwise what Mattermost
    /// said (an event, a sync read), which yields to an undelivered action of the user about
    /// the same state ([`super::apply::commit`]).
    pub local: bool,
}

impl Batch {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    pub fn push(&mut self, w: Write) {
        self.writes.push(w);
    }

    pub fn touch(&mut self, key: Option<ItemKey>) {
        if let Some(k) = key
            && !self.keys.contains(&k)
        {
            self.keys.push(k);
        }
    }
}
