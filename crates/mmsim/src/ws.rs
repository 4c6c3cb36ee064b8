//! `GET /api/v4/websocket` (OWNED BY THE WS WORK): the upgrade, authentication, client actions
//! and the socket pump. Delivery, numbering and resumption live in [`crate::events::Hub`].
//!
//! Behaviour follows the real server (`mattermost/mattermost`: `server/channels/api4/websocket.go`,
//! `server/channels/app/platform/{web_conn.go, websocket_router.go}`, `server/channels/wsapi/*.go`;
//! research `mattermost-api.md` §6 and traps 28–31):
//! - Origin: absent passes; otherwise it must be SiteURL's origin. A refusal is gorilla's
//!   `403 Forbidden` text, followed by Mattermost's AppError (`api.web_socket.connect.upgrade.app_error`)
//!   in the same body, as the real handler writes both.
//! - Authentication at upgrade (the `MMAUTHTOKEN` cookie first, then `Authorization: Bearer|Token`):
//!   registered at once, `hello` queued. An invalid token does **not** fail the upgrade (the route
//!   does not require a session): the socket opens unauthenticated and must answer the challenge.
//! - Unauthenticated sockets are not in the hub, so the real server *cannot deliver* any response
//!   to them (`websocket_router.go` answers through `hub.SendMessage`, which drops messages for
//!   unregistered connections; `web_hub.go` `directMsg`). So `not_authenticated` / `bad_seq`
//!   errors before authentication are computed and dropped; the socket is closed after
//!   [`HubConfig::auth_timeout`](crate::events::HubConfig) without a close frame.
//! - `authentication_challenge`: missing/bad token → raw close, no response; success → `hello`
//!   then `{"status":"OK","seq_reply":n}`; a second challenge on an authenticated socket is ignored.
//! - Resume (`connection_id` + `sequence_number`) only for sockets authenticated at upgrade.
//! - A frame that does not decode as a request (bad JSON, `seq` not an integer, `data` not an
//!   object) closes the socket, as `json.Decoder` errors do in `readPump`.
//! - Binary frames are MessagePack on the real server. mmsim does not decode MessagePack: a binary
//!   frame closes the socket (what the real server does before authentication).
//! - Server ping frames every `ping_interval`; the read deadline (`pong_wait`) is extended only by
//!   pongs. Inbound messages over 8 KiB close the socket with 1009.
//!
//! Logging: event names, connection and user ids only — never tokens or message text.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::time::{Instant, sleep_until};

use crate::Sim;
use crate::events::{Attachment, Broadcast, CloseKind, Delivery, Next, WsEvent};

/// Gorilla's per-write deadline (`writeWaitTime`).
const WRITE_WAIT: Duration = Duration::from_secs(30);

pub fn routes() -> axum::Router<Sim> {
    axum::Router::new()
        .route("/api/v4/websocket", get(connect))
        .route("/api/v4/websocket/", get(connect))
}

/// The token of an HTTP request as `ParseAuthTokenFromRequest` finds it: the `MMAUTHTOKEN`
/// cookie first, then `Authorization: Bearer <t>` (prefix case-insensitive) or `Token <t>`.
#[must_use]
pub fn request_token(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((name, token)) = pair.trim().split_once('=')
                && name == "MMAUTHTOKEN"
                && !token.is_empty()
            {
                return Some(token.to_owned());
            }
        }
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let lower = auth.get(..7).map(str::to_ascii_lowercase);
    if lower.as_deref() == Some("bearer ") {
        return auth.get(7..).map(str::to_owned).filter(|t| !t.is_empty());
    }
    if auth.get(..6).map(str::to_ascii_lowercase).as_deref() == Some("token ") {
        return auth.get(6..).map(str::to_owned).filter(|t| !t.is_empty());
    }
    None
}

/// An AppError as carried in WebSocket responses: `request_id` is empty there and omitted.
#[derive(Serialize)]
struct WsAppError {
    id: &'static str,
    message: String,
    detailed_error: &'static str,
    status_code: u16,
}

fn ws_error(id: &'static str, message: impl Into<String>, status_code: u16) -> WsAppError {
    WsAppError {
        id,
        message: message.into(),
        detailed_error: "",
        status_code,
    }
}

/// `model.WebSocketResponse`: `seq_reply`, `data` and `error` are `omitempty`.
#[derive(Serialize)]
struct WsResponse {
    status: &'static str,
    #[serde(skip_serializing_if = "is_zero")]
    seq_reply: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<WsAppError>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Encode a response as Go's `json.Encoder` does (compact, trailing newline).
fn response(seq: i64, result: Result<Option<Map<String, Value>>, WsAppError>) -> String {
    let resp = match result {
        Ok(data) => WsResponse {
            status: "OK",
            seq_reply: seq,
            data: data.filter(|d| !d.is_empty()),
            error: None,
        },
        Err(error) => WsResponse {
            status: "FAIL",
            seq_reply: seq,
            data: None,
            error: Some(error),
        },
    };
    let mut text = serde_json::to_string(&resp).unwrap_or_default();
    text.push('\n');
    text
}

/// What gorilla + Mattermost write when the upgrade is refused: gorilla's plain-text status line,
/// then (same body) the AppError the handler sets afterwards.
fn upgrade_refused(status: StatusCode, origin: &str) -> Response {
    let app_error = json!({
        "id": "api.web_socket.connect.upgrade.app_error",
        "message": format!("URL Blocked because of CORS. Url: {origin}"),
        "detailed_error": "",
        "request_id": crate::events::new_id(),
        "status_code": 400,
    });
    let body = format!(
        "{}\n{app_error}",
        status.canonical_reason().unwrap_or("Error")
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `Origin` check (`app.OriginChecker` with no `AllowCorsFrom`; research §6.1).
fn origin_allowed(headers: &HeaderMap, site_url: &str) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default().to_owned();
    let (Ok(o), Ok(site)) = (url::Url::parse(&origin), url::Url::parse(site_url)) else {
        return Err(origin);
    };
    if o.origin() == site.origin() {
        Ok(())
    } else {
        Err(origin)
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn connect(
    State(sim): State<Sim>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if let Err(origin) = origin_allowed(&headers, &sim.inner().config.site_url) {
        tracing::debug!("ws: upgrade refused: origin not allowed");
        return upgrade_refused(StatusCode::FORBIDDEN, &origin);
    }
    let Ok(upgrade) = upgrade else {
        return upgrade_refused(StatusCode::BAD_REQUEST, "");
    };
    let config = sim.inner().hub.config();
    let user = request_token(&headers).and_then(|t| sim.user_for_token(&t));
    let connection_id = query_param(query.as_deref(), "connection_id").unwrap_or_default();
    let sequence_number = query_param(query.as_deref(), "sequence_number");

    upgrade
        .max_message_size(config.max_message_size)
        .max_frame_size(config.max_message_size)
        .on_upgrade(move |socket| async move {
            let attachment = match user {
                None => None,
                Some(user_id) => {
                    let resume = Some((connection_id.as_str(), sequence_number.as_deref()));
                    match sim.inner().hub.connect(&user_id, resume) {
                        Ok(a) => Some(a),
                        Err(e) => {
                            // `PopulateWebConnConfig` error: upgrade done, then a raw close.
                            tracing::debug!(user_id = %user_id, error = ?e, "ws: resume refused, closing");
                            drop(socket);
                            return;
                        }
                    }
                }
            };
            Pump::new(sim, socket, attachment).run().await;
        })
}

/// A client request (`model.WebSocketRequest`).
#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    seq: i64,
    #[serde(default)]
    action: String,
    #[serde(default)]
    data: Option<Map<String, Value>>,
}

/// How a socket ended, as far as the pump is concerned.
enum End {
    /// Drop the TCP connection without a close frame.
    Raw,
    /// Send a close frame first.
    Close(Option<CloseFrame>),
}

struct Pump {
    sim: Sim,
    socket: WebSocket,
    attachment: Option<Attachment>,
}

impl Pump {
    fn new(sim: Sim, socket: WebSocket, attachment: Option<Attachment>) -> Self {
        Self {
            sim,
            socket,
            attachment,
        }
    }

    async fn run(mut self) {
        let config = self.sim.inner().hub.config();
        let start = Instant::now();
        let auth_deadline = start + config.auth_timeout;
        let mut read_deadline = start + config.pong_wait;
        let mut ping = tokio::time::interval_at(start + config.ping_interval, config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        let end = loop {
            if let Err(end) = self.flush().await {
                break end;
            }
            let wake = self.attachment.as_ref().map(|a| a.wake.clone());
            let kill = self.attachment.as_ref().map(|a| a.kill.clone());
            let authenticated = self.attachment.is_some();
            tokio::select! {
                () = async { if let Some(k) = &kill { k.cancelled().await } else { std::future::pending().await } } => {
                    break match self.attachment.as_ref().map(Attachment::close_kind) {
                        Some(CloseKind::QueueFull) => End::Close(None),
                        _ => End::Raw,
                    };
                }
                () = async { if let Some(w) = &wake { w.notified().await } else { std::future::pending().await } } => {}
                msg = self.socket.recv() => match msg {
                    None => break End::Raw,
                    Some(Err(e)) => {
                        if e.to_string().contains("too long") {
                            break End::Close(Some(CloseFrame { code: 1009, reason: Utf8Bytes::from_static("") }));
                        }
                        break End::Raw;
                    }
                    Some(Ok(Message::Pong(_))) => read_deadline = Instant::now() + config.pong_wait,
                    Some(Ok(Message::Ping(_))) => {} // answered by tungstenite; does not extend the deadline
                    Some(Ok(Message::Close(_))) => break End::Raw,
                    Some(Ok(Message::Binary(_))) => {
                        tracing::debug!("ws: binary (MessagePack) frame not supported, closing");
                        break End::Raw;
                    }
                    Some(Ok(Message::Text(text))) => {
                        if let Err(end) = self.handle_text(text.as_str()) {
                            break end;
                        }
                    }
                },
                _ = ping.tick() => {
                    if self.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                        break End::Raw;
                    }
                }
                () = sleep_until(read_deadline) => {
                    tracing::debug!("ws: pong timeout, closing");
                    break End::Raw;
                }
                () = sleep_until(auth_deadline), if !authenticated => {
                    tracing::debug!("ws: did not authenticate in time, closing");
                    break End::Raw;
                }
            }
        };

        if let End::Close(frame) = end {
            let _ = self.send(Message::Close(frame)).await;
        }
        if let Some(a) = &self.attachment {
            self.sim.inner().hub.detach(&a.connection_id, a.generation);
            tracing::debug!(conn_id = %a.connection_id, user_id = %a.user_id, "ws: socket ended");
        }
    }

    async fn send(&mut self, msg: Message) -> Result<(), ()> {
        match tokio::time::timeout(WRITE_WAIT, self.socket.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Write everything queued for this connection.
    async fn flush(&mut self) -> Result<(), End> {
        loop {
            let Some(a) = &self.attachment else {
                return Ok(());
            };
            if a.kill.is_cancelled() {
                return Ok(()); // handled by the select
            }
            match self
                .sim
                .inner()
                .hub
                .next_frame(&a.connection_id, a.generation)
            {
                Next::Idle => return Ok(()),
                Next::Gone => return Err(End::Raw),
                Next::Frame(frame) => {
                    let len = frame.len();
                    let is_event = frame.starts_with("{\"event\"");
                    self.send(Message::Text(Utf8Bytes::from(&*frame)))
                        .await
                        .map_err(|()| End::Raw)?;
                    self.sim.inner().metrics.record_ws_frame(len, is_event);
                }
            }
        }
    }

    /// One text frame from the client (`websocket_router.go` `ServeWebSocket`).
    fn handle_text(&mut self, text: &str) -> Result<(), End> {
        let Some(Ok(req)) = serde_json::Deserializer::from_str(text)
            .into_iter::<Request>()
            .next()
        else {
            tracing::debug!("ws: undecodable request, closing");
            return Err(End::Raw);
        };
        if req.action.starts_with("custom_") {
            return Ok(()); // plugin actions: no core response
        }
        let result = if req.action.is_empty() {
            Err(ws_error(
                "api.web_socket_router.no_action.app_error",
                "No websocket action.",
                400,
            ))
        } else if req.seq <= 0 {
            Err(ws_error(
                "api.web_socket_router.bad_seq.app_error",
                "Invalid sequence for WebSocket message.",
                400,
            ))
        } else if req.action == "authentication_challenge" {
            return self.challenge(&req);
        } else if self.attachment.is_none() {
            Err(ws_error(
                "api.web_socket_router.not_authenticated.app_error",
                "WebSocket connection is not authenticated. Please log in and try again.",
                401,
            ))
        } else {
            self.action(&req)
        };
        self.respond(req.seq, result);
        Ok(())
    }

    /// Queue a response. Unauthenticated sockets are not in the hub: the real server drops it.
    fn respond(&self, seq: i64, result: Result<Option<Map<String, Value>>, WsAppError>) {
        if let Some(a) = &self.attachment {
            self.sim
                .inner()
                .hub
                .respond(&a.connection_id, a.generation, response(seq, result));
        }
    }

    fn challenge(&mut self, req: &Request) -> Result<(), End> {
        if self.attachment.is_some() {
            return Ok(()); // already authenticated: ignored, no response
        }
        let token = req
            .data
            .as_ref()
            .and_then(|d| d.get("token"))
            .and_then(Value::as_str);
        let Some(user_id) = token.and_then(|t| self.sim.user_for_token(t)) else {
            tracing::debug!("ws: authentication challenge failed, closing");
            return Err(End::Raw);
        };
        match self.sim.inner().hub.connect(&user_id, None) {
            Ok(a) => {
                tracing::debug!(conn_id = %a.connection_id, user_id = %user_id, "ws: authenticated by challenge");
                self.attachment = Some(a);
                self.respond(req.seq, Ok(None));
                Ok(())
            }
            Err(_) => Err(End::Raw),
        }
    }

    /// Actions of an authenticated socket (`server/channels/wsapi/*.go`).
    fn action(&self, req: &Request) -> Result<Option<Map<String, Value>>, WsAppError> {
        let Some(a) = &self.attachment else {
            return Err(ws_error(
                "api.web_socket_router.not_authenticated.app_error",
                "WebSocket connection is not authenticated. Please log in and try again.",
                401,
            ));
        };
        let empty = Map::new();
        let data = req.data.as_ref().unwrap_or(&empty);
        match req.action.as_str() {
            "ping" => {
                let mut out = Map::new();
                out.insert("text".into(), "pong".into());
                out.insert("version".into(), crate::SERVER_VERSION.into());
                out.insert("server_time".into(), now_ms().into());
                out.insert("node_id".into(), "".into());
                Ok(Some(out))
            }
            "presence" => {
                // Router built-in (`websocket_router.go`): only scopes typing/reaction delivery.
                let str_of = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_owned);
                let channel = str_of("channel_id");
                let team = str_of("team_id");
                let thread_channel = str_of("thread_channel_id");
                let thread_view = data.get("is_thread_view").and_then(Value::as_bool);
                self.sim.inner().hub.set_presence(&a.connection_id, |p| {
                    if channel.is_some() {
                        p.channel_id = channel;
                    }
                    if team.is_some() {
                        p.team_id = team;
                    }
                    if let Some(tc) = thread_channel {
                        if thread_view == Some(true) {
                            p.thread_view_channel_id = Some(tc);
                        } else {
                            p.rhs_thread_channel_id = Some(tc);
                        }
                    }
                });
                Ok(None)
            }
            "user_typing" => self.user_typing(&a.user_id, data),
            "user_update_active_status" => match data.get("user_is_active") {
                Some(Value::Bool(_)) => Ok(None),
                _ => Err(invalid_param(&req.action, "user_is_active")),
            },
            "posted_notify_ack" => Ok(None),
            "get_statuses" => Ok(Some(directory::all_statuses(&self.sim))),
            "get_statuses_by_ids" => {
                let ids: Option<Vec<String>> = data
                    .get("user_ids")
                    .and_then(Value::as_array)
                    .filter(|a| !a.is_empty())
                    .and_then(|arr| {
                        arr.iter()
                            .map(|v| {
                                v.as_str()
                                    .filter(|s| crate::events::is_valid_id(s))
                                    .map(str::to_owned)
                            })
                            .collect()
                    });
                let Some(ids) = ids else {
                    return Err(invalid_param(&req.action, "user_ids"));
                };
                Ok(Some(directory::statuses_by_ids(&self.sim, &ids)))
            }
            other => {
                tracing::debug!(action = %other, "ws: unknown action");
                Err(ws_error(
                    "api.web_socket_router.bad_action.app_error",
                    "Unknown WebSocket action.",
                    500,
                ))
            }
        }
    }

    /// `wsapi/user.go` `userTyping` → `app.PublishUserTyping`: `typing` to the channel, omitting
    /// the sender.
    fn user_typing(
        &self,
        user_id: &str,
        data: &Map<String, Value>,
    ) -> Result<Option<Map<String, Value>>, WsAppError> {
        let channel_id = data
            .get("channel_id")
            .and_then(Value::as_str)
            .filter(|c| crate::events::is_valid_id(c))
            .ok_or_else(|| invalid_param("user_typing", "channel_id"))?;
        let members = directory::channel_members(&self.sim, channel_id)
            .filter(|m| m.iter().any(|u| u == user_id))
            .ok_or_else(|| invalid_param("user_typing", "channel_id"))?;
        let parent_id = data
            .get("parent_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut event_data = Map::new();
        event_data.insert("parent_id".into(), parent_id.into());
        event_data.insert("user_id".into(), user_id.into());
        self.sim.inner().hub.publish(Delivery {
            event: WsEvent {
                event: "typing".into(),
                data: event_data,
                broadcast: Broadcast {
                    omit_users: Some([(user_id.to_owned(), true)].into_iter().collect()),
                    channel_id: channel_id.to_owned(),
                    ..Broadcast::default()
                },
            },
            recipients: members.into_iter().filter(|u| u != user_id).collect(),
            per_user_data: std::collections::HashMap::new(),
        });
        Ok(None)
    }
}

/// `NewInvalidWebSocketParamError` (`wsapi/api.go`).
fn invalid_param(_action: &str, name: &str) -> WsAppError {
    ws_error(
        "api.websocket_handler.invalid_param.app_error",
        format!("Invalid {name} parameter."),
        400,
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Read-only questions the WebSocket actions ask the organisation state.
mod directory {
    use serde_json::{Map, Value};

    use crate::Sim;
    use crate::model::Id;

    /// Members of a channel, `None` if the channel is unknown.
    pub fn channel_members(sim: &Sim, channel_id: &str) -> Option<Vec<String>> {
        let channel = Id::parse(channel_id)?;
        sim.with_state(|s| {
            s.channels.get(&channel)?;
            Some(
                s.channel_members
                    .get(&channel)
                    .map(|m| m.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
            )
        })
    }

    /// `get_statuses`: every status the server holds that is not offline (`{user_id: status}`).
    pub fn all_statuses(sim: &Sim) -> Map<String, Value> {
        sim.with_state(|s| {
            s.statuses
                .iter()
                .filter(|(_, st)| st.status != "offline")
                .map(|(id, st)| (id.to_string(), Value::String(st.status.clone())))
                .collect()
        })
    }

    /// `get_statuses_by_ids`: missing users come back `offline` (`platform/status.go`).
    pub fn statuses_by_ids(sim: &Sim, ids: &[String]) -> Map<String, Value> {
        sim.with_state(|s| {
            ids.iter()
                .map(|id| {
                    let status = Id::parse(id)
                        .and_then(|id| s.statuses.get(&id))
                        .map_or_else(|| "offline".to_owned(), |st| st.status.clone());
                    (id.clone(), Value::String(status))
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_read_like_the_server() {
        assert_eq!(
            response(3, Ok(None)),
            "{\"status\":\"OK\",\"seq_reply\":3}\n"
        );
        let err = response(
            0,
            Err(ws_error(
                "api.web_socket_router.bad_seq.app_error",
                "x",
                400,
            )),
        );
        let v: Value = serde_json::from_str(&err).unwrap();
        assert_eq!(v["status"], "FAIL");
        assert!(v.get("seq_reply").is_none());
        assert_eq!(v["error"]["status_code"], 400);
        assert!(v["error"].get("request_id").is_none());
    }

    #[test]
    fn cookie_beats_header() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "BEARER abc".parse().unwrap());
        assert_eq!(request_token(&h).as_deref(), Some("abc"));
        h.insert(header::COOKIE, "a=b; MMAUTHTOKEN=cookie".parse().unwrap());
        assert_eq!(request_token(&h).as_deref(), Some("cookie"));
    }
}
