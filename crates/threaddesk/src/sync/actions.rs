//! User actions: committed to the outbox first (durably), applied optimistically to the store,
//! then delivered by the outbox worker with the rules of [`super::outbox`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mattermost::models as mm;
use mattermost::{ME, NewPost, PostThreadQuery};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::batch::{Batch, Write};
use super::engine::{Inner, UserCtx, now_ms};
use super::outbox::{self, DeliveryState, Outcome, RowView};
use super::{Cause, ItemChanged, SyncError};
use crate::inbox::{self, ItemKey, MarkKind, Millis};
use crate::store::{MessageText, NewOutbox, OutboxRow, UserId};

mod key_str {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::inbox::ItemKey;

    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub fn serialize<S: Serializer>(k: &ItemKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&k.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ItemKey, D::Error> {
        let s = String::deserialize(d)?;
        ItemKey::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The millisecond part of a `pending_post_id`, unique within this process. The id is
/// Mattermost's dedup key (`{user_id}:{ms}`, as its own clients make it): two replies recorded
/// in the same millisecond must not share it, or the server answers the second with the first
/// post and the second reply is lost (found by `replies_during_an_outage_are_delivered_once`).
fn unique_ms(now: Millis) -> Millis {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev.saturating_add(1));
        match LAST.compare_exchange_weak(prev, next, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

/// Mattermost's preference category of saved posts.
const FLAGGED_CATEGORY: &str = "flagged_post";

/// A user action. Ids are Mattermost ids; times are ms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Reply in a thread (`root_id`), or post in a DM/GM channel when `root_id` is empty.
    Reply {
        channel_id: String,
        root_id: String,
        message: MessageText,
    },
    /// Thread: `PUT …/threads/{id}/read/{now}`; DM/GM: view the channel (CRT-safe).
    MarkRead {
        #[serde(with = "key_str")]
        key: ItemKey,
    },
    /// Unread from `post_id` on (thread `set_unread`, or channel post `set_unread`).
    MarkUnread {
        #[serde(with = "key_str")]
        key: ItemKey,
        post_id: String,
    },
    /// Done mark = `at` (stored as a Mattermost preference).
    Done {
        #[serde(with = "key_str")]
        key: ItemKey,
        at: Millis,
    },
    UndoDone {
        #[serde(with = "key_str")]
        key: ItemKey,
    },
    Snooze {
        #[serde(with = "key_str")]
        key: ItemKey,
        until: Millis,
    },
    Unsnooze {
        #[serde(with = "key_str")]
        key: ItemKey,
    },
    Follow {
        root_id: String,
    },
    Unfollow {
        root_id: String,
    },
    React {
        post_id: String,
        emoji_name: String,
        add: bool,
    },
    /// Saved message (`flagged_post` preference).
    Save {
        post_id: String,
        saved: bool,
    },
}

impl Action {
    /// Outbox kind; actions of one kind on one item coalesce (last writer wins), except replies
    /// and reactions.
    fn kind(&self) -> &'static str {
        match self {
            Self::Reply { .. } => "reply",
            Self::MarkRead { .. } | Self::MarkUnread { .. } => "read",
            Self::Done { .. } | Self::UndoDone { .. } => "done",
            Self::Snooze { .. } | Self::Unsnooze { .. } => "snooze",
            Self::Follow { .. } | Self::Unfollow { .. } => "follow",
            Self::React { .. } => "react",
            Self::Save { .. } => "save",
        }
    }

    fn coalesce(&self) -> bool {
        !matches!(
            self,
            Self::Reply { .. } | Self::React { .. } | Self::MarkUnread { .. }
        )
    }

    /// The item the action belongs to (ordering and coalescing key).
    fn item_key(&self) -> Option<ItemKey> {
        match self {
            Self::Reply {
                channel_id,
                root_id,
                ..
            } => {
                if root_id.is_empty() {
                    ItemKey::channel(channel_id)
                } else {
                    ItemKey::thread(root_id)
                }
            }
            Self::MarkRead { key }
            | Self::MarkUnread { key, .. }
            | Self::Done { key, .. }
            | Self::UndoDone { key }
            | Self::Snooze { key, .. }
            | Self::Unsnooze { key } => Some(key.clone()),
            Self::Follow { root_id } | Self::Unfollow { root_id } => ItemKey::thread(root_id),
            Self::React { post_id, .. } | Self::Save { post_id, .. } => ItemKey::thread(post_id),
        }
    }

    /// Well-formed ids, emoji and message (what [`super::SyncEngine::act`] checks first).
    ///
    /// # Errors
    /// [`SyncError::BadAction`].
    pub fn validate(&self) -> Result<(), SyncError> {
        let id_ok = |s: &str| inbox::is_valid_id(s);
        let ok = match self {
            Self::Reply {
                channel_id,
                root_id,
                message,
            } => id_ok(channel_id) && (root_id.is_empty() || id_ok(root_id)) && !message.is_empty(),
            Self::MarkUnread { post_id, .. } | Self::Save { post_id, .. } => id_ok(post_id),
            Self::React {
                post_id,
                emoji_name,
                ..
            } => {
                id_ok(post_id)
                    && !emoji_name.is_empty()
                    && emoji_name.len() <= 64
                    && emoji_name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'+')
            }
            Self::Follow { root_id } | Self::Unfollow { root_id } => id_ok(root_id),
            Self::Done { at, .. } => *at > 0,
            Self::Snooze { until, .. } => *until > 0,
            Self::MarkRead { .. } | Self::UndoDone { .. } | Self::Unsnooze { .. } => true,
        };
        if ok {
            Ok(())
        } else {
            Err(SyncError::BadAction("malformed id, emoji or empty message"))
        }
    }

    /// The store change shown at once (confirmed later by the echoed event).
    fn optimistic(&self, now: Millis) -> Batch {
        let mut b = Batch {
            local: true,
            ..Batch::default()
        };
        match self {
            Self::MarkRead {
                key: ItemKey::Thread(root),
            } => b.push(Write::ThreadRead {
                root_id: root.clone(),
                last_viewed_at: now,
                unread_replies: Some(0),
                unread_mentions: Some(0),
            }),
            Self::MarkRead {
                key: ItemKey::Channel(c),
            } => b.push(Write::ChannelViewed {
                channel_id: c.clone(),
                at: now,
            }),
            Self::Done { key, at } => b.push(Write::MarkSet {
                key: key.clone(),
                kind: MarkKind::Done,
                at: Some(*at),
            }),
            Self::UndoDone { key } => b.push(Write::MarkSet {
                key: key.clone(),
                kind: MarkKind::Done,
                at: None,
            }),
            Self::Snooze { key, until } => b.push(Write::MarkSet {
                key: key.clone(),
                kind: MarkKind::Snooze,
                at: Some(*until),
            }),
            Self::Unsnooze { key } => b.push(Write::MarkSet {
                key: key.clone(),
                kind: MarkKind::Snooze,
                at: None,
            }),
            Self::Follow { root_id } | Self::Unfollow { root_id } => b.push(Write::Follow {
                root_id: root_id.clone(),
                following: matches!(self, Self::Follow { .. }),
            }),
            Self::Save { post_id, saved } => b.push(Write::Flagged {
                post_id: post_id.clone(),
                saved: *saved,
            }),
            Self::MarkUnread { key, post_id } => b.push(Write::MarkedUnread {
                key: key.clone(),
                post_id: post_id.clone(),
            }),
            Self::Reply { .. } | Self::React { .. } => {}
        }
        b.touch(self.item_key());
        b
    }
}

/// Answer of [`super::SyncEngine::act`]: the action is recorded and will be delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActionAck {
    /// Outbox row id (the web layer shows pending / failed rows by it).
    pub outbox_id: i64,
    #[serde(serialize_with = "ser_key")]
    pub key: Option<ItemKey>,
    /// A reply's marker (`props.threaddesk_outbox_id` of the post it becomes), so that the page
    /// can tell that the reply has already arrived; `None` for other actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
}

#[allow(clippy::ref_option)]
fn ser_key<S: serde::Serializer>(k: &Option<ItemKey>, s: S) -> Result<S::Ok, S::Error> {
    match k {
        Some(k) => s.serialize_some(&k.to_string()),
        None => s.serialize_none(),
    }
}

fn random_marker() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..26)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Records `actions` of one user together: their outbox rows in one durable transaction, what
/// they change shown at once in one more (a selection of 50 items costs two commits, not
/// 100). Nothing is recorded unless every action is well-formed. Acks in the same order.
#[tracing::instrument(skip_all, fields(user.id = %user.as_str(), actions = actions.len()))]
pub(crate) async fn act_many(
    inner: &Arc<Inner>,
    user: &UserId,
    actions: Vec<Action>,
) -> Result<Vec<ActionAck>, SyncError> {
    let mut keys = Vec::with_capacity(actions.len());
    for action in &actions {
        action.validate()?;
        keys.push(
            action
                .item_key()
                .ok_or(SyncError::BadAction("malformed id"))?,
        );
    }
    let now = now_ms();
    let queued_at = inner.settings.outbox_clock.now();
    let mut news = Vec::with_capacity(actions.len());
    let mut optimistic = Batch {
        local: true,
        ..Batch::default()
    };
    for (action, key) in actions.iter().zip(&keys) {
        let is_reply = matches!(action, Action::Reply { .. });
        let payload =
            serde_json::to_string(action).map_err(|_| SyncError::Internal("payload encoding"))?;
        news.push(NewOutbox {
            kind: action.kind().to_owned(),
            item_key: key.clone(),
            payload: crate::store::JsonText::new(payload),
            // Mattermost's own format; fixed at creation, reused by every retry.
            pending_post_id: if is_reply {
                format!("{}:{}", user.as_str(), unique_ms(now))
            } else {
                String::new()
            },
            marker: if is_reply {
                random_marker()
            } else {
                String::new()
            },
            coalesce: action.coalesce(),
        });
        let b = action.optimistic(now);
        optimistic.writes.extend(b.writes);
        for k in b.keys {
            optimistic.touch(Some(k));
        }
    }
    let markers: Vec<Option<String>> = news
        .iter()
        .map(|n| Some(n.marker.clone()).filter(|m| !m.is_empty()))
        .collect();
    let store = Arc::clone(&inner.store);
    let u = user.clone();
    let ids = tokio::task::spawn_blocking(move || -> Result<Vec<i64>, SyncError> {
        // 1. Durable first: the browser hears "ok" only once the rows survive a crash.
        let ids = store.for_user(&u).outbox_enqueue_all(&news, queued_at)?;
        // 2. Optimistic store update (its own short transaction; rebuilt by any sync).
        if !optimistic.writes.is_empty() {
            super::apply::commit(&store, &u, optimistic)?;
        }
        Ok(ids)
    })
    .await
    .map_err(|_| SyncError::Internal("store task panicked"))??;
    let mut announced: Vec<&ItemKey> = Vec::new();
    for key in &keys {
        if !announced.contains(&key) {
            announce(inner, user, key, true);
            announced.push(key);
        }
    }
    for (id, action) in ids.iter().zip(&actions) {
        debug!(
            outbox.id = id,
            kind = action.kind(),
            "sync: action recorded"
        );
    }
    Ok(ids
        .into_iter()
        .zip(keys)
        .zip(markers)
        .map(|((outbox_id, key), marker)| ActionAck {
            outbox_id,
            key: Some(key),
            marker,
        })
        .collect())
}

/// The user's item changed by their own hand: listeners hear it; with `deliver`, the outbox
/// worker wakes for the new row.
fn announce(inner: &Inner, user: &UserId, key: &ItemKey, deliver: bool) {
    let _ = inner.changes.send(ItemChanged {
        user_id: user.as_str().to_owned(),
        key: Some(key.clone()),
        cause: Cause::Action,
    });
    if deliver {
        inner.outbox_wake.notify_one();
    }
}

/// Map a client error to an outbox outcome.
fn outcome_of(e: &mattermost::Error) -> Outcome {
    if let Some(d) = e.retry_after() {
        return Outcome::RateLimited { retry_after: d };
    }
    if e.is_unauthorized() {
        return Outcome::Unauthorized;
    }
    if e.is_pending_post_duplicate() {
        return Outcome::Unknown;
    }
    match (e, e.status()) {
        (_, Some(s)) if (400..500).contains(&s) && s != 408 => Outcome::Rejected {
            status: s,
            // Mattermost's error id; a proxy's plain-text answer has none (the status says it).
            reason: e.api_id().unwrap_or_default().to_owned(),
        },
        (mattermost::Error::InvalidArgument(_), _) => Outcome::Rejected {
            status: 400,
            reason: "invalid request".into(),
        },
        _ => Outcome::Unknown,
    }
}

/// The team id to use in a thread URL: the thread's, or any of the user's (DM/GM threads).
async fn thread_team(ctx: &UserCtx, root_id: &str) -> Option<String> {
    let store = Arc::clone(&ctx.store);
    let user = ctx.user_id.clone();
    let root = root_id.to_owned();
    let team = tokio::task::spawn_blocking(move || {
        store
            .for_user(&user)
            .thread(&root)
            .ok()
            .flatten()
            .map(|t| t.team_id)
    })
    .await
    .ok()
    .flatten()
    .filter(|t| !t.is_empty());
    team.or_else(|| ctx.any_team())
}

fn pref(user: &str, category: &str, name: &str, value: String) -> mm::Preference {
    mm::Preference {
        user_id: user.to_owned(),
        category: category.to_owned(),
        name: name.to_owned(),
        value,
    }
}

/// Perform one delivery attempt.
async fn send(ctx: &UserCtx, row: &OutboxRow, action: &Action) -> Outcome {
    let c = &ctx.client;
    let me = ctx.user_id.as_str();
    ctx.count_call();
    let r: Result<Option<String>, mattermost::Error> = match action {
        Action::Reply {
            channel_id,
            root_id,
            message,
        } => {
            let mut props = mm::JsonMap::new();
            props.insert(
                outbox::MARKER_PROP.into(),
                serde_json::Value::String(row.marker.clone()),
            );
            let mut post = NewPost::new(channel_id.clone(), message.expose())
                .pending_post_id(row.pending_post_id.clone())
                .props(props);
            if !root_id.is_empty() {
                post = post.reply_to(root_id.clone());
            }
            c.create_post(&post).await.map(|p| Some(p.id))
        }
        Action::MarkRead {
            key: ItemKey::Thread(root),
        } => match thread_team(ctx, root).await {
            Some(team) => c
                .update_thread_read(ME, &team, root, now_ms())
                .await
                .map(|_| None),
            None => Err(mattermost::Error::InvalidArgument(
                "no team for the thread".into(),
            )),
        },
        Action::MarkRead {
            key: ItemKey::Channel(ch),
        } => c.view_channel(ME, ch, None).await.map(|_| None),
        Action::MarkUnread {
            key: ItemKey::Thread(root),
            post_id,
        } => match thread_team(ctx, root).await {
            Some(team) => c
                .set_thread_unread(ME, &team, root, post_id)
                .await
                .map(|_| None),
            None => Err(mattermost::Error::InvalidArgument(
                "no team for the thread".into(),
            )),
        },
        Action::MarkUnread {
            key: ItemKey::Channel(_),
            post_id,
        } => c.set_post_unread(ME, post_id).await.map(|_| None),
        Action::Done { key, at } => c
            .update_preferences(
                me,
                &[pref(
                    me,
                    inbox::DONE_CATEGORY,
                    &key.to_string(),
                    at.to_string(),
                )],
            )
            .await
            .map(|()| None),
        Action::UndoDone { key } => c
            .delete_preferences(
                me,
                &[pref(
                    me,
                    inbox::DONE_CATEGORY,
                    &key.to_string(),
                    String::new(),
                )],
            )
            .await
            .map(|()| None),
        Action::Snooze { key, until } => c
            .update_preferences(
                me,
                &[pref(
                    me,
                    inbox::SNOOZE_CATEGORY,
                    &key.to_string(),
                    until.to_string(),
                )],
            )
            .await
            .map(|()| None),
        Action::Unsnooze { key } => c
            .delete_preferences(
                me,
                &[pref(
                    me,
                    inbox::SNOOZE_CATEGORY,
                    &key.to_string(),
                    String::new(),
                )],
            )
            .await
            .map(|()| None),
        Action::Follow { root_id } | Action::Unfollow { root_id } => {
            match thread_team(ctx, root_id).await {
                Some(team) if matches!(action, Action::Follow { .. }) => {
                    c.follow_thread(ME, &team, root_id).await.map(|()| None)
                }
                Some(team) => c.unfollow_thread(ME, &team, root_id).await.map(|()| None),
                None => Err(mattermost::Error::InvalidArgument(
                    "no team for the thread".into(),
                )),
            }
        }
        Action::React {
            post_id,
            emoji_name,
            add: true,
        } => c.add_reaction(me, post_id, emoji_name).await.map(|_| None),
        Action::React {
            post_id,
            emoji_name,
            add: false,
        } => c
            .remove_reaction(me, post_id, emoji_name)
            .await
            .map(|()| None),
        Action::Save {
            post_id,
            saved: true,
        } => c
            .update_preferences(me, &[pref(me, FLAGGED_CATEGORY, post_id, "true".into())])
            .await
            .map(|()| None),
        Action::Save {
            post_id,
            saved: false,
        } => c
            .delete_preferences(me, &[pref(me, FLAGGED_CATEGORY, post_id, "true".into())])
            .await
            .map(|()| None),
    };
    match r {
        Ok(post_id) => Outcome::Delivered { post_id },
        Err(e) => outcome_of(&e),
    }
}

/// Search the thread (or DM/GM channel) for a post carrying the row's marker.
async fn reconcile(ctx: &UserCtx, row: &OutboxRow, action: &Action) -> Outcome {
    let Action::Reply {
        channel_id,
        root_id,
        ..
    } = action
    else {
        return Outcome::MarkerAbsent;
    };
    ctx.count_call();
    let list = if root_id.is_empty() {
        let q = mattermost::ChannelPostsQuery {
            since: row.first_sent_at.map(|t| t - 60_000),
            ..mattermost::ChannelPostsQuery::default()
        };
        ctx.client.get_posts_for_channel(channel_id, &q).await
    } else {
        ctx.client
            .get_post_thread(root_id, &PostThreadQuery::default())
            .await
    };
    match list {
        Ok(list) => list
            .posts
            .values()
            .find(|p| {
                super::convert::outbox_marker(p) == Some(row.marker.as_str())
                    && p.user_id == ctx.user_id.as_str()
            })
            .map_or(Outcome::MarkerAbsent, |p| Outcome::MarkerFound {
                post_id: p.id.clone(),
            }),
        Err(e) => match outcome_of(&e) {
            // The thread is gone: the reply cannot be delivered.
            Outcome::Rejected { status: 404, .. } => Outcome::Rejected {
                status: 404,
                reason: "the thread no longer exists".into(),
            },
            o => o,
        },
    }
}

/// Mattermost's current value of the state `action` changed, as writes that replace what was
/// shown ahead: read back when the action will not be delivered (Mattermost refused it, or the
/// user discarded it), so the queue does not keep showing a change Mattermost never made.
/// `None` for actions shown nowhere ahead (reply, reaction).
async fn read_back(ctx: &UserCtx, action: &Action) -> Result<Option<Batch>, mattermost::Error> {
    let c = &ctx.client;
    let me = ctx.user_id.as_str();
    let mut b = Batch::default();
    match action {
        Action::Done { key, .. }
        | Action::UndoDone { key }
        | Action::Snooze { key, .. }
        | Action::Unsnooze { key } => {
            let kind = if matches!(action, Action::Done { .. } | Action::UndoDone { .. }) {
                MarkKind::Done
            } else {
                MarkKind::Snooze
            };
            ctx.count_call();
            let prefs = c.get_preferences_by_category(me, kind.category()).await?;
            let marks = super::convert::marks(&prefs)
                .remove(key)
                .unwrap_or_default();
            b.push(Write::MarkSet {
                key: key.clone(),
                kind,
                at: match kind {
                    MarkKind::Done => marks.done_at,
                    MarkKind::Snooze => marks.snoozed_until,
                },
            });
        }
        Action::MarkRead {
            key: ItemKey::Thread(root),
        }
        | Action::MarkUnread {
            key: ItemKey::Thread(root),
            ..
        }
        | Action::Follow { root_id: root }
        | Action::Unfollow { root_id: root } => {
            let Some(team) = thread_team(ctx, root).await else {
                return Ok(None);
            };
            ctx.count_call();
            match c.get_user_thread(ME, &team, root, false).await {
                Ok(t) => {
                    b.push(Write::ThreadRead {
                        root_id: root.clone(),
                        last_viewed_at: t.last_viewed_at,
                        unread_replies: Some(t.unread_replies),
                        unread_mentions: Some(t.unread_mentions),
                    });
                    b.push(Write::Follow {
                        root_id: root.clone(),
                        following: true,
                    });
                }
                // Mattermost answers 404 for a thread the user does not follow.
                Err(e) if e.is_not_found() => b.push(Write::Follow {
                    root_id: root.clone(),
                    following: false,
                }),
                Err(e) => return Err(e),
            }
        }
        Action::MarkRead {
            key: ItemKey::Channel(channel),
        }
        | Action::MarkUnread {
            key: ItemKey::Channel(channel),
            ..
        } => {
            ctx.count_call();
            let m = c.get_channel_member(channel, me).await?;
            b.push(Write::MemberReadCounts {
                channel_id: channel.clone(),
                msg_count: m.msg_count,
                msg_count_root: m.msg_count_root,
                mention_count: m.mention_count,
                mention_count_root: m.mention_count_root,
                urgent_mention_count: m.urgent_mention_count,
                last_viewed_at: m.last_viewed_at,
            });
        }
        Action::Save { post_id, .. } => {
            ctx.count_call();
            let prefs = c.get_preferences_by_category(me, FLAGGED_CATEGORY).await?;
            b.push(Write::Flagged {
                post_id: post_id.clone(),
                saved: prefs
                    .iter()
                    .any(|p| p.name == *post_id && p.value == "true"),
            });
        }
        Action::Reply { .. } | Action::React { .. } => return Ok(None),
    }
    b.touch(action.item_key());
    Ok(Some(b))
}

/// Replace what `action` showed ahead with Mattermost's value ([`read_back`]). Best effort: when
/// Mattermost cannot be read now, the next full sync corrects it.
async fn correct(ctx: &UserCtx, action: &Action) {
    match read_back(ctx, action).await {
        Ok(Some(b)) => {
            if let Err(e) = ctx.commit(b, Cause::Outbox).await {
                warn!(
                    error = e.phrase(),
                    kind = action.kind(),
                    "sync: correcting an undelivered action failed"
                );
            }
        }
        Ok(None) => {}
        Err(e) => warn!(
            status = ?e.status(),
            kind = action.kind(),
            "sync: reading back the state of an undelivered action failed; the next full sync corrects it"
        ),
    }
}

/// Why a retry or discard was refused.
#[derive(Debug, thiserror::Error)]
pub enum OutboxActionError {
    #[error("no such undelivered action on this item")]
    NotFound,
    #[error("{0}")]
    WrongState(&'static str),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl From<crate::store::StoreError> for OutboxActionError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Sync(e.into())
    }
}

/// The user's outbox row `id` on item `key`, with its action.
async fn own_row(
    inner: &Arc<Inner>,
    user: &UserId,
    key: &ItemKey,
    id: i64,
) -> Result<(OutboxRow, Action), OutboxActionError> {
    let store = Arc::clone(&inner.store);
    let u = user.clone();
    let row = tokio::task::spawn_blocking(move || store.for_user(&u).outbox_row(id))
        .await
        .map_err(|_| SyncError::Internal("store task panicked"))??
        .filter(|r| r.item_key == key.to_string())
        .ok_or(OutboxActionError::NotFound)?;
    let action = serde_json::from_str::<Action>(row.payload.expose())
        .map_err(|_| OutboxActionError::WrongState("this action cannot be read; discard it"))?;
    Ok((row, action))
}

/// The user sends a failed action again: it is queued, and what it changes is shown again.
pub(crate) async fn retry(
    inner: &Arc<Inner>,
    user: &UserId,
    key: &ItemKey,
    id: i64,
) -> Result<(), OutboxActionError> {
    let (row, action) = own_row(inner, user, key, id).await?;
    if row.state != crate::store::OutboxState::Failed {
        return Err(OutboxActionError::WrongState(
            "only an action that failed can be sent again; this one is still being delivered",
        ));
    }
    let store = Arc::clone(&inner.store);
    let u = user.clone();
    let now = inner.settings.outbox_clock.now();
    let optimistic = action.optimistic(now_ms());
    tokio::task::spawn_blocking(move || -> Result<(), SyncError> {
        store.for_user(&u).outbox_retry_failed(id, now)?;
        if !optimistic.is_empty() {
            super::apply::commit(&store, &u, optimistic)?;
        }
        Ok(())
    })
    .await
    .map_err(|_| SyncError::Internal("store task panicked"))??;
    announce(inner, user, key, true);
    debug!(
        outbox.id = id,
        kind = action.kind(),
        "sync: failed action queued again"
    );
    Ok(())
}

/// How long a discard waits for Mattermost's value of the state before answering (the read
/// goes on in the background after that).
const DISCARD_READ_BACK_WAIT: Duration = Duration::from_secs(3);

/// The user gives up an action not delivered (queued or failed): the row is deleted and what
/// it showed ahead is replaced by Mattermost's value. An action in flight cannot be discarded.
pub(crate) async fn discard(
    inner: &Arc<Inner>,
    user: &UserId,
    key: &ItemKey,
    id: i64,
) -> Result<(), OutboxActionError> {
    let (row, action) = own_row(inner, user, key, id).await?;
    if row.state == crate::store::OutboxState::Sent {
        return Err(OutboxActionError::WrongState(
            "this action was already delivered to Mattermost",
        ));
    }
    let store = Arc::clone(&inner.store);
    let u = user.clone();
    let cancelled = tokio::task::spawn_blocking(move || store.for_user(&u).outbox_cancel(id))
        .await
        .map_err(|_| SyncError::Internal("store task panicked"))?;
    match cancelled {
        Ok(()) => {}
        Err(crate::store::StoreError::NotFound) => {
            return Err(OutboxActionError::WrongState(
                "this action is being delivered to Mattermost right now and can no longer be discarded",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    debug!(
        outbox.id = row.id,
        kind = action.kind(),
        "sync: undelivered action discarded"
    );
    announce(inner, user, key, false);
    if let Some(ctx) = inner.ctx(user.as_str()) {
        let task = tokio::spawn(async move { correct(&ctx, &action).await });
        let _ = tokio::time::timeout(DISCARD_READ_BACK_WAIT, task).await;
    }
    Ok(())
}

/// Deliver one claimed row and record the next step.
#[tracing::instrument(skip_all, fields(user.id = %ctx.user_id.as_str(), outbox.id = row.id))]
async fn deliver(ctx: &UserCtx, row: OutboxRow) -> Result<(), SyncError> {
    let store = Arc::clone(&ctx.store);
    let user = ctx.user_id.clone();
    let Ok(action) = serde_json::from_str::<Action>(row.payload.expose()) else {
        let id = row.id;
        tokio::task::spawn_blocking(move || {
            store
                .for_user(&user)
                .outbox_mark_failed(id, "unreadable action")
        })
        .await
        .map_err(|_| SyncError::Internal("store task panicked"))??;
        return Ok(());
    };
    let is_reply = matches!(action, Action::Reply { .. });
    let clock = &ctx.settings.outbox_clock;
    let attempted_at = clock.now();
    let view = RowView {
        is_reply,
        // `attempts` counts this claim; the rules want the attempts before it.
        attempts: u32::try_from(row.attempts.saturating_sub(1)).unwrap_or(0),
        first_attempt_at: row.first_sent_at,
        created_at: row.created_at,
    };
    let mut outcome = if outbox::must_reconcile_before_send(&view, attempted_at) {
        reconcile(ctx, &row, &action).await
    } else {
        send(ctx, &row, &action).await
    };
    if outcome == Outcome::MarkerAbsent {
        // Nothing landed: resend now (same pending_post_id and marker).
        outcome = send(ctx, &row, &action).await;
    }
    if outcome == Outcome::Unauthorized {
        // The token is dead: the row is parked, and the user is asked to sign in again (the
        // outbox worker then stops the user's sync, see `park_refused`).
        let mut st = ctx.status();
        st.phase = super::Phase::NeedsSignIn;
        st.last_error = Some("Mattermost refused the token".into());
    }
    let step = outbox::next_step(
        &view,
        &outcome,
        attempted_at,
        clock.now(),
        rand::random::<f64>(),
    );
    debug!(
        outbox.id = row.id,
        state = step.state.as_str(),
        "sync: outbox attempt"
    );
    let id = row.id;
    let key = ItemKey::parse(&row.item_key).ok();
    let retry_fallback = clock.now() + 1_000;
    let failed = matches!(step.state, DeliveryState::Failed { .. });
    tokio::task::spawn_blocking(move || -> Result<(), SyncError> {
        let us = store.for_user(&user);
        match step.state {
            DeliveryState::Sent { post_id } => us.outbox_mark_sent(id, post_id.as_deref())?,
            DeliveryState::Failed { reason } => us.outbox_mark_failed(id, &reason)?,
            DeliveryState::Parked => us.outbox_retry_later(id, Millis::MAX / 4, "needs sign-in")?,
            DeliveryState::Pending | DeliveryState::Reconcile => {
                us.outbox_retry_later(
                    id,
                    step.next_at.unwrap_or(retry_fallback),
                    "not delivered yet",
                )?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| SyncError::Internal("store task panicked"))??;
    let _ = ctx.changes.send(ItemChanged {
        user_id: ctx.user_id.as_str().to_owned(),
        key,
        cause: Cause::Outbox,
    });
    if failed {
        // Mattermost will not make this change: show what it holds instead.
        correct(ctx, &action).await;
    }
    Ok(())
}

/// Put this user's in-flight rows back in the queue, retrying with backoff while the store
/// refuses writes. Only the user's sender calls it, so no row is being delivered meanwhile.
async fn requeue_own_inflight(ctx: &UserCtx) {
    let mut wait = Duration::from_secs(1);
    loop {
        let store = Arc::clone(&ctx.store);
        let user = ctx.user_id.clone();
        let now = ctx.settings.outbox_clock.now();
        let r =
            tokio::task::spawn_blocking(move || store.for_user(&user).outbox_requeue_inflight(now))
                .await;
        if matches!(r, Ok(Ok(_))) {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// Deliver every due row of one user, one at a time (per-item order is kept by the store).
async fn drain_user(ctx: Arc<UserCtx>) -> String {
    loop {
        if ctx.status().phase == super::Phase::NeedsSignIn {
            // A dead token: the other rows wait (due again at the next sign-in).
            break;
        }
        let store = Arc::clone(&ctx.store);
        let user = ctx.user_id.clone();
        let now = ctx.settings.outbox_clock.now();
        let claimed =
            tokio::task::spawn_blocking(move || store.for_user(&user).outbox_claim_next(now)).await;
        match claimed {
            Ok(Ok(Some(row))) => {
                if let Err(e) = deliver(&ctx, row).await {
                    warn!(
                        error = e.phrase(),
                        "sync: outbox delivery bookkeeping failed"
                    );
                    // The row is still in flight (its outcome was not recorded) and would block
                    // its item until a restart: queue it again once the store accepts writes
                    // (a reply is then resent with its pending_post_id, or reconciled by marker).
                    requeue_own_inflight(&ctx).await;
                    break;
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                warn!(error = %e, "sync: outbox claim failed");
                // The store refuses writes (disk full, read-only): the worker would start this
                // sender again at once, so wait here (holding the user's slot) instead of
                // spinning and flooding the log.
                tokio::time::sleep(Duration::from_secs(2)).await;
                break;
            }
            Err(_) => break,
        }
    }
    ctx.user_id.as_str().to_owned()
}

/// The instance's outbox worker: rows left in flight by a crash are re-queued, then due rows of
/// active users are delivered, one sender per user.
pub(crate) async fn outbox_worker(inner: Arc<Inner>) {
    let clock = inner.settings.outbox_clock.clone();
    let store = Arc::clone(&inner.store);
    let now = clock.now();
    let _ = tokio::task::spawn_blocking(move || store.outbox_requeue_inflight(now)).await;
    let mut busy: HashSet<String> = HashSet::new();
    let mut senders: JoinSet<String> = JoinSet::new();
    loop {
        let store = Arc::clone(&inner.store);
        let now = clock.now();
        let due = tokio::task::spawn_blocking(move || store.outbox_users_due(now))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        for u in due {
            if busy.contains(u.as_str()) {
                continue;
            }
            if let Some(ctx) = inner.ctx(u.as_str())
                && ctx.status().phase != super::Phase::NeedsSignIn
            {
                busy.insert(u.as_str().to_owned());
                senders.spawn(drain_user(ctx));
            }
        }
        super::park_refused(&inner).await;
        tokio::select! {
            () = inner.outbox_wake.notified() => {}
            Some(done) = senders.join_next() => {
                if let Ok(u) = done {
                    busy.remove(&u);
                }
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[cfg(test)]
mod pending_id_tests {
    use super::unique_ms;

    #[test]
    fn pending_ids_never_repeat_within_a_millisecond() {
        let a = unique_ms(1_000_000_000_000);
        let b = unique_ms(1_000_000_000_000);
        let c = unique_ms(1_000_000_000_000);
        assert!(a < b && b < c, "{a} {b} {c}");
        // Real time moving on is used as it is.
        assert_eq!(unique_ms(c + 1000), c + 1000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "rrrrrrrrrrrrrrrrrrrrrrrrrr";

    #[test]
    fn payload_roundtrip_and_redaction() {
        let a = Action::Reply {
            channel_id: R.into(),
            root_id: R.into(),
            message: MessageText::new("secret words"),
        };
        let json = serde_json::to_string(&a).unwrap();
        let back: Action = serde_json::from_str(&json).unwrap();
        assert_eq!(a, back);
        assert!(!format!("{a:?}").contains("secret"));
        let d = Action::Done {
            key: ItemKey::thread(R).unwrap(),
            at: 5,
        };
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("\"key\":\"t_"));
        assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), d);
    }

    #[test]
    fn validation() {
        assert!(
            Action::Follow {
                root_id: "x".into()
            }
            .validate()
            .is_err()
        );
        assert!(
            Action::React {
                post_id: R.into(),
                emoji_name: "thumbsup".into(),
                add: true
            }
            .validate()
            .is_ok()
        );
        assert!(
            Action::React {
                post_id: R.into(),
                emoji_name: "../x".into(),
                add: true
            }
            .validate()
            .is_err()
        );
        assert!(
            Action::Reply {
                channel_id: R.into(),
                root_id: String::new(),
                message: MessageText::new("")
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn errors_map_to_outcomes() {
        let api = |status: u16, id: &str| mattermost::Error::Api {
            status,
            id: id.into(),
            message: String::new(),
            request_id: None,
            detailed_error: String::new(),
            endpoint: "POST /api/v4/posts".into(),
        };
        assert_eq!(
            outcome_of(&api(500, "api.post.deduplicate_create_post.pending")),
            Outcome::Unknown
        );
        assert_eq!(outcome_of(&api(503, "x")), Outcome::Unknown);
        assert_eq!(outcome_of(&api(401, "x")), Outcome::Unauthorized);
        assert!(matches!(
            outcome_of(&api(400, "bad")),
            Outcome::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            outcome_of(&mattermost::Error::RateLimited {
                retry_after: Duration::from_secs(2),
                reset: None
            }),
            Outcome::RateLimited { .. }
        ));
    }
}
