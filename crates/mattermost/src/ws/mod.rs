//! The WebSocket client: authenticated connect, event parsing, `seq` tracking, resume with
//! `connection_id` + `sequence_number`, reconnect with backoff, and resync signals
//! (research §6; reliability findings 3 and 8).
//!
//! ```no_run
//! # async fn demo(client: mattermost::Client) {
//! use mattermost::ws::{WsClient, WsConfig, WsItem};
//! let (handle, mut items) = WsClient::connect(client, WsConfig::default());
//! while let Some(item) = items.recv().await {
//!     match item {
//!         WsItem::Connected { resumed, .. } => { /* first time: initial sync */ let _ = resumed; }
//!         WsItem::Event(ev) => { /* apply idempotently */ let _ = ev; }
//!         WsItem::Resync { .. } => { /* events were lost: incremental REST resync */ }
//!         WsItem::Disconnected { .. } => { /* the client reconnects by itself */ }
//!     }
//! }
//! handle.close().await;
//! # }
//! ```
//!
//! Protocol summary, as implemented:
//! - The upgrade carries `Authorization: Bearer <token>` (the token is read from the
//!   [`Client`] at every attempt, so a refreshed token is used). Without an authenticated
//!   upgrade the server ignores `connection_id` and resume never works (trap 28).
//! - A new connection starts with `hello` (`seq` 0, a `connection_id`). Events are numbered
//!   per connection; responses to actions are not (trap 31).
//! - On reconnect the client sends `?connection_id=<id>&sequence_number=<next seq>`. If the
//!   server still holds the missed events it replays them **without a hello**; otherwise it
//!   sends a `hello` with a **new** connection id, and the consumer gets
//!   [`WsItem::Resync`] (trap 29). A `seq` gap also yields `Resync`, then an immediate
//!   reconnect (which may still replay; applying events idempotently makes that harmless).
//! - To learn quickly whether a resume succeeded, the client sends a `ping` action right after
//!   the upgrade: a response (or an event with the expected `seq`) before any `hello` means
//!   "resumed".
//! - An application-level `ping` every [`WsConfig::ping_interval`], with a deadline
//!   ([`WsConfig::pong_timeout`]): if nothing at all arrives from the server within
//!   `pong_timeout` of a ping (neither its response nor any other frame), the socket is
//!   considered dead and replaced, so a half-open connection (the network silently stops
//!   forwarding; TCP would notice only after minutes) is found within `ping_interval +
//!   pong_timeout` (40 s by default; research T-8: ≤ 45 s). Any frame counts as liveness: a
//!   link that is still delivering events is not dead, and a busy server may queue the pong
//!   behind many events. A ping still unanswered when the next one is due also ends the
//!   socket (the server stopped answering although frames arrive, e.g. our direction is
//!   dead). WebSocket ping frames are answered by tungstenite.
//! - Backoff like the webapp: `min_backoff` for the first 7 failures, then
//!   `min_backoff × n²` capped at `max_backoff`, plus up to `backoff_jitter` of random jitter.
//!
//! Nothing here logs post content or tokens: logs carry connection ids and `seq` only.

mod event;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, header};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use event::{
    Broadcast, Event, Frame, FrameError, PostChanged, PostUnread, Posted, ThreadFollowChanged,
    ThreadReadChanged, ThreadUpdated, UserRemoved, WsEvent, WsResponse, parse_frame,
};

use crate::client::Client;
use crate::error::{Error, Result};

/// WebSocket settings. The defaults follow the webapp and reliability finding 8.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// tungstenite read buffer (default 4 KiB instead of 128 KiB: ~25× less memory per idle
    /// connection, reliability finding 8).
    pub read_buffer_size: usize,
    /// tungstenite write buffer (default 0: write each frame at once).
    pub write_buffer_size: usize,
    /// Largest accepted message (default 16 MiB).
    pub max_message_size: usize,
    /// Application-level ping period (default 30 s, like the webapp).
    pub ping_interval: Duration,
    /// How long after a ping the socket may stay completely silent before it is declared dead
    /// (default 10 s): a half-open socket is replaced within `ping_interval + pong_timeout`.
    pub pong_timeout: Duration,
    /// First reconnect delay (default 3 s).
    pub min_backoff: Duration,
    /// Largest reconnect delay (default 5 min).
    pub max_backoff: Duration,
    /// Up to this much random delay is added to every backoff (default 2 s).
    pub backoff_jitter: Duration,
    /// Timeout of the TCP + TLS + upgrade handshake (default 10 s).
    pub connect_timeout: Duration,
    /// Capacity of the item channel (default 256, the server's own per-connection queue).
    pub channel_capacity: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            read_buffer_size: 4096,
            write_buffer_size: 0,
            max_message_size: 16 << 20,
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(10),
            min_backoff: Duration::from_secs(3),
            max_backoff: Duration::from_secs(300),
            backoff_jitter: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(10),
            channel_capacity: 256,
        }
    }
}

impl WsConfig {
    /// Reconnect delay after `failures` consecutive failures (≥ 1), without jitter.
    #[must_use]
    pub fn backoff(&self, failures: u32) -> Duration {
        if failures <= 7 {
            self.min_backoff
        } else {
            self.min_backoff
                .saturating_mul(failures.saturating_mul(failures))
                .min(self.max_backoff)
        }
    }

    fn backoff_with_jitter(&self, failures: u32) -> Duration {
        let jitter = self.backoff_jitter.mul_f64(rand::random::<f64>());
        self.backoff(failures) + jitter
    }
}

/// Why the consumer must resynchronise over REST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResyncReason {
    /// A `hello` arrived with a connection id different from the previous one: the server
    /// could not replay (restart, reaped connection, more than 128 missed events …).
    NewConnection { previous: String, new: String },
    /// An event skipped ahead of the expected `seq`.
    SequenceGap { expected: i64, received: i64 },
}

/// What the WebSocket task delivers.
#[derive(Debug)]
pub enum WsItem {
    /// A connection is up. `resumed: false` means a fresh connection (`hello`); after the
    /// first one the consumer does its initial sync, after later ones a [`WsItem::Resync`]
    /// follows.
    Connected {
        connection_id: String,
        resumed: bool,
    },
    /// An event, in `seq` order, without duplicates. `hello` is reported as `Connected`.
    Event(Box<WsEvent>),
    /// Events may have been lost: resync the affected state from REST.
    Resync { reason: ResyncReason },
    /// The connection failed or dropped; the client reconnects by itself.
    Disconnected { error: Error },
}

/// The `presence` action: which channel/thread the user is looking at. A client that never
/// sends it receives every `typing`/`reaction_*` event (trap 27).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Presence {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_channel_id: Option<String>,
    pub is_thread_view: bool,
}

enum Command {
    Close,
    Action {
        action: String,
        data: serde_json::Value,
        reply: Option<oneshot::Sender<Result<WsResponse>>>,
    },
}

/// Controls a running WebSocket task. Cheap to clone. The task ends when [`WsHandle::close`]
/// is called, when every handle is dropped, or when the item receiver is dropped.
#[derive(Debug, Clone)]
pub struct WsHandle {
    cmd: mpsc::Sender<Command>,
}

impl WsHandle {
    /// Close the socket and end the task.
    pub async fn close(&self) {
        let _ = self.cmd.send(Command::Close).await;
    }

    /// Whether the task has ended.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.cmd.is_closed()
    }

    /// Send an action and wait for its response (fails if not connected or if the connection
    /// drops first).
    pub async fn request(&self, action: &str, data: serde_json::Value) -> Result<WsResponse> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::Action {
                action: action.to_owned(),
                data,
                reply: Some(tx),
            })
            .await
            .map_err(|_| Error::WebSocket("the WebSocket task has ended".into()))?;
        rx.await
            .map_err(|_| Error::WebSocket("connection lost before the response".into()))?
    }

    /// Send an action without waiting for its response.
    pub async fn send_action(&self, action: &str, data: serde_json::Value) -> Result<()> {
        self.cmd
            .send(Command::Action {
                action: action.to_owned(),
                data,
                reply: None,
            })
            .await
            .map_err(|_| Error::WebSocket("the WebSocket task has ended".into()))
    }

    /// The `ping` action; the response data holds `text: "pong"`, `version`, `server_time`.
    pub async fn ping(&self) -> Result<WsResponse> {
        self.request("ping", serde_json::Value::Object(serde_json::Map::new()))
            .await
    }

    /// The `presence` action.
    pub async fn presence(&self, presence: &Presence) -> Result<()> {
        let data = serde_json::to_value(presence)
            .map_err(|e| Error::InvalidArgument(format!("presence: {e}")))?;
        self.send_action("presence", data).await
    }
}

/// Entry point of the WebSocket client.
#[derive(Debug)]
pub struct WsClient;

impl WsClient {
    /// Spawn the WebSocket task for `client`'s server and token (needs a Tokio runtime).
    /// Connection, reconnection and resume happen in the background; everything is reported
    /// on the returned receiver.
    #[must_use]
    pub fn connect(client: Client, config: WsConfig) -> (WsHandle, mpsc::Receiver<WsItem>) {
        Self::connect_resuming(client, config, None)
    }

    /// [`Self::connect`], resuming a position saved by an earlier process: `(connection_id,
    /// next_seq)`. The first connect sends them; if the server still holds that connection
    /// the missed events are replayed (`Connected { resumed: true }`), otherwise it answers
    /// with a new `hello` and a [`WsItem::Resync`] follows.
    #[must_use]
    pub fn connect_resuming(
        client: Client,
        config: WsConfig,
        resume: Option<(String, i64)>,
    ) -> (WsHandle, mpsc::Receiver<WsItem>) {
        let (connection_id, next_seq) = match resume {
            Some((id, seq)) if !id.is_empty() && seq >= 1 => (Some(id), seq),
            _ => (None, 0),
        };
        let (items_tx, items_rx) = mpsc::channel(config.channel_capacity.max(1));
        let (cmd_tx, cmd_rx) = mpsc::channel(32);
        let task = Task {
            client,
            config,
            items: items_tx,
            cmds: cmd_rx,
            connection_id,
            next_seq,
            failures: 0,
        };
        tokio::spawn(task.run());
        (WsHandle { cmd: cmd_tx }, items_rx)
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a connection ended.
enum End {
    /// Closed on request (or nobody listens any more): stop.
    Stop,
    /// Failed; reconnect after a backoff (`immediate`: at once).
    Failed { error: Error, immediate: bool },
}

struct Task {
    client: Client,
    config: WsConfig,
    items: mpsc::Sender<WsItem>,
    cmds: mpsc::Receiver<Command>,
    /// Last known connection id (`None` before the first `hello`).
    connection_id: Option<String>,
    /// Next expected event `seq`.
    next_seq: i64,
    /// Consecutive failures since the last established connection.
    failures: u32,
}

impl Task {
    async fn run(mut self) {
        let mut delay = Duration::ZERO;
        loop {
            if !delay.is_zero() && self.wait(delay).await {
                return;
            }
            match self.open().await {
                Err(error) => {
                    self.failures = self.failures.saturating_add(1);
                    tracing::debug!(failures = self.failures, %error, "websocket connect failed");
                    let wait = error.retry_after().unwrap_or_default();
                    if self.emit(WsItem::Disconnected { error }).await {
                        return;
                    }
                    delay = self.config.backoff_with_jitter(self.failures).max(wait);
                }
                Ok(socket) => match self.serve(socket).await {
                    End::Stop => return,
                    End::Failed { error, immediate } => {
                        tracing::debug!(
                            connection_id = self.connection_id.as_deref().unwrap_or(""),
                            next_seq = self.next_seq,
                            %error,
                            "websocket connection ended"
                        );
                        if self.emit(WsItem::Disconnected { error }).await {
                            return;
                        }
                        self.failures = self.failures.saturating_add(1);
                        delay = if immediate {
                            Duration::ZERO
                        } else {
                            self.config.backoff_with_jitter(self.failures)
                        };
                    }
                },
            }
        }
    }

    /// Sleep `delay` while answering commands. Returns `true` if the task must stop.
    async fn wait(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return false,
                cmd = self.cmds.recv() => match cmd {
                    None | Some(Command::Close) => return true,
                    Some(Command::Action { reply, .. }) => {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(Error::WebSocket("not connected".into())));
                        }
                    }
                },
            }
        }
    }

    /// Send an item to the consumer. Returns `true` if nobody listens any more.
    async fn emit(&self, item: WsItem) -> bool {
        self.items.send(item).await.is_err()
    }

    async fn open(&self) -> Result<Socket> {
        let token = self.client.token().ok_or(Error::NoToken)?;
        if let Some(gate) = self.client.gate() {
            gate.acquire(self.client.user_key()).await;
        }
        let mut url = self.client.api_url(&["websocket"]);
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| Error::WebSocket("cannot derive the WebSocket URL".into()))?;
        // `next_seq` 0 means "no position to resume from" (see the oversized-message case in
        // `serve_conn`): connect fresh, and the new `hello` brings a resync.
        if let Some(id) = self.connection_id.as_ref().filter(|_| self.next_seq >= 1) {
            url.query_pairs_mut()
                .append_pair("connection_id", id)
                .append_pair("sequence_number", &self.next_seq.to_string());
        }
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::WebSocket(e.to_string()))?;
        let mut auth = HeaderValue::try_from(format!("Bearer {}", token.expose()))
            .map_err(|_| Error::InvalidArgument("token has invalid characters".into()))?;
        auth.set_sensitive(true);
        request.headers_mut().insert(header::AUTHORIZATION, auth);
        request
            .headers_mut()
            .insert(header::USER_AGENT, self.client.user_agent().clone());
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(self.config.read_buffer_size)
            .write_buffer_size(self.config.write_buffer_size)
            .max_message_size(Some(self.config.max_message_size));
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true);
        match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Err(_) => Err(Error::Timeout {
                endpoint: "GET /api/v4/websocket".into(),
            }),
            Ok(Err(tungstenite::Error::Http(resp))) => {
                if resp.status() == http::StatusCode::TOO_MANY_REQUESTS {
                    // The rate limiter covers the upgrade too (research §8).
                    let (retry_after, reset) = crate::client::rate_limit_headers(resp.headers());
                    if let Some(gate) = self.client.gate() {
                        gate.on_rate_limited(self.client.user_key(), retry_after);
                    }
                    return Err(Error::RateLimited { retry_after, reset });
                }
                Err(Error::Http {
                    status: resp.status().as_u16(),
                    endpoint: "GET /api/v4/websocket".into(),
                })
            }
            Ok(Err(e)) => Err(Error::WebSocket(e.to_string())),
            Ok(Ok((socket, _))) => Ok(socket),
        }
    }

    /// Run one connection until it ends.
    async fn serve(&mut self, socket: Socket) -> End {
        let mut conn = Conn::new();
        match self.serve_conn(socket, &mut conn).await {
            // The server accepts an upgrade with a bad token, then closes the unauthenticated
            // socket after 5 s without a hello (research §6.1): say so.
            End::Failed {
                error: Error::WebSocket(msg),
                immediate,
            } if !conn.confirmed => End::Failed {
                error: Error::WebSocket(format!(
                    "{msg} (before the server confirmed the connection: is the token valid?)"
                )),
                immediate,
            },
            end => end,
        }
    }

    async fn serve_conn(&mut self, mut socket: Socket, conn: &mut Conn) -> End {
        let resuming = self.connection_id.is_some();
        if resuming {
            // Probe: a response before any `hello` means the resume worked.
            match conn
                .send_action(&mut socket, "ping", empty_object(), None)
                .await
            {
                Ok(seq) => conn.ping_sent(seq),
                Err(error) => return failed(error),
            }
        }
        let start = tokio::time::Instant::now() + self.config.ping_interval;
        let mut ticker = tokio::time::interval_at(start, self.config.ping_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        // When the last frame (of any kind) arrived: liveness for the pong deadline.
        let mut last_received = tokio::time::Instant::now();
        loop {
            let pong_deadline = conn
                .ping_sent_at
                .map(|sent| sent.max(last_received) + self.config.pong_timeout);
            tokio::select! {
                msg = socket.next() => {
                    last_received = tokio::time::Instant::now();
                    let text = match msg {
                        None => return failed(Error::WebSocket("connection closed".into())),
                        Some(Err(e)) => {
                            if matches!(e, tungstenite::Error::Capacity(_)) {
                                // A message over `max_message_size`: resuming would replay it
                                // and fail again forever. Reconnect fresh instead (the event is
                                // lost, so the new `hello` is followed by a resync).
                                self.next_seq = 0;
                            }
                            return failed(Error::WebSocket(e.to_string()));
                        }
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(frame))) => {
                            let code = frame.map_or(1005, |f| u16::from(f.code));
                            return failed(Error::WebSocket(format!("closed by the server (code {code})")));
                        }
                        // Binary frames are MessagePack, which we never ask for; ping/pong are
                        // handled by tungstenite.
                        Some(Ok(_)) => continue,
                    };
                    match parse_frame(&text) {
                        Ok(Frame::Response(resp)) => {
                            if let Some(end) = self.on_response(conn, resp).await {
                                return end;
                            }
                        }
                        Ok(Frame::Event(ev)) => {
                            if let Some(end) = self.on_event(conn, ev).await {
                                return end;
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "ignoring unparsable websocket frame"),
                    }
                }
                cmd = self.cmds.recv() => match cmd {
                    None | Some(Command::Close) => {
                        let _ = socket.close(None).await;
                        return End::Stop;
                    }
                    Some(Command::Action { action, data, reply }) => {
                        if let Err(error) = conn.send_action(&mut socket, &action, data, reply).await {
                            return failed(error);
                        }
                    }
                },
                _ = ticker.tick() => {
                    if conn.outstanding_ping.is_some() {
                        return failed(Error::WebSocket(
                            "ping timeout: the previous ping was never answered".into(),
                        ));
                    }
                    match conn.send_action(&mut socket, "ping", empty_object(), None).await {
                        Ok(seq) => conn.ping_sent(seq),
                        Err(error) => return failed(error),
                    }
                }
                () = sleep_until_or_never(pong_deadline), if pong_deadline.is_some() => {
                    return failed(Error::WebSocket(format!(
                        "ping timeout: nothing received within {:?} of a ping",
                        self.config.pong_timeout
                    )));
                }
            }
        }
    }

    /// Handle a response frame. Returns `Some` to end the connection.
    async fn on_response(&mut self, conn: &mut Conn, resp: WsResponse) -> Option<End> {
        if conn.outstanding_ping == Some(resp.seq_reply) {
            conn.outstanding_ping = None;
            conn.ping_sent_at = None;
        }
        if !conn.confirmed {
            // Resumed: the probe was answered before any hello.
            if let Some(end) = self.confirm_resume(conn).await {
                return Some(end);
            }
        }
        if let Some(reply) = conn.pending.remove(&resp.seq_reply) {
            let _ = reply.send(Ok(resp));
        }
        None
    }

    async fn confirm_resume(&mut self, conn: &mut Conn) -> Option<End> {
        conn.confirmed = true;
        self.failures = 0;
        let connection_id = self.connection_id.clone().unwrap_or_default();
        tracing::debug!(%connection_id, next_seq = self.next_seq, "websocket resumed");
        self.emit(WsItem::Connected {
            connection_id,
            resumed: true,
        })
        .await
        .then_some(End::Stop)
    }

    /// Handle an event frame. Returns `Some` to end the connection.
    async fn on_event(&mut self, conn: &mut Conn, ev: Box<WsEvent>) -> Option<End> {
        if let Event::Hello { connection_id, .. } = &ev.event {
            let previous = self.connection_id.replace(connection_id.clone());
            self.next_seq = ev.seq.unwrap_or(0).saturating_add(1);
            self.failures = 0;
            conn.confirmed = true;
            let same = previous.as_deref() == Some(connection_id.as_str());
            tracing::debug!(%connection_id, "websocket hello");
            if self
                .emit(WsItem::Connected {
                    connection_id: connection_id.clone(),
                    resumed: same,
                })
                .await
            {
                return Some(End::Stop);
            }
            if let Some(previous) = previous.filter(|_| !same) {
                let reason = ResyncReason::NewConnection {
                    previous,
                    new: connection_id.clone(),
                };
                if self.emit(WsItem::Resync { reason }).await {
                    return Some(End::Stop);
                }
            }
            return None;
        }

        if let Some(seq) = ev.seq {
            // Events before the first hello cannot be placed; ignore them.
            self.connection_id.as_ref()?;
            if seq < self.next_seq {
                return None; // replayed duplicate
            }
            if seq > self.next_seq {
                let reason = ResyncReason::SequenceGap {
                    expected: self.next_seq,
                    received: seq,
                };
                tracing::debug!(
                    expected = self.next_seq,
                    received = seq,
                    "websocket seq gap"
                );
                if self.emit(WsItem::Resync { reason }).await {
                    return Some(End::Stop);
                }
                return Some(End::Failed {
                    error: Error::WebSocket(format!(
                        "sequence gap: expected {}, received {seq}",
                        self.next_seq
                    )),
                    immediate: true,
                });
            }
            self.next_seq = seq.saturating_add(1);
            if !conn.confirmed
                && let Some(end) = self.confirm_resume(conn).await
            {
                return Some(end);
            }
        }
        self.emit(WsItem::Event(ev)).await.then_some(End::Stop)
    }
}

fn failed(error: Error) -> End {
    End::Failed {
        error,
        immediate: false,
    }
}

/// Sleep until `at`; never wakes for `None` (the `select!` branch is disabled then anyway).
async fn sleep_until_or_never(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// Per-connection state.
struct Conn {
    /// `Connected` was emitted for this connection.
    confirmed: bool,
    /// Last action `seq` used (actions are numbered from 1 per connection).
    action_seq: i64,
    outstanding_ping: Option<i64>,
    /// When the outstanding ping was sent (the pong deadline runs from here).
    ping_sent_at: Option<tokio::time::Instant>,
    pending: HashMap<i64, oneshot::Sender<Result<WsResponse>>>,
}

impl Conn {
    fn new() -> Self {
        Self {
            confirmed: false,
            action_seq: 0,
            outstanding_ping: None,
            ping_sent_at: None,
            pending: HashMap::new(),
        }
    }

    fn ping_sent(&mut self, seq: i64) {
        self.outstanding_ping = Some(seq);
        self.ping_sent_at = Some(tokio::time::Instant::now());
    }

    async fn send_action(
        &mut self,
        socket: &mut Socket,
        action: &str,
        data: serde_json::Value,
        reply: Option<oneshot::Sender<Result<WsResponse>>>,
    ) -> Result<i64> {
        self.action_seq += 1;
        let seq = self.action_seq;
        let frame = serde_json::json!({ "seq": seq, "action": action, "data": data });
        // Always a text frame: binary frames are decoded as MessagePack (trap 30).
        socket
            .send(Message::text(frame.to_string()))
            .await
            .map_err(|e| Error::WebSocket(e.to_string()))?;
        if let Some(reply) = reply {
            self.pending.insert(seq, reply);
        }
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_like_the_webapp() {
        let c = WsConfig::default();
        assert_eq!(c.backoff(1), Duration::from_secs(3));
        assert_eq!(c.backoff(7), Duration::from_secs(3));
        assert_eq!(c.backoff(8), Duration::from_secs(3 * 64));
        assert_eq!(c.backoff(50), Duration::from_secs(300));
        assert_eq!(c.backoff(u32::MAX), Duration::from_secs(300));
        let j = c.backoff_with_jitter(1);
        assert!(j >= Duration::from_secs(3) && j <= Duration::from_secs(5));
    }

    fn task() -> (Task, mpsc::Receiver<WsItem>) {
        let (items, rx) = mpsc::channel(64);
        let (_cmd_tx, cmds) = mpsc::channel(1);
        let client = Client::new("http://127.0.0.1:9").unwrap();
        let task = Task {
            client,
            config: WsConfig::default(),
            items,
            cmds,
            connection_id: None,
            next_seq: 0,
            failures: 3,
        };
        (task, rx)
    }

    fn conn() -> Conn {
        Conn::new()
    }

    fn frame(text: &str) -> Box<WsEvent> {
        match parse_frame(text).unwrap() {
            Frame::Event(e) => e,
            Frame::Response(_) => panic!("not an event"),
        }
    }

    fn hello(id: &str) -> Box<WsEvent> {
        frame(&format!(
            r#"{{"event":"hello","data":{{"connection_id":"{id}"}},"seq":0}}"#
        ))
    }

    fn typing(seq: i64) -> Box<WsEvent> {
        frame(&format!(r#"{{"event":"typing","data":{{}},"seq":{seq}}}"#))
    }

    fn drain(rx: &mut mpsc::Receiver<WsItem>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(item) = rx.try_recv() {
            out.push(match item {
                WsItem::Connected {
                    connection_id,
                    resumed,
                } => format!("connected {connection_id} {resumed}"),
                WsItem::Event(ev) => format!("event {}", ev.seq.unwrap_or(-1)),
                WsItem::Resync { reason } => format!("resync {reason:?}"),
                WsItem::Disconnected { .. } => "disconnected".into(),
            });
        }
        out
    }

    #[tokio::test]
    async fn sequence_tracking_duplicates_gaps_and_new_connections() {
        let (mut t, mut rx) = task();
        let mut c = conn();
        // Events before the first hello are ignored.
        assert!(t.on_event(&mut c, typing(3)).await.is_none());
        assert!(t.on_event(&mut c, hello("A")).await.is_none());
        assert_eq!(t.failures, 0);
        for seq in [1, 2, 2, 1, 3] {
            assert!(t.on_event(&mut c, typing(seq)).await.is_none());
        }
        assert_eq!(
            drain(&mut rx),
            ["connected A false", "event 1", "event 2", "event 3"]
        );
        assert_eq!(t.next_seq, 4);

        // A gap: resync, then an immediate reconnect that keeps id and next seq for resume.
        let end = t.on_event(&mut c, typing(6)).await;
        assert!(matches!(
            end,
            Some(End::Failed {
                immediate: true,
                ..
            })
        ));
        assert_eq!(
            drain(&mut rx),
            ["resync SequenceGap { expected: 4, received: 6 }"]
        );
        assert_eq!((t.connection_id.as_deref(), t.next_seq), (Some("A"), 4));

        // Resumed: the first event with the expected seq confirms it.
        let mut c = conn();
        assert!(t.on_event(&mut c, typing(4)).await.is_none());
        assert_eq!(drain(&mut rx), ["connected A true", "event 4"]);

        // Resume refused: a hello with a new id means resync.
        let mut c = conn();
        assert!(t.on_event(&mut c, hello("B")).await.is_none());
        assert!(t.on_event(&mut c, typing(1)).await.is_none());
        assert_eq!(
            drain(&mut rx),
            [
                "connected B false",
                "resync NewConnection { previous: \"A\", new: \"B\" }",
                "event 1"
            ]
        );
    }

    #[tokio::test]
    async fn probe_response_confirms_resume_and_answers_requests() {
        let (mut t, mut rx) = task();
        t.connection_id = Some("A".into());
        t.next_seq = 9;
        let mut c = conn();
        c.outstanding_ping = Some(1);
        let (tx, mut reply) = oneshot::channel();
        c.pending.insert(2, tx);
        let resp = |seq| WsResponse {
            status: "OK".into(),
            seq_reply: seq,
            data: serde_json::Value::Null,
            error_id: None,
        };
        assert!(t.on_response(&mut c, resp(1)).await.is_none());
        assert_eq!(c.outstanding_ping, None);
        assert_eq!(drain(&mut rx), ["connected A true"]);
        assert!(t.on_response(&mut c, resp(2)).await.is_none());
        assert_eq!(reply.try_recv().unwrap().unwrap().seq_reply, 2);
        assert!(drain(&mut rx).is_empty());
    }

    #[tokio::test]
    async fn dropped_receiver_stops_the_task() {
        let (mut t, rx) = task();
        drop(rx);
        let mut c = conn();
        assert!(matches!(
            t.on_event(&mut c, hello("A")).await,
            Some(End::Stop)
        ));
    }

    /// A WebSocket server on loopback that says `hello`, never answers an action, and (if
    /// `chatter` is set) sends an event that often.
    async fn mute_server(chatter: Option<Duration>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let hello = r#"{"event":"hello","data":{"connection_id":"mute"},"seq":0}"#;
            ws.send(Message::text(hello)).await.unwrap();
            let mut seq = 1;
            let mut tick = tokio::time::interval(chatter.unwrap_or(Duration::from_secs(3600)));
            tick.tick().await;
            loop {
                tokio::select! {
                    msg = ws.next() => if !matches!(msg, Some(Ok(_))) { return },
                    _ = tick.tick(), if chatter.is_some() => {
                        let ev = format!(r#"{{"event":"typing","data":{{}},"seq":{seq}}}"#);
                        seq += 1;
                        if ws.send(Message::text(ev)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        url
    }

    /// Time from `Connected` to `Disconnected`, and the error.
    async fn time_to_disconnect(config: WsConfig, chatter: Option<Duration>) -> (Duration, String) {
        let url = mute_server(chatter).await;
        let client = Client::new(url).unwrap().with_token("t");
        let (handle, mut rx) = WsClient::connect(client, config);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut connected_at = None;
        loop {
            let item = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("no disconnect within 10 s")
                .expect("task ended");
            match item {
                WsItem::Connected { .. } => connected_at = Some(tokio::time::Instant::now()),
                WsItem::Disconnected { error } => {
                    let at = connected_at.expect("disconnected before connecting");
                    handle.close().await;
                    return (at.elapsed(), error.to_string());
                }
                _ => {}
            }
        }
    }

    /// T-8: a server that goes silent is declared dead `pong_timeout` after the first ping,
    /// not one whole ping period later.
    #[tokio::test]
    async fn silent_socket_dies_at_the_pong_deadline() {
        let config = WsConfig {
            ping_interval: Duration::from_millis(300),
            pong_timeout: Duration::from_millis(100),
            ..WsConfig::default()
        };
        let (took, error) = time_to_disconnect(config, None).await;
        assert!(error.contains("nothing received within 100ms"), "{error}");
        // ping at 300 ms + 100 ms deadline; the next ping would only be due at 600 ms.
        assert!(took >= Duration::from_millis(380), "{took:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
    }

    /// Frames arriving count as liveness (a busy link is not dead), but a ping still
    /// unanswered when the next one is due ends the socket.
    #[tokio::test]
    async fn frames_keep_the_socket_alive_until_the_next_ping_is_due() {
        let config = WsConfig {
            ping_interval: Duration::from_millis(300),
            pong_timeout: Duration::from_millis(100),
            ..WsConfig::default()
        };
        let (took, error) = time_to_disconnect(config, Some(Duration::from_millis(20))).await;
        assert!(
            error.contains("previous ping was never answered"),
            "{error}"
        );
        assert!(took >= Duration::from_millis(580), "{took:?}");
    }

    #[test]
    fn presence_shape() {
        let p = Presence {
            channel_id: Some("c".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"channel_id": "c", "is_thread_view": false})
        );
    }
}
