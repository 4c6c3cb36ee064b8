//! The executor: runs the planner's reads, keeps one WebSocket per active user, applies events,
//! resyncs after loss, and delivers the outbox.

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::{StreamExt, TryStreamExt, stream};
use mattermost::models as mm;
use mattermost::ws::{WsClient, WsConfig, WsHandle, WsItem};
use mattermost::{ChannelPostsQuery, ChannelsForUserQuery, Client, ME, UserThreadsQuery};
use tokio::sync::{Notify, broadcast};
use tracing::{Instrument, debug, info, info_span, warn};

use super::apply;
use super::batch::{Batch, Write};
use super::convert;
use super::events::{self, EventCtx, FollowUp};
use super::planner::{self, DirectChannel, Op, ResyncCursors, TeamCounters};
use super::ratelimit::{LimiterStatus, RateLimiter};
use super::{Cause, ItemChanged, SyncError, SyncSettings};
use crate::inbox::{ItemKey, Millis};
use crate::store::{Store, UserId};

/// Reads running at once for one user's sync. Initial sync is ~75 calls; 4 in parallel hides
/// most of the round-trip latency (≈ 20 calls × RTT) while a recovering server sees at most
/// 4 requests per user in flight, and the shared limiter still caps the instance.
pub const SYNC_CONCURRENCY: usize = 4;

/// Team channels with unread root mentions whose recent roots are read at initial sync (a root
/// mention without replies has no thread on the server, so only the channel's posts show it).
pub const MENTION_CHANNELS_MAX: usize = 20;

/// Item-changed notices buffered per subscriber before it lags (it then reloads).
const CHANGES_CAPACITY: usize = 1024;
/// Saved-search notices buffered (rare: a search saved or removed, on any device).
const SEARCHES_CAPACITY: usize = 64;

pub(crate) fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
        })
}

/// Connection state of one user, for the status page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Starting,
    InitialSync,
    Live,
    Reconnecting,
    Resyncing,
    NeedsSignIn,
    Stopped,
}

/// One user's sync status (ids, counts and timings only).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct UserStatus {
    pub user_id: String,
    /// Of `initial_sync_ms`: time spent writing the store (the rest is Mattermost reads).
    pub initial_sync_commit_ms: u64,
    pub phase: Phase,
    pub connected: bool,
    pub last_sync_at: Option<Millis>,
    /// REST calls and wall time of the last initial sync.
    pub initial_sync_calls: u64,
    pub initial_sync_ms: u64,
    /// REST calls of the last incremental resync, and how many resyncs ran.
    pub last_resync_calls: u64,
    pub resyncs: u64,
    /// Periodic full syncs of a live user ([`super::SyncSettings::full_sync_every`]).
    pub periodic_full_syncs: u64,
    pub events_applied: u64,
    /// A fixed phrase (never message content).
    pub last_error: Option<String>,
}

/// The admin status page's view of the engine.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EngineStatus {
    pub users: Vec<UserStatus>,
    pub rate_limit: LimiterStatus,
}

/// What the engine keeps per active user.
pub(crate) struct UserCtx {
    pub user_id: UserId,
    pub client: Client,
    pub store: Arc<Store>,
    pub settings: SyncSettings,
    pub changes: broadcast::Sender<ItemChanged>,
    /// Saved-search notices: the user id whose saved searches changed.
    pub searches: broadcast::Sender<String>,
    pub status: Mutex<UserStatus>,
    /// REST calls made on behalf of this user (all kinds).
    pub calls: AtomicU64,
    /// Sync memory for an O(changed) resync: counters of the last `teams/unread`, and
    /// `last_post_at` of every DM/GM channel.
    pub memo: Mutex<Memo>,
    /// WebSocket position of the events applied so far: (connection id, next seq).
    pub ws_pos: Mutex<Option<(String, i64)>>,
}

#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Memo {
    pub username: String,
    pub team_ids: Vec<String>,
    pub counters: Vec<TeamCounters>,
    /// The store's own per-team counters ([`apply::store_team_counters`]) at the moment
    /// `counters` was read. A resync advances `counters` by how far the store has moved since
    /// (the live events applied), so only teams that changed while events were lost are
    /// re-read (see [`planner::advance_counters`]).
    pub store_counters: Vec<TeamCounters>,
    pub directs: Vec<DirectChannel>,
    pub last_synced_at: Millis,
    /// ETag of `GET /users/me/teams/{team}/channels` (team, tag): the DM/GM change signal of
    /// a resync.
    pub channels_etag: Option<(String, String)>,
}

impl UserCtx {
    pub fn status(&self) -> std::sync::MutexGuard<'_, UserStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.memo.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn ws_pos(&self) -> std::sync::MutexGuard<'_, Option<(String, i64)>> {
        self.ws_pos.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn count_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// A team id usable in thread URLs (any of the user's teams works for DM/GM threads).
    pub fn any_team(&self) -> Option<String> {
        self.memo().team_ids.first().cloned()
    }

    /// Commit one batch in one transaction (blocking store call off the runtime), then notify.
    pub async fn commit(&self, batch: Batch, cause: Cause) -> Result<(), SyncError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.commit_inner(batch, cause, false).await.map(|_| ())
    }

    /// [`Self::commit`], then the store's per-team counters ([`apply::store_team_counters`])
    /// read in the same blocking task, before any listener is notified (a listener woken by
    /// the commit may read the status at once: no await may separate the commit from the
    /// caller's status update).
    pub async fn commit_with_counters(
        &self,
        batch: Batch,
        cause: Cause,
    ) -> Result<Vec<TeamCounters>, SyncError> {
        Ok(self
            .commit_inner(batch, cause, true)
            .await?
            .unwrap_or_default())
    }

    async fn commit_inner(
        &self,
        batch: Batch,
        cause: Cause,
        with_counters: bool,
    ) -> Result<Option<Vec<TeamCounters>>, SyncError> {
        let store = Arc::clone(&self.store);
        let user = self.user_id.clone();
        let (done, mut counters) = tokio::task::spawn_blocking(move || {
            let done = apply::commit(&store, &user, batch)?;
            let counters = if with_counters {
                Some(apply::store_team_counters(&store, &user)?)
            } else {
                None
            };
            Ok::<_, crate::store::StoreError>((done, counters))
        })
        .await
        .map_err(|_| SyncError::Internal("store task panicked"))??;
        let missing = done.missing_threads;
        let refresh = with_counters && !missing.is_empty();
        if !done.keys.is_empty() {
            self.notify(done.keys, cause);
        }
        if done.searches {
            let _ = self.searches.send(self.user_id.as_str().to_owned());
        }
        // Threads followed elsewhere that we never saw: one read each.
        for root in missing {
            let Some(team) = self.any_team() else { break };
            self.count_call();
            match self.client.get_user_thread(ME, &team, &root, false).await {
                Ok(t) => {
                    let store = Arc::clone(&self.store);
                    let user = self.user_id.clone();
                    let b = thread_batch(&store, &user, &t).await?;
                    let done = tokio::task::spawn_blocking(move || apply::commit(&store, &user, b))
                        .await
                        .map_err(|_| SyncError::Internal("store task panicked"))??;
                    self.notify(done.keys, cause);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        if refresh {
            counters = Some(store_counters(self).await?);
        }
        Ok(counters)
    }

    pub fn notify(&self, keys: Vec<ItemKey>, cause: Cause) {
        let user_id = self.user_id.as_str().to_owned();
        if keys.is_empty() {
            let _ = self.changes.send(ItemChanged {
                user_id,
                key: None,
                cause,
            });
            return;
        }
        for key in keys {
            let _ = self.changes.send(ItemChanged {
                user_id: user_id.clone(),
                key: Some(key),
                cause,
            });
        }
    }
}

/// [`apply::store_team_counters`] off the runtime.
async fn store_counters(ctx: &UserCtx) -> Result<Vec<TeamCounters>, SyncError> {
    let store = Arc::clone(&ctx.store);
    let user = ctx.user_id.clone();
    Ok(
        tokio::task::spawn_blocking(move || apply::store_team_counters(&store, &user))
            .await
            .map_err(|_| SyncError::Internal("store task panicked"))??,
    )
}

/// A batch holding one thread read over REST (its team comes from the store's channel row).
async fn thread_batch(
    store: &Arc<Store>,
    user: &UserId,
    t: &mm::ThreadResponse,
) -> Result<Batch, SyncError> {
    let channel_id = t
        .post
        .as_ref()
        .map(|p| p.channel_id.clone())
        .unwrap_or_default();
    let (s, u) = (Arc::clone(store), user.clone());
    let info = tokio::task::spawn_blocking(move || apply::channel_info(&s, &u, &[channel_id]))
        .await
        .map_err(|_| SyncError::Internal("store task panicked"))??;
    let mut b = Batch::default();
    if let Some(row) = convert::thread(t, true, |c| info.get(c).map(|(team, _)| team.clone())) {
        b.push(Write::Threads(vec![row]));
    }
    if let Some(root) = &t.post {
        b.push(Write::Posts(vec![convert::post(root)]));
    }
    b.touch(ItemKey::thread(&t.id));
    Ok(b)
}

/// Attempts per read before the whole sync step fails (research T-12: ≤ 6, with backoff).
pub const READ_ATTEMPTS: u32 = 5;

/// One counted REST read, retried on 5xx / timeouts / 429 with exponential backoff and jitter.
/// A 429 has already paused the shared limiter (through the client's gate), so the retry
/// waits there for the server's `Retry-After`.
macro_rules! call {
    ($ctx:expr, $e:expr) => {{
        let mut attempt = 0u32;
        loop {
            $ctx.count_call();
            match $e.await {
                Err(err) if err.is_retryable() && attempt + 1 < READ_ATTEMPTS => {
                    attempt += 1;
                    let wait = err.retry_after().unwrap_or_else(|| {
                        Duration::from_millis(
                            u64::try_from(
                                super::outbox::backoff_ms(attempt, rand::random::<f64>()) / 4,
                            )
                            .unwrap_or(250),
                        )
                    });
                    tokio::time::sleep(wait).await;
                }
                other => break other,
            }
        }
    }};
}

fn counters(u: &mm::TeamUnread) -> TeamCounters {
    TeamCounters {
        team_id: u.team_id.clone(),
        msg_count: u.msg_count,
        mention_count: u.mention_count,
        msg_count_root: u.msg_count_root,
        mention_count_root: u.mention_count_root,
        thread_count: u.thread_count,
        thread_mention_count: u.thread_mention_count,
        thread_urgent_mention_count: u.thread_urgent_mention_count,
    }
}

fn directs_of(channels: &[mm::Channel]) -> Vec<DirectChannel> {
    channels
        .iter()
        .filter(|c| c.channel_type.is_direct_or_group() && c.delete_at == 0)
        .map(|c| DirectChannel {
            channel_id: c.id.clone(),
            last_post_at: c.last_post_at,
        })
        .collect()
}

/// Reads the result of one planner op produced.
enum OpResult {
    /// A team's followed threads since the op's cursor, and the server's count of the scope's
    /// unread followed threads (`total_unread_threads` of the first page).
    Threads {
        list: Vec<mm::ThreadResponse>,
        unread_total: Option<i64>,
        team_id: String,
        exclude_direct: bool,
    },
    Posts(mm::PostList),
}

async fn run_op(ctx: &UserCtx, op: &Op) -> Result<OpResult, SyncError> {
    match op {
        Op::Threads {
            team_id,
            since,
            exclude_direct,
        } => {
            let q = UserThreadsQuery {
                since: Some(*since),
                per_page: Some(u32::try_from(planner::PER_PAGE).unwrap_or(200)),
                exclude_direct: *exclude_direct,
                // extended=false: participants as ids only; profiles are read once, in batches.
                ..UserThreadsQuery::default()
            };
            // Pages with `before=<last id>` while a page is full (one call per 200 threads).
            let mut all = Vec::new();
            let mut q = q;
            let mut unread_total = None;
            loop {
                let page = call!(ctx, ctx.client.get_user_threads(ME, team_id, &q))?;
                if !q.threads_only {
                    unread_total.get_or_insert(page.total_unread_threads);
                }
                let n = page.threads.len();
                let last = page.threads.last().map(|t| t.id.clone());
                all.extend(page.threads);
                let total = usize::try_from(page.total).unwrap_or(0);
                // `total` counts every followed thread of the team (not only since): a full page
                // is followed by one more call only when more may exist.
                if n < planner::PER_PAGE || (q.before.is_none() && total > 0 && total <= all.len())
                {
                    break;
                }
                match last {
                    Some(id) if q.before.as_deref() != Some(id.as_str()) => {
                        q.before = Some(id);
                        q.threads_only = true;
                    }
                    _ => break,
                }
            }
            Ok(OpResult::Threads {
                list: all,
                unread_total,
                team_id: team_id.clone(),
                exclude_direct: *exclude_direct,
            })
        }
        Op::ChannelPostsSince { channel_id, since } => {
            let q = ChannelPostsQuery {
                since: Some(*since),
                ..ChannelPostsQuery::default()
            };
            let list = call!(ctx, ctx.client.get_posts_for_channel(channel_id, &q))?;
            Ok(OpResult::Posts(list))
        }
    }
}

/// Run ops with bounded concurrency; results in op order.
async fn run_ops(ctx: &UserCtx, ops: &[Op]) -> Result<Vec<OpResult>, SyncError> {
    let futs: Vec<BoxFuture<'_, Result<OpResult, SyncError>>> =
        ops.iter().map(|op| run_op(ctx, op).boxed()).collect();
    bounded(futs).await
}

/// Run futures with at most [`SYNC_CONCURRENCY`] in flight; results in order, first error wins.
async fn bounded<T>(futs: Vec<BoxFuture<'_, Result<T, SyncError>>>) -> Result<Vec<T>, SyncError> {
    stream::iter(futs)
        .buffered(SYNC_CONCURRENCY)
        .try_collect()
        .await
}

/// Channel → (team id, type letter), from the channel list just read.
fn channel_map(channels: &[mm::Channel]) -> HashMap<String, (String, String)> {
    channels
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                (c.team_id.clone(), c.channel_type.as_str().to_owned()),
            )
        })
        .collect()
}

/// Turn op results into writes; returns the user ids worth a profile.
fn results_to_writes(
    batch: &mut Batch,
    results: Vec<OpResult>,
    chans: &HashMap<String, (String, String)>,
    me: &str,
) -> BTreeSet<String> {
    let mut people = BTreeSet::new();
    let mut threads = Vec::new();
    let mut posts = Vec::new();
    for r in results {
        match r {
            OpResult::Threads { list, .. } => {
                for t in &list {
                    let team = |c: &str| chans.get(c).map(|(t, _)| t.clone());
                    if let Some(row) = convert::thread(t, true, team) {
                        threads.push(row);
                    }
                    if let Some(root) = &t.post {
                        people.insert(root.user_id.clone());
                        posts.push(convert::post(root));
                    }
                    // The newest participants are shown on the row.
                    for p in t.participants.iter().rev().take(3) {
                        people.insert(p.id.clone());
                    }
                }
            }
            OpResult::Posts(list) => {
                for p in list.posts.values() {
                    people.insert(p.user_id.clone());
                    posts.push(convert::post(p));
                }
            }
        }
    }
    people.remove(me);
    people.remove("");
    if !posts.is_empty() {
        batch.push(Write::Posts(posts));
    }
    if !threads.is_empty() {
        batch.push(Write::Threads(threads));
    }
    people
}

/// Root posts that mention the user and have no reply yet exist only as posts: read the roots
/// (`collapsedThreads=true`) of the given channels since the given times, keep the mentions.
async fn root_mentions(
    ctx: &UserCtx,
    targets: &[(String, Millis)],
    chans: &HashMap<String, (String, String)>,
    username: &str,
    batch: &mut Batch,
    people: &mut BTreeSet<String>,
) -> Result<(), SyncError> {
    let futs: Vec<BoxFuture<'_, Result<mm::PostList, SyncError>>> = targets
        .iter()
        .map(|(id, from)| {
            let q = ChannelPostsQuery {
                since: Some(*from),
                collapsed_threads: true,
                ..ChannelPostsQuery::default()
            };
            async move {
                call!(ctx, ctx.client.get_posts_for_channel(id, &q)).map_err(SyncError::from)
            }
            .boxed()
        })
        .collect();
    let lists = bounded(futs).await?;
    let me = ctx.user_id.as_str();
    let mut mentions = Vec::new();
    let mut posts = Vec::new();
    for list in &lists {
        for p in list.posts.values() {
            if p.is_root()
                && p.reply_count == 0
                && p.user_id != me
                && p.delete_at == 0
                && convert::mentions_user(p, username)
            {
                mentions.push(crate::store::Mention {
                    post_id: p.id.clone(),
                    channel_id: p.channel_id.clone(),
                    team_id: chans
                        .get(&p.channel_id)
                        .map(|(t, _)| t.clone())
                        .unwrap_or_default(),
                    create_at: p.create_at,
                });
                posts.push(convert::post(p));
                people.insert(p.user_id.clone());
            }
        }
    }
    if !posts.is_empty() {
        batch.push(Write::Posts(posts));
        batch.push(Write::Mentions(mentions));
    }
    Ok(())
}

/// Initial sync of one user. Returns the number of REST calls it made and the DM/GM previews
/// left for after the queue is announced complete.
pub(crate) async fn initial_sync(ctx: &UserCtx) -> Result<(u64, Backfill), SyncError> {
    let started = Instant::now();
    let calls_before = ctx.calls.load(Ordering::Relaxed);
    let now = now_ms();
    let retention = ctx.settings.retention_ms;
    let since = now - retention;
    let c = &ctx.client;

    // Fixed reads, all in parallel (6 calls):
    // - /users/me: who the token belongs to (must be the user we sync) and the username for
    //   mention detection;
    // - /users/me/teams: team ids (thread lists are per team) and names for display;
    // - /users/me/teams/unread?include_collapsed_threads=true: per-team counters, the baseline
    //   an O(changed) resync compares against (research finding 4);
    // - /users/me/channels: every channel of every team plus DMs/GMs in ONE call (totals,
    //   last_post_at, types, names);
    // - /users/me/channel_members: read state of every channel (NDJSON, one call; pages of 200
    //   if the server does not stream);
    // - /users/me/preferences: ThreadDesk done/snooze marks and saved posts.
    let (me, teams, unread, channels, members, prefs) = tokio::try_join!(
        async { call!(ctx, c.get_me()).map_err(SyncError::from) },
        async { call!(ctx, c.get_teams_for_user(ME)).map_err(SyncError::from) },
        async { call!(ctx, c.get_teams_unread(ME, true)).map_err(SyncError::from) },
        async {
            call!(
                ctx,
                c.get_channels_for_user(ME, &ChannelsForUserQuery::default())
            )
            .map_err(SyncError::from)
        },
        async { all_members(ctx).await },
        async { call!(ctx, c.get_preferences(ME)).map_err(SyncError::from) },
    )?;
    if me.id != ctx.user_id.as_str() {
        return Err(SyncError::WrongUser);
    }
    let chans = channel_map(&channels);
    let team_ids: Vec<String> = teams
        .iter()
        .filter(|t| t.delete_at == 0)
        .map(|t| t.id.clone())
        .collect();
    let directs = directs_of(&channels);

    // Variable reads, planned: one thread list per team (DM/GM threads listed once), and the
    // posts of the DM/GM conversations with activity in the window (newest first, capped; the
    // rest is backfilled right after the queue is live).
    let mut ops = planner::plan_initial(&team_ids, &directs, now, retention);
    let direct_cap = ctx.settings.initial_direct_posts_max;
    let mut backfill = Vec::new();
    let mut kept_direct = 0;
    ops.retain(|op| match op {
        Op::ChannelPostsSince { .. } if kept_direct >= direct_cap => {
            backfill.push(op.clone());
            false
        }
        Op::ChannelPostsSince { .. } => {
            kept_direct += 1;
            true
        }
        Op::Threads { .. } => true,
    });
    // Root mentions without replies exist only as posts: read the roots of team channels that
    // report unread root mentions (mention_count_root > 0).
    let member_by_channel: HashMap<&str, &mm::ChannelMember> =
        members.iter().map(|m| (m.channel_id.as_str(), m)).collect();
    let mut mention_channels: Vec<(&mm::Channel, Millis)> = channels
        .iter()
        .filter(|ch| !ch.channel_type.is_direct_or_group() && ch.last_root_post_at >= since)
        .filter_map(|ch| {
            let m = member_by_channel.get(ch.id.as_str())?;
            (m.mention_count_root > 0).then_some((ch, m.last_viewed_at.max(since)))
        })
        .collect();
    mention_channels.sort_by_key(|c| std::cmp::Reverse(c.0.last_root_post_at));
    mention_channels.truncate(MENTION_CHANNELS_MAX);

    let results = run_ops(ctx, &ops).await?;
    let mention_targets: Vec<(String, Millis)> = mention_channels
        .iter()
        .map(|(ch, from)| (ch.id.clone(), *from))
        .collect();

    let mut batch = Batch::default();
    batch.push(Write::SelfProfile(convert::profile(&me)));
    batch.push(Write::Teams(teams.iter().map(convert::team).collect()));
    batch.push(Write::Channels(
        channels.iter().map(convert::channel).collect(),
    ));
    batch.push(Write::Memberships {
        rows: members.iter().map(convert::membership).collect(),
        replace_all: true,
    });
    // Every team's followed threads since `since` were listed in full (any failure fails the
    // whole sync): a stored thread followed and active since then but missing from the lists
    // was unfollowed elsewhere (what no incremental resync can see for a read thread).
    let listed: std::collections::HashSet<String> = results
        .iter()
        .filter_map(|r| match r {
            OpResult::Threads { list, .. } => Some(list.iter().map(|t| t.id.clone())),
            OpResult::Posts(_) => None,
        })
        .flatten()
        .collect();
    let mut people = results_to_writes(&mut batch, results, &chans, ctx.user_id.as_str());
    batch.push(Write::UnfollowMissing { listed, since });
    root_mentions(
        ctx,
        &mention_targets,
        &chans,
        &me.username,
        &mut batch,
        &mut people,
    )
    .await?;
    // DM partners (from the DM name), so a DM row can show who it is with.
    for ch in channels
        .iter()
        .filter(|c| c.channel_type == mm::ChannelType::Direct)
    {
        if let Some(p) = convert::dm_partner(&ch.name, &me.id)
            && p != me.id
        {
            people.insert(p);
        }
    }
    // Profiles by id, 100 per call (POST /users/ids): names and avatars of everyone shown.
    let ids: Vec<String> = people.into_iter().collect();
    let users = if ids.is_empty() {
        Vec::new()
    } else {
        let chunks: Vec<Vec<String>> = ids
            .chunks(mattermost::MAX_USER_IDS)
            .map(<[String]>::to_vec)
            .collect();
        let futs: Vec<BoxFuture<'_, Result<Vec<mm::User>, SyncError>>> = chunks
            .into_iter()
            .map(|chunk| {
                async move {
                    call!(ctx, ctx.client.get_users_by_ids(&chunk)).map_err(SyncError::from)
                }
                .boxed()
            })
            .collect();
        let lists = bounded(futs).await?;
        lists.into_iter().flatten().collect()
    };
    let mut profiles: Vec<_> = users.iter().map(convert::profile).collect();
    profiles.push(convert::profile(&me));
    batch.push(Write::Profiles(profiles));
    // Marks: the preferences are the source of truth; a full read replaces local marks.
    let marks = convert::marks(&prefs);
    batch.push(Write::Marks {
        marks: marks.into_iter().collect(),
        replace_all: true,
    });
    batch.push(Write::SavedPosts {
        post_ids: saved_posts(&prefs),
        replace_all: true,
    });
    batch.push(Write::SavedSearches(saved_searches(&prefs)));
    batch.push(Write::SyncedAt { at: now });
    let fetch_ms = started.elapsed().as_millis();
    // Events are applied by this same task after the sync, so the store now holds exactly
    // what the reads returned: the reference point for the live deltas.
    let store_now = ctx.commit_with_counters(batch, Cause::InitialSync).await?;
    let commit_ms = started.elapsed().as_millis() - fetch_ms;

    {
        let mut memo = ctx.memo();
        memo.store_counters = store_now;
        memo.username.clone_from(&me.username);
        memo.team_ids = {
            let mut t = team_ids;
            t.sort();
            t
        };
        memo.counters = unread.iter().map(counters).collect();
        memo.directs = directs;
        memo.last_synced_at = now;
    }
    save_memo(ctx).await?;
    let calls = ctx.calls.load(Ordering::Relaxed) - calls_before;
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    info!(calls, ms, fetch_ms, commit_ms, "sync: initial sync done");
    {
        let mut st = ctx.status();
        st.initial_sync_calls = calls;
        st.initial_sync_ms = ms;
        st.initial_sync_commit_ms = u64::try_from(commit_ms).unwrap_or(u64::MAX);
        st.last_sync_at = Some(now);
    }

    Ok((
        calls,
        Backfill {
            ops: backfill,
            chans,
        },
    ))
}

/// DM/GM previews left for after the queue is complete: the posts of the active
/// conversations beyond [`SyncSettings::initial_direct_posts_max`] (their items exist already;
/// only their latest messages are missing).
pub(crate) struct Backfill {
    ops: Vec<Op>,
    chans: HashMap<String, (String, String)>,
}

/// Read and store a [`Backfill`] (run once the queue is announced complete).
async fn run_backfill(ctx: &UserCtx, backfill: Backfill) -> Result<(), SyncError> {
    if backfill.ops.is_empty() {
        return Ok(());
    }
    let results = run_ops(ctx, &backfill.ops).await?;
    let mut b = Batch::default();
    let people = results_to_writes(&mut b, results, &backfill.chans, ctx.user_id.as_str());
    let unknown = {
        let store = Arc::clone(&ctx.store);
        let ids: Vec<String> = people.into_iter().collect();
        let user = ctx.user_id.clone();
        tokio::task::spawn_blocking(move || apply::unknown_profiles(&store, &user, &ids))
            .await
            .map_err(|_| SyncError::Internal("store task panicked"))??
    };
    for chunk in unknown.chunks(mattermost::MAX_USER_IDS) {
        let users = call!(ctx, ctx.client.get_users_by_ids(chunk))?;
        b.push(Write::Profiles(
            users.iter().map(convert::profile).collect(),
        ));
    }
    ctx.commit(b, Cause::InitialSync).await
}

/// Every membership in one NDJSON call; pages of 200 if the server refuses the stream.
async fn all_members(ctx: &UserCtx) -> Result<Vec<mm::ChannelMember>, SyncError> {
    match call!(ctx, ctx.client.get_channel_members_for_user_ndjson(ME)) {
        Ok(m) => Ok(m),
        Err(e) if e.is_unauthorized() || e.retry_after().is_some() => Err(e.into()),
        Err(_) => {
            let mut all = Vec::new();
            for page in 0.. {
                let batch = call!(
                    ctx,
                    ctx.client
                        .get_channel_members_for_user(ME, page, mattermost::MAX_PER_PAGE)
                )?;
                let n = batch.len();
                all.extend(batch);
                if n < mattermost::MAX_PER_PAGE as usize {
                    break;
                }
            }
            Ok(all)
        }
    }
}

/// Memberships read for one scope: a team's channels plus every DM/GM (`Some(team)`), or
/// every channel of the user (`None`).
type ScopeMembers = (Option<String>, Vec<mm::ChannelMember>);

/// The channel list a resync starts from (see [`resync`]).
enum ScopeChannels {
    /// `304`: nothing changed in the first team's channels or any DM/GM.
    Unchanged,
    /// The first team's channels plus every DM/GM (`scope` = that team), or every channel of
    /// the user when the user has no team (`scope` = `None`).
    Listed {
        scope: Option<String>,
        channels: Vec<mm::Channel>,
        etag: Option<String>,
    },
}

/// Incremental resync after events were lost: cost proportional to what changed.
///
/// Fixed part, in parallel — **3 calls when nothing changed** (research P-3 asks for 1; the
/// real API makes 1 impossible without losing correctness), plus one when the store shows an
/// unread DM/GM (below):
/// - `GET /users/me/teams/unread?include_collapsed_threads=true`: per-team counters; a team is
///   re-read only if its counters moved while events were lost (the O(changed) filter).
/// - `GET /users/me/teams/{first}/channels` with `If-None-Match`: DM/GM channels belong to no
///   team, so no team counter moves for a DM/GM message (the server's `teams/unread` joins
///   channels to teams, and its thread counters filter `ThreadTeamId IN (teams)`). This list
///   holds the first team's channels **plus every DM/GM**, and the server's ETag over it
///   (`ChannelList.Etag`: newest `last_post_at`/`update_at` + count) makes the answer an
///   empty `304` unless a DM/GM got a post or the channel set changed. No cheaper O(1)
///   signal for DM/GM activity exists (`/users/me/channels` has no ETag).
/// - `GET /users/me/preferences`: done/snooze marks and saved posts set from another device.
///   Preferences have no `since`, no ETag and move no counter, so a change made while events
///   were lost can only be seen by reading them (one call; their size depends on the user's
///   marks, never on message history).
///
/// - `GET /users/me/teams/{first}/channels/members`, only while the store shows an unread
///   DM/GM and no other membership read runs: a DM/GM read on another device changes only
///   the user's membership (no counter, no channel, no ETag), and this list holds every DM/GM
///   membership.
///
/// Variable part: per changed team one `since` thread list (+1 page per 200 threads) and,
/// only if its root counters moved or a counter went down ([`planner::needs_members`]), its
/// memberships; per changed DM/GM its posts since, plus the first team's memberships (the
/// DM/GM's read state and mention count: a DM counts as a mention, and it may have been read
/// on another device meanwhile) and — only when those posts hold a thread reply, or while the
/// store shows an unread DM/GM thread — the DM-carrying thread list
/// ([`planner::plan_direct_threads`]); profiles not yet known.
///
/// So one plain DM received while events were lost costs **5 calls** (P-12): the 3 fixed
/// reads, the memberships and the DM's posts. Each is needed for the store to equal a fresh
/// sync: the counters for team activity, the preferences for marks, the channel list for the
/// DM signal and the channel row, the memberships for read state and mentions, the posts for
/// the message (`sync_engine::dm_received_while_down_makes_exactly_the_minimum_calls`).
///
/// Known blind spots (no endpoint exposes them without reading every team): a thread
/// unfollowed elsewhere while it was read (thread lists filter `Following = true` and the
/// unread counters do not move), a fully read DM/GM marked unread elsewhere, and leaving a
/// fully read channel of a team other than the first. The next full sync, or the next event
/// of that thread or channel, corrects them. (A DM/GM **thread** read elsewhere moves no team
/// counter, no channel and no membership either; the DM-carrying thread list shows it, and is
/// read whenever the store shows such a thread unread — the only case where that read can
/// change anything.)
pub(crate) async fn resync(ctx: &UserCtx) -> Result<u64, SyncError> {
    let calls_before = ctx.calls.load(Ordering::Relaxed);
    let now = now_ms();
    let c = &ctx.client;
    let memo = ctx.memo().clone();
    let first_team = memo.team_ids.first().cloned();
    let (unread, scope, prefs) = tokio::try_join!(
        async { call!(ctx, c.get_teams_unread(ME, true)).map_err(SyncError::from) },
        async {
            match &first_team {
                Some(team) => {
                    let etag = memo
                        .channels_etag
                        .as_ref()
                        .filter(|(t, _)| t == team)
                        .map(|(_, e)| e.as_str());
                    match call!(ctx, c.get_channels_for_team_for_user(ME, team, etag)) {
                        Ok(mattermost::Conditional::NotModified) => Ok(ScopeChannels::Unchanged),
                        Ok(mattermost::Conditional::Fresh { value, etag }) => {
                            Ok(ScopeChannels::Listed {
                                scope: Some(team.clone()),
                                channels: value,
                                etag,
                            })
                        }
                        // Left (or removed from) that team while away: every channel instead.
                        Err(e) if matches!(e.status(), Some(403 | 404)) => {
                            let channels = call!(
                                ctx,
                                c.get_channels_for_user(ME, &ChannelsForUserQuery::default())
                            )?;
                            Ok(ScopeChannels::Listed {
                                scope: None,
                                channels,
                                etag: None,
                            })
                        }
                        Err(e) => Err(e.into()),
                    }
                }
                None => {
                    let channels = call!(
                        ctx,
                        c.get_channels_for_user(ME, &ChannelsForUserQuery::default())
                    )?;
                    Ok::<_, SyncError>(ScopeChannels::Listed {
                        scope: None,
                        channels,
                        etag: None,
                    })
                }
            }
        },
        async { call!(ctx, c.get_preferences(ME)).map_err(SyncError::from) },
    )?;
    // What the counters would be had only the events we applied happened (this task applies
    // events, so none is applied while we run): a team is re-read only if the server differs,
    // i.e. it changed while events were lost — not merely because it had live activity.
    let expected = planner::advance_counters(
        &memo.counters,
        &memo.store_counters,
        &store_counters(ctx).await?,
    );
    let new_counters: Vec<TeamCounters> = unread.iter().map(counters).collect();
    let mut new_team_ids: Vec<String> = new_counters.iter().map(|t| t.team_id.clone()).collect();
    new_team_ids.sort();
    new_team_ids.dedup();

    // What the store holds now: memberships (with the team of each channel).
    let stored = {
        let store = Arc::clone(&ctx.store);
        let user = ctx.user_id.clone();
        tokio::task::spawn_blocking(move || {
            let us = store.for_user(&user);
            let ms = us.memberships()?;
            let info = us.membership_channels()?;
            let unread_direct = us.has_unread_direct()?;
            let unread_direct_thread = us.has_unread_direct_thread()?;
            Ok::<_, crate::store::StoreError>((ms, info, unread_direct, unread_direct_thread))
        })
        .await
        .map_err(|_| SyncError::Internal("store task panicked"))??
    };
    let (stored_members, stored_info, unread_direct, unread_direct_thread) = stored;

    let mut batch = Batch::default();
    let (new_directs, mut member_teams) = match &scope {
        ScopeChannels::Unchanged => (memo.directs.clone(), Vec::new()),
        ScopeChannels::Listed {
            scope, channels, ..
        } => {
            batch.push(Write::Channels(
                channels.iter().map(convert::channel).collect(),
            ));
            // The channel set of the scope changed (joined / left / removed while away)?
            let listed: BTreeSet<&str> = channels.iter().map(|c| c.id.as_str()).collect();
            let in_scope: BTreeSet<&str> = stored_members
                .iter()
                .filter(|m| {
                    stored_info.get(&m.channel_id).is_some_and(|(team, _)| {
                        scope.as_ref().is_none_or(|s| team.is_empty() || team == s)
                    })
                })
                .map(|m| m.channel_id.as_str())
                .collect();
            let set_changed = listed != in_scope;
            let directs = directs_of(channels);
            let dm_moved = !planner::directs_changed(&memo.directs, &directs).is_empty();
            let mut teams = Vec::new();
            if set_changed || dm_moved {
                // DM/GM read state and mention counts, and the new membership rows.
                teams.push(scope.clone());
            }
            (directs, teams)
        }
    };
    let changed_directs = planner::directs_changed(&memo.directs, &new_directs);
    let cursors = ResyncCursors {
        last_synced_at: memo.last_synced_at,
        window_start: now - ctx.settings.retention_ms,
    };
    let ops = planner::plan_resync(&expected, &new_counters, &changed_directs, &cursors);
    debug!(ops = ops.len(), "sync: resync plan");
    let expected_by_team: HashMap<&str, &TeamCounters> =
        expected.iter().map(|t| (t.team_id.as_str(), t)).collect();
    for t in &new_counters {
        if planner::needs_members(expected_by_team.get(t.team_id.as_str()).copied(), t)
            && !member_teams.contains(&Some(t.team_id.clone()))
        {
            member_teams.push(Some(t.team_id.clone()));
        }
    }
    // DM/GM read state: a DM read on another device moves no counter and no ETag (the
    // channel does not change, only the membership), so while the store shows an unread DM/GM
    // the memberships of the first team's scope (which holds every DM/GM) are read — one call,
    // unless a membership read above already covers them.
    if unread_direct && member_teams.is_empty() {
        member_teams.push(match &scope {
            ScopeChannels::Listed { scope, .. } => scope.clone(),
            ScopeChannels::Unchanged => first_team.clone(),
        });
    }
    // A team that is new to us also needs its channel rows (names, totals).
    let new_teams: Vec<String> = new_team_ids
        .iter()
        .filter(|t| !memo.team_ids.contains(t))
        .cloned()
        .collect();
    let member_futs: Vec<BoxFuture<'_, Result<ScopeMembers, SyncError>>> = member_teams
        .iter()
        .map(|team| {
            async move {
                let rows = match team {
                    Some(t) => call!(ctx, c.get_channel_members_for_team_for_user(ME, t))?,
                    None => all_members(ctx).await?,
                };
                Ok((team.clone(), rows))
            }
            .boxed()
        })
        .collect();
    let channel_futs: Vec<BoxFuture<'_, Result<Vec<mm::Channel>, SyncError>>> = new_teams
        .iter()
        .map(|t| {
            async move {
                match call!(ctx, c.get_channels_for_team_for_user(ME, t, None))? {
                    mattermost::Conditional::Fresh { value, .. } => Ok(value),
                    mattermost::Conditional::NotModified => Ok(Vec::new()),
                }
            }
            .boxed()
        })
        .collect();
    let (mut results, member_lists, new_team_channels) = tokio::try_join!(
        run_ops(ctx, &ops),
        bounded(member_futs),
        bounded(channel_futs)
    )?;
    // DM/GM threads: listed only when a moved DM/GM's posts show a reply, or while the store
    // shows a DM/GM thread unread (it may have been read elsewhere); a plain DM needs no
    // thread list (P-12). One more round trip, only then.
    let seen: Vec<planner::DirectPostsSeen> = results
        .iter()
        .filter_map(|r| match r {
            OpResult::Posts(list) => Some(planner::DirectPostsSeen {
                posts: list.order.len(),
                has_reply: list.posts.values().any(|p| !p.is_root()),
            }),
            OpResult::Threads { .. } => None,
        })
        .collect();
    if let Some(op) = planner::plan_direct_threads(
        &ops,
        &seen,
        unread_direct_thread,
        new_team_ids.first().map(String::as_str),
        &cursors,
    ) {
        results.push(run_op(ctx, &op).await?);
    }
    let mut known: HashMap<String, (String, String)> = stored_info.clone();
    if let ScopeChannels::Listed { channels, .. } = &scope {
        known.extend(channel_map(channels));
    }
    for list in &new_team_channels {
        known.extend(channel_map(list));
        batch.push(Write::Channels(list.iter().map(convert::channel).collect()));
    }
    // Joined or left a team while away (the counters list every team of the user): one read
    // of the team list, only then.
    if new_team_ids != memo.team_ids {
        let teams = call!(ctx, ctx.client.get_teams_for_user(ME))?;
        batch.push(Write::Teams(teams.iter().map(convert::team).collect()));
    }
    // Channels met in a membership list that the store does not know (joined while away).
    let unknown_channels: BTreeSet<String> = member_lists
        .iter()
        .flat_map(|(_, rows)| rows.iter())
        .filter(|m| !known.contains_key(&m.channel_id))
        .map(|m| m.channel_id.clone())
        .collect();
    for id in unknown_channels {
        let ch = call!(ctx, ctx.client.get_channel(&id))?;
        known.extend(channel_map(std::slice::from_ref(&ch)));
        batch.push(Write::Channels(vec![convert::channel(&ch)]));
    }
    let unfollowed = unfollowed_elsewhere(ctx, &results).await?;
    let mut people = results_to_writes(&mut batch, results, &known, ctx.user_id.as_str());
    for root_id in unfollowed {
        batch.push(Write::Follow {
            root_id,
            following: false,
        });
    }
    // New root mentions (no thread yet): only channels whose unread root-mention count grew.
    let before: HashMap<&str, i64> = stored_members
        .iter()
        .map(|m| (m.channel_id.as_str(), m.mention_count_root))
        .collect();
    let since = cursors.since_for_mentions();
    let mut targets: Vec<(String, Millis)> = Vec::new();
    for (team, rows) in &member_lists {
        batch.push(Write::Memberships {
            rows: rows.iter().map(convert::membership).collect(),
            replace_all: team.is_none(),
        });
        if let Some(t) = team {
            batch.push(Write::MembershipScope {
                team_id: t.clone(),
                include_direct: true,
                keep: rows.iter().map(|m| m.channel_id.clone()).collect(),
            });
        }
        for m in rows {
            let team_channel = known
                .get(&m.channel_id)
                .is_some_and(|(_, ty)| ty != "D" && ty != "G");
            if team_channel
                && m.mention_count_root > before.get(m.channel_id.as_str()).copied().unwrap_or(0)
                && !targets.iter().any(|(c, _)| c == &m.channel_id)
            {
                targets.push((m.channel_id.clone(), since));
            }
        }
    }
    // The scope's channel list (200) without a membership read: memberships of channels no
    // longer listed are gone.
    if let ScopeChannels::Listed {
        scope: Some(team),
        channels,
        ..
    } = &scope
        && !member_lists.iter().any(|(t, _)| t.as_ref() == Some(team))
    {
        batch.push(Write::MembershipScope {
            team_id: team.clone(),
            include_direct: true,
            keep: channels.iter().map(|c| c.id.clone()).collect(),
        });
    }
    // Teams left while away: their channels' memberships went with them.
    for team in memo.team_ids.iter().filter(|t| !new_team_ids.contains(t)) {
        batch.push(Write::MembershipScope {
            team_id: team.clone(),
            include_direct: false,
            keep: Vec::new(),
        });
    }
    targets.truncate(MENTION_CHANNELS_MAX);
    root_mentions(
        ctx,
        &targets,
        &known,
        &memo.username,
        &mut batch,
        &mut people,
    )
    .await?;
    let marks = convert::marks(&prefs);
    batch.push(Write::Marks {
        marks: marks.into_iter().collect(),
        replace_all: true,
    });
    batch.push(Write::SavedPosts {
        post_ids: saved_posts(&prefs),
        replace_all: true,
    });
    batch.push(Write::SavedSearches(saved_searches(&prefs)));
    // Profiles only for people the store does not know yet.
    let unknown = {
        let store = Arc::clone(&ctx.store);
        let ids: Vec<String> = people.into_iter().collect();
        let user = ctx.user_id.clone();
        tokio::task::spawn_blocking(move || apply::unknown_profiles(&store, &user, &ids))
            .await
            .map_err(|_| SyncError::Internal("store task panicked"))??
    };
    for chunk in unknown.chunks(mattermost::MAX_USER_IDS) {
        let users = call!(ctx, ctx.client.get_users_by_ids(chunk))?;
        batch.push(Write::Profiles(
            users.iter().map(convert::profile).collect(),
        ));
    }
    batch.push(Write::SyncedAt { at: now });
    let store_now = ctx.commit_with_counters(batch, Cause::Resync).await?;
    {
        let mut m = ctx.memo();
        m.store_counters = store_now;
        m.counters = new_counters;
        m.team_ids = new_team_ids;
        m.directs = new_directs;
        m.last_synced_at = now;
        if let ScopeChannels::Listed {
            scope: Some(team),
            etag: Some(etag),
            ..
        } = &scope
        {
            m.channels_etag = Some((team.clone(), etag.clone()));
        }
    }
    let calls = ctx.calls.load(Ordering::Relaxed) - calls_before;
    info!(calls, "sync: resync done");
    {
        let mut st = ctx.status();
        st.last_resync_calls = calls;
        st.resyncs += 1;
        st.last_sync_at = Some(now);
    }
    save_memo(ctx).await?;
    Ok(calls)
}

/// Threads unfollowed elsewhere while events were lost, among the teams a resync re-read.
///
/// Thread lists only ever contain followed threads (`ThreadMemberships.Following = true` in
/// the server's `GetThreadsForUser`), so an unfollowed thread is simply absent from a `since`
/// list — as is a followed thread that did not change. The list's first page also carries
/// `total_unread_threads` for the same scope: if the store holds more unread followed
/// threads there than the server counts (after applying the list), some were unfollowed;
/// then one `unread=true` list of that scope (a page per 200 unread threads) says exactly
/// which. Costs nothing when the counts agree. A thread unfollowed while already read moves
/// no count and is not seen here (see [`resync`]).
async fn unfollowed_elsewhere(
    ctx: &UserCtx,
    results: &[OpResult],
) -> Result<Vec<String>, SyncError> {
    let scopes: Vec<(&str, bool, &[mm::ThreadResponse], i64)> = results
        .iter()
        .filter_map(|r| match r {
            OpResult::Threads {
                list,
                unread_total: Some(total),
                team_id,
                exclude_direct,
            } => Some((team_id.as_str(), *exclude_direct, list.as_slice(), *total)),
            _ => None,
        })
        .collect();
    if scopes.is_empty() {
        return Ok(Vec::new());
    }
    let stored = {
        let store = Arc::clone(&ctx.store);
        let user = ctx.user_id.clone();
        tokio::task::spawn_blocking(move || store.for_user(&user).threads())
            .await
            .map_err(|_| SyncError::Internal("store task panicked"))??
    };
    let mut gone = Vec::new();
    for (team, exclude_direct, list, server_unread) in scopes {
        let listed: std::collections::HashSet<&str> = list.iter().map(|t| t.id.as_str()).collect();
        let listed_unread = list
            .iter()
            .filter(|t| t.last_viewed_at < t.last_reply_at && t.delete_at == 0)
            .count();
        let candidates: Vec<&str> = stored
            .iter()
            .filter(|t| {
                t.following
                    && t.delete_at == 0
                    && t.last_viewed_at < t.last_reply_at
                    && (t.team_id == team || (!exclude_direct && t.team_id.is_empty()))
                    && !listed.contains(t.root_id.as_str())
            })
            .map(|t| t.root_id.as_str())
            .collect();
        let ours = i64::try_from(candidates.len() + listed_unread).unwrap_or(i64::MAX);
        if candidates.is_empty() || ours <= server_unread {
            continue;
        }
        let mut q = UserThreadsQuery {
            unread: true,
            threads_only: true,
            exclude_direct,
            per_page: Some(u32::try_from(planner::PER_PAGE).unwrap_or(200)),
            ..UserThreadsQuery::default()
        };
        let mut still = std::collections::HashSet::new();
        loop {
            let page = call!(ctx, ctx.client.get_user_threads(ME, team, &q))?;
            let n = page.threads.len();
            let last = page.threads.last().map(|t| t.id.clone());
            still.extend(page.threads.into_iter().map(|t| t.id));
            match last {
                Some(id) if n >= planner::PER_PAGE && q.before.as_deref() != Some(id.as_str()) => {
                    q.before = Some(id);
                }
                _ => break,
            }
        }
        gone.extend(
            candidates
                .into_iter()
                .filter(|r| !still.contains(*r))
                .map(str::to_owned),
        );
    }
    Ok(gone)
}

/// Persist the sync memory (and the WebSocket position, when known) after a complete sync,
/// so a restart can resume instead of syncing from scratch ([`restore`]). Written after the
/// sync's own commit: a crash in between leaves the previous memory, which can only make the
/// next resync re-read more, never less.
async fn save_memo(ctx: &UserCtx) -> Result<(), SyncError> {
    let json = serde_json::to_string(&*ctx.memo())
        .map_err(|_| SyncError::Internal("sync memory not serialisable"))?;
    let pos = ctx.ws_pos().clone();
    let store = Arc::clone(&ctx.store);
    let user = ctx.user_id.clone();
    tokio::task::spawn_blocking(move || {
        store.for_user(&user).write(|ut| {
            ut.set_sync_memo(&json)?;
            if let Some((id, next)) = &pos {
                ut.set_ws_state(id, *next)?;
            }
            Ok(())
        })
    })
    .await
    .map_err(|_| SyncError::Internal("store task panicked"))??;
    Ok(())
}

/// What a restart can resume from: the memory of the last complete sync and the WebSocket
/// position the store reflects. `None` (→ full initial sync) unless the store holds a
/// complete sync of this user inside the retention window.
async fn restore(ctx: &UserCtx) -> Option<(Memo, Option<(String, i64)>)> {
    let store = Arc::clone(&ctx.store);
    let user = ctx.user_id.clone();
    let (memo, state) = tokio::task::spawn_blocking(move || {
        let us = store.for_user(&user);
        Ok::<_, crate::store::StoreError>((us.sync_memo()?, us.sync_state()?))
    })
    .await
    .ok()?
    .ok()?;
    let memo: Memo = serde_json::from_str(&memo).ok()?;
    let window_start = now_ms() - ctx.settings.retention_ms;
    if state.last_full_sync_at <= window_start
        || memo.last_synced_at <= window_start
        || memo.username.is_empty()
    {
        return None;
    }
    let pos = (!state.ws_connection_id.is_empty() && state.ws_next_seq >= 1)
        .then_some((state.ws_connection_id, state.ws_next_seq));
    Some((memo, pos))
}

/// The user's saved searches, from a full read of the preferences (unreadable ones skipped).
fn saved_searches(prefs: &[mm::Preference]) -> Vec<crate::inbox::searches::SavedSearch> {
    prefs
        .iter()
        .filter(|p| p.category == crate::inbox::searches::SEARCH_CATEGORY)
        .filter_map(|p| crate::inbox::searches::SavedSearch::from_preference(&p.name, &p.value))
        .collect()
}

/// Post ids saved (flagged) by the user, from a full read of the preferences.
fn saved_posts(prefs: &[mm::Preference]) -> Vec<String> {
    prefs
        .iter()
        .filter(|p| p.category == "flagged_post" && p.value == "true")
        .map(|p| p.name.clone())
        .collect()
}

/// Apply one WebSocket event (one transaction) and run its follow-ups.
pub(crate) async fn apply_event(
    ctx: &UserCtx,
    ev: &mattermost::ws::WsEvent,
) -> Result<(), SyncError> {
    let username = ctx.memo().username.clone();
    let store = Arc::clone(&ctx.store);
    let user = ctx.user_id.clone();
    // Channel lookups for the event come from the store (one small read).
    let channel_ids = apply::channels_in_event(ev);
    let known =
        tokio::task::spawn_blocking(move || apply::channel_info(&store, &user, &channel_ids))
            .await
            .map_err(|_| SyncError::Internal("store task panicked"))??;
    let (batch, follow) = {
        let lookup = |id: &str| known.get(id).cloned();
        let ectx = EventCtx {
            user_id: ctx.user_id.as_str(),
            username: &username,
            now: now_ms(),
            channel: &lookup,
        };
        events::batch_for(&ectx, ev)
    };
    // Keep the DM/GM memo current so a later resync does not re-read what events delivered.
    if let mattermost::ws::Event::Posted(p) = &ev.event {
        let mut memo = ctx.memo();
        if let Some(d) = memo
            .directs
            .iter_mut()
            .find(|d| d.channel_id == p.post.channel_id)
        {
            d.last_post_at = d.last_post_at.max(p.post.create_at);
        }
    }
    let mut batch = batch;
    if let Some(seq) = ev.seq {
        let mut pos = ctx.ws_pos();
        if let Some((id, next)) = pos.as_mut() {
            *next = (*next).max(seq.saturating_add(1));
            // Persisted with the event's own writes (atomic: the position never runs ahead of
            // the store). Events that change nothing move it at the next write.
            if !batch.is_empty() {
                batch.push(Write::WsPosition {
                    connection_id: id.clone(),
                    next_seq: *next,
                });
            }
        }
    }
    ctx.commit(batch, Cause::Event).await?;
    for f in follow {
        match f {
            FollowUp::FetchChannel { channel_id } => {
                let (ch, member) = tokio::try_join!(
                    async {
                        call!(ctx, ctx.client.get_channel(&channel_id)).map_err(SyncError::from)
                    },
                    async {
                        call!(ctx, ctx.client.get_channel_member(&channel_id, ME))
                            .map_err(SyncError::from)
                    },
                )?;
                let mut b = Batch::default();
                b.push(Write::Channels(vec![convert::channel(&ch)]));
                b.push(Write::Memberships {
                    rows: vec![convert::membership(&member)],
                    replace_all: false,
                });
                if ch.channel_type.is_direct_or_group() {
                    b.touch(ItemKey::channel(&ch.id));
                    let mut memo = ctx.memo();
                    if !memo.directs.iter().any(|d| d.channel_id == ch.id) {
                        memo.directs.push(DirectChannel {
                            channel_id: ch.id.clone(),
                            last_post_at: ch.last_post_at,
                        });
                    }
                }
                ctx.commit(b, Cause::Event).await?;
            }
        }
    }
    // Joining or leaving a channel changes every item in it: ask listeners to reload.
    if matches!(
        ev.event,
        mattermost::ws::Event::UserAdded { .. } | mattermost::ws::Event::UserRemoved(_)
    ) {
        ctx.notify(Vec::new(), Cause::Event);
    }
    ctx.status().events_applied += 1;
    Ok(())
}

/// The per-user task: WebSocket first (so nothing is missed while syncing), initial sync, then
/// live events; resync when the socket reports loss.
pub(crate) async fn run_user(
    ctx: Arc<UserCtx>,
    ws_config: WsConfig,
    ws_slot: Arc<Mutex<Option<WsHandle>>>,
) {
    // A restart with an intact store resumes: the WebSocket from the saved position (the
    // server replays what was missed) or, if the server cannot, an incremental resync — never
    // a full initial sync.
    let restored = restore(&ctx).await;
    let resume_pos = restored.as_ref().and_then(|(_, pos)| pos.clone());
    let (handle, mut items) =
        WsClient::connect_resuming(ctx.client.clone(), ws_config, resume_pos.clone());
    *ws_slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle.clone());
    // The connection the store's events belong to: with one, a new `hello` is followed by a
    // Resync item (events lost); without, the first `hello` just starts the numbering.
    let known_connection = resume_pos.as_ref().map(|(id, _)| id.clone());
    *ctx.ws_pos() = resume_pos.clone();
    let mut synced = false;
    if let Some((memo, _)) = restored {
        info!(
            resumed_ws = resume_pos.is_some(),
            "sync: store intact; resuming without an initial sync"
        );
        let last = memo.last_synced_at;
        *ctx.memo() = memo;
        ctx.status().last_sync_at = Some(last);
        synced = true;
        if resume_pos.is_none() {
            // No position to resume: what happened while ThreadDesk was down comes from a
            // resync (the WebSocket is already connecting, so nothing is missed after it).
            let _ = resync_with_status(&ctx).await;
            if ctx.status().phase == Phase::NeedsSignIn {
                handle.close().await;
                return;
            }
        }
    } else {
        ctx.status().phase = Phase::InitialSync;
    }
    // Retry the initial sync with backoff until it succeeds (or the token is refused).
    let mut failures = 0u32;
    let mut backfill = None;
    while !synced {
        match initial_sync(&ctx).await {
            Ok((_, b)) => {
                synced = true;
                backfill = Some(b);
            }
            Err(e) if e.is_unauthorized() => {
                warn!("sync: token refused; user must sign in again");
                needs_sign_in(&ctx);
                handle.close().await;
                return;
            }
            Err(e) => {
                failures += 1;
                warn!(error = %e.phrase(), failures, "sync: initial sync failed; retrying");
                ctx.status().last_error = Some(e.phrase().into());
                let delay = Duration::from_millis(
                    u64::try_from(super::outbox::backoff_ms(failures, rand::random::<f64>()))
                        .unwrap_or(1_000),
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
    {
        let mut st = ctx.status();
        st.phase = Phase::Live;
        st.last_error = None;
    }
    let mut ws = WsState {
        known_connection,
        failures: 0,
    };
    // Items queued while the sync ran (connects, drops, events) are handled before the queue
    // is announced complete, so the status then says what holds now.
    while let Ok(item) = items.try_recv() {
        if handle_item(&ctx, &handle, &mut ws, item).await.is_break() {
            return;
        }
    }
    // "The queue is complete": listeners reload the whole list.
    ctx.notify(Vec::new(), Cause::InitialSync);
    if let Some(b) = backfill
        && let Err(e) = run_backfill(&ctx, b).await
    {
        // Previews only: the conversations show them once opened (web backfill).
        warn!(error = %e.phrase(), "sync: DM/GM preview backfill failed");
    }
    let mut next_full = tokio::time::Instant::now() + jittered(ctx.settings.full_sync_every);
    loop {
        tokio::select! {
            item = items.recv() => {
                let Some(item) = item else { break };
                if handle_item(&ctx, &handle, &mut ws, item).await.is_break() {
                    return;
                }
            }
            () = tokio::time::sleep_until(next_full) => {
                next_full = tokio::time::Instant::now() + jittered(ctx.settings.full_sync_every);
                if periodic_full_sync(&ctx).await.is_break() {
                    handle.close().await;
                    return;
                }
            }
        }
    }
    ctx.status().phase = Phase::Stopped;
}

/// `every` ± 25 %.
fn jittered(every: Duration) -> Duration {
    every.mul_f64(0.75 + rand::random::<f64>() * 0.5)
}

/// A full sync of a live user (see [`super::SyncSettings::full_sync_every`]): the same reads
/// as the initial sync, applied idempotently; events that arrive meanwhile wait in the
/// WebSocket queue and are applied after it. `Break` when the token was refused.
async fn periodic_full_sync(ctx: &Arc<UserCtx>) -> ControlFlow<()> {
    if ctx.status().phase != Phase::Live {
        return ControlFlow::Continue(());
    }
    match initial_sync(ctx).await {
        Ok((_, backfill)) => {
            {
                let mut st = ctx.status();
                st.periodic_full_syncs += 1;
                st.phase = Phase::Live;
                st.last_error = None;
            }
            info!("sync: periodic full sync done");
            ctx.notify(Vec::new(), Cause::Resync);
            if let Err(e) = run_backfill(ctx, backfill).await {
                warn!(error = %e.phrase(), "sync: DM/GM preview backfill failed");
            }
            ControlFlow::Continue(())
        }
        Err(e) if e.is_unauthorized() => {
            warn!("sync: token refused; user must sign in again");
            needs_sign_in(ctx);
            ControlFlow::Break(())
        }
        Err(e) => {
            // The live stream goes on; the next period tries again.
            warn!(error = %e.phrase(), "sync: periodic full sync failed");
            let mut st = ctx.status();
            st.phase = Phase::Live;
            st.last_error = Some(e.phrase().into());
            ControlFlow::Continue(())
        }
    }
}

/// What the item loop of [`run_user`] remembers between items.
struct WsState {
    /// The connection the store's events belong to: with one, a new `hello` is followed by a
    /// Resync item (events lost); without, the first `hello` just starts the numbering.
    known_connection: Option<String>,
    /// Consecutive failed (re)connects since the last established connection.
    failures: u32,
}

/// Handle one item of the WebSocket task. `Break`: the user's task ends.
async fn handle_item(
    ctx: &Arc<UserCtx>,
    handle: &WsHandle,
    ws: &mut WsState,
    item: WsItem,
) -> ControlFlow<()> {
    let ctx = &**ctx;
    match item {
        WsItem::Connected {
            connection_id,
            resumed,
        } => {
            debug!(connection.id = %connection_id, resumed, "sync: websocket connected");
            ws.failures = 0;
            if !resumed {
                *ctx.ws_pos() = Some((connection_id.clone(), 1));
                if ws.known_connection.is_none() {
                    // The first connection of a store synced from scratch (the sync ran
                    // after it opened): the store reflects everything before its events.
                    let _ = save_memo(ctx).await;
                }
            }
            ws.known_connection = Some(connection_id);
            let mut st = ctx.status();
            st.connected = true;
            st.phase = Phase::Live;
        }
        WsItem::Event(ev) => {
            if let Err(e) = apply_event(ctx, &ev).await {
                warn!(event = ev.event.name(), error = %e.phrase(), "sync: event not applied; resyncing");
                let _ = resync_with_status(ctx).await;
            }
        }
        WsItem::Resync { reason } => {
            debug!(?reason, "sync: events lost");
            let _ = resync_with_status(ctx).await;
        }
        WsItem::Disconnected { error } => {
            let unauthorized = error.is_unauthorized();
            {
                let mut st = ctx.status();
                st.connected = false;
                st.phase = if unauthorized {
                    Phase::NeedsSignIn
                } else {
                    Phase::Reconnecting
                };
                st.last_error = Some(
                    if unauthorized {
                        "Mattermost refused the token"
                    } else {
                        "WebSocket disconnected"
                    }
                    .into(),
                );
            }
            ws.failures = ws.failures.saturating_add(1);
            // A token Mattermost no longer accepts does not fail the upgrade: the server
            // opens an unauthenticated socket and closes it silently (its WebSocket route
            // does not require a session), so reconnecting would go on forever. After a
            // few failures in a row (then at 4, 8, 16 … to bound the cost during an
            // outage), ask REST who we are: a 401 parks the user like any REST 401.
            if !unauthorized
                && ws.failures >= WS_FAILURES_BEFORE_TOKEN_CHECK
                && ws.failures.is_power_of_two()
            {
                ctx.count_call();
                match ctx.client.get_me().await {
                    Err(e) if e.is_unauthorized() => {
                        warn!(
                            "sync: websocket keeps closing and Mattermost refuses the token; user must sign in again"
                        );
                        needs_sign_in(ctx);
                        handle.close().await;
                        return ControlFlow::Break(());
                    }
                    Err(e) => debug!(error = %e, "sync: token check failed"),
                    Ok(_) => {}
                }
            }
        }
    }
    ControlFlow::Continue(())
}

/// Consecutive WebSocket failures after which the token is checked over REST.
pub const WS_FAILURES_BEFORE_TOKEN_CHECK: u32 = 2;

/// Mark the user as having to sign in again (the web layer then ends their sessions; the
/// engine's `park_refused` stops what is left).
fn needs_sign_in(ctx: &UserCtx) {
    let mut st = ctx.status();
    st.phase = Phase::NeedsSignIn;
    st.connected = false;
    st.last_error = Some("Mattermost refused the token".into());
}

async fn resync_with_status(ctx: &UserCtx) -> Result<(), SyncError> {
    ctx.status().phase = Phase::Resyncing;
    let r = resync(ctx).await;
    {
        let mut st = ctx.status();
        match &r {
            Ok(_) => {
                st.phase = Phase::Live;
                st.last_error = None;
            }
            Err(e) => {
                st.phase = if e.is_unauthorized() {
                    Phase::NeedsSignIn
                } else {
                    Phase::Live
                };
                st.last_error = Some(e.phrase().into());
            }
        }
    }
    if r.is_ok() {
        // The resync may have changed many items: listeners reload (the status is final).
        ctx.notify(Vec::new(), Cause::Resync);
    }
    r.map(|_| ())
}

/// Per-user runtime held by the engine.
pub(crate) struct UserEntry {
    pub ctx: Arc<UserCtx>,
    pub task: tokio::task::JoinHandle<()>,
    pub ws: Arc<Mutex<Option<WsHandle>>>,
}

/// Shared engine state.
pub(crate) struct Inner {
    pub store: Arc<Store>,
    pub settings: SyncSettings,
    pub limiter: RateLimiter,
    pub changes: broadcast::Sender<ItemChanged>,
    pub searches: broadcast::Sender<String>,
    pub users: Mutex<HashMap<String, UserEntry>>,
    pub outbox_wake: Notify,
}

impl Inner {
    pub fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserEntry>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn ctx(&self, user_id: &str) -> Option<Arc<UserCtx>> {
        self.users().get(user_id).map(|e| Arc::clone(&e.ctx))
    }
}

pub(crate) fn new_inner(store: Arc<Store>, settings: SyncSettings, limiter: RateLimiter) -> Inner {
    let (changes, _) = broadcast::channel(CHANGES_CAPACITY);
    let (searches, _) = broadcast::channel(SEARCHES_CAPACITY);
    Inner {
        store,
        settings,
        limiter,
        changes,
        searches,
        users: Mutex::new(HashMap::new()),
        outbox_wake: Notify::new(),
    }
}

pub(crate) fn spawn_user(inner: &Arc<Inner>, user_id: UserId, client: Client) -> Arc<UserCtx> {
    let client = client.with_user_key(user_id.as_str().to_owned());
    let ctx = Arc::new(UserCtx {
        user_id: user_id.clone(),
        client,
        store: Arc::clone(&inner.store),
        settings: inner.settings.clone(),
        changes: inner.changes.clone(),
        searches: inner.searches.clone(),
        status: Mutex::new(UserStatus {
            user_id: user_id.as_str().to_owned(),
            ..UserStatus::default()
        }),
        calls: AtomicU64::new(0),
        memo: Mutex::new(Memo::default()),
        ws_pos: Mutex::new(None),
    });
    let ws_slot = Arc::new(Mutex::new(None));
    let span = info_span!("sync_user", user.id = %user_id.as_str());
    let task = tokio::spawn(
        run_user(
            Arc::clone(&ctx),
            inner.settings.ws.clone(),
            Arc::clone(&ws_slot),
        )
        .instrument(span),
    );
    let old = inner.users().insert(
        user_id.as_str().to_owned(),
        UserEntry {
            ctx: Arc::clone(&ctx),
            task,
            ws: ws_slot,
        },
    );
    if let Some(old) = old {
        old.task.abort();
    }
    ctx
}
