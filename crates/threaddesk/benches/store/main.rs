//! Store benchmarks (research §B3 P-5 at 10 k / 100 k items, P-13 write path, P-14 retention
//! purge, P-15 cold start): `cargo bench -p threaddesk --bench store`.
//!
//! The cache is built with ThreadDesk's own store API (the same statements the sync engine runs),
//! sized like a busy instance: `BENCH_USERS` users (2,000) following `BENCH_THREADS` threads each
//! (250) in shared channels, about 1.2 M rows in all, half of them older than the 14-day window.
//! One more user holds `BENCH_P5_ITEMS` items (10,000) for the page reads. Prints a table and
//! rewrites the `bench:store` section of BENCHMARKS.md (`BENCH_OUT=-` prints only).
//!
//! For repeated runs while profiling: `BENCH_CACHE=<dir>` keeps the built cache there and
//! copies it on later runs instead of building it again; `BENCH_P13_ONLY=1` stops after P-13
//! (and prints only), `BENCH_P14_ONLY=1` runs P-5 and P-14 only (and prints only),
//! `BENCH_SEARCH_ONLY=1` stops after P-5 and the message search rows (and prints only). P-13 also reports the CPU time per event of the writing thread and of
//! the checkpoint thread (from `/proc/thread-self/schedstat`: less disturbed by other load on
//! the machine than the wall-clock rate) and the bytes it wrote per event.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    clippy::cast_precision_loss
)]

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use threaddesk::inbox::search::SearchQuery;
use threaddesk::inbox::{Filter, ItemKey, Marks};
use threaddesk::store::{
    Channel, JsonText, Membership, MessageText, Post, Profile, Store, Team, Thread, UserId,
};

const DAY: i64 = 86_400_000;
const NOW: i64 = 1_800_000_000_000;
const RETENTION: i64 = 14 * DAY;
const CHANNELS: usize = 1_000;
const CHANNELS_PER_USER: usize = 25;
const ROOTS_PER_CHANNEL: usize = 50;

fn id(prefix: char, n: usize) -> String {
    format!("{prefix}{n:0>25}")
}

fn uid(n: usize) -> UserId {
    UserId::parse(&id('u', n)).unwrap()
}

fn channel(n: usize, team: &str, last_post_at: i64) -> Channel {
    Channel {
        channel_id: id('c', n),
        team_id: team.into(),
        channel_type: "O".into(),
        name: format!("ch{n}"),
        display_name: format!("Channel {n}"),
        total_msg_count: 100,
        total_msg_count_root: 50,
        last_post_at,
        last_root_post_at: last_post_at,
        update_at: 1,
        delete_at: 0,
    }
}

fn post(n: usize, ch: usize, root: Option<usize>, at: i64) -> Post {
    Post {
        post_id: id('p', n),
        channel_id: id('c', ch),
        root_id: root.map(|r| id('p', r)).unwrap_or_default(),
        user_id: id('u', 999_999),
        create_at: at,
        update_at: at,
        message: MessageText::new(
            "a message of ordinary length, with a few words the search index keeps as well",
        ),
        props: JsonText::new("{}"),
        file_ids: JsonText::new("[]"),
        reactions: JsonText::new("[]"),
        metadata: JsonText::new("{}"),
        ..Post::default()
    }
}

fn thread(root: usize, ch: usize, team: &str, last_reply_at: i64) -> Thread {
    Thread {
        root_id: id('p', root),
        channel_id: id('c', ch),
        team_id: team.into(),
        reply_count: 1,
        last_reply_at,
        last_viewed_at: 0,
        unread_replies: 1,
        unread_mentions: 0,
        is_urgent: false,
        following: true,
        delete_at: 0,
        participants: JsonText::new("[]"),
    }
}

fn team_of(ch: usize) -> String {
    id('t', ch % 10)
}

/// Activity time of root `r` of channel `ch`: spread over 28 days, so half is past the window.
fn at_of(ch: usize, r: usize) -> i64 {
    let slot = i64::try_from((ch * ROOTS_PER_CHANNEL + r) % 2_800).unwrap_or(0);
    NOW - slot * (DAY / 100) - 1
}

fn root_id(ch: usize, r: usize) -> usize {
    (ch * ROOTS_PER_CHANNEL + r) * 2
}

fn profile(u: &UserId) -> Profile {
    Profile {
        user_id: u.as_str().into(),
        username: format!("user{}", &u.as_str()[18..]),
        ..Profile::default()
    }
}

/// Shared channels and posts (root + one reply each), then per user memberships and threads.
fn populate(store: &Store, users: usize, threads_per_user: usize) -> usize {
    let mut rows = 0;
    store
        .write(|tx| {
            for t in 0..10 {
                tx.upsert_team(&Team {
                    team_id: id('t', t),
                    name: format!("t{t}"),
                    display_name: format!("Team {t}"),
                    update_at: 1,
                    delete_at: 0,
                })?;
            }
            for ch in 0..CHANNELS {
                tx.upsert_channel(&channel(ch, &team_of(ch), NOW - 1))?;
                for r in 0..ROOTS_PER_CHANNEL {
                    let at = at_of(ch, r);
                    let root = root_id(ch, r);
                    tx.upsert_post(&post(root, ch, None, at - 1_000))?;
                    tx.upsert_post(&post(root + 1, ch, Some(root), at))?;
                    rows += 4; // two posts, two search rows
                }
            }
            Ok(())
        })
        .unwrap();
    let per_channel = threads_per_user.div_ceil(CHANNELS_PER_USER);
    for u in 0..users {
        let user = uid(u);
        store
            .write(|tx| {
                let ut = tx.user(&user);
                ut.upsert_self(&profile(&user), 1)?;
                let teams: Vec<String> = (0..10).map(|t| id('t', t)).collect();
                let teams: Vec<&str> = teams.iter().map(String::as_str).collect();
                ut.set_teams(&teams)?;
                let mut n = 0;
                for j in 0..CHANNELS_PER_USER {
                    let ch = (u * 7 + j * 41) % CHANNELS;
                    ut.upsert_membership(&Membership {
                        channel_id: id('c', ch),
                        msg_count: 90,
                        msg_count_root: 45,
                        last_update_at: 1,
                        ..Membership::default()
                    })?;
                    rows += 1;
                    for r in 0..per_channel.min(ROOTS_PER_CHANNEL) {
                        if n == threads_per_user {
                            break;
                        }
                        let r = (r + u) % ROOTS_PER_CHANNEL;
                        ut.upsert_thread(&thread(root_id(ch, r), ch, &team_of(ch), at_of(ch, r)))?;
                        n += 1;
                        rows += 2; // thread + item
                    }
                }
                Ok(())
            })
            .unwrap();
    }
    rows
}

/// The P-5 user: `items` followed threads in its own channels, all within the window, some
/// done and some snoozed.
fn populate_reader(store: &Store, n_user: usize, items: usize) -> UserId {
    let user = uid(n_user);
    let base_ch = 10_000;
    let per_ch = 100;
    store
        .write(|tx| {
            let ut = tx.user(&user);
            ut.upsert_self(&profile(&user), 1)?;
            let teams: Vec<String> = (0..10).map(|t| id('t', t)).collect();
            let teams: Vec<&str> = teams.iter().map(String::as_str).collect();
            ut.set_teams(&teams)?;
            for i in 0..items {
                let ch = base_ch + i / per_ch;
                if i % per_ch == 0 {
                    tx.upsert_channel(&channel(ch, &team_of(ch), NOW - 1))?;
                    ut.upsert_membership(&Membership {
                        channel_id: id('c', ch),
                        msg_count: 90,
                        msg_count_root: 45,
                        last_update_at: 1,
                        ..Membership::default()
                    })?;
                }
                let at = NOW - i64::try_from(i).unwrap_or(0) * 60_000;
                let root = 50_000_000 + i * 2;
                tx.upsert_post(&post(root, ch, None, at - 1_000))?;
                tx.upsert_post(&post(root + 1, ch, Some(root), at))?;
                ut.upsert_thread(&thread(root, ch, &team_of(ch), at))?;
                let key = ItemKey::thread(&id('p', root)).unwrap();
                if i % 7 == 0 {
                    ut.set_marks(
                        &key,
                        Marks {
                            done_at: Some(NOW),
                            snoozed_until: None,
                        },
                    )?;
                } else if i % 11 == 0 {
                    ut.set_marks(
                        &key,
                        Marks {
                            done_at: None,
                            snoozed_until: Some(NOW + DAY),
                        },
                    )?;
                }
            }
            Ok(())
        })
        .unwrap();
    user
}

/// Builds the warm cache in `dir`. With `BENCH_CACHE=<dir>` (for repeated runs while profiling)
/// a cache built once with the same sizes is copied from there instead of built again (≈ 60 s).
fn warm_cache(
    dir: &Path,
    users: usize,
    threads_per_user: usize,
    p5_items: usize,
) -> (Arc<Store>, usize) {
    let saved = std::env::var_os("BENCH_CACHE")
        .map(|d| Path::new(&d).join(format!("{users}-{threads_per_user}-{p5_items}")));
    let db = threaddesk::store::DB_FILE;
    if let Some(saved) = &saved
        && let Ok(rows) = std::fs::read_to_string(saved.join("rows"))
    {
        std::fs::copy(saved.join(db), dir.join(db)).unwrap();
        eprintln!("store bench: cache copied from {}", saved.display());
        return (
            Arc::new(Store::open(dir).unwrap()),
            rows.trim().parse().unwrap(),
        );
    }
    let store = Store::open(dir).unwrap();
    let rows = populate(&store, users, threads_per_user);
    populate_reader(&store, 900_000, p5_items);
    if let Some(saved) = &saved {
        drop(store);
        std::fs::create_dir_all(saved).unwrap();
        std::fs::copy(dir.join(db), saved.join(db)).unwrap();
        std::fs::write(saved.join("rows"), rows.to_string()).unwrap();
        return (Arc::new(Store::open(dir).unwrap()), rows);
    }
    (Arc::new(store), rows)
}

/// A thread's `schedstat`: the time it has run on a CPU and the time it has waited for one
/// (fields 1 and 2; zero elsewhere than Linux).
fn schedstat(path: &Path) -> (Duration, Duration) {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let mut f = s
        .split_whitespace()
        .map(|v| Duration::from_nanos(v.parse().unwrap_or(0)));
    (
        f.next().unwrap_or(Duration::ZERO),
        f.next().unwrap_or(Duration::ZERO),
    )
}

/// CPU time a thread has run, from its `schedstat`.
fn cpu_of(path: &Path) -> Duration {
    schedstat(path).0
}

/// Bytes this thread passed to `write`/`pwrite` (`wchar` of `/proc/thread-self/io`; 0 elsewhere).
fn written() -> u64 {
    std::fs::read_to_string("/proc/thread-self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("wchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time of this thread and of the store's checkpoint thread (comm `store-checkpoin…`).
fn write_path_cpu() -> (Duration, Duration) {
    let own = cpu_of(Path::new("/proc/thread-self/schedstat"));
    let checkpoint = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("store-checkpoin"))
        })
        .map_or(Duration::ZERO, |t| cpu_of(&t.path().join("schedstat")));
    (own, checkpoint)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One P-5 request's store work: a 50-row page of the queue and the counts.
fn p5_once(store: &Store, user: &UserId, now: i64) -> f64 {
    let t = Instant::now();
    let us = store.for_user(user);
    let page = us.queue(&Filter::All, now, None, 50).unwrap();
    let counts = us.counts(now).unwrap();
    assert_eq!(page.rows.len(), 50);
    assert!(counts.all > 0);
    ms(t.elapsed())
}

fn p5_series(store: &Store, user: &UserId, iters: usize) -> Vec<f64> {
    (0..iters).map(|_| p5_once(store, user, NOW)).collect()
}

/// One background P-5 read: its wall time and, from the reading thread's `schedstat`, the time
/// it ran on a CPU and the time it waited for one (the rest it was blocked: I/O, locks, sleeps).
#[derive(Clone, Copy)]
struct Read {
    wall: f64,
    cpu: f64,
    queued: f64,
}

/// Reads P-5 in a loop on another thread until `stop`.
fn p5_background(
    store: Arc<Store>,
    user: UserId,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Read>> {
    let reader = move || {
        let mut v = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let own = Path::new("/proc/thread-self/schedstat");
            let (r0, w0) = schedstat(own);
            let wall = p5_once(&store, &user, NOW);
            let (r1, w1) = schedstat(own);
            v.push(Read {
                wall,
                cpu: ms(r1 - r0),
                queued: ms(w1 - w0),
            });
            std::thread::sleep(Duration::from_millis(2));
        }
        v
    };
    std::thread::Builder::new()
        .name("p5-reader".into())
        .spawn(reader)
        .unwrap()
}

/// The metric of [`Summary::slow`].
const SLOW_READS: &str =
    "the slowest 1 % of those reads, mean ms: wall = on a CPU + waiting for a CPU + blocked";

/// Background reads summed up: P-5 p50 and p99, and where the slowest 1 % spent their time
/// (means: on a CPU / waiting for a CPU / neither, i.e. blocked), for the breakdown rows.
struct Summary {
    p50: f64,
    p99: f64,
    slow: String,
}

fn during_summary(reads: &[Read]) -> Summary {
    let walls: Vec<f64> = reads.iter().map(|r| r.wall).collect();
    let p99 = common::percentile(&walls, 99.0);
    let slow: Vec<&Read> = reads.iter().filter(|r| r.wall >= p99).collect();
    let n = slow.len().max(1) as f64;
    let mean = |f: fn(&Read) -> f64| slow.iter().map(|r| f(r)).sum::<f64>() / n;
    let (wall, cpu, queued) = (mean(|r| r.wall), mean(|r| r.cpu), mean(|r| r.queued));
    let blocked = (wall - cpu - queued).max(0.0);
    Summary {
        p50: common::percentile(&walls, 50.0),
        p99,
        slow: format!(
            "{wall:.2} = {cpu:.2} + {queued:.2} + {blocked:.2} ({} reads)",
            slow.len()
        ),
    }
}

/// The two P-5 rows of one store size: reads with nothing written between them (`warm`) and
/// reads each after a change to the user's items (`cold`), against a p99 bound in ms.
fn p5_rows(
    rows: &mut Vec<common::Row>,
    task: &str,
    (warm, cold): (&[f64], &[f64]),
    (bound_ms, target): (f64, &'static str),
) {
    for (series, metric) in [
        (warm, "p50 / p99, ms — nothing written since the last read"),
        (
            cold,
            "p50 / p99, ms — an item of the user changed before every read (readers' page caches invalidated)",
        ),
    ] {
        let p99 = common::percentile(series, 99.0);
        rows.push(common::Row {
            id: "P-5",
            task: task.to_owned(),
            metric: metric.into(),
            value: format!("{:.2} / {p99:.2}", common::percentile(series, 50.0)),
            target,
            verdict: common::verdict(p99 <= bound_ms),
        });
    }
}

fn file_size(dir: &Path) -> u64 {
    ["threaddesk.db", "threaddesk.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Starts the release binary on `dir` and returns the time until it prints its ready line.
fn cold_start(args: &[&str], dir: Option<&Path>, ready: &str) -> f64 {
    let exe = env!("CARGO_BIN_EXE_threaddesk");
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env_remove("THREADDESK_LOG")
        .env("THREADDESK_LOG", "warn")
        .env("THREADDESK_SIGN_IN_METHODS", "token")
        .env("THREADDESK_LISTEN", "127.0.0.1:0")
        // Nothing listens there: the start must not wait for Mattermost.
        .env("THREADDESK_MATTERMOST_URL", "http://127.0.0.1:9")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(d) = dir {
        cmd.env("THREADDESK_DATA_DIR", d);
    }
    let t = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    let mut r = BufReader::new(out);
    let mut took = f64::NAN;
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        if line.contains(ready) {
            took = ms(t.elapsed());
            break;
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    took
}

/// What one P-13 "event" is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EventMix {
    /// Every event a new reply for one user (post + search row + that user's thread + item):
    /// the worst case, nothing shared between events.
    NewPostEach,
    /// What ThreadDesk receives: a reply comes as one `posted` event per user following the
    /// thread (≈ 10 here); each event upserts the post (a new row the first time, unchanged
    /// after) and that user's thread + item.
    FanOut,
}

/// The users following each thread root `(channel, root)` of the cache [`populate`] builds.
fn followers(users: usize, threads_per_user: usize) -> HashMap<(usize, usize), Vec<usize>> {
    let per_channel = threads_per_user.div_ceil(CHANNELS_PER_USER);
    let mut map: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
    for u in 0..users {
        let mut n = 0;
        for j in 0..CHANNELS_PER_USER {
            let ch = (u * 7 + j * 41) % CHANNELS;
            for r in 0..per_channel.min(ROOTS_PER_CHANNEL) {
                if n == threads_per_user {
                    break;
                }
                map.entry((ch, (r + u) % ROOTS_PER_CHANNEL))
                    .or_default()
                    .push(u);
                n += 1;
            }
        }
    }
    map
}

/// P-13 in one event mix: 5 s of events applied in transactions of 100 while P-5 reads run on
/// another thread; pushes the rate, the CPU and bytes per event, and P-5 p99 meanwhile.
fn p13(
    store: &Arc<Store>,
    reader: &UserId,
    users: usize,
    threads_per_user: usize,
    p5_base: f64,
    mix: EventMix,
    rows: &mut Vec<common::Row>,
) {
    let name = match mix {
        EventMix::NewPostEach => "new post each",
        EventMix::FanOut => "fan-out",
    };
    eprintln!("store bench: P-13, {name} (5 s)");
    let follow = followers(users, threads_per_user);
    let mut roots: Vec<(&(usize, usize), &Vec<usize>)> = follow.iter().collect();
    roots.sort();
    let fan_out =
        roots.iter().map(|(_, f)| f.len()).sum::<usize>() as f64 / roots.len().max(1) as f64;
    let stop = Arc::new(AtomicBool::new(false));
    let bg = p5_background(Arc::clone(store), reader.clone(), Arc::clone(&stop));
    let cpu0 = write_path_cpu();
    let w0 = written();
    let t = Instant::now();
    let mut events = 0usize;
    let batch = 100;
    // Each run writes posts of its own (ids and times after every earlier run's).
    let first_post = match mix {
        EventMix::NewPostEach => 90_000_000usize,
        EventMix::FanOut => 95_000_000usize,
    };
    let mut next_post = first_post;
    let mut next_root = 0usize;
    while t.elapsed() < Duration::from_secs(5) {
        let n = store
            .write(|tx| {
                let mut n = 0;
                while n < batch {
                    // Each reply is newer than the last: every event really changes items.
                    let at = NOW + i64::try_from(next_post - 90_000_000).unwrap_or(0);
                    match mix {
                        EventMix::NewPostEach => {
                            let u = next_post % users.max(1);
                            let ch = (u * 7) % CHANNELS;
                            let root = root_id(ch, u % ROOTS_PER_CHANNEL);
                            tx.upsert_post(&post(next_post, ch, Some(root), at))?;
                            tx.user(&uid(u))
                                .upsert_thread(&thread(root, ch, &team_of(ch), at))?;
                            n += 1;
                        }
                        EventMix::FanOut => {
                            let ((ch, r), who) = roots[next_root % roots.len()];
                            next_root += 1;
                            let root = root_id(*ch, *r);
                            let reply = post(next_post, *ch, Some(root), at);
                            for u in who {
                                tx.upsert_post(&reply)?;
                                tx.user(&uid(*u)).upsert_thread(&thread(
                                    root,
                                    *ch,
                                    &team_of(*ch),
                                    at,
                                ))?;
                                n += 1;
                            }
                        }
                    }
                    next_post += 1;
                }
                Ok(n)
            })
            .unwrap();
        events += n;
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu1 = write_path_cpu();
    let wal_per_event = (written() - w0) as f64 / events as f64 / 1024.0;
    stop.store(true, Ordering::Relaxed);
    let during = bg.join().unwrap();
    let rate = events as f64 / secs;
    let per_event = |a: Duration, b: Duration| (b - a).as_secs_f64() * 1e6 / events as f64;
    let (cpu_w, cpu_c) = (per_event(cpu0.0, cpu1.0), per_event(cpu0.1, cpu1.1));
    let task = match mix {
        EventMix::NewPostEach => format!(
            "worst case, every event a new reply for one user (post + search row + thread + item), in transactions of {batch} for 5 s, {users} users' cache, P-5 reads on another thread"
        ),
        EventMix::FanOut => format!(
            "as ThreadDesk receives them: one `posted` event per follower of the thread ({fan_out:.1} on average; post + search row once, each follower's thread + item), in transactions of ≥ {batch} events for 5 s, {users} users' cache, P-5 reads on another thread"
        ),
    };
    let mut push = |metric: &str, value: String, target: &'static str, verdict: &'static str| {
        rows.push(common::Row {
            id: "P-13",
            task: task.clone(),
            metric: metric.to_owned(),
            value,
            target,
            verdict,
        });
    };
    push(
        "events applied per second",
        format!("{rate:.0}"),
        "≥ 5,000/s",
        common::verdict(rate >= 5_000.0),
    );
    push(
        "CPU per event, µs: the writing thread + the checkpoint thread (= events/s one core could apply)",
        format!(
            "{cpu_w:.0} + {cpu_c:.0} (= {:.0}/s)",
            1e6 / (cpu_w + cpu_c).max(1.0)
        ),
        "–",
        "–",
    );
    push(
        "written by the writing thread per event (WAL frames), KiB",
        format!("{wal_per_event:.1}"),
        "–",
        "–",
    );
    let Summary { p99, slow, .. } = during_summary(&during);
    push(
        "P-5 p99 during the writes, ms (baseline)",
        format!("{p99:.2} ({p5_base:.2}; {} reads)", during.len()),
        "±20 % of baseline",
        common::verdict(p99 <= p5_base * 1.2),
    );
    push(SLOW_READS, slow, "–", "–");
}

fn main() {
    let users = common::env_usize("BENCH_USERS", 2_000);
    let threads_per_user = common::env_usize("BENCH_THREADS", 250);
    let p5_items = common::env_usize("BENCH_P5_ITEMS", 10_000);
    let stress_items = common::env_usize("BENCH_P5_STRESS", 100_000);
    let iters = common::env_usize("BENCH_ITERS", 2_000);
    let started = Instant::now();
    let mut rows: Vec<common::Row> = Vec::new();
    let dir = tempfile::tempdir().unwrap();

    // ---- P-15 baseline: an empty data directory.
    let empty = tempfile::tempdir().unwrap();
    let cold_empty: Vec<f64> = (0..3)
        .map(|_| cold_start(&["serve"], Some(empty.path()), "ThreadDesk ready at"))
        .collect();

    // ---- the warm cache.
    let t = Instant::now();
    let (store, cache_rows) = warm_cache(dir.path(), users, threads_per_user, p5_items);
    let reader = uid(900_000);
    let build_s = t.elapsed().as_secs_f64();
    let cache_rows = cache_rows + p5_items * 6;
    eprintln!("store bench: cache built ({cache_rows} rows) in {build_s:.1} s");

    // ---- P-5: the page + counts, with nothing written between reads and with a write before each.
    let warm = p5_series(&store, &reader, iters);
    let mut cold = Vec::new();
    for i in 0..iters.min(500) {
        // A write between reads: every reader's page cache starts cold.
        let key = ItemKey::thread(&id('p', 50_000_000 + (i % p5_items) * 2)).unwrap();
        store
            .write(|tx| {
                tx.user(&reader).set_marks(
                    &key,
                    Marks {
                        done_at: None,
                        snoozed_until: Some(NOW - 1),
                    },
                )
            })
            .unwrap();
        cold.push(p5_once(&store, &reader, NOW));
    }
    p5_rows(
        &mut rows,
        &format!(
            "queue page (50 rows) + counts from the store, {p5_items} items, in process ({iters} reads)"
        ),
        (&warm, &cold),
        (5.0, "p99 ≤ 5 ms"),
    );

    // ---- The text filter's message search (no research target): the store's read of it.
    store
        .write(|tx| {
            tx.upsert_profiles(&[Profile {
                username: "poster".into(),
                ..profile(&uid(999_999))
            }])
        })
        .unwrap();
    for (word, what) in [
        ("ordinary", "a word in every cached message"),
        ("ordinar*", "a prefix of a word in every cached message"),
        ("zymurgy", "a word in no message"),
        ("from:poster", "no word, the author of every message"),
    ] {
        let q = SearchQuery::parse(word);
        let us = store.for_user(&reader);
        let mut found = 0;
        let times: Vec<f64> = (0..iters.min(200))
            .map(|_| {
                let t = Instant::now();
                found = us.search_items(&q, 1_000).unwrap().len();
                ms(t.elapsed())
            })
            .collect();
        rows.push(common::Row {
            id: "search",
            task: format!(
                "text filter's message search, store read (`search_items`: newest 1,000 matches of ≤ 10,000 candidates), {what} (`{word}`), {cache_rows}-row cache, the {p5_items}-item user ({found} items found)"
            ),
            metric: "p50 / p99, ms".into(),
            value: format!(
                "{:.1} / {:.1}",
                common::percentile(&times, 50.0),
                common::percentile(&times, 99.0)
            ),
            target: "– (none in the research; ≤ 100 ms p99 is ours)",
            verdict: common::verdict(common::percentile(&times, 99.0) <= 100.0),
        });
    }
    if std::env::var_os("BENCH_SEARCH_ONLY").is_some() {
        println!("{}", common::table(&rows));
        return;
    }

    // ---- The baseline of P-13 and P-14: the same background reader (its own thread, a read
    // every 2 ms) for 5 s with nothing written, so "during" and "before" differ only in the load.
    eprintln!("store bench: background reads, nothing written (5 s)");
    let stop = Arc::new(AtomicBool::new(false));
    let bg = p5_background(Arc::clone(&store), reader.clone(), Arc::clone(&stop));
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let idle = bg.join().unwrap();
    let base = during_summary(&idle);
    let p5_base = base.p99;
    rows.push(common::Row {
        id: "P-13",
        task: "baseline of P-13 and P-14: the same background P-5 reads (own thread, one every 2 ms) for 5 s, nothing written".into(),
        metric: "P-5 p50 / p99, ms · the slowest 1 %, mean ms: wall = on a CPU + waiting for a CPU + blocked".into(),
        value: format!("{:.2} / {p5_base:.2} · {}", base.p50, base.slow),
        target: "–",
        verdict: "–",
    });

    let p14_only = std::env::var_os("BENCH_P14_ONLY").is_some();
    if !p14_only {
        // ---- P-13: events applied in batched transactions while P-5 reads run, in two mixes.
        for mix in [EventMix::NewPostEach, EventMix::FanOut] {
            p13(
                &store,
                &reader,
                users,
                threads_per_user,
                p5_base,
                mix,
                &mut rows,
            );
        }

        if std::env::var_os("BENCH_P13_ONLY").is_some() {
            println!("{}", common::table(&rows));
            return;
        }
    }
    if !p14_only {
        // ---- P-15: cold start of the binary on the warm cache.
        let size_before = file_size(dir.path());
        let cold_warm: Vec<f64> = (0..3)
            .map(|_| cold_start(&["serve"], Some(dir.path()), "ThreadDesk ready at"))
            .collect();
        let cold_task = format!(
            "`threaddesk serve` start to its ready line, warm cache of {cache_rows} rows ({:.0} MiB) vs an empty data dir",
            size_before as f64 / 1_048_576.0
        );
        let warm_med = common::percentile(&cold_warm, 50.0);
        let empty_med = common::percentile(&cold_empty, 50.0);
        rows.push(common::Row {
            id: "P-15",
            task: cold_task,
            metric: "median of 3, ms: warm cache (empty)".into(),
            value: format!("{warm_med:.0} ({empty_med:.0})"),
            target: "≤ 2 s; O(1) in the cache size",
            verdict: common::verdict(warm_med <= 2_000.0 && warm_med <= empty_med * 2.0 + 50.0),
        });
        let demo: Vec<f64> = (0..3)
            .map(|_| cold_start(&["demo", "--port", "0"], None, "ThreadDesk demo ready at"))
            .collect();
        rows.push(common::Row {
        id: "P-15",
        task: "`threaddesk demo` start to its ready line (simulator seeded with the `demo` org, ThreadDesk serving; the user's sync starts at sign-in)".into(),
        metric: "median of 3 (min–max), ms".into(),
        value: format!(
            "{:.0} ({:.0}–{:.0})",
            common::percentile(&demo, 50.0),
            common::percentile(&demo, 0.0),
            common::percentile(&demo, 100.0)
        ),
        target: "≤ 2 s",
        verdict: common::verdict(common::percentile(&demo, 50.0) <= 2_000.0),
    });
    }
    // ---- P-14: the retention purge of everything older than 14 days, P-5 reads meanwhile.
    eprintln!("store bench: P-14");
    let stop = Arc::new(AtomicBool::new(false));
    let bg = p5_background(Arc::clone(&store), reader.clone(), Arc::clone(&stop));
    let t = Instant::now();
    let rep = store.purge_older_than(NOW - RETENTION).unwrap();
    let purge_s = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let during = bg.join().unwrap();
    let purged = rep.posts + rep.threads + rep.items + rep.mentions + rep.marks + rep.outbox;
    let task14 = format!(
        "retention purge past 14 days on the {users}-user cache: {purged} rows ({} posts + their search rows, {} threads, {} items), batches of ≤ 1,000 rows",
        rep.posts, rep.threads, rep.items
    );
    rows.push(common::Row {
        id: "P-14",
        task: task14.clone(),
        metric: "wall time, s".into(),
        value: format!("{purge_s:.1}"),
        target: "–",
        verdict: "–",
    });
    let Summary { p99: p14, slow, .. } = during_summary(&during);
    rows.push(common::Row {
        id: "P-14",
        task: task14.clone(),
        metric: "P-5 p99 during the purge, ms (baseline)".into(),
        value: format!("{p14:.2} ({p5_base:.2}; {} reads)", during.len()),
        target: "≤ 2× baseline",
        verdict: common::verdict(p14 <= p5_base * 2.0),
    });
    rows.push(common::Row {
        id: "P-14",
        task: task14,
        metric: SLOW_READS.into(),
        value: slow,
        target: "–",
        verdict: "–",
    });
    if p14_only {
        println!("{}", common::table(&rows));
        return;
    }
    drop(store);

    // ---- P-5 stress: 100 k items for one user, in a store of its own.
    if stress_items > 0 {
        let sdir = tempfile::tempdir().unwrap();
        let s = Store::open(sdir.path()).unwrap();
        let heavy = populate_reader(&s, 1, stress_items);
        let v = p5_series(&s, &heavy, iters.min(1_000));
        let mut cold = Vec::new();
        for i in 0..200 {
            let key = ItemKey::thread(&id('p', 50_000_000 + i * 2)).unwrap();
            s.write(|tx| {
                tx.user(&heavy).set_marks(
                    &key,
                    Marks {
                        done_at: Some(NOW + 1),
                        snoozed_until: None,
                    },
                )
            })
            .unwrap();
            cold.push(p5_once(&s, &heavy, NOW));
        }
        p5_rows(
            &mut rows,
            &format!("queue page (50 rows) + counts, {stress_items} items for one user"),
            (&v, &cold),
            (10.0, "p99 ≤ 10 ms"),
        );
    }

    // ---- the table.
    let mut out = String::new();
    let _ = writeln!(out, "## Store benchmarks (generated)\n");
    let _ = writeln!(
        out,
        "ThreadDesk's SQLite cache driven through its own store API, in process; cache of {users} users × {threads_per_user} followed threads in {CHANNELS} shared channels (built in {build_s:.0} s); whole run {:.0} s.\n",
        started.elapsed().as_secs_f64()
    );
    out.push_str(&common::machine());
    out.push('\n');
    out.push_str(&common::table(&rows));
    println!("{out}");
    if let Some(path) = common::out_path()
        && let Err(e) = common::write_section(&path, "store", &out)
    {
        eprintln!("cannot write {}: {e}", path.display());
    }
}
