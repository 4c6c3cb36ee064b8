//! OAuth token refresh: a token a day from expiry is refreshed by the periodic check, the
//! rotated pair is persisted (encrypted) before use, the old token dies in Mattermost (it
//! rotates both, research §2.4), and the sync engine goes on with the new token.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Session, Stack, StackOptions, TestClock};

#[tokio::test]
async fn near_expiry_oauth_tokens_are_refreshed_and_used_by_sync() {
    let clock = TestClock::default();
    let stack = Stack::start_opts(StackOptions {
        clock: Some(clock.clock()),
        configure: Some(Box::new(|cfg| {
            // Sessions outlive the jump in time below.
            cfg.session_idle_timeout = Duration::from_secs(90 * 86_400);
            cfg.session_absolute_timeout = Duration::from_secs(90 * 86_400);
        })),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let mut alice = Session::new(&stack.url);
    alice.oauth_sign_in().await.unwrap();
    let items = alice.wait_items(1).await.unwrap();

    let state = &stack.app.state;
    let user = threaddesk::store::UserId::parse(&stack.driver().user_id("alice").unwrap()).unwrap();
    let load = || threaddesk::account::load(state.store(), &state.inner().cipher, &user).unwrap();
    let before = load();
    assert_eq!(before.method, threaddesk::account::Method::OAuth);
    assert!(!before.needs_refresh(clock.now()));

    // Nothing to do while the token is young.
    state.refresh_tokens().await;
    assert_eq!(load().access_token(), before.access_token());

    // 29.5 days later (Mattermost's default lifetime is 30 days): refreshed.
    clock.advance(Duration::from_secs(29 * 86_400 + 43_200));
    assert!(before.needs_refresh(clock.now()));
    state.refresh_tokens().await;
    let after = load();
    assert_ne!(after.access_token(), before.access_token(), "rotated");
    assert!(
        after.expires_at > clock.now() + 86_400_000,
        "new expiry stored"
    );

    // The old token no longer works in Mattermost; the new one does.
    let (old_status, _) = stack
        .mm_get("/api/v4/users/me", before.access_token().expose())
        .await
        .unwrap();
    assert_eq!(old_status, 401);
    let (new_status, _) = stack
        .mm_get("/api/v4/users/me", after.access_token().expose())
        .await
        .unwrap();
    assert_eq!(new_status, 200);

    // The engine delivers with the new token: a reply reaches Mattermost.
    let key = support::first_thread(&items);
    let r = alice
        .reply(&key, "sent after the token refresh")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    stack
        .wait_posted_once(
            &key[2..],
            after.access_token().expose(),
            "sent after the token refresh",
        )
        .await
        .unwrap();
}

/// T-17, second half: the process is killed (`kill -9`) after Mattermost answered a refresh
/// (so it has rotated both tokens and killed the old ones) but before the new pair was
/// persisted. The new pair is lost; the stored one is dead. On restart ThreadDesk must not
/// loop or crash: it ends the user's sessions, the next page is the sign-in prompt, and
/// signing in again works.
#[tokio::test]
async fn kill_9_between_refresh_response_and_persist_leads_to_a_sign_in_prompt() {
    use support::{ServeProcess, free_port, register_oauth, temp_dir};
    support::install_crypto();
    let sim = mmsim::start(mmsim::SimConfig::default(), 0).await.unwrap();
    let port = free_port();
    let app = register_oauth(&sim, &format!("http://127.0.0.1:{port}"));
    let dir = temp_dir("kill9");
    let data = dir.join("data");

    // 1. A normal run: alice signs in with OAuth and syncs.
    let mut td = ServeProcess::spawn(&sim, &data, port, &app, &[], &[]).unwrap();
    td.wait_ready().await.unwrap();
    let mut alice = Session::new(&td.url);
    alice.oauth_sign_in().await.unwrap();
    alice.wait_items(1).await.unwrap();
    td.kill9().await.unwrap();

    // 2. Her stored token is made to look a day from expiry, so the next start refreshes it.
    let user = threaddesk::store::UserId::parse(
        &mmsim::driver::Driver::new(&sim.sim)
            .user_id("alice")
            .unwrap(),
    )
    .unwrap();
    let old = {
        let store = threaddesk::store::Store::open(&data).unwrap();
        let cipher =
            threaddesk::privacy::cipher::TokenCipher::load_or_create(&data.join("key")).unwrap();
        let mut creds = threaddesk::account::load(&store, &cipher, &user).unwrap();
        let now = threaddesk::web::system_clock()();
        creds.expires_at = now + 3_600_000;
        assert!(creds.needs_refresh(now));
        threaddesk::account::save(&store, &cipher, &user, &creds, now).unwrap();
        creds
    };

    // 3. Restart with the failpoint: the refresh happens at start (resuming alice's sync), the
    //    process stops right after Mattermost's answer, and is killed there.
    let mut td = ServeProcess::spawn(
        &sim,
        &data,
        port,
        &app,
        &[("THREADDESK_FAILPOINT", "after_refresh_response")],
        &[],
    )
    .unwrap();
    td.wait_stderr("THREADDESK_FAILPOINT after_refresh_response reached")
        .await
        .unwrap();
    td.kill9().await.unwrap();
    // Mattermost did rotate: the stored (old) access token is dead.
    let r = support::http()
        .get(format!("{}/api/v4/users/me", sim.url))
        .bearer_auth(old.access_token().expose())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "the refresh reached Mattermost");

    // 4. A normal restart: the old refresh token is refused; ThreadDesk stays up, ends
    //    alice's sessions and shows the sign-in page, once (no loop, no crash).
    let mut td = ServeProcess::spawn(&sim, &data, port, &app, &[], &[]).unwrap();
    td.wait_ready().await.unwrap();
    let r = alice.get("/").await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/signin"),
        "{:?}",
        r.headers()["location"]
    );
    assert_eq!(alice.json("/api/v1/items").await.unwrap().0, 401);
    let signin = alice.get("/signin").await.unwrap();
    assert_eq!(signin.status().as_u16(), 200);
    assert!(signin.text().await.unwrap().contains("/auth/oauth/start"));
    {
        let store = threaddesk::store::Store::open(&data).unwrap();
        assert_eq!(store.for_user(&user).session_count().unwrap(), 0);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(td.running(), "no crash: {}", td.stderr_text());
    let refreshes = td.stderr_text().matches("oauth token refresh").count();
    assert!(refreshes <= 1, "no refresh loop: {}", td.stderr_text());

    // 5. Signing in again works, and sync resumes.
    let mut again = Session::new(&td.url);
    again.oauth_sign_in().await.unwrap();
    again.wait_items(1).await.unwrap();
    assert_eq!(
        support::http()
            .get(format!("{}/readyz", td.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert!(td.running());
    td.kill9().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A refresh due at start while Mattermost is unreachable (503 outage) must not leave the user
/// signed in on a queue that never syncs: ThreadDesk syncs with the stored token (still valid
/// for up to a day) and the periodic check refreshes it later.
#[tokio::test]
async fn refresh_due_at_start_during_an_outage_still_resumes_sync() {
    use support::{ServeProcess, free_port, register_oauth, temp_dir};
    support::install_crypto();
    let sim = mmsim::start(mmsim::SimConfig::default(), 0).await.unwrap();
    let port = free_port();
    let app = register_oauth(&sim, &format!("http://127.0.0.1:{port}"));
    let dir = temp_dir("refresh-outage");
    let data = dir.join("data");
    let mut td = ServeProcess::spawn(&sim, &data, port, &app, &[], &[]).unwrap();
    td.wait_ready().await.unwrap();
    let mut alice = Session::new(&td.url);
    alice.oauth_sign_in().await.unwrap();
    alice.wait_items(1).await.unwrap();
    td.kill9().await.unwrap();
    let driver = mmsim::driver::Driver::new(&sim.sim);
    let user = threaddesk::store::UserId::parse(&driver.user_id("alice").unwrap()).unwrap();
    {
        let store = threaddesk::store::Store::open(&data).unwrap();
        let cipher =
            threaddesk::privacy::cipher::TokenCipher::load_or_create(&data.join("key")).unwrap();
        let mut creds = threaddesk::account::load(&store, &cipher, &user).unwrap();
        let now = threaddesk::web::system_clock()();
        creds.expires_at = now + 3_600_000;
        threaddesk::account::save(&store, &cipher, &user, &creds, now).unwrap();
    }
    // Mattermost is down while ThreadDesk starts (and tries to refresh).
    sim.sim.outage(Duration::from_secs(60));
    let mut td = ServeProcess::spawn(&sim, &data, port, &app, &[], &[]).unwrap();
    td.wait_ready().await.unwrap();
    sim.sim.outage(Duration::ZERO);
    // Still signed in, and live again: a new DM reaches the queue.
    let canary = format!("after the outage {:08x}", rand::random::<u32>());
    driver.dm("bob", "alice", &canary).unwrap();
    let q = format!(
        "/api/v1/items?q={}",
        canary.split_whitespace().last().unwrap()
    );
    support::poll(Duration::from_secs(15), "the DM after the outage", || {
        let mut s = Session::new(&td.url);
        s.cookies = alice.cookies.clone();
        let q = q.clone();
        async move {
            let (status, v) = s.json(&q).await.ok()?;
            assert_eq!(status, 200, "still signed in");
            (!v["items"].as_array()?.is_empty()).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", td.stderr_text()));
    td.kill9().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
