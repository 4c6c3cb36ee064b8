//! End-to-end in headless Chromium (Debian's `chromium`, installed by `.ci/run`): sign in
//! through the real OAuth flow, see the queue, navigate with the keyboard only, open an item,
//! reply (it reaches Mattermost), mark done (it leaves; a new reply brings it back live, without
//! reload), snooze, undo; opening in place (no page load, the address and Back as with one,
//! replies and live updates in the conversation, the plain address still a whole page).
//! Screenshots of the queue and a conversation are saved under `target/screenshots/`.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
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

/// A browser signed in to the queue (3 rows at least), and the key of a thread in it that
/// someone else started, with that person's id.
async fn queue_with_a_thread_by_another(stack: &Stack) -> (Browser, String, String) {
    let mut b = Browser::launch().await.unwrap();
    b.sign_in_to_queue(&stack.url, 3, WAIT).await.unwrap();
    let keys: Vec<Value> = serde_json::from_value(
        b.eval(
            "[...document.querySelectorAll('#queue > li.item')].map(r => ({ key: r.dataset.key }))",
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let (key, other) = stack.thread_by_other(&keys, "alice").await.unwrap();
    (b, key, other)
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

/// Waits until the queue shows (`present`) or no longer shows the row of `key`.
async fn wait_row(b: &mut Browser, key: &str, present: bool) {
    let found = format!("document.querySelector('#queue > li.item[data-key=\"{key}\"]')");
    let expr = if present {
        format!("!!{found}")
    } else {
        format!("!{found}")
    };
    b.wait_for(&expr, WAIT).await.unwrap();
}

/// Polls `expr` (a promise is awaited: `wait_for` cannot, it tests the value's truth) until
/// it evaluates to `want`.
async fn wait_value(b: &mut Browser, expr: &str, want: &serde_json::Value) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = b.eval(expr).await.unwrap_or_default();
        if &v == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`{expr}` is {v}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until Mattermost itself holds a mark of `category` (`threaddesk_done` or
/// `threaddesk_snooze`, a preference) for each of `keys` (`present`), or for none of them:
/// the outbox has delivered the action.
async fn wait_mm_marks(stack: &Stack, token: &str, category: &str, keys: &[&str], present: bool) {
    support::poll(WAIT, "the marks in Mattermost's preferences", || async {
        let (status, prefs) = stack
            .mm_get("/api/v4/users/me/preferences", token)
            .await
            .ok()?;
        if status != 200 {
            return None;
        }
        let marked: Vec<&str> = prefs
            .as_array()?
            .iter()
            .filter(|p| p["category"] == category)
            .filter_map(|p| p["name"].as_str())
            .collect();
        keys.iter()
            .all(|k| marked.contains(k) == present)
            .then_some(())
    })
    .await
    .unwrap();
}

/// Types `text` into the reply box (which has the focus: it keeps it after a send, so an `r`
/// now would be typed into it) and sends it with `Ctrl+Enter`.
async fn send_reply(b: &mut Browser, text: &str) {
    b.wait_for(
        "document.activeElement && document.activeElement.id === 'reply-box'",
        WAIT,
    )
    .await
    .unwrap();
    b.type_text(text).await.unwrap();
    b.press_with("Enter", 2).await.unwrap();
}

/// Waits until `text` shows as a post Mattermost created (not a pending one).
async fn wait_post_shown(b: &mut Browser, text: &str) {
    b.wait_for(
        &format!(
            "[...document.querySelectorAll('#posts > li:not(.pending)')].some(li => li.textContent.includes({text:?}))"
        ),
        WAIT,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_triage_and_live_updates_in_a_real_browser() {
    if !browser_or_skip() {
        return;
    }
    let stack = Stack::start().await.unwrap();
    let shots = screenshot_dir();
    let mut b = Browser::launch().await.unwrap();

    // Signed out: the sign-in page (screenshot first). Its link runs the real OAuth flow; the
    // initial sync fills the queue (the page reloads itself on the `reload` event).
    b.goto(&format!("{}/", stack.url)).await.unwrap();
    b.wait_for("location.pathname === '/signin'", WAIT)
        .await
        .unwrap();
    b.screenshot(&shots.join("signin.png")).await.unwrap();
    b.sign_in_to_queue(&stack.url, 3, WAIT).await.unwrap();
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
    // With scripts the toolbar's <noscript> buttons are raw text and must not show (they did:
    // markup above the toolbar).
    let toolbar = b
        .eval("document.querySelector('#conv .toolbar').innerText")
        .await
        .unwrap();
    assert!(
        !toolbar.as_str().unwrap_or_default().contains('<'),
        "the toolbar shows markup: {toolbar}"
    );

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
        send_reply(&mut b, text).await;
        stack
            .wait_posted_once(&root_id, &token, text)
            .await
            .unwrap();
        wait_post_shown(&mut b, text).await;
    }
    // No reply is left pending once Mattermost has it.
    b.wait_for(
        "document.querySelectorAll('#posts > li.pending').length === 0",
        WAIT,
    )
    .await
    .unwrap();

    // A reply whose post arrives and is shown (by the live stream's refresh) before the
    // reply's own answer reaches the page gets no "Sending…" copy, not even for a moment:
    // the answer (202) is held here until the post is on the page.
    b.call(
        "Fetch.enable",
        json!({"patterns": [{"urlPattern": "*/api/v1/items/*/reply", "requestStage": "Response"}]}),
    )
    .await
    .unwrap();
    b.eval("window.__pendingAdded = 0; new MutationObserver((ms) => { for (const m of ms) for (const n of m.addedNodes) if (n.classList?.contains('pending')) window.__pendingAdded++; }).observe(document.getElementById('posts'), { childList: true }); true")
        .await
        .unwrap();
    let text = "Shown before its own answer";
    send_reply(&mut b, text).await;
    let held = b.wait_event("Fetch.requestPaused", WAIT).await.unwrap();
    stack
        .wait_posted_once(&root_id, &token, text)
        .await
        .unwrap();
    wait_post_shown(&mut b, text).await;
    b.call(
        "Fetch.continueRequest",
        json!({"requestId": held["requestId"]}),
    )
    .await
    .unwrap();
    b.call("Fetch.disable", json!({})).await.unwrap();
    // The box empties as the answer is read, in the same task that would add the copy.
    b.wait_for("document.getElementById('reply-box').value === ''", WAIT)
        .await
        .unwrap();
    let seen = b
        .eval(&format!("({{ added: window.__pendingAdded, copies: [...document.querySelectorAll('#posts > li')].filter(li => li.textContent.includes({text:?})).length }})"))
        .await
        .unwrap();
    assert_eq!(
        seen,
        json!({"added": 0, "copies": 1}),
        "a reply shown twice"
    );
    assert_eq!(
        b.eval("document.getElementById('reply-status').textContent")
            .await
            .unwrap(),
        json!("Sent.")
    );
    // While Mattermost does not answer (two 503s: resent after 1-1.5 s, then 2-3 s), the
    // reply says it waits for Mattermost; once its post is here, "Sent.".
    let faults = &stack.sim.sim.inner().faults;
    faults.set_error_route_prefix(Some("/api/v4/posts"));
    faults.fail_next(2, 503);
    let text = "Sent once Mattermost answers";
    send_reply(&mut b, text).await;
    b.wait_for(
        "document.getElementById('reply-status').textContent === 'Queued — it will be sent as soon as Mattermost answers.'",
        WAIT,
    )
    .await
    .unwrap();
    wait_post_shown(&mut b, text).await;
    b.wait_for(
        "document.getElementById('reply-status').textContent === 'Sent.'",
        WAIT,
    )
    .await
    .unwrap();
    faults.set_error_route_prefix(None);

    // Save: the thread's button says whether its root is saved and toggles it in Mattermost.
    let me = stack.driver().user_id("alice").unwrap();
    for (label, saved) in [("Saved", true), ("Save", false)] {
        b.eval("document.querySelector('#conv [data-action=\"toggle-save\"]').click()")
            .await
            .unwrap();
        b.wait_for(
            &format!("(() => {{ const x = document.querySelector('#conv [data-action=\"toggle-save\"]'); return x.getAttribute('aria-pressed') === '{saved}' && x.textContent.trim() === '{label}'; }})()"),
            WAIT,
        )
        .await
        .unwrap();
        support::poll(WAIT, "Mattermost's flagged_post", || async {
            (stack.mm_saved(&me, &token, &root_id).await.ok()? == saved).then_some(())
        })
        .await
        .unwrap();
    }

    // A reply Mattermost refuses stays with its text, the reason and Retry / Discard; Retry
    // delivers it, Discard drops it (clicked: app.js acts through the API in place).
    let faults = &stack.sim.sim.inner().faults;
    for (text, button) in [
        ("Refused then retried", "outbox-retry"),
        ("Refused then discarded", "outbox-discard"),
    ] {
        faults.set_error_route_prefix(Some("/api/v4/posts"));
        faults.fail_next(1, 403);
        send_reply(&mut b, text).await;
        let failed = format!(
            "[...document.querySelectorAll('#posts > li.failed')].find(li => li.textContent.includes({text:?}))"
        );
        b.wait_for(
            &format!("(li => !!li && li.textContent.includes('HTTP 403'))({failed})"),
            WAIT,
        )
        .await
        .unwrap();
        if button == "outbox-retry" {
            b.screenshot(&shots.join("reply-refused.png"))
                .await
                .unwrap();
        }
        b.eval(&format!(
            "{failed}.querySelector('button[data-action=\"{button}\"]').click()"
        ))
        .await
        .unwrap();
        b.wait_for(&format!("!{failed}"), WAIT).await.unwrap();
        let delivered = stack.count_in_thread(&root_id, &token, text).await.unwrap();
        if button == "outbox-retry" {
            stack
                .wait_posted_once(&root_id, &token, text)
                .await
                .unwrap();
            wait_post_shown(&mut b, text).await;
        } else {
            assert_eq!(delivered, 0, "a discarded reply is not sent");
        }
        b.eval("document.getElementById('reply-box').focus()")
            .await
            .unwrap();
    }
    faults.set_error_route_prefix(None);

    // Back to the queue with g i; mark the thread done with e: it leaves.
    b.press("Escape").await.unwrap();
    b.press("g").await.unwrap();
    b.press("i").await.unwrap();
    b.wait_for("location.pathname === '/'", WAIT).await.unwrap();
    wait_row(&mut b, &key, true).await;
    // The tab's title counts the Inbox as the sidebar does, live.
    let inbox = b
        .eval("Number(document.querySelector('[data-count=\"all\"]').textContent)")
        .await
        .unwrap()
        .as_i64()
        .unwrap();
    let inbox_title = |n: i64| {
        let title = if n > 0 {
            format!("({n}) Inbox · ThreadDesk")
        } else {
            "Inbox · ThreadDesk".to_owned()
        };
        format!("document.title === {title:?}")
    };
    b.wait_for(&inbox_title(inbox), WAIT).await.unwrap();
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
    b.wait_for(&inbox_title(inbox - 1), WAIT).await.unwrap();

    // Live: another user replies; the item comes back without a reload.
    b.eval("window.__noReload = 'still here'").await.unwrap();
    // Let the done mark reach Mattermost first, so the new reply is newer than it.
    wait_mm_marks(&stack, &token, "threaddesk_done", &[&key], true).await;
    stack
        .driver()
        .reply(&other, &root_id, "New activity after done")
        .unwrap();
    wait_row(&mut b, &key, true).await;
    b.wait_for(&inbox_title(inbox), WAIT).await.unwrap();
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
    wait_mm_marks(&stack, &token, "threaddesk_snooze", &[&key], true).await;
    b.press("z").await.unwrap();
    wait_row(&mut b, &key, true).await;
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
    wait_mm_marks(&stack, &token, "threaddesk_snooze", &[&key], false).await;

    // "Load more" is a link to the next page (for pages without JavaScript); here it appends
    // the rows in place: no page load (a value set on the page survives), same address.
    b.goto(&format!("{}/?limit=2", stack.url)).await.unwrap();
    b.wait_for(
        "document.querySelectorAll('#queue > li.item').length === 2",
        WAIT,
    )
    .await
    .unwrap();
    b.eval("window.__notReloaded = true; document.querySelector('[data-action=\"load-more\"]').click()")
        .await
        .unwrap();
    b.wait_for(
        "document.querySelectorAll('#queue > li.item').length > 2",
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        b.eval("[window.__notReloaded === true, location.search]")
            .await
            .unwrap(),
        serde_json::json!([true, "?limit=2"])
    );
    // The next page has the page's size too (it used to be the default 50).
    let shown = b
        .eval("[document.querySelectorAll('#queue > li.item').length, Number(document.querySelector('[data-count=\"all\"]').textContent)]")
        .await
        .unwrap();
    assert!(shown[1].as_u64().unwrap() > 4, "enough items: {shown}");
    assert_eq!(shown[0], serde_json::json!(4), "{shown}");

    // A selection: x on two rows, e marks both done (one request), z brings both back.
    b.goto(&format!("{}/", stack.url)).await.unwrap();
    b.wait_for(
        "document.querySelectorAll('#queue > li.item').length >= 3",
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        b.eval("document.getElementById('bulk-bar').hidden")
            .await
            .unwrap(),
        serde_json::json!(true),
        "no bar without a selection"
    );
    let picked = b
        .eval("[...document.querySelectorAll('#queue > li.item')].slice(0, 2).map(li => li.dataset.key)")
        .await
        .unwrap();
    // `a` selects every row shown, `a` again none; `Esc` clears a selection too.
    const PICKED: &str = "[document.getElementById('bulk-bar').hidden, document.getElementById('bulk-count').textContent, document.querySelectorAll('#queue > li.item.picked').length, document.querySelectorAll('#queue > li.item').length]";
    b.press("a").await.unwrap();
    let all = b.eval(PICKED).await.unwrap();
    let n = all[3].as_u64().unwrap();
    assert_eq!(
        all,
        serde_json::json!([false, format!("{n} selected:"), n, n])
    );
    b.press("a").await.unwrap();
    assert_eq!(
        b.eval(PICKED).await.unwrap(),
        serde_json::json!([true, "0 selected:", 0, n])
    );
    b.press("a").await.unwrap();
    b.press("Escape").await.unwrap();
    assert_eq!(
        b.eval(PICKED).await.unwrap(),
        serde_json::json!([true, "0 selected:", 0, n])
    );
    select_with_keys(&mut b, picked[0].as_str().unwrap()).await;
    b.press("x").await.unwrap();
    b.press("j").await.unwrap();
    b.press("x").await.unwrap();
    assert_eq!(
        b.eval("[document.getElementById('bulk-bar').hidden, document.getElementById('bulk-count').textContent, document.querySelectorAll('#queue > li.item.picked').length]")
            .await
            .unwrap(),
        serde_json::json!([false, "2 selected:", 2])
    );
    b.screenshot(&shots.join("queue-selection.png"))
        .await
        .unwrap();
    b.press("e").await.unwrap();
    for k in picked.as_array().unwrap() {
        let k = k.as_str().unwrap();
        wait_row(&mut b, k, false).await;
    }
    // (Asked from the page itself: another sign-in would restart the sync and reload it.)
    let done_now =
        |k: &str| format!("fetch('/api/v1/items/{k}').then(r => r.json()).then(d => d.item.done)");
    for k in picked.as_array().unwrap() {
        wait_value(
            &mut b,
            &done_now(k.as_str().unwrap()),
            &serde_json::json!(true),
        )
        .await;
    }
    let picked_keys: Vec<&str> = picked
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    wait_mm_marks(&stack, &token, "threaddesk_done", &picked_keys, true).await;
    b.press("z").await.unwrap();
    for k in &picked_keys {
        wait_row(&mut b, k, true).await;
        wait_value(&mut b, &done_now(k), &serde_json::json!(false)).await;
    }
    // Both actions delivered (in order) before Mattermost is told to refuse the next one:
    // otherwise the refusal could fall on the undo's delivery.
    wait_mm_marks(&stack, &token, "threaddesk_done", &picked_keys, false).await;

    // Mattermost refuses a done from the queue: the row comes back (Mattermost's value is
    // read back) and the page says so at once.
    let faults = &stack.sim.sim.inner().faults;
    faults.set_error_route_prefix(Some(&format!("/api/v4/users/{alice_id}/preferences")));
    faults.fail_next(1, 403);
    let refused = selected_key(&mut b).await;
    b.press("e").await.unwrap();
    b.wait_for(
        "[...document.querySelectorAll('.toast-error .toast-msg')].some(t => t.textContent.startsWith('Done') && t.textContent.includes('was not delivered') && t.textContent.includes('HTTP 403'))",
        WAIT,
    )
    .await
    .unwrap();
    wait_row(&mut b, &refused, true).await;
    faults.set_error_route_prefix(None);

    // In Done, a selection goes back to the inbox with the bar's button.
    select_with_keys(&mut b, &refused).await;
    b.press("e").await.unwrap();
    wait_value(&mut b, &done_now(&refused), &serde_json::json!(true)).await;
    b.goto(&format!("{}/?filter=done", stack.url))
        .await
        .unwrap();
    wait_row(&mut b, &refused, true).await;
    let back = refused.clone();
    select_with_keys(&mut b, &back).await;
    b.press("x").await.unwrap();
    b.eval("document.querySelector('#bulk-bar [data-bulk=\"undo\"]').click()")
        .await
        .unwrap();
    wait_row(&mut b, &back, false).await;
    wait_value(&mut b, &done_now(&back), &serde_json::json!(false)).await;

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

    // A theme kept in localStorage by an earlier version is carried over to the cookie once.
    b.eval("localStorage.setItem('td:theme', 'light')")
        .await
        .unwrap();
    b.goto(&format!("{}/", stack.url)).await.unwrap();
    wait_value(
        &mut b,
        "[document.documentElement.className, document.cookie.includes('td_theme=light'), localStorage.getItem('td:theme')]",
        &serde_json::json!(["theme-light", true, null]),
    )
    .await;
    // The theme toggle (light → dark) keeps the choice in that cookie, which the server
    // renders: below, the pages served with scripts disabled are dark from the start.
    b.eval("document.getElementById('theme-toggle').click()")
        .await
        .unwrap();
    assert_eq!(
        b.eval("[document.documentElement.className, document.cookie.includes('td_theme=dark')]")
            .await
            .unwrap(),
        serde_json::json!(["theme-dark", true])
    );

    // With the page's scripts disabled, the item page's toolbar is a form whose snooze
    // durations (the dialog's job with JavaScript) are buttons inside <noscript>, shown.
    let key = b
        .eval("document.querySelector('#queue > li.item').dataset.key")
        .await
        .unwrap();
    let key = key.as_str().unwrap().to_owned();
    b.call(
        "Emulation.setScriptExecutionDisabled",
        serde_json::json!({ "value": true }),
    )
    .await
    .unwrap();
    b.goto(&format!("{}/items/{key}", stack.url)).await.unwrap();
    let shown = b
        .eval(
            "[...document.querySelectorAll('.toolbar button[name=hours]')]\
             .map(x => [x.value, x.getBoundingClientRect().width > 0])",
        )
        .await
        .unwrap();
    b.screenshot(&shots.join("item-without-javascript.png"))
        .await
        .unwrap();
    assert_eq!(
        shown,
        serde_json::json!([["24", true], ["3", true], ["168", true]])
    );
    // The queue's bar for the checked rows is served hidden (app.js shows it while rows are
    // selected); without scripts it is the only way to act on them, and shown.
    b.goto(&format!("{}/", stack.url)).await.unwrap();
    let queue = b
        .eval("[document.getElementById('bulk-bar').getBoundingClientRect().height > 0, document.querySelectorAll('#queue > li.item').length > 0, document.documentElement.className]")
        .await
        .unwrap();
    b.screenshot(&shots.join("queue-without-javascript.png"))
        .await
        .unwrap();
    assert_eq!(queue, serde_json::json!([true, true, "theme-dark"]));
}

/// Time labels are served as app.js writes them: once the page has told the server the
/// browser's clock (`td_clock`: its UTC offset and 12/24-hour style), every `<time>` of the
/// queue, of a conversation and of the snoozed list arrives with the label app.js computes for
/// it, so nothing changes in the first frames (it used to arrive in UTC and be rewritten, every
/// row laid out again). The browser is put in India's time (UTC+05:30, no daylight saving) with
/// a US locale (12-hour clock), unlike the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_labels_are_served_as_the_page_writes_them() {
    if !browser_or_skip() {
        return;
    }
    let stack = Stack::start().await.unwrap();
    let mut b = Browser::launch().await.unwrap();
    b.call(
        "Emulation.setTimezoneOverride",
        serde_json::json!({ "timezoneId": "Asia/Kolkata" }),
    )
    .await
    .unwrap();
    b.call(
        "Emulation.setLocaleOverride",
        serde_json::json!({ "locale": "en-US" }),
    )
    .await
    .unwrap();
    b.sign_in_to_queue(&stack.url, 16, WAIT).await.unwrap();
    b.wait_for("document.cookie.includes('td_clock=330.12')", WAIT)
        .await
        .unwrap();
    // A snoozed item, for the labels of times to come.
    b.eval(
        "(async () => { const key = document.querySelector('#queue > li.item').dataset.key;
           const r = await fetch(`/api/v1/items/${key}/snooze`, { method: 'POST', headers: {
             'Content-Type': 'application/json', 'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content },
             body: JSON.stringify({ until: Date.now() + 3 * 86400000 }) });
           return r.status; })()",
    )
    .await
    .unwrap();
    let item = b
        .eval("document.querySelector('#queue > li.item[data-kind=\"thread\"]').dataset.key")
        .await
        .unwrap();
    let item = item.as_str().unwrap().to_owned();
    // The labels in the page (app.js has relabelled whatever differed) against the labels the
    // server sends for the same address right after (not those of the conversations the queue
    // lays out ahead when idle: they are not in the page served). A label may cross a minute
    // between the two: compared again on a mismatch.
    const COMPARE: &str = "(async () => {
        const labels = (doc) => [...doc.querySelectorAll('main time[data-ts]')].filter(t => Number(t.dataset.ts) && !t.closest('.conv-ahead')).map(t => [t.dataset.ts, t.getAttribute('datetime'), t.textContent]);
        const served = new DOMParser().parseFromString(await (await fetch(location.href)).text(), 'text/html');
        return { page: labels(document), served: labels(served) }; })()";
    let mut kinds = std::collections::BTreeSet::new();
    for path in [
        "/".to_owned(),
        format!("/items/{item}"),
        "/?filter=snoozed".to_owned(),
    ] {
        let mut last = Value::Null;
        for _attempt in 0..3 {
            b.goto(&format!("{}{path}", stack.url)).await.unwrap();
            b.wait_for("document.readyState === 'complete'", WAIT)
                .await
                .unwrap();
            let got = b.eval(COMPARE).await.unwrap();
            if got["page"] == got["served"] {
                last = Value::Null;
                for l in got["page"].as_array().unwrap() {
                    let text = l[2].as_str().unwrap();
                    assert!(!text.contains("UTC"), "{path}: {text}");
                    kinds.insert(if text.contains('M') && text.contains(':') {
                        "clock"
                    } else if text.ends_with('m') || text == "now" {
                        "minutes"
                    } else {
                        "day"
                    });
                }
                assert!(!got["page"].as_array().unwrap().is_empty(), "{path}: {got}");
                break;
            }
            last = got;
        }
        assert_eq!(
            last,
            Value::Null,
            "{path}: served and written labels differ"
        );
    }
    assert!(
        kinds.contains("clock"),
        "a 12-hour clock was compared: {kinds:?}"
    );
    b.screenshot(&screenshot_dir().join("times-india-12h.png"))
        .await
        .unwrap();
}

/// A stack and a browser signed in to its queue (16 rows at least) in a window of `width` ×
/// `height` (`mobile`: a phone's viewport rules); `None` without a browser (`browser_or_skip`).
async fn signed_in_in_window(width: u32, height: u32, mobile: bool) -> Option<(Stack, Browser)> {
    if !browser_or_skip() {
        return None;
    }
    let stack = Stack::start().await.unwrap();
    let mut b = Browser::launch().await.unwrap();
    b.sign_in_to_queue(&stack.url, 16, WAIT).await.unwrap();
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
    )
    .await
    .unwrap();
    Some((stack, b))
}

/// On a phone-sized screen nothing scrolls sideways but the strips of views and teams, each on
/// its own: the queue, a conversation opened in place and the settings fit the window (the
/// strips used to widen the page to their full length, and every row's badges and time were
/// off screen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_sized_window_scrolls_nothing_sideways() {
    let Some((stack, mut b)) = signed_in_in_window(390, 844, true).await else {
        return;
    };
    // What sticks out of the window, strips aside.
    // (A page wider than the screen widens a mobile browser's layout viewport: `innerWidth`.)
    const WIDE: &str = "({ width: innerWidth, page: document.documentElement.scrollWidth - innerWidth, out: [...document.querySelectorAll('body *')]
        .filter(e => !e.closest('.side-list, dialog, .skip-link') && e.getClientRects().length && e.getBoundingClientRect().right > innerWidth + 0.5)
        .slice(0, 5).map(e => e.tagName + '.' + e.className) })";
    b.goto(&format!("{}/", stack.url)).await.unwrap();
    b.wait_for("document.querySelectorAll('.side-list').length === 2", WAIT)
        .await
        .unwrap();
    assert_eq!(
        b.eval(WIDE).await.unwrap(),
        json!({"width": 390, "page": 0, "out": []}),
        "the queue"
    );
    // The strips are wider than the window and scroll on their own.
    let strips = b
        .eval("[...document.querySelectorAll('.side-list')].map(l => l.scrollWidth > l.clientWidth && getComputedStyle(l).overflowX === 'auto')")
        .await
        .unwrap();
    assert_eq!(strips, json!([true, true]));
    // A row's time is on screen.
    let time = b
        .eval("document.querySelector('#queue > li.item .item-time').getBoundingClientRect().right <= innerWidth")
        .await
        .unwrap();
    assert_eq!(time, json!(true));
    let shots = screenshot_dir();
    b.screenshot(&shots.join("queue-phone.png")).await.unwrap();
    b.press("Enter").await.unwrap();
    b.wait_for("document.body.dataset.page === 'item'", WAIT)
        .await
        .unwrap();
    assert_eq!(
        b.eval(WIDE).await.unwrap(),
        json!({"width": 390, "page": 0, "out": []}),
        "a conversation"
    );
    b.screenshot(&shots.join("conversation-phone.png"))
        .await
        .unwrap();
    b.goto(&format!("{}/settings", stack.url)).await.unwrap();
    assert_eq!(
        b.eval(WIDE).await.unwrap(),
        json!({"width": 390, "page": 0, "out": []}),
        "the settings"
    );
}

/// The queue's rows outside the window are skipped by the browser (CSS `content-visibility:
/// auto`: neither laid out nor painted, research P-5) and rendered once reached: `j` down to
/// the last row scrolls it into view at its full height, selected and focused. The sidebar,
/// taller than the window, scrolls on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_outside_the_window_render_when_reached() {
    // A short window: Chromium renders rows within half a window of it, and the demo has 20.
    let Some((stack, mut b)) = signed_in_in_window(1280, 480, false).await else {
        return;
    };
    b.goto(&format!("{}/", stack.url)).await.unwrap();
    // A row's buttons exist only where shown (the selected row, hover), in room every row keeps.
    const ACTIONS: &str = "[...document.querySelectorAll('#queue > li.item')].slice(0, 2).map(li => [li.classList.contains('selected'),
        [...li.querySelectorAll('.item-actions > button')].every(x => x.getBoundingClientRect().width > 0), li.querySelector('.item-link').getBoundingClientRect().width])";
    let rows = b.eval(ACTIONS).await.unwrap();
    assert_eq!(
        (&rows[0][0], &rows[0][1], &rows[1][0], &rows[1][1]),
        (
            &Value::Bool(true),
            &Value::Bool(true),
            &Value::Bool(false),
            &Value::Bool(false)
        ),
        "{rows}"
    );
    assert_eq!(rows[0][2], rows[1][2], "the same room on every row: {rows}");
    let at = b
        .eval("(() => { const r = document.querySelectorAll('#queue > li.item')[1].getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        .await
        .unwrap();
    b.call(
        "Input.dispatchMouseEvent",
        serde_json::json!({"type": "mouseMoved", "x": at[0], "y": at[1]}),
    )
    .await
    .unwrap();
    let hovered = b.eval(ACTIONS).await.unwrap();
    assert_eq!(
        hovered[1][1],
        Value::Bool(true),
        "shown on hover: {hovered}"
    );
    assert_eq!(hovered[1][2], rows[1][2], "nothing moved: {hovered}");
    b.call(
        "Input.dispatchMouseEvent",
        serde_json::json!({"type": "mouseMoved", "x": 5, "y": 5}),
    )
    .await
    .unwrap();
    const LAST: &str = "(() => { const rows = document.querySelectorAll('#queue > li.item'); const last = rows[rows.length - 1]; const box = last.getBoundingClientRect();
        return { rows: rows.length, below: box.top > innerHeight, inside: box.top >= 0 && box.bottom <= innerHeight, height: box.height,
                 rendered: last.querySelector('.item-title').checkVisibility({ contentVisibilityAuto: true }),
                 selected: last.classList.contains('selected'), focused: document.activeElement === last.querySelector('.item-link') }; })()";
    let before = b.eval(LAST).await.unwrap();
    assert_eq!(before["below"], Value::Bool(true), "{before}");
    assert_eq!(
        before["rendered"],
        Value::Bool(false),
        "a row below the window is not rendered: {before}"
    );
    for _ in 0..before["rows"].as_u64().unwrap() {
        b.press("j").await.unwrap();
    }
    b.wait_for(
        "document.querySelector('#queue > li.item:last-of-type.selected')",
        WAIT,
    )
    .await
    .unwrap();
    let after = b.eval(LAST).await.unwrap();
    for field in ["inside", "rendered", "selected", "focused"] {
        assert_eq!(after[field], Value::Bool(true), "{field}: {after}");
    }
    let height = after["height"].as_f64().unwrap();
    assert!(
        (40.0..100.0).contains(&height),
        "the last row is drawn at a row's height: {after}"
    );
    b.screenshot(&screenshot_dir().join("queue-last-row.png"))
        .await
        .unwrap();

    // The sidebar, taller than this window, scrolls on its own: its last link can be reached
    // wherever the queue is scrolled, and the queue stays where it is.
    let side = b
        .eval("(() => { const s = document.querySelector('.sidebar'); const y = scrollY; s.scrollTop = s.scrollHeight;
            const last = [...s.querySelectorAll('.side-link')].pop().getBoundingClientRect();
            return { overflows: s.scrollHeight > s.clientHeight, scrolled: s.scrollTop > 0, queueScrolled: y > 0,
                     inside: last.top >= 0 && last.bottom <= innerHeight, queueStill: scrollY === y }; })()")
        .await
        .unwrap();
    for field in [
        "overflows",
        "scrolled",
        "queueScrolled",
        "inside",
        "queueStill",
    ] {
        assert_eq!(side[field], Value::Bool(true), "{field}: {side}");
    }
    b.screenshot(&screenshot_dir().join("queue-sidebar-scrolled.png"))
        .await
        .unwrap();
}

/// Opening an item from the queue paints the conversation without a page load (P-6): the
/// conversation fragment is fetched and swapped in, the address becomes the item's, Back
/// returns to the queue with the same selection, the keyboard works as on a loaded page, a reply
/// and a colleague's reply show in place, and the address still loads the whole page on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_in_place_back_reply_and_plain_address() {
    if !browser_or_skip() {
        return;
    }
    let stack = Stack::start().await.unwrap();
    let shots = screenshot_dir();
    let (mut b, key, other) = queue_with_a_thread_by_another(&stack).await;
    let root_id = key[2..].to_owned();

    // The row's link is the item's real address (what works without JavaScript).
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('#queue > li.item[data-key=\"{key}\"] .item-link').getAttribute('href')"
        ))
        .await
        .unwrap(),
        Value::String(format!("/items/{key}"))
    );

    // A marker on the window survives only if there is no page load.
    b.eval("window.__inPlace = 'same page'").await.unwrap();
    let history_before = b.eval("history.length").await.unwrap().as_u64().unwrap();
    select_with_keys(&mut b, &key).await;
    // Away and back, so that the last move lands on it (it may have been selected already).
    let at = b
        .eval(&format!(
            "[...document.querySelectorAll('#queue > li.item')].findIndex(r => r.dataset.key === '{key}')"
        ))
        .await
        .unwrap()
        .as_i64()
        .unwrap();
    let (away, back) = if at > 0 { ("k", "j") } else { ("j", "k") };
    b.press(away).await.unwrap();
    b.press(back).await.unwrap();
    assert_eq!(selected_key(&mut b).await, key);
    // Moving the selection prefetched the selected row's conversation (bounded: one at a time).
    b.wait_for(
        &format!(
            "performance.getEntriesByType('resource').some(r => r.name.endsWith('/fragments/items/{key}'))"
        ),
        WAIT,
    )
    .await
    .unwrap();
    // When idle, the selected row's conversation is laid out ahead in the page: invisible, no
    // room taken, not focusable, its ids held as data (ids stay unique in the page).
    b.wait_for(
        &format!(
            "document.querySelector('.conv-ahead [data-ahead-id=\"conv\"][data-key=\"{key}\"]')"
        ),
        WAIT,
    )
    .await
    .unwrap();
    let ahead = b
        .eval(&format!(
            "(() => {{ const box = document.querySelector('.conv-ahead [data-ahead-id=\"conv\"][data-key=\"{key}\"]').closest('.conv-ahead');
               const t = box.querySelector('[data-ahead-id=\"reply-box\"]'); t.focus();
               const ids = [...document.querySelectorAll('[id]')].map((n) => n.id);
               return {{ visible: box.querySelector('[data-ahead-id=\"conv-title\"]').checkVisibility({{ visibilityProperty: true }}),
                 height: box.getBoundingClientRect().height, focused: document.activeElement === t,
                 page: document.body.dataset.page, conv: document.querySelectorAll('#conv').length,
                 uniqueIds: new Set(ids).size === ids.length }}; }})()"
        ))
        .await
        .unwrap();
    assert_eq!(
        ahead,
        serde_json::json!({"visible": false, "height": 0, "focused": false, "page": "queue", "conv": 0, "uniqueIds": true}),
        "a conversation laid out ahead is not seen, takes no room, takes no focus and holds no id"
    );
    b.press("Enter").await.unwrap();
    b.wait_for(
        &format!(
            "location.pathname === '/items/{key}' && document.querySelector('#conv')?.dataset.key === '{key}' \
             && document.querySelectorAll('#posts > li').length > 0"
        ),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        b.eval("window.__inPlace").await.unwrap(),
        Value::String("same page".into()),
        "the conversation opened without a page load"
    );
    assert_eq!(
        b.eval("history.length").await.unwrap().as_u64().unwrap(),
        history_before + 1,
        "opening pushed one history entry"
    );
    let state: Value = b
        .eval(
            "({ page: document.body.dataset.page, queueHidden: !document.querySelector('#queue').checkVisibility(), \
               focusInConv: !!document.activeElement?.closest('#conv'), title: document.title, \
               conversations: document.querySelectorAll('#conv').length })",
        )
        .await
        .unwrap();
    assert_eq!(state["page"], "item");
    assert_eq!(
        state["queueHidden"], true,
        "the queue is hidden, not shown under it"
    );
    assert_eq!(
        state["focusInConv"], true,
        "focus moved into the conversation"
    );
    assert_eq!(state["conversations"], 1);
    // The conversation's title, with the Inbox count in front as on the queue.
    let title = state["title"].as_str().unwrap_or_default();
    let count = title
        .strip_prefix('(')
        .and_then(|t| t.split_once(") "))
        .map(|(n, _)| n);
    assert!(
        count.is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n > 0))
            && title.ends_with(" · ThreadDesk")
            && !title.contains("Inbox"),
        "{title}"
    );
    // Shown from the box laid out ahead: the whole conversation, in order, as the server has it.
    let same = b
        .eval(&format!(
            "(async () => {{ const t = document.createElement('template');
               t.innerHTML = await (await fetch('/fragments/items/{key}')).text();
               const ids = (root) => [...root.querySelectorAll('#posts > li')].map((li) => li.id).join();
               return ids(t.content) === ids(document.getElementById('conv-view'))
                 && document.getElementById('conv-view').checkVisibility({{ visibilityProperty: true }}); }})()"
        ))
        .await
        .unwrap();
    assert_eq!(same, Value::Bool(true), "every post shown, in order");
    assert!(
        state["title"].as_str().unwrap().ends_with(" · ThreadDesk")
            && !state["title"].as_str().unwrap().starts_with("All"),
        "the title is the conversation's: {state}"
    );
    b.screenshot(&shots.join("conversation-in-place.png"))
        .await
        .unwrap();

    // The keyboard acts on the conversation as on a loaded page: j focuses the first message,
    // Enter does not open the queue's selection again.
    b.press("j").await.unwrap();
    b.wait_for(
        "document.activeElement?.matches('#posts > li.post') && document.activeElement === document.querySelector('#posts > li.post')",
        WAIT,
    )
    .await
    .unwrap();
    b.press("Enter").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        b.eval("location.pathname").await.unwrap(),
        Value::String(format!("/items/{key}"))
    );

    // Reply from the in-place conversation (CSRF header from the page, as everywhere).
    let token = stack.mm_token("alice").await.unwrap();
    b.press("r").await.unwrap();
    b.wait_for("document.activeElement?.id === 'reply-box'", WAIT)
        .await
        .unwrap();
    b.type_text("Reply from a conversation opened in place")
        .await
        .unwrap();
    b.press_with("Enter", 2).await.unwrap();
    stack
        .wait_posted_once(
            &root_id,
            &token,
            "Reply from a conversation opened in place",
        )
        .await
        .unwrap();
    b.wait_for(
        "[...document.querySelectorAll('#posts > li:not(.pending)')].some(li => li.textContent.includes('Reply from a conversation opened in place'))",
        WAIT,
    )
    .await
    .unwrap();
    // A colleague's reply arrives live (refresh() in the in-place view).
    stack
        .driver()
        .reply(
            &other,
            &root_id,
            "Colleague answers while it is open in place",
        )
        .unwrap();
    b.wait_for(
        "[...document.querySelectorAll('#posts > li')].some(li => li.textContent.includes('Colleague answers while it is open in place'))",
        WAIT,
    )
    .await
    .unwrap();

    // Esc leaves the reply box, Esc again goes back: the queue, same selection, same page.
    b.press("Escape").await.unwrap();
    b.press("Escape").await.unwrap();
    b.wait_for(
        "location.pathname === '/' && document.body.dataset.page === 'queue' && document.querySelector('.queue-main').checkVisibility()",
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(selected_key(&mut b).await, key, "Back keeps the selection");
    assert_eq!(
        b.eval("document.activeElement === document.querySelector('#queue > li.item.selected .item-link')")
            .await
            .unwrap(),
        Value::Bool(true),
        "the selected row has the focus again"
    );
    // No conversation shown (the queue may already have laid the next ones out ahead, in
    // invisible `.conv-ahead` boxes, when idle: those hold their ids as data).
    assert_eq!(
        b.eval(
            "[window.__inPlace, document.querySelectorAll('#conv').length, \
              ((ids) => new Set(ids).size === ids.length)([...document.querySelectorAll('[id]')].map((n) => n.id))]"
        )
        .await
        .unwrap(),
        serde_json::json!(["same page", 0, true])
    );

    // A click on another row opens it in place too; the browser's Back and Forward work.
    let clicked: String = b
        .eval(&format!(
            "(() => {{ const r = [...document.querySelectorAll('#queue > li.item')].find(r => r.dataset.key !== '{key}'); \
               r.querySelector('.item-link').click(); return r.dataset.key; }})()"
        ))
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    b.wait_for(
        &format!("document.querySelector('#conv')?.dataset.key === '{clicked}' && location.pathname === '/items/{clicked}'"),
        WAIT,
    )
    .await
    .unwrap();
    b.eval("history.back()").await.unwrap();
    b.wait_for(
        "location.pathname === '/' && document.querySelector('.queue-main').checkVisibility() && !document.querySelector('#conv-view #conv')",
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        selected_key(&mut b).await,
        clicked,
        "Back keeps the clicked row selected"
    );
    b.eval("history.forward()").await.unwrap();
    b.wait_for(
        &format!("document.querySelector('#conv')?.dataset.key === '{clicked}' && location.pathname === '/items/{clicked}'"),
        WAIT,
    )
    .await
    .unwrap();
    // Done from the in-place conversation: back to the queue without the item, with undo.
    b.press("e").await.unwrap();
    b.wait_for(
        &format!(
            "location.pathname === '/' && document.querySelector('.queue-main').checkVisibility() \
             && !document.querySelector('#queue > li.item[data-key=\"{clicked}\"]') \
             && [...document.querySelectorAll('#toasts .toast')].some(t => t.textContent.includes('Undo'))"
        ),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        b.eval("window.__inPlace").await.unwrap(),
        Value::String("same page".into()),
        "done returned to the queue without a page load"
    );

    // Reloading the address shows the whole conversation page (it is a real URL).
    b.goto(&format!("{}/items/{key}", stack.url)).await.unwrap();
    b.wait_for(
        &format!("document.body.dataset.page === 'item' && document.querySelector('#conv')?.dataset.key === '{key}'"),
        WAIT,
    )
    .await
    .unwrap();
    assert!(
        b.dialogs().is_empty(),
        "no JavaScript dialog opened: {:?}",
        b.dialogs()
    );

    // Without JavaScript (a plain HTTP client with a session): the address is a whole page with
    // the conversation and a reply form that posts without script; the fragment is only the
    // conversation, and needs a session like the JSON API.
    let mut s = stack.sign_in("alice").await.unwrap();
    let r = s.get(&format!("/items/{key}")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    assert!(page.starts_with("<!doctype html>"), "a whole page");
    assert!(page.contains("data-page=\"item\""));
    assert!(page.contains(&format!("id=\"conv\" data-key=\"{key}\"")));
    assert!(page.contains(&format!("action=\"/items/{key}/reply\"")));
    assert!(page.contains("Reply from a conversation opened in place"));
    let r = s.get(&format!("/fragments/items/{key}")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let fragment = r.text().await.unwrap();
    assert!(
        fragment.trim_start().starts_with("<article class=\"conv"),
        "only the conversation"
    );
    assert!(!fragment.contains("<html") && !fragment.contains("<script"));
    assert!(fragment.contains("Reply from a conversation opened in place"));
    assert!(fragment.contains(&format!("name=\"csrf\" value=\"{}\"", s.csrf)));
    let anonymous = support::http()
        .get(format!("{}/fragments/items/{key}", stack.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}

/// The filter box finds a conversation by a message that is not its snippet: typing hides the
/// rows shown (and says so, not "Inbox zero"); Enter searches every cached message; the row
/// found shows that message and opens the conversation at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_box_searches_every_message_and_opens_at_the_one_found() {
    if !browser_or_skip() {
        return;
    }
    let stack = Stack::start().await.unwrap();
    let shots = screenshot_dir();
    let (mut b, key, other) = queue_with_a_thread_by_another(&stack).await;
    let root_id = key[2..].to_owned();
    // A reply with a rare word, then a later one: the row's snippet shows neither.
    let found = stack
        .driver()
        .reply(&other, &root_id, "The zebracorn migration finished at noon")
        .unwrap();
    stack
        .driver()
        .reply(&other, &root_id, "Anything else for today?")
        .unwrap();
    // Wait until the cache has it (the row's activity moves live).
    let token = stack.mm_token("alice").await.unwrap();
    stack
        .wait_posted_once(&root_id, &token, "Anything else for today?")
        .await
        .unwrap();
    let mut s = stack.sign_in("alice").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = s.get("/api/v1/items?q=zebracorn").await.unwrap();
        let v: Value = r.json().await.unwrap();
        if v["items"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never found");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.goto(&format!("{}/", stack.url)).await.unwrap();
    b.wait_for("document.body.dataset.page === 'queue'", WAIT)
        .await
        .unwrap();

    // Typing filters the rows shown; none shows the word, and the empty state says what to do.
    b.press("/").await.unwrap();
    b.wait_for("document.activeElement?.id === 'filter-box'", WAIT)
        .await
        .unwrap();
    b.type_text("zebracorn").await.unwrap();
    b.wait_for(
        "!document.querySelector('#empty').hidden && document.querySelector('#empty .empty-title').textContent.includes('No row shown here matches') && !document.querySelector('#empty').classList.contains('inbox-zero')",
        WAIT,
    )
    .await
    .unwrap();
    // Enter: the server searches the messages.
    b.press("Enter").await.unwrap();
    b.wait_for(
        &format!(
            "new URLSearchParams(location.search).get('q') === 'zebracorn' \
             && document.querySelector('#queue > li.item[data-key=\"{key}\"]')?.dataset.match === '{found}'"
        ),
        WAIT,
    )
    .await
    .unwrap();
    let row = b
        .eval(&format!(
            "(() => {{ const r = document.querySelector('#queue > li.item[data-key=\"{key}\"]');
               return [r.querySelector('.item-snippet').textContent.includes('zebracorn migration'),
                       r.querySelector('.item-link').getAttribute('href'),
                       [...document.querySelectorAll('#queue > li.item')].every(r => r.dataset.match === '{found}')]; }})()"
        ))
        .await
        .unwrap();
    assert_eq!(
        row,
        serde_json::json!([true, format!("/items/{key}#post-{found}"), true]),
        "every row shown was found by that message (a thread in a DM is also the DM's row)"
    );
    b.screenshot(&shots.join("queue-search.png")).await.unwrap();

    // Saved (a plain form: the page comes back), the search is listed in the sidebar.
    b.eval("document.querySelector('#save-search').click()")
        .await
        .unwrap();
    b.wait_for(
        "document.querySelector('#search-saved:not([hidden])') && [...document.querySelectorAll('nav[aria-label=\"Saved searches\"] .side-link')].some(a => a.textContent.includes('zebracorn') && a.getAttribute('aria-current') === 'page')",
        WAIT,
    )
    .await
    .unwrap();
    b.wait_for(
        &format!("document.querySelector('#queue > li.item[data-key=\"{key}\"]')"),
        WAIT,
    )
    .await
    .unwrap();
    b.screenshot(&shots.join("queue-saved-search.png"))
        .await
        .unwrap();

    // Another device (another ThreadDesk, or a script) saves a search and removes this one in
    // Mattermost's preferences: the sidebar follows while the page stays (no reload), with the
    // search shown still marked while it is listed.
    b.eval("window.__samePage = true").await.unwrap();
    let token = stack.mm_token("alice").await.unwrap();
    let (_, me) = stack.mm_get("/api/v4/users/me", &token).await.unwrap();
    let me = me["id"].as_str().unwrap().to_owned();
    let zebra = b
        .eval("document.querySelector('[data-search][aria-current=\"page\"]').dataset.search")
        .await
        .unwrap();
    let zebra = zebra.as_str().unwrap().to_owned();
    let prefs = |name: &str, value: &str| serde_json::json!([{ "user_id": me, "category": "threaddesk_search", "name": name, "value": value }]);
    let mm = |path: String, body: Value| {
        let (url, token) = (stack.sim.url.clone(), token.clone());
        async move {
            let r = support::http()
                .request(
                    if path.ends_with("/delete") {
                        reqwest::Method::POST
                    } else {
                        reqwest::Method::PUT
                    },
                    format!("{url}{path}"),
                )
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{path}");
        }
    };
    let phone = threaddesk::inbox::searches::SavedSearch::name_for("deploy", "all", "");
    mm(
        format!("/api/v4/users/{me}/preferences"),
        prefs(
            &phone,
            r#"{"label":"deploys (phone)","q":"deploy","filter":"all","team":""}"#,
        ),
    )
    .await;
    b.wait_for(
        "[...document.querySelectorAll('#saved-searches .side-link')].map(a => a.textContent.trim()).join('|') === 'deploys (phone)|zebracorn' && document.querySelector('#saved-searches [href=\"/?q=deploy\"]') && document.querySelector('#saved-searches [aria-current=\"page\"]')?.textContent.trim() === 'zebracorn'",
        WAIT,
    )
    .await
    .unwrap();
    // The keyboard focus on a saved search stays on it when the list changes around it.
    b.eval("document.querySelector('#saved-searches [href=\"/?q=deploy\"]').focus()")
        .await
        .unwrap();
    mm(
        format!("/api/v4/users/{me}/preferences/delete"),
        prefs(&zebra, ""),
    )
    .await;
    b.wait_for(
        "[...document.querySelectorAll('#saved-searches .side-link')].map(a => a.textContent.trim()).join('|') === 'deploys (phone)' && !document.querySelector('#saved-searches [aria-current]') && document.getElementById('search-saved').hidden && !document.getElementById('save-search-form').hidden",
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        b.eval("[window.__samePage === true, document.activeElement.matches('#saved-searches [href=\"/?q=deploy\"]')]")
            .await
            .unwrap(),
        serde_json::json!([true, true]),
        "the page was not reloaded, the focus stayed"
    );
    b.goto(&format!("{}/settings", stack.url)).await.unwrap();
    b.wait_for("document.querySelector('#triage')", WAIT)
        .await
        .unwrap();
    b.screenshot(&shots.join("settings-triage.png"))
        .await
        .unwrap();
    b.goto(&format!("{}/?q=zebracorn", stack.url))
        .await
        .unwrap();

    // `u` then `z` on the row: read, then back to exactly as many unread replies as before
    // (not "unread from the latest message"), in the row and on the server.
    b.press("Escape").await.unwrap();
    select_with_keys(&mut b, &key).await;
    let unread_of = |what: &str| {
        format!(
            "fetch('/api/v1/items/{key}').then(r => r.json()).then(j => j.item.unread_replies){what}"
        )
    };
    let before = b.eval(&unread_of("")).await.unwrap();
    assert!(before.as_i64().unwrap() >= 2, "{before}");
    b.press("u").await.unwrap();
    wait_value(&mut b, &unread_of(""), &serde_json::json!(0)).await;
    b.press("z").await.unwrap();
    wait_value(&mut b, &unread_of(""), &before).await;
    b.wait_for(
        &format!(
            "document.querySelector('#queue > li.item[data-key=\"{key}\"] .badge-unread .n')?.textContent === '{before}'"
        ),
        WAIT,
    )
    .await
    .unwrap();

    assert_eq!(
        selected_key(&mut b).await,
        key,
        "the selection stays on the row"
    );
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('#queue > li.item[data-key=\"{key}\"] .item-snippet').textContent.includes('zebracorn migration')"
        ))
        .await
        .unwrap(),
        Value::Bool(true),
        "live updates keep the message found as the row's snippet"
    );
    assert_eq!(
        b.eval(&format!(
            "[...document.querySelectorAll('#queue > li.item[data-key=\"{key}\"] .item-snippet mark')].map(m => m.textContent)"
        ))
        .await
        .unwrap(),
        serde_json::json!(["zebracorn"]),
        "and its marked word, also after the queue read the search again"
    );

    // Opened (in place), the conversation shows the message found, marked and focused.
    b.press("Enter").await.unwrap();
    b.wait_for(
        &format!(
            "document.querySelector('#conv')?.dataset.key === '{key}' \
             && document.activeElement?.matches('#posts > li.post.found[data-post-id=\"{found}\"]')"
        ),
        WAIT,
    )
    .await
    .unwrap();
    b.screenshot(&shots.join("conversation-found.png"))
        .await
        .unwrap();
}
