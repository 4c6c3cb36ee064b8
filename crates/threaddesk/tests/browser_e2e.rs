//! End-to-end in headless Chromium (Debian's `chromium`, installed by `.ci/run`): sign in
//! through the real OAuth flow, see the queue, navigate with the keyboard only, open an item,
//! reply (it reaches Mattermost), mark done (it leaves; a new reply brings it back live, without
//! reload), snooze, undo. Screenshots of the queue and a conversation are saved under
//! `target/screenshots/`.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::Stack;
use support::browser::{self, Browser};

const WAIT: Duration = Duration::from_secs(20);

fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
}

fn browser_or_skip() -> bool {
    if browser::available() {
        return true;
    }
    assert!(
        std::env::var("THREADDESK_SKIP_BROWSER").is_ok(),
        "Chromium is not installed: `apt-get install chromium` (or set THREADDESK_SKIP_BROWSER=1 to skip)"
    );
    false
}

async fn selected_key(b: &mut Browser) -> String {
    b.eval("document.querySelector('#queue > li.item.selected')?.dataset.key || ''")
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn row_present(b: &mut Browser, key: &str) -> bool {
    b.eval(&format!(
        "!!document.querySelector('#queue > li.item[data-key=\"{key}\"]:not(.leaving)')"
    ))
    .await
    .unwrap()
        == Value::Bool(true)
}

/// Move the selection to `key` with j/k only.
async fn select_with_keys(b: &mut Browser, key: &str) {
    for _ in 0..80 {
        let pos: Value = b
            .eval(&format!(
                "(() => {{ const rows = [...document.querySelectorAll('#queue > li.item')]; \
                 return [rows.findIndex(r => r.classList.contains('selected')), \
                 rows.findIndex(r => r.dataset.key === '{key}')]; }})()"
            ))
            .await
            .unwrap();
        let (cur, want) = (pos[0].as_i64().unwrap(), pos[1].as_i64().unwrap());
        assert!(want >= 0, "{key} is not in the queue");
        if cur == want {
            return;
        }
        b.press(if cur < want { "j" } else { "k" }).await.unwrap();
    }
    panic!("could not reach {key} with j/k");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_triage_and_live_updates_in_a_real_browser() {
    if !browser_or_skip() {
        return;
    }
    let stack = Stack::start().await.unwrap();
    let shots = screenshot_dir();
    let mut b = Browser::launch().await.unwrap();

    // Signed out: the sign-in page. Its link runs the real OAuth flow.
    b.goto(&format!("{}/", stack.url)).await.unwrap();
    b.wait_for("location.pathname === '/signin'", WAIT)
        .await
        .unwrap();
    b.screenshot(&shots.join("signin.png")).await.unwrap();
    b.eval("document.querySelector('a[href=\"/auth/oauth/start\"]').click()")
        .await
        .unwrap();
    b.wait_for("location.pathname === '/'", WAIT).await.unwrap();
    // The initial sync fills the queue (the page reloads itself on the `reload` event).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n = b
            .eval("document.querySelectorAll('#queue > li.item').length")
            .await
            .unwrap();
        if n.as_u64().unwrap_or(0) >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue never filled"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.goto(&format!("{}/", stack.url)).await.unwrap();
    }
    b.screenshot(&shots.join("queue.png")).await.unwrap();

    // Keyboard only: j / k move the selection.
    let keys: Vec<String> = serde_json::from_value(
        b.eval("[...document.querySelectorAll('#queue > li.item')].map(r => r.dataset.key)")
            .await
            .unwrap(),
    )
    .unwrap();
    b.press("j").await.unwrap();
    let first = selected_key(&mut b).await;
    assert!(keys.contains(&first), "j selects a row ({first:?})");
    b.press("j").await.unwrap();
    let second = selected_key(&mut b).await;
    assert_ne!(first, second, "j moves down");
    b.press("k").await.unwrap();
    assert_eq!(selected_key(&mut b).await, first, "k moves up");

    // Pick a thread whose root author is someone else (they will reply later).
    let token = stack.mm_token("alice").await.unwrap();
    let alice_id = stack.driver().user_id("alice").unwrap();
    let mut target = None;
    for k in keys.iter().filter(|k| k.starts_with("t_")) {
        let root: Value = support::http()
            .get(format!("{}/api/v4/posts/{}", stack.sim.url, &k[2..]))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if root["user_id"].as_str().is_some_and(|u| u != alice_id) {
            target = Some((k.clone(), root["user_id"].as_str().unwrap().to_owned()));
            break;
        }
    }
    let (key, other) = target.expect("a thread started by someone else");
    let root_id = key[2..].to_owned();

    // Open it with Enter.
    select_with_keys(&mut b, &key).await;
    b.press("Enter").await.unwrap();
    b.wait_for(&format!("location.pathname === '/items/{key}'"), WAIT)
        .await
        .unwrap();
    b.wait_for("document.querySelectorAll('#posts > li').length > 0", WAIT)
        .await
        .unwrap();
    b.screenshot(&shots.join("conversation.png")).await.unwrap();

    // Reply: r focuses the box, Ctrl+Enter sends.
    b.press("r").await.unwrap();
    b.wait_for(
        "document.activeElement && document.activeElement.id === 'reply-box'",
        WAIT,
    )
    .await
    .unwrap();
    b.type_text("Replying from the browser test").await.unwrap();
    b.press_with("Enter", 2).await.unwrap();
    stack
        .wait_posted_once(&root_id, &token, "Replying from the browser test")
        .await
        .unwrap();
    b.wait_for("document.getElementById('reply-box').value === ''", WAIT)
        .await
        .unwrap();

    // Replies in quick succession: each one, delivered while the page may be refreshing for
    // the previous one, shows as Mattermost created it without a reload (a refresh requested
    // during another used to be dropped, leaving a reply "Sending…" forever).
    let burst: Vec<String> = (0..4)
        .map(|i| format!("Quick reply {i} from the browser"))
        .collect();
    for text in &burst {
        // The box keeps the focus after a send (an `r` now would be typed into it).
        b.wait_for(
            "document.activeElement && document.activeElement.id === 'reply-box'",
            WAIT,
        )
        .await
        .unwrap();
        b.type_text(text).await.unwrap();
        b.press_with("Enter", 2).await.unwrap();
        stack
            .wait_posted_once(&root_id, &token, text)
            .await
            .unwrap();
        b.wait_for(
            &format!(
                "[...document.querySelectorAll('#posts > li:not(.pending)')].some(li => li.textContent.includes({text:?}))"
            ),
            WAIT,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        b.eval("document.querySelectorAll('#posts > li.pending').length")
            .await
            .unwrap(),
        serde_json::json!(0),
        "no reply is left pending once Mattermost has it"
    );

    // Back to the queue with g i; mark the thread done with e: it leaves.
    b.press("Escape").await.unwrap();
    b.press("g").await.unwrap();
    b.press("i").await.unwrap();
    b.wait_for("location.pathname === '/'", WAIT).await.unwrap();
    b.wait_for(
        &format!("!!document.querySelector('#queue > li.item[data-key=\"{key}\"]')"),
        WAIT,
    )
    .await
    .unwrap();
    select_with_keys(&mut b, &key).await;
    b.press("e").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while row_present(&mut b, &key).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "done did not remove the row"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Live: another user replies; the item comes back without a reload.
    b.eval("window.__noReload = 'still here'").await.unwrap();
    // Let the done mark reach Mattermost first, so the new reply is newer than it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack
        .driver()
        .reply(&other, &root_id, "New activity after done")
        .unwrap();
    b.wait_for(
        &format!("!!document.querySelector('#queue > li.item[data-key=\"{key}\"]')"),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        b.eval("window.__noReload").await.unwrap(),
        Value::String("still here".into()),
        "the item came back through the live stream, not a reload"
    );

    // Snooze with s then 1 (later today): it leaves; z undoes it: it returns.
    select_with_keys(&mut b, &key).await;
    b.press("s").await.unwrap();
    b.wait_for("document.getElementById('snooze-dialog').open", WAIT)
        .await
        .unwrap();
    b.press("1").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while row_present(&mut b, &key).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "snooze did not remove the row"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The server has it as snoozed (the JSON API with the browser's own session).
    b.wait_for(
        &format!(
            "fetch('/api/v1/items?filter=snoozed').then(r => r.json()).then(j => j.items.some(i => i.key === '{key}'))"
        ),
        WAIT,
    )
    .await
    .unwrap();
    b.press("z").await.unwrap();
    b.wait_for(
        &format!("!!document.querySelector('#queue > li.item[data-key=\"{key}\"]')"),
        WAIT,
    )
    .await
    .unwrap();
    // The server agrees: the item is in the queue, not snoozed.
    b.wait_for(
        &format!(
            "fetch('/api/v1/items?filter=snoozed').then(r => r.json()).then(j => !j.items.some(i => i.key === '{key}'))"
        ),
        WAIT,
    )
    .await
    .unwrap();
    b.goto(&format!("{}/?filter=snoozed", stack.url))
        .await
        .unwrap();
    assert!(!row_present(&mut b, &key).await, "undo cleared the snooze");

    // `?` shows the shortcuts.
    b.goto(&format!("{}/", stack.url)).await.unwrap();
    b.press("?").await.unwrap();
    b.wait_for("document.getElementById('shortcuts-dialog').open", WAIT)
        .await
        .unwrap();
    b.screenshot(&shots.join("shortcuts.png")).await.unwrap();
    assert!(
        b.dialogs().is_empty(),
        "no JavaScript dialog opened: {:?}",
        b.dialogs()
    );
}
