//! `threaddesk demo` honours `THREADDESK_LOG`, and at `trace` neither ThreadDesk nor the
//! simulator it embeds logs message text or secrets.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::Session;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

#[tokio::test]
async fn demo_at_trace_logs_no_message_text_or_secret() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_threaddesk"))
        .args(["demo", "--port", "0", "--activity-every", "1"])
        .env("THREADDESK_LOG", "trace")
        .env_remove("THREADDESK_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stderr_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(u) = line.strip_prefix("ThreadDesk demo ready at ") {
                return u.trim().to_owned();
            }
        }
        panic!("demo exited before it was ready");
    })
    .await
    .expect("demo ready within 60 s");
    // The demo prints a link that signs the demo user in: the plain OAuth start, which the
    // simulator approves at once (what `oauth_sign_in` below follows).
    let link = lines.next_line().await.unwrap().unwrap_or_default();
    assert_eq!(
        link,
        format!("Open this link to be signed in as the demo user (alice): {url}/auth/oauth/start")
    );

    // Sign in through the demo's OAuth flow, read the queue and a conversation, reply.
    let mut alice = Session::new(&url);
    alice.oauth_sign_in().await.unwrap();
    let items = alice.wait_items(3).await.unwrap();
    let mut texts: Vec<String> = items
        .iter()
        .filter_map(|i| i["snippet"].as_str())
        .filter_map(|s| s.split_once(": ").map(|(_, t)| t.to_owned()))
        .filter(|t| t.chars().count() >= 16)
        .map(|t| t.chars().take(24).collect())
        .collect();
    assert!(texts.len() >= 3, "the demo queue shows messages");
    let key = items[0]["key"].as_str().unwrap().to_owned();
    let (status, _) = alice.json(&format!("/api/v1/items/{key}")).await.unwrap();
    assert_eq!(status, 200);
    let reply = format!("demo canary {:016x}", rand::random::<u64>());
    let r = alice.reply(&key, &reply).await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    texts.push(reply);
    // Live activity runs every second: let a few messages flow through sync and the stream.
    tokio::time::sleep(Duration::from_secs(3)).await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let logs = stderr_task.await.unwrap();

    assert!(logs.contains("TRACE"), "THREADDESK_LOG=trace is honoured");
    let mut secrets = texts;
    secrets.push(alice.cookie("td_session").unwrap().to_owned());
    secrets.push(alice.csrf.clone());
    for s in &secrets {
        let hits: Vec<&str> = logs.lines().filter(|l| l.contains(s.as_str())).collect();
        assert!(
            hits.is_empty(),
            "{s:?} appears in the demo's logs: {hits:?}"
        );
    }
}
