//! Fault and latency injection, and the one middleware around the whole router (OWNED BY THE WS
//! WORK).
//!
//! Why it lives in mmsim: `tc netem`, nftables and a Toxiproxy server are not available on our
//! machines (research `reliability-security-performance.md` finding 10, §A6), so faults are hooks
//! in the simulator, settable at runtime from Rust (`sim.inner().faults`, plus the `Sim` methods
//! below) or over HTTP (`/mmsim/admin/faults`).
//!
//! [`layer`] wraps every route, in this order (outermost first):
//! metrics counting → rate limiting → fault injection (outage, 429 storm, 5xx) → latency →
//! handler. The admin routes under `/mmsim/` (faults, metrics, rate limit, and the driver's) are
//! neither counted, limited, faulted nor delayed.
//!
//! Latency: `rtt` (network round trip) + `fixed_latency` (benchmarks use 20 ms) + in "realistic"
//! mode a per-endpoint server time drawn from a log-normal distribution fitted to the real
//! server's measured average and p99 (Mattermost's 6,500-user bounded load test, v11.8.0-rc3;
//! research §A1 "Regression discipline", §B3), times `latency_scale`.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::Sim;
use crate::metrics::UNMATCHED_ROUTE;
use crate::ratelimit::{Decision, RateLimitSettings};

/// Average and 99th percentile of a server-side time, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyProfile {
    pub avg_ms: f64,
    pub p99_ms: f64,
}

impl LatencyProfile {
    /// Log-normal parameters `(mu, sigma)` with this mean and 99th percentile:
    /// mean = exp(mu + sigma²/2), p99 = exp(mu + z·sigma), z = 2.3263.
    fn lognormal(self) -> Option<(f64, f64)> {
        const Z99: f64 = 2.326_347_874;
        if self.avg_ms <= 0.0 {
            return None;
        }
        let ratio = (self.p99_ms / self.avg_ms).max(1.0);
        let disc = Z99 * Z99 - 2.0 * ratio.ln();
        let sigma = if disc > 0.0 { Z99 - disc.sqrt() } else { Z99 };
        Some((self.avg_ms.ln() - sigma * sigma / 2.0, sigma))
    }

    /// One draw, in milliseconds.
    fn sample(self, rng: &mut StdRng) -> f64 {
        let Some((mu, sigma)) = self.lognormal() else {
            return 0.0;
        };
        // Box–Muller.
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random();
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (mu + sigma * normal).exp()
    }
}

/// Server time of one endpoint in realistic mode. `route` is the route template with any
/// `{param}` segment written `*` (so it matches whatever the parameter is named).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointLatency {
    /// The server's handler name, for people.
    pub name: String,
    pub method: String,
    pub route: String,
    #[serde(flatten)]
    pub profile: LatencyProfile,
}

/// The real server's measured times (avg / p99 ms) for the endpoints ThreadDesk leans on
/// (research §A1, source [S3]).
#[must_use]
pub fn measured_endpoint_latencies() -> Vec<EndpointLatency> {
    let e = |name: &str, method: &str, route: &str, avg_ms: f64, p99_ms: f64| EndpointLatency {
        name: name.into(),
        method: method.into(),
        route: route.into(),
        profile: LatencyProfile { avg_ms, p99_ms },
    };
    vec![
        e(
            "getThreadsForUser",
            "GET",
            "/api/v4/users/*/teams/*/threads",
            4.0,
            20.0,
        ),
        e("getPostThread", "GET", "/api/v4/posts/*/thread", 11.0, 25.0),
        e(
            "getTeamsUnreadForUser",
            "GET",
            "/api/v4/users/*/teams/unread",
            5.0,
            30.0,
        ),
        e(
            "updateReadStateThreadByUser",
            "PUT",
            "/api/v4/users/*/teams/*/threads/*/read/*",
            32.0,
            50.0,
        ),
        e(
            "getPreferences",
            "GET",
            "/api/v4/users/*/preferences",
            3.0,
            23.0,
        ),
        e(
            "updatePreferences",
            "PUT",
            "/api/v4/users/*/preferences",
            9.0,
            24.0,
        ),
        e(
            "viewChannel",
            "POST",
            "/api/v4/channels/members/*/view",
            12.0,
            33.0,
        ),
        e("createPost", "POST", "/api/v4/posts", 148.0, 613.0),
    ]
}

/// How an outage looks to clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageMode {
    /// A proxy in front of a dead server: `503 Service Unavailable` (plain text).
    #[default]
    Http503,
    /// The connection dies mid-response: the client sees a transport error, no usable response.
    Reset,
}

/// The runtime-settable knobs (JSON of `GET /mmsim/admin/faults`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultSettings {
    /// Network round-trip time added to every request, ms.
    pub rtt_ms: u64,
    /// Fixed server time added to every request, ms (benchmarks use 20).
    pub fixed_latency_ms: u64,
    /// Per-endpoint server time following the real server's distributions (off by default).
    pub realistic_latency: bool,
    /// Multiplies realistic server times (0.1 = ten times faster than production).
    pub latency_scale: f64,
    pub endpoint_latency: Vec<EndpointLatency>,
    /// Realistic time for endpoints not in the table (`None` = 0).
    pub default_latency: Option<LatencyProfile>,
    /// Probability (0–1) that a request fails with `error_status`.
    pub error_rate: f64,
    /// The next N matching requests fail with `error_status`.
    pub fail_next: u32,
    /// Status of injected errors (500, 502, 503, 504 …).
    pub error_status: u16,
    /// Only requests whose path starts with this are failed (`None` = all).
    pub error_route_prefix: Option<String>,
    /// The next N requests with `lose_response_method` and exactly `lose_response_path` are
    /// handled (the server commits them) and then their response is lost: the connection is
    /// reset, so the client cannot tell whether the request took effect (research T-2).
    pub lose_response_next: u32,
    pub lose_response_method: String,
    pub lose_response_path: String,
}

impl Default for FaultSettings {
    fn default() -> Self {
        Self {
            rtt_ms: 0,
            fixed_latency_ms: 0,
            realistic_latency: false,
            latency_scale: 1.0,
            endpoint_latency: measured_endpoint_latencies(),
            default_latency: None,
            error_rate: 0.0,
            fail_next: 0,
            error_status: 500,
            error_route_prefix: None,
            lose_response_next: 0,
            lose_response_method: String::new(),
            lose_response_path: String::new(),
        }
    }
}

/// Knobs plus the timed faults, as the admin API shows them.
#[derive(Clone, Debug, Serialize)]
pub struct FaultStatus {
    #[serde(flatten)]
    pub settings: FaultSettings,
    /// Remaining 429-storm time, ms (0 = none).
    pub storm_remaining_ms: u64,
    /// Remaining outage time, ms (0 = none).
    pub outage_remaining_ms: u64,
    pub outage_mode: OutageMode,
}

/// A partial update (`PUT /mmsim/admin/faults`): absent fields are left as they are.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct FaultPatch {
    pub rtt_ms: Option<u64>,
    pub fixed_latency_ms: Option<u64>,
    pub realistic_latency: Option<bool>,
    pub latency_scale: Option<f64>,
    pub endpoint_latency: Option<Vec<EndpointLatency>>,
    pub default_latency: Option<Option<LatencyProfile>>,
    pub error_rate: Option<f64>,
    pub fail_next: Option<u32>,
    pub error_status: Option<u16>,
    pub error_route_prefix: Option<Option<String>>,
    pub lose_response_next: Option<u32>,
    pub lose_response_method: Option<String>,
    pub lose_response_path: Option<String>,
    /// Start a 429 storm of this many ms (0 ends it).
    pub storm_ms: Option<u64>,
    /// Start an outage of this many ms (0 ends it).
    pub outage_ms: Option<u64>,
    pub outage_mode: Option<OutageMode>,
}

struct FaultState {
    settings: FaultSettings,
    storm_until: Option<Instant>,
    outage_until: Option<Instant>,
    outage_mode: OutageMode,
    rng: StdRng,
}

/// The simulator's fault knobs. Everything can change while requests are in flight.
pub struct Faults {
    state: Mutex<FaultState>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            state: Mutex::new(FaultState {
                settings: FaultSettings::default(),
                storm_until: None,
                outage_until: None,
                outage_mode: OutageMode::default(),
                rng: StdRng::seed_from_u64(1),
            }),
        }
    }
}

/// What the middleware decided for one request.
enum Verdict {
    Pass(Duration),
    Storm(Duration),
    Outage(OutageMode),
    Fail(u16),
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The knobs.
    #[must_use]
    pub fn settings(&self) -> FaultSettings {
        self.lock().settings.clone()
    }

    /// Knobs plus timed faults.
    #[must_use]
    pub fn status(&self) -> FaultStatus {
        let st = self.lock();
        let now = Instant::now();
        let left =
            |until: Option<Instant>| until.map_or(0, |u| ms(u.saturating_duration_since(now)));
        FaultStatus {
            settings: st.settings.clone(),
            storm_remaining_ms: left(st.storm_until),
            outage_remaining_ms: left(st.outage_until),
            outage_mode: st.outage_mode,
        }
    }

    /// Change the knobs in place.
    pub fn update(&self, change: impl FnOnce(&mut FaultSettings)) {
        change(&mut self.lock().settings);
    }

    /// Back to no faults at all (the default table of endpoint times is kept).
    pub fn reset(&self) {
        let mut st = self.lock();
        st.settings = FaultSettings::default();
        st.storm_until = None;
        st.outage_until = None;
        st.outage_mode = OutageMode::default();
    }

    /// Reseed the latency/error random draws (deterministic runs).
    pub fn set_seed(&self, seed: u64) {
        self.lock().rng = StdRng::seed_from_u64(seed);
    }

    /// Network round-trip time added to every request.
    pub fn set_rtt(&self, rtt: Duration) {
        self.update(|s| s.rtt_ms = ms(rtt));
    }

    /// Fixed server time added to every request (benchmarks: 20 ms).
    pub fn set_latency(&self, latency: Duration) {
        self.update(|s| s.fixed_latency_ms = ms(latency));
    }

    /// Per-endpoint realistic server times on/off, with a scale factor (1.0 = production).
    pub fn set_realistic_latency(&self, on: bool, scale: f64) {
        self.update(|s| {
            s.realistic_latency = on;
            s.latency_scale = scale;
        });
    }

    /// Set (or add) the realistic time of one endpoint; `route` as in [`EndpointLatency`].
    pub fn set_endpoint_latency(&self, method: &str, route: &str, profile: LatencyProfile) {
        self.update(|s| {
            if let Some(e) = s
                .endpoint_latency
                .iter_mut()
                .find(|e| e.method == method && e.route == route)
            {
                e.profile = profile;
            } else {
                s.endpoint_latency.push(EndpointLatency {
                    name: String::new(),
                    method: method.into(),
                    route: route.into(),
                    profile,
                });
            }
        });
    }

    /// Fail a fraction (0–1) of requests with `status`.
    pub fn set_error_rate(&self, rate: f64, status: u16) {
        self.update(|s| {
            s.error_rate = rate.clamp(0.0, 1.0);
            s.error_status = status;
        });
    }

    /// Fail the next `n` matching requests with `status`.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.update(|s| {
            s.fail_next = n;
            s.error_status = status;
        });
    }

    /// Restrict injected errors to paths starting with `prefix`.
    pub fn set_error_route_prefix(&self, prefix: Option<&str>) {
        self.update(|s| s.error_route_prefix = prefix.map(str::to_owned));
    }

    /// Commit the next `n` requests `method path` (exact path, e.g. `POST /api/v4/posts`), then
    /// lose their responses (connection reset): an unknown outcome after the commit (T-2).
    pub fn lose_next_responses(&self, n: u32, method: &str, path: &str) {
        self.update(|s| {
            s.lose_response_next = n;
            s.lose_response_method = method.to_ascii_uppercase();
            s.lose_response_path = path.to_owned();
        });
    }

    /// Whether the response of this (already handled) request is to be lost; counts it.
    fn take_lost_response(&self, method: &str, path: &str) -> bool {
        let mut st = self.lock();
        let s = &mut st.settings;
        if s.lose_response_next > 0
            && s.lose_response_method.eq_ignore_ascii_case(method)
            && s.lose_response_path == path
        {
            s.lose_response_next -= 1;
            return true;
        }
        false
    }

    /// Answer every request with a plain-text 429 for `duration`.
    pub fn rate_limit_storm(&self, duration: Duration) {
        self.lock().storm_until = (!duration.is_zero()).then(|| Instant::now() + duration);
    }

    /// Refuse every request for `duration` (503 or connection reset). See also
    /// [`Sim::outage`], which also drops the WebSockets.
    pub fn outage(&self, duration: Duration, mode: OutageMode) {
        let mut st = self.lock();
        st.outage_until = (!duration.is_zero()).then(|| Instant::now() + duration);
        st.outage_mode = mode;
    }

    /// End an outage now.
    pub fn end_outage(&self) {
        self.lock().outage_until = None;
    }

    /// Whether an outage is in progress.
    #[must_use]
    pub fn in_outage(&self) -> bool {
        self.lock().outage_until.is_some_and(|u| u > Instant::now())
    }

    /// Apply a partial update.
    pub fn apply(&self, patch: FaultPatch) {
        let mut st = self.lock();
        let s = &mut st.settings;
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = patch.$f { s.$f = v; } )* };
        }
        set!(
            rtt_ms,
            fixed_latency_ms,
            realistic_latency,
            latency_scale,
            endpoint_latency,
            default_latency,
            error_rate,
            fail_next,
            error_status,
            error_route_prefix,
            lose_response_next,
            lose_response_method,
            lose_response_path
        );
        s.error_rate = s.error_rate.clamp(0.0, 1.0);
        let now = Instant::now();
        if let Some(storm) = patch.storm_ms {
            st.storm_until = (storm > 0).then(|| now + Duration::from_millis(storm));
        }
        if let Some(mode) = patch.outage_mode {
            st.outage_mode = mode;
        }
        if let Some(outage) = patch.outage_ms {
            st.outage_until = (outage > 0).then(|| now + Duration::from_millis(outage));
        }
    }

    /// Decide the fate of one request.
    fn judge(&self, method: &str, route: &str, path: &str) -> Verdict {
        let mut st = self.lock();
        let now = Instant::now();
        if let Some(until) = st.outage_until {
            if until > now {
                return Verdict::Outage(st.outage_mode);
            }
            st.outage_until = None;
        }
        if let Some(until) = st.storm_until {
            if until > now {
                return Verdict::Storm(until - now);
            }
            st.storm_until = None;
        }
        let s = &st.settings;
        let matches = s
            .error_route_prefix
            .as_deref()
            .is_none_or(|p| path.starts_with(p));
        if matches && st.settings.fail_next > 0 {
            st.settings.fail_next -= 1;
            return Verdict::Fail(st.settings.error_status);
        }
        if matches && st.settings.error_rate > 0.0 {
            let draw: f64 = st.rng.random();
            if draw < st.settings.error_rate {
                return Verdict::Fail(st.settings.error_status);
            }
        }
        let s = st.settings.clone();
        let mut delay_ms = (s.rtt_ms + s.fixed_latency_ms) as f64;
        if s.realistic_latency {
            let normalized = normalize_route(route);
            let profile = s
                .endpoint_latency
                .iter()
                .find(|e| e.method.eq_ignore_ascii_case(method) && e.route == normalized)
                .map(|e| e.profile)
                .or(s.default_latency);
            if let Some(profile) = profile {
                delay_ms += profile.sample(&mut st.rng) * s.latency_scale.max(0.0);
            }
        }
        Verdict::Pass(Duration::from_secs_f64(delay_ms.max(0.0) / 1000.0))
    }
}

/// `/api/v4/users/{user_id}/teams` → `/api/v4/users/*/teams`.
fn normalize_route(route: &str) -> String {
    route
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "*"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// An injected server error: AppError JSON for 500/503 (as the real server's handlers answer),
/// plain text for gateway errors (what a proxy in front of it answers).
fn injected_error(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status {
        500 | 503 => {
            let (id, message) = if status == 503 {
                (
                    "api.context.server_busy.app_error",
                    "Server is busy, non-critical services are temporarily unavailable.",
                )
            } else {
                (
                    "mmsim.fault.injected.app_error",
                    "An internal error occurred (injected by mmsim).",
                )
            };
            let body = serde_json::json!({
                "id": id,
                "message": message,
                "detailed_error": "",
                "request_id": crate::events::new_id(),
                "status_code": status,
            });
            (
                code,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        _ => plain(code),
    }
}

fn plain(code: StatusCode) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", code.canonical_reason().unwrap_or("Error")),
    )
        .into_response()
}

/// A 429 from the storm: the real limiter's shape (plain text, `Retry-After`, `X-RateLimit-*`).
fn storm_response(sim: &Sim, left: Duration) -> Response {
    let limit = sim
        .inner()
        .ratelimit
        .settings()
        .unwrap_or_default()
        .max_burst
        + 1;
    Decision {
        limited: true,
        limit,
        remaining: 0,
        reset_after: left,
        retry_after: Some(left),
    }
    .into_response()
}

/// A response whose body fails at once: hyper aborts the connection.
fn reset_response() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "mmsim outage",
        ))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp
}

/// Wrap the whole router: counting, rate limiting, faults, latency; then add the admin routes
/// (outside the middleware).
pub fn layer(app: axum::Router<Sim>, sim: Sim) -> axum::Router<Sim> {
    app.layer(axum::middleware::from_fn_with_state(sim, middleware))
        .merge(admin_routes())
}

async fn middleware(State(sim): State<Sim>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/mmsim/") {
        return next.run(req).await;
    }
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |m| m.as_str().to_owned());

    let resp = limited_faulted(&sim, req, next, &method, &route, &path).await;

    // Metrics (outermost): count the request, then the body bytes as they are written.
    let metrics = &sim.inner().metrics;
    metrics.record_request(&method, &route, resp.status().as_u16());
    count_body(sim.clone(), resp, method, route)
}

async fn limited_faulted(
    sim: &Sim,
    req: Request,
    next: Next,
    method: &str,
    route: &str,
    path: &str,
) -> Response {
    // Rate limiting (headers on every response of the limited path).
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let decision = sim.inner().ratelimit.check(ip, req.headers());
    if let Some(d) = decision.filter(|d| d.limited) {
        tracing::debug!(route = %route, "mmsim: rate limited");
        return d.into_response();
    }

    let mut resp = match sim.inner().faults.judge(method, route, path) {
        Verdict::Outage(OutageMode::Http503) => plain(StatusCode::SERVICE_UNAVAILABLE),
        Verdict::Outage(OutageMode::Reset) => reset_response(),
        Verdict::Storm(left) => storm_response(sim, left),
        Verdict::Fail(status) => {
            tracing::debug!(route = %route, status, "mmsim: injected error");
            injected_error(status)
        }
        Verdict::Pass(delay) => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let resp = next.run(req).await;
            if sim.inner().faults.take_lost_response(method, path) {
                tracing::debug!(route = %route, "mmsim: response lost after the handler ran");
                // Drain the handler's body first, so that whatever it streams has happened.
                let _ = axum::body::to_bytes(resp.into_body(), usize::MAX).await;
                return reset_response();
            }
            resp
        }
    };
    if let Some(d) = decision {
        d.apply_headers(resp.headers_mut());
    }
    resp
}

/// Count response body bytes. Bodies of known size are counted at once (and keep their
/// `Content-Length`); streamed bodies are counted chunk by chunk as they are written.
fn count_body(sim: Sim, resp: Response, method: String, route: String) -> Response {
    let (parts, body) = resp.into_parts();
    if let Some(len) = body.size_hint().exact() {
        sim.inner().metrics.record_bytes(&method, &route, len);
        return Response::from_parts(parts, body);
    }
    let stream = body.into_data_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            sim.inner()
                .metrics
                .record_bytes(&method, &route, bytes.len() as u64);
        }
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

// ---------------------------------------------------------------------------------------------
// Rust API on `Sim` for faults that involve the WebSocket hub.

impl Sim {
    /// Drop every WebSocket like a network failure (no close frame); connections stay
    /// resumable. Returns how many sockets were dropped.
    pub fn drop_all_websockets(&self) -> usize {
        self.inner().hub.drop_connections(None)
    }

    /// Drop the WebSockets of one user.
    pub fn drop_websockets_of(&self, user_id: &str) -> usize {
        self.inner().hub.drop_connections(Some(user_id))
    }

    /// Lose every replay buffer (as after a server restart): resumes get a new connection id
    /// and a `hello`.
    pub fn lose_replay_buffers(&self) {
        self.inner().hub.lose_replay_buffers();
    }

    /// An outage: every HTTP request (and WebSocket upgrade) is refused with 503 for
    /// `duration`, and every open WebSocket is dropped now (resumable afterwards).
    pub fn outage(&self, duration: Duration) {
        self.outage_with(duration, OutageMode::Http503);
    }

    /// [`Sim::outage`] with a choice of how requests are refused.
    pub fn outage_with(&self, duration: Duration, mode: OutageMode) {
        self.inner().faults.outage(duration, mode);
        self.inner().hub.drop_connections(None);
    }
}

// ---------------------------------------------------------------------------------------------
// Admin HTTP API (not counted, not rate limited, not faulted).

/// `/mmsim/admin/faults` (GET, PUT partial update, DELETE reset), its actions, the metrics and
/// the rate-limit switch.
pub fn admin_routes() -> axum::Router<Sim> {
    axum::Router::new()
        .route(
            "/mmsim/admin/faults",
            get(get_faults).put(put_faults).delete(delete_faults),
        )
        .route("/mmsim/admin/faults/drop_websockets", post(drop_websockets))
        .route(
            "/mmsim/admin/faults/lose_replay_buffers",
            post(lose_buffers),
        )
        .route(
            "/mmsim/admin/metrics",
            get(get_metrics).delete(delete_metrics),
        )
        .route(
            "/mmsim/admin/ratelimit",
            get(get_ratelimit).put(put_ratelimit),
        )
        .route("/mmsim/admin/websockets/{user_id}", get(get_connections))
}

async fn get_faults(State(sim): State<Sim>) -> Json<FaultStatus> {
    Json(sim.inner().faults.status())
}

async fn put_faults(State(sim): State<Sim>, Json(patch): Json<FaultPatch>) -> Json<FaultStatus> {
    let outage = patch.outage_ms.is_some_and(|ms| ms > 0);
    sim.inner().faults.apply(patch);
    if outage {
        sim.inner().hub.drop_connections(None);
    }
    Json(sim.inner().faults.status())
}

async fn delete_faults(State(sim): State<Sim>) -> Json<FaultStatus> {
    sim.inner().faults.reset();
    Json(sim.inner().faults.status())
}

#[derive(Deserialize, Default)]
struct DropRequest {
    user_id: Option<String>,
}

async fn drop_websockets(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    let req: DropRequest = if body.is_empty() {
        DropRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(_) => return plain(StatusCode::BAD_REQUEST),
        }
    };
    let dropped = sim.inner().hub.drop_connections(req.user_id.as_deref());
    Json(serde_json::json!({ "dropped": dropped })).into_response()
}

async fn lose_buffers(State(sim): State<Sim>) -> Json<serde_json::Value> {
    sim.lose_replay_buffers();
    Json(serde_json::json!({ "status": "OK" }))
}

async fn get_metrics(State(sim): State<Sim>) -> Json<crate::metrics::MetricsSnapshot> {
    Json(sim.inner().metrics.snapshot())
}

async fn delete_metrics(State(sim): State<Sim>) -> Json<crate::metrics::MetricsSnapshot> {
    sim.inner().metrics.reset();
    Json(sim.inner().metrics.snapshot())
}

async fn get_ratelimit(State(sim): State<Sim>) -> Json<Option<RateLimitSettings>> {
    Json(sim.inner().ratelimit.settings())
}

/// Body: settings (missing fields take the real defaults) or `null` to disable.
async fn put_ratelimit(
    State(sim): State<Sim>,
    Json(settings): Json<Option<RateLimitSettings>>,
) -> Json<Option<RateLimitSettings>> {
    sim.inner().ratelimit.set_settings(settings);
    Json(sim.inner().ratelimit.settings())
}

async fn get_connections(
    State(sim): State<Sim>,
    axum::extract::Path(user_id): axum::extract::Path<String>,
) -> Json<Vec<crate::events::ConnectionInfo>> {
    Json(sim.inner().hub.connections(&user_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lognormal_fit_matches_mean_and_p99() {
        let p = LatencyProfile {
            avg_ms: 148.0,
            p99_ms: 613.0,
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut draws: Vec<f64> = (0..200_000).map(|_| p.sample(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        draws.sort_by(f64::total_cmp);
        let p99 = draws[draws.len() * 99 / 100];
        assert!((mean - 148.0).abs() < 5.0, "mean {mean}");
        assert!((p99 - 613.0).abs() < 30.0, "p99 {p99}");
    }

    #[test]
    fn routes_normalize() {
        assert_eq!(
            normalize_route("/api/v4/users/{user_id}/teams/{team_id}/threads"),
            "/api/v4/users/*/teams/*/threads"
        );
    }
}
