//! Privacy promise: no message text and no secret in any log line, at every level (T-20).
//!
//! One subscriber at `trace` (built by the product's own [`logging::filter`]) captures every
//! log line of this test binary — ThreadDesk, the embedded mmsim, and every library that logs
//! through `tracing`/`log` — while the test drives sync, live events, a reply, a search,
//! failures, bad credentials and a panic, all carrying a unique canary. Then the canary and
//! every token in play must appear in zero lines. The level knob (`THREADDESK_LOG` over the
//! config file) is checked on the real binary.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use support::{Session, Stack, poll};
use threaddesk::privacy::logging::{self, CaptureWriter};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const WAIT: Duration = Duration::from_secs(30);

/// The process-wide capture, installed once (first use) at `trace` for every target.
fn capture() -> CaptureWriter {
    static CAPTURE: OnceLock<CaptureWriter> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let w = CaptureWriter::default();
            // The product's filter builder; `trace` unless THREADDESK_LOG says otherwise, and a
            // narrower THREADDESK_LOG would make the sanity checks below fail loudly.
            let filter = logging::filter("trace").unwrap();
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(w.clone())
                .with_ansi(false)
                .with_target(true)
                .init();
            w
        })
        .clone()
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Lines of `logs` containing `needle` (for the failure message).
fn lines_with<'a>(logs: &'a str, needle: &str) -> Vec<&'a str> {
    logs.lines()
        .filter(|l| l.contains(needle))
        .take(5)
        .collect()
}

async fn wait_in_thread(stack: &Stack, token: &str, root: &str, needle: &str) {
    let path = format!("/api/v4/posts/{root}/thread");
    poll(WAIT, &format!("{needle:?} in mmsim thread {root}"), || {
        let path = path.clone();
        async move {
            let (status, thread) = stack.mm_get(&path, token).await.ok()?;
            (status == 200
                && thread["posts"]
                    .as_object()?
                    .values()
                    .any(|p| p["message"].as_str().is_some_and(|m| m.contains(needle))))
            .then_some(())
        }
    })
    .await
    .unwrap();
}

/// Poll a ThreadDesk JSON path until its answer contains `needle`.
async fn wait_json_contains(s: &mut Session, path: &str, needle: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, v) = s.json(path).await.unwrap();
        if status == 200 && v.to_string().contains(needle) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{needle:?} never appeared in {path} ({status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_text_or_secret_in_any_log_line_at_trace() {
    let logs = capture();
    let canary = format!("CANARY{:016x}", rand::random::<u64>());
    // A personal-token-shaped canary (26 letters and digits): it reaches Mattermost's check.
    let canary_token = format!("cnrytok{:019}", rand::random::<u64>() % 10_u64.pow(19));
    let stack = Stack::start().await.unwrap();
    let driver = stack.driver();

    // Sign-in with a personal token (its value is a secret to look for).
    let pat = stack.mm_token("alice").await.unwrap();
    let mut alice = stack.sign_in_with_token(&pat).await.unwrap();
    let items = alice.wait_items(1).await.unwrap();
    let alice_token = stack.mm_token("alice").await.unwrap();

    // Live events: reply, edit, reaction in a followed thread; a DM; a channel header.
    let (key, other) = stack.thread_by_other(&items, "alice").await.unwrap();
    let root = key[2..].to_owned();
    let reply = driver
        .reply(&other, &root, &format!("live reply {canary} one"))
        .unwrap();
    let item_path = format!("/api/v1/items/{key}");
    wait_json_contains(&mut alice, &item_path, &format!("{canary} one")).await;
    driver
        .edit(&other, &reply, &format!("edited {canary} two"))
        .unwrap();
    driver.react(&other, &reply, "tada").unwrap();
    wait_json_contains(&mut alice, &item_path, &format!("{canary} two")).await;
    let (_, root_post) = stack
        .mm_get(&format!("/api/v4/posts/{root}"), &alice_token)
        .await
        .unwrap();
    let channel = root_post["channel_id"].as_str().unwrap().to_owned();
    driver
        .update_channel(
            &channel,
            Some(&format!("room {canary}")),
            Some(&format!("header {canary}")),
        )
        .unwrap();
    driver
        .set_channel_purpose(&channel, &format!("purpose {canary}"))
        .unwrap();
    driver
        .dm("bob", "alice", &format!("direct {canary} three"))
        .unwrap();
    wait_json_contains(&mut alice, &format!("/api/v1/items?q={canary}"), "three").await;

    // Search (API and page) with the canary as the text filter.
    let (status, _) = alice
        .json(&format!("/api/v1/items?q={canary}&filter=all"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        alice
            .get(&format!("/?q={canary}"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    // A saved search with the canary (a Mattermost preference write), then forgotten.
    let r = alice
        .post_json(
            "/api/v1/searches",
            &json!({ "q": format!("saved {canary}") }),
        )
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let saved: serde_json::Value = r.json().await.unwrap();
    let r = alice
        .delete(&format!(
            "/api/v1/searches/{}",
            saved["name"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    // A reply through the API reaches Mattermost.
    let r = alice
        .reply(&key, &format!("my reply {canary} four"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    wait_in_thread(&stack, &alice_token, &root, &format!("{canary} four")).await;

    // Failure paths: injected 5xx, then an outage, each with a reply in flight.
    stack.sim.sim.inner().faults.fail_next(3, 500);
    let r = alice
        .reply(&key, &format!("retried {canary} five"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    wait_in_thread(&stack, &alice_token, &root, &format!("{canary} five")).await;
    stack.sim.sim.outage(Duration::from_millis(1500));
    let r = alice
        .reply(&key, &format!("outage {canary} six"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    wait_in_thread(&stack, &alice_token, &root, &format!("{canary} six")).await;
    // A refused reply (4xx from Mattermost: permanent failure, kept for the user).
    stack.sim.sim.inner().faults.fail_next(1, 400);
    let _ = alice
        .reply(&key, &format!("refused {canary} seven"))
        .await
        .unwrap();
    // Invalid input echoing nothing: too long.
    let r = alice
        .reply(&key, &format!("{canary} ").repeat(1000))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains(&canary),
        "error answers do not echo the message"
    );

    // Bad personal tokens: well-formed (Mattermost says 401) and malformed (refused locally).
    let mut anon = Session::new(&stack.url);
    for bad in [canary_token.clone(), format!("{canary_token} with spaces!")] {
        let pre = anon.pre_cookie().await.unwrap();
        let r = anon
            .post_form("/auth/token", &[("token", bad.as_str()), ("csrf", &pre)])
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert!(
            status.is_client_error(),
            "a refused token answers 4xx, got {status}: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    // A forged OAuth callback carrying a canary code and state.
    let r = anon
        .get(&format!(
            "/auth/oauth/callback?code={canary_token}&state={canary_token}x"
        ))
        .await
        .unwrap();
    assert!(r.status().is_success() || r.status().is_client_error());

    // The OAuth flow (its access/refresh tokens and the client secret are secrets too).
    let mut alice2 = Session::new(&stack.url);
    let (_, callback) = alice2.oauth_sign_in().await.unwrap();
    let code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let alice_id = threaddesk::store::UserId::parse(&driver.user_id("alice").unwrap()).unwrap();
    let inner = stack.app.state.inner();
    let creds = threaddesk::account::load(&inner.store, &inner.cipher, &alice_id).unwrap();
    let creds_json = serde_json::to_value(&creds).unwrap();
    let oauth_access = creds_json["access_token"].as_str().unwrap().to_owned();
    let oauth_refresh = creds_json["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Use the OAuth-signed-in session once more (sync with the new token, a search).
    let (status, _) = alice2
        .json(&format!("/api/v1/items?q={canary}"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let client_secret = stack
        .app
        .state
        .config()
        .oauth_client_secret
        .as_ref()
        .unwrap()
        .expose()
        .to_owned();

    // A panic quoting user data: the product's hook reports the location only.
    logging::install_panic_hook();
    let panic_canary = canary.clone();
    let caught = std::panic::catch_unwind(move || {
        panic!("boom while handling {panic_canary}");
    });
    let _ = std::panic::take_hook();
    assert!(caught.is_err());

    // Let the last deliveries and events be logged, then check.
    let all = logs.contents();
    assert!(
        all.contains("TRACE") && all.contains("DEBUG"),
        "the capture must be at trace level"
    );
    assert!(
        all.contains("signed in"),
        "ThreadDesk's own events are captured"
    );
    assert!(
        all.contains("ws: published"),
        "mmsim's events are captured too"
    );
    assert!(
        all.contains("message withheld"),
        "the panic was logged (without its message)"
    );
    let session_cookie = alice.cookie("td_session").unwrap().to_owned();
    let session2_cookie = alice2.cookie("td_session").unwrap().to_owned();
    // File names of the attachments alice's conversations show (synced and rendered above).
    let mut file_names = Vec::new();
    for item in alice.wait_items(1).await.unwrap() {
        let key = item["key"].as_str().unwrap().to_owned();
        let (_, conv) = alice.json(&format!("/api/v1/items/{key}")).await.unwrap();
        for post in conv["posts"].as_array().into_iter().flatten() {
            for f in post["files"].as_array().into_iter().flatten() {
                if let Some(name) = f["name"].as_str().filter(|n| n.len() >= 6) {
                    file_names.push(name.to_owned());
                }
            }
        }
    }
    assert!(!file_names.is_empty(), "the demo org has attachments");
    let all = logs.contents();
    let mut secrets: Vec<(&str, String)> = vec![
        ("message canary", canary.clone()),
        ("message canary (hex)", hex(&canary)),
        ("bad personal token", canary_token.clone()),
        ("personal access token", pat.clone()),
        ("session cookie", session_cookie),
        ("OAuth session cookie", session2_cookie),
        ("CSRF token", alice.csrf.clone()),
        ("CSRF token (OAuth session)", alice2.csrf.clone()),
        ("OAuth client secret", client_secret),
        ("OAuth access token", oauth_access),
        ("OAuth refresh token", oauth_refresh),
        ("OAuth authorization code", code),
    ];
    secrets.extend(file_names.into_iter().map(|n| ("attachment file name", n)));
    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        if secret.is_empty() {
            leaks.push(format!("{what}: not captured by the test"));
            continue;
        }
        let hits = lines_with(&all, secret);
        if !hits.is_empty() {
            leaks.push(format!("{what} in {} line(s), e.g. {:?}", hits.len(), hits));
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets or message text in the logs:\n{}",
        leaks.join("\n")
    );
}

/// Spawn the real binary with `serve`, wait until ready, stop it, return (exit ok?, stderr).
async fn run_serve(config: &str, env_log: Option<&str>) -> (bool, String) {
    let dir = support::temp_dir("loglevel");
    let cfg = dir.join("threaddesk.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_threaddesk"));
    cmd.arg("--config")
        .arg(&cfg)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mattermost-url",
            "http://127.0.0.1:9",
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("THREADDESK_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(v) = env_log {
        cmd.env("THREADDESK_LOG", v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let ready = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = stdout.next_line().await {
            if line.contains("ThreadDesk ready at") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if ready {
        child.start_kill().unwrap();
    }
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut err = String::new();
    stderr.read_to_string(&mut err).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (ready || status.success(), err)
}

#[tokio::test]
async fn threaddesk_log_env_overrides_the_config_file_level() {
    // Opening a fresh store logs its migrations at info, before the ready line: visible at
    // `debug`, hidden at `error`.
    let file = "log = \"error\"\nsign_in_methods = [\"token\"]\n";
    let (ok, quiet) = run_serve(file, None).await;
    assert!(ok, "serve did not start: {quiet}");
    assert!(
        !quiet.contains("applied migration"),
        "config level `error` hides info lines: {quiet}"
    );
    let (ok, loud) = run_serve(file, Some("debug")).await;
    assert!(ok, "serve did not start: {loud}");
    assert!(
        loud.contains("applied migration"),
        "THREADDESK_LOG=debug wins over the file's `error`: {loud}"
    );
    // And the file's level applies when the variable is absent.
    let (ok, from_file) = run_serve("log = \"info\"\nsign_in_methods = [\"token\"]\n", None).await;
    assert!(ok, "serve did not start: {from_file}");
    assert!(from_file.contains("applied migration"), "{from_file}");
    // A bad filter is refused at start, naming the variable.
    let (ok, bad) = run_serve(file, Some("threaddesk=[[[")).await;
    assert!(!ok, "a bad THREADDESK_LOG must stop the start");
    assert!(bad.contains("THREADDESK_LOG"), "{bad}");
}

/// Log injection (ASVS 16.4.1): request values that reach ThreadDesk's logging paths (the
/// OAuth callback's `error`, `code` and `state`, item keys and actions, query strings, form
/// fields, cookies, headers, media ids) carry a newline followed by a forged log line, a
/// carriage return and ANSI escapes. No captured line may start with the forged line, and no
/// carriage return or escape character may reach the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_values_cannot_forge_or_colour_log_lines() {
    let logs = capture();
    let forged = "1999-09-09T09:09:09.000000Z  INFO threaddesk: FORGED";
    let payload = format!("x\n{forged}\r\u{1b}[31mred\u{1b}[0m");
    let enc: String = url::form_urlencoded::byte_serialize(payload.as_bytes()).collect();
    let stack = Stack::start().await.unwrap();
    let mut alice = stack.sign_in("alice").await.unwrap();
    alice.wait_items(1).await.unwrap();
    let mut anon = Session::new(&stack.url);
    for path in [
        format!("/auth/oauth/callback?error={enc}&error_description={enc}"),
        format!("/auth/oauth/callback?code={enc}&state={enc}"),
        format!("/signin?error={enc}"),
    ] {
        let r = anon.get(&path).await.unwrap();
        assert!(r.status().as_u16() < 500, "{path}: {}", r.status());
    }
    let pre = anon.pre_cookie().await.unwrap();
    let r = anon
        .post_form(
            "/auth/token",
            &[("token", payload.as_str()), ("csrf", &pre)],
        )
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    for path in [
        format!("/items/{enc}"),
        format!("/api/v1/items/{enc}"),
        format!("/api/v1/items?q={enc}&filter={enc}&team={enc}&cursor={enc}"),
        format!("/media/files/{enc}"),
        format!("/media/avatar/{enc}"),
        format!("/no/such/{enc}"),
    ] {
        let r = alice.get(&path).await.unwrap();
        assert!(r.status().as_u16() < 500, "{path}: {}", r.status());
    }
    let csrf = alice.csrf.clone();
    for (path, form) in [
        (format!("/items/{enc}/done"), vec![("csrf", csrf.as_str())]),
        (
            "/me/sessions/end".to_owned(),
            vec![("csrf", csrf.as_str()), ("session", payload.as_str())],
        ),
    ] {
        let r = alice.post_form(&path, &form).await.unwrap();
        assert!(r.status().as_u16() < 500, "{path}: {}", r.status());
    }
    let r = alice
        .post_json(
            &format!("/api/v1/items/{enc}/{enc}"),
            &json!({"message": payload, "emoji": payload}),
        )
        .await
        .unwrap();
    assert!(r.status().as_u16() < 500);
    // Headers: a cookie value and forwarded-for (header values cannot hold a newline).
    let r = support::http()
        .get(format!("{}/", stack.url))
        .header("cookie", "td_session=\u{1b}[31mred")
        .header("x-forwarded-for", "\u{1b}[31m1.2.3.4")
        .send()
        .await;
    if let Ok(r) = r {
        assert!(r.status().as_u16() < 500);
    }

    let text = logs.contents();
    let forged_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("1999-09-09"))
        .collect();
    assert!(
        forged_lines.is_empty(),
        "forged log lines: {forged_lines:?}"
    );
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.contains('\r') || l.contains('\u{1b}'))
        .take(5)
        .collect();
    assert!(bad.is_empty(), "control characters in the log: {bad:?}");
    assert!(
        text.contains("oauth sign-in refused by Mattermost"),
        "the callback's error path was logged (and captured)"
    );
}
