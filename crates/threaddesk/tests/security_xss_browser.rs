//! Message markdown is untrusted: every payload of `tests/xss_corpus/*.txt` (and a variant that
//! sets `window.__xss` instead of calling `alert`) is posted into mmsim as a DM to alice, then
//! the conversations, the queue and a search page are opened in headless Chromium. Nothing may
//! execute (no dialog, no `window.__xss`), no CSP violation may be reported (the CSP is the
//! second wall, it must never be the one that stops a payload), and the rendered message
//! bodies hold only the renderer's allowed tags and attributes, no `on*` handler and no
//! `javascript:`/`data:` URL.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Stack;
use support::browser::{self, Browser};

const WAIT: Duration = Duration::from_secs(30);
const SENDERS: [&str; 3] = ["bob", "carol", "dave"];

fn corpus() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/xss_corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for p in text.split("\n=====\n") {
            let p = p.trim_matches('\n');
            if p.is_empty() {
                continue;
            }
            out.push(p.to_owned());
            if p.contains("alert(1)") {
                out.push(p.replace("alert(1)", "window.__xss=1"));
            }
        }
    }
    assert!(out.len() > 60, "corpus loaded: {}", out.len());
    out
}

/// Checks of the current page, in the page: offending elements/attributes, as a list.
fn audit_js() -> String {
    let tags: Vec<String> = threaddesk::web::render::ALLOWED_TAGS
        .iter()
        .map(|t| t.to_ascii_uppercase())
        .collect();
    let attrs = threaddesk::web::render::ALLOWED_ATTRS;
    format!(
        r"(() => {{
        const tags = new Set({tags}); const attrs = new Set({attrs});
        const bad = [];
        const urlAttr = /^(href|src|xlink:href|action|formaction|srcset|poster|background|data)$/;
        for (const el of document.querySelectorAll('*')) {{
          for (const a of el.attributes) {{
            const n = a.name.toLowerCase();
            if (n.startsWith('on')) bad.push(el.tagName + '[' + n + ']');
            if (urlAttr.test(n) && /^\s*(javascript|vbscript|data):/i.test(a.value)
                && !(el.tagName === 'IMG' && /^data:image\/(png|svg\+xml|gif);/.test(a.value) && !el.closest('.md')))
              bad.push(el.tagName + '[' + n + '=' + a.value.slice(0, 40) + ']');
          }}
        }}
        // A snippet is text; a search marks the words it found with bare <mark>s of text.
        for (const sn of document.querySelectorAll('.item-snippet'))
          for (const el of sn.children)
            if (el.tagName !== 'MARK' || el.attributes.length || el.children.length) bad.push('markup in a snippet');
        for (const md of document.querySelectorAll('.md')) {{
          for (const el of md.querySelectorAll('*')) {{
            if (!tags.has(el.tagName)) bad.push('tag ' + el.tagName);
            for (const a of el.attributes) if (!attrs.has(a.name)) bad.push('attr ' + el.tagName + '[' + a.name + ']');
          }}
        }}
        for (const s of document.querySelectorAll('script')) {{
          if (!s.src || new URL(s.src).origin !== location.origin) bad.push('script ' + (s.src || s.textContent.slice(0, 40)));
        }}
        for (const t of ['iframe', 'object', 'embed', 'frame', 'base', 'form[action^=javascript]', 'meta[http-equiv]'])
          if (document.querySelector(t)) bad.push('element ' + t);
        if (window.__xss) bad.push('window.__xss set');
        for (const v of (window.__csp || [])) bad.push('CSP violation ' + v);
        return bad;
      }})()",
        tags = serde_json::to_string(&tags).unwrap(),
        attrs = serde_json::to_string(attrs).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xss_corpus_executes_nothing_in_a_real_browser() {
    if !browser::available() {
        assert!(
            std::env::var("THREADDESK_SKIP_BROWSER").is_ok(),
            "Chromium is not installed: `apt-get install chromium` (or set THREADDESK_SKIP_BROWSER=1 to skip)"
        );
        return;
    }
    let stack = Stack::start().await.unwrap();
    let mut api = stack.sign_in("alice").await.unwrap();
    api.wait_items(1).await.unwrap();
    let payloads = corpus();
    let driver = stack.driver();
    let mut per_sender = vec![0usize; SENDERS.len()];
    for (i, p) in payloads.iter().enumerate() {
        let who = i % SENDERS.len();
        driver.dm(SENDERS[who], "alice", p).unwrap();
        per_sender[who] += 1;
    }
    // A marker last in each DM: when it is synced, every payload before it is too.
    let mut keys = Vec::new();
    for s in SENDERS {
        driver
            .dm(s, "alice", &format!("xss-end-marker-{s}"))
            .unwrap();
    }
    for s in SENDERS {
        let deadline = tokio::time::Instant::now() + WAIT;
        let key = loop {
            let (_, v) = api
                .json(&format!("/api/v1/items?q=xss-end-marker-{s}"))
                .await
                .unwrap();
            if let Some(k) = v["items"][0]["key"].as_str() {
                break k.to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "DM of {s} not synced"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        keys.push(key);
    }
    for (key, n) in keys.iter().zip(&per_sender) {
        let (status, item) = api.json(&format!("/api/v1/items/{key}")).await.unwrap();
        assert_eq!(status, 200);
        let posts = item["posts"].as_array().unwrap().len();
        assert!(posts > *n, "{key}: {posts} posts shown, {n} payloads sent");
    }

    let mut b = Browser::launch().await.unwrap();
    b.call(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": "document.addEventListener('securitypolicyviolation', e => \
            (window.__csp = window.__csp || []).push(e.violatedDirective + ' ' + e.blockedURI));"}),
    )
    .await
    .unwrap();
    b.goto(&format!("{}/signin", stack.url)).await.unwrap();
    b.eval("document.querySelector('a[href=\"/auth/oauth/start\"]').click()")
        .await
        .unwrap();
    b.wait_for("location.pathname === '/'", WAIT).await.unwrap();
    let mut pages: Vec<String> = keys.iter().map(|k| format!("/items/{k}")).collect();
    pages.push("/".into());
    pages.push("/?filter=direct".into());
    pages.push("/?q=alert".into());
    for p in &pages {
        b.goto(&format!("{}{p}", stack.url)).await.unwrap();
        if p.starts_with("/items/") {
            b.wait_for("document.querySelectorAll('#posts .md').length > 10", WAIT)
                .await
                .unwrap();
        }
        // Give late handlers (onload of images, timers, animations) a moment to fire.
        b.pump(Duration::from_millis(300)).await.unwrap();
        let bad: Value = b.eval(&audit_js()).await.unwrap();
        assert_eq!(bad, json!([]), "{p}: unsafe content in the page");
        assert!(b.dialogs().is_empty(), "{p}: dialogs {:?}", b.dialogs());
    }
    // The same conversations opened in place from the queue (the fragment the queue swaps in:
    // `/fragments/items/{key}`, issue #7), as a click on the row does.
    let mut in_place = 0;
    for k in &keys {
        b.goto(&format!("{}/", stack.url)).await.unwrap();
        let link = format!("a.item-link[href=\"/items/{k}\"]");
        let clicked = b
            .eval(&format!(
                "(() => {{ const a = document.querySelector('{link}'); if (!a) return false; \
                 window.__same_page = 1; a.click(); return true; }})()"
            ))
            .await
            .unwrap();
        if clicked != json!(true) {
            continue;
        }
        b.wait_for(
            "window.__same_page === 1 && document.querySelectorAll('#conv-view #posts .md').length > 10",
            WAIT,
        )
        .await
        .unwrap();
        b.pump(Duration::from_millis(300)).await.unwrap();
        let bad: Value = b.eval(&audit_js()).await.unwrap();
        assert_eq!(
            bad,
            json!([]),
            "{k} opened in place: unsafe content in the page"
        );
        assert!(
            b.dialogs().is_empty(),
            "{k} in place: dialogs {:?}",
            b.dialogs()
        );
        in_place += 1;
    }
    assert!(
        in_place > 0,
        "no corpus conversation was in the queue to open in place"
    );
    // Self-check of the detectors (so a blind audit cannot pass): an injected handler, a
    // blocked inline script, and a dialog are all seen.
    b.eval(
        "document.body.insertAdjacentHTML('beforeend', '<div class=\"md\"><img src=\"/x\" onerror=\"0\"></div>'); \
         const s = document.createElement('script'); s.textContent = 'window.__xss = 1'; document.body.appendChild(s); 1",
    )
    .await
    .unwrap();
    b.pump(Duration::from_millis(200)).await.unwrap();
    let bad = b.eval(&audit_js()).await.unwrap().to_string();
    assert!(bad.contains("IMG[onerror]"), "audit sees handlers: {bad}");
    assert!(
        bad.contains("CSP violation script-src"),
        "audit sees CSP reports: {bad}"
    );
    assert!(
        !bad.contains("window.__xss set"),
        "the CSP blocked the inline script: {bad}"
    );
    b.eval("setTimeout(() => alert('self-check'), 0); 1")
        .await
        .unwrap();
    b.pump(Duration::from_millis(500)).await.unwrap();
    assert_eq!(b.dialogs().len(), 1, "dialogs are detected");
}
