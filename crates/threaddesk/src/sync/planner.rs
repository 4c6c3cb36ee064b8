//! The pure sync planner: which Mattermost reads a sync needs, decided without any I/O.
//!
//! The executor in [`super::engine`] performs the [`Op`]s this module returns; keeping the
//! decision pure makes "how many calls does a sync cost" a table- and property-tested fact
//! (atuin's `record/sync` does the same: `plan(local, remote) -> Vec<Op>`).
//!
//! Two moments need a plan:
//! - [`plan_initial`]: after the fixed reads (me, teams, team unreads, channels, members) the
//!   planner chooses the per-team thread lists and the DM/GM channels whose posts are worth a call.
//! - [`plan_resync`]: after a reconnect that lost events, one `GET /users/me/teams/unread` call is
//!   compared with the counters we expect (those of the last sync advanced by the live events
//!   applied since, [`advance_counters`]); only the teams whose counters moved get a `since`
//!   query, so the cost is proportional to what changed (research §B5), never to the org.

use std::collections::BTreeMap;

/// Milliseconds since the Unix epoch (Mattermost's time unit).
pub type Millis = i64;

/// Page size of every list call: the server clamps `per_page` at 200 (research finding 5).
pub const PER_PAGE: usize = 200;

/// Skew subtracted from every `since` cursor: Mattermost's `since` is strict (`update_at > since`)
/// and clocks of a cluster differ by a little; re-reading a few seconds is idempotent and cheap.
pub const SINCE_SKEW_MS: Millis = 5_000;

/// Per-team counters of `GET /users/me/teams/unread?include_collapsed_threads=true`.
///
/// `msg_count` counts every unread post (roots and replies, `total_msg_count − msg_count` over the
/// team's channels), so almost any activity in a team moves it; the `thread_*` fields move when a
/// followed thread becomes unread or gains a mention.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TeamCounters {
    pub team_id: String,
    pub msg_count: i64,
    pub mention_count: i64,
    pub msg_count_root: i64,
    pub mention_count_root: i64,
    pub thread_count: i64,
    pub thread_mention_count: i64,
    pub thread_urgent_mention_count: i64,
}

impl TeamCounters {
    /// True when nothing the inbox depends on differs (the team id is not compared).
    #[must_use]
    pub fn same_counts(&self, other: &Self) -> bool {
        self.msg_count == other.msg_count
            && self.mention_count == other.mention_count
            && self.msg_count_root == other.msg_count_root
            && self.mention_count_root == other.mention_count_root
            && self.thread_count == other.thread_count
            && self.thread_mention_count == other.thread_mention_count
            && self.thread_urgent_mention_count == other.thread_urgent_mention_count
    }
}

/// What the planner needs to know of a DM/GM channel (from `GET /users/me/channels` and the
/// user's membership).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DirectChannel {
    pub channel_id: String,
    /// `Channel.last_post_at`: the newest post (root or reply) in the channel.
    pub last_post_at: Millis,
}

/// One read the executor must perform.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// `GET /users/me/teams/{team_id}/threads?per_page=200&since=…&extended=false`
    /// (+ `excludeDirect=true` unless this team's list is the one that carries DM/GM threads),
    /// paged with `before=<last id>` while a page comes back full.
    Threads {
        team_id: String,
        since: Millis,
        exclude_direct: bool,
    },
    /// `GET /channels/{channel_id}/posts?since=…`: a DM/GM channel's posts in the window (all
    /// posts, roots and replies — a DM item shows its newest messages).
    ChannelPostsSince { channel_id: String, since: Millis },
}

/// Plan the variable part of an initial sync.
///
/// - `team_ids`: the user's teams. Every team's followed threads since `now − retention` are
///   listed; DM/GM threads appear in **every** team's list (trap 12), so only the first team (in
///   id order, so the choice is stable across syncs) lists them, all others pass
///   `excludeDirect=true`.
/// - `directs`: DM/GM channels; only those with a post inside the window are read.
#[must_use]
pub fn plan_initial(
    team_ids: &[String],
    directs: &[DirectChannel],
    now: Millis,
    retention_ms: Millis,
) -> Vec<Op> {
    let since = now.saturating_sub(retention_ms);
    let mut teams: Vec<&String> = team_ids.iter().collect();
    teams.sort();
    teams.dedup();
    let mut ops: Vec<Op> = teams
        .iter()
        .enumerate()
        .map(|(i, team_id)| Op::Threads {
            team_id: (*team_id).clone(),
            since,
            exclude_direct: i > 0,
        })
        .collect();
    let mut active: Vec<&DirectChannel> =
        directs.iter().filter(|c| c.last_post_at >= since).collect();
    // Newest conversations first: if the executor is interrupted, the most relevant are there.
    active.sort_by(|a, b| {
        b.last_post_at
            .cmp(&a.last_post_at)
            .then_with(|| a.channel_id.cmp(&b.channel_id))
    });
    active.dedup_by(|a, b| a.channel_id == b.channel_id);
    ops.extend(active.into_iter().map(|c| Op::ChannelPostsSince {
        channel_id: c.channel_id.clone(),
        since,
    }));
    ops
}

/// Cursors the resync starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResyncCursors {
    /// When this user's store was last known complete (end of the last sync or last event).
    pub last_synced_at: Millis,
    /// Oldest time the cache keeps (`now − retention`); a `since` is never older than this.
    pub window_start: Millis,
}

impl ResyncCursors {
    /// The `since` of every read of this resync.
    #[must_use]
    pub fn since_for_mentions(&self) -> Millis {
        self.since()
    }

    fn since(&self) -> Millis {
        self.last_synced_at
            .saturating_sub(SINCE_SKEW_MS)
            .max(self.window_start)
    }
}

/// Plan an incremental resync after events were lost.
///
/// `prev` are the counters expected now (the last sync's, advanced by the events applied
/// since: [`advance_counters`]), `new` the answer of the one `teams/unread` call made now. A
/// team is re-read when its counters changed or it is new; a team that disappeared needs no
/// read (the executor drops it from the store). The DM/GM-carrying list is the first team in id
/// order, as in [`plan_initial`]: if that team changed, its query runs without `excludeDirect`.
/// DM/GM changes are found through `directs_changed` (channels whose `last_post_at` moved,
/// computed by the caller from the first team's channel list): each gets one posts read.
///
/// A moved DM/GM does **not** by itself add a thread list: its posts since the cursor (roots and
/// replies) say whether any DM/GM thread moved, and only then does [`plan_direct_threads`] add
/// the DM-carrying list — a plain DM (the common case) costs its posts read alone.
#[must_use]
pub fn plan_resync(
    prev: &[TeamCounters],
    new: &[TeamCounters],
    directs_changed: &[DirectChannel],
    cursors: &ResyncCursors,
) -> Vec<Op> {
    let since = cursors.since();
    let prev_by_team: BTreeMap<&str, &TeamCounters> =
        prev.iter().map(|t| (t.team_id.as_str(), t)).collect();
    let mut new_sorted: Vec<&TeamCounters> = new.iter().collect();
    new_sorted.sort_by(|a, b| a.team_id.cmp(&b.team_id));
    new_sorted.dedup_by(|a, b| a.team_id == b.team_id);
    let first_team = new_sorted.first().map(|t| t.team_id.as_str());

    let mut ops = Vec::new();
    for team in &new_sorted {
        let changed = prev_by_team
            .get(team.team_id.as_str())
            .is_none_or(|p| !p.same_counts(team));
        if changed {
            let carries_direct = first_team == Some(team.team_id.as_str());
            ops.push(Op::Threads {
                team_id: team.team_id.clone(),
                since,
                exclude_direct: !carries_direct,
            });
        }
    }
    let mut chans: Vec<&DirectChannel> = directs_changed.iter().collect();
    chans.sort_by(|a, b| a.channel_id.cmp(&b.channel_id));
    chans.dedup_by(|a, b| a.channel_id == b.channel_id);
    ops.extend(chans.into_iter().map(|c| Op::ChannelPostsSince {
        channel_id: c.channel_id.clone(),
        since,
    }));
    ops
}

/// At most this many posts come back from one `GET /channels/{id}/posts?since=` (the server's
/// cap, research trap 17; the OpenAPI: "limited till 1000"). A list this long may be missing
/// posts, so nothing can be concluded from what it does not contain.
pub const POSTS_SINCE_MAX: usize = 1000;

/// What a resync's posts read of one moved DM/GM showed (input of [`plan_direct_threads`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectPostsSeen {
    /// Posts in the answer's `order` (the posts modified since the cursor).
    pub posts: usize,
    /// Whether any of them (or a root sent along) is a thread reply (`root_id` not empty).
    pub has_reply: bool,
}

/// The DM/GM thread list a resync still needs after reading the moved DM/GMs' posts, if any.
///
/// DM/GM threads (team id `""`) appear only in a team's thread list without `excludeDirect`
/// (research trap 12), the first team's in id order. Their activity can only come from a new
/// reply, which is itself a post of the DM/GM in the `since` window and moves the channel's
/// `last_post_at` — so the posts already read say whether a DM/GM thread got a reply: a reply
/// among them (or an answer at the server's cap, which may hide one). Their read state can
/// also change on another device, which moves no counter, no channel and no membership, only
/// the thread membership's `last_update_at` (the list's `since` filter shows it): that matters
/// only while the store shows such a thread unread (`unread_stored`). Either → the first
/// team's list, unless `ops` already list it; otherwise nothing. A plain DM costs no list.
///
/// `first_team` is the first of the user's teams in id order (`None`: no team, so no list
/// exists that could carry DM/GM threads).
#[must_use]
pub fn plan_direct_threads(
    ops: &[Op],
    seen: &[DirectPostsSeen],
    unread_stored: bool,
    first_team: Option<&str>,
    cursors: &ResyncCursors,
) -> Option<Op> {
    let listed = ops.iter().any(|op| {
        matches!(
            op,
            Op::Threads {
                exclude_direct: false,
                ..
            }
        )
    });
    let moved = unread_stored
        || seen
            .iter()
            .any(|s| s.has_reply || s.posts >= POSTS_SINCE_MAX);
    match (listed, moved, first_team) {
        (false, true, Some(team)) => Some(Op::Threads {
            team_id: team.to_owned(),
            since: cursors.since(),
            exclude_direct: false,
        }),
        _ => None,
    }
}

/// The counters the server should show now if nothing but the live events we applied had
/// happened since `memo` was read: `memo + (store_now − store_then)`, team by team.
///
/// Why: [`plan_resync`] must re-read a team only when its counters changed *while events were
/// lost*. Comparing with the counters of the last sync also flags every team that had live
/// activity since (already applied), so over a long session almost every active team was
/// re-read. A fresh `teams/unread` snapshot taken while connected cannot fix this exactly: an
/// event generated before the snapshot but still in flight when the socket drops would be in
/// the snapshot and never in the store, and the change would be missed. Advancing the memo by
/// what the *store* changed has no such race — the store moves only by events actually
/// applied — so a team differs exactly when something happened that the store has not seen,
/// or that the store models differently from the server (a post in a muted channel: the store
/// cannot tell, so that team is re-read — the safe side). A change could only be missed if a
/// lost change exactly cancelled such a modelling difference in every counter of the team.
///
/// `store_then` are the store-derived counters taken when `memo` was read, `store_now` the same
/// derivation now (a team missing from either side counts as zeros). Teams are those of `memo`.
#[must_use]
pub fn advance_counters(
    memo: &[TeamCounters],
    store_then: &[TeamCounters],
    store_now: &[TeamCounters],
) -> Vec<TeamCounters> {
    let then: BTreeMap<&str, &TeamCounters> =
        store_then.iter().map(|t| (t.team_id.as_str(), t)).collect();
    let now: BTreeMap<&str, &TeamCounters> =
        store_now.iter().map(|t| (t.team_id.as_str(), t)).collect();
    let zero = TeamCounters::default();
    memo.iter()
        .map(|m| {
            let a = then.get(m.team_id.as_str()).copied().unwrap_or(&zero);
            let b = now.get(m.team_id.as_str()).copied().unwrap_or(&zero);
            TeamCounters {
                team_id: m.team_id.clone(),
                msg_count: m.msg_count + (b.msg_count - a.msg_count),
                mention_count: m.mention_count + (b.mention_count - a.mention_count),
                msg_count_root: m.msg_count_root + (b.msg_count_root - a.msg_count_root),
                mention_count_root: m.mention_count_root
                    + (b.mention_count_root - a.mention_count_root),
                thread_count: m.thread_count + (b.thread_count - a.thread_count),
                thread_mention_count: m.thread_mention_count
                    + (b.thread_mention_count - a.thread_mention_count),
                thread_urgent_mention_count: m.thread_urgent_mention_count
                    + (b.thread_urgent_mention_count - a.thread_urgent_mention_count),
            }
        })
        .collect()
}

/// Whether a changed team's channel memberships (read state, membership set) must be re-read
/// at a resync (`GET /users/me/teams/{t}/channels/members`, one call).
///
/// Under collapsed threads a reply moves only the non-root counters (`msg_count`,
/// `mention_count`) **upwards**, and the team's thread list read at the same resync already
/// carries every thread's read state, so replies alone need no membership read. Membership
/// read state matters for root posts (mention items) and for leaving channels: a new or
/// read root post moves the root counters; a view or a removal from a channel with unread
/// posts makes a counter go **down**. A new team (`prev` absent) is always read.
#[must_use]
pub fn needs_members(prev: Option<&TeamCounters>, now: &TeamCounters) -> bool {
    prev.is_none_or(|p| {
        p.msg_count_root != now.msg_count_root
            || p.mention_count_root != now.mention_count_root
            || now.msg_count < p.msg_count
            || now.mention_count < p.mention_count
    })
}

/// DM/GM channels whose newest post moved since the last sync (input of [`plan_resync`]).
#[must_use]
pub fn directs_changed(prev: &[DirectChannel], now: &[DirectChannel]) -> Vec<DirectChannel> {
    let prev_by_id: BTreeMap<&str, Millis> = prev
        .iter()
        .map(|c| (c.channel_id.as_str(), c.last_post_at))
        .collect();
    now.iter()
        .filter(|c| {
            prev_by_id
                .get(c.channel_id.as_str())
                .is_none_or(|p| *p != c.last_post_at)
        })
        .cloned()
        .collect()
}

/// Number of `per_page` pages needed for `n` rows (a list call returning a full page needs one
/// more call to learn it was the last; the executor avoids it when `total` says so).
#[must_use]
pub fn pages_for(n: usize) -> usize {
    n.div_ceil(PER_PAGE).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: Millis = 86_400_000;

    fn tc(team: &str, msg: i64, threads: i64) -> TeamCounters {
        TeamCounters {
            team_id: team.into(),
            msg_count: msg,
            thread_count: threads,
            ..TeamCounters::default()
        }
    }

    fn dc(id: &str, at: Millis) -> DirectChannel {
        DirectChannel {
            channel_id: id.into(),
            last_post_at: at,
        }
    }

    #[test]
    fn members_are_reread_only_for_root_activity_views_or_new_teams() {
        let base = TeamCounters {
            team_id: "t".into(),
            msg_count: 5,
            mention_count: 2,
            msg_count_root: 1,
            ..TeamCounters::default()
        };
        assert!(needs_members(None, &base));
        assert!(!needs_members(Some(&base), &base));
        // Replies only (non-root counters up, thread counters up): the thread list suffices.
        let replies = TeamCounters {
            msg_count: 9,
            mention_count: 3,
            thread_count: 4,
            ..base.clone()
        };
        assert!(!needs_members(Some(&base), &replies));
        // A new root post, a view elsewhere, a removal from an unread channel.
        let root = TeamCounters {
            msg_count_root: 2,
            ..base.clone()
        };
        assert!(needs_members(Some(&base), &root));
        let viewed = TeamCounters {
            msg_count: 0,
            ..base.clone()
        };
        assert!(needs_members(Some(&base), &viewed));
    }

    #[test]
    fn initial_lists_dm_threads_once_and_only_active_directs() {
        let now = 100 * DAY;
        let ops = plan_initial(
            &["t2".into(), "t1".into(), "t3".into()],
            &[
                dc("d_old", now - 20 * DAY),
                dc("d_new", now - DAY),
                dc("d_mid", now - 3 * DAY),
            ],
            now,
            14 * DAY,
        );
        let since = now - 14 * DAY;
        assert_eq!(
            ops,
            vec![
                Op::Threads {
                    team_id: "t1".into(),
                    since,
                    exclude_direct: false
                },
                Op::Threads {
                    team_id: "t2".into(),
                    since,
                    exclude_direct: true
                },
                Op::Threads {
                    team_id: "t3".into(),
                    since,
                    exclude_direct: true
                },
                Op::ChannelPostsSince {
                    channel_id: "d_new".into(),
                    since
                },
                Op::ChannelPostsSince {
                    channel_id: "d_mid".into(),
                    since
                },
            ]
        );
    }

    #[test]
    fn initial_window_edge_is_inclusive() {
        let now = 30 * DAY;
        let ops = plan_initial(
            &[],
            &[dc("edge", now - 7 * DAY), dc("out", now - 7 * DAY - 1)],
            now,
            7 * DAY,
        );
        assert_eq!(
            ops,
            vec![Op::ChannelPostsSince {
                channel_id: "edge".into(),
                since: now - 7 * DAY
            }]
        );
    }

    #[test]
    fn resync_table() {
        let cursors = ResyncCursors {
            last_synced_at: 50_000,
            window_start: 0,
        };
        let since = 45_000;
        struct Case {
            name: &'static str,
            prev: Vec<TeamCounters>,
            new: Vec<TeamCounters>,
            directs: Vec<DirectChannel>,
            want: Vec<Op>,
        }
        let cases = vec![
            Case {
                name: "nothing changed",
                prev: vec![tc("a", 1, 1), tc("b", 0, 0)],
                new: vec![tc("b", 0, 0), tc("a", 1, 1)],
                directs: vec![],
                want: vec![],
            },
            Case {
                name: "one non-first team changed",
                prev: vec![tc("a", 1, 1), tc("b", 0, 0)],
                new: vec![tc("a", 1, 1), tc("b", 3, 0)],
                directs: vec![],
                want: vec![Op::Threads {
                    team_id: "b".into(),
                    since,
                    exclude_direct: true,
                }],
            },
            Case {
                name: "first team changed carries DMs",
                prev: vec![tc("a", 1, 1), tc("b", 0, 0)],
                new: vec![tc("a", 1, 2), tc("b", 0, 0)],
                directs: vec![],
                want: vec![Op::Threads {
                    team_id: "a".into(),
                    since,
                    exclude_direct: false,
                }],
            },
            Case {
                name: "new team is read, removed team is not",
                prev: vec![tc("a", 0, 0), tc("gone", 5, 5)],
                new: vec![tc("a", 0, 0), tc("z", 0, 0)],
                directs: vec![],
                want: vec![Op::Threads {
                    team_id: "z".into(),
                    since,
                    exclude_direct: true,
                }],
            },
            Case {
                // P-12: a DM moved no team counter; its posts are read, no thread list (a
                // reply among them adds one: `plan_direct_threads`).
                name: "dm changed alone: its posts only",
                prev: vec![tc("a", 0, 0), tc("b", 0, 0)],
                new: vec![tc("a", 0, 0), tc("b", 0, 0)],
                directs: vec![dc("dm1", 60_000)],
                want: vec![Op::ChannelPostsSince {
                    channel_id: "dm1".into(),
                    since,
                }],
            },
            Case {
                name: "two dms changed, listed twice: one read each, in id order",
                prev: vec![tc("a", 0, 0)],
                new: vec![tc("a", 0, 0)],
                directs: vec![dc("dm2", 60_000), dc("dm1", 61_000), dc("dm2", 60_000)],
                want: vec![
                    Op::ChannelPostsSince {
                        channel_id: "dm1".into(),
                        since,
                    },
                    Op::ChannelPostsSince {
                        channel_id: "dm2".into(),
                        since,
                    },
                ],
            },
            Case {
                name: "dm changed and first team changed: one list",
                prev: vec![tc("a", 0, 0)],
                new: vec![tc("a", 2, 0)],
                directs: vec![dc("dm1", 60_000)],
                want: vec![
                    Op::Threads {
                        team_id: "a".into(),
                        since,
                        exclude_direct: false,
                    },
                    Op::ChannelPostsSince {
                        channel_id: "dm1".into(),
                        since,
                    },
                ],
            },
        ];
        for c in cases {
            assert_eq!(
                plan_resync(&c.prev, &c.new, &c.directs, &cursors),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn direct_threads_listed_only_when_a_dm_reply_was_seen() {
        let cursors = ResyncCursors {
            last_synced_at: 50_000,
            window_start: 0,
        };
        let posts_only = vec![Op::ChannelPostsSince {
            channel_id: "dm1".into(),
            since: 45_000,
        }];
        let plain = DirectPostsSeen {
            posts: 1,
            has_reply: false,
        };
        let reply = DirectPostsSeen {
            posts: 2,
            has_reply: true,
        };
        let capped = DirectPostsSeen {
            posts: POSTS_SINCE_MAX,
            has_reply: false,
        };
        let want = Some(Op::Threads {
            team_id: "a".into(),
            since: 45_000,
            exclude_direct: false,
        });
        // A plain DM: no thread list (P-12).
        assert_eq!(
            plan_direct_threads(&posts_only, &[plain], false, Some("a"), &cursors),
            None
        );
        assert_eq!(
            plan_direct_threads(&[], &[], false, Some("a"), &cursors),
            None
        );
        // A DM/GM thread the store shows unread may have been read elsewhere: listed even
        // when no DM/GM moved.
        assert_eq!(
            plan_direct_threads(&[], &[], true, Some("a"), &cursors),
            want
        );
        assert_eq!(
            plan_direct_threads(&posts_only, &[plain], true, Some("a"), &cursors),
            want
        );
        // A reply in a DM/GM thread, or an answer at the server's cap (it may hide one).
        assert_eq!(
            plan_direct_threads(&posts_only, &[plain, reply], false, Some("a"), &cursors),
            want
        );
        assert_eq!(
            plan_direct_threads(&posts_only, &[capped], false, Some("a"), &cursors),
            want
        );
        // Already listed by the first team's own re-read: not twice.
        let mut with_list = posts_only.clone();
        with_list.push(Op::Threads {
            team_id: "a".into(),
            since: 45_000,
            exclude_direct: false,
        });
        assert_eq!(
            plan_direct_threads(&with_list, &[reply], true, Some("a"), &cursors),
            None
        );
        // A non-first team's list excludes DM/GM threads: it does not count.
        let other = vec![Op::Threads {
            team_id: "b".into(),
            since: 45_000,
            exclude_direct: true,
        }];
        assert_eq!(
            plan_direct_threads(&other, &[reply], false, Some("a"), &cursors),
            want
        );
        // No team: no list can carry DM/GM threads.
        assert_eq!(
            plan_direct_threads(&[], &[reply], true, None, &cursors),
            None
        );
    }

    #[test]
    fn resync_since_never_before_window() {
        let cursors = ResyncCursors {
            last_synced_at: 1_000,
            window_start: 900,
        };
        let ops = plan_resync(&[], &[tc("a", 0, 0)], &[], &cursors);
        assert_eq!(
            ops,
            vec![Op::Threads {
                team_id: "a".into(),
                since: 900,
                exclude_direct: false
            }]
        );
    }

    #[test]
    fn advance_counters_follows_the_store() {
        let memo = vec![tc("a", 3, 1), tc("b", 0, 0), tc("c", 7, 2)];
        let then = vec![tc("a", 2, 1), tc("b", 0, 0)];
        // Live events: two unread posts and a new unread thread in "a", one in "b" (which the
        // store did not know before), nothing in "c".
        let now = vec![tc("a", 4, 2), tc("b", 1, 0), tc("x", 9, 9)];
        let got = advance_counters(&memo, &then, &now);
        assert_eq!(got, vec![tc("a", 5, 2), tc("b", 1, 0), tc("c", 7, 2)]);
        let cursors = ResyncCursors::default();
        // The server shows exactly what the events said: nothing to read.
        assert!(plan_resync(&got, &got, &[], &cursors).is_empty());
        // The server shows one more post in "c" (lost while away): only "c" is read.
        let server = vec![tc("a", 5, 2), tc("b", 1, 0), tc("c", 8, 2)];
        let ops = plan_resync(&got, &server, &[], &cursors);
        assert_eq!(ops.len(), 1);
        assert!(matches!(&ops[0], Op::Threads { team_id, .. } if team_id == "c"));
    }

    #[test]
    fn directs_changed_detects_moves_and_new() {
        let prev = vec![dc("a", 1), dc("b", 2)];
        let now = vec![dc("a", 1), dc("b", 3), dc("c", 1)];
        let got: Vec<String> = directs_changed(&prev, &now)
            .into_iter()
            .map(|c| c.channel_id)
            .collect();
        assert_eq!(got, vec!["b".to_string(), "c".to_string()]);
    }

    #[test]
    fn pages() {
        assert_eq!(pages_for(0), 1);
        assert_eq!(pages_for(200), 1);
        assert_eq!(pages_for(201), 2);
        assert_eq!(pages_for(10_000), 50);
    }

    fn counters() -> impl Strategy<Value = Vec<TeamCounters>> {
        proptest::collection::btree_map(0u8..60, (0i64..5, 0i64..5, 0i64..3), 0..50).prop_map(|m| {
            m.into_iter()
                .map(|(t, (msg, men, thr))| TeamCounters {
                    team_id: format!("team{t:02}"),
                    msg_count: msg,
                    mention_count: men,
                    thread_count: thr,
                    ..TeamCounters::default()
                })
                .collect()
        })
    }

    proptest! {
        /// Cost is proportional to what changed: exactly one thread query per changed or new team,
        /// none when nothing changed, at most one list without excludeDirect, never before the window.
        #[test]
        fn resync_is_proportional_to_change(prev in counters(), new in counters(), last in 0i64..1_000_000, win in 0i64..1_000_000) {
            let cursors = ResyncCursors { last_synced_at: last, window_start: win };
            let ops = plan_resync(&prev, &new, &[], &cursors);
            // No DM/GM moved (or none showed a reply): no extra list.
            prop_assert!(plan_direct_threads(&ops, &[], false, new.iter().map(|t| t.team_id.as_str()).min(), &cursors).is_none());
            let changed: Vec<&TeamCounters> = new.iter().filter(|t| !prev.iter().any(|p| p.team_id == t.team_id && p.same_counts(t))).collect();
            prop_assert_eq!(ops.len(), changed.len());
            let mut direct_lists = 0;
            for op in &ops {
                match op {
                    Op::Threads { team_id, since, exclude_direct } => {
                        prop_assert!(changed.iter().any(|t| &t.team_id == team_id));
                        prop_assert!(*since >= win);
                        if !exclude_direct { direct_lists += 1; }
                    }
                    Op::ChannelPostsSince { .. } => prop_assert!(false, "no directs given"),
                }
            }
            prop_assert!(direct_lists <= 1);
            // Same input twice: no op (idempotent planning).
            prop_assert!(plan_resync(&new, &new, &[], &cursors).is_empty());
        }

        /// DM/GMs that moved while no team counter did: one posts read per distinct DM/GM and
        /// no thread list; a reply among their posts, or an unread DM/GM thread in the store,
        /// adds exactly the first team's DM-carrying list.
        #[test]
        fn moved_directs_cost_one_read_each(same in counters(), dms in proptest::collection::vec(0u8..30, 0..20), reply in any::<bool>(), unread in any::<bool>()) {
            let cursors = ResyncCursors { last_synced_at: 10_000, window_start: 0 };
            let directs: Vec<DirectChannel> = dms.iter().map(|d| dc(&format!("dm{d:02}"), 20_000)).collect();
            let ops = plan_resync(&same, &same, &directs, &cursors);
            let mut distinct = dms.clone();
            distinct.sort_unstable();
            distinct.dedup();
            prop_assert_eq!(ops.len(), distinct.len());
            let posts_only = ops.iter().all(|o| matches!(o, Op::ChannelPostsSince { .. }));
            prop_assert!(posts_only, "only posts reads");
            let seen: Vec<DirectPostsSeen> = distinct.iter().map(|_| DirectPostsSeen { posts: 1, has_reply: reply }).collect();
            let first = same.iter().map(|t| t.team_id.as_str()).min();
            let extra = plan_direct_threads(&ops, &seen, unread, first, &cursors);
            let want_list = ((reply && !distinct.is_empty()) || unread) && first.is_some();
            prop_assert_eq!(extra.is_some(), want_list);
            if let Some(Op::Threads { team_id, exclude_direct, .. }) = &extra {
                prop_assert_eq!(Some(team_id.as_str()), first);
                prop_assert!(!exclude_direct);
            }
        }

        /// Initial sync: one thread list per distinct team, exactly one carrying DM/GM threads.
        #[test]
        fn initial_one_list_per_team(teams in proptest::collection::vec(0u8..80, 0..60), now in 20i64 * DAY..40 * DAY) {
            let ids: Vec<String> = teams.iter().map(|t| format!("t{t}")).collect();
            let ops = plan_initial(&ids, &[], now, 14 * DAY);
            let mut distinct = ids.clone();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(ops.len(), distinct.len());
            let with_direct = ops.iter().filter(|o| matches!(o, Op::Threads { exclude_direct: false, .. })).count();
            prop_assert_eq!(with_direct, usize::from(!distinct.is_empty()));
        }
    }
}
