//! Collapsed Reply Threads: thread memberships, lists and read state (research §5).

use std::collections::HashMap;

use serde_json::json;

use super::{ChannelType, State, ThreadMemberRec, obj, string_json};
use crate::error::{ApiResult, AppError};
use crate::model::{self, Id};
use crate::state::posts::PostView;

/// Parameters of `GET /users/{u}/teams/{t}/threads` (research §5.3).
#[derive(Clone, Debug, Default)]
pub struct ThreadListQuery {
    pub since: Option<i64>,
    pub unread: bool,
    pub extended: bool,
    pub deleted: bool,
    pub per_page: usize,
    pub before: Option<Id>,
    pub after: Option<Id>,
    pub totals_only: bool,
    pub threads_only: bool,
    pub exclude_direct: bool,
}

/// Totals of a thread list.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadTotals {
    pub total: i64,
    pub unread_threads: i64,
    pub unread_mentions: i64,
    pub unread_urgent_mentions: i64,
}

fn thread_not_found() -> AppError {
    AppError::not_found(
        "app.user.get_threads_for_user.not_found",
        "Thread not found or not followed.",
    )
}

impl State {
    /// Reply bookkeeping (research §5.1): who follows now, and each existing follower's
    /// unread counters before this reply (for `previous_unread_*`).
    pub(crate) fn on_reply(
        &mut self,
        root: u32,
        reply: u32,
        mentions: &[Id],
        at: i64,
    ) -> (Vec<Id>, HashMap<Id, (i64, i64)>) {
        let (replier, channel, root_author) = {
            let r = &self.posts[reply as usize];
            (r.user_id, r.channel_id, self.posts[root as usize].user_id)
        };
        let is_dm = self
            .channels
            .get(&channel)
            .is_some_and(|c| c.kind == ChannelType::Direct);
        let members = self
            .channel_members
            .get(&channel)
            .cloned()
            .unwrap_or_default();
        let mut candidates = vec![replier, root_author];
        candidates.extend_from_slice(mentions);
        if !is_dm {
            candidates.extend(self.post_mentions(root));
            candidates.extend(members.iter().copied().filter(|u| {
                self.notify_prop(channel, *u, "channel_auto_follow_threads")
                    .as_deref()
                    == Some("on")
            }));
        }
        let mut previous = HashMap::new();
        for u in &members {
            if let Some(tm) = self.thread_members.get(&(*u, root))
                && tm.following
            {
                let before = self.unread_replies_before(root, tm.last_view_at, reply);
                previous.insert(*u, (tm.unread_mentions, before));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for u in candidates {
            if !seen.insert(u) || !members.contains(&u) {
                continue;
            }
            let mentioned = mentions.contains(&u);
            let existing = self.thread_members.get(&(u, root)).map(|m| m.following);
            if existing == Some(false) && !mentioned {
                continue; // explicitly unfollowed
            }
            if existing.is_none() {
                self.user_threads.entry(u).or_default().push(root);
            }
            let tm = self.thread_members.entry((u, root)).or_default();
            tm.following = true;
            tm.last_update_at = at;
            if u == replier {
                tm.last_view_at = at;
                tm.unread_mentions = 0;
            }
        }
        for m in mentions {
            if let Some(tm) = self.thread_members.get_mut(&(*m, root))
                && *m != replier
            {
                tm.unread_mentions += 1;
                tm.last_update_at = at;
            }
        }
        let followers = members
            .into_iter()
            .filter(|u| {
                self.thread_members
                    .get(&(*u, root))
                    .is_some_and(|m| m.following)
            })
            .collect();
        (followers, previous)
    }

    fn unread_replies_before(&self, root: u32, last_view_at: i64, exclude: u32) -> i64 {
        self.threads.get(&root).map_or(0, |t| {
            t.replies
                .iter()
                .filter(|&&r| r != exclude)
                .filter(|&&r| {
                    let p = &self.posts[r as usize];
                    p.delete_at == 0 && p.create_at > last_view_at
                })
                .count() as i64
        })
    }

    /// `thread_updated` to every follower (research §6.5).
    pub(crate) fn emit_thread_updates(
        &mut self,
        root: u32,
        followers: &[Id],
        previous: &HashMap<Id, (i64, i64)>,
    ) {
        let team_id = self.thread_team(root);
        for &u in followers {
            let Some(thread) = self.thread_json(u, root, true, true) else {
                continue;
            };
            let (prev_mentions, prev_replies) = previous.get(&u).copied().unwrap_or((0, 0));
            let data = obj([
                ("thread", string_json(&thread)),
                ("previous_unread_mentions", json!(prev_mentions)),
                ("previous_unread_replies", json!(prev_replies)),
            ]);
            self.emit_user("thread_updated", u, &team_id, "", data);
        }
    }

    /// The team id of a thread's channel ("" for DM/GM).
    fn thread_team(&self, root: u32) -> String {
        let channel = self.posts[root as usize].channel_id;
        self.channels
            .get(&channel)
            .and_then(|c| c.team_id)
            .map(String::from)
            .unwrap_or_default()
    }

    /// `ThreadResponse` for `user` (research §5.2): needs a membership; `None` without one.
    #[must_use]
    pub fn thread_json(
        &self,
        user: Id,
        root: u32,
        extended: bool,
        include_deleted: bool,
    ) -> Option<model::ThreadResponse> {
        let tm = self.thread_members.get(&(user, root))?;
        let thread = self.threads.get(&root);
        let p = &self.posts[root as usize];
        let unread_replies = thread.map_or(0, |t| {
            t.replies
                .iter()
                .filter(|&&r| {
                    let rp = &self.posts[r as usize];
                    (include_deleted || rp.delete_at == 0) && rp.create_at > tm.last_view_at
                })
                .count() as i64
        });
        let mut post = self.post_json(root, PostView::default());
        post.participants = None;
        Some(model::ThreadResponse {
            id: p.id,
            reply_count: thread.map_or(0, |t| t.reply_count),
            last_reply_at: thread.map_or(0, |t| t.last_reply_at),
            last_viewed_at: tm.last_view_at,
            participants: thread
                .map(|t| t.participants.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|u| self.participant(*u, extended))
                .collect(),
            post: Some(post),
            unread_replies,
            unread_mentions: tm.unread_mentions,
            is_urgent: self.is_urgent(root),
            delete_at: p.delete_at,
        })
    }

    /// Followed threads of `user` in `team` (+ DM/GM threads unless `exclude_direct`), with a
    /// thread record (at least one reply ever), live roots unless `deleted`.
    fn followed_threads(
        &self,
        user: Id,
        team: Option<Id>,
        exclude_direct: bool,
        deleted: bool,
    ) -> Vec<(u32, &ThreadMemberRec)> {
        self.user_threads
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|&root| {
                let tm = self.thread_members.get(&(user, root))?;
                let t = self.threads.get(&root)?;
                let p = &self.posts[root as usize];
                let ch = self.channels.get(&p.channel_id)?;
                let in_scope = match ch.team_id {
                    None => !exclude_direct,
                    Some(t) => team.is_none_or(|team| team == t),
                };
                (tm.following && !t.replies.is_empty() && in_scope && (deleted || p.delete_at == 0))
                    .then_some((root, tm))
            })
            .collect()
    }

    /// Totals over the same scope as the list (research §5.3).
    #[must_use]
    pub fn thread_totals(
        &self,
        user: Id,
        team: Option<Id>,
        exclude_direct: bool,
        deleted: bool,
    ) -> ThreadTotals {
        let mut totals = ThreadTotals::default();
        for (root, tm) in self.followed_threads(user, team, exclude_direct, deleted) {
            totals.total += 1;
            let last_reply = self.threads.get(&root).map_or(0, |t| t.last_reply_at);
            if last_reply > tm.last_view_at {
                totals.unread_threads += 1;
            }
            totals.unread_mentions += tm.unread_mentions;
            if self.is_urgent(root) {
                totals.unread_urgent_mentions += tm.unread_mentions;
            }
        }
        totals
    }

    /// Thread counters per real team in one pass; DM/GM threads count for no team (research
    /// §5.3, `include_collapsed_threads`).
    #[must_use]
    pub fn thread_totals_by_team(&self, user: Id) -> HashMap<Id, ThreadTotals> {
        let mut out: HashMap<Id, ThreadTotals> = HashMap::new();
        for (root, tm) in self.followed_threads(user, None, true, false) {
            let channel = self.posts[root as usize].channel_id;
            let Some(team) = self.channels.get(&channel).and_then(|c| c.team_id) else {
                continue;
            };
            let totals = out.entry(team).or_default();
            totals.total += 1;
            let last_reply = self.threads.get(&root).map_or(0, |t| t.last_reply_at);
            if last_reply > tm.last_view_at {
                totals.unread_threads += 1;
            }
            totals.unread_mentions += tm.unread_mentions;
            if self.is_urgent(root) {
                totals.unread_urgent_mentions += tm.unread_mentions;
            }
        }
        out
    }

    /// `GET /users/{u}/teams/{t}/threads` (research §5.3, traps 11-13).
    pub fn thread_list(
        &self,
        user: Id,
        team: Id,
        q: &ThreadListQuery,
    ) -> ApiResult<model::Threads> {
        if !self.is_team_member(team, user) {
            return Err(AppError::permissions());
        }
        let totals = if q.threads_only {
            ThreadTotals::default()
        } else {
            self.thread_totals(user, Some(team), q.exclude_direct, q.deleted)
        };
        let threads = if q.totals_only {
            None
        } else {
            Some(self.thread_page(user, team, q))
        };
        Ok(model::Threads {
            total: if q.unread {
                totals.unread_threads
            } else {
                totals.total
            },
            total_unread_threads: totals.unread_threads,
            total_unread_mentions: totals.unread_mentions,
            total_unread_urgent_mentions: totals.unread_urgent_mentions,
            threads,
        })
    }

    fn thread_page(&self, user: Id, team: Id, q: &ThreadListQuery) -> Vec<model::ThreadResponse> {
        let last_reply = |root: u32| self.threads.get(&root).map_or(0, |t| t.last_reply_at);
        let cursor = |id: Option<Id>| {
            id.and_then(|id| self.post_index.get(&id))
                .map(|&root| last_reply(root))
        };
        let (before, after) = (cursor(q.before), cursor(q.after));
        let mut list: Vec<(u32, i64)> = self
            .followed_threads(user, Some(team), q.exclude_direct, q.deleted)
            .into_iter()
            .filter(|(root, tm)| {
                let lr = last_reply(*root);
                q.since.is_none_or(|s| tm.last_update_at >= s || lr >= s)
                    && (!q.unread || lr > tm.last_view_at)
                    && before.is_none_or(|b| lr < b)
                    && after.is_none_or(|a| lr > a)
            })
            .map(|(root, _)| (root, last_reply(root)))
            .collect();
        if q.after.is_some() {
            list.sort_by_key(|&(root, lr)| (lr, self.posts[root as usize].id));
        } else {
            list.sort_by_key(|&(root, lr)| std::cmp::Reverse((lr, self.posts[root as usize].id)));
        }
        list.into_iter()
            .take(q.per_page)
            .filter_map(|(root, _)| self.thread_json(user, root, q.extended, q.deleted))
            .collect()
    }

    /// The root index of a thread id, validated.
    fn thread_root(&self, id: Id) -> ApiResult<u32> {
        let idx = self
            .post_index
            .get(&id)
            .copied()
            .ok_or_else(thread_not_found)?;
        if self.posts[idx as usize].root.is_some() {
            return Err(thread_not_found());
        }
        Ok(idx)
    }

    /// `GET /users/{u}/teams/{t}/threads/{id}` (research §5.3).
    pub fn get_thread(&self, user: Id, id: Id, extended: bool) -> ApiResult<model::ThreadResponse> {
        let root = self.thread_root(id)?;
        self.readable_channel(self.posts[root as usize].channel_id, user)?;
        let tm = self.thread_members.get(&(user, root)).ok_or_else(|| {
            AppError::not_found(
                "app.user.get_thread_membership_for_user.not_found",
                "Thread membership not found.",
            )
        })?;
        let has_replies = self
            .threads
            .get(&root)
            .is_some_and(|t| !t.replies.is_empty());
        if !tm.following || !has_replies {
            return Err(thread_not_found());
        }
        self.thread_json(user, root, extended, false)
            .ok_or_else(thread_not_found)
    }

    /// Mentions of `user` in the thread's replies created after `ts`.
    fn mentions_after(&self, user: Id, root: u32, ts: i64) -> i64 {
        self.threads.get(&root).map_or(0, |t| {
            t.replies
                .iter()
                .filter(|&&r| {
                    let p = &self.posts[r as usize];
                    p.delete_at == 0 && p.create_at > ts && p.user_id != user
                })
                .filter(|&&r| self.post_mentions(r).contains(&user))
                .count() as i64
        })
    }

    /// Set a membership's `last_view_at`, recomputing `unread_mentions` and adjusting the channel
    /// member's mention counter; returns the previous `(unread_mentions, unread_replies)`.
    pub(crate) fn set_thread_view(&mut self, user: Id, root: u32, ts: i64) -> (i64, i64) {
        let mentions = self.mentions_after(user, root, ts);
        let now = self.now();
        let prev_replies = self.thread_members.get(&(user, root)).map_or(0, |tm| {
            self.unread_replies_before(root, tm.last_view_at, u32::MAX)
        });
        let channel = self.posts[root as usize].channel_id;
        let Some(tm) = self.thread_members.get_mut(&(user, root)) else {
            return (0, 0);
        };
        let prev_mentions = tm.unread_mentions;
        tm.last_view_at = ts;
        tm.unread_mentions = mentions;
        tm.last_update_at = now;
        if let Some(m) = self.members.get_mut(&(channel, user)) {
            m.mention_count = (m.mention_count - prev_mentions + mentions).max(0);
        }
        (prev_mentions, prev_replies)
    }

    /// `PUT /users/{u}/teams/{t}/threads/{id}/read/{ts}` → `thread_read_changed` with counts.
    pub fn read_thread(
        &mut self,
        user: Id,
        team_in_url: Id,
        id: Id,
        ts: i64,
    ) -> ApiResult<model::ThreadResponse> {
        let root = self.thread_root(id)?;
        self.readable_channel(self.posts[root as usize].channel_id, user)?;
        if !self.thread_members.contains_key(&(user, root)) {
            return Err(AppError::not_found(
                "app.user.get_thread_membership_for_user.not_found",
                "Thread membership not found.",
            ));
        }
        let previous = self.set_thread_view(user, root, ts);
        self.emit_thread_read(user, team_in_url, root, ts, previous);
        self.get_thread(user, id, false)
    }

    fn emit_thread_read(&mut self, user: Id, team: Id, root: u32, ts: i64, previous: (i64, i64)) {
        let Some(t) = self.thread_json(user, root, false, false) else {
            return;
        };
        let data = obj([
            ("thread_id", json!(t.id.as_str())),
            ("timestamp", json!(ts)),
            ("unread_mentions", json!(t.unread_mentions)),
            ("unread_replies", json!(t.unread_replies)),
            ("previous_unread_mentions", json!(previous.0)),
            ("previous_unread_replies", json!(previous.1)),
            (
                "channel_id",
                json!(self.posts[root as usize].channel_id.as_str()),
            ),
        ]);
        self.emit_user("thread_read_changed", user, team.as_str(), "", data);
    }

    /// `POST …/threads/{id}/set_unread/{post_id}`: follow, then `last_view_at` =
    /// post.create_at − 1 (research §5.3).
    pub fn set_thread_unread(
        &mut self,
        user: Id,
        team_in_url: Id,
        id: Id,
        post: Id,
    ) -> ApiResult<model::ThreadResponse> {
        let root = self.thread_root(id)?;
        self.readable_channel(self.posts[root as usize].channel_id, user)?;
        let pidx = self
            .post_index
            .get(&post)
            .copied()
            .filter(|&p| self.root_of(p) == root);
        let Some(pidx) = pidx else {
            return Err(AppError::new(
                400,
                "app.user.update_thread_read_for_user_by_post.app_error",
                "Unable to update the thread read state for the given post.",
            ));
        };
        self.ensure_following(user, root);
        let ts = self.posts[pidx as usize].create_at - 1;
        let previous = self.set_thread_view(user, root, ts);
        self.emit_thread_read(user, team_in_url, root, ts, previous);
        self.get_thread(user, id, false)
    }

    fn ensure_following(&mut self, user: Id, root: u32) {
        let now = self.now();
        if !self.thread_members.contains_key(&(user, root)) {
            self.user_threads.entry(user).or_default().push(root);
        }
        let tm = self.thread_members.entry((user, root)).or_default();
        tm.following = true;
        tm.last_update_at = now;
    }

    /// `PUT/DELETE …/threads/{id}/following` → `thread_follow_changed`. Following marks the
    /// thread read (research §5.1); works on roots without replies.
    pub fn set_following(
        &mut self,
        user: Id,
        team_in_url: Id,
        id: Id,
        follow: bool,
    ) -> ApiResult<()> {
        let root = self.thread_root(id)?;
        self.readable_channel(self.posts[root as usize].channel_id, user)?;
        if follow {
            self.ensure_following(user, root);
            let now = self.now();
            self.set_thread_view(user, root, now);
        } else if let Some(tm) = self.thread_members.get_mut(&(user, root)) {
            tm.following = false;
        } else {
            // An explicit unfollow is remembered so auto-follow does not come back.
            self.user_threads.entry(user).or_default().push(root);
            self.thread_members
                .insert((user, root), ThreadMemberRec::default());
        }
        let reply_count = self.threads.get(&root).map_or(0, |t| t.reply_count);
        let data = obj([
            ("thread_id", json!(id.as_str())),
            ("state", json!(follow)),
            ("reply_count", json!(reply_count)),
        ]);
        self.emit_user(
            "thread_follow_changed",
            user,
            team_in_url.as_str(),
            "",
            data,
        );
        Ok(())
    }

    /// `PUT /users/{u}/teams/{t}/threads/read`: every followed thread of the team and all DM/GM
    /// threads read now; `thread_read_changed` without data (trap 14).
    pub fn read_all_threads(&mut self, user: Id, team: Id) -> ApiResult<()> {
        if !self.is_team_member(team, user) {
            return Err(AppError::permissions());
        }
        let now = self.now();
        let roots: Vec<u32> = self
            .followed_threads(user, Some(team), false, true)
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        for root in roots {
            self.set_thread_view(user, root, now);
        }
        self.emit_user(
            "thread_read_changed",
            user,
            team.as_str(),
            "",
            serde_json::Map::new(),
        );
        Ok(())
    }
}
