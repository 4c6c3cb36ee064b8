//! Security promises over real loopback HTTP: no outbound traffic but the configured
//! Mattermost (T-21), the CSP on every route of the route table, tokens encrypted at rest
//! (T-22), the OAuth client's state/PKCE/redirect rules (T-17), and the session lifecycle:
//! rotation at sign-in, idle and absolute timeouts (T-18).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::ErrorKind;
use std::time::Duration;

use serde_json::json;
use support::{Session, Stack, StackOptions, TestClock};
use threaddesk::account;
use threaddesk::privacy::cipher::TokenCipher;
use threaddesk::store::UserId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback listener that must never be connected to. Not accepting: a connection would wait
/// in the kernel backlog, where [`Tripwire::connections`] finds it without any sleep.
struct Tripwire {
    listener: std::net::TcpListener,
    url: String,
}

impl Tripwire {
    fn new() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Self { listener, url }
    }

    fn connections(&self) -> usize {
        let mut n = 0;
        loop {
            match self.listener.accept() {
                Ok(_) => n += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
                Err(e) => panic!("tripwire: {e}"),
            }
        }
    }
}

/// A fake "Mattermost" that answers every request with a redirect to `to`.
async fn redirector(to: String) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let to = to.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {to}/api/v4/files/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn mattermost_client_refuses_foreign_origins_without_connecting() {
    support::install_crypto();
    let trip = Tripwire::new();
    let mm = redirector(trip.url.clone()).await;
    let client = mattermost::Client::new(mm.clone())
        .unwrap()
        .with_token("tok");
    // A foreign URL given directly: refused before any request.
    for foreign in [
        format!("{}/api/v4/files/x", trip.url),
        "http://example.invalid/x".to_owned(),
        format!("{}@{}/api/v4/x", mm, trip.url.trim_start_matches("http://")),
    ] {
        let err = client.get_url_bytes(&foreign).await.unwrap_err();
        assert!(
            matches!(err, mattermost::Error::ForeignOrigin { .. }),
            "{foreign}: {err:?}"
        );
    }
    // The configured server redirecting elsewhere: the redirect is not followed.
    let err = client
        .get_url_bytes(&format!("{mm}/api/v4/files/abc"))
        .await
        .unwrap_err();
    assert!(err.status() != Some(200), "{err:?}");
    assert!(client.get_me().await.is_err());
    assert_eq!(trip.connections(), 0, "no connection to a foreign origin");
}

#[tokio::test]
async fn external_images_and_links_in_messages_cause_no_outbound_request() {
    let trip = Tripwire::new();
    let stack = Stack::start().await.unwrap();
    let mut alice = stack.sign_in("alice").await.unwrap();
    alice.wait_items(1).await.unwrap();
    let t = &trip.url;
    let message = format!(
        "look ![chart]({t}/chart.png) and <{t}/page> and [site]({t}/x) \
         ![ref][r]\n\n[r]: {t}/ref.png\n\n{t}/bare.png"
    );
    stack.driver().dm("bob", "alice", &message).unwrap();
    // Find the DM item through ThreadDesk's own search, then render it (API and page).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let key = loop {
        let (_, v) = alice.json("/api/v1/items?q=chart").await.unwrap();
        if let Some(k) = v["items"][0]["key"].as_str() {
            break k.to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "DM never synced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, item) = alice.json(&format!("/api/v1/items/{key}")).await.unwrap();
    assert_eq!(status, 200);
    let html = item["posts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["html"].as_str())
        .find(|h| h.contains("chart"))
        .unwrap()
        .to_owned();
    assert!(
        !html.contains("<img"),
        "external image rendered as <img>: {html}"
    );
    for path in ["chart.png", "ref.png", "page", "x"] {
        assert!(
            html.contains(&format!("<a href=\"{t}/{path}\"")),
            "{path} shown as a link: {html}"
        );
    }
    let page = alice
        .get(&format!("/items/{key}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains(&format!("src=\"{t}")), "no external src");
    assert_eq!(
        trip.connections(),
        0,
        "ThreadDesk fetched an external URL (link preview / image)"
    );
}

/// Every route of `src/web/mod.rs` (read from the source, so a new route is covered at once):
/// (method, path template).
fn route_table() -> Vec<(String, String)> {
    let src = include_str!("../src/web/mod.rs");
    let mut out = Vec::new();
    // (`.route("/path", method(…))`, on one line or as rustfmt breaks a long one.)
    for part in src.split(".route(").skip(1) {
        let Some(part) = part.trim_start().strip_prefix('"') else {
            continue;
        };
        let Some((path, rest)) = part.split_once('"') else {
            continue;
        };
        let rest = rest.trim_start_matches(',').trim_start();
        let method = rest.split('(').next().unwrap_or_default().to_owned();
        out.push((method, path.to_owned()));
    }
    assert!(out.len() >= 20, "route table parsed: {out:?}");
    assert_eq!(
        out.len(),
        src.matches(".route(").count(),
        "every route parsed: {out:?}"
    );
    out
}

fn assert_strict_csp(r: &reqwest::Response, what: &str) {
    assert!(r.status().as_u16() < 500, "{what}: {}", r.status());
    let csp = r
        .headers()
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"))
        .to_str()
        .unwrap()
        .to_owned();
    for needed in [
        "default-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(needed), "{what}: {needed} missing in {csp}");
    }
    for banned in [
        "http:",
        "https:",
        "ws:",
        "wss:",
        "*",
        "unsafe-inline",
        "unsafe-eval",
        "unsafe-hashes",
    ] {
        assert!(!csp.contains(banned), "{what}: {banned} in {csp}");
    }
    // Every fetch directive lists 'self' (plus data: for images, a nonce for scripts) only.
    for directive in csp.split(';') {
        for source in directive.split_whitespace().skip(1) {
            assert!(
                source == "'self'"
                    || source == "'none'"
                    || source == "data:"
                    || source.starts_with("'nonce-"),
                "{what}: external source {source:?} in {csp}"
            );
        }
    }
}

#[tokio::test]
async fn csp_forbids_external_origins_on_every_route() {
    let stack = Stack::start().await.unwrap();
    let mut alice = stack.sign_in("alice").await.unwrap();
    let items = alice.wait_items(1).await.unwrap();
    let key = items[0]["key"].as_str().unwrap().to_owned();
    let uid = stack.driver().user_id("alice").unwrap();
    let fill = |p: &str| {
        p.replace("{key}", &key)
            .replace("{action}", "read")
            .replace("{user_id}", &uid)
            .replace("{file_id}", "aaaaaaaaaaaaaaaaaaaaaaaaaa")
            .replace("{variant}", "thumbnail")
            .replace("{emoji_id}", "aaaaaaaaaaaaaaaaaaaaaaaaaa")
            .replace("{name}", "app.js")
    };
    let mut routes = route_table();
    routes.push(("get".into(), "/no/such/page".into()));
    routes.push(("get".into(), "/api/v1/items?filter=bogus".into()));
    routes.push(("get".into(), "/auth/oauth/callback?code=x&state=y".into()));
    let mut checked = 0;
    for signed_in in [true, false] {
        let mut anon = Session::new(&stack.url);
        let s: &mut Session = if signed_in { &mut alice } else { &mut anon };
        for (method, path) in &routes {
            let path = fill(path);
            let what = format!("{method} {path} (signed in: {signed_in})");
            let r = match method.as_str() {
                "get" => s.get(&path).await.unwrap(),
                "post" if path.starts_with("/api/") => {
                    s.post_json(&path, &json!({})).await.unwrap()
                }
                // Form posts without their CSRF token: refused (403) or redirected, never run.
                "post" => s.post_form(&path, &[("csrf", "x")]).await.unwrap(),
                "delete" => s.delete(&path).await.unwrap(),
                other => panic!("{what}: unexpected method {other}"),
            };
            assert_strict_csp(&r, &what);
            checked += 1;
        }
    }
    assert!(checked >= 50);
    // Alice's session survived (every state-changing form above was refused).
    assert_eq!(alice.json("/api/v1/items").await.unwrap().0, 200);
}

fn file_bytes(data_dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        if let Ok(b) = std::fs::read(data_dir.join(format!("threaddesk.db{suffix}"))) {
            all.extend_from_slice(&b);
        }
    }
    assert!(!all.is_empty());
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn tokens_and_session_ids_are_not_stored_in_plain_text() {
    let stack = Stack::start().await.unwrap();
    // Bob signs in with a personal token, alice with OAuth.
    let pat = stack.mm_token("bob").await.unwrap();
    let mut bob = stack.sign_in_with_token(&pat).await.unwrap();
    let mut alice = Session::new(&stack.url);
    alice.oauth_sign_in().await.unwrap();
    alice.wait_items(1).await.unwrap();
    bob.wait_items(1).await.unwrap();
    let d = stack.driver();
    let alice_id = UserId::parse(&d.user_id("alice").unwrap()).unwrap();
    let bob_id = UserId::parse(&d.user_id("bob").unwrap()).unwrap();
    let inner = stack.app.state.inner();
    let creds =
        serde_json::to_value(account::load(&inner.store, &inner.cipher, &alice_id).unwrap())
            .unwrap();
    let access = creds["access_token"].as_str().unwrap().to_owned();
    let refresh = creds["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(creds["method"], "o_auth");
    assert!(!refresh.is_empty(), "mmsim issues refresh tokens");
    let secrets = [
        ("personal access token", pat.clone()),
        ("OAuth access token", access),
        ("OAuth refresh token", refresh),
        (
            "alice's session id",
            alice.cookie("td_session").unwrap().to_owned(),
        ),
        (
            "bob's session id",
            bob.cookie("td_session").unwrap().to_owned(),
        ),
        (
            "OAuth client secret",
            stack
                .app
                .state
                .config()
                .oauth_client_secret
                .as_ref()
                .unwrap()
                .expose()
                .to_owned(),
        ),
    ];
    let bytes = file_bytes(&stack.data_dir);
    for (what, s) in &secrets {
        assert!(!contains(&bytes, s), "{what} found in the database files");
    }
    // The key is outside the database, mode 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = stack.data_dir.join("key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key file mode");
        assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    }
    // A wrong key: loading credentials fails cleanly (an error, no panic, nothing decrypted).
    let other_key = support::temp_dir("wrongkey").join("key");
    let wrong = TokenCipher::load_or_create(&other_key).unwrap();
    for u in [&alice_id, &bob_id] {
        let e = account::load(&inner.store, &wrong, u).unwrap_err();
        assert!(
            matches!(e, account::AccountError::Cipher(_)),
            "{u:?}: {e:?}"
        );
    }
    // A ciphertext moved to another user's row does not decrypt (user id bound as AAD).
    let alice_blob = inner
        .store
        .for_user(&alice_id)
        .token(account::CREDENTIALS_KIND)
        .unwrap()
        .unwrap();
    inner
        .store
        .for_user(&bob_id)
        .put_token(account::CREDENTIALS_KIND, &alice_blob, 1)
        .unwrap();
    assert!(matches!(
        account::load(&inner.store, &inner.cipher, &bob_id),
        Err(account::AccountError::Cipher(_))
    ));
    // Restarting on a copy of this data dir with the wrong key still serves (users sign in
    // again); it does not crash.
    let copy = support::temp_dir("copy");
    for f in ["threaddesk.db", "threaddesk.db-wal"] {
        let src = stack.data_dir.join(f);
        if src.exists() {
            std::fs::copy(&src, copy.join(f)).unwrap();
        }
    }
    let (app, url) = support::start_app(
        &stack.sim,
        &copy,
        None,
        Some(Box::new({
            let k = other_key.clone();
            move |c| c.encryption_key_file = Some(k)
        })),
    )
    .await
    .unwrap();
    let r = support::http()
        .get(format!("{url}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "serves despite undecryptable tokens"
    );
    // The sessions copied with the database lead to the sign-in page, not to a cached queue
    // that can never sync again.
    let mut again = Session::new(&url);
    again.cookies.clone_from(&alice.cookies);
    let r = again.get("/").await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        303,
        "undecryptable token: sign in again"
    );
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/signin")
    );
    drop(app);
    let _ = std::fs::remove_dir_all(&copy);
    let _ = std::fs::remove_dir_all(other_key.parent().unwrap());
}

fn query(u: &url::Url, k: &str) -> Option<String> {
    u.query_pairs()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.into_owned())
}

/// A callback answer that did NOT sign anyone in.
fn refused(r: &reqwest::Response, what: &str) {
    let status = r.status().as_u16();
    let set: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_ne!(status, 303, "{what}: redirected as if signed in");
    assert!(status < 500, "{what}: {status}");
    assert!(
        !set.iter()
            .any(|c| c.starts_with("td_session=") && !c.starts_with("td_session=;")),
        "{what}: a session cookie was set: {set:?}"
    );
}

#[tokio::test]
async fn oauth_state_is_single_use_browser_bound_expiring_with_pkce_s256() {
    let clock = TestClock::default();
    let stack = Stack::start_opts(StackOptions {
        clock: Some(clock.clock()),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    // The authorize redirect: code flow, exact redirect URI, state, PKCE S256.
    let mut a = Session::new(&stack.url);
    let (authorize, callback) = a.oauth_until_callback().await.unwrap();
    assert!(authorize.as_str().starts_with(&stack.sim.url));
    assert_eq!(authorize.path(), "/oauth/authorize");
    assert_eq!(query(&authorize, "response_type").as_deref(), Some("code"));
    assert_eq!(
        query(&authorize, "redirect_uri").unwrap(),
        format!("{}/auth/oauth/callback", stack.url)
    );
    let state = query(&authorize, "state").unwrap();
    assert!(state.len() >= 32, "state has >= 128 bits: {state}");
    assert_eq!(
        query(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let challenge = query(&authorize, "code_challenge").unwrap();
    assert_eq!(challenge.len(), 43, "base64url SHA-256: {challenge}");
    assert!(query(&authorize, "client_secret").is_none());
    // Another browser (its own td_pre) presenting A's callback: refused, and no session.
    let mut b = Session::new(&stack.url);
    b.pre_cookie().await.unwrap();
    let r = b.get_absolute(&callback).await.unwrap();
    refused(&r, "callback from another browser");
    // No binding cookie at all: refused.
    let mut c = Session::new(&stack.url);
    let (_, cb2) = c.oauth_until_callback().await.unwrap();
    let r = support::http().get(&cb2).send().await.unwrap();
    refused(&r, "callback without td_pre");
    // The right browser succeeds once; replaying the same callback URL is refused.
    let mut d = Session::new(&stack.url);
    let (_, cb3) = d.oauth_until_callback().await.unwrap();
    let r = d.get_absolute(&cb3).await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "first use signs in");
    let first_session = d.cookie("td_session").unwrap().to_owned();
    let mut replay = Session::new(&stack.url);
    replay.cookies = d.cookies.clone();
    replay.cookies.retain(|(k, _)| k != "td_session");
    let pre = d
        .set_cookies_seen
        .iter()
        .find_map(|c| c.strip_prefix("td_pre="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .unwrap();
    replay.cookies.push(("td_pre".into(), pre));
    let r = replay.get_absolute(&cb3).await.unwrap();
    refused(&r, "replayed callback");
    assert_eq!(d.json("/api/v1/items").await.unwrap().0, 200);
    assert_ne!(first_session, "");
    // Expiry: a state older than 10 minutes is refused.
    let mut e = Session::new(&stack.url);
    let (_, cb4) = e.oauth_until_callback().await.unwrap();
    clock.advance(Duration::from_secs(10 * 60 + 1));
    let r = e.get_absolute(&cb4).await.unwrap();
    refused(&r, "callback after 10 minutes");
    // Error and garbage callbacks never sign in either.
    for q in [
        "error=access_denied&state=x",
        "code=abc",
        "state=abc",
        "code=abc&state=abc",
    ] {
        let r = e.get(&format!("/auth/oauth/callback?{q}")).await.unwrap();
        refused(&r, q);
    }
}

async fn status_of(s: &mut Session) -> u16 {
    s.json("/api/v1/items").await.unwrap().0
}

#[tokio::test]
async fn session_id_rotates_at_sign_in_and_timeouts_are_enforced() {
    let clock = TestClock::default();
    let stack = Stack::start_opts(StackOptions {
        clock: Some(clock.clock()),
        configure: Some(Box::new(|c| {
            c.session_idle_timeout = Duration::from_secs(3600);
            c.session_absolute_timeout = Duration::from_secs(3 * 3600);
        })),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    // Fixation: a planted session id is not adopted; an existing valid one is not reused.
    let token = stack.mm_token("alice").await.unwrap();
    let mut s = Session::new(&stack.url);
    s.cookies
        .push(("td_session".into(), "planted-by-attacker".into()));
    let pre = s.pre_cookie().await.unwrap();
    let r = s
        .post_form("/auth/token", &[("token", &token), ("csrf", &pre)])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let first = s.cookie("td_session").unwrap().to_owned();
    assert_ne!(first, "planted-by-attacker");
    assert!(first.len() >= 43, "256-bit session id");
    // Signed in, /signin redirects; starting OAuth hands out a fresh binding cookie.
    s.get("/auth/oauth/start").await.unwrap();
    let pre = s.cookie("td_pre").unwrap().to_owned();
    let r = s
        .post_form("/auth/token", &[("token", &token), ("csrf", &pre)])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let second = s.cookie("td_session").unwrap().to_owned();
    assert_ne!(first, second, "re-authentication issues a new session id");
    let planted = support::http()
        .get(format!("{}/api/v1/items", stack.url))
        .header("cookie", "td_session=planted-by-attacker")
        .send()
        .await
        .unwrap();
    assert_eq!(planted.status().as_u16(), 401);

    // Idle timeout (1 h): activity every 50 min keeps the session alive...
    for _ in 0..2 {
        clock.advance(Duration::from_secs(50 * 60));
        assert_eq!(
            status_of(&mut s).await,
            200,
            "active session within the idle window"
        );
    }
    // ...until the absolute limit (3 h after sign-in), whatever the activity.
    clock.advance(Duration::from_secs(50 * 60));
    assert_eq!(status_of(&mut s).await, 200, "2h30 after sign-in, active");
    clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(status_of(&mut s).await, 401, "absolute timeout");
    // Idle: a fresh session left alone for more than an hour is dead.
    let mut t = stack.sign_in("alice").await.unwrap();
    assert_eq!(status_of(&mut t).await, 200);
    clock.advance(Duration::from_secs(3600 + 1));
    assert_eq!(status_of(&mut t).await, 401, "idle timeout");
}

/// `(handle, row html)` of each row of the settings page's sessions list.
fn session_rows(html: &str) -> Vec<(String, String)> {
    html.split("<tr data-session=\"")
        .skip(1)
        .map(|rest| {
            let handle = rest.split('"').next().unwrap().to_owned();
            let row = rest.split("</tr>").next().unwrap().to_owned();
            (handle, row)
        })
        .collect()
}

/// A session signed in with a personal token from a browser that says `user_agent`.
async fn sign_in_as_browser(stack: &Stack, username: &str, user_agent: &str) -> Session {
    let token = stack.mm_token(username).await.unwrap();
    let mut s = Session::new(&stack.url);
    s.client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
        .build()
        .unwrap();
    let pre = s.pre_cookie().await.unwrap();
    let r = s
        .post_form("/auth/token", &[("token", &token), ("csrf", &pre)])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    s.csrf = s.page_csrf("/settings").await.unwrap();
    s
}

/// ASVS 7.5.2: the settings page lists the user's own sessions (browser summary, times, "this
/// session") and ends one of them or all the others; another user's session can be neither
/// listed nor ended, whatever handle is sent.
#[tokio::test]
async fn sessions_list_shows_only_mine_and_ends_only_mine() {
    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";
    const EDGE: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 Edg/131.0 <b>injected</b>";
    let stack = Stack::start().await.unwrap();
    let mut a1 = sign_in_as_browser(&stack, "alice", FIREFOX).await;
    let mut a2 = sign_in_as_browser(&stack, "alice", IPHONE).await;
    let mut a3 = sign_in_as_browser(&stack, "alice", EDGE).await;
    let mut bob = sign_in_as_browser(&stack, "bob", FIREFOX).await;

    let html = a1.get("/settings").await.unwrap().text().await.unwrap();
    let rows = session_rows(&html);
    assert_eq!(rows.len(), 3, "alice's three sessions, not bob's: {rows:?}");
    let mine: Vec<&(String, String)> = rows
        .iter()
        .filter(|(_, r)| r.contains("(this session)"))
        .collect();
    assert_eq!(mine.len(), 1);
    assert!(mine[0].1.contains("Firefox on Linux"));
    assert!(rows.iter().any(|(_, r)| r.contains("Safari on iOS")));
    assert!(rows.iter().any(|(_, r)| r.contains("Edge on Windows")));
    assert!(
        !html.contains("injected"),
        "the raw User-Agent never reaches the page"
    );
    assert!(
        rows.iter()
            .all(|(h, r)| h.len() == 32 && r.contains("<time datetime="))
    );
    // No session id (nor anything derived from it verbatim) in the page.
    for s in [&a1, &a2, &a3, &bob] {
        assert!(!html.contains(s.cookie("td_session").unwrap()));
    }
    let handle_of = |rows: &[(String, String)], agent: &str| {
        rows.iter()
            .find(|(_, r)| r.contains(agent))
            .unwrap()
            .0
            .clone()
    };
    let iphone = handle_of(&rows, "Safari on iOS");

    // Bob's list holds only his session; his handles mean nothing to alice.
    let bob_html = bob.get("/settings").await.unwrap().text().await.unwrap();
    let bob_rows = session_rows(&bob_html);
    assert_eq!(bob_rows.len(), 1);
    assert!(
        bob_rows
            .iter()
            .all(|(h, _)| !rows.iter().any(|(m, _)| m == h))
    );
    let bob_handle = bob_rows[0].0.clone();
    let csrf = a1.csrf.clone();
    for bad in [bob_handle.as_str(), "0123456789abcdef0123456789abcdef"] {
        let r = a1
            .post_form("/me/sessions/end", &[("csrf", &csrf), ("session", bad)])
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "ending {bad}");
    }
    for bad in ["", "../x", "zz", &"a".repeat(5000)] {
        let r = a1
            .post_form("/me/sessions/end", &[("csrf", &csrf), ("session", bad)])
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "malformed {bad:.20}");
    }
    // Without the CSRF token (or cross-site), nothing ends.
    let r = a1
        .post_form("/me/sessions/end", &[("csrf", "x"), ("session", "others")])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = a1
        .client
        .post(format!("{}/me/sessions/end", stack.url))
        .header(
            "cookie",
            format!("td_session={}", a1.cookie("td_session").unwrap()),
        )
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", csrf.as_str()), ("session", "others")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Bob cannot end alice's session with her handle either.
    let bob_csrf = bob.csrf.clone();
    let r = bob
        .post_form(
            "/me/sessions/end",
            &[("csrf", &bob_csrf), ("session", &iphone)],
        )
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    for s in [&mut a1, &mut a2, &mut a3, &mut bob] {
        assert_eq!(
            s.json("/api/v1/items").await.unwrap().0,
            200,
            "nothing ended yet"
        );
    }

    // Alice ends her iPhone session: only it dies.
    let r = a1
        .post_form("/me/sessions/end", &[("csrf", &csrf), ("session", &iphone)])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(a2.json("/api/v1/items").await.unwrap().0, 401);
    assert_eq!(a1.json("/api/v1/items").await.unwrap().0, 200);
    assert_eq!(a3.json("/api/v1/items").await.unwrap().0, 200);
    let html = a1.get("/settings").await.unwrap().text().await.unwrap();
    assert_eq!(session_rows(&html).len(), 2);

    // "End all other sessions": a3 dies, a1 and bob live on.
    let r = a1
        .post_form(
            "/me/sessions/end",
            &[("csrf", &csrf), ("session", "others")],
        )
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(a3.json("/api/v1/items").await.unwrap().0, 401);
    assert_eq!(a1.json("/api/v1/items").await.unwrap().0, 200);
    assert_eq!(bob.json("/api/v1/items").await.unwrap().0, 200);
    let html = a1.get("/settings").await.unwrap().text().await.unwrap();
    let rows = session_rows(&html);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].1.contains("(this session)"));
    assert!(!html.contains("End all other sessions"));

    // Ending "this session" from the list signs this browser out.
    let r = a1
        .post_form(
            "/me/sessions/end",
            &[("csrf", &csrf), ("session", &rows[0].0)],
        )
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/signin");
    assert_eq!(a1.json("/api/v1/items").await.unwrap().0, 401);
    assert_eq!(bob.json("/api/v1/items").await.unwrap().0, 200);
}

// ---------------------------------------------------------------------------------------------
// T-21: the whole ThreadDesk process, traced by strace, connects to nothing but Mattermost.

/// The strace invocation: every `connect` and every addressed send of every thread; no
/// strings (message bodies) printed.
fn strace_wrapper(out: &std::path::Path) -> Vec<String> {
    [
        "strace",
        "-f",
        "-qq",
        "-e",
        "trace=connect,sendto,sendmsg,sendmmsg",
        "-e",
        "signal=none",
        "-s",
        "0",
        "-o",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([out.display().to_string()])
    .collect()
}

/// `(address, port)` of every IPv4/IPv6 destination in an strace log.
fn traced_destinations(log: &str) -> Vec<(String, u16)> {
    let between = |s: &str, start: &str, end: &str| -> Option<String> {
        let i = s.find(start)? + start.len();
        let j = s[i..].find(end)? + i;
        Some(s[i..j].to_owned())
    };
    log.lines()
        .filter(|l| l.contains("sa_family=AF_INET"))
        .map(|l| {
            let port = between(l, "sin_port=htons(", ")")
                .or_else(|| between(l, "sin6_port=htons(", ")"))
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let addr = between(l, "inet_addr(\"", "\"")
                .or_else(|| between(l, "inet_pton(AF_INET6, \"", "\""))
                .unwrap_or_else(|| l.to_owned());
            (addr, port)
        })
        .collect()
}

/// The traced `threaddesk` (strace's child); killed with the test if it fails.
struct Tracee(u32);

impl Tracee {
    async fn of(strace_pid: u32) -> Self {
        let path = format!("/proc/{strace_pid}/task/{strace_pid}/children");
        let pid = support::poll(Duration::from_secs(10), "strace's child", || {
            let path = path.clone();
            async move {
                std::fs::read_to_string(&path)
                    .ok()?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            }
        })
        .await
        .unwrap();
        Self(pid)
    }

    fn signal(&self, sig: &str) {
        let _ = std::process::Command::new("kill")
            .args([sig, &self.0.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        self.signal("-KILL");
    }
}

fn require_strace() {
    let ok = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "T-21 needs strace (Debian: apt-get install strace; .ci/run installs it)"
    );
}

/// Self-check: the same binary under the same tracer, told to connect elsewhere
/// (`threaddesk healthcheck --url <tripwire>`), IS seen connecting there.
#[tokio::test]
async fn egress_trace_detects_a_foreign_connection() {
    require_strace();
    let trip = Tripwire::new();
    let port = trip.listener.local_addr().unwrap().port();
    let dir = support::temp_dir("egress-self");
    let log = dir.join("strace.log");
    let mut argv = strace_wrapper(&log);
    argv.push(env!("CARGO_BIN_EXE_threaddesk").to_owned());
    let out = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .args(["healthcheck", "--url", &trip.url])
        .kill_on_drop(true)
        .output();
    // The tripwire never answers: the healthcheck waits; stop it once the connect is logged.
    let child = tokio::spawn(out);
    let seen = support::poll(Duration::from_secs(20), "the traced connect", || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            traced_destinations(&text)
                .contains(&("127.0.0.1".to_owned(), port))
                .then_some(())
        }
    })
    .await;
    child.abort();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    seen.unwrap_or_else(|e| panic!("{e}: strace log:\n{text}"));
    assert!(trip.connections() >= 1);
}

/// T-21: a realistic session — OAuth sign-in, queue, search, a conversation whose messages hold
/// external images and links (an IP tripwire and an outside host name), a reply, avatars and
/// files — while strace records every connect of every thread of the real `threaddesk serve`.
/// The only destination may be the configured Mattermost.
#[tokio::test]
async fn whole_process_connects_only_to_the_configured_mattermost() {
    require_strace();
    support::install_crypto();
    let trip = Tripwire::new();
    let t = trip.url.clone();
    let sim = mmsim::start(mmsim::SimConfig::default(), 0).await.unwrap();
    let sim_port = url::Url::parse(&sim.url).unwrap().port().unwrap();
    let port = support::free_port();
    let app = support::register_oauth(&sim, &format!("http://127.0.0.1:{port}"));
    let dir = support::temp_dir("egress");
    let log = dir.join("strace.log");
    let driver = mmsim::driver::Driver::new(&sim.sim);
    let message = format!(
        "egresscanary ![chart]({t}/chart.png) ![far](https://egress-canary.example/x.png) \
         <{t}/page> [site](https://egress-canary.example/) ![ref][r]\n\n[r]: {t}/ref.png\n\n\
         {t}/bare.png https://egress-canary.example/bare.png"
    );
    driver.dm("bob", "alice", &message).unwrap();

    let wrapper = strace_wrapper(&log);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let mut td =
        support::ServeProcess::spawn(&sim, &dir.join("data"), port, &app, &[], &wrapper).unwrap();
    let tracee = Tracee::of(td.child.id().unwrap()).await;
    td.wait_ready().await.unwrap();

    let mut alice = Session::new(&td.url);
    alice.oauth_sign_in().await.unwrap();
    let items = alice.wait_items(1).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let key = loop {
        let (_, v) = alice.json("/api/v1/items?q=egresscanary").await.unwrap();
        if let Some(k) = v["items"][0]["key"].as_str() {
            break k.to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "DM never synced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Pages and API of the queue and of several conversations; every file and avatar they show.
    let mut media = vec![format!("/media/avatar/{}", driver.user_id("bob").unwrap())];
    for k in
        std::iter::once(key.as_str()).chain(items.iter().take(8).filter_map(|i| i["key"].as_str()))
    {
        let page = alice
            .get(&format!("/items/{k}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!page.contains(&format!("src=\"{t}")) && !page.contains("src=\"https://egress"));
        let (status, item) = alice.json(&format!("/api/v1/items/{k}")).await.unwrap();
        assert_eq!(status, 200);
        let text = item.to_string();
        for part in text.split('"').filter(|s| s.starts_with("/media/")) {
            media.push(part.to_owned());
        }
    }
    media.sort();
    media.dedup();
    for m in media.iter().take(20) {
        let r = alice.get(m).await.unwrap();
        assert!(r.status().as_u16() < 500, "{m}: {}", r.status());
    }
    assert_eq!(alice.get("/").await.unwrap().status().as_u16(), 200);
    assert_eq!(
        alice
            .get("/?q=egresscanary")
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let r = alice.reply(&key, "replied under strace").await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let token = {
        let r = support::http()
            .post(format!("{}/api/v4/users/login", sim.url))
            .json(&json!({"login_id": "alice", "password": mmsim::seed::DEMO_PASSWORD}))
            .send()
            .await
            .unwrap();
        r.headers()["token"].to_str().unwrap().to_owned()
    };
    // The reply reached Mattermost (the outbox delivered it) before the server stops.
    let channel = key.strip_prefix("c_").expect("a DM item").to_owned();
    support::poll(Duration::from_secs(20), "the reply in Mattermost", || {
        let (url, token, channel) = (sim.url.clone(), token.clone(), channel.clone());
        async move {
            let text = support::http()
                .get(format!("{url}/api/v4/channels/{channel}/posts"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains("replied under strace").then_some(())
        }
    })
    .await
    .unwrap();
    drop(alice);
    // Stop: SIGTERM to the server (SIGKILL if it lingers), then make sure strace has flushed
    // and ended. Under load strace can keep waiting after its tracee is gone; SIGTERM makes it
    // flush and exit. The trace up to the server's end is complete either way.
    tracee.signal("-TERM");
    // Gone, or a zombie that only strace has yet to reap.
    let gone = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| {
            st.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    };
    let pid = tracee.0;
    if support::poll(Duration::from_secs(5), "the server's exit", || async move {
        gone(pid).then_some(())
    })
    .await
    .is_err()
    {
        tracee.signal("-KILL");
    }
    if tokio::time::timeout(Duration::from_secs(3), td.child.wait())
        .await
        .is_err()
    {
        let strace = td.child.id().unwrap_or_default().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &strace])
            .status();
        if tokio::time::timeout(Duration::from_secs(5), td.child.wait())
            .await
            .is_err()
        {
            td.kill9().await.unwrap();
        }
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let dests = traced_destinations(&text);
    let allowed = ("127.0.0.1".to_owned(), sim_port);
    assert!(
        dests.iter().filter(|d| **d == allowed).count() >= 2,
        "the trace saw ThreadDesk's own Mattermost connections (REST + WebSocket): {dests:?}"
    );
    let foreign: Vec<&(String, u16)> = dests.iter().filter(|d| **d != allowed).collect();
    assert!(
        foreign.is_empty(),
        "ThreadDesk connected elsewhere than Mattermost {allowed:?}: {foreign:?}\n{text}"
    );
    assert_eq!(trip.connections(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
