//! Saved posts in the JSON API: `saved` on items (a thread's root) and on posts, reflecting the
//! `save` / `unsave` actions and saves made in another Mattermost client.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::Stack;

async fn item_saved(alice: &mut support::Session, key: &str) -> (bool, Vec<(String, bool)>) {
    let (status, v) = alice.json(&format!("/api/v1/items/{key}")).await.unwrap();
    assert_eq!(status, 200, "{v}");
    let posts = v["posts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or_default().to_owned(),
                p["saved"].as_bool().expect("posts carry `saved`"),
            )
        })
        .collect();
    (
        v["item"]["saved"]
            .as_bool()
            .expect("the item carries `saved`"),
        posts,
    )
}

/// Wait until Mattermost has (or no longer has) `post` among alice's saved posts.
async fn flagged_in_mattermost(stack: &Stack, token: &str, post: &str, want: bool) {
    support::poll(
        Duration::from_secs(10),
        "flagged_post in Mattermost",
        || async move {
            let (_, prefs) = stack
                .mm_get("/api/v4/users/me/preferences/flagged_post", token)
                .await
                .ok()?;
            let has = prefs
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p["name"] == post));
            (has == want).then_some(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn saved_shows_on_items_and_posts_and_follows_the_actions() {
    let stack = Stack::start().await.unwrap();
    let mut alice = stack.sign_in("alice").await.unwrap();
    let items = alice.wait_items(1).await.unwrap();
    assert!(
        items.iter().all(|i| i["saved"].is_boolean()),
        "every item in the list carries `saved`"
    );
    let thread = items
        .iter()
        .find(|i| i["key"].as_str().is_some_and(|k| k.starts_with("t_")))
        .unwrap();
    let key = thread["key"].as_str().unwrap().to_owned();
    let root = key.trim_start_matches("t_").to_owned();
    let (saved, _) = item_saved(&mut alice, &key).await;
    assert!(!saved);

    // Save through the API: the item and its root post show it at once (optimistic).
    let r = alice
        .post_json(&format!("/api/v1/items/{key}/save"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let (saved, posts) = item_saved(&mut alice, &key).await;
    assert!(saved, "the item is saved after the save action");
    assert!(
        posts.iter().any(|(id, s)| id == &root && *s),
        "the root post is saved: {posts:?}"
    );
    // It reached Mattermost.
    let token = stack.mm_token("alice").await.unwrap();
    flagged_in_mattermost(&stack, &token, &root, true).await;

    // Unsave: gone.
    let r = alice
        .post_json(&format!("/api/v1/items/{key}/unsave"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let (saved, _) = item_saved(&mut alice, &key).await;
    assert!(!saved, "unsave clears it");
    flagged_in_mattermost(&stack, &token, &root, false).await;

    // Saved in another client: the preference event makes it show.
    stack
        .driver()
        .set_preferences("alice", &[("flagged_post", &root, "true")])
        .unwrap();
    let mut seen = false;
    for _ in 0..100 {
        if item_saved(&mut alice, &key).await.0 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "a save from another client shows");
}
