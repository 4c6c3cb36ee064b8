//! A small headless-Chromium driver over the Chrome DevTools Protocol, for the end-to-end tests.
//!
//! It launches Debian's `chromium` (installed by `.ci/run`) with a fresh profile and the flags
//! this closed network needs, attaches to one page, and offers the few verbs the tests use:
//! navigate, evaluate JavaScript, wait for a condition, press keys, type, take screenshots, and
//! report JavaScript dialogs (the XSS tests fail if any `alert` ever opens).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Browser {
    child: Child,
    ws: Ws,
    next_id: u64,
    session: String,
    events: VecDeque<Value>,
    dialogs: Vec<String>,
    profile: std::path::PathBuf,
}

/// Where the browser binary is: `CHROMIUM` overrides.
fn chromium_path() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// Whether a browser is installed (tests that need one fail loudly if not, except when
/// `THREADDESK_SKIP_BROWSER=1` is set on a developer machine without Chromium).
pub fn available() -> bool {
    std::process::Command::new(chromium_path())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Browser {
    pub async fn launch() -> Result<Self> {
        let profile = std::env::temp_dir().join(format!(
            "td-chromium-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&profile)?;
        let mut child = Command::new(chromium_path())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--window-size=1280,860",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("while starting chromium (install Debian's `chromium` package)")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let ws_url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split("DevTools listening on ").nth(1) {
                    return Ok::<_, anyhow::Error>(rest.trim().to_owned());
                }
            }
            bail!("chromium exited before printing its DevTools address")
        })
        .await
        .context("chromium did not start within 30 s")??;
        // Keep draining stderr so the browser never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await?;
        let mut b = Self {
            child,
            ws,
            next_id: 0,
            session: String::new(),
            events: VecDeque::new(),
            dialogs: Vec::new(),
            profile,
        };
        let target = b
            .send_raw(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or_else(|| anyhow!("no targetId"))?
            .to_owned();
        let attached = b
            .send_raw(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await?;
        b.session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no sessionId"))?
            .to_owned();
        b.call("Page.enable", json!({})).await?;
        b.call("Runtime.enable", json!({})).await?;
        Ok(b)
    }

    async fn send_raw(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::Text(msg.to_string().into())).await?;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .with_context(|| format!("no answer to {method} within 30 s"))?
                .ok_or_else(|| anyhow!("devtools connection closed"))??;
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text)?;
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    bail!("{method} failed: {err}");
                }
                return Ok(v["result"].clone());
            }
            self.note_event(v).await?;
        }
    }

    async fn note_event(&mut self, v: Value) -> Result<()> {
        if v["method"] == "Page.javascriptDialogOpening" {
            self.dialogs.push(
                v["params"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            // Dismiss it so the page goes on.
            let session = self.session.clone();
            self.next_id += 1;
            let msg = json!({"id": self.next_id, "sessionId": session,
                "method": "Page.handleJavaScriptDialog", "params": {"accept": false}});
            self.ws.send(Message::Text(msg.to_string().into())).await?;
        }
        self.events.push_back(v);
        if self.events.len() > 1000 {
            self.events.pop_front();
        }
        Ok(())
    }

    /// A DevTools call on the page.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let session = self.session.clone();
        self.send_raw(Some(&session), method, params).await
    }

    /// Navigate and wait for the load event.
    pub async fn goto(&mut self, url: &str) -> Result<()> {
        self.events.clear();
        self.call("Page.navigate", json!({"url": url})).await?;
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        )
        .await
    }

    /// Evaluate an expression (promises awaited) and return its JSON value.
    pub async fn eval(&mut self, expr: &str) -> Result<Value> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            bail!("script error in `{expr}`: {ex}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Poll `expr` until it is truthy.
    pub async fn wait_for(&mut self, expr: &str, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(v) = self.eval(&format!("!!({expr})")).await
                && v == json!(true)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                let url = self.eval("location.href").await.unwrap_or_default();
                bail!("timed out after {timeout:?} waiting for `{expr}` (at {url})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Press one key (`"j"`, `"Enter"`, `"Escape"`, `"/"`, `"?"`).
    pub async fn press(&mut self, key: &str) -> Result<()> {
        self.press_with(key, 0).await
    }

    /// Press a key with modifiers (CDP bits: Alt 1, Ctrl 2, Meta 4, Shift 8).
    pub async fn press_with(&mut self, key: &str, modifiers: u8) -> Result<()> {
        let (code, vk, text) = match key {
            "Enter" => ("Enter", 13, "\r"),
            "Escape" => ("Escape", 27, ""),
            "Tab" => ("Tab", 9, ""),
            "ArrowDown" => ("ArrowDown", 40, ""),
            "ArrowUp" => ("ArrowUp", 38, ""),
            _ => ("", 0, key),
        };
        let vk = if vk == 0 {
            key.chars()
                .next()
                .map_or(0, |c| u32::from(c.to_ascii_uppercase()))
        } else {
            vk
        };
        let mut down = json!({"type": "keyDown", "key": key, "windowsVirtualKeyCode": vk, "modifiers": modifiers});
        if !code.is_empty() {
            down["code"] = json!(code);
        }
        if !text.is_empty() && modifiers & 2 == 0 {
            down["text"] = json!(text);
        }
        self.call("Input.dispatchKeyEvent", down).await?;
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "windowsVirtualKeyCode": vk, "modifiers": modifiers}),
        )
        .await?;
        Ok(())
    }

    /// Type text into the focused element.
    pub async fn type_text(&mut self, text: &str) -> Result<()> {
        self.call("Input.insertText", json!({"text": text})).await?;
        Ok(())
    }

    /// Save a PNG screenshot of the viewport.
    pub async fn screenshot(&mut self, path: &Path) -> Result<()> {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await?;
        let data = r["data"]
            .as_str()
            .ok_or_else(|| anyhow!("no screenshot data"))?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(data)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, bytes)?;
        Ok(())
    }

    /// The browser's DevTools WebSocket address (for a second connection, e.g. a bench's tracer),
    /// read from the profile's `DevToolsActivePort`.
    pub fn devtools_url(&self) -> Result<String> {
        let txt = std::fs::read_to_string(self.profile.join("DevToolsActivePort"))?;
        let mut lines = txt.lines();
        let (Some(port), Some(path)) = (lines.next(), lines.next()) else {
            bail!("DevToolsActivePort has no port and path");
        };
        Ok(format!("ws://127.0.0.1:{port}{path}"))
    }

    /// Messages of every JavaScript dialog (alert/confirm/prompt) that opened so far.
    pub fn dialogs(&self) -> &[String] {
        &self.dialogs
    }

    /// ThreadDesk at `url`: signs in with the sign-in page's "Sign in with Mattermost" link
    /// (mmsim approves the OAuth request at once) and loads the queue again until it lists at
    /// least `rows` rows (the first sync may still be filling it).
    pub async fn sign_in_to_queue(
        &mut self,
        url: &str,
        rows: u64,
        timeout: Duration,
    ) -> Result<()> {
        self.goto(&format!("{url}/")).await?;
        self.wait_for("location.pathname === '/signin'", timeout)
            .await?;
        self.eval("document.querySelector('a[href=\"/auth/oauth/start\"]').click()")
            .await?;
        self.wait_for("location.pathname === '/'", timeout).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = self
                .eval("document.querySelectorAll('#queue > li.item').length")
                .await?;
            if n.as_u64().unwrap_or(0) >= rows {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the queue never listed {rows} rows (it lists {n})");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.goto(&format!("{url}/")).await?;
        }
    }

    /// Waits for the next protocol event `method` (e.g. `Fetch.requestPaused`), taking it off
    /// the events seen so far first; its `params`.
    pub async fn wait_event(&mut self, method: &str, timeout: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
                let e = self.events.remove(i).unwrap_or_default();
                return Ok(e["params"].clone());
            }
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("no {method} within {timeout:?}"))?
                .ok_or_else(|| anyhow!("devtools connection closed"))??;
            if let Message::Text(text) = frame {
                let v: Value = serde_json::from_str(&text)?;
                self.note_event(v).await?;
            }
        }
    }

    /// Drain pending protocol events (e.g. to catch a late dialog) for up to `wait`.
    pub async fn pump(&mut self, wait: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let Message::Text(text) = frame? {
                let v: Value = serde_json::from_str(&text)?;
                self.note_event(v).await?;
            }
        }
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
