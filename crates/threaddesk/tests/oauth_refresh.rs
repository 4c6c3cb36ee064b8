//! OAuth token refresh: a token a day from expiry is refreshed by the periodic check, the
//! rotated pair is persisted (encrypted) before use, the old token dies in Mattermost (it
//! rotates both, research §2.4), and the sync engine goes on with the new token.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::json;
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
    let key = items
        .iter()
        .filter_map(|i| i["key"].as_str())
        .find(|k| k.starts_with("t_"))
        .unwrap()
        .to_owned();
    let r = alice
        .post_json(
            &format!("/api/v1/items/{key}/reply"),
            &json!({"message": "sent after the token refresh"}),
        )
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
