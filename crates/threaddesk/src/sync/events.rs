//! WebSocket event → [`Batch`] (pure). Each event becomes one batch, committed in one
//! transaction. Events that need data the event does not carry (a channel we were just added
//! to) return a [`FollowUp`] the engine performs with REST.
//!
//! Rules (research §6.5, traps 22–34): apply by absolute values; never rely on
//! `channel_viewed` (it is never sent); thread events' `broadcast.team_id` is the REST team,
//! not the thread's — the thread's team comes from its channel.

use mattermost::models as mm;
use mattermost::ws::{Event, WsEvent};

use super::batch::{Batch, Write};
use super::convert;
use crate::inbox::{self, ItemKey, MarkKind, Millis};
use crate::store;

/// What the event handlers need to know beyond the event.
pub struct EventCtx<'a> {
    pub user_id: &'a str,
    pub username: &'a str,
    pub now: Millis,
    /// Team id and type letter of a channel known to the store.
    pub channel: &'a dyn Fn(&str) -> Option<(String, String)>,
}

impl EventCtx<'_> {
    fn team_of(&self, channel_id: &str) -> Option<String> {
        (self.channel)(channel_id).map(|(t, _)| t)
    }

    fn is_direct(&self, channel_id: &str, type_hint: &str) -> bool {
        let ty = if type_hint.is_empty() {
            (self.channel)(channel_id)
                .map(|(_, t)| t)
                .unwrap_or_default()
        } else {
            type_hint.to_owned()
        };
        ty == "D" || ty == "G"
    }
}

/// REST work an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// Read a channel and our membership (we were added to it, or a DM/GM was created).
    FetchChannel { channel_id: String },
}

/// The item a post belongs to, if any: DM/GM posts → the channel item; thread posts → the
/// thread item.
fn post_key(ctx: &EventCtx<'_>, p: &mm::Post, type_hint: &str) -> Option<ItemKey> {
    if ctx.is_direct(&p.channel_id, type_hint) && p.root_id.is_empty() {
        ItemKey::channel(&p.channel_id)
    } else {
        ItemKey::thread(p.thread_id())
    }
}

/// Translate one event.
#[must_use]
pub fn batch_for(ctx: &EventCtx<'_>, ev: &WsEvent) -> (Batch, Vec<FollowUp>) {
    let mut b = Batch::default();
    let mut follow = Vec::new();
    match &ev.event {
        Event::Posted(p) => {
            let post = &p.post;
            let mentions_me = p.mentions.iter().any(|id| id == ctx.user_id);
            let from_me = post.user_id == ctx.user_id;
            b.push(Write::ChannelPostAdded {
                post: convert::post(post),
                mentions_me,
                from_me,
            });
            let direct = ctx.is_direct(&post.channel_id, &p.channel_type);
            // A root in a team channel that mentions us: an item before any reply exists.
            if post.is_root()
                && !direct
                && (mentions_me || convert::mentions_user(post, ctx.username))
                && !from_me
            {
                b.push(Write::Mentions(vec![store::Mention {
                    post_id: post.id.clone(),
                    channel_id: post.channel_id.clone(),
                    team_id: if p.team_id.is_empty() {
                        ctx.team_of(&post.channel_id).unwrap_or_default()
                    } else {
                        p.team_id.clone()
                    },
                    create_at: post.create_at,
                }]));
            }
            if direct {
                b.touch(ItemKey::channel(&post.channel_id));
            }
            b.touch(post_key(ctx, post, &p.channel_type));
            if (ctx.channel)(&post.channel_id).is_none() {
                // A channel we do not know yet (a new DM/GM): read it.
                follow.push(FollowUp::FetchChannel {
                    channel_id: post.channel_id.clone(),
                });
            }
        }
        Event::PostEdited(c) => {
            b.push(Write::Posts(vec![convert::post(&c.post)]));
            b.touch(post_key(ctx, &c.post, ""));
        }
        Event::PostDeleted(c) => {
            // The event carries the post as it was before deletion (trap 33).
            b.push(Write::PostDeleted {
                post_id: c.post.id.clone(),
                root_id: c.post.root_id.clone(),
                at: ctx.now.max(c.post.update_at),
            });
            b.touch(post_key(ctx, &c.post, ""));
        }
        Event::ReactionAdded(r) | Event::ReactionRemoved(r) => {
            let added = matches!(ev.event, Event::ReactionAdded(_));
            b.push(Write::Reaction {
                reaction: r.clone(),
                added,
            });
        }
        Event::MultipleChannelsViewed { channel_times } => {
            let mut times: Vec<(&String, &i64)> = channel_times.iter().collect();
            times.sort();
            for (channel_id, at) in times {
                b.push(Write::ChannelViewed {
                    channel_id: channel_id.clone(),
                    at: *at,
                });
                if ctx.is_direct(channel_id, "") {
                    b.touch(ItemKey::channel(channel_id));
                }
            }
        }
        Event::ThreadUpdated(t) => {
            let th = &t.thread;
            let team = |c: &str| ctx.team_of(c);
            if let Some(row) = convert::thread(th, true, team) {
                b.push(Write::Threads(vec![row]));
            }
            if let Some(root) = &th.post {
                b.push(Write::Posts(vec![convert::post(root)]));
            }
            b.touch(ItemKey::thread(&th.id));
        }
        Event::ThreadReadChanged(r) => match (&r.thread_id, r.timestamp) {
            (Some(id), ts) => {
                b.push(Write::ThreadRead {
                    root_id: id.clone(),
                    last_viewed_at: ts.unwrap_or(ctx.now),
                    unread_replies: r.unread_replies,
                    unread_mentions: r.unread_mentions,
                });
                b.touch(ItemKey::thread(id));
            }
            (None, ts) if r.channel_id.is_none() => {
                b.push(Write::ThreadsAllRead {
                    team_id: ev.broadcast.team_id.clone(),
                    at: ts.unwrap_or(ctx.now),
                });
            }
            // A non-CRT client viewed a channel: its threads were marked read on the server;
            // the next thread event or resync brings the exact counts.
            _ => {}
        },
        Event::ThreadFollowChanged(f) => {
            b.push(Write::Follow {
                root_id: f.thread_id.clone(),
                following: f.state,
            });
            b.touch(ItemKey::thread(&f.thread_id));
        }
        Event::PreferencesChanged(prefs) | Event::PreferencesDeleted(prefs) => {
            let deleted = matches!(ev.event, Event::PreferencesDeleted(_));
            preferences(&mut b, prefs, deleted);
        }
        Event::ChannelUpdated(c) => {
            b.push(Write::Channels(vec![convert::channel(c)]));
            if c.channel_type.is_direct_or_group() {
                b.touch(ItemKey::channel(&c.id));
            }
        }
        Event::ChannelMemberUpdated(m) if m.user_id == ctx.user_id => {
            b.push(Write::Memberships {
                rows: vec![convert::membership(m)],
                replace_all: false,
            });
            b.touch(ItemKey::channel(&m.channel_id));
        }
        Event::UserAdded { user_id, .. } if user_id == ctx.user_id => {
            follow.push(FollowUp::FetchChannel {
                channel_id: ev.broadcast.channel_id.clone(),
            });
        }
        Event::DirectAdded { .. } | Event::GroupAdded { .. }
            if !ev.broadcast.channel_id.is_empty()
                && (ctx.channel)(&ev.broadcast.channel_id).is_none() =>
        {
            follow.push(FollowUp::FetchChannel {
                channel_id: ev.broadcast.channel_id.clone(),
            });
        }
        Event::UserRemoved(r) => {
            // To the removed user: `channel_id` in data; to the channel: `user_id` in data.
            let removed_me = r.user_id.as_deref().is_none_or(|u| u == ctx.user_id);
            let channel_id = r
                .channel_id
                .clone()
                .unwrap_or_else(|| ev.broadcast.channel_id.clone());
            if removed_me && !channel_id.is_empty() {
                b.push(Write::RemoveMembership {
                    channel_id: channel_id.clone(),
                });
                b.touch(ItemKey::channel(&channel_id));
            }
        }
        Event::PostUnread(u) => {
            let channel_id = ev.broadcast.channel_id.clone();
            b.push(Write::MemberReadCounts {
                channel_id: channel_id.clone(),
                msg_count: u.msg_count,
                msg_count_root: u.msg_count_root,
                mention_count: u.mention_count,
                mention_count_root: u.mention_count_root,
                urgent_mention_count: u.urgent_mention_count,
                last_viewed_at: u.last_viewed_at,
            });
            b.touch(ItemKey::channel(&channel_id));
        }
        _ => {}
    }
    (b, follow)
}

/// Done / snooze / saved preferences → writes. `deleted`: the preferences were removed.
pub fn preferences(b: &mut Batch, prefs: &[mm::Preference], deleted: bool) {
    for p in prefs {
        let kind = match p.category.as_str() {
            inbox::DONE_CATEGORY => MarkKind::Done,
            inbox::SNOOZE_CATEGORY => MarkKind::Snooze,
            "flagged_post" => {
                b.push(Write::Flagged {
                    post_id: p.name.clone(),
                    saved: !deleted && p.value == "true",
                });
                continue;
            }
            inbox::searches::SEARCH_CATEGORY => {
                let search = (!deleted)
                    .then(|| inbox::searches::SavedSearch::from_preference(&p.name, &p.value))
                    .flatten();
                // A value this version cannot read is left alone (not taken as a deletion).
                if deleted || search.is_some() {
                    b.push(Write::SavedSearch {
                        name: p.name.clone(),
                        search,
                    });
                }
                continue;
            }
            _ => continue,
        };
        let Ok(key) = ItemKey::parse(&p.name) else {
            continue;
        };
        let at = if deleted {
            None
        } else {
            let one = inbox::Preference {
                user_id: p.user_id.clone(),
                category: p.category.clone(),
                name: p.name.clone(),
                value: p.value.clone(),
            };
            let marks = inbox::preferences_to_marks(std::slice::from_ref(&one));
            let Some(m) = marks.get(&key) else { continue };
            match kind {
                MarkKind::Done => m.done_at,
                MarkKind::Snooze => m.snoozed_until,
            }
        };
        b.push(Write::MarkSet {
            key: key.clone(),
            kind,
            at,
        });
        b.touch(Some(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mattermost::ws::{Broadcast, ThreadFollowChanged};

    const ME: &str = "meeeeeeeeeeeeeeeeeeeeeeeee";
    const C: &str = "cccccccccccccccccccccccccc";
    const R: &str = "rrrrrrrrrrrrrrrrrrrrrrrrrr";

    fn ctx_with<'a>(f: &'a dyn Fn(&str) -> Option<(String, String)>) -> EventCtx<'a> {
        EventCtx {
            user_id: ME,
            username: "me",
            now: 1_000,
            channel: f,
        }
    }

    fn ev(event: Event) -> WsEvent {
        WsEvent {
            seq: Some(1),
            broadcast: Broadcast::default(),
            event,
        }
    }

    #[test]
    fn follow_changed_touches_thread() {
        let f = |_: &str| Some(("t".to_string(), "O".to_string()));
        let (b, fu) = batch_for(
            &ctx_with(&f),
            &ev(Event::ThreadFollowChanged(ThreadFollowChanged {
                thread_id: R.into(),
                state: false,
                reply_count: 3,
            })),
        );
        assert!(fu.is_empty());
        assert_eq!(b.keys, vec![ItemKey::thread(R).unwrap()]);
        assert!(matches!(
            &b.writes[0],
            Write::Follow {
                following: false,
                ..
            }
        ));
    }

    #[test]
    fn viewed_dm_touches_channel_item() {
        let f = |_: &str| Some((String::new(), "D".to_string()));
        let mut times = std::collections::HashMap::new();
        times.insert(C.to_string(), 77);
        let (b, _) = batch_for(
            &ctx_with(&f),
            &ev(Event::MultipleChannelsViewed {
                channel_times: times,
            }),
        );
        assert!(matches!(&b.writes[0], Write::ChannelViewed { at: 77, .. }));
        assert_eq!(b.keys, vec![ItemKey::channel(C).unwrap()]);
    }

    #[test]
    fn done_pref_from_other_device() {
        let mut b = Batch::default();
        let key = format!("t_{R}");
        preferences(
            &mut b,
            &[mm::Preference {
                user_id: ME.into(),
                category: inbox::DONE_CATEGORY.into(),
                name: key.clone(),
                value: "1234".into(),
            }],
            false,
        );
        assert!(matches!(
            &b.writes[0],
            Write::MarkSet {
                kind: MarkKind::Done,
                at: Some(1234),
                ..
            }
        ));
        let mut b = Batch::default();
        preferences(
            &mut b,
            &[mm::Preference {
                user_id: ME.into(),
                category: inbox::DONE_CATEGORY.into(),
                name: key,
                value: String::new(),
            }],
            true,
        );
        assert!(matches!(&b.writes[0], Write::MarkSet { at: None, .. }));
    }
}
