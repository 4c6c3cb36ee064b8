//! T-18 (research §A7): when Mattermost ends ThreadDesk's access — the session token logged out
//! (as an OAuth deauthorization does), or a personal access token revoked — the user is asked
//! to sign in again within one request: pages redirect to `/signin` with the reason, the JSON
//! API answers 401 with it, every ThreadDesk session of the user ends, and the sync stops
//! instead of retrying the dead token. Signing in again works.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Session, Stack, http};

const MESSAGE: &str = "Mattermost ended ThreadDesk's access; sign in again.";

/// Mattermost's answer to `GET /users/me` with `token`.
async fn me_status(stack: &Stack, token: &str) -> u16 {
    stack.mm_get("/api/v4/users/me", token).await.unwrap().0
}

/// The first answer that is not a success, to page requests: the action form (which makes
/// ThreadDesk call Mattermost: the outbox delivers the mark-read at once), then `GET /` until
/// the dead token is noticed. (The engine may notice it first, e.g. through its WebSocket:
/// then the action itself is the request that is redirected.)
async fn first_page_refusal(s: &mut Session, items: &[Value]) -> reqwest::Response {
    let key = items[0]["key"].as_str().unwrap();
    let csrf = s.csrf.clone();
    let r = s
        .post_form(&format!("/items/{key}/read"), &[("csrf", csrf.as_str())])
        .await
        .unwrap();
    if r.headers()["location"] != format!("/items/{key}") {
        return r;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.get("/").await.unwrap();
        if r.status().as_u16() != 200 {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revoked token was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// As [`first_page_refusal`], through the JSON API: (status, body).
async fn first_api_refusal(s: &mut Session, items: &[Value]) -> (u16, Value) {
    let key = items[0]["key"].as_str().unwrap();
    let r = s
        .post_json(&format!("/api/v1/items/{key}/read"), &json!({}))
        .await
        .unwrap();
    if !r.status().is_success() {
        return (r.status().as_u16(), r.json().await.unwrap_or(Value::Null));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = s.json("/api/v1/items").await.unwrap();
        if status != 200 {
            return (status, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revoked token was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A session holding only the given cookies (an old browser tab).
fn with_cookies(stack: &Stack, cookies: &[(String, String)]) -> Session {
    let mut s = Session::new(&stack.url);
    s.cookies = cookies.to_vec();
    s
}

/// Requests Mattermost saw over the next second: the engine must not retry the dead token.
async fn requests_over_next_second(stack: &Stack) -> u64 {
    let before = stack.sim.sim.inner().metrics.snapshot().requests;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.sim.sim.inner().metrics.snapshot().requests - before
}

/// The old session cookie is dead: pages go to a plain `/signin`, the API answers 401.
async fn assert_old_cookie_dead(stack: &Stack, cookies: &[(String, String)]) {
    let mut old = with_cookies(stack, cookies);
    let r = old.get("/").await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/signin");
    let (status, _) = old.json("/api/v1/items").await.unwrap();
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_mattermost_token_ends_threaddesk_sessions_and_sync() {
    let stack = Stack::start().await.unwrap();

    // Round 1: a session token (password login), logged out in Mattermost; the next page
    // request redirects to the sign-in page with the reason.
    let token = stack.mm_token("alice").await.unwrap();
    let mut s = stack.sign_in_with_token(&token).await.unwrap();
    let items = s.wait_items(1).await.unwrap();
    let cookies = s.cookies.clone();
    let r = http()
        .post(format!("{}/api/v4/users/logout", stack.sim.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(me_status(&stack, &token).await, 401);
    let r = first_page_refusal(&mut s, &items).await;
    assert_eq!(r.status().as_u16(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/signin?error="), "{location}");
    // The sign-in page shows the reason (HTML-escaped).
    let page = s.get(&location).await.unwrap().text().await.unwrap();
    assert!(
        page.contains("Mattermost ended ThreadDesk") && page.contains("sign in again"),
        "the sign-in page does not say why"
    );
    assert!(
        s.cookie("td_session").is_none(),
        "the cookie was not cleared"
    );
    assert_old_cookie_dead(&stack, &cookies).await;
    let extra = requests_over_next_second(&stack).await;
    assert!(
        extra <= 3,
        "{extra} Mattermost requests after the token died"
    );

    // Round 2: signing in again works; then a personal access token, revoked in Mattermost;
    // the JSON API answers 401 with the reason.
    let session_token = stack.mm_token("alice").await.unwrap();
    let alice = stack.driver().user_id("alice").unwrap();
    let r = http()
        .post(format!("{}/api/v4/users/{alice}/tokens", stack.sim.url))
        .bearer_auth(&session_token)
        .json(&json!({"description": "threaddesk"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "PAT creation: {}", r.status());
    let pat: Value = r.json().await.unwrap();
    let pat_token = pat["token"].as_str().unwrap().to_owned();
    let pat_id = pat["id"].as_str().unwrap().to_owned();
    let mut s = stack.sign_in_with_token(&pat_token).await.unwrap();
    let items = s.wait_items(1).await.unwrap();
    let cookies = s.cookies.clone();
    let r = http()
        .post(format!("{}/api/v4/users/tokens/revoke", stack.sim.url))
        .bearer_auth(&session_token)
        .json(&json!({"token_id": pat_id}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "PAT revoke: {}", r.status());
    assert_eq!(me_status(&stack, &pat_token).await, 401);
    let (status, body) = first_api_refusal(&mut s, &items).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], MESSAGE);
    assert_old_cookie_dead(&stack, &cookies).await;
    let extra = requests_over_next_second(&stack).await;
    assert!(
        extra <= 3,
        "{extra} Mattermost requests after the token died"
    );

    // And once more: a fresh sign-in brings the queue back.
    let mut s = stack.sign_in("alice").await.unwrap();
    s.wait_items(1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_seen_by_the_media_proxy_ends_access_too() {
    let stack = Stack::start().await.unwrap();
    let token = stack.mm_token("alice").await.unwrap();
    let mut s = stack.sign_in_with_token(&token).await.unwrap();
    s.wait_items(1).await.unwrap();
    let cookies = s.cookies.clone();
    let bob = stack.driver().user_id("bob").unwrap();
    let r = s.get(&format!("/media/avatar/{bob}")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let r = http()
        .post(format!("{}/api/v4/users/logout", stack.sim.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // The very request that meets the dead token says so, and ends every session.
    let r = s.get(&format!("/media/avatar/{bob}")).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], MESSAGE);
    assert_old_cookie_dead(&stack, &cookies).await;
    let extra = requests_over_next_second(&stack).await;
    assert!(
        extra <= 3,
        "{extra} Mattermost requests after the token died"
    );
}

/// A token that only the WebSocket sees as dead: Mattermost's WebSocket route does not require
/// a session, so with a revoked token the upgrade succeeds, the socket stays unauthenticated
/// and the server closes it silently. The engine must not reconnect forever: after a few
/// failures it asks `GET /users/me`, and the 401 parks the user as needs-sign-in (the REST
/// 401 path; the web layer then ends their sessions), after which Mattermost sees no more
/// requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_dead_only_for_the_websocket_parks_the_user() {
    use std::sync::Arc;

    use threaddesk::store::{Store, UserId};
    use threaddesk::sync::ratelimit::RateLimiter;
    use threaddesk::sync::{Cause, Phase, SyncEngine, SyncSettings};

    support::install_crypto();
    let sim = mmsim::start(mmsim::SimConfig::default(), 0).await.unwrap();
    let hub = &sim.sim.inner().hub;
    hub.set_config(mmsim::events::HubConfig {
        auth_timeout: Duration::from_millis(100),
        ..hub.config()
    });
    let base = mattermost::Client::builder(&sim.url).build().unwrap();
    let login = base
        .login(
            mmsim::seed::DEMO_USERNAME,
            &mattermost::Secret::new(mmsim::seed::DEMO_PASSWORD),
        )
        .await
        .unwrap();
    let alice = UserId::parse(&login.user.id).unwrap();
    let token = login.token.expose().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let mut settings = SyncSettings::default();
    settings.ws.min_backoff = Duration::from_millis(50);
    settings.ws.backoff_jitter = Duration::from_millis(10);
    let engine = SyncEngine::new(Arc::clone(&store), settings, RateLimiter::unlimited(8));
    let mut rx = engine.subscribe();
    let client = mattermost::Client::builder(&sim.url)
        .request_gate(engine.request_gate())
        .build()
        .unwrap();
    engine.start_user(&alice, client.with_token(token.clone()));
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(c) = rx.recv().await
                && c.key.is_none()
                && c.cause == Cause::InitialSync
            {
                break;
            }
        }
    })
    .await
    .unwrap();

    // The token dies (logged out elsewhere); nothing makes the engine call REST, only its
    // socket is cut and must reconnect.
    let r = http()
        .post(format!("{}/api/v4/users/logout", sim.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(sim.sim.drop_websockets_of(alice.as_str()) > 0);

    let parked = support::poll(Duration::from_secs(10), "needs sign-in", || {
        let phase = engine.user_status(&alice).map(|s| s.phase);
        async move { (phase == Some(Phase::NeedsSignIn)).then_some(()) }
    })
    .await;
    assert!(parked.is_ok(), "the user was never parked");
    assert!(engine.needs_sign_in(&alice));
    // Parked: no more reconnects or requests for the dead token.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = sim.sim.inner().metrics.snapshot().requests;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let extra = sim.sim.inner().metrics.snapshot().requests - before;
    assert_eq!(
        extra, 0,
        "{extra} requests (WebSocket included) after parking"
    );
}
