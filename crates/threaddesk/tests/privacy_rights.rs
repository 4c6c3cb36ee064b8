//! Privacy promises about what is kept and the user's rights: retention limits (config and
//! purge, T-23), `threaddesk purge`, done/snooze surviving a wiped install (they live in
//! Mattermost), export and delete of my data, the `/privacy` page, and technical cookies only
//! (T-19).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Session, Stack, StackOptions, TestClock, poll};
use threaddesk::account;
use threaddesk::store::UserId;

const WAIT: Duration = Duration::from_secs(20);

fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_threaddesk"));
    for (k, _) in std::env::vars() {
        if k.starts_with("THREADDESK_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn retention_outside_7_to_14_days_is_refused_at_start() {
    let dir = support::temp_dir("ret");
    for (args, env) in [
        (vec!["--retention-days", "30"], None),
        (vec!["--retention-days", "6"], None),
        (vec![], Some("15")),
    ] {
        let mut c = bin();
        c.args(["serve", "--mattermost-url", "http://127.0.0.1:1"])
            .args(&args)
            .arg("--data-dir")
            .arg(&dir)
            .args(["--listen", "127.0.0.1:0"]);
        if let Some(v) = env {
            c.env("THREADDESK_RETENTION_DAYS", v);
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} must not start");
        assert!(
            err.contains("retention_days must be between 7 and 14"),
            "{args:?} {env:?}: {err}"
        );
        if env.is_some() {
            assert!(err.contains("THREADDESK_RETENTION_DAYS"), "{err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn db_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for s in ["", "-wal", "-journal"] {
        all.extend(std::fs::read(dir.join(format!("threaddesk.db{s}"))).unwrap_or_default());
    }
    all
}

fn has(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn cache_older_than_the_retention_window_is_purged() {
    let clock = TestClock::default();
    let stack = Stack::start_opts(StackOptions {
        clock: Some(clock.clock()),
        configure: Some(Box::new(|c| c.set_retention_days(7).unwrap())),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let mut alice = stack.sign_in("alice").await.unwrap();
    alice.wait_items(1).await.unwrap();
    let canary = format!("RETAIN{:012x}", rand::random::<u64>());
    stack
        .driver()
        .dm("bob", "alice", &format!("{canary} words"))
        .unwrap();
    let q = format!("/api/v1/items?q={canary}");
    poll(WAIT, "the DM synced", || {
        let mut s = Session::new(&stack.url);
        s.cookies = alice.cookies.clone();
        let q = q.clone();
        async move {
            let (_, v) = s.json(&q).await.ok()?;
            (!v["items"].as_array()?.is_empty()).then_some(())
        }
    })
    .await
    .unwrap();
    let state = &stack.app.state;
    let uid = UserId::parse(&stack.driver().user_id("alice").unwrap()).unwrap();
    let before = state.store().for_user(&uid).export().unwrap();
    assert!(!before.items.is_empty());
    assert!(
        has(&db_bytes(&stack.data_dir), &canary),
        "the message is cached on disk before the purge (else the check below proves nothing)"
    );
    // 6 days on: nothing of today is purged.
    threaddesk::app::purge_once(state.store(), state.config(), clock.now() + 6 * 86_400_000)
        .unwrap();
    let us = state.store().for_user(&uid);
    assert!(
        !us.search(&canary, 10).unwrap().is_empty(),
        "kept within 7 days"
    );
    // 8 days on: everything cached today is older than the 7-day window.
    clock.advance(Duration::from_secs(8 * 86_400));
    threaddesk::app::purge_once(state.store(), state.config(), clock.now()).unwrap();
    let after = us.export().unwrap();
    assert!(
        after.items.is_empty(),
        "items purged: {}",
        after.items.len()
    );
    assert!(after.threads.is_empty(), "threads purged");
    assert!(
        us.search(&canary, 10).unwrap().is_empty(),
        "search rows purged"
    );
    let posts = rusqlite_count(&stack.data_dir, "SELECT count(*) FROM posts");
    assert_eq!(posts, 0, "no cached post older than the window");
    assert!(
        !has(&db_bytes(&stack.data_dir), &canary),
        "purged message text is still in the database files"
    );
}

/// T-23 with a busy reader: a purge while a long read transaction holds a snapshot that still
/// sees the message cannot checkpoint the WAL (the reader needs those pages), so the text stays
/// on disk while that reader lives. Once the reader ends, the next purge cycle's checkpoint
/// removes it from both `threaddesk.db` and `-wal` (`secure_delete` zeroes freed pages, the
/// TRUNCATE checkpoint empties the WAL).
#[tokio::test]
async fn purged_text_leaves_the_wal_once_a_busy_reader_ends() {
    let clock = TestClock::default();
    let stack = Stack::start_opts(StackOptions {
        clock: Some(clock.clock()),
        configure: Some(Box::new(|c| c.set_retention_days(7).unwrap())),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let mut alice = stack.sign_in("alice").await.unwrap();
    alice.wait_items(1).await.unwrap();
    let canary = format!("WALREADER{:012x}", rand::random::<u64>());
    stack
        .driver()
        .dm("bob", "alice", &format!("{canary} words"))
        .unwrap();
    let q = format!("/api/v1/items?q={canary}");
    poll(WAIT, "the DM synced", || {
        let mut s = Session::new(&stack.url);
        s.cookies = alice.cookies.clone();
        let q = q.clone();
        async move {
            let (_, v) = s.json(&q).await.ok()?;
            (!v["items"].as_array()?.is_empty()).then_some(())
        }
    })
    .await
    .unwrap();
    // Stop the live sync so that nothing but the purge writes from here on.
    let uid = UserId::parse(&stack.driver().user_id("alice").unwrap()).unwrap();
    let state = &stack.app.state;
    state.stop_sync(&uid).await;
    // A long reader (an admin's `sqlite3`, a backup, a slow page) holds a snapshot with the text.
    let reader = rusqlite::Connection::open_with_flags(
        stack.data_dir.join("threaddesk.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let seen: i64 = reader
        .query_row(
            "SELECT count(*) FROM posts WHERE message LIKE ?1",
            [format!("%{canary}%")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seen, 1, "the reader's snapshot holds the message");
    clock.advance(Duration::from_secs(8 * 86_400));
    let store = std::sync::Arc::clone(&stack.app.state.inner().store);
    let config = state.config().clone();
    let now = clock.now();
    tokio::task::spawn_blocking(move || threaddesk::app::purge_once(&store, &config, now))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rusqlite_count(&stack.data_dir, "SELECT count(*) FROM posts"),
        0
    );
    let during = has(&db_bytes(&stack.data_dir), &canary);
    // The reader still sees its snapshot; then it ends.
    let still: i64 = reader
        .query_row(
            "SELECT count(*) FROM posts WHERE message LIKE ?1",
            [format!("%{canary}%")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(still, 1, "a snapshot is stable while its transaction lives");
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    // The next purge cycle (every 15 minutes in `serve`).
    let store = std::sync::Arc::clone(&stack.app.state.inner().store);
    let config = state.config().clone();
    let now = clock.now();
    tokio::task::spawn_blocking(move || threaddesk::app::purge_once(&store, &config, now))
        .await
        .unwrap()
        .unwrap();
    let bytes = db_bytes(&stack.data_dir);
    assert!(
        !has(&bytes, &canary),
        "purged text still on disk after the reader ended and the next purge ran \
         (it was there during the reader: {during})"
    );
    let wal = std::fs::metadata(stack.data_dir.join("threaddesk.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the WAL was truncated by the checkpoint");
}

/// Count with a separate read-only connection (what an admin's `sqlite3` would see).
fn rusqlite_count(dir: &std::path::Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(
        dir.join("threaddesk.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

async fn mm_marks(stack: &Stack, token: &str) -> BTreeSet<(String, String)> {
    let (status, prefs) = stack
        .mm_get("/api/v4/users/me/preferences", token)
        .await
        .unwrap();
    assert_eq!(status, 200);
    prefs
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["category"]
                .as_str()
                .is_some_and(|c| c.starts_with("threaddesk_"))
        })
        .map(|p| {
            (
                p["category"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn keys(s: &mut Session, filter: &str) -> Vec<String> {
    let (status, v) = s
        .json(&format!("/api/v1/items?filter={filter}&limit=200"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_owned())
        .collect()
}

/// Mark one item done and another snoozed; wait until both are Mattermost preferences.
async fn mark_two(stack: &Stack, s: &mut Session, token: &str) -> (String, String) {
    let items = s.wait_items(2).await.unwrap();
    let done = items[0]["key"].as_str().unwrap().to_owned();
    let snoozed = items[1]["key"].as_str().unwrap().to_owned();
    let r = s
        .post_json(&format!("/api/v1/items/{done}/done"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let until = stack.app.state.now() + 3 * 86_400_000;
    let r = s
        .post_json(
            &format!("/api/v1/items/{snoozed}/snooze"),
            &json!({ "until": until }),
        )
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let want: BTreeSet<_> = [
        ("threaddesk_done".to_owned(), done.clone()),
        ("threaddesk_snooze".to_owned(), snoozed.clone()),
    ]
    .into();
    poll(WAIT, "marks in Mattermost preferences", || {
        let want = want.clone();
        async move {
            mm_marks(stack, token)
                .await
                .is_superset(&want)
                .then_some(())
        }
    })
    .await
    .unwrap();
    (done, snoozed)
}

#[tokio::test]
async fn purge_command_and_a_wiped_data_dir_lose_no_done_or_snooze_state() {
    let mut stack = Stack::start().await.unwrap();
    let token = stack.mm_token("alice").await.unwrap();
    let mut alice = stack.sign_in("alice").await.unwrap();
    let (done, snoozed) = mark_two(&stack, &mut alice, &token).await;

    // `threaddesk purge` on a copy of this install: everything cached is gone.
    stack.app.stop();
    let copy = support::temp_dir("purgecopy");
    for f in ["threaddesk.db", "threaddesk.db-wal", "key"] {
        let src = stack.data_dir.join(f);
        if src.exists() {
            std::fs::copy(&src, copy.join(f)).unwrap();
        }
    }
    assert!(rusqlite_count(&copy, "SELECT count(*) FROM items") > 0);
    let out = bin()
        .args(["purge", "--data-dir"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("cache cleared"));
    for table in [
        "posts",
        "items",
        "marks",
        "threads",
        "channels",
        "users",
        "web_sessions",
        "user_tokens",
        "outbox",
    ] {
        assert_eq!(
            rusqlite_count(&copy, &format!("SELECT count(*) FROM {table}")),
            0,
            "{table} after purge"
        );
    }
    let _ = std::fs::remove_dir_all(&copy);

    // Reinstall: the data dir deleted entirely, a new ThreadDesk against the same Mattermost.
    stack.restart_fresh(None).await.unwrap();
    assert!(
        stack.app.state.store().user_ids().unwrap().is_empty(),
        "a fresh install knows no user"
    );
    let mut again = stack.sign_in("alice").await.unwrap();
    again.wait_items(1).await.unwrap();
    poll(WAIT, "marks restored from Mattermost", || {
        let mut s = Session::new(&stack.url);
        s.cookies = again.cookies.clone();
        let (done, snoozed) = (done.clone(), snoozed.clone());
        async move {
            let d = keys(&mut s, "done").await;
            let z = keys(&mut s, "snoozed").await;
            let all = keys(&mut s, "all").await;
            (d.contains(&done)
                && z.contains(&snoozed)
                && !all.contains(&done)
                && !all.contains(&snoozed))
            .then_some(())
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn export_holds_my_data_and_delete_erases_it_everywhere() {
    let stack = Stack::start().await.unwrap();
    let token = stack.mm_token("alice").await.unwrap();
    let mut alice = stack.sign_in_with_token(&token).await.unwrap();
    let mut alice_phone = stack.sign_in("alice").await.unwrap();
    let mut bob = stack.sign_in("bob").await.unwrap();
    bob.wait_items(1).await.unwrap();
    let (done, snoozed) = mark_two(&stack, &mut alice, &token).await;
    let r = alice
        .post_json("/api/v1/searches", &json!({ "q": "my saved search" }))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let uid = stack.driver().user_id("alice").unwrap();
    let bob_id = stack.driver().user_id("bob").unwrap();

    // Export: everything about alice, no secret, nothing of bob's own records.
    let r = alice.get("/api/v1/me/export").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let text = r.text().await.unwrap();
    let ex: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ex["user_id"], uid.as_str());
    assert_eq!(ex["profile"]["username"], "alice");
    assert!(!ex["items"].as_array().unwrap().is_empty());
    assert!(!ex["teams"].as_array().unwrap().is_empty());
    let marks = ex["marks"].to_string();
    assert!(marks.contains(&done) && marks.contains(&snoozed), "{marks}");
    assert_eq!(ex["saved_searches"][0]["q"], "my saved search");
    assert_eq!(ex["sessions"].as_array().unwrap().len(), 2, "both sessions");
    assert!(
        ex["sessions"][0][3].is_string(),
        "each session's browser summary is exported too: {}",
        ex["sessions"]
    );
    assert_eq!(ex["tokens"].as_array().unwrap().len(), 1, "token listed");
    for secret in [
        token.as_str(),
        alice.cookie("td_session").unwrap(),
        alice_phone.cookie("td_session").unwrap(),
        alice.csrf.as_str(),
        bob.cookie("td_session").unwrap(),
    ] {
        assert!(!text.contains(secret), "a secret is in the export");
    }
    let bob_export = bob
        .get("/api/v1/me/export")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bex: Value = serde_json::from_str(&bob_export).unwrap();
    assert_eq!(bex["user_id"], bob_id.as_str());
    assert_eq!(bex["sessions"].as_array().unwrap().len(), 1);
    let bob_marks = bex["marks"].to_string();
    assert!(
        !bob_marks.contains(&done) && !bob_marks.contains(&snoozed),
        "alice's marks in bob's export: {bob_marks}"
    );
    assert!(
        !bob_export.contains(&token),
        "alice's token in bob's export"
    );

    // Delete my data, also in Mattermost.
    let csrf = alice.csrf.clone();
    let r = alice
        .post_form(
            "/me/delete",
            &[("csrf", csrf.as_str()), ("delete_preferences", "1")],
        )
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    // Signed out everywhere.
    assert_eq!(alice.json("/api/v1/items").await.unwrap().0, 401);
    assert_eq!(alice_phone.json("/api/v1/items").await.unwrap().0, 401);
    // Cache rows and the stored token are gone.
    let store = stack.app.state.store();
    let u = UserId::parse(&uid).unwrap();
    assert!(!store.user_ids().unwrap().contains(&u));
    let inner = stack.app.state.inner();
    assert!(matches!(
        account::load(&inner.store, &inner.cipher, &u),
        Err(account::AccountError::Missing)
    ));
    for (table, col) in [
        ("items", "user_id"),
        ("marks", "user_id"),
        ("threads", "user_id"),
        ("memberships", "user_id"),
        ("web_sessions", "user_id"),
        ("user_tokens", "user_id"),
        ("outbox", "user_id"),
        ("users", "user_id"),
    ] {
        let n = rusqlite_count(
            &stack.data_dir,
            &format!("SELECT count(*) FROM {table} WHERE {col} = '{uid}'"),
        );
        assert_eq!(n, 0, "{table} rows of alice after delete");
    }
    // ThreadDesk's preferences are gone from Mattermost.
    assert!(mm_marks(&stack, &token).await.is_empty());
    // Bob is untouched.
    assert_eq!(bob.json("/api/v1/items").await.unwrap().0, 200);
}

#[tokio::test]
async fn privacy_page_states_retention_and_only_technical_cookies_are_set() {
    let stack = Stack::start_opts(StackOptions {
        configure: Some(Box::new(|c| c.set_retention_days(9).unwrap())),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    // Every flow that sets cookies: sign-in page, token sign-in, OAuth sign-in, pages, API,
    // sign-out, delete.
    let mut a = stack.sign_in("bob").await.unwrap();
    a.wait_items(1).await.unwrap();
    for p in [
        "/",
        "/settings",
        "/privacy",
        "/api/v1/items",
        "/api/v1/me/export",
    ] {
        a.get(p).await.unwrap();
    }
    let page = a.get("/privacy").await.unwrap().text().await.unwrap();
    assert!(page.contains("<strong>9 days</strong>"), "retention stated");
    assert!(page.contains("9 days, then purged automatically"));
    let cookie_section = page.split("<h2>Cookies</h2>").nth(1).unwrap();
    let cookie_section = cookie_section.split("</section>").next().unwrap();
    let names: BTreeSet<&str> = cookie_section
        .split("<td><code>")
        .skip(1)
        .filter_map(|s| s.split("</code>").next())
        .collect();
    assert_eq!(
        names,
        ["td_clock", "td_pre", "td_session", "td_theme"].into(),
        "cookies listed on /privacy"
    );
    let csrf = a.csrf.clone();
    a.post_form("/auth/signout", &[("csrf", csrf.as_str())])
        .await
        .unwrap();
    let mut o = Session::new(&stack.url);
    o.oauth_sign_in().await.unwrap();
    o.get("/").await.unwrap();
    let csrf = o.csrf.clone();
    o.post_form("/me/delete", &[("csrf", csrf.as_str())])
        .await
        .unwrap();
    let seen: Vec<String> = a
        .set_cookies_seen
        .iter()
        .chain(&o.set_cookies_seen)
        .cloned()
        .collect();
    assert!(seen.len() >= 6, "{seen:?}");
    check_cookies(&seen, false);

    // Served over https (public_url): __Host- prefix and Secure.
    let secure = Stack::start_opts(StackOptions {
        configure: Some(Box::new(|c| {
            c.set_public_url("https://threaddesk.example").unwrap();
        })),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let token = secure.mm_token("bob").await.unwrap();
    let mut s = Session::new(&secure.url);
    s.get("/signin").await.unwrap();
    let pre = s.cookie("__Host-td_pre").unwrap().to_owned();
    let r = s
        .post_form("/auth/token", &[("token", &token), ("csrf", &pre)])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(s.cookie("__Host-td_session").is_some());
    check_cookies(&s.set_cookies_seen, true);
}

fn check_cookies(seen: &[String], https: bool) {
    for c in seen {
        let name = c.split('=').next().unwrap();
        let allowed: &[&str] = if https {
            &["__Host-td_session", "__Host-td_pre"]
        } else {
            &["td_session", "td_pre"]
        };
        assert!(allowed.contains(&name), "unexpected cookie {c}");
        let attrs: Vec<String> = c
            .split(';')
            .skip(1)
            .map(|a| a.trim().to_ascii_lowercase())
            .collect();
        assert!(attrs.contains(&"httponly".into()), "{c}");
        assert!(attrs.contains(&"samesite=lax".into()), "{c}");
        assert!(attrs.contains(&"path=/".into()), "{c}");
        assert!(!attrs.iter().any(|a| a.starts_with("domain")), "{c}");
        assert_eq!(attrs.contains(&"secure".into()), https, "{c}");
        assert!(c.len() < 4096, "{c}");
    }
}

#[tokio::test]
async fn revoking_access_kills_the_oauth_token_in_mattermost_and_signs_out() {
    let stack = Stack::start().await.unwrap();
    let uid = UserId::parse(&stack.driver().user_id("alice").unwrap()).unwrap();
    let inner = stack.app.state.inner();
    // Both `/auth/revoke` and "Delete my data" (`/me/delete`, which the settings page
    // explains revokes the token) end the OAuth grant in Mattermost.
    for route in ["/auth/revoke", "/me/delete"] {
        let mut alice = Session::new(&stack.url);
        alice.oauth_sign_in().await.unwrap();
        let settings = alice.get("/settings").await.unwrap().text().await.unwrap();
        assert!(
            settings.contains("revokes ThreadDesk's access token"),
            "settings explain the revocation"
        );
        let creds = serde_json::to_value(account::load(&inner.store, &inner.cipher, &uid).unwrap())
            .unwrap();
        let access = creds["access_token"].as_str().unwrap().to_owned();
        assert_eq!(
            stack.mm_get("/api/v4/users/me", &access).await.unwrap().0,
            200
        );
        let csrf = alice.csrf.clone();
        let r = alice
            .post_form(route, &[("csrf", csrf.as_str())])
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "{route}");
        assert_eq!(
            stack.mm_get("/api/v4/users/me", &access).await.unwrap().0,
            401,
            "{route}: the OAuth token is revoked in Mattermost"
        );
        assert_eq!(alice.json("/api/v1/items").await.unwrap().0, 401, "{route}");
        assert!(
            matches!(
                account::load(&inner.store, &inner.cipher, &uid),
                Err(account::AccountError::Missing)
            ),
            "{route}: stored token forgotten"
        );
    }
}
