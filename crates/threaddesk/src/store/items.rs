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
        |r| {
            Ok(MemberCounts {
                msg_count: r.get(0)?,
                msg_count_root: r.get(1)?,
                mention_count: r.get(2)?,
                mention_count_root: r.get(3)?,
                urgent_mention_count: r.get(4)?,
                last_viewed_at: r.get(5)?,
            })
        },
    )
    .optional()?)
}

/// Recomputes the `Thread(root_id)` item of `user`.
fn refresh_thread_item(conn: &Connection, user: &str, root_id: &str) -> Result<(), StoreError> {
    let Some(key) = ItemKey::thread(root_id) else {
        return Ok(());
    };
    let thread = q_row(
        conn,
        "SELECT channel_id, team_id, reply_count, last_reply_at, last_viewed_at, unread_replies,
                    unread_mentions, is_urgent, following, delete_at
             FROM threads WHERE user_id = ?1 AND root_id = ?2",
        params![user, root_id],
        |r| {
            Ok(inbox::ThreadFacts {
                root_id: root_id.to_owned(),
                channel_id: r.get(0)?,
                team_id: r.get(1)?,
                reply_count: r.get(2)?,
                last_reply_at: r.get(3)?,
                last_viewed_at: r.get(4)?,
                unread_replies: r.get(5)?,
                unread_mentions: r.get(6)?,
                is_urgent: r.get(7)?,
                following: r.get(8)?,
                delete_at: r.get(9)?,
            })
        },
    )
    .optional()?;
    let mention: Option<(String, String)> = q_row(
        conn,
        "SELECT channel_id, team_id FROM user_mentions WHERE user_id = ?1 AND post_id = ?2",
        params![user, root_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?;
    let root: Option<(String, i64, i64)> = q_row(
        conn,
        "SELECT channel_id, create_at, delete_at FROM posts WHERE post_id = ?1",
        params![root_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?;
    let channel_id = thread
        .as_ref()
        .map(|t| t.channel_id.clone())
        .or_else(|| mention.as_ref().map(|m| m.0.clone()))
        .or_else(|| root.as_ref().map(|r| r.0.clone()));
    let item = match channel_id {
        None => None,
        Some(channel_id) => {
            let member = member_counts(conn, user, &channel_id)?;
            let root_facts = match &root {
                None => None,
                Some((_, create_at, delete_at)) => {
                    let has_replies: bool = q_row(
                        conn,
                        "SELECT EXISTS (SELECT 1 FROM posts WHERE root_id = ?1 AND delete_at = 0)",
                        params![root_id],
                        |r| r.get(0),
                    )?;
                    Some(RootFacts {
                        create_at: *create_at,
                        delete_at: *delete_at,
                        channel_last_viewed_at: member.map_or(0, |m| m.last_viewed_at),
                        has_replies,
                    })
                }
            };
            inbox::derive_thread_item(
                root_id,
                &inbox::ThreadItemInputs {
                    thread: thread.as_ref(),
                    is_member: member.is_some(),
                    root: root_facts,
                    mention: mention.as_ref().map(|(c, t)| (c.as_str(), t.as_str())),
                },
            )
        }
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
    let cutoff: i64 = conn
        .prepare_cached("SELECT cutoff FROM retention WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let Some(item) = item.filter(|i| i.last_activity_at >= cutoff) else {
        exec(
            conn,
            "DELETE FROM items WHERE user_id = ?1 AND item_key = ?2",
            params![user, key_s],
        )?;
        return Ok(());
    };
    let marks = q_row(
        conn,
        "SELECT done_at, snoozed_until FROM marks WHERE user_id = ?1 AND item_key = ?2",
        params![user, key_s],
        |r| {
            Ok(Marks {
                done_at: r.get(0)?,
                snoozed_until: r.get(1)?,
            })
        },
    )
    .optional()?
    .unwrap_or_default();
    let is_open = inbox::has_news(item.last_activity_at, &marks);
    conn.prepare_cached(
        "INSERT INTO items (user_id, item_key, kind, channel_id, team_id, last_activity_at, unread,
           mentions, urgent, done_at, snoozed_until, is_open, is_direct)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (user_id, item_key) DO UPDATE SET kind = excluded.kind,
           channel_id = excluded.channel_id, team_id = excluded.team_id,
           last_activity_at = excluded.last_activity_at, unread = excluded.unread,
           mentions = excluded.mentions, urgent = excluded.urgent, done_at = excluded.done_at,
           snoozed_until = excluded.snoozed_until, is_open = excluded.is_open,
           is_direct = excluded.is_direct
         WHERE (items.kind, items.channel_id, items.team_id, items.last_activity_at, items.unread,
                items.mentions, items.urgent, items.done_at, items.snoozed_until, items.is_open,
                items.is_direct)
           IS NOT (excluded.kind, excluded.channel_id, excluded.team_id,
                   excluded.last_activity_at, excluded.unread, excluded.mentions, excluded.urgent,
                   excluded.done_at, excluded.snoozed_until, excluded.is_open, excluded.is_direct)",
    )?
    .execute(params![
        user,
        key_s,
        item.kind.as_str(),
        item.channel_id,
        item.team_id,
        item.last_activity_at,
        item.counts.unread,
        item.counts.mentions,
        item.counts.urgent,
        marks.done_at,
        marks.snoozed_until,
        is_open,
        matches!(item.kind, ItemKind::Direct | ItemKind::Group)
    ])?;
    Ok(())
}

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
