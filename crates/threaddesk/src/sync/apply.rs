//! Commit a [`Batch`] to the store in ONE transaction, through the store's user-scoped write
//! handle ([`crate::store::UserTx`]) and its idempotent upserts (which also re-derive the
//! affected queue items). Partial updates (a thread's read state, a channel view, a reaction)
//! read the current row inside the same transaction and write it back whole, so the store's
//! "newer wins" rules still decide.
//!
//! Blocking: call from `spawn_blocking`.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{OptionalExtension, params};

use super::batch::{Batch, Write};
use crate::inbox::{ItemKey, MarkKind, Marks};
use crate::store::{self, Store, StoreError, UserId, UserTx};

fn thread_row(
    ut: &UserTx<'_>,
    user: &str,
    root_id: &str,
) -> Result<Option<store::Thread>, StoreError> {
    let tx = ut.shared();
    Ok(tx
        .conn
        .query_row(
            "SELECT root_id, channel_id, team_id, reply_count, last_reply_at, last_viewed_at,
                    unread_replies, unread_mentions, is_urgent, following, delete_at, participants
             FROM threads WHERE user_id = ?1 AND root_id = ?2",
            params![user, root_id],
            |r| {
                Ok(store::Thread {
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
                    participants: store::JsonText::new(r.get::<_, String>(11)?),
                })
            },
        )
        .optional()?)
}

fn channel_row(ut: &UserTx<'_>, channel_id: &str) -> Result<Option<store::Channel>, StoreError> {
    let tx = ut.shared();
    Ok(tx
        .conn
        .query_row(
            "SELECT channel_id, team_id, type, name, display_name, total_msg_count,
                    total_msg_count_root, last_post_at, last_root_post_at, update_at, delete_at
             FROM channels WHERE channel_id = ?1",
            params![channel_id],
            |r| {
                Ok(store::Channel {
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
}

fn membership_row(
    ut: &UserTx<'_>,
    user: &str,
    channel_id: &str,
) -> Result<Option<store::Membership>, StoreError> {
    let tx = ut.shared();
    Ok(tx
        .conn
        .query_row(
            "SELECT channel_id, msg_count, mention_count, msg_count_root, mention_count_root,
                    urgent_mention_count, last_viewed_at, last_update_at
             FROM memberships WHERE user_id = ?1 AND channel_id = ?2",
            params![user, channel_id],
            |r| {
                Ok(store::Membership {
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
        .optional()?)
}

fn post_row(ut: &UserTx<'_>, post_id: &str) -> Result<Option<store::Post>, StoreError> {
    let tx = ut.shared();
    Ok(tx
        .conn
        .query_row(
            "SELECT post_id, channel_id, root_id, user_id, type, create_at, update_at, edit_at,
                    delete_at, message, props, file_ids, reactions, metadata
             FROM posts WHERE post_id = ?1",
            params![post_id],
            |r| {
                Ok(store::Post {
                    post_id: r.get(0)?,
                    channel_id: r.get(1)?,
                    root_id: r.get(2)?,
                    user_id: r.get(3)?,
                    post_type: r.get(4)?,
                    create_at: r.get(5)?,
                    update_at: r.get(6)?,
                    edit_at: r.get(7)?,
                    delete_at: r.get(8)?,
                    message: store::MessageText::new(r.get::<_, String>(9)?),
                    props: store::JsonText::new(r.get::<_, String>(10)?),
                    file_ids: store::JsonText::new(r.get::<_, String>(11)?),
                    reactions: store::JsonText::new(r.get::<_, String>(12)?),
                    metadata: store::JsonText::new(r.get::<_, String>(13)?),
                })
            },
        )
        .optional()?)
}

fn marks_row(ut: &UserTx<'_>, user: &str, key: &ItemKey) -> Result<Marks, StoreError> {
    let tx = ut.shared();
    Ok(tx
        .conn
        .query_row(
            "SELECT done_at, snoozed_until FROM marks WHERE user_id = ?1 AND item_key = ?2",
            params![user, key.to_string()],
            |r| {
                Ok(Marks {
                    done_at: r.get(0)?,
                    snoozed_until: r.get(1)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

/// [`Write::MarkedUnread`]. Nothing changes when the post is not cached or not in the item
/// (Mattermost refuses such a request too).
fn marked_unread(
    ut: &UserTx<'_>,
    user: &str,
    key: &ItemKey,
    post_id: &str,
) -> Result<(), StoreError> {
    let conn = ut.shared().conn;
    let Some((channel_id, root_id, create_at)) = conn
        .query_row(
            "SELECT channel_id, root_id, create_at FROM posts WHERE post_id = ?1",
            params![post_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )
        .optional()?
    else {
        return Ok(());
    };
    let read_point = create_at - 1;
    match key {
        ItemKey::Thread(root) => {
            if root_id != *root && post_id != root {
                return Ok(());
            }
            let Some(t) = thread_row(ut, user, root)? else {
                return Ok(());
            };
            let unread: i64 = conn.query_row(
                "SELECT count(*) FROM posts WHERE root_id = ?1 AND delete_at = 0 AND create_at > ?2",
                params![root, read_point],
                |r| r.get(0),
            )?;
            ut.set_thread_read(root, read_point, unread, t.unread_mentions)?;
            // `set_unread` follows the thread first.
            ut.set_thread_following(root, true)?;
        }
        ItemKey::Channel(c) => {
            if channel_id != *c {
                return Ok(());
            }
            let Some(mut m) = membership_row(ut, user, c)? else {
                return Ok(());
            };
            let Some((total, total_root, after, after_root)) = conn
                .query_row(
                    "SELECT ch.total_msg_count, ch.total_msg_count_root,
                        (SELECT count(*) FROM posts p WHERE p.channel_id = ch.channel_id
                           AND p.delete_at = 0 AND p.create_at > ?2),
                        (SELECT count(*) FROM posts p WHERE p.channel_id = ch.channel_id
                           AND p.delete_at = 0 AND p.create_at > ?2 AND p.root_id = '')
                 FROM channels ch WHERE ch.channel_id = ?1",
                    params![c, read_point],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    },
                )
                .optional()?
            else {
                return Ok(());
            };
            m.msg_count = (total - after).max(0);
            m.msg_count_root = (total_root - after_root).max(0);
            m.last_viewed_at = read_point;
            m.last_update_at = m.last_update_at.max(super::engine::now_ms());
            ut.upsert_membership(&m)?;
        }
    }
    Ok(())
}

/// The outbox kind of the user's action that sets the state `w` writes, and its item.
fn action_state(w: &Write) -> Option<(&'static str, Option<ItemKey>)> {
    Some(match w {
        Write::MarkSet { key, kind, .. } => (
            match kind {
                MarkKind::Done => "done",
                MarkKind::Snooze => "snooze",
            },
            Some(key.clone()),
        ),
        Write::ThreadRead { root_id, .. } => ("read", ItemKey::thread(root_id)),
        Write::ChannelViewed { channel_id, .. } | Write::MemberReadCounts { channel_id, .. } => {
            ("read", ItemKey::channel(channel_id))
        }
        Write::Follow { root_id, .. } => ("follow", ItemKey::thread(root_id)),
        _ => return None,
    })
}

/// Whether `w`, from Mattermost, contradicts what the user has asked since, in an action not
/// delivered yet (queued or in flight): it is then older than the user's intent — e.g. the
/// echo of a snooze arriving after the user snoozed again, which showed the first duration
/// for a moment — and is skipped. What agrees with the intent applies (the action's own echo
/// brings the server's exact counts). A change made on another device meanwhile is
/// overwritten by the delivery anyway (last writer wins in Mattermost); anything else is
/// corrected by the next resync's full read.
fn yields_to_pending_action(ut: &UserTx<'_>, user: &str, w: &Write) -> Result<bool, StoreError> {
    let Some((kind, Some(key))) = action_state(w) else {
        return Ok(false);
    };
    let Some(action) = pending_action(ut, user, &key, kind)? else {
        return Ok(false);
    };
    Ok(contradicts(w, &action))
}

/// The newest undelivered action of `kind` on `key`, if any.
fn pending_action(
    ut: &UserTx<'_>,
    user: &str,
    key: &ItemKey,
    kind: &str,
) -> Result<Option<super::Action>, StoreError> {
    let mut st = ut.shared().conn.prepare_cached(
        "SELECT payload FROM outbox WHERE user_id = ?1 AND state IN ('queued', 'inflight')
           AND item_key = ?2 AND kind = ?3 ORDER BY id DESC LIMIT 1",
    )?;
    let payload: Option<String> = st
        .query_row(params![user, key.to_string(), kind], |r| r.get(0))
        .optional()?;
    Ok(payload.and_then(|p| serde_json::from_str(&p).ok()))
}

/// Whether the state `w` writes is not the one `action` asks for.
fn contradicts(w: &Write, action: &super::Action) -> bool {
    use super::Action as A;
    match (w, action) {
        (
            Write::MarkSet {
                kind: MarkKind::Done,
                at,
                ..
            },
            A::Done { at: want, .. },
        ) => *at != Some(*want),
        (
            Write::MarkSet {
                kind: MarkKind::Snooze,
                at,
                ..
            },
            A::Snooze { until, .. },
        ) => *at != Some(*until),
        (Write::MarkSet { at, .. }, A::UndoDone { .. } | A::Unsnooze { .. }) => at.is_some(),
        // Read state: an echo says read or unread when it has counts; a view says read, a
        // `post_unread` unread.
        (Write::ThreadRead { unread_replies, .. }, A::MarkRead { .. }) => {
            unread_replies.is_some_and(|n| n > 0)
        }
        (Write::ThreadRead { unread_replies, .. }, A::MarkUnread { .. }) => {
            *unread_replies == Some(0)
        }
        (Write::ChannelViewed { .. }, A::MarkUnread { .. })
        | (Write::MemberReadCounts { .. }, A::MarkRead { .. }) => true,
        (Write::Follow { following, .. }, A::Follow { .. }) => !following,
        (Write::Follow { following, .. }, A::Unfollow { .. }) => *following,
        _ => false,
    }
}

/// A full read of the marks keeps, for items with an undelivered done / snooze action, the
/// stored value of that mark (the user's newer intent, shown since the action).
fn keep_pending_marks(
    ut: &UserTx<'_>,
    user: &str,
    map: &mut BTreeMap<ItemKey, Marks>,
) -> Result<(), StoreError> {
    let pending: Vec<(String, String)> = {
        let mut st = ut.shared().conn.prepare_cached(
            "SELECT DISTINCT item_key, kind FROM outbox WHERE user_id = ?1
               AND state IN ('queued', 'inflight') AND kind IN ('done', 'snooze')",
        )?;
        st.query_map(params![user], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    for (key, kind) in pending {
        let Ok(key) = ItemKey::parse(&key) else {
            continue;
        };
        let stored = marks_row(ut, user, &key)?;
        let m = map.entry(key).or_default();
        if kind == "done" {
            m.done_at = stored.done_at;
        } else {
            m.snoozed_until = stored.snoozed_until;
        }
    }
    map.retain(|_, m| *m != Marks::default());
    Ok(())
}

/// What a commit changed.
#[derive(Debug, Default)]
pub struct Committed {
    /// Items whose row may have changed.
    pub keys: Vec<ItemKey>,
    /// Threads followed (elsewhere) that the store does not hold yet: read them over REST.
    pub missing_threads: Vec<String>,
    /// The user's saved searches changed.
    pub searches: bool,
}

/// Apply `batch` for `user` atomically: in one transaction shared with the batches other
/// users' tasks commit at the same moment ([`Store::write_grouped`], one savepoint each).
///
/// # Errors
/// SQLite failure (the whole batch is rolled back).
pub fn commit(store: &Store, user: &UserId, batch: Batch) -> Result<Committed, StoreError> {
    let user = user.clone();
    store.write_grouped(move |tx| {
        let u = user.as_str();
        let ut = &tx.user(&user);
        let mut out = Committed {
            keys: batch.keys.clone(),
            ..Committed::default()
        };
        let touch = |k: Option<ItemKey>, out: &mut Committed| {
            if let Some(k) = k
                && !out.keys.contains(&k)
            {
                out.keys.push(k);
            }
        };
        let local = batch.local;
        for w in batch.writes {
            if !local && yields_to_pending_action(ut, u, &w)? {
                continue;
            }
            match w {
                Write::SelfProfile(p) => ut.upsert_self(&p, super::engine::now_ms())?,
                Write::Profiles(ps) => ut.shared().upsert_profiles(&ps)?,
                Write::Teams(ts) => {
                    for t in &ts {
                        ut.shared().upsert_team(t)?;
                    }
                    let ids: Vec<&str> = ts.iter().filter(|t| t.delete_at == 0).map(|t| t.team_id.as_str()).collect();
                    ut.set_teams(&ids)?;
                }
                Write::Channels(cs) => {
                    for c in &cs {
                        ut.shared().upsert_channel(c)?;
                    }
                }
                Write::Memberships { rows, replace_all } => {
                    for m in &rows {
                        ut.upsert_membership(m)?;
                    }
                    if replace_all {
                        let keep: HashSet<&str> = rows.iter().map(|m| m.channel_id.as_str()).collect();
                        let tx = ut.shared();
                        let mut st = tx.conn.prepare_cached("SELECT channel_id FROM memberships WHERE user_id = ?1")?;
                        let have: Vec<String> = st.query_map(params![u], |r| r.get(0))?.collect::<Result<_, _>>()?;
                        for c in have.iter().filter(|c| !keep.contains(c.as_str())) {
                            ut.remove_membership(c)?;
                            touch(ItemKey::channel(c), &mut out);
                        }
                    }
                }
                Write::MembershipScope { team_id, include_direct, keep } => {
                    let keep: HashSet<&str> = keep.iter().map(String::as_str).collect();
                    let tx = ut.shared();
                    let mut st = tx.conn.prepare_cached(
                        "SELECT m.channel_id FROM memberships m JOIN channels c ON c.channel_id = m.channel_id
                         WHERE m.user_id = ?1 AND (c.team_id = ?2 OR (?3 AND c.team_id = ''))",
                    )?;
                    let have: Vec<String> = st.query_map(params![u, team_id, include_direct], |r| r.get(0))?.collect::<Result<_, _>>()?;
                    for c in have.iter().filter(|c| !keep.contains(c.as_str())) {
                        ut.remove_membership(c)?;
                        touch(ItemKey::channel(c), &mut out);
                    }
                }
                Write::RemoveMembership { channel_id } => ut.remove_membership(&channel_id)?,
                Write::Threads(ts) => {
                    for t in &ts {
                        ut.upsert_thread(t)?;
                    }
                }
                Write::UnfollowMissing { listed, since } => {
                    ut.unfollow_missing(&listed, since)?;
                }
                Write::ThreadRead {
                    root_id,
                    last_viewed_at,
                    unread_replies,
                    unread_mentions,
                } => {
                    // Counts from the event when it has them; otherwise a read up to the last
                    // reply clears them and an earlier read point keeps the stored ones.
                    if let Some(t) = thread_row(ut, u, &root_id)? {
                        let read_all = last_viewed_at >= t.last_reply_at;
                        let keep = |v: i64| if read_all { 0 } else { v };
                        ut.set_thread_read(
                            &root_id,
                            last_viewed_at,
                            unread_replies.unwrap_or_else(|| keep(t.unread_replies)),
                            unread_mentions.unwrap_or_else(|| keep(t.unread_mentions)),
                        )?;
                    }
                }
                Write::MarkedUnread { key, post_id } => marked_unread(ut, u, &key, &post_id)?,
                Write::ThreadsAllRead { team_id, at } => {
                    let tx = ut.shared();
                    let mut st = tx.conn.prepare_cached(
                        "SELECT root_id FROM threads WHERE user_id = ?1 AND following = 1 AND (team_id = ?2 OR team_id = '')",
                    )?;
                    let roots: Vec<String> = st.query_map(params![u, team_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
                    for root in roots {
                        if let Some(mut t) = thread_row(ut, u, &root)? {
                            t.last_viewed_at = t.last_viewed_at.max(at);
                            t.unread_replies = 0;
                            t.unread_mentions = 0;
                            ut.upsert_thread(&t)?;
                            touch(ItemKey::thread(&root), &mut out);
                        }
                    }
                }
                Write::Follow {
                    root_id,
                    following,
                } => {
                    // Unknown thread followed elsewhere: the engine reads it over REST.
                    if !ut.set_thread_following(&root_id, following)? && following {
                        out.missing_threads.push(root_id);
                    }
                }
                Write::Posts(ps) => {
                    for p in &ps {
                        ut.shared().upsert_post(p)?;
                    }
                }
                Write::ChannelPostAdded { post, mentions_me, from_me } => {
                    let known = post_row(ut, &post.post_id)?.is_some();
                    ut.shared().upsert_post(&post)?;
                    if !known {
                        // First sight of this post id: move the channel totals by one. Keyed by
                        // post id, so a replayed event changes nothing.
                        if let Some(mut c) = channel_row(ut, &post.channel_id)? {
                            c.total_msg_count += 1;
                            if post.root_id.is_empty() {
                                c.total_msg_count_root += 1;
                            }
                            c.last_post_at = c.last_post_at.max(post.create_at);
                            if post.root_id.is_empty() {
                                c.last_root_post_at = c.last_root_post_at.max(post.create_at);
                            }
                            ut.shared().upsert_channel(&c)?;
                            if let Some(mut m) = membership_row(ut, u, &post.channel_id)? {
                                let direct = c.channel_type == "D" || c.channel_type == "G";
                                if from_me && (post.root_id.is_empty() || direct) {
                                    // Posting views the channel for the author (not for a CRT
                                    // reply in a team channel).
                                    m.msg_count = c.total_msg_count;
                                    m.msg_count_root = c.total_msg_count_root;
                                    m.mention_count = 0;
                                    m.mention_count_root = 0;
                                    m.urgent_mention_count = 0;
                                    m.last_viewed_at = m.last_viewed_at.max(post.create_at);
                                } else if mentions_me {
                                    m.mention_count += 1;
                                    if post.root_id.is_empty() {
                                        m.mention_count_root += 1;
                                    }
                                }
                                m.last_update_at = m.last_update_at.max(post.create_at);
                                ut.upsert_membership(&m)?;
                            }
                        }
                    }
                }
                Write::PostDeleted { post_id, root_id, at } => {
                    if let Some(mut p) = post_row(ut, &post_id)? {
                        p.delete_at = at;
                        p.update_at = p.update_at.max(at);
                        ut.shared().upsert_post(&p)?;
                    }
                    if root_id.is_empty()
                        && let Some(mut t) = thread_row(ut, u, &post_id)?
                    {
                        t.delete_at = at;
                        ut.upsert_thread(&t)?;
                    }
                }
                Write::Reaction { reaction, added } => {
                    // Reactions change no item; edit the cached post's list by value, so a
                    // replayed event changes nothing.
                    if let Some(p) = post_row(ut, &reaction.post_id)? {
                        let mut list: Vec<mattermost::models::Reaction> =
                            serde_json::from_str(p.reactions.expose()).unwrap_or_default();
                        list.retain(|r| {
                            !(r.user_id == reaction.user_id && r.emoji_name == reaction.emoji_name)
                        });
                        if added {
                            list.push(reaction.clone());
                        }
                        let json = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
                        let at = p.update_at.max(reaction.update_at).max(reaction.create_at);
                        ut.shared()
                            .set_post_reactions(&reaction.post_id, &store::JsonText::new(json), at)?;
                        let root = if p.root_id.is_empty() {
                            &p.post_id
                        } else {
                            &p.root_id
                        };
                        touch(ItemKey::thread(root), &mut out);
                    }
                }
                Write::Mentions(ms) => {
                    for m in &ms {
                        ut.add_mention(m)?;
                        touch(ItemKey::thread(&m.post_id), &mut out);
                    }
                }
                Write::Marks { marks, replace_all } => {
                    if replace_all {
                        let mut map: BTreeMap<ItemKey, Marks> = marks.into_iter().collect();
                        if !local {
                            keep_pending_marks(ut, u, &mut map)?;
                        }
                        ut.replace_marks(&map)?;
                    } else {
                        for (k, m) in &marks {
                            ut.set_marks(k, *m)?;
                        }
                    }
                }
                Write::MarkSet { key, kind, at } => {
                    let mut m = marks_row(ut, u, &key)?;
                    match kind {
                        MarkKind::Done => m.done_at = at,
                        MarkKind::Snooze => m.snoozed_until = at,
                    }
                    ut.set_marks(&key, m)?;
                }
                Write::ChannelViewed { channel_id, at } => {
                    ut.mark_channel_viewed(&channel_id, at)?;
                }
                Write::MemberReadCounts {
                    channel_id,
                    msg_count,
                    msg_count_root,
                    mention_count,
                    mention_count_root,
                    urgent_mention_count,
                    last_viewed_at,
                } => {
                    if let Some(mut m) = membership_row(ut, u, &channel_id)? {
                        m.msg_count = msg_count;
                        m.msg_count_root = msg_count_root;
                        m.mention_count = mention_count;
                        m.mention_count_root = mention_count_root;
                        m.urgent_mention_count = urgent_mention_count;
                        m.last_viewed_at = last_viewed_at;
                        m.last_update_at = m.last_update_at.max(super::engine::now_ms());
                        ut.upsert_membership(&m)?;
                    }
                }
                // Saved posts are not cached by the store yet (nothing in the queue uses them).
                Write::Flagged { post_id, saved } => {
                    ut.set_saved(&post_id, saved)?;
                    // The item whose root it is shows it (a thread item's key is its root).
                    touch(ItemKey::thread(&post_id), &mut out);
                }
                Write::SavedPosts { post_ids, replace_all } => {
                    ut.replace_saved(&post_ids, replace_all)?;
                }
                Write::SavedSearch { name, search } => {
                    out.searches |= ut.set_saved_search(&name, search.as_ref())?;
                }
                Write::SavedSearches(searches) => {
                    out.searches |= ut.replace_saved_searches(&searches)?;
                }
                Write::WsPosition {
                    connection_id,
                    next_seq,
                } => ut.set_ws_state(&connection_id, next_seq)?,
                Write::SyncedAt { at } => ut.set_last_full_sync(at)?,
            }
        }
        Ok(out)
    })
}

/// Per-team `teams/unread` counters as the store sees them: the same sums Mattermost makes
/// (unread = channel total − messages read, over the user's team channels; mention counts of
/// the memberships; followed threads with a reply after the last view, and their unread
/// mentions). DM/GM channels and threads have no team and are left out (their changes are
/// found through `last_post_at`, see `planner::directs_changed`).
///
/// Only the *difference* between two calls is used (see `planner::advance_counters`): it is
/// how far the live events applied to the store moved each team's counters, so where this
/// model differs from the server by a constant (muted channels, a thread the store never saw)
/// the difference cancels out.
///
/// # Errors
/// SQLite failure.
pub fn store_team_counters(
    store: &Store,
    user: &UserId,
) -> Result<Vec<super::planner::TeamCounters>, StoreError> {
    let us = store.for_user(user);
    let mut by_team: BTreeMap<String, super::planner::TeamCounters> = BTreeMap::new();
    // channel id → team id ("" for DM/GM), for the thread loop below.
    let mut team_of: HashMap<String, String> = HashMap::new();
    // One query for the channels (not one read per membership).
    let channels: HashMap<String, crate::store::Channel> = us
        .member_channels()?
        .into_iter()
        .map(|c| (c.channel_id.clone(), c))
        .collect();
    for m in us.memberships()? {
        let Some(c) = channels.get(&m.channel_id) else {
            continue;
        };
        team_of.insert(c.channel_id.clone(), c.team_id.clone());
        if c.team_id.is_empty() || c.delete_at != 0 {
            continue;
        }
        let t = by_team
            .entry(c.team_id.clone())
            .or_insert_with(|| super::planner::TeamCounters {
                team_id: c.team_id.clone(),
                ..super::planner::TeamCounters::default()
            });
        t.msg_count += (c.total_msg_count - m.msg_count).max(0);
        t.msg_count_root += (c.total_msg_count_root - m.msg_count_root).max(0);
        t.mention_count += m.mention_count;
        t.mention_count_root += m.mention_count_root;
    }
    for th in us.threads()? {
        if !th.following || th.delete_at != 0 {
            continue;
        }
        let team = match team_of.get(&th.channel_id) {
            Some(team) => team.clone(),
            None => us
                .channel(&th.channel_id)?
                .map(|c| c.team_id)
                .unwrap_or_default(),
        };
        if team.is_empty() {
            continue;
        }
        let t = by_team
            .entry(team.clone())
            .or_insert_with(|| super::planner::TeamCounters {
                team_id: team,
                ..super::planner::TeamCounters::default()
            });
        if th.last_reply_at > th.last_viewed_at {
            t.thread_count += 1;
        }
        t.thread_mention_count += th.unread_mentions;
        if th.is_urgent {
            t.thread_urgent_mention_count += th.unread_mentions;
        }
    }
    Ok(by_team.into_values().collect())
}

/// Team id and type letter of the channels an event names (only channels the user belongs to).
///
/// # Errors
/// SQLite failure.
pub fn channel_info(
    store: &Store,
    user: &UserId,
    ids: &[String],
) -> Result<HashMap<String, (String, String)>, StoreError> {
    let us = store.for_user(user);
    let mut out = HashMap::new();
    for id in ids {
        if let Some(c) = us.channel(id)? {
            out.insert(id.clone(), (c.team_id, c.channel_type));
        }
    }
    Ok(out)
}

/// Channel ids an event refers to.
#[must_use]
pub fn channels_in_event(ev: &mattermost::ws::WsEvent) -> Vec<String> {
    use mattermost::ws::Event;
    let mut ids = Vec::new();
    if !ev.broadcast.channel_id.is_empty() {
        ids.push(ev.broadcast.channel_id.clone());
    }
    match &ev.event {
        Event::Posted(p) => ids.push(p.post.channel_id.clone()),
        Event::PostEdited(c) | Event::PostDeleted(c) => ids.push(c.post.channel_id.clone()),
        Event::ThreadUpdated(t) => {
            if let Some(p) = &t.thread.post {
                ids.push(p.channel_id.clone());
            }
        }
        Event::MultipleChannelsViewed { channel_times } => {
            ids.extend(channel_times.keys().cloned())
        }
        _ => {}
    }
    ids.sort();
    ids.dedup();
    ids
}

/// Of `ids`, those without a cached profile.
///
/// # Errors
/// SQLite failure.
pub fn unknown_profiles(
    store: &Store,
    user: &UserId,
    ids: &[String],
) -> Result<Vec<String>, StoreError> {
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let known: HashSet<String> = store
        .for_user(user)
        .profiles(&refs)?
        .into_iter()
        .map(|p| p.user_id)
        .collect();
    Ok(ids
        .iter()
        .filter(|i| !known.contains(*i))
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::Millis;

    const ME: &str = "meeeeeeeeeeeeeeeeeeeeeeeee";
    const OTHER: &str = "ooooooooooooooooooooooooooo";
    const DM: &str = "dddddddddddddddddddddddddd";
    const P1: &str = "p1p1p1p1p1p1p1p1p1p1p1p1p1";

    fn setup() -> (tempfile::TempDir, Store, UserId) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let user = UserId::parse(ME).unwrap();
        let mut b = Batch::default();
        b.push(Write::SelfProfile(store::Profile {
            user_id: ME.into(),
            username: "me".into(),
            ..store::Profile::default()
        }));
        b.push(Write::Channels(vec![store::Channel {
            channel_id: DM.into(),
            channel_type: "D".into(),
            name: format!("{ME}__{}", &OTHER[..26]),
            total_msg_count: 3,
            total_msg_count_root: 3,
            last_post_at: 100,
            update_at: 1,
            ..store::Channel::default()
        }]));
        b.push(Write::Memberships {
            rows: vec![store::Membership {
                channel_id: DM.into(),
                msg_count: 3,
                msg_count_root: 3,
                last_viewed_at: 100,
                last_update_at: 100,
                ..store::Membership::default()
            }],
            replace_all: true,
        });
        commit(&store, &user, b).unwrap();
        (dir, store, user)
    }

    fn dm_post(at: Millis) -> store::Post {
        store::Post {
            post_id: P1.into(),
            channel_id: DM.into(),
            user_id: OTHER[..26].into(),
            create_at: at,
            update_at: at,
            message: store::MessageText::new("hi"),
            props: store::JsonText::new("{}"),
            file_ids: store::JsonText::new("[]"),
            reactions: store::JsonText::new("[]"),
            metadata: store::JsonText::new("{}"),
            ..store::Post::default()
        }
    }

    /// Replaying `posted` (and a reaction) changes nothing the second time: state, not
    /// increments (T-10 in miniature).
    #[test]
    fn replayed_events_are_idempotent() {
        let (_dir, store, user) = setup();
        let events = || {
            let mut b = Batch::default();
            b.push(Write::ChannelPostAdded {
                post: dm_post(200),
                mentions_me: true,
                from_me: false,
            });
            b.push(Write::Reaction {
                reaction: mattermost::models::Reaction {
                    user_id: OTHER[..26].into(),
                    post_id: P1.into(),
                    emoji_name: "tada".into(),
                    create_at: 210,
                    update_at: 210,
                    ..mattermost::models::Reaction::default()
                },
                added: true,
            });
            b
        };
        commit(&store, &user, events()).unwrap();
        let once = store.for_user(&user).export().unwrap();
        commit(&store, &user, events()).unwrap();
        let twice = store.for_user(&user).export().unwrap();
        let ch = store.for_user(&user).channel(DM).unwrap().unwrap();
        assert_eq!(ch.total_msg_count, 4);
        assert_eq!(once.memberships, twice.memberships);
        assert_eq!(twice.memberships[0].mention_count, 1);
        assert_eq!(format!("{:?}", once.items), format!("{:?}", twice.items));
        let p = store.for_user(&user).post(P1).unwrap().unwrap();
        assert_eq!(p.reactions.expose().matches("tada").count(), 1);
        let key = ItemKey::channel(DM).unwrap();
        let item = store.for_user(&user).item(&key, 5).unwrap().unwrap();
        assert_eq!(item.row.counts.unread, 1);
        // Viewing elsewhere clears it; an older view arriving late does not undo that.
        let mut b = Batch::default();
        b.push(Write::ChannelViewed {
            channel_id: DM.into(),
            at: 300,
        });
        b.push(Write::ChannelViewed {
            channel_id: DM.into(),
            at: 250,
        });
        commit(&store, &user, b).unwrap();
        let item = store.for_user(&user).item(&key, 5).unwrap().unwrap();
        assert_eq!(item.row.counts.unread, 0);
        assert_eq!(
            store.for_user(&user).memberships().unwrap()[0].last_viewed_at,
            300
        );
    }

    fn enqueue(store: &Store, user: &UserId, action: &crate::sync::Action) -> i64 {
        let key = action_key(action);
        store
            .for_user(user)
            .outbox_enqueue(
                &crate::store::NewOutbox {
                    kind: action_kind(action).into(),
                    item_key: key,
                    payload: crate::store::JsonText::new(serde_json::to_string(action).unwrap()),
                    pending_post_id: String::new(),
                    marker: String::new(),
                    coalesce: true,
                },
                1,
            )
            .unwrap()
    }

    fn action_key(a: &crate::sync::Action) -> ItemKey {
        use crate::sync::Action as A;
        match a {
            A::Snooze { key, .. } | A::MarkUnread { key, .. } => key.clone(),
            _ => unreachable!("not used here"),
        }
    }

    fn action_kind(a: &crate::sync::Action) -> &'static str {
        use crate::sync::Action as A;
        match a {
            A::Snooze { .. } => "snooze",
            A::MarkUnread { .. } => "read",
            _ => unreachable!("not used here"),
        }
    }

    /// What Mattermost says against an action of the user not delivered yet is older than
    /// that action and yields: the echo of a first snooze arriving after a second one (the
    /// first duration showed for a moment), and a full read of the marks meanwhile. What
    /// agrees with it applies. Once the action is delivered, Mattermost's word counts again.
    #[test]
    fn remote_marks_yield_to_an_undelivered_action_of_the_user() {
        let (_dir, store, user) = setup();
        let key = ItemKey::channel(DM).unwrap();
        let us = store.for_user(&user);
        let snooze = |at: i64, local: bool| {
            let mut b = Batch {
                local,
                ..Batch::default()
            };
            b.push(Write::MarkSet {
                key: key.clone(),
                kind: MarkKind::Snooze,
                at: Some(at),
            });
            commit(&store, &user, b).unwrap();
        };
        let snoozed = || store.for_user(&user).marks().unwrap()[&key].snoozed_until;
        let id = enqueue(
            &store,
            &user,
            &crate::sync::Action::Snooze {
                key: key.clone(),
                until: 2_000,
            },
        );
        snooze(2_000, true); // the user's second snooze, shown at once
        snooze(1_000, false); // the echo of the first
        assert_eq!(snoozed(), Some(2_000));
        // A full read of the marks (a resync) keeps it too, and takes the rest.
        let mut b = Batch::default();
        b.push(Write::Marks {
            marks: vec![(
                key.clone(),
                Marks {
                    done_at: Some(7),
                    snoozed_until: Some(1_000),
                },
            )],
            replace_all: true,
        });
        commit(&store, &user, b).unwrap();
        let m = store.for_user(&user).marks().unwrap()[&key];
        assert_eq!((m.done_at, m.snoozed_until), (Some(7), Some(2_000)));
        // In flight: still the user's.
        assert_eq!(
            us.outbox_claim_next(i64::MAX / 4).unwrap().map(|r| r.id),
            Some(id)
        );
        snooze(1_500, false);
        assert_eq!(snoozed(), Some(2_000));
        // Delivered: Mattermost's word counts again.
        us.outbox_mark_sent(id, None).unwrap();
        snooze(3_000, false);
        assert_eq!(snoozed(), Some(3_000));
    }

    /// Read state: while a mark unread is undelivered, a view of the DM from before it is
    /// skipped, but the action's own `post_unread` echo applies (the server's exact counts).
    #[test]
    fn a_stale_view_yields_to_an_undelivered_mark_unread_but_its_echo_applies() {
        let (_dir, store, user) = setup();
        enqueue(
            &store,
            &user,
            &crate::sync::Action::MarkUnread {
                key: ItemKey::channel(DM).unwrap(),
                post_id: P1.into(),
            },
        );
        let member = || store.for_user(&user).memberships().unwrap()[0].clone();
        let mut b = Batch::default();
        b.push(Write::MemberReadCounts {
            channel_id: DM.into(),
            msg_count: 1,
            msg_count_root: 1,
            mention_count: 2,
            mention_count_root: 2,
            urgent_mention_count: 0,
            last_viewed_at: 90,
        });
        commit(&store, &user, b).unwrap();
        assert_eq!((member().msg_count, member().mention_count), (1, 2));
        let mut b = Batch::default();
        b.push(Write::ChannelViewed {
            channel_id: DM.into(),
            at: 95,
        });
        commit(&store, &user, b).unwrap();
        assert_eq!(
            (member().msg_count, member().last_viewed_at),
            (1, 90),
            "the view from before the action was skipped"
        );
    }

    /// A mark set on another device, then cleared; the full replace at sync drops stale marks.
    #[test]
    fn marks_set_clear_and_replace() {
        let (_dir, store, user) = setup();
        let key = ItemKey::channel(DM).unwrap();
        let mut b = Batch::default();
        b.push(Write::MarkSet {
            key: key.clone(),
            kind: MarkKind::Done,
            at: Some(500),
        });
        b.push(Write::MarkSet {
            key: key.clone(),
            kind: MarkKind::Snooze,
            at: Some(900),
        });
        commit(&store, &user, b).unwrap();
        let m = store.for_user(&user).marks().unwrap()[&key];
        assert_eq!((m.done_at, m.snoozed_until), (Some(500), Some(900)));
        let mut b = Batch::default();
        b.push(Write::MarkSet {
            key: key.clone(),
            kind: MarkKind::Done,
            at: None,
        });
        commit(&store, &user, b).unwrap();
        let m = store.for_user(&user).marks().unwrap()[&key];
        assert_eq!((m.done_at, m.snoozed_until), (None, Some(900)));
        let mut b = Batch::default();
        b.push(Write::Marks {
            marks: Vec::new(),
            replace_all: true,
        });
        commit(&store, &user, b).unwrap();
        assert!(store.for_user(&user).marks().unwrap().is_empty());
    }
}
