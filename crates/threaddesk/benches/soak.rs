//! Reliability soak (issue #6): many users at once, each with a Mattermost WebSocket (held by
//! ThreadDesk) and a browser live stream (SSE, held by this process), activity from mmsim's
//! driver and random faults, for a bounded time. Every event must arrive; memory must stay flat.
//!
//! ```text
//! cargo bench -p threaddesk --bench soak -- --users 200 --minutes 3
//! ```
//!
//! Options: `--users N` (200), `--minutes M` (3, fractions allowed), `--rate R` DMs per second
//! (20), `--fault-every S` seconds between faults (8), `--seed X` (1).
//!
//! ThreadDesk runs as a child process (the real `threaddesk serve`), so its RSS is its own;
//! mmsim runs in this process with `seed::add_scale_users` users. The driver sends DMs from
//! `scalebot` to random users. An event has *arrived* when the user's live stream shows the DM
//! conversation with a `last_activity_at` at least the post's `create_at`: either in an `item`
//! event, or — after a `reload` event or a reconnect of the stream, as the page does — in the
//! items list it then re-reads. At the end every sent post must also be in ThreadDesk's store.
//! Faults: one user's sockets dropped, all sockets dropped, server restart (replay buffers
//! lost), outages (503 / connection reset), 10 % 5xx, 429 storms.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

struct Args {
    users: usize,
    minutes: f64,
    rate: f64,
    fault_every: f64,
    seed: u64,
}

fn args() -> Result<Args> {
    let mut a = Args {
        users: 200,
        minutes: 3.0,
        rate: 20.0,
        fault_every: 8.0,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--users" => a.users = val()?.parse()?,
            "--minutes" => a.minutes = val()?.parse()?,
            "--rate" => a.rate = val()?.parse()?,
            "--fault-every" => a.fault_every = val()?.parse()?,
            "--seed" => a.seed = val()?.parse()?,
            "--bench" => {} // cargo bench passes this
            other => bail!("unknown option {other}"),
        }
    }
    ensure!(
        a.users > 0 && a.minutes > 0.0 && a.rate > 0.0,
        "bad options"
    );
    Ok(a)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn rss_kib(pid: &str) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` field in KiB (`RssAnon:` is the heap and stacks: the RSS without the
/// store's memory-mapped file pages, which the OS shares and reclaims).
fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let m = kib as f64 / 1024.0;
    format!("{m:.1} MiB")
}

/// `threaddesk serve` as a child process with a fresh data dir.
struct Td {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Drop for Td {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Td {
    async fn spawn(mm_url: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let log = dir.path().join("threaddesk.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_threaddesk"));
        for (k, _) in std::env::vars() {
            if k.starts_with("THREADDESK_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .env("THREADDESK_MATTERMOST_URL", mm_url)
            .env("THREADDESK_PUBLIC_URL", &url)
            .env("THREADDESK_LISTEN", format!("127.0.0.1:{port}"))
            .env("THREADDESK_DATA_DIR", dir.path().join("data"))
            .env("THREADDESK_SIGN_IN_METHODS", "token")
            .env("THREADDESK_LOG", "warn")
            // mmsim does not rate-limit here; ThreadDesk's own budget is lifted so that the
            // initial sync of every user does not take minutes (the faults bring 429s anyway).
            .env("THREADDESK_MATTERMOST_RATE_LIMIT", "10000")
            .env("THREADDESK_MATTERMOST_RATE_BURST", "100000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let child = cmd.spawn().context("while starting threaddesk")?;
        let td = Self {
            child,
            url,
            dir,
            log,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", td.url)).send().await
                && r.status().is_success()
            {
                return Ok(td);
            }
            ensure!(Instant::now() < deadline, "threaddesk did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

/// Sign in through the personal-token form; returns the `Cookie` header of the session.
async fn sign_in(http: &reqwest::Client, base: &str, token: &str) -> Result<String> {
    let mut jar: Vec<(String, String)> = Vec::new();
    let take = |r: &reqwest::Response, jar: &mut Vec<(String, String)>| {
        for v in r.headers().get_all(reqwest::header::SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            if let Some((k, val)) = v.split(';').next().and_then(|c| c.split_once('=')) {
                jar.retain(|(n, _)| n != k);
                if !val.is_empty() && !v.contains("Max-Age=0") {
                    jar.push((k.to_owned(), val.to_owned()));
                }
            }
        }
    };
    let header = |jar: &[(String, String)]| {
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let r = http.get(format!("{base}/signin")).send().await?;
    take(&r, &mut jar);
    let pre = jar
        .iter()
        .find(|(k, _)| k.ends_with("td_pre"))
        .map(|(_, v)| v.clone())
        .context("no pre-sign-in cookie")?;
    let r = http
        .post(format!("{base}/auth/token"))
        .header(reqwest::header::COOKIE, header(&jar))
        .form(&[("token", token), ("csrf", pre.as_str())])
        .send()
        .await?;
    ensure!(
        r.status().as_u16() == 303,
        "sign-in answered {}",
        r.status()
    );
    take(&r, &mut jar);
    Ok(header(&jar))
}

/// One simulated user: the DM conversation the driver writes to, what was sent, what arrived.
struct User {
    username: String,
    cookie: String,
    dm_key: String,
    /// Highest `last_activity_at` of the DM conversation seen by the live stream.
    seen: AtomicI64,
    /// Sent and not yet seen: (create_at, sent instant).
    pending: Mutex<VecDeque<(i64, Instant)>>,
    post_ids: Mutex<Vec<String>>,
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    live: AtomicU64,
    recovered: AtomicU64,
    frames: AtomicU64,
    reloads: AtomicU64,
    stream_drops: AtomicU64,
    http_errors: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

impl User {
    /// Mark every pending post up to `last_activity_at` as arrived.
    fn saw(&self, last_activity_at: i64, live: bool, stats: &Stats) {
        self.seen.fetch_max(last_activity_at, Ordering::SeqCst);
        let seen = self.seen.load(Ordering::SeqCst);
        let mut p = lock(&self.pending);
        let now = Instant::now();
        while p.front().is_some_and(|(at, _)| *at <= seen) {
            let (_, sent) = p.pop_front().unwrap();
            if live {
                stats.live.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.recovered.fetch_add(1, Ordering::Relaxed);
            }
            lock(&stats.latencies_us)
                .push(u64::try_from(now.duration_since(sent).as_micros()).unwrap_or(u64::MAX));
        }
    }
}

/// Re-read the items list (what the page does after a reconnect or a `reload`).
async fn reconcile(http: &reqwest::Client, base: &str, u: &User, stats: &Stats) {
    let r = http
        .get(format!("{base}/api/v1/items?limit=200"))
        .header(reqwest::header::COOKIE, &u.cookie)
        .send()
        .await;
    let Ok(r) = r else {
        stats.http_errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Ok(v) = r.json::<Value>().await else {
        stats.http_errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    for item in v["items"].as_array().into_iter().flatten() {
        if item["key"] == u.dm_key.as_str()
            && let Some(at) = item["last_activity_at"].as_i64()
        {
            u.saw(at, false, stats);
        }
    }
}

/// The browser live stream of one user, reconnecting like `EventSource` (then reconciling).
async fn stream(
    http: reqwest::Client,
    base: String,
    u: Arc<User>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let mut first = true;
    while !stop.load(Ordering::SeqCst) {
        let r = http
            .get(format!("{base}/api/v1/events"))
            .header(reqwest::header::COOKIE, &u.cookie)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await;
        let Ok(r) = r.and_then(reqwest::Response::error_for_status) else {
            stats.http_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if !first {
            reconcile(&http, &base, &u, &stats).await;
        }
        first = false;
        let mut body = r.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let next = tokio::select! {
                n = body.next() => n,
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    if stop.load(Ordering::SeqCst) { return; }
                    continue;
                }
            };
            let Some(Ok(chunk)) = next else { break };
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = buf.drain(..end + 2).collect();
                let frame = String::from_utf8_lossy(&frame);
                let mut event = "message";
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = e.trim();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                match event {
                    "item" => {
                        stats.frames.fetch_add(1, Ordering::Relaxed);
                        let Ok(v) = serde_json::from_str::<Value>(&data) else {
                            continue;
                        };
                        if v["key"] == u.dm_key.as_str()
                            && let Some(at) = v["item"]["last_activity_at"].as_i64()
                        {
                            u.saw(at, true, &stats);
                        }
                    }
                    "reload" => {
                        stats.reloads.fetch_add(1, Ordering::Relaxed);
                        reconcile(&http, &base, &u, &stats).await;
                    }
                    _ => {}
                }
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        stats.stream_drops.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn percentile(v: &mut [u64], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    Duration::from_micros(v[i])
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let t_setup = Instant::now();
    let sim = mmsim::start(mmsim::SimConfig::default(), 0).await?;
    let scale = sim
        .sim
        .with_state(|s| mmsim::seed::add_scale_users(s, a.users));
    let td = Td::spawn(&sim.url).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(a.users + 16)
        .build()?;

    // Sign everyone in (8 at a time), then wait for each user's DM conversation in the queue.
    let mut users: Vec<Arc<User>> = Vec::new();
    for chunk in scale.chunks(8) {
        let mut joins = Vec::new();
        for su in chunk {
            let (http, base, token) = (http.clone(), td.url.clone(), su.token.clone());
            joins.push(tokio::spawn(
                async move { sign_in(&http, &base, &token).await },
            ));
        }
        for (su, j) in chunk.iter().zip(joins) {
            let cookie = j.await??;
            let dm = sim.sim.with_state(|s| {
                let bot = s.find_user(mmsim::seed::SCALE_BOT)?;
                let me = s.find_user(&su.username)?;
                s.direct_channel(bot, me).ok()
            });
            users.push(Arc::new(User {
                username: su.username.clone(),
                cookie,
                dm_key: format!("c_{}", dm.context("no DM channel")?),
                seen: AtomicI64::new(0),
                pending: Mutex::new(VecDeque::new()),
                post_ids: Mutex::new(Vec::new()),
            }));
        }
    }
    let stats = Arc::new(Stats::default());
    for u in &users {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            reconcile(&http, &td.url, u, &stats).await;
            if u.seen.load(Ordering::SeqCst) > 0 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{}: initial sync never showed the DM",
                u.username
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut streams = Vec::new();
    for u in &users {
        streams.push(tokio::spawn(stream(
            http.clone(),
            td.url.clone(),
            Arc::clone(u),
            Arc::clone(&stats),
            Arc::clone(&stop),
        )));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let setup = t_setup.elapsed();
    let pid = td.pid();
    let rss_start = rss_kib(&pid);
    let anon_start = status_kib(&pid, "RssAnon:");
    let self_start = rss_kib("self");
    eprintln!(
        "soak: {} users signed in, synced and streaming after {setup:.1?}; ThreadDesk RSS {}",
        users.len(),
        mib(rss_start)
    );

    // Activity + faults for the duration.
    let duration = Duration::from_secs_f64(a.minutes * 60.0);
    let mut rng = StdRng::seed_from_u64(a.seed);
    let bot = mmsim::seed::SCALE_BOT;
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let mut next_fault = started + Duration::from_secs_f64(a.fault_every);
    let mut next_sample = started;
    let mut rss_max = rss_start;
    let mut rss_samples: Vec<(u64, u64)> = Vec::new();
    let mut faults: HashMap<&'static str, u64> = HashMap::new();
    let mut seq = 0u64;
    while started.elapsed() < duration {
        let u = &users[rng.random_range(0..users.len())];
        seq += 1;
        let msg = format!("soak {seq}");
        let username = u.username.clone();
        let sent_at = Instant::now();
        let made = sim.sim.with_state(|s| {
            let b = s.find_user(bot)?;
            let me = s.find_user(&username)?;
            let ch = s.direct_channel(b, me).ok()?;
            let id = s.create_post(b, mmsim::state::NewPost::new(ch, msg)).ok()?;
            let idx = s.post_idx(id).ok()?;
            Some((id.to_string(), s.posts[idx as usize].create_at))
        });
        if let Some((id, create_at)) = made {
            stats.sent.fetch_add(1, Ordering::Relaxed);
            lock(&u.post_ids).push(id);
            lock(&u.pending).push_back((create_at, sent_at));
            u.saw(0, true, &stats); // it may have arrived already
        }
        let now = Instant::now();
        if now >= next_fault {
            let f = &sim.sim;
            let kind = match rng.random_range(0..7) {
                0 => {
                    let v = &users[rng.random_range(0..users.len())];
                    let id = f.with_state(|s| s.find_user(&v.username).map(|i| i.to_string()));
                    if let Some(id) = id {
                        f.drop_websockets_of(&id);
                    }
                    "one user's socket dropped"
                }
                1 => {
                    f.drop_all_websockets();
                    "all sockets dropped"
                }
                2 => {
                    f.lose_replay_buffers();
                    f.drop_all_websockets();
                    "server restart (replay lost)"
                }
                3 => {
                    f.outage(Duration::from_millis(rng.random_range(1000..3000)));
                    "outage, 503"
                }
                4 => {
                    f.outage_with(
                        Duration::from_millis(rng.random_range(1000..3000)),
                        mmsim::faults::OutageMode::Reset,
                    );
                    "outage, connection reset"
                }
                5 => {
                    f.inner().faults.set_error_rate(0.1, 502);
                    let sim2 = f.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        sim2.inner().faults.set_error_rate(0.0, 500);
                    });
                    "10 % 502 for 3 s"
                }
                _ => {
                    f.inner().faults.rate_limit_storm(Duration::from_secs(2));
                    "429 storm, 2 s"
                }
            };
            *faults.entry(kind).or_default() += 1;
            next_fault = now + Duration::from_secs_f64(a.fault_every * rng.random_range(0.5..1.5));
        }
        if now >= next_sample {
            let r = rss_kib(&pid);
            rss_max = rss_max.max(r);
            rss_samples.push((started.elapsed().as_secs(), r));
            next_sample = now + Duration::from_secs(15);
        }
        tokio::time::sleep(interval.saturating_sub(sent_at.elapsed())).await;
    }
    let active = started.elapsed();
    sim.sim.inner().faults.end_outage();
    sim.sim.inner().faults.set_error_rate(0.0, 500);

    // Let everything arrive.
    let drain_start = Instant::now();
    let missing = || -> usize { users.iter().map(|u| lock(&u.pending).len()).sum() };
    while missing() > 0 && drain_start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = drain_start.elapsed();
    let rss_end = rss_kib(&pid);
    let anon_end = status_kib(&pid, "RssAnon:");
    rss_max = rss_max.max(rss_end);
    let self_end = rss_kib("self");
    stop.store(true, Ordering::SeqCst);
    for s in streams {
        let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
    }
    // Every sent post in ThreadDesk's store.
    let store = threaddesk::store::Store::open(&td.dir.path().join("data"))?;
    let mut in_store = 0usize;
    for (u, su) in users.iter().zip(&scale) {
        let uid = threaddesk::store::UserId::parse(&su.id)?;
        let us = store.for_user(&uid);
        for id in lock(&u.post_ids).iter() {
            if us.post(id)?.is_some() {
                in_store += 1;
            }
        }
    }
    let log = std::fs::read_to_string(&td.log).unwrap_or_default();
    let warn_lines = log.lines().filter(|l| l.contains("WARN")).count();
    let error_lines = log.lines().filter(|l| l.contains("ERROR")).count();
    let sent = stats.sent.load(Ordering::Relaxed);
    let live = stats.live.load(Ordering::Relaxed);
    let recovered = stats.recovered.load(Ordering::Relaxed);
    let lost = missing();
    let mut lat = lock(&stats.latencies_us).clone();
    let (p50, p99, max) = (
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.99),
        percentile(&mut lat, 1.0),
    );
    let mut fault_list: Vec<String> = faults.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    fault_list.sort();
    let samples: Vec<String> = rss_samples
        .iter()
        .map(|(s, r)| format!("{s}s {}", mib(*r)))
        .collect();
    println!("## Soak result");
    println!();
    println!(
        "- users: {} (each: one Mattermost WebSocket in ThreadDesk, one SSE live stream here)",
        users.len()
    );
    println!(
        "- duration: {active:.1?} of activity + faults (set-up {setup:.1?}, final drain {drained:.1?})"
    );
    println!(
        "- events: {sent} DMs sent, {} arrived ({live} live in an `item` event, {recovered} by \
         re-reading the list after a `reload`/reconnect), **missing {lost}**; in ThreadDesk's store \
         {in_store}/{sent}",
        live + recovered
    );
    println!("- event → browser latency: p50 {p50:.1?}, p99 {p99:.1?}, max {max:.1?}");
    println!("- faults injected: {}", fault_list.join(", "));
    println!(
        "- errors: SSE streams cut {}, client HTTP errors {}, `reload` events {}; ThreadDesk log \
         lines WARN {warn_lines}, ERROR {error_lines}",
        stats.stream_drops.load(Ordering::Relaxed),
        stats.http_errors.load(Ordering::Relaxed),
        stats.reloads.load(Ordering::Relaxed),
    );
    println!(
        "- ThreadDesk anonymous RSS (heap and stacks, without the store's memory-mapped pages): start {}, end {}",
        mib(anon_start),
        mib(anon_end)
    );
    println!(
        "- ThreadDesk RSS: start {}, end {}, max {} (samples: {})",
        mib(rss_start),
        mib(rss_end),
        mib(rss_max),
        samples.join(", ")
    );
    let data = td.dir.path().join("data");
    let size = |f: &str| std::fs::metadata(data.join(f)).map_or(0, |m| m.len() / 1024);
    println!(
        "- ThreadDesk's store at the end: threaddesk.db {}, WAL {}",
        mib(size("threaddesk.db")),
        mib(size("threaddesk.db-wal"))
    );
    println!(
        "- soak process (mmsim + clients) RSS: start {}, end {}",
        mib(self_start),
        mib(self_end)
    );
    ensure!(
        lost == 0 && in_store == usize::try_from(sent)?,
        "events went missing"
    );
    Ok(())
}
