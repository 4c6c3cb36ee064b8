//! Storage faults below SQLite, through the test-only `lossy` VFS (`crates/lossy-vfs`), which
//! this test binary installs as the process's default VFS: every connection the store (or the
//! whole in-process app) opens goes through it.
//!
//! - T-5, power loss: a lost fsync discards everything written since the last sync. Outbox and
//!   token writes commit with `synchronous=FULL` ([`Store::write_durable`]); the cache commits
//!   with `NORMAL` ([`Store::write`]), which may lose its last commits (the cache refills from
//!   Mattermost). The test cuts the power at random points of a mixed workload and checks what
//!   survives; it also writes "acknowledged" outbox rows through `write()` and shows that those
//!   ARE lost, so the test can see a lost fsync at all.
//! - T-26, read-only database: writes fail with `SQLITE_READONLY` while the app runs; a reply is
//!   refused with a clear error, never acknowledged then lost, and the service recovers.

#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::json;
use support::Stack;
use threaddesk::inbox::ItemKey;
use threaddesk::store::{
    Channel, EncryptedBlob, JsonText, MessageText, NewOutbox, Post, Profile, SecretText, Store,
    Team, UserId,
};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A 26-char Mattermost-shaped id.
fn id(prefix: char, n: u64) -> String {
    format!("{prefix}{n:0>25}")
}

fn user(n: u64) -> UserId {
    UserId::parse(&id('u', n)).unwrap()
}

const TEAM: u64 = 1;
const CHANNEL: u64 = 1;
/// Posts from the setup, old enough for the retention purge to delete them in batches.
const OLD_POSTS: u64 = 400;
/// The retention purge of the workload keeps this many of the newest posts.
const RETAINED_POSTS: u64 = 300;
/// Later than every time the workload writes (claims are due, sessions do not expire).
const NOW: i64 = 2_000_000_000_000;

fn post(n: u64, at: i64) -> Post {
    Post {
        post_id: id('p', n),
        channel_id: id('c', CHANNEL),
        user_id: id('u', 99),
        create_at: at,
        update_at: at,
        message: MessageText::new(format!("cache post {n} {}", "lorem ipsum ".repeat(30))),
        props: JsonText::new("{}"),
        file_ids: JsonText::new("[]"),
        reactions: JsonText::new("[]"),
        metadata: JsonText::new("{}"),
        ..Post::default()
    }
}

fn action(n: u64) -> NewOutbox {
    NewOutbox {
        kind: "reply".into(),
        item_key: ItemKey::thread(&id('r', n)).unwrap(),
        payload: JsonText::new(format!("{{\"message\":\"reply {n}\"}}")),
        pending_post_id: format!("{}:{n}", id('u', 1)),
        marker: format!("m{n}"),
        coalesce: false,
    }
}

/// The users, team, channel and old posts the workload writes around.
fn setup(store: &Store, durable: &UserId, normal: &UserId) {
    store
        .write_durable(|tx| {
            for u in [durable, normal] {
                tx.user(u).upsert_self(
                    &Profile {
                        user_id: u.as_str().into(),
                        username: format!("user{}", &u.as_str()[20..]),
                        ..Profile::default()
                    },
                    1,
                )?;
            }
            tx.upsert_team(&Team {
                team_id: id('t', TEAM),
                name: "t".into(),
                display_name: "Team".into(),
                update_at: 1,
                delete_at: 0,
            })?;
            tx.upsert_channel(&Channel {
                channel_id: id('c', CHANNEL),
                team_id: id('t', TEAM),
                channel_type: "O".into(),
                name: "ch".into(),
                display_name: "Channel".into(),
                total_msg_count: 0,
                total_msg_count_root: 0,
                last_post_at: 1,
                last_root_post_at: 1,
                update_at: 1,
                delete_at: 0,
            })?;
            for n in 1..=OLD_POSTS {
                tx.upsert_post(&post(n, i64::try_from(n).unwrap()))?;
            }
            Ok(())
        })
        .unwrap();
}

/// What the application was told succeeded, per kind of write.
#[derive(Default)]
struct Ledger {
    /// Outbox rows of the durable user (`write_durable`): id → last acknowledged state.
    durable_rows: BTreeMap<i64, String>,
    /// Outbox rows written through `write()` (NORMAL): the variant that must show losses.
    normal_rows: BTreeSet<i64>,
    /// Cache commits (`write()`): the posts of each acknowledged commit.
    cache_commits: Vec<Vec<u64>>,
    /// The acknowledged token of the durable user.
    token: Option<Vec<u8>>,
}

/// A durable call that was under way when the power went: its outcome may or may not be there.
#[derive(Debug, Clone)]
enum InFlight {
    None,
    Enqueue,
    Claim { id: i64 },
    MarkSent { id: i64 },
    Token(Vec<u8>),
}

#[derive(Default, Debug)]
struct Figures {
    trials: u64,
    cut_calls: u64,
    cuts_in_checkpointer: u64,
    durable_acked: u64,
    durable_lost: u64,
    durable_state_lost: u64,
    token_acked: u64,
    token_lost: u64,
    normal_rows_acked: u64,
    normal_rows_lost: u64,
    cache_commits_acked: u64,
    cache_commits_lost: u64,
    cache_commits_torn: u64,
    trials_losing_normal: u64,
    trials_by_mode: [u64; 3],
    integrity_failures: u64,
    pending_dropped: u64,
    pending_kept: u64,
}

/// Opens the database directly with SQLite's own `unix` VFS ("after the reboot").
fn open_plain(db: &Path) -> Connection {
    Connection::open_with_flags_and_vfs(db, OpenFlags::default(), c"unix").unwrap()
}

/// One power-loss trial: open the store, cut after `cut` mutating calls of a mixed workload,
/// drop everything unsynced (or part of it), reopen with the plain VFS and compare with what
/// the application was told.
#[allow(clippy::too_many_lines)]
fn trial(
    dir: &Path,
    rng: &mut StdRng,
    ledger: &mut Ledger,
    fig: &mut Figures,
    mode: usize,
    counters: &mut (u64, u64, i64),
) {
    let (durable, normal) = (user(1), user(2));
    let store = Store::open(dir).unwrap();
    // As at every start of ThreadDesk: rows a crash left in flight go back to the queue.
    store.outbox_requeue_inflight(NOW).unwrap();
    for state in ledger.durable_rows.values_mut() {
        if state == "inflight" {
            *state = "queued".into();
        }
    }
    let cut = rng.random_range(1..=700);
    lossy_vfs::cut_after(dir, cut);
    let calls_before = lossy_vfs::mutating_calls(dir);
    let (next_post, next_action, purge_cutoff) = counters;
    let mut in_flight = InFlight::None;
    for _ in 0..100_000 {
        let roll = rng.random_range(0..100);
        // The workload's clock: the post counter (the purge cutoff follows it too).
        let now = i64::try_from(*next_post).unwrap();
        if roll < 34 {
            // Cache: 1–3 posts in one NORMAL commit.
            let k = rng.random_range(1..=3);
            let ids: Vec<u64> = (0..k).map(|i| *next_post + i).collect();
            *next_post += k;
            let r = store.write(|tx| {
                for n in &ids {
                    tx.upsert_post(&post(*n, i64::try_from(*n).unwrap()))?;
                }
                Ok(())
            });
            if r.is_ok() && !lossy_vfs::crashed(dir) {
                ledger.cache_commits.push(ids);
                fig.cache_commits_acked += 1;
            }
        } else if roll < 51 {
            // A reply committed durably before the browser is answered.
            *next_action += 1;
            in_flight = InFlight::Enqueue;
            let r = if std::env::var_os("POWER_LOSS_BREAK_DURABILITY").is_some() {
                // Self-check of the test: the same row through `write()` (NORMAL) must fail it.
                let new = action(*next_action);
                store.write(|tx| tx.user(&durable).outbox_enqueue(&new, now))
            } else {
                store
                    .for_user(&durable)
                    .outbox_enqueue(&action(*next_action), now)
            };
            if let Ok(row) = r
                && !lossy_vfs::crashed(dir)
            {
                ledger.durable_rows.insert(row, "queued".into());
                fig.durable_acked += 1;
            }
        } else if roll < 65 {
            // The same row written with NORMAL: acknowledged, but not durable.
            *next_action += 1;
            let new = action(*next_action);
            let r = store.write(|tx| tx.user(&normal).outbox_enqueue(&new, now));
            if let Ok(row) = r
                && !lossy_vfs::crashed(dir)
            {
                ledger.normal_rows.insert(row);
                fig.normal_rows_acked += 1;
            }
        } else if roll < 85 {
            // The sender: claim the oldest queued row, then mark it sent (both durable; a sent
            // row that came back as queued would be sent twice).
            let candidate = ledger
                .durable_rows
                .iter()
                .find(|(_, s)| *s == "queued")
                .map(|(id, _)| *id);
            let Some(candidate) = candidate else {
                continue;
            };
            in_flight = InFlight::Claim { id: candidate };
            let r = store.for_user(&durable).outbox_claim_next(NOW * 2);
            if lossy_vfs::crashed(dir) {
                break;
            }
            let row = r.unwrap().unwrap();
            assert_eq!(
                row.id, candidate,
                "the claim took another row than expected"
            );
            ledger.durable_rows.insert(row.id, "inflight".into());
            in_flight = InFlight::MarkSent { id: row.id };
            let r = store
                .for_user(&durable)
                .outbox_mark_sent(row.id, Some(&id('s', row.id.unsigned_abs())));
            if r.is_ok() && !lossy_vfs::crashed(dir) {
                ledger.durable_rows.insert(row.id, "sent".into());
            }
        } else if roll < 92 {
            // A refreshed OAuth token (durable: the old one is already spent at Mattermost).
            *next_action += 1;
            let blob = format!("token {next_action}").into_bytes();
            in_flight = InFlight::Token(blob.clone());
            let r = store
                .for_user(&durable)
                .put_token("oauth", &EncryptedBlob(blob.clone()), now);
            if r.is_ok() && !lossy_vfs::crashed(dir) {
                ledger.token = Some(blob);
                fig.token_acked += 1;
            }
        } else if roll < 95 {
            // A browser session (NORMAL, like the web layer writes it).
            *next_action += 1;
            let token = format!("session {next_action}");
            let r = store.write(|tx| {
                tx.user(&durable)
                    .create_session(&token, &SecretText::new("csrf"), now, NOW * 2)
            });
            assert!(r.is_ok() || lossy_vfs::crashed(dir), "{r:?}");
        } else if roll < 98 {
            // Idle: the store's checkpoint thread copies the WAL into the database (it waits
            // 200 ms after a commit). Half the time the power goes during that checkpoint.
            if rng.random_bool(0.5) {
                lossy_vfs::cut_after(dir, rng.random_range(1..=30));
            }
            std::thread::sleep(Duration::from_millis(300));
        } else {
            // Retention: keeps the newest posts (the file stays small over many trials) and
            // truncates the WAL (a checkpoint). Commits it may delete are no longer checked.
            *purge_cutoff = i64::try_from(next_post.saturating_sub(RETAINED_POSTS)).unwrap();
            let cutoff = u64::try_from(*purge_cutoff).unwrap();
            ledger
                .cache_commits
                .retain(|c| c.iter().all(|n| *n >= cutoff));
            // Sent outbox rows older than the cutoff go too.
            ledger.durable_rows.retain(|_, state| state != "sent");
            let r = store.purge_older_than(*purge_cutoff);
            assert!(r.is_ok() || lossy_vfs::crashed(dir), "{r:?}");
        }
        if lossy_vfs::crashed(dir) {
            break;
        }
        in_flight = InFlight::None;
    }
    assert!(lossy_vfs::crashed(dir), "the workload ended before the cut");
    fig.cut_calls += lossy_vfs::mutating_calls(dir) - calls_before;
    if lossy_vfs::crash_thread(dir).as_deref() == Some("store-checkpoint") {
        fig.cuts_in_checkpointer += 1;
    }
    // The machine is off: the store's connections close (their writes fail), then the disk
    // keeps only what was synced (plus, in the other modes, some or all of the rest).
    drop(store);
    let loss = match mode {
        0 => lossy_vfs::power_loss(dir, &mut || false),
        1 => lossy_vfs::power_loss(dir, &mut || rng.random_bool(0.5)),
        _ => lossy_vfs::power_loss(dir, &mut || true),
    }
    .unwrap();
    fig.trials_by_mode[mode] += 1;
    fig.pending_dropped += u64::try_from(loss.dropped).unwrap();
    fig.pending_kept += u64::try_from(loss.kept).unwrap();
    fig.trials += 1;

    // After the reboot: SQLite's own VFS, no model.
    let conn = open_plain(&dir.join(threaddesk::store::DB_FILE));
    let check: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    if check != ["ok"] {
        fig.integrity_failures += 1;
        eprintln!("integrity_check after trial {}: {check:?}", fig.trials);
    }
    let state_of = |row: i64| -> Option<String> {
        conn.query_row(
            "SELECT state FROM outbox WHERE id = ?1",
            params![row],
            |r| r.get(0),
        )
        .optional()
        .unwrap()
    };
    for (row, acked) in &ledger.durable_rows {
        let allowed: &[&str] = match in_flight {
            InFlight::Claim { id } if id == *row => &["queued", "inflight"],
            InFlight::MarkSent { id } if id == *row => &["inflight", "sent"],
            _ => &[],
        };
        match state_of(*row) {
            None => {
                fig.durable_lost += 1;
                eprintln!(
                    "trial {}: durable outbox row {row} ({acked}) LOST",
                    fig.trials
                );
            }
            Some(s) if s == *acked || allowed.contains(&s.as_str()) => {}
            Some(s) => {
                fig.durable_state_lost += 1;
                eprintln!(
                    "trial {}: durable outbox row {row} acknowledged {acked}, found {s}",
                    fig.trials
                );
            }
        }
    }
    let token: Option<Vec<u8>> = conn
        .query_row(
            "SELECT blob FROM user_tokens WHERE user_id = ?1 AND kind = 'oauth'",
            params![durable.as_str()],
            |r| r.get(0),
        )
        .optional()
        .unwrap();
    let token_ok = token == ledger.token
        || matches!((&in_flight, &token), (InFlight::Token(b), Some(t)) if b == t);
    if !token_ok {
        fig.token_lost += 1;
        eprintln!("trial {}: acknowledged token lost", fig.trials);
    }
    let normal_lost: Vec<i64> = ledger
        .normal_rows
        .iter()
        .copied()
        .filter(|row| state_of(*row).is_none())
        .collect();
    fig.normal_rows_lost += u64::try_from(normal_lost.len()).unwrap();
    let mut lost_commits = 0;
    for commit in &ledger.cache_commits {
        let present = commit
            .iter()
            .filter(|p| {
                conn.query_row(
                    "SELECT 1 FROM posts WHERE post_id = ?1",
                    params![id('p', **p)],
                    |_| Ok(()),
                )
                .optional()
                .unwrap()
                .is_some()
            })
            .count();
        if present == 0 {
            lost_commits += 1;
        } else if present < commit.len() {
            fig.cache_commits_torn += 1;
        }
    }
    fig.cache_commits_lost += lost_commits;
    if lost_commits > 0 || !normal_lost.is_empty() {
        fig.trials_losing_normal += 1;
    }
    // What is there now is the new starting point (the next trial's store opens this file).
    let rows: Vec<(i64, String, String)> = conn
        .prepare("SELECT id, user_id, state FROM outbox")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    ledger.durable_rows = rows
        .iter()
        .filter(|(_, u, _)| u == durable.as_str())
        .map(|(i, _, s)| (*i, s.clone()))
        .collect();
    ledger.normal_rows = rows
        .iter()
        .filter(|(_, u, _)| u == normal.as_str())
        .map(|(i, _, _)| *i)
        .collect();
    ledger.cache_commits.clear();
    ledger.token = token;
    drop(conn);
}

/// T-5: power loss at random points of a workload mixing NORMAL (cache, sessions, the NORMAL
/// outbox variant) and FULL (outbox, token) commits. With `POWER_LOSS_BREAK_DURABILITY=1` the
/// outbox rows the test counts as durable are written with `write()` instead: the test must
/// then fail (acknowledged rows lost).
#[test]
fn power_loss_never_loses_an_acknowledged_durable_write() {
    lossy_vfs::install();
    let trials = env_u64("POWER_LOSS_TRIALS", 60);
    let seed = env_u64("POWER_LOSS_SEED", 5);
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    lossy_vfs::watch(&dir, true);
    {
        let store = Store::open(&dir).unwrap();
        setup(&store, &user(1), &user(2));
    }
    // The setup is on disk for good (as after the OS wrote its cache back).
    lossy_vfs::settle(&dir);
    let mut ledger = Ledger::default();
    let mut fig = Figures::default();
    let mut counters = (OLD_POSTS + 1, 0, 0);
    for t in 0..trials {
        // Mostly a lost fsync (the whole unsynced tail gone); also a disk that wrote a random
        // part of it, and a plain process crash (everything written survives).
        let mode = match t % 4 {
            0 | 1 => 0,
            2 => 1,
            _ => 2,
        };
        trial(&dir, &mut rng, &mut ledger, &mut fig, mode, &mut counters);
    }
    // The store opens normally afterwards and is sound.
    lossy_vfs::unwatch(&dir);
    let store = Store::open(&dir).unwrap();
    assert!(store.quick_check().unwrap());
    let remaining = store.for_user(&user(1)).outbox_rows(None).unwrap().len();
    drop(store);
    eprintln!(
        "RELIABILITY power loss (T-5): {} trials (seed {seed}; {} lost-fsync, {} random-subset, \
         {} process-only), cut after {:.0} mutating calls on average, {} of them inside the store's background checkpoint; unsynced changes dropped \
         {}, kept {}; integrity_check failures {}; durable (FULL) acknowledged: {} outbox rows \
         + {} tokens + their sent/inflight transitions → lost {}, state rolled back {}, tokens \
         lost {}; NORMAL acknowledged: {} cache commits → lost {} (torn {}), {} outbox rows \
         written with write() → lost {}; trials that lost NORMAL commits {}; {} outbox rows at \
         the end",
        fig.trials,
        fig.trials_by_mode[0],
        fig.trials_by_mode[1],
        fig.trials_by_mode[2],
        fig.cut_calls as f64 / fig.trials.max(1) as f64,
        fig.cuts_in_checkpointer,
        fig.pending_dropped,
        fig.pending_kept,
        fig.integrity_failures,
        fig.durable_acked,
        fig.token_acked,
        fig.durable_lost,
        fig.durable_state_lost,
        fig.token_lost,
        fig.cache_commits_acked,
        fig.cache_commits_lost,
        fig.cache_commits_torn,
        fig.normal_rows_acked,
        fig.normal_rows_lost,
        fig.trials_losing_normal,
        remaining,
    );
    assert_eq!(fig.integrity_failures, 0);
    assert_eq!(
        (fig.durable_lost, fig.durable_state_lost, fig.token_lost),
        (0, 0, 0)
    );
    assert_eq!(fig.cache_commits_torn, 0, "a commit is all or nothing");
    // The test sees lost fsyncs at all: NORMAL commits are lost, and the same outbox rows
    // written with NORMAL would have been lost too.
    assert!(fig.cache_commits_lost > 0, "{fig:?}");
    assert!(fig.normal_rows_lost > 0, "{fig:?}");
}

/// Polls `path` of the session until its JSON contains `needle`.
async fn shows(s: &mut support::Session, path: &str, needle: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok((200, v)) = s.json(path).await
            && v.to_string().contains(needle)
        {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// T-26, read-only database: `chmod` does not affect an open handle, so the VFS makes every
/// write of the running app's database fail instead: first with `SQLITE_READONLY` (what SQLite
/// answers on a read-only database), then with `SQLITE_IOERR_WRITE` (the `EROFS` of a file
/// system remounted read-only). A reply is refused with a clear error and never sent; the cache
/// write path (a Mattermost event) fails without taking anything down; reads go on; when writes
/// work again the service accepts and delivers replies and shows events, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_database_refuses_replies_and_recovers() {
    lossy_vfs::install();
    // Any panic in the process (the app's tasks included) is counted.
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let data_dir = support::temp_dir("readonly");
    lossy_vfs::watch(&data_dir, false);
    let stack = Stack::start_with(mmsim::SimConfig::default(), Some(data_dir.clone()))
        .await
        .unwrap();
    let driver = stack.driver();
    let mut alice = stack.sign_in("alice").await.unwrap();
    let items = alice.wait_items(1).await.unwrap();
    let (key, other) = stack.thread_by_other(&items, "alice").await.unwrap();
    let root = key[2..].to_owned();
    let token = stack.mm_token("alice").await.unwrap();
    let item = format!("/api/v1/items/{key}");
    let reply_path = format!("{item}/reply");
    let r = alice
        .post_json(&reply_path, &json!({"message": "before the disk refused"}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    stack
        .wait_posted_once(&root, &token, "before the disk refused")
        .await
        .unwrap();

    let mut report = Vec::new();
    for (code, what) in [
        (rusqlite::ffi::SQLITE_READONLY, "SQLITE_READONLY"),
        (rusqlite::ffi::SQLITE_IOERR_WRITE, "SQLITE_IOERR_WRITE"),
    ] {
        // The database stops taking writes under the running service.
        let before = lossy_vfs::refuse_writes(&data_dir, Some(code));
        let refused_msg = format!("reply while {what}");
        let r = alice
            .post_json(&reply_path, &json!({"message": refused_msg}))
            .await
            .unwrap();
        let status = r.status().as_u16();
        let refusal = r.text().await.unwrap_or_default();
        assert_eq!(status, 503, "{what}: {refusal}");
        assert!(refusal.contains("not recorded"), "{what}: {refusal}");
        assert!(
            refusal.contains("full, read-only or failing"),
            "{what}: the refusal names the likely causes: {refusal}"
        );
        let r = alice
            .post_json(&format!("{item}/done"), &json!({}))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 503, "{what}: done");
        // A Mattermost event: the cache cannot record it (the engine resyncs, which fails too).
        let missed = format!("event while {what}");
        driver.reply(&other, &root, &missed).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Reads go on while nothing can be written.
        let (list_status, _) = alice.json("/api/v1/items").await.unwrap();
        assert_eq!(list_status, 200, "{what}: list");
        let (item_status, _) = alice.json(&item).await.unwrap();
        assert_eq!(item_status, 200, "{what}: item");
        let refused_calls = lossy_vfs::refuse_writes(&data_dir, None) - before;
        assert!(refused_calls > 0, "{what}: the disk never refused a write");

        // Writes work again: no restart.
        let after = format!("reply after {what}");
        let r = alice
            .post_json(&reply_path, &json!({"message": after}))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "{what}: no recovery");
        stack.wait_posted_once(&root, &token, &after).await.unwrap();
        let next = format!("event after {what}");
        driver.reply(&other, &root, &next).unwrap();
        assert!(
            shows(&mut alice, &item, &next, Duration::from_secs(10)).await,
            "{what}: an event after the recovery never reached the cache"
        );
        // Opening the conversation re-reads the messages the cache is missing.
        assert!(
            shows(&mut alice, &item, &missed, Duration::from_secs(5)).await,
            "{what}: the event missed meanwhile never showed"
        );
        // The refused reply was never sent, not even later.
        let posted = stack
            .count_in_thread(&root, &token, &refused_msg)
            .await
            .unwrap();
        assert_eq!(posted, 0, "{what}: a refused reply was sent");
        report.push(format!(
            "{what}: reply and `done` refused with {status} {refusal}, {refused_calls} writes \
             refused by the disk, reads 200, refused reply posted {posted} times; then (no \
             restart) reply accepted and delivered once, the next event shown, the missed one \
             shown when the conversation is opened"
        ));
    }
    let panics = PANICS.load(Ordering::SeqCst);
    eprintln!(
        "RELIABILITY read-only database (T-26): {}; panics {panics}",
        report.join("; ")
    );
    assert_eq!(panics, 0, "something panicked while writes were refused");
    lossy_vfs::unwatch(&data_dir);
}
