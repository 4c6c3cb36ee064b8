//! The per-user handles: [`UserStore`] (reads, plus convenience writes) and [`UserTx`] (writes
//! inside a [`super::Tx`]). Every statement here is bound to the handle's user id; shared rows
//! (channels, posts) are returned only when the user is a member of their channel.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::items::{item_later, refresh_channel_all, thread_later};
use super::outbox::{self, OutboxRow};
use super::text::{EncryptedBlob, JsonText, MessageText, SecretText};
use super::types::{
    Channel, Cursor, ItemDetail, Membership, Mention, MessageMatch, Post, Profile, QueueCounts,
    QueuePage, QueueRow, SyncState, Team, Thread, TriageStats,
};
use super::{Store, StoreError, Tx, UserId, exec, hash_token, q_row};
use crate::inbox::search::SearchQuery;
use crate::inbox::searches::SavedSearch;
use crate::inbox::{Counts, Filter, ItemKey, ItemKind, Marks, Millis};

/// Largest queue page.
pub const MAX_PAGE: usize = 200;

const POST_COLUMNS: &str = "p.post_id, p.channel_id, p.root_id, p.user_id, p.type, p.create_at,
    p.update_at, p.edit_at, p.delete_at, p.message, p.props, p.file_ids, p.reactions, p.metadata";

/// `p` must be a post whose channel the user (`?1`) is a member of.
const MEMBER_CHECK: &str =
    "EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = ?1 AND m.channel_id = p.channel_id)";

fn post_from_row(r: &Row<'_>) -> rusqlite::Result<Post> {
    Ok(Post {
        post_id: r.get(0)?,
        channel_id: r.get(1)?,
        root_id: r.get(2)?,
        user_id: r.get(3)?,
        post_type: r.get(4)?,
        create_at: r.get(5)?,
        update_at: r.get(6)?,
        edit_at: r.get(7)?,
        delete_at: r.get(8)?,
        message: MessageText::new(r.get::<_, String>(9)?),
        props: JsonText::new(r.get::<_, String>(10)?),
        file_ids: JsonText::new(r.get::<_, String>(11)?),
        reactions: JsonText::new(r.get::<_, String>(12)?),
        metadata: JsonText::new(r.get::<_, String>(13)?),
    })
}

const ITEM_COLUMNS: &str = "i.item_key, i.kind, i.channel_id, i.team_id, i.last_activity_at,
    i.unread, i.mentions, i.urgent, i.done_at, i.snoozed_until,
    coalesce(c.display_name, ''), coalesce(c.name, '')";

fn item_from_row(r: &Row<'_>) -> rusqlite::Result<QueueRow> {
    let bad = |i: usize| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, "bad item".into())
    };
    let key: String = r.get(0)?;
    let kind: String = r.get(1)?;
    Ok(QueueRow {
        key: ItemKey::parse(&key).map_err(|_| bad(0))?,
        kind: ItemKind::parse(&kind).ok_or_else(|| bad(1))?,
        channel_id: r.get(2)?,
        team_id: r.get(3)?,
        last_activity_at: r.get(4)?,
        counts: Counts {
            unread: r.get(5)?,
            mentions: r.get(6)?,
            urgent: r.get(7)?,
        },
        done_at: r.get(8)?,
        snoozed_until: r.get(9)?,
        channel_display_name: r.get(10)?,
        channel_name: r.get(11)?,
        preview_user_id: None,
        preview: None,
    })
}

fn collect<T>(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut st = conn.prepare_cached(sql)?;
    let rows = st.query_map(p, f)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Everything ThreadDesk holds about one user ("Export my data").
#[derive(Debug, Clone, Serialize)]
pub struct UserExport {
    pub user_id: UserId,
    pub profile: Option<Profile>,
    pub teams: Vec<Team>,
    pub memberships: Vec<Membership>,
    pub threads: Vec<Thread>,
    pub mentions: Vec<Mention>,
    /// `(item_key, done_at, snoozed_until)`.
    pub marks: Vec<(String, Option<Millis>, Option<Millis>)>,
    pub items: Vec<QueueRow>,
    pub sync: SyncState,
    /// `(created_at, last_seen_at, expires_at, user-agent summary)` of each browser session.
    pub sessions: Vec<(Millis, Millis, Millis, String)>,
    /// `(kind, updated_at)` of each stored token (the encrypted bytes are not exported).
    pub tokens: Vec<(String, Millis)>,
    pub outbox: Vec<OutboxRow>,
    /// Cached posts written by the user.
    pub posts: Vec<Post>,
    /// The user's saved searches (mirrored from their Mattermost preferences).
    pub saved_searches: Vec<SavedSearch>,
}

/// Read handle bound to one user. Obtain with [`Store::for_user`].
pub struct UserStore<'s> {
    pub(crate) store: &'s Store,
    pub(crate) user: UserId,
}

impl<'s> UserStore<'s> {
    pub(crate) fn new(store: &'s Store, user: UserId) -> Self {
        Self { store, user }
    }

    /// The user this handle is bound to.
    #[must_use]
    pub fn user_id(&self) -> &UserId {
        &self.user
    }

    /// Runs `f` with this user's write handle in one transaction (`synchronous=NORMAL`).
    ///
    /// # Errors
    /// `f`'s error or a SQLite failure.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&UserTx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.store.write(|tx| f(&tx.user(&self.user)))
    }

    /// As [`UserStore::write`] with `synchronous=FULL` (tokens).
    ///
    /// # Errors
    /// `f`'s error or a SQLite failure.
    pub fn write_durable<R>(
        &self,
        f: impl FnOnce(&UserTx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.store.write_durable(|tx| f(&tx.user(&self.user)))
    }

    fn read<R>(
        &self,
        f: impl FnOnce(&Connection, &str) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let u = self.user.as_str();
        self.store.read(|c| f(c, u))
    }

    /// Stores an encrypted token durably (OAuth pairs must be persisted before use).
    ///
    /// # Errors
    /// SQLite failure (the user row must exist: [`UserTx::upsert_self`]).
    pub fn put_token(
        &self,
        kind: &str,
        blob: &EncryptedBlob,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.write_durable(|u| u.put_token(kind, blob, now))
    }

    /// The encrypted token of `kind`.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn token(&self, kind: &str) -> Result<Option<EncryptedBlob>, StoreError> {
        self.read(|c, u| {
            Ok(q_row(
                c,
                "SELECT blob FROM user_tokens WHERE user_id = ?1 AND kind = ?2",
                params![u, kind],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()?
            .map(EncryptedBlob))
        })
    }

    /// The user's own profile.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn profile(&self) -> Result<Option<Profile>, StoreError> {
        self.read(|c, u| {
            Ok(q_row(
                c,
                "SELECT user_id, username, first_name, last_name, nickname, updated_at, 0
                 FROM users WHERE user_id = ?1",
                params![u],
                |r| {
                    Ok(Profile {
                        user_id: r.get(0)?,
                        username: r.get(1)?,
                        first_name: r.get(2)?,
                        last_name: r.get(3)?,
                        nickname: r.get(4)?,
                        update_at: r.get(5)?,
                        delete_at: r.get(6)?,
                    })
                },
            )
            .optional()?)
        })
    }

    /// Display profiles of other users, by id (unknown ids are skipped).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn profiles(&self, ids: &[&str]) -> Result<Vec<Profile>, StoreError> {
        self.read(|c, _| {
            let mut out = Vec::new();
            let mut st = c.prepare_cached(
                "SELECT user_id, username, first_name, last_name, nickname, update_at, delete_at
                 FROM profiles WHERE user_id = ?1",
            )?;
            for id in ids {
                if let Some(p) = st
                    .query_row(params![id], |r| {
                        Ok(Profile {
                            user_id: r.get(0)?,
                            username: r.get(1)?,
                            first_name: r.get(2)?,
                            last_name: r.get(3)?,
                            nickname: r.get(4)?,
                            update_at: r.get(5)?,
                            delete_at: r.get(6)?,
                        })
                    })
                    .optional()?
                {
                    out.push(p);
                }
            }
            Ok(out)
        })
    }

    /// The user's teams.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn teams(&self) -> Result<Vec<Team>, StoreError> {
        self.read(|c, u| {
            collect(
                c,
                "SELECT t.team_id, t.name, t.display_name, t.update_at, t.delete_at
                 FROM user_teams ut JOIN teams t ON t.team_id = ut.team_id
                 WHERE ut.user_id = ?1 ORDER BY t.display_name, t.team_id",
                params![u],
                |r| {
                    Ok(Team {
                        team_id: r.get(0)?,
                        name: r.get(1)?,
                        display_name: r.get(2)?,
                        update_at: r.get(3)?,
                        delete_at: r.get(4)?,
                    })
                },
            )
        })
    }

    /// A channel the user is a member of.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn channel(&self, channel_id: &str) -> Result<Option<Channel>, StoreError> {
        self.read(|c, u| {
            Ok(q_row(c,
                "SELECT c.channel_id, c.team_id, c.type, c.name, c.display_name, c.total_msg_count,
                        c.total_msg_count_root, c.last_post_at, c.last_root_post_at, c.update_at, c.delete_at
                 FROM memberships m JOIN channels c ON c.channel_id = m.channel_id
                 WHERE m.user_id = ?1 AND m.channel_id = ?2",
                params![u, channel_id],
                |r| {
                    Ok(Channel {
                        channel_id: r.get(0)?,
                        team_id: r.get(1)?,
                        channel_type: r.get(2)?,
                        name: r.get(3)?,
                        display_name: r.get(4)?,
                        total_msg_count: r.get(5)?,
                        total_msg_count_root: r.get(6)?,
                        last_post_at: r.get(7)?,
                        last_root_post_at: r.get(8)?,
                        update_at: r.get(9)?,
                        delete_at: r.get(10)?,
                    })
                },
            )
            .optional()?)
        })
    }

    /// The user's channel memberships.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn memberships(&self) -> Result<Vec<Membership>, StoreError> {
        self.read(memberships)
    }

    /// The user's thread membership of `root_id`.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn thread(&self, root_id: &str) -> Result<Option<Thread>, StoreError> {
        self.read(|c, u| Ok(threads(c, u, Some(root_id))?.into_iter().next()))
    }

    /// All the user's thread memberships (for a sync planner's reconciliation).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn threads(&self) -> Result<Vec<Thread>, StoreError> {
        self.read(|c, u| threads(c, u, None))
    }

    /// The user's done / snooze marks.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn marks(&self) -> Result<BTreeMap<ItemKey, Marks>, StoreError> {
        self.read(|c, u| {
            let rows = collect(
                c,
                "SELECT item_key, done_at, snoozed_until FROM marks WHERE user_id = ?1",
                params![u],
                |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Ok(rows
                .into_iter()
                .filter_map(|(k, d, s)| {
                    ItemKey::parse(&k).ok().map(|k| {
                        (
                            k,
                            Marks {
                                done_at: d,
                                snoozed_until: s,
                            },
                        )
                    })
                })
                .collect())
        })
    }

    /// One page of the queue for `filter` at `now`, newest activity first, after `after`.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn queue(
        &self,
        filter: &Filter,
        now: Millis,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<QueuePage, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (sql, team) = queue_sql(filter);
        let (a_at, a_key) = after.map_or((None, None), |c| {
            (Some(c.last_activity_at), Some(c.key.as_str()))
        });
        let fetch = i64::try_from(limit + 1).unwrap_or(201);
        self.read(|c, u| {
            let mut rows = collect(
                c,
                &sql,
                params![u, now, a_at, a_key, fetch, team],
                item_from_row,
            )?;
            let next = if rows.len() > limit {
                rows.truncate(limit);
                rows.last().map(|r| Cursor {
                    last_activity_at: r.last_activity_at,
                    key: r.key.to_string(),
                })
            } else {
                None
            };
            for r in &mut rows {
                fill_preview(c, u, r)?;
            }
            Ok(QueuePage { rows, next })
        })
    }

    /// Item counts per filter at `now` (one pass over the user's items).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn counts(&self, now: Millis) -> Result<QueueCounts, StoreError> {
        // One row per team from the trigger-kept counters, plus the snoozed items.
        self.read(|c, u| count_items(c, u, now))
    }

    /// One item with its most recent `limit` posts (oldest first): the thread (root + replies)
    /// or the DM/GM channel.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn item(&self, key: &ItemKey, limit: usize) -> Result<Option<ItemDetail>, StoreError> {
        let limit = i64::try_from(limit.clamp(1, 1000)).unwrap_or(200);
        self.read(|c, u| {
            let sql = format!(
                "SELECT {ITEM_COLUMNS} FROM items i LEFT JOIN channels c ON c.channel_id = i.channel_id
                 WHERE i.user_id = ?1 AND i.item_key = ?2"
            );
            let Some(mut row) = q_row(c, &sql, params![u, key.to_string()], item_from_row)
                .optional()?
            else {
                return Ok(None);
            };
            fill_preview(c, u, &mut row)?;
            let mut posts = match key {
                ItemKey::Thread(root) => thread_posts(c, u, root, limit)?,
                ItemKey::Channel(ch) => channel_posts(c, u, ch, None, limit)?,
            };
            posts.reverse();
            Ok(Some(ItemDetail { row, posts }))
        })
    }

    /// A cached post, if the user is a member of its channel.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn post(&self, post_id: &str) -> Result<Option<Post>, StoreError> {
        self.read(|c, u| {
            let sql = format!(
                "SELECT {POST_COLUMNS} FROM posts p WHERE p.post_id = ?2 AND {MEMBER_CHECK}"
            );
            Ok(q_row(c, &sql, params![u, post_id], post_from_row).optional()?)
        })
    }

    /// The newest `limit` cached posts of a thread (root and replies), newest first.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn thread_posts(&self, root_id: &str, limit: usize) -> Result<Vec<Post>, StoreError> {
        let limit = i64::try_from(limit.clamp(1, 1000)).unwrap_or(200);
        self.read(|c, u| thread_posts(c, u, root_id, limit))
    }

    /// The newest `limit` cached posts of a channel created before `before` (ms), newest first.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn channel_posts(
        &self,
        channel_id: &str,
        before: Option<Millis>,
        limit: usize,
    ) -> Result<Vec<Post>, StoreError> {
        let limit = i64::try_from(limit.clamp(1, 1000)).unwrap_or(200);
        self.read(|c, u| channel_posts(c, u, channel_id, before, limit))
    }

    /// Triage figures at `now` (three short reads: the user's recent marks, and the inbox's
    /// oldest items through `items_queue`).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn triage_stats(&self, now: Millis) -> Result<TriageStats, StoreError> {
        const DAY: Millis = 86_400_000;
        self.read(|c, u| {
            let (done_day, done_week) = q_row(
                c,
                "SELECT count(*) FILTER (WHERE done_at > ?2), count(*) FROM marks
                 WHERE user_id = ?1 AND done_at > ?3",
                params![u, now - DAY, now - 7 * DAY],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let waiting =
                "user_id = ?1 AND is_open = 1 AND (snoozed_until IS NULL OR snoozed_until <= ?2)";
            let waiting_over_day = q_row(
                c,
                &format!("SELECT count(*) FROM items WHERE {waiting} AND last_activity_at < ?3"),
                params![u, now, now - DAY],
                |r| r.get(0),
            )?;
            let oldest = q_row(
                c,
                &format!(
                    "SELECT item_key, last_activity_at FROM items WHERE {waiting}
                     ORDER BY last_activity_at, item_key LIMIT 1"
                ),
                params![u, now],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Millis>(1)?)),
            )
            .optional()?
            .and_then(|(k, at)| Some((ItemKey::parse(&k).ok()?, at)));
            Ok(TriageStats {
                done_day,
                done_week,
                waiting_over_day,
                oldest,
            })
        })
    }

    /// The user's saved searches, by label.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn saved_searches(&self) -> Result<Vec<SavedSearch>, StoreError> {
        self.read(|c, u| {
            collect(
                c,
                "SELECT name, label, q, filter, team_id FROM saved_searches WHERE user_id = ?1
                 ORDER BY label COLLATE NOCASE, name",
                params![u],
                |r| {
                    Ok(SavedSearch {
                        name: r.get(0)?,
                        label: r.get(1)?,
                        q: r.get(2)?,
                        filter: r.get(3)?,
                        team: r.get(4)?,
                    })
                },
            )
        })
    }

    /// The oldest message of the item the user has not read (newer than the thread's or the
    /// channel's last view; for a DM/GM a root post): marking the item unread from it gives
    /// back the unread state it has now. `None` when nothing is unread or nothing is cached.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn first_unread_post(&self, key: &ItemKey) -> Result<Option<String>, StoreError> {
        self.read(|c, u| {
            let found = match key {
                ItemKey::Thread(root) => q_row(
                    c,
                    &format!(
                        "SELECT p.post_id FROM threads t JOIN posts p
                           ON (p.post_id = t.root_id OR p.root_id = t.root_id)
                         WHERE t.user_id = ?1 AND t.root_id = ?2 AND p.create_at > t.last_viewed_at
                           AND p.delete_at = 0 AND {MEMBER_CHECK}
                         ORDER BY p.create_at, p.post_id LIMIT 1"
                    ),
                    params![u, root],
                    |r| r.get::<_, String>(0),
                ),
                ItemKey::Channel(ch) => q_row(
                    c,
                    "SELECT p.post_id FROM memberships m JOIN posts p ON p.channel_id = m.channel_id
                     WHERE m.user_id = ?1 AND m.channel_id = ?2 AND p.root_id = ''
                       AND p.create_at > m.last_viewed_at AND p.delete_at = 0
                     ORDER BY p.create_at, p.post_id LIMIT 1",
                    params![u, ch],
                    |r| r.get::<_, String>(0),
                ),
            };
            Ok(found.optional()?)
        })
    }

    /// The newest cached root post of a channel (replies belong to their threads: with
    /// collapsed reply threads a channel's item counts only root posts).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn latest_root_post(&self, channel_id: &str) -> Result<Option<Post>, StoreError> {
        self.read(|c, u| {
            let sql = format!(
                "SELECT {POST_COLUMNS} FROM posts p
                 WHERE p.channel_id = ?2 AND p.root_id = '' AND p.delete_at = 0 AND {MEMBER_CHECK}
                 ORDER BY p.create_at DESC, p.post_id DESC LIMIT 1"
            );
            Ok(q_row(c, &sql, params![u, channel_id], post_from_row).optional()?)
        })
    }

    /// Full-text search over cached messages of the user's channels, newest first
    /// ([`SearchQuery`] syntax: words, `"phrases"`, `word*`, `-word`, `from:username`).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<Post>, StoreError> {
        let q = SearchQuery::parse(query);
        self.read(|c, u| {
            collect(
                c,
                &search_sql(&q, false),
                search_params(u, &q, limit),
                post_from_row,
            )
        })
    }

    /// The user's items whose cached messages match `query`: for each, the newest matching
    /// message. At most `posts` matching messages are read (newest first), so a very common
    /// word finds the items of its latest uses. Done and snoozed items are included (with
    /// their state, for the caller's filter). Only channels the user is a member of count.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn search_items(
        &self,
        query: &SearchQuery,
        posts: usize,
    ) -> Result<Vec<MessageMatch>, StoreError> {
        if query.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = self.read(|c, u| {
            collect(
                c,
                &search_sql(query, true),
                search_params(u, query, posts),
                |r| {
                    let key: String = r.get(14)?;
                    let state = (r.get::<_, bool>(15)?, r.get(16)?, r.get::<_, String>(17)?);
                    Ok((key, state, post_from_row(r)?))
                },
            )
        })?;
        let mut seen = std::collections::HashSet::new();
        found.retain(|(key, ..)| seen.insert(key.clone()));
        Ok(found
            .into_iter()
            .filter_map(|(key, (is_open, snoozed_until, team_id), post)| {
                Some(MessageMatch {
                    key: ItemKey::parse(&key).ok()?,
                    is_open,
                    snoozed_until,
                    team_id,
                    post,
                })
            })
            .collect())
    }

    /// Every channel the user is a member of that has a cached row (one query).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn member_channels(&self) -> Result<Vec<Channel>, StoreError> {
        self.read(|c, u| {
            collect(
                c,
                "SELECT c.channel_id, c.team_id, c.type, c.name, c.display_name, c.total_msg_count,
                        c.total_msg_count_root, c.last_post_at, c.last_root_post_at, c.update_at, c.delete_at
                 FROM memberships m JOIN channels c ON c.channel_id = m.channel_id
                 WHERE m.user_id = ?1",
                params![u],
                |r| {
                    Ok(Channel {
                        channel_id: r.get(0)?,
                        team_id: r.get(1)?,
                        channel_type: r.get(2)?,
                        name: r.get(3)?,
                        display_name: r.get(4)?,
                        total_msg_count: r.get(5)?,
                        total_msg_count_root: r.get(6)?,
                        last_post_at: r.get(7)?,
                        last_root_post_at: r.get(8)?,
                        update_at: r.get(9)?,
                        delete_at: r.get(10)?,
                    })
                },
            )
        })
    }

    /// `channel id → (team id, type letter)` of every channel the user is a member of (one
    /// query; channels without a cached row are left out).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn membership_channels(
        &self,
    ) -> Result<std::collections::HashMap<String, (String, String)>, StoreError> {
        self.read(|c, u| {
            Ok(collect(
                c,
                "SELECT m.channel_id, ch.team_id, ch.type FROM memberships m
                 JOIN channels ch ON ch.channel_id = m.channel_id WHERE m.user_id = ?1",
                params![u],
                |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?))),
            )?
            .into_iter()
            .collect())
        })
    }

    /// Whether any DM/GM item shows unread messages or mentions (then a read on another
    /// device could have changed it).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn has_unread_direct(&self) -> Result<bool, StoreError> {
        self.has_unread_without_team(true)
    }

    /// Whether any thread item in a DM/GM (no team) shows unread replies or mentions (then a
    /// read on another device could have changed it).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn has_unread_direct_thread(&self) -> Result<bool, StoreError> {
        self.has_unread_without_team(false)
    }

    /// Whether an item of no team (a DM/GM when `direct`, else a thread in one) is unread.
    fn has_unread_without_team(&self, direct: bool) -> Result<bool, StoreError> {
        self.read(|c, u| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM items WHERE user_id = ?1 AND team_id = ''
                   AND is_direct = ?2 AND (unread > 0 OR mentions > 0))",
                params![u, direct],
                |r| r.get(0),
            )?)
        })
    }

    /// The sync engine's memory of the last sync (opaque JSON; `""` when none).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn sync_memo(&self) -> Result<String, StoreError> {
        self.read(|c, u| {
            Ok(q_row(
                c,
                "SELECT memo FROM sync_state WHERE user_id = ?1",
                params![u],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or_default())
        })
    }

    /// Post ids the user saved (`flagged_post`), in id order.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn saved_posts(&self) -> Result<Vec<String>, StoreError> {
        self.read(|c, u| {
            collect(
                c,
                "SELECT post_id FROM saved_posts WHERE user_id = ?1 ORDER BY post_id",
                params![u],
                |r| r.get(0),
            )
        })
    }

    /// Sync cursors.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn sync_state(&self) -> Result<SyncState, StoreError> {
        self.read(sync_state)
    }

    /// Number of live browser sessions of the user.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn session_count(&self) -> Result<i64, StoreError> {
        self.read(|c, u| {
            Ok(q_row(
                c,
                "SELECT count(*) FROM web_sessions WHERE user_id = ?1",
                params![u],
                |r| r.get(0),
            )?)
        })
    }

    /// Everything held about the user, for "Export my data".
    ///
    /// # Errors
    /// SQLite failure.
    pub fn export(&self) -> Result<UserExport, StoreError> {
        let saved_searches = self.saved_searches()?;
        let profile = self.profile()?;
        let teams = self.teams()?;
        let outbox = self.outbox_rows(None)?;
        self.read(|c, u| {
            let items_sql = format!(
                "SELECT {ITEM_COLUMNS} FROM items i LEFT JOIN channels c ON c.channel_id = i.channel_id
                 WHERE i.user_id = ?1 ORDER BY i.last_activity_at DESC, i.item_key"
            );
            Ok(UserExport {
                user_id: UserId(u.to_owned()),
                profile,
                teams,
                memberships: memberships(c, u)?,
                threads: threads(c, u, None)?,
                mentions: collect(
                    c,
                    "SELECT post_id, channel_id, team_id, create_at FROM user_mentions WHERE user_id = ?1 ORDER BY post_id",
                    params![u],
                    |r| {
                        Ok(Mention {
                            post_id: r.get(0)?,
                            channel_id: r.get(1)?,
                            team_id: r.get(2)?,
                            create_at: r.get(3)?,
                        })
                    },
                )?,
                marks: collect(
                    c,
                    "SELECT item_key, done_at, snoozed_until FROM marks WHERE user_id = ?1 ORDER BY item_key",
                    params![u],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?,
                items: collect(c, &items_sql, params![u], item_from_row)?,
                sync: sync_state(c, u)?,
                sessions: collect(
                    c,
                    "SELECT created_at, last_seen_at, expires_at, user_agent FROM web_sessions WHERE user_id = ?1 ORDER BY created_at",
                    params![u],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?,
                tokens: collect(
                    c,
                    "SELECT kind, updated_at FROM user_tokens WHERE user_id = ?1 ORDER BY kind",
                    params![u],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?,
                outbox,
                posts: collect(
                    c,
                    &format!("SELECT {POST_COLUMNS} FROM posts p WHERE p.user_id = ?1 ORDER BY p.create_at"),
                    params![u],
                    post_from_row,
                )?,
                saved_searches,
            })
        })
    }

    /// "Delete my data": every row of the user (sessions, tokens, cache, outbox, marks), and
    /// shared cache rows (channels, posts) no other user of this instance is a member of.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn delete_all(&self) -> Result<(), StoreError> {
        self.write_durable(|u| u.delete_all())?;
        tracing::info!(user.id = %self.user, "store: deleted all data of user");
        Ok(())
    }
}

/// The queue query for `filter`. Parameters: ?1 user, ?2 now, ?3/?4 cursor (activity, key),
/// ?5 limit, ?6 team id (bound as NULL for every other filter, so the count is fixed).
pub(crate) fn queue_sql(filter: &Filter) -> (String, Option<&str>) {
    let open =
        "?6 IS NULL AND i.is_open = 1 AND (i.snoozed_until IS NULL OR i.snoozed_until <= ?2)";
    let (cond, team) = match filter {
        Filter::All => (open.to_owned(), None),
        Filter::Mentions => (format!("{open} AND i.mentions > 0"), None),
        // DM/GM items have no team: `items_team` over `team_id = ''` (threads in DMs and GMs
        // share that range and are skipped).
        Filter::Direct => (format!("i.team_id = '' AND i.is_direct = 1 AND {open}"), None),
        Filter::Threads => (format!("i.is_direct = 0 AND {open}"), None),
        Filter::Team(t) => (
            "i.team_id = ?6 AND i.is_open = 1 AND (i.snoozed_until IS NULL OR i.snoozed_until <= ?2)"
                .to_owned(),
            Some(t.as_str()),
        ),
        Filter::Snoozed => ("?6 IS NULL AND i.is_open = 1 AND i.snoozed_until > ?2".to_owned(), None),
        Filter::Done => ("?6 IS NULL AND i.is_open = 0".to_owned(), None),
    };
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM items i LEFT JOIN channels c ON c.channel_id = i.channel_id
         WHERE i.user_id = ?1 AND {cond}
           AND (?3 IS NULL OR i.last_activity_at < ?3 OR (i.last_activity_at = ?3 AND i.item_key > ?4))
         ORDER BY i.last_activity_at DESC, i.item_key
         LIMIT ?5"
    );
    (sql, team)
}

fn fill_preview(c: &Connection, u: &str, row: &mut QueueRow) -> Result<(), StoreError> {
    let found = match (&row.key, row.kind) {
        (ItemKey::Channel(ch), _) => channel_posts(c, u, ch, None, 1)?.into_iter().next(),
        (ItemKey::Thread(root), _) => {
            let sql = format!(
                "SELECT {POST_COLUMNS} FROM posts p WHERE p.post_id = ?2 AND {MEMBER_CHECK}"
            );
            q_row(c, &sql, params![u, root], post_from_row).optional()?
        }
    };
    if let Some(p) = found {
        row.preview_user_id = Some(p.user_id);
        row.preview = Some(p.message);
    }
    Ok(())
}

fn thread_posts(c: &Connection, u: &str, root: &str, limit: i64) -> Result<Vec<Post>, StoreError> {
    let sql = format!(
        "SELECT {POST_COLUMNS} FROM posts p
         WHERE (p.post_id = ?2 OR p.root_id = ?2) AND {MEMBER_CHECK}
         ORDER BY p.create_at DESC, p.post_id DESC LIMIT ?3"
    );
    collect(c, &sql, params![u, root, limit], post_from_row)
}

fn channel_posts(
    c: &Connection,
    u: &str,
    channel_id: &str,
    before: Option<Millis>,
    limit: i64,
) -> Result<Vec<Post>, StoreError> {
    let sql = format!(
        "SELECT {POST_COLUMNS} FROM posts p
         WHERE p.channel_id = ?2 AND p.delete_at = 0 AND (?3 IS NULL OR p.create_at < ?3) AND {MEMBER_CHECK}
         ORDER BY p.create_at DESC, p.post_id DESC LIMIT ?4"
    );
    collect(
        c,
        &sql,
        params![u, channel_id, before, limit],
        post_from_row,
    )
}

fn memberships(c: &Connection, u: &str) -> Result<Vec<Membership>, StoreError> {
    collect(
        c,
        "SELECT channel_id, msg_count, mention_count, msg_count_root, mention_count_root,
                urgent_mention_count, last_viewed_at, last_update_at
         FROM memberships WHERE user_id = ?1 ORDER BY channel_id",
        params![u],
        |r| {
            Ok(Membership {
                channel_id: r.get(0)?,
                msg_count: r.get(1)?,
                mention_count: r.get(2)?,
                msg_count_root: r.get(3)?,
                mention_count_root: r.get(4)?,
                urgent_mention_count: r.get(5)?,
                last_viewed_at: r.get(6)?,
                last_update_at: r.get(7)?,
            })
        },
    )
}

fn threads(c: &Connection, u: &str, root: Option<&str>) -> Result<Vec<Thread>, StoreError> {
    collect(
        c,
        "SELECT root_id, channel_id, team_id, reply_count, last_reply_at, last_viewed_at,
                unread_replies, unread_mentions, is_urgent, following, delete_at, participants
         FROM threads WHERE user_id = ?1 AND (?2 IS NULL OR root_id = ?2) ORDER BY root_id",
        params![u, root],
        |r| {
            Ok(Thread {
                root_id: r.get(0)?,
                channel_id: r.get(1)?,
                team_id: r.get(2)?,
                reply_count: r.get(3)?,
                last_reply_at: r.get(4)?,
                last_viewed_at: r.get(5)?,
                unread_replies: r.get(6)?,
                unread_mentions: r.get(7)?,
                is_urgent: r.get(8)?,
                following: r.get(9)?,
                delete_at: r.get(10)?,
                participants: JsonText::new(r.get::<_, String>(11)?),
            })
        },
    )
}

fn sync_state(c: &Connection, u: &str) -> Result<SyncState, StoreError> {
    let mut s = q_row(c,
            "SELECT ws_connection_id, ws_next_seq, last_full_sync_at FROM sync_state WHERE user_id = ?1",
            params![u],
            |r| {
                Ok(SyncState {
                    ws_connection_id: r.get(0)?,
                    ws_next_seq: r.get(1)?,
                    last_full_sync_at: r.get(2)?,
                    teams: Vec::new(),
                })
            },
        )
        .optional()?
        .unwrap_or_default();
    s.teams = collect(
        c,
        "SELECT team_id, last_thread_sync_at FROM team_sync WHERE user_id = ?1 ORDER BY team_id",
        params![u],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(s)
}

/// Write handle bound to one user, inside a transaction. Obtain with [`Tx::user`].
pub struct UserTx<'t> {
    conn: &'t Connection,
    user: &'t UserId,
}

impl<'t> UserTx<'t> {
    pub(crate) fn new(conn: &'t Connection, user: &'t UserId) -> Self {
        Self { conn, user }
    }

    fn u(&self) -> &str {
        self.user.as_str()
    }

    /// The shared-cache writer of the same transaction.
    #[must_use]
    pub fn shared(&self) -> Tx<'t> {
        Tx { conn: self.conn }
    }

    /// Creates or updates the user's own row (at sign-in). Must exist before any other row.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn upsert_self(&self, p: &Profile, now: Millis) -> Result<(), StoreError> {
        exec(self.conn,
            "INSERT INTO users (user_id, username, first_name, last_name, nickname, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (user_id) DO UPDATE SET username = excluded.username,
               first_name = excluded.first_name, last_name = excluded.last_name,
               nickname = excluded.nickname, updated_at = excluded.updated_at",
            params![self.u(), p.username, p.first_name, p.last_name, p.nickname, now],
        )?;
        exec(
            self.conn,
            "INSERT INTO sync_state (user_id) VALUES (?1) ON CONFLICT DO NOTHING",
            params![self.u()],
        )?;
        Ok(())
    }

    /// Stores an encrypted token (use inside [`Store::write_durable`]).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn put_token(
        &self,
        kind: &str,
        blob: &EncryptedBlob,
        now: Millis,
    ) -> Result<(), StoreError> {
        exec(self.conn,
            "INSERT INTO user_tokens (user_id, kind, blob, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id, kind) DO UPDATE SET blob = excluded.blob, updated_at = excluded.updated_at",
            params![self.u(), kind, blob.0, now],
        )?;
        Ok(())
    }

    /// Deletes a token.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn delete_token(&self, kind: &str) -> Result<(), StoreError> {
        exec(
            self.conn,
            "DELETE FROM user_tokens WHERE user_id = ?1 AND kind = ?2",
            params![self.u(), kind],
        )?;
        Ok(())
    }

    /// Creates a browser session; only the SHA-256 of `token` is stored.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn create_session(
        &self,
        token: &str,
        csrf: &SecretText,
        now: Millis,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        exec(self.conn,
            "INSERT INTO web_sessions (id_hash, user_id, csrf_token, created_at, last_seen_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            params![hash_token(token), self.u(), csrf.expose(), now, expires_at],
        )?;
        Ok(())
    }

    /// Signs the user out everywhere.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn delete_all_sessions(&self) -> Result<usize, StoreError> {
        Ok(exec(
            self.conn,
            "DELETE FROM web_sessions WHERE user_id = ?1",
            params![self.u()],
        )?)
    }

    /// Replaces the set of teams the user belongs to (teams rows via [`Tx::upsert_team`]).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn set_teams(&self, team_ids: &[&str]) -> Result<(), StoreError> {
        exec(
            self.conn,
            "DELETE FROM user_teams WHERE user_id = ?1",
            params![self.u()],
        )?;
        let mut st = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO user_teams (user_id, team_id) VALUES (?1, ?2)",
        )?;
        for t in team_ids {
            st.execute(params![self.u(), t])?;
        }
        Ok(())
    }

    /// Inserts or updates the user's membership of a channel (newer-or-equal `last_update_at`
    /// wins) and refreshes the items in that channel.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn upsert_membership(&self, m: &Membership) -> Result<(), StoreError> {
        let n = exec(self.conn,
            "INSERT INTO memberships (user_id, channel_id, msg_count, mention_count, msg_count_root,
               mention_count_root, urgent_mention_count, last_viewed_at, last_update_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (user_id, channel_id) DO UPDATE SET msg_count = excluded.msg_count,
               mention_count = excluded.mention_count, msg_count_root = excluded.msg_count_root,
               mention_count_root = excluded.mention_count_root,
               urgent_mention_count = excluded.urgent_mention_count,
               last_viewed_at = excluded.last_viewed_at, last_update_at = excluded.last_update_at
             WHERE excluded.last_update_at >= memberships.last_update_at
               -- An identical row is not rewritten: a resync re-sends every membership, and each
               -- rewrite re-derived all items of the channel (2,000 channels, 10,000 items:
               -- ~1.5 s per resync with nothing changed; BENCHMARKS.md P-3).
               AND (excluded.msg_count, excluded.mention_count, excluded.msg_count_root,
                    excluded.mention_count_root, excluded.urgent_mention_count,
                    excluded.last_viewed_at, excluded.last_update_at)
                   IS NOT (memberships.msg_count, memberships.mention_count,
                           memberships.msg_count_root, memberships.mention_count_root,
                           memberships.urgent_mention_count, memberships.last_viewed_at,
                           memberships.last_update_at)",
            params![
                self.u(),
                m.channel_id,
                m.msg_count,
                m.mention_count,
                m.msg_count_root,
                m.mention_count_root,
                m.urgent_mention_count,
                m.last_viewed_at,
                m.last_update_at
            ],
        )?;
        if n > 0 {
            refresh_channel_all(self.conn, self.u(), &m.channel_id)?;
        }
        Ok(())
    }

    /// The user left (or was removed from) a channel: its items leave the queue.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn remove_membership(&self, channel_id: &str) -> Result<(), StoreError> {
        exec(
            self.conn,
            "DELETE FROM memberships WHERE user_id = ?1 AND channel_id = ?2",
            params![self.u(), channel_id],
        )?;
        refresh_channel_all(self.conn, self.u(), channel_id)
    }

    /// Inserts or updates a thread membership; applied unless older than the stored one
    /// (`last_reply_at` smaller). Equal `last_reply_at` applies (read state, follow changes).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn upsert_thread(&self, t: &Thread) -> Result<(), StoreError> {
        let n = exec(self.conn,
            "INSERT INTO threads (user_id, root_id, channel_id, team_id, reply_count, last_reply_at,
               last_viewed_at, unread_replies, unread_mentions, is_urgent, following, delete_at, participants)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (user_id, root_id) DO UPDATE SET channel_id = excluded.channel_id,
               team_id = excluded.team_id, reply_count = excluded.reply_count,
               last_reply_at = excluded.last_reply_at, last_viewed_at = excluded.last_viewed_at,
               unread_replies = excluded.unread_replies, unread_mentions = excluded.unread_mentions,
               is_urgent = excluded.is_urgent, following = excluded.following,
               delete_at = excluded.delete_at, participants = excluded.participants
             WHERE excluded.last_reply_at >= threads.last_reply_at",
            params![
                self.u(),
                t.root_id,
                t.channel_id,
                t.team_id,
                t.reply_count,
                t.last_reply_at,
                t.last_viewed_at,
                t.unread_replies,
                t.unread_mentions,
                t.is_urgent,
                t.following,
                t.delete_at,
                t.participants.expose()
            ],
        )?;
        if n > 0 {
            thread_later(self.conn, self.u(), &t.root_id)?;
        }
        Ok(())
    }

    /// After a complete listing of the user's followed threads since `since` (`listed`):
    /// marks as unfollowed the stored threads followed and active since then that the lists
    /// no longer contain (unfollowed elsewhere, the event lost). Returns how many.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn unfollow_missing(
        &self,
        listed: &std::collections::HashSet<String>,
        since: Millis,
    ) -> Result<usize, StoreError> {
        let stale: Vec<String> = collect(
            self.conn,
            "SELECT root_id FROM threads
              WHERE user_id = ?1 AND following = 1 AND last_reply_at >= ?2",
            params![self.u(), since],
            |r| r.get(0),
        )?
        .into_iter()
        .filter(|root: &String| !listed.contains(root))
        .collect();
        for root in &stale {
            self.set_thread_following(root, false)?;
        }
        Ok(stale.len())
    }

    /// Follow / unfollow (`thread_follow_changed`) of a thread already known; returns false if
    /// the thread is unknown (fetch it then).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn set_thread_following(&self, root_id: &str, following: bool) -> Result<bool, StoreError> {
        let n = exec(
            self.conn,
            "UPDATE threads SET following = ?3 WHERE user_id = ?1 AND root_id = ?2",
            params![self.u(), root_id, following],
        )?;
        thread_later(self.conn, self.u(), root_id)?;
        Ok(n > 0)
    }

    /// Read state of a thread (`thread_read_changed`, or our own mark-read): absolute values
    /// from the server, applied as given. Returns false if the thread is unknown.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn set_thread_read(
        &self,
        root_id: &str,
        last_viewed_at: Millis,
        unread_replies: i64,
        unread_mentions: i64,
    ) -> Result<bool, StoreError> {
        let n = exec(
            self.conn,
            "UPDATE threads SET last_viewed_at = ?3, unread_replies = ?4, unread_mentions = ?5
             WHERE user_id = ?1 AND root_id = ?2",
            params![
                self.u(),
                root_id,
                last_viewed_at,
                unread_replies,
                unread_mentions
            ],
        )?;
        thread_later(self.conn, self.u(), root_id)?;
        Ok(n > 0)
    }

    /// The channel was viewed at `at` (`multiple_channels_viewed`): unless an equal or later
    /// view is already recorded, the read counts become the channel's totals and the unread
    /// mentions zero (state, not increments).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn mark_channel_viewed(&self, channel_id: &str, at: Millis) -> Result<bool, StoreError> {
        let n = exec(self.conn,
            "UPDATE memberships SET last_viewed_at = ?3, last_update_at = max(last_update_at, ?3),
               msg_count = coalesce((SELECT total_msg_count FROM channels WHERE channel_id = ?2), msg_count),
               msg_count_root = coalesce((SELECT total_msg_count_root FROM channels WHERE channel_id = ?2), msg_count_root),
               mention_count = 0, mention_count_root = 0, urgent_mention_count = 0
             WHERE user_id = ?1 AND channel_id = ?2 AND last_viewed_at < ?3",
            params![self.u(), channel_id, at],
        )?;
        if n > 0 {
            refresh_channel_all(self.conn, self.u(), channel_id)?;
        }
        Ok(n > 0)
    }

    /// Records that a root post mentions the user (an item until someone replies).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn add_mention(&self, m: &Mention) -> Result<(), StoreError> {
        exec(
            self.conn,
            "INSERT OR IGNORE INTO user_mentions (user_id, post_id, channel_id, team_id, create_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![self.u(), m.post_id, m.channel_id, m.team_id, m.create_at],
        )?;
        thread_later(self.conn, self.u(), &m.post_id)
    }

    /// Sets (or with `Marks::default()` clears) the done / snooze marks of one item.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn set_marks(&self, key: &ItemKey, marks: Marks) -> Result<(), StoreError> {
        let k = key.to_string();
        if marks == Marks::default() {
            exec(
                self.conn,
                "DELETE FROM marks WHERE user_id = ?1 AND item_key = ?2",
                params![self.u(), k],
            )?;
        } else {
            exec(self.conn,
                "INSERT INTO marks (user_id, item_key, done_at, snoozed_until) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id, item_key) DO UPDATE SET done_at = excluded.done_at,
                   snoozed_until = excluded.snoozed_until",
                params![self.u(), k, marks.done_at, marks.snoozed_until],
            )?;
        }
        item_later(self.conn, self.u(), key)
    }

    /// Replaces all marks (after reading the user's preferences from Mattermost).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn replace_marks(&self, marks: &BTreeMap<ItemKey, Marks>) -> Result<(), StoreError> {
        let old: Vec<String> = collect(
            self.conn,
            "SELECT item_key FROM marks WHERE user_id = ?1",
            params![self.u()],
            |r| r.get(0),
        )?;
        exec(
            self.conn,
            "DELETE FROM marks WHERE user_id = ?1",
            params![self.u()],
        )?;
        for k in old.iter().filter_map(|k| ItemKey::parse(k).ok()) {
            if !marks.contains_key(&k) {
                item_later(self.conn, self.u(), &k)?;
            }
        }
        for (k, m) in marks {
            self.set_marks(k, *m)?;
        }
        Ok(())
    }

    /// Saves the WebSocket resume point.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn set_ws_state(&self, connection_id: &str, next_seq: i64) -> Result<(), StoreError> {
        exec(
            self.conn,
            "INSERT INTO sync_state (user_id, ws_connection_id, ws_next_seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id) DO UPDATE SET ws_connection_id = excluded.ws_connection_id,
               ws_next_seq = excluded.ws_next_seq",
            params![self.u(), connection_id, next_seq],
        )?;
        Ok(())
    }

    /// Saves the sync engine's memory of the last sync (see [`UserStore::sync_memo`]).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn set_sync_memo(&self, memo: &str) -> Result<(), StoreError> {
        exec(
            self.conn,
            "INSERT INTO sync_state (user_id, memo) VALUES (?1, ?2)
             ON CONFLICT (user_id) DO UPDATE SET memo = excluded.memo",
            params![self.u(), memo],
        )?;
        Ok(())
    }

    /// Marks one post saved (`flagged_post`) or not.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn set_saved(&self, post_id: &str, saved: bool) -> Result<(), StoreError> {
        if saved {
            exec(
                self.conn,
                "INSERT INTO saved_posts (user_id, post_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![self.u(), post_id],
            )?;
        } else {
            exec(
                self.conn,
                "DELETE FROM saved_posts WHERE user_id = ?1 AND post_id = ?2",
                params![self.u(), post_id],
            )?;
        }
        Ok(())
    }

    /// Saves (or with `None` forgets) the saved search `name`.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn set_saved_search(
        &self,
        name: &str,
        search: Option<&SavedSearch>,
    ) -> Result<bool, StoreError> {
        let rows = match search {
            // An identical row is left alone (and does not count as a change).
            Some(s) => exec(
                self.conn,
                "INSERT INTO saved_searches (user_id, name, label, q, filter, team_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (user_id, name) DO UPDATE SET label = excluded.label, q = excluded.q,
                   filter = excluded.filter, team_id = excluded.team_id
                 WHERE label IS NOT excluded.label OR q IS NOT excluded.q
                   OR filter IS NOT excluded.filter OR team_id IS NOT excluded.team_id",
                params![self.u(), s.name, s.label, s.q, s.filter, s.team],
            )?,
            None => exec(
                self.conn,
                "DELETE FROM saved_searches WHERE user_id = ?1 AND name = ?2",
                params![self.u(), name],
            )?,
        };
        Ok(rows > 0)
    }

    /// The user's saved searches are exactly `searches` (a full read of the preferences).
    /// `true` when that changed anything.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn replace_saved_searches(&self, searches: &[SavedSearch]) -> Result<bool, StoreError> {
        let names: Vec<&str> = searches.iter().map(|s| s.name.as_str()).collect();
        let names = serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned());
        let mut changed = exec(
            self.conn,
            "DELETE FROM saved_searches WHERE user_id = ?1
               AND name NOT IN (SELECT value FROM json_each(?2))",
            params![self.u(), names],
        )? > 0;
        for s in searches {
            changed |= self.set_saved_search(&s.name, Some(s))?;
        }
        Ok(changed)
    }

    /// Saves every listed post; with `replace_all`, the others are un-saved.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn replace_saved(&self, post_ids: &[String], replace_all: bool) -> Result<(), StoreError> {
        if replace_all {
            exec(
                self.conn,
                "DELETE FROM saved_posts WHERE user_id = ?1",
                params![self.u()],
            )?;
        }
        for id in post_ids {
            self.set_saved(id, true)?;
        }
        Ok(())
    }

    /// Records a completed full sync.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn set_last_full_sync(&self, at: Millis) -> Result<(), StoreError> {
        exec(
            self.conn,
            "INSERT INTO sync_state (user_id, last_full_sync_at) VALUES (?1, ?2)
             ON CONFLICT (user_id) DO UPDATE SET last_full_sync_at = excluded.last_full_sync_at",
            params![self.u(), at],
        )?;
        Ok(())
    }

    /// Records the last thread sync time of a team (the next `since`).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn set_team_sync(&self, team_id: &str, at: Millis) -> Result<(), StoreError> {
        exec(self.conn,
            "INSERT INTO team_sync (user_id, team_id, last_thread_sync_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, team_id) DO UPDATE SET last_thread_sync_at = excluded.last_thread_sync_at",
            params![self.u(), team_id, at],
        )?;
        Ok(())
    }

    /// Adds an outbox row in this transaction, e.g. together with the optimistic change it
    /// sends (`set_marks` + the preference write). Use inside [`UserStore::write_durable`] so
    /// the row is durable before the browser is answered.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn outbox_enqueue(&self, new: &outbox::NewOutbox, now: Millis) -> Result<i64, StoreError> {
        outbox::enqueue(self.conn, self.u(), new, now)
    }

    /// The outbox rows of this user (same transaction).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn outbox_rows(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM outbox WHERE user_id = ?1 ORDER BY id",
            outbox::COLUMNS
        );
        collect(self.conn, &sql, params![self.u()], outbox::from_row)
    }

    /// Deletes every row of the user and the shared cache rows nobody else needs.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn delete_all(&self) -> Result<(), StoreError> {
        let u = self.u();
        let channels: Vec<String> = collect(
            self.conn,
            "SELECT channel_id FROM memberships WHERE user_id = ?1",
            params![u],
            |r| r.get(0),
        )?;
        for t in [
            "items",
            "item_counts",
            "marks",
            "saved_posts",
            "saved_searches",
            "user_mentions",
            "threads",
            "memberships",
            "user_teams",
            "team_sync",
            "sync_state",
            "outbox",
            "web_sessions",
            "user_tokens",
            "users",
        ] {
            exec(
                self.conn,
                &format!("DELETE FROM {t} WHERE user_id = ?1"),
                params![u],
            )?;
        }
        for ch in channels {
            let shared: bool = q_row(
                self.conn,
                "SELECT EXISTS (SELECT 1 FROM memberships WHERE channel_id = ?1)",
                params![ch],
                |r| r.get(0),
            )?;
            if !shared {
                exec(
                    self.conn,
                    "DELETE FROM posts_fts WHERE rowid IN (SELECT seq FROM posts WHERE channel_id = ?1)",
                    params![ch],
                )?;
                exec(
                    self.conn,
                    "DELETE FROM posts WHERE channel_id = ?1",
                    params![ch],
                )?;
                exec(
                    self.conn,
                    "DELETE FROM channels WHERE channel_id = ?1",
                    params![ch],
                )?;
            }
        }
        Ok(())
    }
}

/// The open items of user `?1` whose snooze has expired by `?2` (a range of `items_snoozed`).
pub(super) const EXPIRED_SNOOZES: &str = "SELECT team_id, mentions, is_direct FROM items
  WHERE user_id = ?1 AND snoozed_until IS NOT NULL AND snoozed_until <= ?2 AND is_open = 1";

/// Matches of a search's words read at most, newest cached first ([`UserStore::search`]):
/// ≈ 35–40 ms at most on the bench's cache of 1.3 M rows (BENCHMARKS.md), whatever the word.
/// A word in more cached messages than this (everyone's) finds only its newest uses.
const SEARCH_CANDIDATES: usize = if cfg!(test) { 50 } else { 10_000 };

/// The search statement: posts matching the words (FTS5) and/or by the `from:` authors and/or
/// in the `in:` channels, in
/// the user's channels, newest first; with `items`, joined to the user's item each belongs to
/// (its thread, or its DM/GM channel), columns 14–17 = item key, open, snoozed until, team.
fn search_sql(q: &SearchQuery, items: bool) -> String {
    // The candidates: the newest matches of the words in the whole cache (bounded, so that a
    // word in every message costs a bounded read), or without words the posts of the user's
    // channels.
    let (from, words) = match q.fts() {
        Some(_) => (
            format!(
                "(SELECT rowid AS seq FROM posts_fts WHERE posts_fts MATCH ?2
                  ORDER BY rowid DESC LIMIT {SEARCH_CANDIDATES}) f
                 JOIN posts p ON p.seq = f.seq"
            ),
            "",
        ),
        None => (
            "memberships mm JOIN posts p ON p.channel_id = mm.channel_id".to_owned(),
            "mm.user_id = ?1 AND ?2 IS NULL AND",
        ),
    };
    let authors = if q.from.is_empty() {
        "?3 IS NULL"
    } else {
        "p.user_id IN (SELECT pr.user_id FROM profiles pr
                        WHERE pr.username IN (SELECT value FROM json_each(?3)))"
    };
    let (item_cols, item_join) = if items {
        (
            ", i.item_key, i.is_open, i.snoozed_until, i.team_id",
            " JOIN items i ON i.user_id = ?1 AND i.item_key IN
                 ('t_' || iif(p.root_id = '', p.post_id, p.root_id), 'c_' || p.channel_id)",
        )
    } else {
        ("", "")
    };
    let channels = if q.channels.is_empty() {
        "?5 IS NULL"
    } else {
        "p.channel_id IN (SELECT ch.channel_id FROM channels ch
                           WHERE ch.name IN (SELECT value FROM json_each(?5)))"
    };
    format!(
        "SELECT {POST_COLUMNS}{item_cols} FROM {from}{item_join}
         WHERE {words} {authors} AND {channels} AND p.delete_at = 0 AND {MEMBER_CHECK}
         ORDER BY p.create_at DESC, p.post_id DESC LIMIT ?4"
    )
}

fn search_params<'a>(
    u: &'a str,
    q: &SearchQuery,
    limit: usize,
) -> (&'a str, Option<String>, Option<String>, i64, Option<String>) {
    let json = |v: &Vec<String>| {
        (!v.is_empty()).then(|| serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned()))
    };
    (
        u,
        q.fts(),
        json(&q.from),
        i64::try_from(limit.clamp(1, 5000)).unwrap_or(200),
        json(&q.channels),
    )
}

/// Item counts per filter at `now`: the per-team counters the triggers keep (migrations 8
/// and 13: items that are not snoozed, and the open snoozed ones), corrected by the snoozes
/// that have expired by `now` — those count as open again. Reads one row per team and the
/// expired snoozes only (`items_snoozed`), never every item or every snooze.
pub(super) fn count_items(c: &Connection, u: &str, now: Millis) -> Result<QueueCounts, StoreError> {
    // team → (open, mentions, direct, snoozed, done)
    let mut per_team: BTreeMap<String, [i64; 5]> = BTreeMap::new();
    for (team, open, mentions, direct, snoozed, done) in collect(
        c,
        "SELECT team_id, open_n, mention_n, direct_n, snoozed_n, done_n FROM item_counts
          WHERE user_id = ?1",
        params![u],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        },
    )? {
        per_team.insert(team, [open, mentions, direct, snoozed, done]);
    }
    for (team, mentions, direct) in collect(c, EXPIRED_SNOOZES, params![u, now], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, bool>(2)?,
        ))
    })? {
        let e = per_team.entry(team).or_insert([0; 5]);
        e[0] += 1;
        e[1] += i64::from(mentions > 0);
        e[2] += i64::from(direct);
        e[3] -= 1;
    }
    let mut counts = QueueCounts::default();
    for (team, [open, mentions, direct, snoozed, done]) in per_team {
        counts.all += open;
        counts.mentions += mentions;
        counts.direct += direct;
        counts.threads += open - direct;
        counts.snoozed += snoozed;
        counts.done += done;
        if open > 0 {
            counts.teams.push((team, open));
        }
    }
    Ok(counts)
}

/// The counts by a scan of every item (what [`count_items`] must always equal; tests).
#[cfg(test)]
pub(super) fn count_items_scan(
    c: &Connection,
    u: &str,
    now: Millis,
) -> Result<QueueCounts, StoreError> {
    let per_team = collect(
        c,
        "SELECT team_id,
                   sum(is_open = 1 AND coalesce(snoozed_until <= ?2, 1)),
                   sum(is_open = 1 AND coalesce(snoozed_until <= ?2, 1) AND mentions > 0),
                   sum(is_open = 1 AND coalesce(snoozed_until <= ?2, 1) AND is_direct = 1),
                   sum(is_open = 1 AND coalesce(snoozed_until > ?2, 0)),
                   sum(is_open = 0)
                 FROM items WHERE user_id = ?1 GROUP BY team_id ORDER BY team_id",
        params![u, now],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        },
    )?;
    let mut counts = QueueCounts::default();
    for (team, open, mentions, direct, snoozed, done) in per_team {
        counts.all += open;
        counts.mentions += mentions;
        counts.direct += direct;
        counts.threads += open - direct;
        counts.snoozed += snoozed;
        counts.done += done;
        if open > 0 {
            counts.teams.push((team, open));
        }
    }
    Ok(counts)
}
