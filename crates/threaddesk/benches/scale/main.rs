#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]
//! Scale benchmarks (issue 7; research `reliability-security-performance.md` §B3 P-9…P-12):
//! many users signed in to one ThreadDesk, each with a Mattermost WebSocket (held by ThreadDesk)
//! and a browser live stream (SSE, held by this process).
//!
//! Run: `cargo bench -p threaddesk --bench scale` (release; ≈ 3–4 min). It prints a table and
//! rewrites its generated section of `BENCHMARKS.md` (between the `bench:scale` markers).
//!
//! ThreadDesk runs as a child process (the real `threaddesk serve` binary), mmsim and the
//! browsers in this process, so the child's RSS is ThreadDesk's alone (P-10).
//!
//! Knobs (environment):
//! - `BENCH_STEPS` (`500,1000,2000`): users connected at each step (P-10, P-11); e.g.
//!   `500,1000,2000,3000,5000` for the stretch run.
//! - `BENCH_RATE` (100): DMs per second for the health check of each step (issue 7's rate).
//! - `BENCH_RATE_HIGH` (1000): the research rate, measured at each step too (0 = skip).
//! - `BENCH_LOAD_SECS` (5): seconds of load per rate and step.
//! - `BENCH_STORM_USERS` (50): users of the reconnect storm under the production limiter
//!   (10 r/s; its set-up signs them in through that limiter too, ≈ 1 s per user).
//! - `BENCH_PARALLEL` (16): sign-ins in flight.
//! - `BENCH_OUT` (`<repo>/BENCHMARKS.md`); `-` prints only.
//! - `BENCH_THREADDESK_BIN`: measure another `threaddesk` binary (A/B of two builds).

#[path = "../common/mod.rs"]
mod common;
mod harness;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::{ApiStats, Budget, Conn, Shared, Td, percentile};

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x.abs() >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**MISSED**",
        None => "–",
    }
}

struct Table(Vec<[String; 6]>);

impl Table {
    fn push(
        &mut self,
        id: &str,
        task: impl Into<String>,
        metric: &str,
        value: String,
        target: &str,
        ok: Option<bool>,
    ) {
        self.0.push([
            id.to_owned(),
            task.into(),
            metric.to_owned(),
            value,
            target.to_owned(),
            verdict(ok).to_owned(),
        ]);
    }

    fn markdown(&self) -> String {
        let mut s =
            String::from("| id | task | metric | value | target | |\n|---|---|---|---|---|---|\n");
        for r in &self.0 {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }
}

fn machine(load_start: &str) -> String {
    let m = common::Machine::read();
    format!(
        "- date: {}\n- CPU: {} × {} (`nproc` = {}), shared by mmsim, ThreadDesk and every simulated browser\n- RAM: {:.1} GiB\n- {}; build profile: {}{}\n- load average at the start / end of the run: {load_start} / {} (a shared machine: other engineers' builds ran concurrently)\n",
        m.date,
        m.cpus,
        m.model,
        m.cpus,
        m.mem_gib,
        m.rustc,
        m.profile,
        if cfg!(debug_assertions) {
            ""
        } else {
            "; the `threaddesk` child is built with it"
        },
        common::loadavg()
    )
}

/// One load phase: DMs at `rate` for `secs` while browsers poll the API.
struct Load {
    rate: f64,
    sent: u64,
    matched: usize,
    /// `reload` frames the streams received during the phase (a stream that lags, or whose
    /// user resynced, is told to reload instead of getting the frames).
    reloads: u64,
    p50: f64,
    p99: f64,
    max: f64,
    api_p50: f64,
    api_p99: f64,
    api_total: u64,
    api_5xx: u64,
    /// ThreadDesk's CPU over the phase, % of one core.
    cpu_pct: f64,
    /// This process (mmsim, driver, browsers) over the phase, % of one core.
    bench_cpu_pct: f64,
    load: String,
}

async fn load_phase(
    sim: &mmsim::Sim,
    td: &Td,
    conns: &[Conn],
    shared: &Shared,
    http: &reqwest::Client,
    rate: f64,
    secs: f64,
) -> Result<Load> {
    let api = Arc::new(Mutex::new(ApiStats::default()));
    let stop = Arc::new(AtomicBool::new(false));
    shared.clear_pending();
    shared.take_latencies();
    let cookies: Vec<String> = conns.iter().map(|c| c.cookie.clone()).collect();
    let probe = harness::spawn_api_probe(
        http.clone(),
        td.url.clone(),
        cookies,
        20.0,
        Arc::clone(&api),
        Arc::clone(&stop),
    );
    let reloads = || -> u64 {
        conns
            .iter()
            .map(|c| c.stat.reloads.load(Ordering::Relaxed))
            .sum()
    };
    let reloads0 = reloads();
    let cpu0 = td.cpu_ticks();
    let own0 = harness::cpu_ticks("self");
    let t0 = Instant::now();
    let sent = harness::drive_dms(sim, conns, shared, rate, Duration::from_secs_f64(secs)).await?;
    let cpu1 = td.cpu_ticks();
    let own1 = harness::cpu_ticks("self");
    let wall = t0.elapsed().as_secs_f64();
    harness::drain(shared, Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = probe.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lat = shared.take_latencies();
    shared.clear_pending();
    let api = api.lock().unwrap().clone();
    let cpu_pct = match (cpu0, cpu1) {
        (Some(a), Some(b)) => (b - a) as f64 / wall,
        _ => f64::NAN,
    };
    Ok(Load {
        rate,
        sent,
        matched: lat.len(),
        reloads: reloads() - reloads0,
        p50: percentile(&lat, 50.0),
        p99: percentile(&lat, 99.0),
        max: percentile(&lat, 100.0),
        api_p50: percentile(&api.latencies, 50.0),
        api_p99: percentile(&api.latencies, 99.0),
        api_total: api.total,
        api_5xx: api.server_errors,
        cpu_pct,
        bench_cpu_pct: match (own0, own1) {
            (Some(a), Some(b)) => (b - a) as f64 / wall,
            _ => f64::NAN,
        },
        load: common::loadavg(),
    })
}

struct Step {
    users: usize,
    connect_s: f64,
    rss_kib: u64,
    loads: Vec<Load>,
    healthy: bool,
}

/// The ThreadDesk binary: this build's, or `BENCH_THREADDESK_BIN` (A/B runs of two builds).
fn bin() -> String {
    std::env::var("BENCH_THREADDESK_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_threaddesk").to_owned())
}

#[allow(clippy::too_many_lines)]
async fn run() -> Result<()> {
    let total = Instant::now();
    let load_start = common::loadavg();
    let steps: Vec<usize> = std::env::var("BENCH_STEPS")
        .unwrap_or_else(|_| "500,1000,2000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rate: f64 = env_or("BENCH_RATE", 100.0);
    let rate_high: f64 = env_or("BENCH_RATE_HIGH", 1000.0);
    let secs: f64 = env_or("BENCH_LOAD_SECS", 5.0);
    let storm_users: usize = env_or("BENCH_STORM_USERS", 50);
    let parallel: usize = env_or("BENCH_PARALLEL", 16);
    let max_users = steps.iter().copied().max().unwrap_or(0);

    let (running, users) = harness::start_sim(max_users + storm_users).await?;
    let sim = running.sim.clone();
    let (main_users, storm_set) = users.split_at(max_users);
    let http = harness::http();
    let shared = Arc::new(Shared::default());
    let api_setup = Arc::new(Mutex::new(ApiStats::default()));

    // ---- P-10 / P-11 / P-9: one ThreadDesk, users added in steps.
    let td = Td::spawn(&bin(), &running.url, Budget::OFF).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = td.rss_kib().context("child RSS")?;
    eprintln!("threaddesk pid {} ready, RSS(0) = {rss0} KiB", td.pid);
    let mut conns: Vec<Conn> = Vec::new();
    let mut results: Vec<Step> = Vec::new();
    for &n in &steps {
        if n <= conns.len() {
            continue;
        }
        let t = Instant::now();
        let add = main_users[conns.len()..n].to_vec();
        let mut new = harness::connect_all(&http, &td.url, add, &shared, &api_setup, parallel)
            .await
            .with_context(|| format!("connecting {n} users"))?;
        conns.append(&mut new);
        let connect_s = t.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = td.rss_kib().context("child RSS")?;
        eprintln!(
            "{n} users connected in {connect_s:.1} s, RSS {rss} KiB ({:.1} KiB/user), load {}",
            (rss.saturating_sub(rss0)) as f64 / n as f64,
            common::loadavg()
        );
        let mut loads = vec![load_phase(&sim, &td, &conns, &shared, &http, rate, secs).await?];
        if rate_high > 0.0 {
            loads.push(load_phase(&sim, &td, &conns, &shared, &http, rate_high, secs).await?);
        }
        for l in &loads {
            eprintln!(
                "  {} DM/s: sent {} matched {} reloads {} p50 {:.1} p99 {:.1} max {:.1} ms; API p99 {:.1} ms ({} calls, {} 5xx); CPU ThreadDesk {:.0} % bench {:.0} %; load {}",
                l.rate,
                l.sent,
                l.matched,
                l.reloads,
                l.p50,
                l.p99,
                l.max,
                l.api_p99,
                l.api_total,
                l.api_5xx,
                l.cpu_pct,
                l.bench_cpu_pct,
                l.load
            );
        }
        let base = &loads[0];
        let healthy = (base.api_5xx as f64) < 0.000_25 * base.api_total as f64
            && base.api_p99 < 200.0
            && base.p99 < 250.0
            && base.matched as f64 >= 0.95 * base.sent as f64;
        results.push(Step {
            users: n,
            connect_s,
            rss_kib: rss,
            loads,
            healthy,
        });
        if !healthy {
            break;
        }
    }

    // ---- P-12 with the limiter off, at the largest connected N.
    eprintln!("storm (limiter off) with {} users", conns.len());
    let storm_off = harness::storm(
        &sim,
        &conns,
        &shared,
        &http,
        &td.url,
        Duration::from_secs(1),
        Duration::from_secs(120),
    )
    .await?;
    eprintln!("{storm_off:?}");
    let big_n = conns.len();
    drop(conns);
    drop(td);

    // ---- P-12 with the production limiter (10 r/s, burst 100), fresh ThreadDesk.
    let td = Td::spawn(&bin(), &running.url, Budget::PRODUCTION).await?;
    let t = Instant::now();
    sim.inner().metrics.reset();
    let conns = harness::connect_all(
        &http,
        &td.url,
        storm_set.to_vec(),
        &shared,
        &api_setup,
        parallel,
    )
    .await?;
    let setup_s = t.elapsed().as_secs_f64();
    let setup_calls = harness::rest_calls(&sim);
    eprintln!(
        "{} users signed in under the production limiter in {setup_s:.1} s ({setup_calls} calls)",
        conns.len()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let storm_prod = harness::storm(
        &sim,
        &conns,
        &shared,
        &http,
        &td.url,
        Duration::from_secs(1),
        Duration::from_secs(300),
    )
    .await?;
    eprintln!("{storm_prod:?}");
    drop(conns);
    drop(td);

    // ---- Report.
    let mut table = Table(Vec::new());
    for s in &results {
        let task = format!("{} users, 1 WS + 1 SSE + synced cache each", s.users);
        let per = (s.rss_kib.saturating_sub(rss0)) as f64 / s.users as f64;
        table.push(
            "P-10",
            task.clone(),
            "RSS(N) − RSS(0), MiB · per user, KiB",
            format!(
                "{} · {}",
                fmt_num((s.rss_kib.saturating_sub(rss0)) as f64 / 1024.0),
                fmt_num(per)
            ),
            "≤ 256 KiB/user; ≤ 600 MiB total at 2,000",
            Some(per <= 256.0 && (s.users < 2000 || s.rss_kib - rss0 <= 600 * 1024)),
        );
        for l in &s.loads {
            let p9_target = if (l.rate - rate).abs() < f64::EPSILON {
                "p99 < 100 ms (issue 7: at 100/s)"
            } else {
                "p99 ≤ 100 ms, p50 ≤ 10 ms (research: 1,000/s)"
            };
            let ok = if (l.rate - rate).abs() < f64::EPSILON {
                l.p99 < 100.0
            } else {
                l.p99 <= 100.0 && l.p50 <= 10.0
            };
            table.push(
                "P-9",
                format!(
                    "{} users, {} DM/s for {secs} s (load avg {})",
                    s.users, l.rate, l.load
                ),
                "event → browser p50 / p99 / max, ms (frames matched / sent; `reload` frames)",
                format!(
                    "{} / {} / {} ({} / {}; {})",
                    fmt_num(l.p50),
                    fmt_num(l.p99),
                    fmt_num(l.max),
                    l.matched,
                    l.sent,
                    l.reloads
                ),
                p9_target,
                Some(ok),
            );
            table.push(
                "P-11",
                format!("{} users, {} DM/s", s.users, l.rate),
                "API p50 / p99, ms (calls, 5xx) · CPU, % of a core: ThreadDesk / bench process (mmsim + browsers)",
                format!(
                    "{} / {} ({}, {}) · {} / {}",
                    fmt_num(l.api_p50),
                    fmt_num(l.api_p99),
                    l.api_total,
                    l.api_5xx,
                    fmt_num(l.cpu_pct),
                    fmt_num(l.bench_cpu_pct)
                ),
                "5xx < 0.025 %, API p99 < 200 ms",
                Some(l.api_p99 < 200.0 && (l.api_5xx as f64) < 0.000_25 * l.api_total as f64),
            );
        }
    }
    let largest_healthy = results
        .iter()
        .filter(|s| s.healthy)
        .map(|s| s.users)
        .max()
        .unwrap_or(0);
    let all_healthy = results.iter().all(|s| s.healthy);
    table.push(
        "P-11",
        format!(
            "users per instance (steps {}; healthy at {} DM/s)",
            steps
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            rate
        ),
        "largest healthy N",
        if all_healthy {
            format!("≥ {largest_healthy} (every step healthy; not pushed further)")
        } else {
            largest_healthy.to_string()
        },
        "≥ 2,000",
        Some(largest_healthy >= 2000),
    );
    for (name, s, setup) in [
        ("limiter off (10,000 r/s)", &storm_off, None),
        (
            "production limiter (10 r/s, burst 100)",
            &storm_prod,
            Some((setup_s, setup_calls)),
        ),
    ] {
        let task = format!(
            "reconnect storm, {} users, {name}: sockets dropped, replay buffers lost, 1 DM each while away (changed teams 0)",
            s.users
        );
        // Research P-12: ≤ 60 s with no limiter; with the 10 r/s limiter, ≤ 1.2 × calls / 10 s.
        let (target, limit_ms) = if setup.is_none() {
            ("≤ 60 s (limiter off), all verified".to_owned(), 60_000.0)
        } else {
            let secs = 1.2 * s.calls as f64 / Budget::PRODUCTION.rate;
            (
                format!("≤ 1.2 × calls / 10 r/s = {} s, all verified", fmt_num(secs)),
                secs * 1000.0,
            )
        };
        table.push(
            "P-12",
            task.clone(),
            "outage end → all users current (last `reload`), s · median, s",
            format!(
                "{} · {} ({} / {} reloaded, {} verified current)",
                fmt_num(s.all_current_ms / 1000.0),
                fmt_num(s.median_current_ms / 1000.0),
                s.reloaded,
                s.users,
                s.verified
            ),
            &target,
            Some(s.all_current_ms <= limit_ms && s.verified == s.users),
        );
        let bound = s.users as u64;
        table.push(
            "P-12",
            task.clone(),
            "REST calls total (per user) · peak calls/s",
            format!(
                "{} ({}) · {}",
                s.calls,
                fmt_num(s.calls as f64 / s.users as f64),
                s.peak_calls_per_s
            ),
            "≤ N × (1 + changed teams) = N",
            Some(s.calls <= bound),
        );
        if let Some((setup_s, setup_calls)) = setup {
            table.push(
                "P-12",
                task,
                "set-up: sign-in + initial sync of all users through the limiter, s (calls)",
                format!("{} ({setup_calls})", fmt_num(setup_s)),
                "",
                None,
            );
        }
    }
    let md = table.markdown();
    println!("\n{md}");
    let mut notes = String::new();
    let _ = writeln!(
        notes,
        "- P-10 RSS(0) = {} MiB (ThreadDesk child, no user). Marginal cost between steps: {}.",
        fmt_num(rss0 as f64 / 1024.0),
        results
            .windows(2)
            .map(|w| format!(
                "{} → {} users: {} KiB/user",
                w[0].users,
                w[1].users,
                fmt_num(
                    (w[1].rss_kib as f64 - w[0].rss_kib as f64) / (w[1].users - w[0].users) as f64
                )
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        notes,
        "- Sign-in + initial sync + stream open, {parallel} in flight, limiter off: {}.",
        results
            .iter()
            .map(|s| format!("{} users after {} s", s.users, fmt_num(s.connect_s)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (name, s) in [
        ("limiter off", &storm_off),
        ("production limiter", &storm_prod),
    ] {
        let _ = writeln!(
            notes,
            "- P-12 {name}, calls by route: {}",
            s.calls_by_route
                .iter()
                .map(|(r, c)| format!("`{r}` {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        notes,
        "- The storm at {big_n} users ran after the load phases on the same ThreadDesk; whole run {:.0} s.",
        total.elapsed().as_secs_f64()
    );
    let section = format!(
        "## Scale benchmarks (generated)\n\nmmsim `demo` org + `seed::add_scale_users` in the bench process (loopback, no injected latency); ThreadDesk = the `threaddesk serve` binary as a child process; one simulated browser (cookie session + SSE stream) per user in the bench process.\n\n{}\n{md}\n{notes}",
        machine(&load_start)
    );
    let out = std::env::var("BENCH_OUT")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../BENCHMARKS.md").to_owned());
    if out != "-" {
        common::write_section(std::path::Path::new(&out), "scale", &section)
            .with_context(|| format!("writing {out}"))?;
        eprintln!("wrote {out}");
    }
    drop(running);
    Ok(())
}

fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}
