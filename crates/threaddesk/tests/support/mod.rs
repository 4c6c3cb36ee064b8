//! Test harness: mmsim (the `demo` organisation) + ThreadDesk on loopback, and a small
//! cookie-aware HTTP session for the web routes.
#![allow(dead_code)]

pub mod browser;
pub mod freeze;
pub mod mm;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::header::{COOKIE, HeaderMap, SET_COOKIE};
use serde_json::Value;
use threaddesk::config::{self, Config};

/// mmsim + ThreadDesk.
pub struct Stack {
    pub sim: mmsim::Running,
    pub app: threaddesk::app::App,
    pub url: String,
    pub data_dir: PathBuf,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.app.stop();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A fresh temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "td-test-{tag}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

impl Stack {
    /// Start both, with ThreadDesk's OAuth app registered in mmsim.
    pub async fn start() -> Result<Self> {
        Self::start_with(mmsim::SimConfig::default(), None).await
    }

    pub async fn start_with(
        sim_config: mmsim::SimConfig,
        data_dir: Option<PathBuf>,
    ) -> Result<Self> {
        Self::start_opts(StackOptions {
            sim_config,
            data_dir,
            ..StackOptions::default()
        })
        .await
    }

    /// Start with every knob: simulator settings, data dir, clock, config changes.
    pub async fn start_opts(opts: StackOptions) -> Result<Self> {
        install_crypto();
        let sim = mmsim::start(opts.sim_config, 0).await?;
        let data_dir = opts.data_dir.unwrap_or_else(|| temp_dir("stack"));
        let (app, url) = start_app(&sim, &data_dir, opts.clock, opts.configure).await?;
        Ok(Self {
            sim,
            app,
            url,
            data_dir,
        })
    }

    /// Stop this ThreadDesk, delete its data directory entirely, and start a fresh one (new
    /// data dir, new port, new OAuth registration) against the SAME simulator — "reinstall".
    pub async fn restart_fresh(&mut self, configure: Option<ConfigureFn>) -> Result<()> {
        self.app.stop();
        let old = std::mem::replace(&mut self.app.server, tokio::spawn(async { Ok(()) }));
        let _ = tokio::time::timeout(Duration::from_secs(10), old).await;
        std::fs::remove_dir_all(&self.data_dir)?;
        self.data_dir = temp_dir("stack");
        let (app, url) = start_app(&self.sim, &self.data_dir, None, configure).await?;
        self.app = app;
        self.url = url;
        Ok(())
    }

    pub fn driver(&self) -> mmsim::driver::Driver {
        mmsim::driver::Driver::new(&self.sim.sim)
    }

    /// A Mattermost session token for a seeded user (password login, research §2.3).
    pub async fn mm_token(&self, username: &str) -> Result<String> {
        let r = http()
            .post(format!("{}/api/v4/users/login", self.sim.url))
            .json(
                &serde_json::json!({"login_id": username, "password": mmsim::seed::DEMO_PASSWORD}),
            )
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("login of {username} failed: {}", r.status());
        }
        Ok(r.headers()
            .get("token")
            .context("no Token header")?
            .to_str()?
            .to_owned())
    }

    /// GET a Mattermost REST path (`/api/v4/...`) on the simulator with `token`.
    pub async fn mm_get(&self, path: &str, token: &str) -> Result<(u16, Value)> {
        let r = http()
            .get(format!("{}{path}", self.sim.url))
            .bearer_auth(token)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Whether Mattermost has `post_id` among the saved posts (`flagged_post` preferences) of
    /// the user of `token` (`user_id`).
    pub async fn mm_saved(&self, user_id: &str, token: &str, post_id: &str) -> Result<bool> {
        let (status, prefs) = self
            .mm_get(
                &format!("/api/v4/users/{user_id}/preferences/flagged_post"),
                token,
            )
            .await?;
        if status != 200 && status != 404 {
            bail!("flagged_post preferences: HTTP {status}");
        }
        Ok(prefs.as_array().is_some_and(|a| {
            a.iter()
                .any(|p| p["name"].as_str() == Some(post_id) && p["value"] == "true")
        }))
    }

    /// A thread item of `items` whose root was written by someone other than `username`:
    /// returns (item key, root author's user id) — the author can always reply in it.
    pub async fn thread_by_other(
        &self,
        items: &[Value],
        username: &str,
    ) -> Result<(String, String)> {
        let token = self.mm_token(username).await?;
        let me = self.driver().user_id(username).context("unknown user")?;
        for key in items.iter().filter_map(|i| i["key"].as_str()) {
            let Some(root) = key.strip_prefix("t_") else {
                continue;
            };
            let (status, post) = self
                .mm_get(&format!("/api/v4/posts/{root}"), &token)
                .await?;
            if status == 200
                && let Some(author) = post["user_id"].as_str()
                && author != me
            {
                return Ok((key.to_owned(), author.to_owned()));
            }
        }
        bail!("no thread started by someone other than {username}")
    }

    /// How many live posts of the thread `root` (in mmsim) carry exactly `message`.
    pub async fn count_in_thread(&self, root: &str, token: &str, message: &str) -> Result<usize> {
        let (status, thread) = self
            .mm_get(&format!("/api/v4/posts/{root}/thread"), token)
            .await?;
        if status != 200 {
            bail!("GET thread {root}: {status}");
        }
        Ok(thread["posts"].as_object().map_or(0, |posts| {
            posts.values().filter(|p| p["message"] == message).count()
        }))
    }

    /// Wait until `message` is in the thread exactly once (fails at once on a duplicate).
    pub async fn wait_posted_once(&self, root: &str, token: &str, message: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match self.count_in_thread(root, token, message).await? {
                1 => return Ok(()),
                0 if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                0 => bail!("{message:?} never reached the thread {root}"),
                n => bail!("{message:?} was posted {n} times"),
            }
        }
    }

    /// Sign `username` in with a token through the personal-token form.
    pub async fn sign_in(&self, username: &str) -> Result<Session> {
        let token = self.mm_token(username).await?;
        self.sign_in_with_token(&token).await
    }

    /// Sign in through the personal-token form with this Mattermost token.
    pub async fn sign_in_with_token(&self, token: &str) -> Result<Session> {
        let mut s = Session::new(&self.url);
        let pre = s.pre_cookie().await?;
        let r = s
            .post_form("/auth/token", &[("token", token), ("csrf", pre.as_str())])
            .await?;
        if r.status().as_u16() != 303 {
            bail!("token sign-in answered {}", r.status());
        }
        s.csrf = s.page_csrf("/settings").await?;
        Ok(s)
    }
}

/// A change applied to the test configuration before ThreadDesk starts.
pub type ConfigureFn = Box<dyn FnOnce(&mut Config) + Send>;

/// Options of [`Stack::start_opts`].
#[derive(Default)]
pub struct StackOptions {
    pub sim_config: mmsim::SimConfig,
    pub data_dir: Option<PathBuf>,
    pub clock: Option<threaddesk::web::Clock>,
    pub configure: Option<ConfigureFn>,
}

/// Start ThreadDesk (with an OAuth app registered in `sim`) on a fresh loopback port.
pub async fn start_app(
    sim: &mmsim::Running,
    data_dir: &std::path::Path,
    clock: Option<threaddesk::web::Clock>,
    configure: Option<ConfigureFn>,
) -> Result<(threaddesk::app::App, String)> {
    install_crypto();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let creds = sim.sim.register_oauth_app(mmsim::oauth::AppSpec {
        name: "ThreadDesk test".into(),
        callback_urls: vec![format!("{url}/auth/oauth/callback")],
        homepage: url.clone(),
        is_trusted: true,
        is_public: false,
    });
    let mut cfg = Config::load(None, std::iter::empty())?;
    cfg.set_mattermost_url(&sim.url)?;
    cfg.set_public_url(&url)?;
    cfg.set_data_dir(data_dir);
    cfg.oauth_client_id = Some(creds.client_id);
    cfg.oauth_client_secret = Some(config::Secret::new(creds.client_secret));
    if let Some(f) = configure {
        f(&mut cfg);
    }
    let clock = clock.unwrap_or_else(threaddesk::web::system_clock);
    let app = threaddesk::app::start(cfg, listener, clock).await?;
    Ok((app, url))
}

/// A clock that follows real time plus an offset the test can move forward (timeouts, expiry).
#[derive(Clone, Default)]
pub struct TestClock {
    offset_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl TestClock {
    pub fn clock(&self) -> threaddesk::web::Clock {
        let offset = std::sync::Arc::clone(&self.offset_ms);
        let real = threaddesk::web::system_clock();
        std::sync::Arc::new(move || real() + offset.load(std::sync::atomic::Ordering::SeqCst))
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).expect("duration");
        self.offset_ms
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn now(&self) -> i64 {
        (self.clock())()
    }
}

/// Poll `check` every 100 ms until it returns `Some`, or fail after `timeout` with `what`.
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A reqwest client that never follows redirects and keeps no cookies (the tests do).
/// The key of the first thread (`t_…`) among items as `GET /api/v1/items` lists them.
///
/// # Panics
/// If there is none.
pub fn first_thread(items: &[Value]) -> String {
    items
        .iter()
        .filter_map(|i| i["key"].as_str())
        .find(|k| k.starts_with("t_"))
        .expect("a thread among the items")
        .to_owned()
}

pub fn http() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A browser-like session: cookies kept by hand.
pub struct Session {
    pub base: String,
    pub client: reqwest::Client,
    pub cookies: Vec<(String, String)>,
    pub csrf: String,
    /// Every `Set-Cookie` value this session ever received (cookie-attribute audits).
    pub set_cookies_seen: Vec<String>,
}

impl Session {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: http(),
            cookies: Vec::new(),
            csrf: String::new(),
            set_cookies_seen: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn take_cookies(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            self.set_cookies_seen.push(v.to_owned());
            let first = v.split(';').next().unwrap_or_default();
            let Some((k, val)) = first.split_once('=') else {
                continue;
            };
            self.cookies.retain(|(name, _)| name != k);
            if !val.is_empty() && !v.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), val.to_owned()));
            }
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub async fn get(&mut self, path: &str) -> Result<reqwest::Response> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await?;
        self.take_cookies(r.headers());
        Ok(r)
    }

    pub async fn post_form(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<reqwest::Response> {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await?;
        self.take_cookies(r.headers());
        Ok(r)
    }

    /// Replies to item `key` as the page does (`POST /api/v1/items/{key}/reply`).
    pub async fn reply(&mut self, key: &str, message: &str) -> Result<reqwest::Response> {
        let body = serde_json::json!({ "message": message });
        self.post_json(&format!("/api/v1/items/{key}/reply"), &body)
            .await
    }

    /// POST JSON with the session's CSRF header.
    pub async fn post_json(&mut self, path: &str, body: &Value) -> Result<reqwest::Response> {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header("x-csrf-token", self.csrf.clone())
            .json(body)
            .send()
            .await?;
        self.take_cookies(r.headers());
        Ok(r)
    }

    /// `DELETE` with the session and its CSRF header.
    pub async fn delete(&mut self, path: &str) -> Result<reqwest::Response> {
        let r = self
            .client
            .delete(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header("x-csrf-token", self.csrf.clone())
            .send()
            .await?;
        self.take_cookies(r.headers());
        Ok(r)
    }

    /// Sign in through the real OAuth flow (mmsim auto-approves its demo user, `alice`).
    /// Returns the authorize URL ThreadDesk redirected to and the callback URL mmsim sent back.
    pub async fn oauth_sign_in(&mut self) -> Result<(url::Url, String)> {
        let (authorize, callback) = self.oauth_until_callback().await?;
        let r = self.get_absolute(&callback).await?;
        if r.status().as_u16() != 303 {
            bail!("oauth callback answered {}", r.status());
        }
        self.csrf = self.page_csrf("/settings").await?;
        Ok((authorize, callback))
    }

    /// Run the OAuth flow up to (not including) the callback: returns the authorize URL and
    /// the callback URL with `code` and `state`.
    pub async fn oauth_until_callback(&mut self) -> Result<(url::Url, String)> {
        let r = self.get("/auth/oauth/start").await?;
        if !r.status().is_redirection() {
            bail!("/auth/oauth/start answered {}", r.status());
        }
        let authorize = r.headers()["location"].to_str()?.to_owned();
        let r = self.client.get(&authorize).send().await?;
        if !r.status().is_redirection() {
            bail!("authorize answered {}", r.status());
        }
        let callback = r.headers()["location"].to_str()?.to_owned();
        Ok((url::Url::parse(&authorize)?, callback))
    }

    /// GET an absolute URL on this ThreadDesk with the session's cookies.
    pub async fn get_absolute(&mut self, url: &str) -> Result<reqwest::Response> {
        let r = self
            .client
            .get(url)
            .header(COOKIE, self.cookie_header())
            .send()
            .await?;
        self.take_cookies(r.headers());
        Ok(r)
    }

    /// The pre-sign-in cookie (from the sign-in page).
    pub async fn pre_cookie(&mut self) -> Result<String> {
        let r = self.get("/signin").await?;
        if !r.status().is_success() {
            bail!("/signin answered {}", r.status());
        }
        self.cookie("td_pre")
            .map(str::to_owned)
            .context("no td_pre cookie")
    }

    /// The CSRF token of a page (`<meta name="csrf-token">`).
    pub async fn page_csrf(&mut self, path: &str) -> Result<String> {
        let html = self.get(path).await?.text().await?;
        let marker = "name=\"csrf-token\" content=\"";
        let start = html.find(marker).context("no csrf meta")? + marker.len();
        let end = html[start..].find('"').context("bad csrf meta")? + start;
        Ok(html[start..end].to_owned())
    }

    /// GET JSON.
    pub async fn json(&mut self, path: &str) -> Result<(u16, Value)> {
        let r = self.get(path).await?;
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// Wait until the user's cache has settled after the initial sync: its item count (all +
    /// snoozed + done) non-zero and unchanged over ten polls 100 ms apart. Returns the count.
    pub async fn wait_cache_settled(&mut self, timeout: Duration) -> Result<i64> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (mut last, mut same) = (-1, 0);
        loop {
            let (_, v) = self.json("/api/v1/items?limit=1").await?;
            let c = &v["counts"];
            let n = ["all", "snoozed", "done"]
                .iter()
                .map(|k| c[k].as_i64().unwrap_or(0))
                .sum::<i64>();
            (last, same) = if n == last { (n, same + 1) } else { (n, 0) };
            if n > 0 && same >= 10 {
                return Ok(n);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the cache did not settle in {timeout:?} ({n} items)"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until the queue has at least `n` items (initial sync done).
    pub async fn wait_items(&mut self, n: usize) -> Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (status, v) = self.json("/api/v1/items?limit=200").await?;
            if status == 200 {
                let items = v["items"].as_array().cloned().unwrap_or_default();
                if items.len() >= n {
                    return Ok(items);
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("queue did not reach {n} items (status {status}: {v})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The real `threaddesk serve` binary as a child process, against an in-process mmsim.
pub struct ServeProcess {
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:<port>` (also its `public_url`).
    pub url: String,
    /// Everything the process wrote to stderr so far.
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
    ready: tokio::sync::watch::Receiver<bool>,
}

/// A free loopback port (bound and released: the child binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Register ThreadDesk's OAuth app in `sim` for a ThreadDesk served at `url`.
pub fn register_oauth(sim: &mmsim::Running, url: &str) -> mmsim::oauth::AppCredentials {
    sim.sim.register_oauth_app(mmsim::oauth::AppSpec {
        name: "ThreadDesk test".into(),
        callback_urls: vec![format!("{url}/auth/oauth/callback")],
        homepage: url.to_owned(),
        is_trusted: true,
        is_public: false,
    })
}

impl ServeProcess {
    /// Start `[wrapper…] threaddesk serve` on `port` with `data_dir`, the OAuth app `app` and
    /// the extra environment `env`. Returns at once (see [`ServeProcess::wait_ready`]).
    pub fn spawn(
        sim: &mmsim::Running,
        data_dir: &std::path::Path,
        port: u16,
        app: &mmsim::oauth::AppCredentials,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let url = format!("http://127.0.0.1:{port}");
        let bin = env!("CARGO_BIN_EXE_threaddesk");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = tokio::process::Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => tokio::process::Command::new(bin),
        };
        cmd.args(["serve", "--mattermost-url", &sim.url, "--public-url", &url])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("THREADDESK_LOG")
            .env_remove("THREADDESK_FAILPOINT")
            .env("THREADDESK_OAUTH_CLIENT_ID", &app.client_id)
            .env("THREADDESK_OAUTH_CLIENT_SECRET", &app.client_secret)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("spawning threaddesk serve")?;
        let (tx, ready) = tokio::sync::watch::channel(false);
        let mut out = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                if line.contains("ThreadDesk ready at") {
                    let _ = tx.send(true);
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&stderr);
        let mut err = tokio::io::BufReader::new(child.stderr.take().context("stderr")?).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err.next_line().await {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        Ok(Self {
            child,
            url,
            stderr,
            ready,
        })
    }

    /// Wait until the server says it is ready (fails if it exits first).
    pub async fn wait_ready(&mut self) -> Result<()> {
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(30), self.ready.wait_for(|r| *r)).await,
            Ok(Ok(_))
        );
        if !ok {
            bail!(
                "threaddesk serve not ready; stderr:\n{}",
                self.stderr_text()
            );
        }
        Ok(())
    }

    /// Wait until stderr contains `needle`.
    pub async fn wait_stderr(&self, needle: &str) -> Result<()> {
        poll(Duration::from_secs(30), needle, || async {
            self.stderr_text().contains(needle).then_some(())
        })
        .await
        .with_context(|| format!("stderr:\n{}", self.stderr_text()))
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `kill -9` and reap.
    pub async fn kill9(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
