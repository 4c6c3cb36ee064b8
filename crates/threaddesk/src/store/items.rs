//! Shared cache writes (teams, channels, posts, profiles) and the materialisation of the
//! `items` table: after every change, the affected items are recomputed with the pure rules in
//! [`crate::inbox`] and written with the user's marks. Newer wins everywhere (by `update_at`,
//! `last_post_at`, `last_reply_at`), never increments, so replaying an event is harmless.

use rusqlite::{Connection, OptionalExtension, params};

use super::types::{Channel, Post, Profile, Team};
use super::{StoreError, Tx, exec, q_row};
use crate::inbox::{self, ChannelType, Item, ItemKey, ItemKind, Marks, MemberCounts, RootFacts};

/// Collapsed Reply Threads: Mattermost's default (`always_on`); channel counts use root counts.
pub(crate) const CRT: bool = true;

impl Tx<'_> {
    /// Inserts or updates a team (newer `update_at` wins).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn upsert_team(&self, t: &Team) -> Result<(), StoreError> {
        exec(
            self.conn,
            "INSERT INTO teams (team_id, name, display_name, update_at, delete_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (team_id) DO UPDATE SET name = excluded.name,
               display_name = excluded.display_name, update_at = excluded.update_at,
               delete_at = excluded.delete_at
             WHERE excluded.update_at >= teams.update_at",
            params![t.team_id, t.name, t.display_name, t.update_at, t.delete_at],
        )?;
        Ok(())
    }

    /// Inserts or updates a channel: its metadata when `update_at` is not older than the stored
    /// one, its counters and post times as the maximum of both (order-independent, never an
    /// increment). Refreshes the DM/GM item of every member when anything changed.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn upsert_channel(&self, c: &Channel) -> Result<(), StoreError> {
        let n = exec(self.conn,
            "INSERT INTO channels (channel_id, team_id, type, name, display_name, total_msg_count,
               total_msg_count_root, last_post_at, last_root_post_at, update_at, delete_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (channel_id) DO UPDATE SET
               team_id = iif(excluded.update_at >= channels.update_at, excluded.team_id, channels.team_id),
               type = iif(excluded.update_at >= channels.update_at, excluded.type, channels.type),
               name = iif(excluded.update_at >= channels.update_at, excluded.name, channels.name),
               display_name = iif(excluded.update_at >= channels.update_at,
                                  excluded.display_name, channels.display_name),
               delete_at = iif(excluded.update_at >= channels.update_at,
                               excluded.delete_at, channels.delete_at),
               update_at = max(excluded.update_at, channels.update_at),
               total_msg_count = max(excluded.total_msg_count, channels.total_msg_count),
               total_msg_count_root = max(excluded.total_msg_count_root, channels.total_msg_count_root),
               last_post_at = max(excluded.last_post_at, channels.last_post_at),
               last_root_post_at = max(excluded.last_root_post_at, channels.last_root_post_at)
             WHERE excluded.update_at > channels.update_at
               OR excluded.total_msg_count > channels.total_msg_count
               OR excluded.total_msg_count_root > channels.total_msg_count_root
               OR excluded.last_post_at > channels.last_post_at
               OR excluded.last_root_post_at > channels.last_root_post_at
               OR (excluded.update_at = channels.update_at
                   AND (excluded.display_name <> channels.display_name
                        OR excluded.delete_at <> channels.delete_at))",
            params![
                c.channel_id,
                c.team_id,
                c.channel_type,
                c.name,
                c.display_name,
                c.total_msg_count,
                c.total_msg_count_root,
                c.last_post_at,
                c.last_root_post_at,
                c.update_at,
                c.delete_at
            ],
        )?;
        if n > 0 {
            refresh_channel_for_members(self.conn, &c.channel_id)?;
        }
        Ok(())
    }

    /// Inserts or updates profiles of other users (for display; newer `update_at` wins).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn upsert_profiles(&self, profiles: &[Profile]) -> Result<(), StoreError> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO profiles (user_id, username, first_name, last_name, nickname, update_at, delete_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (user_id) DO UPDATE SET username = excluded.username,
               first_name = excluded.first_name, last_name = excluded.last_name,
               nickname = excluded.nickname, update_at = excluded.update_at,
               delete_at = excluded.delete_at
             WHERE excluded.update_at >= profiles.update_at",
        )?;
        for p in profiles {
            st.execute(params![
                p.user_id,
                p.username,
                p.first_name,
                p.last_name,
                p.nickname,
                p.update_at,
                p.delete_at
            ])?;
        }
        Ok(())
    }

    /// Replaces a post's reactions (from `reaction_added` / `reaction_removed`, which bump the
    /// post's `update_at`): applied when `update_at` is not older than the stored post's.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn set_post_reactions(
        &self,
        post_id: &str,
        reactions: &super::text::JsonText,
        update_at: i64,
    ) -> Result<bool, StoreError> {
        Ok(exec(
            self.conn,
            "UPDATE posts SET reactions = ?2, update_at = ?3
             WHERE post_id = ?1 AND update_at <= ?3 AND delete_at = 0",
            params![post_id, reactions.expose(), update_at],
        )? > 0)
    }

    /// Inserts or updates a post (newer or equal `update_at` wins) and its search row, and
    /// refreshes the items that depend on it. A deleted post (`delete_at > 0`) keeps no text;
    /// a deleted root also drops its cached replies (the server sends no events for them).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn upsert_post(&self, p: &Post) -> Result<(), StoreError> {
        let deleted = p.delete_at > 0;
        // Whether the stored row was live before: with it, what the post changes in other
        // users' items is known without re-deriving them (see the end of this function).
        let before: Option<(bool, i64)> = q_row(
            self.conn,
            "SELECT delete_at = 0, create_at FROM posts WHERE post_id = ?1",
            params![p.post_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
        let empty = super::text::JsonText::new("");
        let message = if deleted { "" } else { p.message.expose() };
        let applied: Option<i64> = q_row(
            self.conn,
            "INSERT INTO posts (post_id, channel_id, root_id, user_id, type, create_at, update_at,
                   edit_at, delete_at, message, props, file_ids, reactions, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (post_id) DO UPDATE SET channel_id = excluded.channel_id,
                   root_id = excluded.root_id, user_id = excluded.user_id, type = excluded.type,
                   create_at = excluded.create_at, update_at = excluded.update_at,
                   edit_at = excluded.edit_at, delete_at = excluded.delete_at,
                   message = excluded.message, props = excluded.props,
                   file_ids = excluded.file_ids, reactions = excluded.reactions,
                   metadata = excluded.metadata
                 WHERE excluded.update_at >= posts.update_at AND posts.delete_at = 0
                 RETURNING seq",
            params![
                p.post_id,
                p.channel_id,
                p.root_id,
                p.user_id,
                p.post_type,
                p.create_at,
                p.update_at,
                p.edit_at,
                p.delete_at,
                message,
                if deleted { &empty } else { &p.props }.expose(),
                if deleted { &empty } else { &p.file_ids }.expose(),
                if deleted { &empty } else { &p.reactions }.expose(),
                if deleted { &empty } else { &p.metadata }.expose(),
            ],
            |r| r.get(0),
        )
        .optional()?;
        let Some(seq) = applied else {
            return Ok(()); // stale event
        };
        if deleted {
            super::fts_later(self.conn, seq, false)?;
            if p.root_id.is_empty() {
                let mut st = self
                    .conn
                    .prepare_cached("SELECT seq FROM posts WHERE root_id = ?1")?;
                let replies: Vec<i64> = st
                    .query_map(params![p.post_id], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                for s in replies {
                    super::fts_later(self.conn, s, false)?;
                    exec(self.conn, "DELETE FROM posts WHERE seq = ?1", params![s])?;
                }
            }
        } else {
            super::fts_later(self.conn, seq, true)?;
            // Monotonic max (not an increment): replaying the event changes nothing. The
            // update says whether it moved a DM/GM channel: only those are items of their own
            // (`inbox::derive_channel_item`); a post in a team channel would only re-derive
            // "no item" for every member (50 members = 200 statements per post; P-13).
            let moved_direct: Option<bool> = q_row(
                self.conn,
                "UPDATE channels SET last_post_at = max(last_post_at, ?2),
                   last_root_post_at = CASE WHEN ?3 THEN max(last_root_post_at, ?2)
                                            ELSE last_root_post_at END
                 WHERE channel_id = ?1 AND (last_post_at < ?2 OR (?3 AND last_root_post_at < ?2))
                 RETURNING type IN ('D', 'G')",
                params![p.channel_id, p.create_at, p.root_id.is_empty()],
                |r| r.get(0),
            )
            .optional()?;
            if moved_direct == Some(true) {
                refresh_channel_for_members(self.conn, &p.channel_id)?;
            }
        }
        // A thread item takes from the posts table only its root's channel, creation and
        // deletion, and whether a live reply exists (`RootFacts`); its times and counts come
        // from each user's thread row, which the user's own `thread_updated` moves. So the
        // items of every user holding the thread are re-derived only when one of those facts
        // can have changed: a root seen for the first time or deleted, a reply that is the
        // first live one or the last one deleted. An edit, or a reply to a thread with other
        // replies, re-derives nothing here (a reply followed by ten users on this instance
        // re-derived all ten items for each of their ten `posted` events: research P-13).
        let live_changed = before.map(|b| b.0) != Some(!deleted);
        let refresh = if p.root_id.is_empty() {
            // (`create_at` never changes on a real server; a root that says otherwise is
            // re-derived all the same.)
            live_changed || before.is_some_and(|b| b.1 != p.create_at)
        } else {
            live_changed
                && !q_row(
                    self.conn,
                    "SELECT EXISTS (SELECT 1 FROM posts
                      WHERE root_id = ?1 AND delete_at = 0 AND post_id <> ?2)",
                    params![p.root_id, p.post_id],
                    |r| r.get::<_, bool>(0),
                )?
        };
        if refresh {
            let root = if p.root_id.is_empty() {
                &p.post_id
            } else {
                &p.root_id
            };
            refresh_thread_for_all(self.conn, root)?;
        }
        Ok(())
    }
}

/// The items a write transaction still has to re-derive, by user and key: a temporary table
/// of the writer connection (it rolls back with the transaction, and with a savepoint). An
/// event often changes several inputs of one item (a reply moves the post, the channel and the
/// thread row; a channel view moves every thread item of the channel), and a batch often holds
/// several events of one item; each item is derived once, at commit ([`flush_items`]).
pub(crate) const ITEMS_DIRTY: &str = "CREATE TEMP TABLE IF NOT EXISTS items_dirty (
    user_id   TEXT NOT NULL,
    item_key  TEXT NOT NULL,
    PRIMARY KEY (user_id, item_key)
) WITHOUT ROWID";

/// Queues `key` of `user` to be re-derived at commit.
pub(crate) fn item_later(conn: &Connection, user: &str, key: &ItemKey) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT OR IGNORE INTO temp.items_dirty (user_id, item_key) VALUES (?1, ?2)",
        params![user, key.to_string()],
    )?;
    Ok(())
}

/// Queues the `Thread(root_id)` item of `user` (nothing for an invalid id).
pub(crate) fn thread_later(conn: &Connection, user: &str, root_id: &str) -> Result<(), StoreError> {
    match ItemKey::thread(root_id) {
        Some(k) => item_later(conn, user, &k),
        None => Ok(()),
    }
}

/// Derives every queued item (see [`ITEMS_DIRTY`]); called once per transaction, before its
/// commit. Deriving reads only the inputs and writes only `items`, so it queues nothing new.
pub(crate) fn flush_items(conn: &Connection) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached("SELECT user_id, item_key FROM temp.items_dirty")?;
    let dirty: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    if dirty.is_empty() {
        return Ok(());
    }
    exec(conn, "DELETE FROM temp.items_dirty", [])?;
    for (user, key) in dirty {
        match ItemKey::parse(&key) {
            Ok(ItemKey::Thread(id)) => refresh_thread_item(conn, &user, &id)?,
            Ok(ItemKey::Channel(id)) => refresh_channel_item(conn, &user, &id)?,
            Err(_) => {} // only valid keys are queued
        }
    }
    Ok(())
}

/// Refreshes the `Thread(root)` item of every user that has a thread row or a mention of it.
fn refresh_thread_for_all(conn: &Connection, root_id: &str) -> Result<(), StoreError> {
    let Some(key) = ItemKey::thread(root_id) else {
        return Ok(());
    };
    exec(
        conn,
        "INSERT OR IGNORE INTO temp.items_dirty (user_id, item_key)
         SELECT user_id, ?2 FROM threads WHERE root_id = ?1
         UNION SELECT user_id, ?2 FROM user_mentions WHERE post_id = ?1",
        params![root_id, key.to_string()],
    )?;
    Ok(())
}

fn refresh_channel_for_members(conn: &Connection, channel_id: &str) -> Result<(), StoreError> {
    let Some(key) = ItemKey::channel(channel_id) else {
        return Ok(());
    };
    exec(
        conn,
        "INSERT OR IGNORE INTO temp.items_dirty (user_id, item_key)
         SELECT user_id, ?2 FROM memberships WHERE channel_id = ?1",
        params![channel_id, key.to_string()],
    )?;
    Ok(())
}

/// Queues every item of `user` in `channel_id` (after a membership change): the channel's own,
/// and each thread the user holds, was mentioned in or has an item of there.
pub(crate) fn refresh_channel_all(
    conn: &Connection,
    user: &str,
    channel_id: &str,
) -> Result<(), StoreError> {
    if let Some(key) = ItemKey::channel(channel_id) {
        item_later(conn, user, &key)?;
    }
    exec(
        conn,
        "INSERT OR IGNORE INTO temp.items_dirty (user_id, item_key)
         SELECT ?1, 't_' || root_id FROM threads WHERE user_id = ?1 AND channel_id = ?2
         UNION SELECT ?1, 't_' || post_id FROM user_mentions WHERE user_id = ?1 AND channel_id = ?2
         UNION SELECT ?1, item_key FROM items
               WHERE user_id = ?1 AND channel_id = ?2 AND item_key LIKE 't\\_%' ESCAPE '\\'",
        params![user, channel_id],
    )?;
    Ok(())
}

fn member_counts(
    conn: &Connection,
    user: &str,
    channel_id: &str,
) -> Result<Option<MemberCounts>, StoreError> {
    Ok(q_row(
        conn,
        "SELECT msg_count, msg_count_root, mention_count, mention_count_root,
                    urgent_mention_count, last_viewed_at
             FROM memberships WHERE user_id = ?1 AND channel_id = ?2",
        params![user, channel_id],
        |r| member_counts_at(r, 0),
    )
    .optional()?
    .flatten())
}

/// The membership counters in the six columns from `first` on (msg_count, msg_count_root,
/// mention_count, mention_count_root, urgent_mention_count, last_viewed_at); `None` when the
/// row has no membership (a NULL `msg_count`, as a LEFT JOIN leaves it).
fn member_counts_at(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Option<MemberCounts>> {
    let Some(msg_count) = r.get::<_, Option<i64>>(first)? else {
        return Ok(None);
    };
    Ok(Some(MemberCounts {
        msg_count,
        msg_count_root: r.get(first + 1)?,
        mention_count: r.get(first + 2)?,
        mention_count_root: r.get(first + 3)?,
        urgent_mention_count: r.get(first + 4)?,
        last_viewed_at: r.get(first + 5)?,
    }))
}

/// The inputs of one user's thread item, read in one statement (research P-13: it was five):
/// the user's thread row, a mention of the root, the root post with whether it has a live
/// reply, and the user's membership of the channel the first of those names.
const THREAD_ITEM_INPUTS: &str = "
    SELECT t.channel_id, t.team_id, t.reply_count, t.last_reply_at, t.last_viewed_at,
           t.unread_replies, t.unread_mentions, t.is_urgent, t.following, t.delete_at,
           m.channel_id, m.team_id,
           p.channel_id, p.create_at, p.delete_at,
           CASE WHEN p.post_id IS NOT NULL THEN EXISTS (
               SELECT 1 FROM posts r WHERE r.root_id = ?2 AND r.delete_at = 0) END,
           mb.msg_count, mb.msg_count_root, mb.mention_count, mb.mention_count_root,
           mb.urgent_mention_count, mb.last_viewed_at
      FROM (SELECT 1)
      LEFT JOIN threads t ON t.user_id = ?1 AND t.root_id = ?2
      LEFT JOIN user_mentions m ON m.user_id = ?1 AND m.post_id = ?2
      LEFT JOIN posts p ON p.post_id = ?2
      LEFT JOIN memberships mb
             ON mb.user_id = ?1 AND mb.channel_id = coalesce(t.channel_id, m.channel_id, p.channel_id)";

/// Recomputes the `Thread(root_id)` item of `user`.
fn refresh_thread_item(conn: &Connection, user: &str, root_id: &str) -> Result<(), StoreError> {
    let Some(key) = ItemKey::thread(root_id) else {
        return Ok(());
    };
    let (thread, mention, root, member) =
        q_row(conn, THREAD_ITEM_INPUTS, params![user, root_id], |r| {
            let thread = match r.get::<_, Option<String>>(0)? {
                None => None,
                Some(channel_id) => Some(inbox::ThreadFacts {
                    root_id: root_id.to_owned(),
                    channel_id,
                    team_id: r.get(1)?,
                    reply_count: r.get(2)?,
                    last_reply_at: r.get(3)?,
                    last_viewed_at: r.get(4)?,
                    unread_replies: r.get(5)?,
                    unread_mentions: r.get(6)?,
                    is_urgent: r.get(7)?,
                    following: r.get(8)?,
                    delete_at: r.get(9)?,
                }),
            };
            let mention = match r.get::<_, Option<String>>(10)? {
                None => None,
                Some(channel_id) => Some((channel_id, r.get::<_, String>(11)?)),
            };
            let root = match r.get::<_, Option<String>>(12)? {
                None => None,
                Some(channel_id) => Some((
                    channel_id,
                    r.get::<_, i64>(13)?,
                    r.get::<_, i64>(14)?,
                    r.get::<_, bool>(15)?,
                )),
            };
            let member = member_counts_at(r, 16)?;
            Ok((thread, mention, root, member))
        })?;
    let item = if thread.is_none() && mention.is_none() && root.is_none() {
        None
    } else {
        let root_facts = root.map(|(_, create_at, delete_at, has_replies)| RootFacts {
            create_at,
            delete_at,
            channel_last_viewed_at: member.map_or(0, |m| m.last_viewed_at),
            has_replies,
        });
        inbox::derive_thread_item(
            root_id,
            &inbox::ThreadItemInputs {
                thread: thread.as_ref(),
                is_member: member.is_some(),
                root: root_facts,
                mention: mention.as_ref().map(|(c, t)| (c.as_str(), t.as_str())),
            },
        )
    };
    write_item(conn, user, &key, item.as_ref())
}

/// Recomputes the `Channel(channel_id)` item of `user`.
fn refresh_channel_item(conn: &Connection, user: &str, channel_id: &str) -> Result<(), StoreError> {
    let Some(key) = ItemKey::channel(channel_id) else {
        return Ok(());
    };
    let ch = q_row(
        conn,
        "SELECT type, team_id, total_msg_count, total_msg_count_root, last_post_at, delete_at
             FROM channels WHERE channel_id = ?1",
        params![channel_id],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        },
    )
    .optional()?;
    let item = match ch {
        None => None,
        Some((ty, team_id, total, total_root, last_post_at, delete_at)) => {
            match ChannelType::parse(&ty) {
                None => None,
                Some(channel_type) => inbox::derive_channel_item(
                    &inbox::ChannelFacts {
                        channel_id: channel_id.to_owned(),
                        channel_type,
                        team_id,
                        total_msg_count: total,
                        total_msg_count_root: total_root,
                        last_post_at,
                        delete_at,
                        member: member_counts(conn, user, channel_id)?,
                    },
                    CRT,
                ),
            }
        }
    };
    write_item(conn, user, &key, item.as_ref())
}

fn write_item(
    conn: &Connection,
    user: &str,
    key: &ItemKey,
    item: Option<&Item>,
) -> Result<(), StoreError> {
    let key_s = key.to_string();
    // The retention cutoff, the user's marks of the item and the stored row, in one statement.
    let (cutoff, marks, old) = q_row(
        conn,
        "SELECT r.cutoff, mk.done_at, mk.snoozed_until,
                i.kind, i.channel_id, i.team_id, i.is_direct, i.last_activity_at, i.unread,
                i.mentions, i.urgent, i.done_at, i.snoozed_until, i.is_open
           FROM (SELECT 1)
           LEFT JOIN retention r ON r.id = 1
           LEFT JOIN marks mk ON mk.user_id = ?1 AND mk.item_key = ?2
           LEFT JOIN items i ON i.user_id = ?1 AND i.item_key = ?2",
        params![user, key_s],
        |r| {
            let marks = Marks {
                done_at: r.get(1)?,
                snoozed_until: r.get(2)?,
            };
            let old = match r.get::<_, Option<String>>(3)? {
                None => None,
                Some(kind) => Some(StoredItem {
                    identity: (kind, r.get(4)?, r.get(5)?, r.get(6)?),
                    activity: (r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?),
                    state: (r.get(11)?, r.get(12)?, r.get(13)?),
                }),
            };
            Ok((r.get::<_, Option<i64>>(0)?.unwrap_or(0), marks, old))
        },
    )?;
    let Some(item) = item.filter(|i| i.last_activity_at >= cutoff) else {
        if old.is_some() {
            exec(
                conn,
                "DELETE FROM items WHERE user_id = ?1 AND item_key = ?2",
                params![user, key_s],
            )?;
        }
        return Ok(());
    };
    let is_open = inbox::has_news(item.last_activity_at, &marks);
    let new = StoredItem {
        identity: (
            item.kind.as_str().to_owned(),
            item.channel_id.clone(),
            item.team_id.clone(),
            matches!(item.kind, ItemKind::Direct | ItemKind::Group),
        ),
        activity: (
            item.last_activity_at,
            item.counts.unread,
            item.counts.mentions,
            item.counts.urgent,
        ),
        state: (marks.done_at, marks.snoozed_until, is_open),
    };
    let (i, a, st) = (&new.identity, &new.activity, &new.state);
    let Some(old) = old else {
        exec(
            conn,
            "INSERT INTO items (user_id, item_key, kind, channel_id, team_id, is_direct,
               last_activity_at, unread, mentions, urgent, done_at, snoozed_until, is_open)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                user, key_s, i.0, i.1, i.2, i.3, a.0, a.1, a.2, a.3, st.0, st.1, st.2
            ],
        )?;
        return Ok(());
    };
    // Only the changed groups of columns are assigned: SQLite rewrites every index holding an
    // assigned column (and fires the counters' trigger) whether or not its value changed, and
    // most changes are a new reply, which moves only the activity group (research P-13).
    let mask = usize::from(old.identity != new.identity)
        | usize::from(old.activity != new.activity) << 1
        | usize::from(old.state != new.state) << 2;
    if mask == 0 {
        return Ok(());
    }
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&user, &key_s];
    if mask & 1 != 0 {
        values.extend([&i.0 as &dyn rusqlite::ToSql, &i.1, &i.2, &i.3]);
    }
    if mask & 2 != 0 {
        values.extend([&a.0 as &dyn rusqlite::ToSql, &a.1, &a.2, &a.3]);
    }
    if mask & 4 != 0 {
        values.extend([&st.0 as &dyn rusqlite::ToSql, &st.1, &st.2]);
    }
    exec(conn, &ITEM_UPDATES[mask], values.as_slice())?;
    Ok(())
}

/// An item row as stored, in the three groups of columns [`ITEM_UPDATES`] assigns.
#[derive(PartialEq)]
struct StoredItem {
    /// kind, channel_id, team_id, is_direct
    identity: (String, String, String, bool),
    /// last_activity_at, unread, mentions, urgent
    activity: (i64, i64, i64, i64),
    /// done_at, snoozed_until, is_open
    state: (Option<i64>, Option<i64>, bool),
}

/// `UPDATE items` statements by the mask of changed groups (bit 0 identity, 1 activity,
/// 2 state; index 0 unused), parameters `?1` user, `?2` key, then the groups' columns in order.
static ITEM_UPDATES: std::sync::LazyLock<[String; 8]> = std::sync::LazyLock::new(|| {
    const GROUPS: [&[&str]; 3] = [
        &["kind", "channel_id", "team_id", "is_direct"],
        &["last_activity_at", "unread", "mentions", "urgent"],
        &["done_at", "snoozed_until", "is_open"],
    ];
    std::array::from_fn(|mask| {
        let mut sets = Vec::new();
        for (g, cols) in GROUPS.iter().enumerate() {
            if mask & (1 << g) != 0 {
                for c in *cols {
                    sets.push(format!("{c} = ?{}", sets.len() + 3));
                }
            }
        }
        format!(
            "UPDATE items SET {} WHERE user_id = ?1 AND item_key = ?2",
            sets.join(", ")
        )
    })
});

/// Re-derives every item that any input can produce, from scratch (the oracle of the
/// incremental derivation: after any sequence of writes, this must change nothing).
#[cfg(test)]
pub(crate) fn rederive_all(conn: &Connection) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT OR IGNORE INTO temp.items_dirty (user_id, item_key)
         SELECT user_id, 't_' || root_id FROM threads
         UNION SELECT user_id, 't_' || post_id FROM user_mentions
         UNION SELECT user_id, 'c_' || channel_id FROM memberships
         UNION SELECT user_id, item_key FROM items",
        [],
    )?;
    flush_items(conn)
}
