//! Shared by the `scale` bench (`cargo bench -p threaddesk --bench scale`) and its smoke test
//! (`tests/bench_scale_smoke.rs`, included with `#[path]`).
//!
//! The set-up: mmsim runs in this process (with `seed::add_scale_users` users); ThreadDesk runs
//! as a **child process** (the real `threaddesk serve` binary, `CARGO_BIN_EXE_threaddesk`), so
//! its RSS is ThreadDesk's alone. Each simulated user signs in with a personal access token
//! through the web form, so the child holds one Mattermost WebSocket per user; this process then
//! holds one browser live stream (`GET /api/v1/events`, SSE over HTTP/1.1) per user.
//!
//! Event → browser: the driver sends a DM from `scalebot` whose text carries a sequence number
//! (`sc<seq>z`); the emission instant is taken right before the mmsim state mutation that
//! publishes the WebSocket event, the arrival instant when the SSE `item` frame whose snippet
//! carries the same number is parsed. Both sides use this process's monotonic clock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use mmsim::seed::{SCALE_BOT, ScaleUser};

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// mmsim in this process, with `n` scale users seeded (no latency unless set).
pub async fn start_sim(n: usize) -> Result<(mmsim::Running, Vec<ScaleUser>)> {
    let running = mmsim::start(mmsim::SimConfig::default(), 0).await?;
    let users = running
        .sim
        .with_state(|s| mmsim::seed::add_scale_users(s, n));
    Ok((running, users))
}

/// ThreadDesk's Mattermost request budget for the child.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub rate: f64,
    pub burst: u32,
}

impl Budget {
    /// The configuration defaults (10 r/s, burst 100): production.
    pub const PRODUCTION: Self = Self {
        rate: 10.0,
        burst: 100,
    };
    /// The highest values the configuration accepts: in effect no limiter.
    pub const OFF: Self = Self {
        rate: 10_000.0,
        burst: 100_000,
    };
}

/// The `threaddesk serve` child process.
pub struct Td {
    child: Child,
    pub url: String,
    pub pid: u32,
    _dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Drop for Td {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Td {
    /// Start `threaddesk serve` against `mm_url` with a fresh data dir; wait for `/readyz`.
    pub async fn spawn(bin: &str, mm_url: &str, budget: Budget) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let url = format!("http://127.0.0.1:{port}");
        let log = dir.path().join("threaddesk.log");
        let mut cmd = Command::new(bin);
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
            .env("THREADDESK_MATTERMOST_RATE_LIMIT", budget.rate.to_string())
            .env("THREADDESK_MATTERMOST_RATE_BURST", budget.burst.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let child = cmd
            .spawn()
            .with_context(|| format!("while starting {bin}"))?;
        let pid = child.id();
        let td = Self {
            child,
            url,
            pid,
            _dir: dir,
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
            if Instant::now() > deadline {
                bail!(
                    "threaddesk did not become ready: {}",
                    std::fs::read_to_string(&td.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `VmRSS` of the child in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid, "VmRSS:")
    }

    /// User + system CPU time of the child so far (clock ticks of 10 ms on Linux).
    pub fn cpu_ticks(&self) -> Option<u64> {
        cpu_ticks(&self.pid.to_string())
    }
}

/// User + system CPU time of a process (`"self"` or a pid) in clock ticks (10 ms on Linux).
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state(0) … utime(11) stime(12).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Per-user counters of the live stream.
#[derive(Default)]
pub struct StreamStat {
    pub frames: AtomicU64,
    pub reloads: AtomicU64,
    /// Nanoseconds since [`Shared::epoch`] of the last `reload` frame (0 = none).
    pub last_reload_ns: AtomicU64,
    pub open: AtomicU64,
}

/// State shared by the driver and every stream reader.
pub struct Shared {
    pub epoch: Instant,
    /// Sequence number → emission instant, for posts whose frame has not arrived yet.
    pub pending: Mutex<HashMap<u64, Instant>>,
    /// Event → browser latencies (ms) of matched frames, in arrival order.
    pub latencies: Mutex<Vec<f64>>,
    pub next_seq: AtomicU64,
    pub stream_errors: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            pending: Mutex::new(HashMap::new()),
            latencies: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(1),
            stream_errors: AtomicU64::new(0),
        }
    }
}

impl Shared {
    pub fn since_epoch_ns(&self, t: Instant) -> u64 {
        u64::try_from(t.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Take the latencies recorded so far.
    pub fn take_latencies(&self) -> Vec<f64> {
        std::mem::take(&mut *lock(&self.latencies))
    }

    /// Forget posts still waiting for a frame; returns how many there were.
    pub fn clear_pending(&self) -> usize {
        let mut p = lock(&self.pending);
        let n = p.len();
        p.clear();
        n
    }
}

/// A signed-in user with an open live stream.
pub struct Conn {
    pub user: ScaleUser,
    pub cookie: String,
    pub stat: Arc<StreamStat>,
    pub stream: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.stream.abort();
    }
}

/// One HTTP client for the browsers (cookies by hand, no redirects).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .build()
        .expect("http client")
}

fn set_cookies(r: &reqwest::Response, jar: &mut Vec<(String, String)>) {
    for v in r.headers().get_all(reqwest::header::SET_COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        let first = v.split(';').next().unwrap_or_default();
        if let Some((k, val)) = first.split_once('=') {
            jar.retain(|(n, _)| n != k);
            if !val.is_empty() && !v.contains("Max-Age=0") {
                jar.push((k.to_owned(), val.to_owned()));
            }
        }
    }
}

fn cookie_header(jar: &[(String, String)]) -> String {
    jar.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Sign in with the personal-token form; returns the session's `Cookie` header.
pub async fn sign_in(http: &reqwest::Client, base: &str, token: &str) -> Result<String> {
    let mut jar = Vec::new();
    let r = http.get(format!("{base}/signin")).send().await?;
    set_cookies(&r, &mut jar);
    let pre = jar
        .iter()
        .find(|(k, _)| k.ends_with("pre"))
        .map(|(_, v)| v.clone())
        .context("no pre-sign-in cookie")?;
    let r = http
        .post(format!("{base}/auth/token"))
        .header(reqwest::header::COOKIE, cookie_header(&jar))
        .form(&[("token", token), ("csrf", pre.as_str())])
        .send()
        .await?;
    if r.status().as_u16() != 303 {
        bail!("token sign-in answered {}", r.status());
    }
    set_cookies(&r, &mut jar);
    Ok(cookie_header(&jar))
}

/// One `GET /api/v1/items` (status, latency ms, number of items).
pub async fn get_items(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
) -> Result<(u16, f64, usize, String)> {
    let t = Instant::now();
    let r = http
        .get(format!("{base}/api/v1/items?limit=50"))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await?;
    let status = r.status().as_u16();
    let body = r.text().await?;
    let lat = ms(t.elapsed());
    let n = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or(0);
    Ok((status, lat, n, body))
}

/// The sequence number in a frame's data (`sc<digits>z`), if any.
pub fn seq_of(data: &str) -> Option<u64> {
    let mut rest = data;
    while let Some(i) = rest.find("sc") {
        let tail = &rest[i + 2..];
        let digits: &str = &tail[..tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len())];
        if !digits.is_empty() && tail[digits.len()..].starts_with('z') {
            return digits.parse().ok();
        }
        rest = tail;
    }
    None
}

/// Open the live stream of one signed-in user and read it until aborted.
pub async fn open_stream(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    shared: Arc<Shared>,
) -> Result<(Arc<StreamStat>, tokio::task::JoinHandle<()>)> {
    let r = http
        .get(format!("{base}/api/v1/events"))
        .header(reqwest::header::COOKIE, cookie)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("GET /api/v1/events answered {}", r.status());
    }
    let stat = Arc::new(StreamStat::default());
    stat.open.store(1, Ordering::Relaxed);
    let st = Arc::clone(&stat);
    let task = tokio::spawn(async move {
        let mut body = r.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else {
                shared.stream_errors.fetch_add(1, Ordering::Relaxed);
                break;
            };
            let now = Instant::now();
            buf.extend_from_slice(&chunk);
            while let Some(end) = find_frame_end(&buf) {
                let frame: Vec<u8> = buf.drain(..end).collect();
                handle_frame(&String::from_utf8_lossy(&frame), now, &shared, &st);
            }
        }
        st.open.store(0, Ordering::Relaxed);
    });
    Ok((stat, task))
}

fn find_frame_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

fn handle_frame(frame: &str, now: Instant, shared: &Shared, st: &StreamStat) {
    let mut event = "";
    let mut data = String::new();
    for line in frame.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    match event {
        "item" => {
            st.frames.fetch_add(1, Ordering::Relaxed);
            if let Some(seq) = seq_of(&data) {
                let emitted = lock(&shared.pending).remove(&seq);
                if let Some(t) = emitted {
                    lock(&shared.latencies).push(ms(now.duration_since(t)));
                }
            }
        }
        "reload" => {
            st.frames.fetch_add(1, Ordering::Relaxed);
            st.reloads.fetch_add(1, Ordering::Relaxed);
            st.last_reload_ns
                .store(shared.since_epoch_ns(now), Ordering::Relaxed);
        }
        _ => {}
    }
}

/// Sign in, wait for the synced cache (the DM and the followed thread are listed), open the
/// live stream. API latencies of the calls are pushed to `api`.
pub async fn connect(
    http: &reqwest::Client,
    base: &str,
    user: ScaleUser,
    shared: Arc<Shared>,
    api: &Mutex<ApiStats>,
) -> Result<Conn> {
    let cookie = sign_in(http, base, &user.token)
        .await
        .with_context(|| format!("sign-in of {}", user.username))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, lat, n, _) = get_items(http, base, &cookie).await?;
        lock(api).record(status, lat);
        if status == 200 && n >= 2 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{}: cache not synced (status {status}, {n} items)",
                user.username
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (stat, stream) = open_stream(http, base, &cookie, shared).await?;
    Ok(Conn {
        user,
        cookie,
        stat,
        stream,
    })
}

/// Connect `users` with at most `parallel` sign-ins at once.
pub async fn connect_all(
    http: &reqwest::Client,
    base: &str,
    users: Vec<ScaleUser>,
    shared: &Arc<Shared>,
    api: &Arc<Mutex<ApiStats>>,
    parallel: usize,
) -> Result<Vec<Conn>> {
    let results: Vec<Result<Conn>> = futures_util::stream::iter(users.into_iter().map(|u| {
        let http = http.clone();
        let base = base.to_owned();
        let shared = Arc::clone(shared);
        let api = Arc::clone(api);
        async move { connect(&http, &base, u, shared, &api).await }
    }))
    .buffer_unordered(parallel.max(1))
    .collect()
    .await;
    results.into_iter().collect()
}

/// ThreadDesk API answers seen by the test clients.
#[derive(Clone, Debug, Default)]
pub struct ApiStats {
    pub latencies: Vec<f64>,
    pub total: u64,
    pub server_errors: u64,
}

impl ApiStats {
    pub fn record(&mut self, status: u16, lat: f64) {
        self.total += 1;
        if status >= 500 {
            self.server_errors += 1;
        }
        self.latencies.push(lat);
    }
}

/// Send `rate` DMs per second from `scalebot` to users of `conns` (round-robin over a shuffled
/// order) for `dur`; every DM carries a fresh sequence number. Returns how many were sent.
pub async fn drive_dms(
    sim: &mmsim::Sim,
    conns: &[Conn],
    shared: &Shared,
    rate: f64,
    dur: Duration,
) -> Result<u64> {
    let driver = mmsim::driver::Driver::new(sim);
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut next_user = 0usize;
    let stride = stride_for(conns.len());
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while started.elapsed() < dur {
        tick.tick().await;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let c = &conns[next_user % conns.len()];
            next_user = next_user.wrapping_add(stride);
            let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
            let msg = format!("sc{seq}z load");
            let t = Instant::now();
            lock(&shared.pending).insert(seq, t);
            driver
                .dm(SCALE_BOT, &c.user.username, &msg)
                .map_err(|e| anyhow::anyhow!("driver dm: {e}"))?;
            sent += 1;
        }
    }
    Ok(sent)
}

/// A step through the users that visits all of them and spreads consecutive posts apart.
fn stride_for(n: usize) -> usize {
    if n <= 1 {
        return 1;
    }
    let mut s = (n / 2 + 1) | 1;
    while gcd(s, n) != 1 {
        s += 2;
    }
    s
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Browser API probes (`GET /api/v1/items` of random connected users) at `rate` per second
/// until `stop` is set; results go to `api`.
pub fn spawn_api_probe(
    http: reqwest::Client,
    base: String,
    cookies: Vec<String>,
    rate: f64,
    api: Arc<Mutex<ApiStats>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut i = 0usize;
        let stride = stride_for(cookies.len());
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let cookie = cookies[i % cookies.len()].clone();
            i = i.wrapping_add(stride);
            let (http, base, api) = (http.clone(), base.clone(), Arc::clone(&api));
            tokio::spawn(async move {
                match get_items(&http, &base, &cookie).await {
                    Ok((status, lat, _, _)) => lock(&api).record(status, lat),
                    Err(_) => lock(&api).record(599, f64::NAN),
                }
            });
        }
    })
}

/// Wait until no post is pending (every frame arrived) or `timeout` passes.
pub async fn drain(shared: &Shared, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !lock(&shared.pending).is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// mmsim's REST calls so far (the WebSocket upgrade and admin routes left out).
pub fn rest_calls(sim: &mmsim::Sim) -> u64 {
    let m = sim.inner().metrics.snapshot();
    m.routes
        .iter()
        .filter(|(r, _)| !r.contains("/websocket"))
        .map(|(_, c)| c.requests)
        .sum()
}

/// One reconnect storm.
#[derive(Clone, Debug, Default)]
pub struct Storm {
    pub users: usize,
    /// Users whose stream got a `reload` after the outage ended.
    pub reloaded: usize,
    /// Users whose listed DM shows the message sent while they were away.
    pub verified: usize,
    /// From the outage's end until the last user's `reload` (ms).
    pub all_current_ms: f64,
    /// Median of the per-user times (ms).
    pub median_current_ms: f64,
    pub calls: u64,
    pub peak_calls_per_s: u64,
    pub calls_by_route: Vec<(String, u64)>,
}

/// Drop every Mattermost WebSocket, refuse reconnects for `outage`, lose the replay buffers
/// (a restarted server), send every user one DM meanwhile, end the outage and wait until every
/// user's stream says `reload` (the engine finished its resync) or `timeout` passes.
pub async fn storm(
    sim: &mmsim::Sim,
    conns: &[Conn],
    shared: &Shared,
    http: &reqwest::Client,
    base: &str,
    outage: Duration,
    timeout: Duration,
) -> Result<Storm> {
    let driver = mmsim::driver::Driver::new(sim);
    sim.outage(outage + Duration::from_secs(600));
    let marks: Vec<String> = conns
        .iter()
        .map(|c| {
            let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
            let msg = format!("sc{seq}z while away");
            driver
                .dm(SCALE_BOT, &c.user.username, &msg)
                .map_err(|e| anyhow::anyhow!("driver dm: {e}"))?;
            Ok(format!("sc{seq}z"))
        })
        .collect::<Result<_>>()?;
    sim.lose_replay_buffers();
    tokio::time::sleep(outage).await;
    sim.inner().metrics.reset();
    let before: Vec<u64> = conns
        .iter()
        .map(|c| c.stat.reloads.load(Ordering::Relaxed))
        .collect();
    let ended = Instant::now();
    sim.inner().faults.end_outage();
    let ended_ns = shared.since_epoch_ns(ended);
    let deadline = ended + timeout;
    let mut peak = 0u64;
    let mut last_calls = 0u64;
    let mut last_t = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if last_t.elapsed() >= Duration::from_secs(1) {
            let c = rest_calls(sim);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let rate = ((c - last_calls) as f64 / last_t.elapsed().as_secs_f64()).round() as u64;
            peak = peak.max(rate);
            last_calls = c;
            last_t = Instant::now();
        }
        let done = conns
            .iter()
            .zip(&before)
            .filter(|(c, b)| c.stat.reloads.load(Ordering::Relaxed) > **b)
            .count();
        if done == conns.len() || Instant::now() > deadline {
            break;
        }
    }
    // Let stray calls finish, then count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = rest_calls(sim);
    if peak == 0 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rate =
            ((c - last_calls) as f64 / last_t.elapsed().as_secs_f64().max(0.001)).round() as u64;
        peak = rate;
    }
    let mut times: Vec<f64> = conns
        .iter()
        .zip(&before)
        .filter(|(c, b)| c.stat.reloads.load(Ordering::Relaxed) > **b)
        .map(|(c, _)| {
            let ns = c.stat.last_reload_ns.load(Ordering::Relaxed);
            #[allow(clippy::cast_precision_loss)]
            let v = ns.saturating_sub(ended_ns) as f64 / 1e6;
            v
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let mut verified = 0;
    for (c, mark) in conns.iter().zip(&marks) {
        if let Ok((200, _, _, body)) = get_items(http, base, &c.cookie).await
            && body.contains(mark.as_str())
        {
            verified += 1;
        }
    }
    let m = sim.inner().metrics.snapshot();
    let mut by_route: Vec<(String, u64)> = m
        .routes
        .iter()
        .filter(|(r, _)| !r.contains("/websocket"))
        .map(|(r, c)| (r.clone(), c.requests))
        .collect();
    by_route.sort();
    Ok(Storm {
        users: conns.len(),
        reloaded: times.len(),
        verified,
        all_current_ms: times.last().copied().unwrap_or(f64::NAN),
        median_current_ms: times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
        calls: c,
        peak_calls_per_s: peak,
        calls_by_route: by_route,
    })
}

/// `p`-th percentile (nearest rank) of `v`.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}
