//! `mmsim`: a faithful, in-memory Mattermost server (REST API v4 + WebSocket).
//!
//! It is a product part, not a test fake: paths, JSON field names and types, status codes,
//! error bodies and WebSocket events follow the real server (see `../shared/research/mattermost-api.md`,
//! written from the server's code, and the official OpenAPI description in `spec/`).
//!
//! Module map:
//! - [`model`]: wire types, written from the OpenAPI spec and the server code (never shared with
//!   the `mattermost` client crate, so a field-name mistake in one cannot hide behind the other).
//! - [`state`]: the organisation in memory and every mutation (each mutation publishes its
//!   WebSocket events through [`events::Hub`]).
//! - [`api`]: REST routes under `/api/v4`; [`oauth`]: Mattermost as an OAuth 2.0 provider.
//! - [`events`] + [`ws`]: the WebSocket hub (per-connection `seq`, 128-event dead queue, resume).
//! - [`faults`], [`ratelimit`], [`metrics`]: latency/5xx/429/socket-drop injection, the real
//!   server's GCRA rate limiter, request counters per route.
//! - [`seed`]: deterministic organisations (`demo`, `large`); [`driver`]: make other users act.

pub mod api;
pub mod driver;
pub mod error;
pub mod events;
pub mod faults;
pub mod metrics;
pub mod model;
pub mod oauth;
pub mod ratelimit;
pub mod seed;
pub mod state;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

/// Server version reported in `X-Version-Id`, the WebSocket `hello` and `/system/ping`.
pub const SERVER_VERSION: &str = "11.2.0";

/// Everything the simulator holds. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Sim {
    inner: Arc<SimInner>,
}

pub struct SimInner {
    pub config: SimConfig,
    pub state: std::sync::Mutex<state::State>,
    pub hub: events::Hub,
    pub faults: faults::Faults,
    pub metrics: metrics::Metrics,
    pub ratelimit: ratelimit::RateLimiter,
}

/// Start-up settings (the seed decides the organisation).
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub size: seed::Size,
    /// Public base URL, e.g. `http://127.0.0.1:8065` (filled in by [`start`] once bound).
    pub site_url: String,
    /// Rate limiting like `RateLimitSettings` (off by default, as on a real server).
    pub rate_limit: Option<ratelimit::RateLimitSettings>,
    /// PKCE S256 honoured at `/oauth/authorize` (Mattermost ≥ 11.2). Off = act like older servers.
    pub pkce: bool,
    /// Username approved at `/oauth/authorize` when the request carries no session cookie
    /// (demo/test auto-approve; `None` = redirect to `/login` like a real server).
    pub oauth_auto_approve_user: Option<String>,
    /// `ServiceSettings.EnableUserAccessTokens` (off on a real server by default; on here so the
    /// demo's personal access token works).
    pub enable_user_access_tokens: bool,
    /// `pending_post_id` dedup window in ms (30 000 on a real server).
    pub dedup_window_ms: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            size: seed::Size::Demo,
            site_url: String::new(),
            rate_limit: None,
            pkce: true,
            oauth_auto_approve_user: Some(seed::DEMO_USERNAME.to_owned()),
            enable_user_access_tokens: true,
            dedup_window_ms: 30_000,
        }
    }
}

impl Sim {
    /// Build a simulator with the seeded organisation.
    #[must_use]
    pub fn new(config: SimConfig) -> Self {
        let mut state = seed::generate(config.seed, config.size);
        state.settings = state::Settings {
            site_url: config.site_url.clone(),
            enable_user_access_tokens: config.enable_user_access_tokens,
            dedup_window_ms: config.dedup_window_ms,
            pkce: config.pkce,
        };
        let ratelimit = ratelimit::RateLimiter::new(config.rate_limit.clone());
        Self {
            inner: Arc::new(SimInner {
                state: std::sync::Mutex::new(state),
                hub: events::Hub::new(),
                faults: faults::Faults::default(),
                metrics: metrics::Metrics::default(),
                ratelimit,
                config,
            }),
        }
    }

    #[must_use]
    pub fn inner(&self) -> &SimInner {
        &self.inner
    }

    /// The user id behind a session, personal access or OAuth access token (`None` when the
    /// token is unknown, revoked or expired). Used by the WebSocket authentication.
    #[must_use]
    pub fn user_for_token(&self, token: &str) -> Option<String> {
        let state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.user_for_token(token)
    }

    /// The axum router with every route and layer (REST, OAuth, WebSocket, admin/driver).
    pub fn router(&self) -> axum::Router {
        let app = api::routes()
            .merge(oauth::routes())
            .merge(ws::routes())
            .merge(driver::admin_routes());
        let app = faults::layer(app, self.clone());
        app.with_state(self.clone())
    }
}

/// Serve `sim` on an already bound listener until `shutdown` resolves. `main`, the demo and
/// every test use this one path.
pub async fn serve<F>(listener: TcpListener, sim: Sim, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = sim.router();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// A simulator running in the background on `127.0.0.1:<port>` (0 = any free port).
pub struct Running {
    pub sim: Sim,
    pub url: String,
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stop serving (existing WebSocket tasks end with the runtime or when their peer closes).
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Bind, seed and serve in the background. The returned URL is ready to use at once.
pub async fn start(mut config: SimConfig, port: u16) -> std::io::Result<Running> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    if config.site_url.is_empty() {
        config.site_url.clone_from(&url);
    }
    let sim = Sim::new(config);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(serve(listener, sim.clone(), async move {
        let _ = rx.await;
    }));
    Ok(Running {
        sim,
        url,
        addr,
        shutdown: Some(tx),
        handle,
    })
}
