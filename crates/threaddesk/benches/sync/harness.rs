//! Shared by the `sync` bench (`cargo bench -p threaddesk --bench sync`) and its quick smoke
//! test (`tests/bench_smoke.rs`, included with `#[path]`): start mmsim with a seeded org, run
//! ThreadDesk's sync engine against it over loopback, and measure with mmsim's own per-route
//! counters (never the engine's self-reported numbers).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mattermost::{Client, Secret};
use threaddesk::store::{Store, UserId};
use threaddesk::sync::ratelimit::{LimiterSettings, RateLimiter};
use threaddesk::sync::{Cause, ItemChanged, Phase, SyncEngine, SyncSettings};
use tokio::sync::broadcast;

/// A running simulator with the benchmark user (`alice`) signed in.
pub struct Org {
    pub running: mmsim::Running,
    pub user: UserId,
    pub token: String,
    /// Time to seed the org and bind (ms).
    pub seed_ms: f64,
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Start mmsim with `size` on a loopback port and log the benchmark user in.
pub async fn start_org(size: mmsim::seed::Size) -> Result<Org> {
    let t = Instant::now();
    let running = mmsim::start(
        mmsim::SimConfig {
            size,
            ..mmsim::SimConfig::default()
        },
        0,
    )
    .await?;
    let seed_ms = ms(t.elapsed());
    let base = Client::builder(&running.url).build()?;
    let login = base
        .login(
            mmsim::seed::DEMO_USERNAME,
            &Secret::new(mmsim::seed::DEMO_PASSWORD),
        )
        .await?;
    Ok(Org {
        user: UserId::parse(&login.user.id)?,
        token: login.token.expose().to_owned(),
        running,
        seed_ms,
    })
}

impl Org {
    pub fn sim(&self) -> &mmsim::Sim {
        &self.running.sim
    }

    /// Fixed latency added by mmsim to every API call (the benchmark uses 20 ms).
    pub fn set_latency(&self, latency: Duration) {
        self.sim().inner().faults.set_latency(latency);
    }
}

/// REST calls and response bytes seen by mmsim since the last reset. The WebSocket upgrade is
/// not a REST call and is left out (reported separately).
#[derive(Clone, Debug, Default)]
pub struct Rest {
    pub calls: u64,
    pub bytes: u64,
    pub ws_upgrades: u64,
    pub ws_events: u64,
    pub routes: BTreeMap<String, u64>,
}

pub fn rest(sim: &mmsim::Sim) -> Rest {
    let m = sim.inner().metrics.snapshot();
    let mut r = Rest {
        ws_events: m.ws_events_sent,
        ..Rest::default()
    };
    for (route, c) in &m.routes {
        if route.contains("/websocket") {
            r.ws_upgrades += c.requests;
            continue;
        }
        r.calls += c.requests;
        r.bytes += c.response_bytes;
        r.routes.insert(route.clone(), c.requests);
    }
    r
}

/// Engine settings for the bench: production defaults, except a fast WebSocket reconnect so
/// reconnect/resync runs do not wait out the 3 s production backoff.
pub fn settings() -> SyncSettings {
    let mut s = SyncSettings::default();
    s.ws.min_backoff = Duration::from_millis(20);
    s.ws.max_backoff = Duration::from_millis(100);
    s.ws.backoff_jitter = Duration::from_millis(5);
    s
}

/// The production limiter (config defaults: 10 r/s, burst 100, 4 reads in flight).
pub fn limiter() -> RateLimiter {
    RateLimiter::new(LimiterSettings {
        max_concurrency: 4,
        ..LimiterSettings::default()
    })
}

/// A store + engine syncing the benchmark user.
pub struct Synced {
    _dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub engine: SyncEngine,
}

/// One initial-sync measurement.
#[derive(Clone, Debug, Default)]
pub struct InitialSample {
    /// From `start_user` to the engine's "queue complete, live" notice.
    pub wall_ms: f64,
    /// The engine's own figure (queue complete; before the DM/GM preview backfill).
    pub engine_ms: f64,
    pub engine_commit_ms: f64,
    pub engine_calls: u64,
    /// mmsim's counters when the engine announced the queue complete.
    pub rest_at_complete: Rest,
    /// mmsim's counters once the sync's calls stopped (after the deferred DM/GM previews).
    pub rest: Rest,
    pub threads: usize,
    pub items: usize,
    /// VmHWM − VmRSS before the sync (KiB), after resetting the peak; `None` if unavailable.
    pub peak_rss_growth_kib: Option<u64>,
    pub vm_hwm_kib: Option<u64>,
}

/// `VmRSS` / `VmHWM` of this process in KiB.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Reset the peak RSS (`VmHWM`) to the current RSS (Linux: `echo 5 > /proc/self/clear_refs`).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Wait for an item-changed notice matching `pred`.
pub async fn wait_notice(
    rx: &mut broadcast::Receiver<ItemChanged>,
    timeout: Duration,
    pred: impl Fn(&ItemChanged) -> bool,
) -> Result<()> {
    tokio::time::timeout(timeout, async {
        loop {
            match rx.recv().await {
                Ok(c) if pred(&c) => return Ok(()),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => bail!("engine closed"),
            }
        }
    })
    .await
    .context("timed out")?
}

/// Initial sync of the benchmark user into a fresh store, measured from mmsim's counters.
pub async fn initial_sync(org: &Org, timeout: Duration) -> Result<(Synced, InitialSample)> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(dir.path())?);
    let engine = SyncEngine::new(Arc::clone(&store), settings(), limiter());
    let mut rx = engine.subscribe();
    let base = Client::builder(&org.running.url)
        .request_gate(engine.request_gate())
        .request_timeout(Duration::from_secs(60))
        .build()?;
    let peak_reset = reset_peak_rss();
    let rss_before = proc_status_kib("VmRSS:");
    org.sim().inner().metrics.reset();
    let started = Instant::now();
    engine.start_user(&org.user, base.with_token(org.token.clone()));
    let uid = org.user.as_str().to_owned();
    wait_notice(&mut rx, timeout, |c| {
        c.user_id == uid && c.key.is_none() && c.cause == Cause::InitialSync
    })
    .await
    .context("initial sync")?;
    let wall_ms = ms(started.elapsed());
    let rest_at_complete = rest(org.sim());
    // Work the engine does after announcing the queue (the older DM/GM previews) is part of
    // the initial sync's cost: count until mmsim has seen no call for 500 ms.
    let mut last = rest_at_complete.calls;
    let mut quiet_since = Instant::now();
    let quiesce_deadline = Instant::now() + Duration::from_secs(60);
    while quiet_since.elapsed() < Duration::from_millis(500) && Instant::now() < quiesce_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = rest(org.sim()).calls;
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    let rest = rest(org.sim());
    let hwm = proc_status_kib("VmHWM:");
    let st = engine.user_status(&org.user).context("status")?;
    if st.phase != Phase::Live {
        bail!("engine phase {:?} after initial sync", st.phase);
    }
    let export = store.for_user(&org.user).export()?;
    let sample = InitialSample {
        wall_ms,
        engine_ms: st.initial_sync_ms as f64,
        engine_commit_ms: st.initial_sync_commit_ms as f64,
        engine_calls: st.initial_sync_calls,
        rest_at_complete,
        rest,
        threads: export.threads.len(),
        items: export.items.len(),
        peak_rss_growth_kib: match (peak_reset, rss_before, hwm) {
            (true, Some(b), Some(h)) => Some(h.saturating_sub(b)),
            _ => None,
        },
        vm_hwm_kib: hwm,
    };
    Ok((
        Synced {
            _dir: dir,
            store,
            engine,
        },
        sample,
    ))
}

/// `(root id, replier id)` of followed threads, per team id.
pub type TeamThreads = Vec<(String, Vec<(String, String)>)>;

/// Followed team threads of the store, grouped by team: `(team, [(root, replier)])`, where the
/// replier is a participant other than the user (or the root's author).
pub fn followed_by_team(s: &Synced, user: &UserId) -> Result<TeamThreads> {
    let us = s.store.for_user(user);
    let mut by_team: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for t in us.threads()? {
        if t.team_id.is_empty() || !t.following || t.delete_at != 0 {
            continue;
        }
        let ids: Vec<String> = serde_json::from_str(t.participants.expose()).unwrap_or_default();
        let replier = ids.into_iter().find(|p| p != user.as_str()).or_else(|| {
            us.post(&t.root_id)
                .ok()
                .flatten()
                .map(|p| p.user_id)
                .filter(|a| a != user.as_str())
        });
        if let Some(r) = replier {
            by_team.entry(t.team_id).or_default().push((t.root_id, r));
        }
    }
    // Teams with the most followed threads first (all equal in the `large` org).
    let mut v: Vec<_> = by_team.into_iter().collect();
    v.sort_by_key(|(_, list)| std::cmp::Reverse(list.len()));
    Ok(v)
}

/// One reconnect measurement (P-3 with a lost replay buffer, P-4 with replay).
#[derive(Clone, Debug, Default)]
pub struct ReconnectSample {
    pub k: usize,
    /// REST calls / bytes from the end of the outage until converged.
    pub rest: Rest,
    /// From the end of the outage (socket may reconnect) until the engine converged.
    pub wall_ms: f64,
    /// From the engine's phase turning `Resyncing` (first seen by a 2 ms poll) until it is done:
    /// the resync itself, without the WebSocket reconnect before it.
    pub resync_ms: Option<f64>,
    /// The engine's own resync call count (0 for replay).
    pub engine_calls: u64,
    /// Changed threads whose new reply is in the store.
    pub converged: usize,
    pub resynced: bool,
}

/// Cut the user's WebSocket (an outage refuses reconnects meanwhile), let other users reply in
/// `k` followed threads spread over `c` teams, optionally lose the server's replay buffers, end
/// the outage and measure until the engine has converged.
///
/// `offset` rotates which threads are touched between runs.
pub async fn reconnect_after_changes(
    org: &Org,
    s: &Synced,
    k: usize,
    c: usize,
    lose_buffer: bool,
    offset: usize,
    timeout: Duration,
) -> Result<ReconnectSample> {
    let sim = org.sim();
    let user = &org.user;
    let by_team = followed_by_team(s, user)?;
    if k > 0 && by_team.len() < c {
        bail!("only {} teams with followed threads", by_team.len());
    }
    let mut targets: Vec<(String, String)> = Vec::new();
    if k > 0 {
        let teams: Vec<_> = (0..c)
            .map(|i| &by_team[(offset + i) % by_team.len()])
            .collect();
        for (i, (_, list)) in teams.iter().enumerate() {
            let n = k / c + usize::from(i < k % c);
            if list.len() < n {
                bail!("team has {} followed threads, need {n}", list.len());
            }
            let start = (offset * 7) % list.len();
            targets.extend((0..n).map(|j| list[(start + j) % list.len()].clone()));
        }
    }
    let resyncs_before = s.engine.user_status(user).map_or(0, |st| st.resyncs);
    // Socket down, reconnects refused until the outage ends.
    sim.outage(Duration::from_secs(120));
    let t_change = now_ms();
    let driver = mmsim::driver::Driver::new(sim);
    for (root, replier) in &targets {
        driver
            .reply(replier, root, "bench: reply while away")
            .map_err(|e| anyhow::anyhow!("driver reply: {e}"))?;
    }
    if lose_buffer {
        sim.lose_replay_buffers();
    }
    // Let the engine's refused reconnect attempts settle, then count from the end of the outage.
    tokio::time::sleep(Duration::from_millis(50)).await;
    sim.inner().metrics.reset();
    let started = Instant::now();
    sim.inner().faults.end_outage();
    let deadline = started + timeout;
    let converged_count = |targets: &[(String, String)]| -> usize {
        let us = s.store.for_user(user);
        targets
            .iter()
            .filter(|(root, _)| {
                us.thread(root)
                    .ok()
                    .flatten()
                    .is_some_and(|t| t.last_reply_at >= t_change)
            })
            .count()
    };
    let mut resync_seen: Option<Instant> = None;
    let (wall_ms, resynced) = loop {
        let st = s.engine.user_status(user).context("status")?;
        if st.phase == Phase::Resyncing && resync_seen.is_none() {
            resync_seen = Some(Instant::now());
        }
        let done = if lose_buffer {
            st.resyncs > resyncs_before && st.phase == Phase::Live
        } else {
            st.connected && st.phase == Phase::Live && converged_count(&targets) == targets.len()
        };
        if done {
            let resync_ms = resync_seen.map(|t| ms(t.elapsed()));
            break (
                (ms(started.elapsed()), resync_ms),
                st.resyncs > resyncs_before,
            );
        }
        if Instant::now() > deadline {
            bail!(
                "not converged within {timeout:?} (phase {:?}, resyncs {}, {}/{} threads)",
                st.phase,
                st.resyncs,
                converged_count(&targets),
                targets.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    // Catch stray follow-up calls right after convergence.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rest = rest(sim);
    let st = s.engine.user_status(user).context("status")?;
    Ok(ReconnectSample {
        k,
        rest,
        wall_ms: wall_ms.0,
        resync_ms: wall_ms.1,
        engine_calls: if resynced { st.last_resync_calls } else { 0 },
        converged: converged_count(&targets),
        resynced,
    })
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
