//! WebSocket events and the hub that delivers them (OWNED BY THE WS WORK; the REST/state code
//! only builds [`Delivery`] values and calls [`Hub::publish`]).
//!
//! The publisher resolves recipients (channel/team members, one user) at publish time, because
//! only the state knows memberships; the hub applies the rest of the real server's delivery filter,
//! numbers events per connection and keeps the dead queue for resumption.
//!
//! How the real server does it (all in `mattermost/mattermost`, `server/channels/app/platform/`;
//! summarised in `shared/research/mattermost-api.md` §6.3 and reliability finding 3):
//! - `web_conn.go`: each connection has a send queue of 256 messages (`sendQueueSize`) and a
//!   circular dead queue of the last 128 *written* events (`deadQueueSize`). Sequence numbers are
//!   assigned when an event is written (`writePump`), from 0 (the `hello`) upward; responses to
//!   client actions travel through the same queue but carry no `seq`.
//! - `web_conn.go` `ShouldSendEvent`: once the send queue holds ≥ 50 % (128), `typing`,
//!   `status_change` and `multiple_channels_viewed` are skipped for that connection (whether or not a
//!   socket is attached).
//! - `web_hub.go`: a message that does not fit the send queue closes and removes the connection
//!   (`closeAndRemoveConn`: close frame with an empty payload, no resume possible).
//! - `web_hub.go`: a dropped connection stays in the hub, inactive, still queueing events, until
//!   the reaper removes it (5 min; here: [`HubConfig::resume_window`] after the drop).
//! - `web_hub.go` `CheckConn` → `RemoveInactiveByConnectionID`: only an *inactive* connection of
//!   the *same user* can be resumed. `web_conn.go` `writePump` then decides: the requested
//!   sequence is in the dead queue → replay from it (no `hello`); it is exactly the next one →
//!   continue (no `hello`); otherwise → new connection id, dead queue cleared, `hello` with seq 0,
//!   then whatever was queued meanwhile (seq 1, 2, …). A requested sequence of 0 skips all checks
//!   and restarts numbering at 0 without a `hello` (a quirk we keep).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// `broadcast` of the event envelope, exactly as the real server serializes it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Broadcast {
    pub omit_users: Option<BTreeMap<String, bool>>,
    pub user_id: String,
    pub channel_id: String,
    pub team_id: String,
    pub connection_id: String,
    pub omit_connection_id: String,
}

/// One event as the server sends it (`seq` is added per connection by the hub).
#[derive(Clone, Debug)]
pub struct WsEvent {
    pub event: String,
    pub data: Map<String, Value>,
    pub broadcast: Broadcast,
}

/// An event plus who receives it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub event: WsEvent,
    /// User ids whose connections receive the event (`omit_users` already removed).
    pub recipients: Vec<String>,
    /// Extra `data` fields for one recipient only, e.g. `mentions` / `followers` on `posted`
    /// (the real server adds them per connection and they name only that user).
    pub per_user_data: HashMap<String, Map<String, Value>>,
}

/// Events the real server skips for a connection whose send queue is at least half full
/// (`web_conn.go` `ShouldSendEvent`).
pub const NON_CRITICAL_EVENTS: [&str; 3] = ["typing", "status_change", "multiple_channels_viewed"];

/// Events filtered by the `presence` action (`web_conn.go` `ShouldSendEvent`, feature
/// `WebSocketEventScope`; research trap 27).
const PRESENCE_SCOPED_EVENTS: [&str; 3] = ["typing", "reaction_added", "reaction_removed"];

/// The hub's limits and timings. The defaults are the real server's constants; tests shorten the
/// durations with [`Hub::set_config`].
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Send queue per connection (`sendQueueSize` 256). Full → the connection is dropped.
    pub send_queue_size: usize,
    /// Written events kept per connection for resumption (`deadQueueSize` 128).
    pub dead_queue_size: usize,
    /// How long a dropped connection stays resumable (`inactiveConnReaperInterval` 5 min).
    pub resume_window: Duration,
    /// An unauthenticated socket is closed after this (`authCheckInterval` 5 s).
    pub auth_timeout: Duration,
    /// Server ping frames (`pingInterval` 60 s).
    pub ping_interval: Duration,
    /// Read deadline, extended only by pongs (`pongWaitTime` 100 s).
    pub pong_wait: Duration,
    /// Largest inbound message (`model.SocketMaxMessageSizeKb` = 8192 bytes).
    pub max_message_size: usize,
    /// `hello.server_hostname`.
    pub server_hostname: String,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            send_queue_size: 256,
            dead_queue_size: 128,
            resume_window: Duration::from_secs(5 * 60),
            auth_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(60),
            pong_wait: Duration::from_secs(100),
            max_message_size: 8192,
            server_hostname: "mmsim".to_owned(),
        }
    }
}

/// Why the hub ended a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseKind {
    /// A network-style drop: the TCP connection goes away without a close frame. The connection
    /// stays resumable (fault injection, outage).
    Drop,
    /// The send queue overflowed: a close frame with an empty payload, the connection is removed
    /// (`web_hub.go` `closeAndRemoveConn`).
    QueueFull,
}

/// Outcome of a resume attempt, as the real server's reconnect metric labels it
/// (`web_conn.go`: `success`, `lossless`, `failure`), plus the fresh case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectOutcome {
    /// No (usable) connection id: a new connection with a `hello`.
    New,
    /// The requested sequence was in the dead queue: replayed, no `hello`.
    Replayed,
    /// Nothing was missed: continue, no `hello`.
    Lossless,
    /// Known connection but events were lost: new id, `hello` with seq 0.
    Lost,
}

/// What the socket task holds after [`Hub::connect`]: it pulls frames with [`Hub::next_frame`]
/// whenever `wake` fires and ends the socket when `kill` is cancelled.
#[derive(Debug)]
pub struct Attachment {
    pub connection_id: String,
    pub user_id: String,
    pub outcome: ConnectOutcome,
    pub generation: u64,
    pub wake: Arc<Notify>,
    /// Cancelled when the hub ends the socket; [`Attachment::close_kind`] says how.
    pub kill: CancellationToken,
    close_kind: Arc<OnceLock<CloseKind>>,
}

impl Attachment {
    /// How the hub wants the socket closed (after `kill` fired).
    #[must_use]
    pub fn close_kind(&self) -> CloseKind {
        self.close_kind.get().copied().unwrap_or(CloseKind::Drop)
    }
}

/// Why a connect request is refused (the real server upgrades, then closes the socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// `connection_id` is not a valid 26-character id.
    InvalidConnectionId,
    /// A known connection id without a (valid, non-negative) `sequence_number`.
    BadSequenceNumber,
}

/// What the socket task should do next.
#[derive(Debug)]
pub enum Next {
    /// Send this text frame.
    Frame(Arc<str>),
    /// Nothing queued: wait for `wake`.
    Idle,
    /// The hub no longer knows this attachment (dropped, replaced or removed).
    Gone,
}

/// Snapshot of one connection, for tests and the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionInfo {
    pub connection_id: String,
    pub user_id: String,
    pub active: bool,
    /// `seq` the next written event gets.
    pub next_seq: i64,
    pub queued: usize,
    pub dead_queue: usize,
    pub reuse_count: u32,
}

/// Channel/thread the client told us it is looking at (`presence` action).
#[derive(Clone, Debug, Default)]
pub struct Presence {
    pub channel_id: Option<String>,
    pub team_id: Option<String>,
    pub rhs_thread_channel_id: Option<String>,
    pub thread_view_channel_id: Option<String>,
}

impl Presence {
    /// `web_conn.go` `ShouldSendEvent` + `notInChannel`/`notInThread`: a typing/reaction event is
    /// filtered only when every set view points elsewhere; unset views let everything through.
    fn filters_out(&self, channel_id: &str) -> bool {
        let elsewhere = |view: &Option<String>| view.as_deref().is_some_and(|v| v != channel_id);
        !channel_id.is_empty()
            && elsewhere(&self.channel_id)
            && elsewhere(&self.rhs_thread_channel_id)
            && elsewhere(&self.thread_view_channel_id)
    }
}

/// An event serialized once, numbered per connection when written.
#[derive(Debug)]
struct Prepared {
    name: String,
    /// `"name"` as JSON.
    name_json: String,
    data_json: String,
    broadcast_json: String,
}

impl Prepared {
    fn new(name: &str, data: &Map<String, Value>, broadcast: &Broadcast) -> Self {
        Self {
            name: name.to_owned(),
            name_json: Value::String(name.to_owned()).to_string(),
            data_json: Value::Object(data.clone()).to_string(),
            broadcast_json: serde_json::to_string(broadcast).unwrap_or_else(|_| "{}".to_owned()),
        }
    }

    /// Hub-broadcast events use the server's precomputed form, with a space after each top-level
    /// colon (`websocket_message.go` `PrecomputeJSON`).
    fn frame(&self, seq: i64) -> String {
        format!(
            "{{\"event\": {}, \"data\": {}, \"broadcast\": {}, \"seq\": {seq}}}",
            self.name_json, self.data_json, self.broadcast_json
        )
    }
}

#[derive(Debug)]
enum Outbound {
    Event(Arc<Prepared>),
    /// The `hello`; built when written because it names the connection id current at that time.
    Hello,
    /// Sent as is, not numbered: a response to a client action, or a replayed dead-queue event
    /// (which keeps its original `seq`).
    Raw(Arc<str>),
}

struct Live {
    generation: u64,
    wake: Arc<Notify>,
    kill: CancellationToken,
    close_kind: Arc<OnceLock<CloseKind>>,
}

impl Live {
    fn close(&self, kind: CloseKind) {
        let _ = self.close_kind.set(kind);
        self.kill.cancel();
    }
}

struct Conn {
    id: String,
    user_id: String,
    next_seq: i64,
    queue: VecDeque<Outbound>,
    dead: VecDeque<(i64, Arc<str>)>,
    live: Option<Live>,
    inactive_since: Option<Instant>,
    presence: Presence,
    reuse_count: u32,
    /// Cleared by [`Hub::lose_replay_buffers`]: forget the id when the socket drops.
    resumable: bool,
}

impl Conn {
    fn wake(&self) {
        if let Some(live) = &self.live {
            live.wake.notify_one();
        }
    }

    fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            connection_id: self.id.clone(),
            user_id: self.user_id.clone(),
            active: self.live.is_some(),
            next_seq: self.next_seq,
            queued: self.queue.len(),
            dead_queue: self.dead.len(),
            reuse_count: self.reuse_count,
        }
    }
}

#[derive(Default)]
struct HubState {
    config: HubConfig,
    conns: HashMap<String, Conn>,
    by_user: HashMap<String, HashSet<String>>,
    next_generation: u64,
}

impl HubState {
    fn insert(&mut self, conn: Conn) {
        self.by_user
            .entry(conn.user_id.clone())
            .or_default()
            .insert(conn.id.clone());
        self.conns.insert(conn.id.clone(), conn);
    }

    fn remove(&mut self, id: &str) -> Option<Conn> {
        let conn = self.conns.remove(id)?;
        if let Some(ids) = self.by_user.get_mut(&conn.user_id) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_user.remove(&conn.user_id);
            }
        }
        Some(conn)
    }

    /// Remove and close a connection whose queue overflowed.
    fn close_full(&mut self, id: &str) {
        if let Some(conn) = self.remove(id) {
            tracing::debug!(conn_id = %conn.id, user_id = %conn.user_id, "ws: send queue full, connection dropped");
            if let Some(live) = conn.live {
                live.close(CloseKind::QueueFull);
            }
        }
    }

    /// The reaper: forget connections that have been inactive longer than the resume window.
    fn reap(&mut self, now: Instant) {
        let window = self.config.resume_window;
        let expired: Vec<String> = self
            .conns
            .values()
            .filter(|c| {
                c.inactive_since
                    .is_some_and(|t| now.duration_since(t) >= window)
            })
            .map(|c| c.id.clone())
            .collect();
        for id in expired {
            self.remove(&id);
        }
    }

    fn attach(&mut self, conn: &mut Conn) -> Attachment {
        self.next_generation += 1;
        let wake = Arc::new(Notify::new());
        let kill = CancellationToken::new();
        let close_kind = Arc::new(OnceLock::new());
        conn.live = Some(Live {
            generation: self.next_generation,
            wake: wake.clone(),
            kill: kill.clone(),
            close_kind: close_kind.clone(),
        });
        conn.inactive_since = None;
        // Something may be queued already (hello, events queued while disconnected).
        wake.notify_one();
        Attachment {
            connection_id: conn.id.clone(),
            user_id: conn.user_id.clone(),
            outcome: ConnectOutcome::New,
            generation: self.next_generation,
            wake,
            kill,
            close_kind,
        }
    }

    fn fresh(&mut self, user_id: &str) -> Attachment {
        let mut conn = Conn {
            id: new_id(),
            user_id: user_id.to_owned(),
            next_seq: 0,
            queue: VecDeque::from([Outbound::Hello]),
            dead: VecDeque::new(),
            live: None,
            inactive_since: None,
            presence: Presence::default(),
            reuse_count: 0,
            resumable: true,
        };
        let attachment = self.attach(&mut conn);
        self.insert(conn);
        attachment
    }
}

/// The hub: connection registry, per-connection sequence numbers, dead queues, resumption.
pub struct Hub {
    state: Mutex<HubState>,
}

impl Hub {
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: Mutex::new(HubState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Current limits and timings.
    #[must_use]
    pub fn config(&self) -> HubConfig {
        self.lock().config.clone()
    }

    /// Replace the limits and timings (applies to later operations; tests shorten the resume
    /// window, auth timeout or ping interval with it).
    pub fn set_config(&self, config: HubConfig) {
        self.lock().config = config;
    }

    /// Deliver to every live (or resumable) connection of the recipients.
    pub fn publish(&self, delivery: Delivery) {
        let Delivery {
            event,
            recipients,
            per_user_data,
        } = delivery;
        let shared = Arc::new(Prepared::new(&event.event, &event.data, &event.broadcast));
        let b = &event.broadcast;
        let non_critical = NON_CRITICAL_EVENTS.contains(&event.event.as_str());
        let presence_scoped = PRESENCE_SCOPED_EVENTS.contains(&event.event.as_str());

        let mut st = self.lock();
        st.reap(Instant::now());
        let slow = st.config.send_queue_size.div_ceil(2);
        let cap = st.config.send_queue_size;
        let mut seen = HashSet::new();
        let mut overflowed = Vec::new();
        let mut delivered = 0usize;
        for user in &recipients {
            if !seen.insert(user.as_str()) {
                continue;
            }
            // `ShouldSendEvent`: `user_id` set → only that user; `omit_users` excluded.
            if !b.user_id.is_empty() && b.user_id != *user {
                continue;
            }
            if b.omit_users.as_ref().is_some_and(|o| o.contains_key(user)) {
                continue;
            }
            let Some(ids) = st.by_user.get(user) else {
                continue;
            };
            let ids: Vec<String> = ids.iter().cloned().collect();
            let prepared = match per_user_data.get(user) {
                Some(extra) if !extra.is_empty() => {
                    let mut data = event.data.clone();
                    data.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
                    Arc::new(Prepared::new(&event.event, &data, b))
                }
                _ => shared.clone(),
            };
            for id in ids {
                let Some(conn) = st.conns.get_mut(&id) else {
                    continue;
                };
                if non_critical && conn.queue.len() >= slow {
                    continue;
                }
                if !b.connection_id.is_empty() && b.connection_id != conn.id {
                    continue;
                }
                if !b.omit_connection_id.is_empty() && b.omit_connection_id == conn.id {
                    continue;
                }
                if presence_scoped && conn.presence.filters_out(&b.channel_id) {
                    continue;
                }
                if conn.queue.len() >= cap {
                    overflowed.push(id);
                    continue;
                }
                conn.queue.push_back(Outbound::Event(prepared.clone()));
                conn.wake();
                delivered += 1;
            }
        }
        for id in overflowed {
            st.close_full(&id);
        }
        tracing::trace!(event = %event.event, connections = delivered, "ws: published");
    }

    /// Register a socket authenticated at upgrade (or by the challenge, with `resume = None`).
    ///
    /// `resume` is `(connection_id, sequence_number)` from the query string; `None` or an empty id
    /// means a fresh connection.
    ///
    /// # Errors
    /// The cases where the real server upgrades and then closes the socket at once
    /// (`web_conn.go` `PopulateWebConnConfig`).
    pub fn connect(
        &self,
        user_id: &str,
        resume: Option<(&str, Option<&str>)>,
    ) -> Result<Attachment, ConnectError> {
        let mut st = self.lock();
        st.reap(Instant::now());
        let Some((conn_id, seq_param)) = resume.filter(|(id, _)| !id.is_empty()) else {
            return Ok(st.fresh(user_id));
        };
        if !is_valid_id(conn_id) {
            return Err(ConnectError::InvalidConnectionId);
        }
        let known = st
            .conns
            .get(conn_id)
            .is_some_and(|c| c.user_id == user_id && c.live.is_none());
        if !known {
            // Unknown, reaped, another user's, or still attached: a new connection.
            return Ok(st.fresh(user_id));
        }
        // `RemoveInactiveByConnectionID` takes it out before the sequence number is checked.
        let Some(mut conn) = st.remove(conn_id) else {
            return Ok(st.fresh(user_id));
        };
        let seq = match seq_param.map(str::parse::<i64>) {
            Some(Ok(seq)) if seq >= 0 => seq,
            _ => return Err(ConnectError::BadSequenceNumber),
        };
        conn.reuse_count += 1;
        let outcome = if seq == 0 {
            // `writePump` only checks when `Sequence != 0`: numbering restarts silently.
            conn.next_seq = 0;
            ConnectOutcome::Lossless
        } else if let Some(pos) = conn.dead.iter().position(|(s, _)| *s == seq) {
            let replay: Vec<Arc<str>> =
                conn.dead.iter().skip(pos).map(|(_, f)| f.clone()).collect();
            for frame in replay.into_iter().rev() {
                conn.queue.push_front(Outbound::Raw(frame));
            }
            ConnectOutcome::Replayed
        } else if conn.dead.back().is_some_and(|(last, _)| *last != seq - 1) {
            conn.dead.clear();
            conn.id = new_id();
            conn.next_seq = 0;
            conn.queue.push_front(Outbound::Hello);
            ConnectOutcome::Lost
        } else {
            conn.next_seq = seq;
            ConnectOutcome::Lossless
        };
        tracing::debug!(user_id = %user_id, conn_id = %conn.id, ?outcome, "ws: resume");
        let mut attachment = st.attach(&mut conn);
        attachment.outcome = outcome;
        st.insert(conn);
        Ok(attachment)
    }

    /// Pull the next frame for a socket: numbers events, records them in the dead queue.
    pub fn next_frame(&self, connection_id: &str, generation: u64) -> Next {
        let mut st = self.lock();
        let dead_cap = st.config.dead_queue_size;
        let hostname = st.config.server_hostname.clone();
        let Some(conn) = st.conns.get_mut(connection_id) else {
            return Next::Gone;
        };
        if conn
            .live
            .as_ref()
            .is_none_or(|l| l.generation != generation)
        {
            return Next::Gone;
        }
        let Some(item) = conn.queue.pop_front() else {
            return Next::Idle;
        };
        let frame: Arc<str> = match item {
            Outbound::Raw(frame) => return Next::Frame(frame),
            Outbound::Hello => hello_frame(conn, &hostname).into(),
            Outbound::Event(prepared) => {
                tracing::trace!(event = %prepared.name, conn_id = %conn.id, seq = conn.next_seq, "ws: write");
                prepared.frame(conn.next_seq).into()
            }
        };
        // Recorded before the write: a frame lost in a dying socket can still be replayed.
        if dead_cap > 0 {
            if conn.dead.len() >= dead_cap {
                conn.dead.pop_front();
            }
            conn.dead.push_back((conn.next_seq, frame.clone()));
        }
        conn.next_seq += 1;
        Next::Frame(frame)
    }

    /// Queue a response to a client action on this socket's connection (same queue as events).
    pub fn respond(&self, connection_id: &str, generation: u64, response: String) {
        let mut st = self.lock();
        let cap = st.config.send_queue_size;
        let Some(conn) = st.conns.get_mut(connection_id) else {
            return;
        };
        if conn
            .live
            .as_ref()
            .is_none_or(|l| l.generation != generation)
        {
            return;
        }
        if conn.queue.len() >= cap {
            st.close_full(connection_id);
            return;
        }
        conn.queue.push_back(Outbound::Raw(response.into()));
        conn.wake();
    }

    /// The socket ended: keep the connection resumable (or forget it after a lost buffer).
    pub fn detach(&self, connection_id: &str, generation: u64) {
        let mut st = self.lock();
        let Some(conn) = st.conns.get_mut(connection_id) else {
            return;
        };
        if conn
            .live
            .as_ref()
            .is_none_or(|l| l.generation != generation)
        {
            return;
        }
        conn.live = None;
        conn.inactive_since = Some(Instant::now());
        if !conn.resumable {
            st.remove(connection_id);
        }
    }

    /// Record a `presence` action.
    pub fn set_presence(&self, connection_id: &str, update: impl FnOnce(&mut Presence)) {
        if let Some(conn) = self.lock().conns.get_mut(connection_id) {
            update(&mut conn.presence);
        }
    }

    /// Fault: drop live sockets like a network failure (no close frame). The connections stay
    /// resumable. `None` = every user. Returns how many sockets were dropped.
    pub fn drop_connections(&self, user_id: Option<&str>) -> usize {
        let mut st = self.lock();
        let now = Instant::now();
        let mut dropped = 0;
        let mut forget = Vec::new();
        for conn in st.conns.values_mut() {
            if user_id.is_some_and(|u| u != conn.user_id) {
                continue;
            }
            if let Some(live) = conn.live.take() {
                live.close(CloseKind::Drop);
                conn.inactive_since = Some(now);
                dropped += 1;
                if !conn.resumable {
                    forget.push(conn.id.clone());
                }
            }
        }
        for id in forget {
            st.remove(&id);
        }
        tracing::debug!(dropped, "ws: fault: sockets dropped");
        dropped
    }

    /// Fault: lose every replay buffer, as after a server restart. Inactive connections are
    /// forgotten (a resume gets a new id and a `hello`); live ones lose their dead queue and are
    /// forgotten when their socket drops.
    pub fn lose_replay_buffers(&self) {
        let mut st = self.lock();
        let inactive: Vec<String> = st
            .conns
            .values()
            .filter(|c| c.live.is_none())
            .map(|c| c.id.clone())
            .collect();
        for id in inactive {
            st.remove(&id);
        }
        for conn in st.conns.values_mut() {
            conn.dead.clear();
            conn.resumable = false;
        }
        tracing::debug!("ws: fault: replay buffers lost");
    }

    /// Connections of one user (live and resumable).
    #[must_use]
    pub fn connections(&self, user_id: &str) -> Vec<ConnectionInfo> {
        let mut st = self.lock();
        st.reap(Instant::now());
        let mut out: Vec<ConnectionInfo> = st
            .by_user
            .get(user_id)
            .into_iter()
            .flatten()
            .filter_map(|id| st.conns.get(id).map(Conn::info))
            .collect();
        out.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        out
    }

    /// One connection, if the hub still knows it.
    #[must_use]
    pub fn connection(&self, connection_id: &str) -> Option<ConnectionInfo> {
        let mut st = self.lock();
        st.reap(Instant::now());
        st.conns.get(connection_id).map(Conn::info)
    }

    /// Number of sockets attached right now.
    #[must_use]
    pub fn live_count(&self) -> usize {
        self.lock()
            .conns
            .values()
            .filter(|c| c.live.is_some())
            .count()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

/// The `hello` event, encoded directly (compact, trailing newline, as Go's `json.Encoder`).
fn hello_frame(conn: &Conn, hostname: &str) -> String {
    let mut data = Map::new();
    data.insert(
        "server_version".into(),
        // `{version}.{build}.{config hash}.{enterprise build}` (`createHelloMessage`); the same
        // string as `X-Version-Id` here, since mmsim is neither licensed nor an enterprise build.
        Value::String(crate::api::version_id()),
    );
    data.insert("connection_id".into(), Value::String(conn.id.clone()));
    data.insert("server_hostname".into(), Value::String(hostname.to_owned()));
    let broadcast = Broadcast {
        user_id: conn.user_id.clone(),
        ..Broadcast::default()
    };
    // Field order of Go's `webSocketEventJSON` struct: event, data, broadcast, seq.
    format!(
        "{{\"event\":\"hello\",\"data\":{},\"broadcast\":{},\"seq\":{}}}\n",
        Value::Object(data),
        serde_json::to_string(&broadcast).unwrap_or_else(|_| "{}".to_owned()),
        conn.next_seq
    )
}

/// A Mattermost id: 26 characters of z-base-32 (`model.NewId`).
#[must_use]
pub fn new_id() -> String {
    crate::model::Id::random().to_string()
}

/// `model.IsValidId`: 26 ASCII letters or digits.
#[must_use]
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 26 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, channel: &str) -> Delivery {
        Delivery {
            event: WsEvent {
                event: name.into(),
                data: Map::new(),
                broadcast: Broadcast {
                    channel_id: channel.into(),
                    ..Broadcast::default()
                },
            },
            recipients: vec!["u1".into()],
            per_user_data: HashMap::new(),
        }
    }

    fn drain(hub: &Hub, a: &Attachment) -> Vec<Value> {
        let mut out = Vec::new();
        while let Next::Frame(f) = hub.next_frame(&a.connection_id, a.generation) {
            out.push(serde_json::from_str(&f).unwrap());
        }
        out
    }

    #[test]
    fn ids_look_like_mattermost_ids() {
        let id = new_id();
        assert_eq!(id.len(), 26);
        assert!(is_valid_id(&id));
    }

    #[test]
    fn numbering_replay_and_loss() {
        let hub = Hub::new();
        let a = hub.connect("u1", None).unwrap();
        for _ in 0..3 {
            hub.publish(event("posted", "c"));
        }
        let frames = drain(&hub, &a);
        let seqs: Vec<i64> = frames.iter().map(|f| f["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
        hub.detach(&a.connection_id, a.generation);
        hub.publish(event("posted", "c"));

        let b = hub
            .connect("u1", Some((&a.connection_id, Some("2"))))
            .unwrap();
        assert_eq!(b.outcome, ConnectOutcome::Replayed);
        let seqs: Vec<i64> = drain(&hub, &b)
            .iter()
            .map(|f| f["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, [2, 3, 4]);
        hub.detach(&b.connection_id, b.generation);

        let c = hub
            .connect("u1", Some((&a.connection_id, Some("99"))))
            .unwrap();
        assert_eq!(c.outcome, ConnectOutcome::Lost);
        assert_ne!(c.connection_id, a.connection_id);
        let frames = drain(&hub, &c);
        assert_eq!(frames[0]["event"], "hello");
        assert_eq!(frames[0]["seq"], 0);
    }

    #[test]
    fn presence_filters_only_when_every_view_points_elsewhere() {
        let mut p = Presence {
            channel_id: Some("a".into()),
            ..Presence::default()
        };
        assert!(!p.filters_out("b"));
        p.rhs_thread_channel_id = Some("c".into());
        p.thread_view_channel_id = Some("d".into());
        assert!(p.filters_out("b"));
        assert!(!p.filters_out("a"));
    }
}
