//! REST mutations reach WebSocket clients as the real server sends them: `posted` with the post
//! as string JSON (trap 22), DM messages as mentions of the other side (trap 34b), the author's
//! own copy (trap 34), and `user_typing` → `typing` for the other members only.

// Test helpers panic on purpose: a failed set-up step is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mmsim::model::Id;
use mmsim::state::{SessionKind, UserRec};
use mmsim::{Running, SimConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A user with a web-session token (inserted straight into the state; the seed is not needed).
fn add_user(r: &Running, username: &str) -> (String, String) {
    let id = Id::random();
    r.sim.with_state(|s| {
        let now = s.now();
        s.add_user(UserRec {
            id,
            username: username.into(),
            email: format!("{username}@example.com"),
            first_name: String::new(),
            last_name: String::new(),
            nickname: String::new(),
            position: String::new(),
            roles: "system_user".into(),
            password: "password".into(),
            create_at: now,
            update_at: now,
            last_picture_update: 0,
            timezone: String::new(),
            is_bot: false,
        });
        (id.to_string(), s.create_session(id, SessionKind::Web, 0))
    })
}

async fn ws(r: &Running, token: &str) -> Ws {
    let mut req = format!("ws://{}/api/v4/websocket", r.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(next_event(&mut ws).await["event"], "hello");
    ws
}

async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("timed out")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// Skip events until one named `name`.
async fn wait_for(ws: &mut Ws, name: &str) -> Value {
    loop {
        let e = next_event(ws).await;
        if e["event"] == name {
            return e;
        }
    }
}

#[tokio::test]
async fn rest_post_arrives_as_posted_and_typing_reaches_the_other_side() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = mmsim::start(SimConfig::default(), 0).await.unwrap();
    let http = reqwest::Client::new();
    let (a, token_a) = add_user(&r, "ada");
    let (b, token_b) = add_user(&r, "bob");

    let channel: Value = http
        .post(format!("{}/api/v4/channels/direct", r.url))
        .bearer_auth(&token_a)
        .json(&json!([a, b]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let channel_id = channel["id"].as_str().unwrap().to_owned();

    let mut wa = ws(&r, &token_a).await;
    let mut wb = ws(&r, &token_b).await;
    r.sim.inner().metrics.reset();

    let resp = http
        .post(format!("{}/api/v4/posts", r.url))
        .bearer_auth(&token_a)
        .json(&json!({"channel_id": channel_id, "message": "hello bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();

    let e = wait_for(&mut wb, "posted").await;
    assert_eq!(e["broadcast"]["channel_id"], channel_id.as_str());
    let post_json = e["data"]["post"]
        .as_str()
        .expect("data.post is string JSON");
    let post: Value = serde_json::from_str(post_json).unwrap();
    assert_eq!(post["id"], created["id"]);
    assert_eq!(e["data"]["channel_type"], "D");
    let mentions: Vec<String> =
        serde_json::from_str(e["data"]["mentions"].as_str().unwrap()).unwrap();
    assert_eq!(
        mentions,
        std::slice::from_ref(&b),
        "a DM is a mention of the recipient only"
    );

    let own = wait_for(&mut wa, "posted").await;
    assert!(own["data"].get("mentions").is_none());

    let m = r.sim.inner().metrics.snapshot();
    assert_eq!(m.requests_for("POST", "/api/v4/posts"), 1);

    // user_typing from b: a gets `typing`, b does not.
    wb.send(Message::Text(
        json!({"seq": 1, "action": "user_typing", "data": {"channel_id": channel_id, "parent_id": ""}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let ok = wait_for_response(&mut wb).await;
    assert_eq!(ok, json!({"status": "OK", "seq_reply": 1}));
    let t = wait_for(&mut wa, "typing").await;
    assert_eq!(t["data"]["user_id"], b.as_str());
    assert_eq!(t["data"]["parent_id"], "");
    assert_eq!(t["broadcast"]["omit_users"][&b], true);
    assert_eq!(t["broadcast"]["channel_id"], channel_id.as_str());
}

async fn wait_for_response(ws: &mut Ws) -> Value {
    loop {
        let v = next_event(ws).await;
        if v.get("status").is_some() {
            return v;
        }
    }
}
