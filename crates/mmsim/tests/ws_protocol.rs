//! WebSocket protocol against a real loopback mmsim: handshake, actions, envelope, numbering,
//! resumption, slow consumers, limits and socket faults (research `mattermost-api.md` §6,
//! traps 22–34b; reliability finding 3).

// Test helpers panic on purpose: a failed set-up step is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mmsim::events::{Broadcast, Delivery, HubConfig, WsEvent};
use mmsim::model::Id;
use mmsim::state::SessionKind;
use mmsim::{Running, SimConfig};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

async fn start() -> Running {
    mmsim::start(SimConfig::default(), 0).await.unwrap()
}

/// A fresh user id with a web-session token.
fn user(r: &Running) -> (String, String) {
    let id = Id::random();
    let token = r
        .sim
        .with_state(|s| s.create_session(id, SessionKind::Web, 0));
    (id.to_string(), token)
}

fn ws_url(r: &Running, query: &str) -> String {
    format!("ws://{}/api/v4/websocket{query}", r.addr)
}

async fn connect(url: &str, headers: &[(&str, &str)]) -> Ws {
    try_connect(url, headers).await.unwrap()
}

async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, WsError> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
            .expect("header name");
        req.headers_mut()
            .insert(name, v.parse().expect("header value"));
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

async fn connect_bearer(r: &Running, token: &str, query: &str) -> Ws {
    let auth = format!("Bearer {token}");
    connect(&ws_url(r, query), &[("authorization", &auth)]).await
}

/// The next text frame as JSON (ping/pong frames skipped).
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("socket ended")
            .expect("socket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Nothing but pings arrives within `ms`.
async fn expect_silence(ws: &mut Ws, ms: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => panic!("expected silence, got {other:?}"),
        }
    }
}

/// How the socket ended: `None` = no close frame (TCP closed), `Some(code)` otherwise.
async fn expect_end(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("socket did not end")
        {
            None | Some(Err(_)) => return None,
            Some(Ok(Message::Close(frame))) => {
                return Some(frame.map_or(CloseCode::Status, |f| f.code));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => panic!("expected the end, got {other:?}"),
        }
    }
}

/// Like [`expect_end`], discarding text frames still buffered on the client side.
async fn drain_to_end(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("socket did not end")
        {
            None | Some(Err(_)) => return None,
            Some(Ok(Message::Close(frame))) => {
                return Some(frame.map_or(CloseCode::Status, |f| f.code));
            }
            Some(Ok(_)) => {}
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

fn event(name: &str, recipients: &[&str], data: Value) -> Delivery {
    let Value::Object(data) = data else {
        panic!("data must be an object")
    };
    Delivery {
        event: WsEvent {
            event: name.into(),
            data,
            broadcast: Broadcast {
                channel_id: "c".repeat(26),
                ..Broadcast::default()
            },
        },
        recipients: recipients.iter().map(|s| (*s).to_owned()).collect(),
        per_user_data: HashMap::new(),
    }
}

fn publish(r: &Running, name: &str, recipients: &[&str]) {
    r.sim
        .inner()
        .hub
        .publish(event(name, recipients, json!({"n": 1})));
}

/// Wait until the hub has written `next_seq` events on `conn` (frames are on the wire).
async fn wait_written(r: &Running, conn: &str, next_seq: i64) {
    for _ in 0..500 {
        if r.sim
            .inner()
            .hub
            .connection(conn)
            .is_some_and(|c| c.next_seq >= next_seq && c.queued == 0)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("server did not write up to seq {next_seq}");
}

/// Connect with a bearer token and read the hello: (socket, connection id).
async fn hello(r: &Running, token: &str) -> (Ws, String) {
    let mut ws = connect_bearer(r, token, "").await;
    let h = next_json(&mut ws).await;
    assert_eq!(h["event"], "hello");
    assert_eq!(h["seq"], 0);
    let id = h["data"]["connection_id"].as_str().unwrap().to_owned();
    (ws, id)
}

fn resume_query(conn: &str, seq: i64) -> String {
    format!("?connection_id={conn}&sequence_number={seq}")
}

#[tokio::test]
async fn header_auth_gets_hello_with_seq_zero() {
    let r = start().await;
    let (uid, token) = user(&r);
    let mut ws = connect_bearer(&r, &token, "").await;
    let h = next_json(&mut ws).await;
    assert_eq!(h["event"], "hello");
    assert_eq!(h["seq"], 0);
    assert_eq!(h["broadcast"]["user_id"], uid.as_str());
    assert_eq!(h["broadcast"]["omit_users"], Value::Null);
    let data = h["data"].as_object().unwrap();
    assert_eq!(data["connection_id"].as_str().unwrap().len(), 26);
    assert!(
        data["server_version"]
            .as_str()
            .unwrap()
            .starts_with("11.2.0.")
    );
    assert!(data["server_hostname"].is_string());
    // The trailing-slash path is the same endpoint.
    let mut ws2 = connect(
        &format!("ws://{}/api/v4/websocket/", r.addr),
        &[("authorization", &format!("BEARER {token}"))],
    )
    .await;
    assert_eq!(next_json(&mut ws2).await["event"], "hello");
}

#[tokio::test]
async fn cookie_beats_authorization_header() {
    let r = start().await;
    let (uid, token) = user(&r);
    // Valid cookie, junk header: authenticated as the cookie's user.
    let mut ws = connect(
        &ws_url(&r, ""),
        &[
            ("cookie", &format!("MMAUTHTOKEN={token}")),
            ("authorization", "Bearer nonsense"),
        ],
    )
    .await;
    let h = next_json(&mut ws).await;
    assert_eq!(h["broadcast"]["user_id"], uid.as_str());
    // Junk cookie, valid header: the cookie wins, so the socket is NOT authenticated (an invalid
    // token does not fail the upgrade); the challenge still works.
    let mut ws = connect(
        &ws_url(&r, ""),
        &[
            ("cookie", "MMAUTHTOKEN=nonsense"),
            ("authorization", &format!("Bearer {token}")),
        ],
    )
    .await;
    expect_silence(&mut ws, 200).await;
    send(
        &mut ws,
        json!({"seq": 1, "action": "authentication_challenge", "data": {"token": token}}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["event"], "hello");
}

#[tokio::test]
async fn challenge_auth_sends_hello_then_ok() {
    let r = start().await;
    let (uid, token) = user(&r);
    let mut ws = connect(&ws_url(&r, ""), &[]).await;
    send(
        &mut ws,
        json!({"seq": 1, "action": "authentication_challenge", "data": {"token": token}}),
    )
    .await;
    let h = next_json(&mut ws).await;
    assert_eq!(h["event"], "hello");
    assert_eq!(h["seq"], 0);
    assert_eq!(h["broadcast"]["user_id"], uid.as_str());
    assert_eq!(
        next_json(&mut ws).await,
        json!({"status": "OK", "seq_reply": 1})
    );
    // A second challenge on an authenticated socket is ignored (no response).
    send(
        &mut ws,
        json!({"seq": 2, "action": "authentication_challenge", "data": {"token": token}}),
    )
    .await;
    send(&mut ws, json!({"seq": 3, "action": "ping"})).await;
    assert_eq!(next_json(&mut ws).await["seq_reply"], 3);
}

#[tokio::test]
async fn bad_challenge_token_closes_without_response() {
    let r = start().await;
    let mut ws = connect(&ws_url(&r, ""), &[]).await;
    send(
        &mut ws,
        json!({"seq": 1, "action": "authentication_challenge", "data": {"token": "wrong"}}),
    )
    .await;
    assert_eq!(expect_end(&mut ws).await, None);
    // A challenge without a token string closes too.
    let mut ws = connect(&ws_url(&r, ""), &[]).await;
    send(
        &mut ws,
        json!({"seq": 1, "action": "authentication_challenge", "data": {}}),
    )
    .await;
    assert_eq!(expect_end(&mut ws).await, None);
}

#[tokio::test]
async fn unauthenticated_actions_get_no_response_and_time_out() {
    let r = start().await;
    r.sim.inner().hub.set_config(HubConfig {
        auth_timeout: Duration::from_millis(400),
        ..HubConfig::default()
    });
    let mut ws = connect(&ws_url(&r, ""), &[]).await;
    // The server computes `not_authenticated` / `bad_seq` but cannot deliver them to a socket
    // that is not registered in the hub (`websocket_router.go` → `hub.SendMessage`).
    send(&mut ws, json!({"seq": 1, "action": "ping"})).await;
    send(&mut ws, json!({"seq": 0, "action": "ping"})).await;
    let started = std::time::Instant::now();
    assert_eq!(
        expect_end(&mut ws).await,
        None,
        "raw close after the auth timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn router_errors_after_authentication() {
    let r = start().await;
    let (_, token) = user(&r);
    let (mut ws, _) = hello(&r, &token).await;

    send(&mut ws, json!({"seq": 0, "action": "ping"})).await;
    let v = next_json(&mut ws).await;
    assert_eq!(v["status"], "FAIL");
    assert!(v.get("seq_reply").is_none(), "seq_reply 0 is omitted");
    assert!(v.get("seq").is_none());
    assert_eq!(v["error"]["id"], "api.web_socket_router.bad_seq.app_error");
    assert_eq!(v["error"]["status_code"], 400);
    assert_eq!(v["error"]["detailed_error"], "");

    send(&mut ws, json!({"seq": -4, "action": "ping"})).await;
    let v = next_json(&mut ws).await;
    assert_eq!(v["seq_reply"], -4);
    assert_eq!(v["error"]["id"], "api.web_socket_router.bad_seq.app_error");

    send(&mut ws, json!({"seq": 5, "action": ""})).await;
    let v = next_json(&mut ws).await;
    assert_eq!(
        v["error"]["id"],
        "api.web_socket_router.no_action.app_error"
    );

    send(&mut ws, json!({"seq": 6, "action": "dance"})).await;
    let v = next_json(&mut ws).await;
    assert_eq!(v["seq_reply"], 6);
    assert_eq!(
        v["error"]["id"],
        "api.web_socket_router.bad_action.app_error"
    );
    assert_eq!(v["error"]["status_code"], 500);

    send(
        &mut ws,
        json!({"seq": 7, "action": "get_statuses_by_ids", "data": {"user_ids": []}}),
    )
    .await;
    let v = next_json(&mut ws).await;
    assert_eq!(
        v["error"]["id"],
        "api.websocket_handler.invalid_param.app_error"
    );
    assert_eq!(v["error"]["message"], "Invalid user_ids parameter.");

    // A frame that does not decode as a request closes the socket.
    ws.send(Message::Text("{\"seq\": \"one\"}".into()))
        .await
        .unwrap();
    assert_eq!(expect_end(&mut ws).await, None);
}

#[tokio::test]
async fn ping_action_answers_pong_without_seq() {
    let r = start().await;
    let (_, token) = user(&r);
    let (mut ws, _) = hello(&r, &token).await;
    send(&mut ws, json!({"seq": 2, "action": "ping"})).await;
    let v = next_json(&mut ws).await;
    assert_eq!(v["status"], "OK");
    assert_eq!(v["seq_reply"], 2);
    assert!(v.get("seq").is_none());
    assert_eq!(v["data"]["text"], "pong");
    assert_eq!(v["data"]["version"], "11.2.0");
    assert_eq!(v["data"]["node_id"], "");
    assert!(v["data"]["server_time"].as_i64().unwrap() > 1_600_000_000_000);
}

#[tokio::test]
async fn statuses_actions() {
    let r = start().await;
    let (uid, token) = user(&r);
    let (mut ws, _) = hello(&r, &token).await;
    let other = Id::random().to_string();
    send(
        &mut ws,
        json!({"seq": 1, "action": "get_statuses_by_ids", "data": {"user_ids": [uid, other]}}),
    )
    .await;
    let v = next_json(&mut ws).await;
    assert_eq!(v["status"], "OK");
    assert_eq!(
        v["data"][&other], "offline",
        "unknown users come back offline"
    );
    send(&mut ws, json!({"seq": 2, "action": "get_statuses"})).await;
    let v = next_json(&mut ws).await;
    assert_eq!(v["status"], "OK");
    assert_eq!(v["seq_reply"], 2);
    send(
        &mut ws,
        json!({"seq": 3, "action": "presence", "data": {"channel_id": "x"}}),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"status": "OK", "seq_reply": 3})
    );
    send(
        &mut ws,
        json!({"seq": 4, "action": "user_typing", "data": {"channel_id": "nope"}}),
    )
    .await;
    let v = next_json(&mut ws).await;
    assert_eq!(v["error"]["message"], "Invalid channel_id parameter.");
}

#[tokio::test]
async fn events_are_numbered_per_connection_with_the_server_envelope() {
    let r = start().await;
    let (a, token_a) = user(&r);
    let (b, token_b) = user(&r);
    let (mut wa, _) = hello(&r, &token_a).await;
    let (mut wb, _) = hello(&r, &token_b).await;
    let (mut wa2, _) = hello(&r, &token_a).await;

    let mut d = event(
        "posted",
        &[&a, &b],
        json!({"post": "{\"id\":\"p\"}", "team_id": ""}),
    );
    d.per_user_data.insert(
        b.clone(),
        json!({"mentions": format!("[\"{b}\"]")})
            .as_object()
            .unwrap()
            .clone(),
    );
    r.sim.inner().hub.publish(d);
    publish(&r, "post_edited", &[&a]);

    for ws in [&mut wa, &mut wa2] {
        let e = next_json(ws).await;
        assert_eq!(e["event"], "posted");
        assert_eq!(e["seq"], 1);
        assert_eq!(
            e["data"]["post"], "{\"id\":\"p\"}",
            "post stays string JSON"
        );
        assert!(
            e["data"].get("mentions").is_none(),
            "per-user data is for b only"
        );
        let keys: Vec<&String> = e["broadcast"].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
        assert_eq!(next_json(ws).await["seq"], 2);
    }
    let e = next_json(&mut wb).await;
    assert_eq!(e["seq"], 1);
    assert_eq!(e["data"]["mentions"], format!("[\"{b}\"]"));
    expect_silence(&mut wb, 150).await;

    // broadcast.user_id restricts delivery; omit_users excludes.
    let mut d = event("preferences_changed", &[&a, &b], json!({}));
    d.event.broadcast.user_id = a.clone();
    r.sim.inner().hub.publish(d);
    let mut d = event("typing", &[&a, &b], json!({"user_id": a, "parent_id": ""}));
    d.event.broadcast.omit_users = Some([(a.clone(), true)].into_iter().collect());
    r.sim.inner().hub.publish(d);
    assert_eq!(next_json(&mut wa).await["event"], "preferences_changed");
    let t = next_json(&mut wb).await;
    assert_eq!(t["event"], "typing");
    assert_eq!(t["seq"], 2);
    assert_eq!(t["broadcast"]["omit_users"][&a], true);
    expect_silence(&mut wa, 150).await;
}

#[tokio::test]
async fn resume_replays_written_events_without_hello() {
    let r = start().await;
    let (a, token) = user(&r);
    let (mut ws, conn) = hello(&r, &token).await;
    publish(&r, "posted", &[&a]);
    publish(&r, "post_edited", &[&a]);
    wait_written(&r, &conn, 3).await; // seq 1 and 2 are on the wire, unread by us
    assert_eq!(r.sim.drop_all_websockets(), 1);
    assert_eq!(
        drain_to_end(&mut ws).await,
        None,
        "dropped without a close frame"
    );
    publish(&r, "reaction_added", &[&a]); // queued while disconnected

    let mut ws = connect_bearer(&r, &token, &resume_query(&conn, 1)).await;
    let names: Vec<(String, i64)> = [
        next_json(&mut ws).await,
        next_json(&mut ws).await,
        next_json(&mut ws).await,
    ]
    .iter()
    .map(|e| {
        (
            e["event"].as_str().unwrap().to_owned(),
            e["seq"].as_i64().unwrap(),
        )
    })
    .collect();
    assert_eq!(
        names,
        [
            ("posted".into(), 1),
            ("post_edited".into(), 2),
            ("reaction_added".into(), 3)
        ]
    );
    // The same connection id carries on.
    publish(&r, "posted", &[&a]);
    assert_eq!(next_json(&mut ws).await["seq"], 4);
    assert_eq!(r.sim.inner().hub.connections(&a)[0].connection_id, conn);
}

#[tokio::test]
async fn lossless_resume_continues_silently() {
    let r = start().await;
    let (a, token) = user(&r);
    let (mut ws, conn) = hello(&r, &token).await;
    publish(&r, "posted", &[&a]);
    assert_eq!(next_json(&mut ws).await["seq"], 1);
    drop(ws); // the client goes away
    for _ in 0..200 {
        if r.sim
            .inner()
            .hub
            .connection(&conn)
            .is_some_and(|c| !c.active)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ws = connect_bearer(&r, &token, &resume_query(&conn, 2)).await;
    send(&mut ws, json!({"seq": 1, "action": "ping"})).await;
    let first = next_json(&mut ws).await;
    assert_eq!(
        first["seq_reply"], 1,
        "no hello before the ping response: {first}"
    );
    publish(&r, "posted", &[&a]);
    assert_eq!(next_json(&mut ws).await["seq"], 2);
}

#[tokio::test]
async fn resume_with_loss_gets_new_connection_id_and_hello() {
    let r = start().await;
    r.sim.inner().hub.set_config(HubConfig {
        dead_queue_size: 4,
        ..HubConfig::default()
    });
    let (a, token) = user(&r);
    let (mut ws, conn) = hello(&r, &token).await;
    for _ in 0..10 {
        publish(&r, "posted", &[&a]);
    }
    wait_written(&r, &conn, 11).await;
    r.sim.drop_all_websockets();
    assert_eq!(drain_to_end(&mut ws).await, None);
    publish(&r, "post_edited", &[&a]); // queued meanwhile: delivered after the new hello

    // seq 2 was pushed out of the 4-event dead queue.
    let mut ws = connect_bearer(&r, &token, &resume_query(&conn, 2)).await;
    let h = next_json(&mut ws).await;
    assert_eq!(h["event"], "hello");
    assert_eq!(h["seq"], 0);
    let new_id = h["data"]["connection_id"].as_str().unwrap();
    assert_ne!(new_id, conn);
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["event"].as_str(), e["seq"].as_i64()),
        (Some("post_edited"), Some(1))
    );
}

#[tokio::test]
async fn expired_or_unknown_connection_gets_new_id() {
    let r = start().await;
    r.sim.inner().hub.set_config(HubConfig {
        resume_window: Duration::from_millis(200),
        ..HubConfig::default()
    });
    let (_, token) = user(&r);
    let (mut ws, conn) = hello(&r, &token).await;
    r.sim.drop_all_websockets();
    assert_eq!(expect_end(&mut ws).await, None);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut ws = connect_bearer(&r, &token, &resume_query(&conn, 1)).await;
    let h = next_json(&mut ws).await;
    assert_eq!(h["event"], "hello");
    assert_ne!(h["data"]["connection_id"], conn.as_str());

    // Never-seen id, even without a sequence number: a fresh connection.
    let unknown = Id::random().to_string();
    let mut ws = connect_bearer(&r, &token, &format!("?connection_id={unknown}")).await;
    let h = next_json(&mut ws).await;
    assert_eq!(h["event"], "hello");
    assert_ne!(h["data"]["connection_id"], unknown.as_str());
}

#[tokio::test]
async fn known_connection_id_without_sequence_number_is_closed() {
    let r = start().await;
    let (_, token) = user(&r);
    let (_ws, conn) = hello(&r, &token).await;
    r.sim.drop_all_websockets();
    let mut ws = connect_bearer(&r, &token, &format!("?connection_id={conn}")).await;
    assert_eq!(
        expect_end(&mut ws).await,
        None,
        "upgraded, then closed, no hello"
    );
    // An id that is not 26 characters is refused the same way.
    let mut ws = connect_bearer(&r, &token, "?connection_id=short&sequence_number=1").await;
    assert_eq!(expect_end(&mut ws).await, None);
}

#[tokio::test]
async fn challenge_auth_ignores_connection_id() {
    let r = start().await;
    let (_, token) = user(&r);
    let (_ws, conn) = hello(&r, &token).await;
    r.sim.drop_all_websockets();
    let mut ws = connect(&ws_url(&r, &resume_query(&conn, 1)), &[]).await;
    send(
        &mut ws,
        json!({"seq": 1, "action": "authentication_challenge", "data": {"token": token}}),
    )
    .await;
    let h = next_json(&mut ws).await;
    assert_eq!(h["event"], "hello");
    assert_ne!(h["data"]["connection_id"], conn.as_str());
}

#[tokio::test]
async fn lost_replay_buffers_force_a_new_hello() {
    let r = start().await;
    let (a, token) = user(&r);
    let (mut ws, conn) = hello(&r, &token).await;
    publish(&r, "posted", &[&a]);
    assert_eq!(next_json(&mut ws).await["seq"], 1);
    r.sim.lose_replay_buffers();
    r.sim.drop_all_websockets();
    assert_eq!(expect_end(&mut ws).await, None);
    let mut ws = connect_bearer(&r, &token, &resume_query(&conn, 2)).await;
    let h = next_json(&mut ws).await;
    assert_eq!(h["event"], "hello");
    assert_ne!(h["data"]["connection_id"], conn.as_str());
}

#[tokio::test]
async fn drop_websockets_of_one_user() {
    let r = start().await;
    let (a, token_a) = user(&r);
    let (_, token_b) = user(&r);
    let (mut wa, _) = hello(&r, &token_a).await;
    let (mut wb, _) = hello(&r, &token_b).await;
    assert_eq!(r.sim.drop_websockets_of(&a), 1);
    assert_eq!(expect_end(&mut wa).await, None);
    send(&mut wb, json!({"seq": 1, "action": "ping"})).await;
    assert_eq!(next_json(&mut wb).await["seq_reply"], 1);
}

#[tokio::test]
async fn slow_consumer_loses_typing_but_keeps_posted() {
    let r = start().await;
    let (a, token) = user(&r);
    let (mut ws, conn) = hello(&r, &token).await;
    r.sim.drop_all_websockets();
    assert_eq!(expect_end(&mut ws).await, None);
    // 128 events queue up while disconnected: the queue is half full.
    for _ in 0..128 {
        publish(&r, "posted", &[&a]);
    }
    for name in ["typing", "status_change", "multiple_channels_viewed"] {
        publish(&r, name, &[&a]);
    }
    publish(&r, "post_edited", &[&a]);
    assert_eq!(r.sim.inner().hub.connection(&conn).unwrap().queued, 129);

    let mut ws = connect_bearer(&r, &token, &resume_query(&conn, 1)).await;
    let mut names = Vec::new();
    for seq in 1..=129 {
        let e = next_json(&mut ws).await;
        assert_eq!(e["seq"], seq);
        names.push(e["event"].as_str().unwrap().to_owned());
    }
    assert_eq!(names.iter().filter(|n| *n == "posted").count(), 128);
    assert_eq!(names.last().unwrap(), "post_edited");
    expect_silence(&mut ws, 150).await;
}

#[tokio::test]
async fn full_send_queue_drops_the_connection_for_good() {
    let r = start().await;
    let (a, token) = user(&r);
    let (mut ws, conn) = hello(&r, &token).await;
    r.sim.drop_all_websockets();
    assert_eq!(expect_end(&mut ws).await, None);
    for _ in 0..257 {
        publish(&r, "posted", &[&a]);
    }
    assert!(r.sim.inner().hub.connection(&conn).is_none());
    let mut ws = connect_bearer(&r, &token, &resume_query(&conn, 1)).await;
    let h = next_json(&mut ws).await;
    assert_eq!(h["event"], "hello");
    assert_ne!(h["data"]["connection_id"], conn.as_str());
}

#[tokio::test]
async fn presence_scopes_typing_only_when_every_view_points_elsewhere() {
    let r = start().await;
    let (a, token) = user(&r);
    let (mut ws, _) = hello(&r, &token).await;
    let elsewhere = "e".repeat(26);
    send(
        &mut ws,
        json!({"seq": 1, "action": "presence", "data": {"channel_id": elsewhere}}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["status"], "OK");
    publish(&r, "typing", &[&a]); // channel "ccc…": still delivered (thread views unset)
    assert_eq!(next_json(&mut ws).await["event"], "typing");
    for (seq, view) in [(2, false), (3, true)] {
        send(
            &mut ws,
            json!({"seq": seq, "action": "presence",
                   "data": {"thread_channel_id": elsewhere, "is_thread_view": view}}),
        )
        .await;
        assert_eq!(next_json(&mut ws).await["status"], "OK");
    }
    publish(&r, "typing", &[&a]);
    publish(&r, "posted", &[&a]);
    assert_eq!(next_json(&mut ws).await["event"], "posted");
}

#[tokio::test]
async fn origin_must_match_the_site_url() {
    let r = start().await;
    let (_, token) = user(&r);
    let auth = format!("Bearer {token}");
    let err = try_connect(
        &ws_url(&r, ""),
        &[("authorization", &auth), ("origin", "http://evil.example")],
    )
    .await
    .expect_err("refused");
    match err {
        WsError::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("expected HTTP 403, got {other:?}"),
    }
    let mut ws = connect(
        &ws_url(&r, ""),
        &[("authorization", &auth), ("origin", &r.url)],
    )
    .await;
    assert_eq!(next_json(&mut ws).await["event"], "hello");
}

#[tokio::test]
async fn server_pings_and_drops_clients_that_never_pong() {
    let r = start().await;
    r.sim.inner().hub.set_config(HubConfig {
        ping_interval: Duration::from_millis(100),
        pong_wait: Duration::from_millis(350),
        ..HubConfig::default()
    });
    let (_, token) = user(&r);
    let (mut ws, conn) = hello(&r, &token).await;
    // Reading answers pings (tungstenite queues the pong), which extends the deadline.
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(700);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if matches!(msg, Message::Ping(_)) {
            pings += 1;
            ws.flush().await.unwrap();
        }
    }
    assert!(pings >= 3, "pings: {pings}");
    assert!(r.sim.inner().hub.connection(&conn).unwrap().active);
    // Stop reading: no pongs, so the server gives up after pong_wait.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!r.sim.inner().hub.connection(&conn).unwrap().active);
}

#[tokio::test]
async fn oversized_and_binary_frames_close_the_socket() {
    let r = start().await;
    let (_, token) = user(&r);
    let (mut ws, _) = hello(&r, &token).await;
    let big = json!({"seq": 1, "action": "ping", "data": {"pad": "x".repeat(9000)}});
    send(&mut ws, big).await;
    assert_eq!(expect_end(&mut ws).await, Some(CloseCode::Size));

    let (mut ws, _) = hello(&r, &token).await;
    ws.send(Message::Binary(vec![0x81, 0xa3].into()))
        .await
        .unwrap();
    assert_eq!(expect_end(&mut ws).await, None);
}

#[tokio::test]
async fn websocket_frames_are_counted() {
    let r = start().await;
    let (a, token) = user(&r);
    let (mut ws, _) = hello(&r, &token).await;
    publish(&r, "posted", &[&a]);
    next_json(&mut ws).await;
    send(&mut ws, json!({"seq": 1, "action": "ping"})).await;
    next_json(&mut ws).await;
    let m = r.sim.inner().metrics.snapshot();
    assert_eq!(m.ws_events_sent, 2);
    assert_eq!(m.ws_frames_sent, 3);
    assert!(m.ws_bytes_sent > 100);
    assert_eq!(m.requests_for("GET", "/api/v4/websocket"), 1);
}
