//! Browser benchmarks (research §B3 P-6 keyboard navigation, P-8 reply) in headless Chromium
//! (Debian's `chromium`): `cargo bench -p threaddesk --bench ui`.
//!
//! The stack is the test harness's (mmsim `demo` org + ThreadDesk on loopback, signed in through
//! the real OAuth flow). Latencies are measured inside the page, on the page's own clock, from
//! the key event's `timeStamp` (the moment Chromium received the input) to the first animation
//! frame after the page reacted, so the CDP round trips of the driver are not counted:
//! - P-6 `j`/`k`: keydown → the next paint after the selection moved (a `requestAnimationFrame`
//!   callback, then a task queued from it, which runs once that frame has been rendered: the
//!   usual in-page approximation of "input to next paint");
//! - P-6 open: keydown on `Enter` → first contentful paint of the conversation page (a full
//!   navigation, server render included);
//! - P-8 reply: keydown on `Ctrl+Enter` → the pending post shown (the server acknowledged the
//!   outbox row) and → the post as Mattermost created it, rendered from ThreadDesk's store.
//!
//! Prints a table and rewrites the `bench:ui` section of BENCHMARKS.md (`BENCH_OUT=-` prints only).

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    clippy::cast_precision_loss,
    dead_code
)]

#[path = "../common/mod.rs"]
mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Stack;
use support::browser::{self, Browser};

const WAIT: Duration = Duration::from_secs(30);

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Installed on every page: records keydown → next painted frame for `j`/`k`, and the absolute
/// time of the last `Enter`/`Ctrl+Enter` keydown (kept across the navigation it causes).
const PROBE: &str = r"(() => {
  if (window.__tdProbe) return true;
  window.__tdProbe = true;
  window.__nav = [];
  addEventListener('keydown', (e) => {
    const t0 = e.timeStamp;
    if (e.key === 'j' || e.key === 'k') {
      requestAnimationFrame(() => setTimeout(() => window.__nav.push(performance.now() - t0), 0));
    }
    if (e.key === 'Enter') sessionStorage.setItem('__tdEnter', String(performance.timeOrigin + t0));
  }, true);
  return true;
})()";

async fn sign_in(b: &mut Browser, url: &str) {
    b.goto(&format!("{url}/")).await.unwrap();
    b.wait_for("location.pathname === '/signin'", WAIT)
        .await
        .unwrap();
    b.eval("document.querySelector('a[href=\"/auth/oauth/start\"]').click()")
        .await
        .unwrap();
    b.wait_for("location.pathname === '/'", WAIT).await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let n = b
            .eval("document.querySelectorAll('#queue > li.item').length")
            .await
            .unwrap();
        if n.as_u64().unwrap_or(0) >= 3 {
            return;
        }
        assert!(Instant::now() < deadline, "the queue never filled");
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.goto(&format!("{url}/")).await.unwrap();
    }
}

fn fmt3(v: &[f64]) -> String {
    format!(
        "{:.1} / {:.1} / {:.1}",
        common::percentile(v, 50.0),
        common::percentile(v, 99.0),
        common::percentile(v, 100.0)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !browser::available() {
        eprintln!(
            "ui bench: Chromium is not installed (`apt-get install chromium`); nothing measured"
        );
        return;
    }
    let presses = common::env_usize("BENCH_PRESSES", 200);
    let opens = common::env_usize("BENCH_OPENS", 20);
    let replies = common::env_usize("BENCH_REPLIES", 20);
    let started = Instant::now();
    let stack = Stack::start().await.unwrap();
    let mut b = Browser::launch().await.unwrap();
    sign_in(&mut b, &stack.url).await;
    let queue_rows = b
        .eval("document.querySelectorAll('#queue > li.item').length")
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(0);

    // ---- P-6: j / k.
    b.eval(PROBE).await.unwrap();
    for i in 0..presses {
        // Down to the end of the first rows and back up, as a reader does.
        let key = if (i / 8) % 2 == 0 { "j" } else { "k" };
        b.press(key).await.unwrap();
        b.wait_for(&format!("window.__nav.length >= {}", i + 1), WAIT)
            .await
            .unwrap();
    }
    let nav = floats(&b.eval("window.__nav").await.unwrap());

    // ---- P-6: open the selected item with Enter (a navigation), back with g i.
    let (mut open, mut open_server, mut open_paint, mut open_dcl) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..opens {
        b.eval(PROBE).await.unwrap();
        b.press("j").await.unwrap();
        b.press("Enter").await.unwrap();
        b.wait_for(
            "location.pathname.startsWith('/items/') && document.readyState === 'complete' && performance.getEntriesByType('paint').some(e => e.name === 'first-contentful-paint')",
            WAIT,
        )
        .await
        .unwrap();
        let v = b
            .eval(
                "(() => { const fcp = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');
                  return performance.timeOrigin + fcp.startTime - Number(sessionStorage.getItem('__tdEnter')); })()",
            )
            .await
            .unwrap();
        if let Some(x) = v.as_f64() {
            open.push(x);
        }
        let nav = b
            .eval(
                "(() => { const n = performance.getEntriesByType('navigation')[0];
                  const fcp = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');
                  return [n.responseStart - n.requestStart, fcp.startTime - n.responseEnd, n.domContentLoadedEventEnd - n.responseEnd]; })()",
            )
            .await
            .unwrap();
        let nav = floats(&nav);
        if let [server, after, dcl] = nav[..] {
            open_server.push(server);
            open_paint.push(after);
            open_dcl.push(dcl);
        }
        b.press("g").await.unwrap();
        b.press("i").await.unwrap();
        b.wait_for(
            "location.pathname === '/' && document.readyState === 'complete'",
            WAIT,
        )
        .await
        .unwrap();
    }

    // ---- P-8: reply in a conversation; pending shown, then confirmed from Mattermost's echo.
    b.eval(PROBE).await.unwrap();
    b.press("j").await.unwrap();
    b.press("Enter").await.unwrap();
    b.wait_for(
        "location.pathname.startsWith('/items/') && document.querySelectorAll('#posts > li').length > 0",
        WAIT,
    )
    .await
    .unwrap();
    let (mut shown, mut confirmed) = (Vec::new(), Vec::new());
    for n in 0..replies {
        let text = format!("bench reply {n} {}", started.elapsed().as_nanos());
        b.eval(&format!(
            r"(() => {{
              const posts = document.getElementById('posts');
              window.__reply = {{ text: {text:?}, t0: null, shown: null, confirmed: null }};
              addEventListener('keydown', (e) => {{
                if (e.key === 'Enter' && e.ctrlKey && window.__reply.t0 === null) window.__reply.t0 = e.timeStamp;
              }}, {{ capture: true }});
              const check = () => {{
                const r = window.__reply;
                if (r.t0 === null) return;
                for (const li of posts.children) {{
                  if (!li.textContent.includes(r.text)) continue;
                  const now = performance.now();
                  if (li.classList.contains('pending')) {{ if (r.shown === null) r.shown = now - r.t0; }}
                  else if (r.confirmed === null) {{ r.confirmed = now - r.t0; if (r.shown === null) r.shown = r.confirmed; }}
                }}
              }};
              new MutationObserver(check).observe(posts, {{ childList: true, subtree: true }});
              return true;
            }})()"
        ))
        .await
        .unwrap();
        b.press("r").await.unwrap();
        b.wait_for(
            "document.activeElement && document.activeElement.id === 'reply-box'",
            WAIT,
        )
        .await
        .unwrap();
        b.type_text(&text).await.unwrap();
        b.press_with("Enter", 2).await.unwrap();
        if let Err(e) = b.wait_for("window.__reply.confirmed !== null", WAIT).await {
            let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
            let _ = b
                .screenshot(&shots.join("bench-ui-reply-timeout.png"))
                .await;
            let state = b
                .eval("JSON.stringify({r: window.__reply, n: document.querySelectorAll('#posts > li').length, pending: document.querySelectorAll('#posts > li.pending').length, status: document.getElementById('reply-status')?.textContent})")
                .await
                .unwrap_or_default();
            panic!("reply {n}: {e}; page state {state}");
        }
        let r = b.eval("window.__reply").await.unwrap();
        shown.push(r["shown"].as_f64().unwrap_or(f64::NAN));
        confirmed.push(r["confirmed"].as_f64().unwrap_or(f64::NAN));
        b.press("Escape").await.unwrap();
    }
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let _ = b.screenshot(&shots.join("bench-ui-replies.png")).await;

    let mut rows = Vec::new();
    rows.push(common::Row {
        id: "P-6",
        task: format!(
            "`j`/`k` in the queue ({queue_rows} rows on the page), {} presses",
            nav.len()
        ),
        metric: "keydown → next paint after the move, ms: p50 / p99 / max".into(),
        value: fmt3(&nav),
        target: "p99 ≤ 50 ms",
        verdict: common::verdict(common::percentile(&nav, 99.0) <= 50.0),
    });
    rows.push(common::Row {
        id: "P-6",
        task: format!(
            "open the selected item with `Enter` (server-rendered page), {} opens",
            open.len()
        ),
        metric: "keydown → first contentful paint, ms: p50 / p99 / max".into(),
        value: fmt3(&open),
        target: "p99 ≤ 50 ms",
        verdict: common::verdict(common::percentile(&open, 99.0) <= 50.0),
    });
    rows.push(common::Row {
        id: "P-6",
        task: format!(
            "open the selected item with `Enter` (server-rendered page), {} opens",
            open.len()
        ),
        metric:
            "of which: request → first byte (server) · response end → DOMContentLoaded (module script run) · response end → first paint, ms: p50 / p99"
                .into(),
        value: format!(
            "{:.1} / {:.1} · {:.1} / {:.1} · {:.1} / {:.1}",
            common::percentile(&open_server, 50.0),
            common::percentile(&open_server, 99.0),
            common::percentile(&open_dcl, 50.0),
            common::percentile(&open_dcl, 99.0),
            common::percentile(&open_paint, 50.0),
            common::percentile(&open_paint, 99.0)
        ),
        target: "–",
        verdict: "–",
    });
    rows.push(common::Row {
        id: "P-8",
        task: format!("reply with `Ctrl+Enter` in a conversation, {replies} replies"),
        metric: "keydown → pending post shown (outbox row committed, 202), ms: p50 / p99 / max"
            .into(),
        value: fmt3(&shown),
        target: "p99 ≤ 50 ms",
        verdict: common::verdict(common::percentile(&shown, 99.0) <= 50.0),
    });
    rows.push(common::Row {
        id: "P-8",
        task: format!("reply with `Ctrl+Enter` in a conversation, {replies} replies"),
        metric: "keydown → the post as Mattermost created it (delivered by the outbox, applied to the store, shown from the store), ms: p50 / p99 / max"
            .into(),
        value: fmt3(&confirmed),
        target: "createPost + ≤ 20 ms (mmsim adds no latency here)",
        verdict: "–",
    });

    let mut out = String::new();
    let _ = writeln!(out, "## Browser benchmarks (generated)\n");
    let version = std::process::Command::new("chromium")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "Headless {version} over CDP against mmsim `demo` + ThreadDesk on loopback (no injected latency); times from the page's own clock (key event `timeStamp` → frame/paint), so the driver's round trips are not counted; whole run {:.0} s.\n",
        started.elapsed().as_secs_f64()
    );
    out.push_str(&common::machine());
    out.push('\n');
    out.push_str(&common::table(&rows));
    println!("{out}");
    if let Some(path) = common::out_path()
        && let Err(e) = common::write_section(&path, "ui", &out)
    {
        eprintln!("cannot write {}: {e}", path.display());
    }
}
