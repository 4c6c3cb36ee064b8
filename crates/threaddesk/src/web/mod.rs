//! The web workspace: HTML pages, the JSON API (`/api/v1`), the live stream, media proxying.
//!
//! All routes are in [`router`]; one module per area. Handlers load the signed-in user (an
//! extractor that cannot exist without a session), query the user-scoped store, and render.

pub mod api;
pub mod auth;
pub mod backfill;
pub mod error;
pub mod local_time;
pub mod media;
pub mod pages;
pub mod present;
pub mod render;
pub mod searches;
pub mod security;
pub mod session;
pub mod sse;
pub mod throttle;
pub mod views;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;

use crate::account::OAuthApp;
use crate::config::Config;
use crate::privacy::cipher::TokenCipher;
use crate::store::{Store, UserId};
use crate::sync::SyncEngine;

/// Milliseconds since the epoch; injectable for tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The real clock.
#[must_use]
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    })
}

/// Shared state of the web layer. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<AppInner>,
    /// Per-user fan-out of the engine's change notices to the live streams.
    live: Arc<sse::LiveHub>,
}

pub struct AppInner {
    pub config: Config,
    pub store: Arc<Store>,
    pub engine: Arc<SyncEngine>,
    pub cipher: TokenCipher,
    /// Token-less client for the configured Mattermost (OAuth exchange, token validation);
    /// per-user clients are derived from it and share its connection pool.
    pub mattermost: mattermost::Client,
    pub oauth: Option<OAuthApp>,
    pub throttle: throttle::SignInThrottle,
    pub clock: Clock,
    /// Mattermost system admins seen at sign-in (for the status page link).
    pub admins: RwLock<HashSet<String>>,
    /// The per-user clients handed to the sync engine; a token refresh replaces the token in
    /// them (every clone shares it), so the engine's REST calls and WebSocket reconnects use it.
    pub sync_clients: std::sync::Mutex<HashMap<String, mattermost::Client>>,
    /// Users signed out everywhere: their open live streams end at once.
    pub signed_out: tokio::sync::broadcast::Sender<String>,
}

impl AppState {
    #[must_use]
    pub fn new(inner: AppInner) -> Self {
        Self {
            inner: Arc::new(inner),
            live: Arc::new(sse::LiveHub::default()),
        }
    }

    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    #[must_use]
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    #[must_use]
    pub fn engine(&self) -> &Arc<SyncEngine> {
        &self.inner.engine
    }

    /// The live streams' per-user subscriptions (see [`sse::LiveHub`]).
    #[must_use]
    pub fn live(&self) -> &sse::LiveHub {
        &self.live
    }

    #[must_use]
    pub fn inner(&self) -> &AppInner {
        &self.inner
    }

    #[must_use]
    pub fn now(&self) -> i64 {
        (self.inner.clock)()
    }

    #[must_use]
    pub fn is_admin(&self, user: &UserId) -> bool {
        self.inner
            .admins
            .read()
            .is_ok_and(|a| a.contains(user.as_str()))
    }

    /// Record whether `user` is a Mattermost system admin, from their `roles` string.
    pub fn set_admin_from_roles(&self, user: &UserId, roles: &str) {
        let admin = roles.split_whitespace().any(|r| r == "system_admin");
        if let Ok(mut a) = self.inner.admins.write() {
            if admin {
                a.insert(user.as_str().to_owned());
            } else {
                a.remove(user.as_str());
            }
        }
    }

    /// Start (or restart) syncing `user` with `client`.
    pub fn start_sync(&self, user: &UserId, client: mattermost::Client) {
        if let Ok(mut m) = self.inner.sync_clients.lock() {
            m.insert(user.as_str().to_owned(), client.clone());
        }
        self.inner.engine.start_user(user, client);
    }

    /// Stop syncing `user`.
    pub async fn stop_sync(&self, user: &UserId) {
        if let Ok(mut m) = self.inner.sync_clients.lock() {
            m.remove(user.as_str());
        }
        self.inner.engine.stop_user(user).await;
    }

    /// The user's Mattermost credentials, an OAuth token refreshed (and persisted) first when
    /// it is close to expiry (see [`crate::account::fresh_credentials`]).
    pub async fn user_credentials(
        &self,
        user: &UserId,
    ) -> Result<crate::account::Credentials, crate::account::AccountError> {
        let inner = &self.inner;
        crate::account::fresh_credentials(
            &inner.mattermost,
            &inner.store,
            &inner.cipher,
            inner.oauth.as_ref(),
            user,
            self.now(),
        )
        .await
    }

    /// A Mattermost client acting as `user` (see [`crate::account::client_for`]).
    pub async fn user_client(
        &self,
        user: &UserId,
    ) -> Result<mattermost::Client, crate::account::AccountError> {
        let inner = &self.inner;
        crate::account::client_for(
            &inner.mattermost,
            &inner.store,
            &inner.cipher,
            inner.oauth.as_ref(),
            user,
            self.now(),
        )
        .await
        .map(|(client, _)| client)
    }

    /// Refresh OAuth tokens close to expiry for every syncing user (see `app::start`'s timer).
    pub async fn refresh_tokens(&self) {
        let users: Vec<(String, mattermost::Client)> = self
            .inner
            .sync_clients
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (uid, client) in users {
            let Ok(user) = UserId::parse(&uid) else {
                continue;
            };
            match self.user_credentials(&user).await {
                Ok(creds) => client.set_token(creds.access_token()),
                // The refresh token was refused: Mattermost ended ThreadDesk's access.
                Err(crate::account::AccountError::Revoked) => {
                    session::end_access(self, &user).await;
                }
                Err(e) => tracing::warn!(user.id = %uid, error = %e, "token refresh failed"),
            }
        }
    }

    /// The Mattermost site URL without a trailing slash.
    #[must_use]
    pub fn mattermost_url(&self) -> String {
        self.inner
            .config
            .mattermost_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }

    /// ThreadDesk's OAuth callback URL (registered exactly in Mattermost).
    #[must_use]
    pub fn callback_url(&self) -> String {
        let base = self
            .inner
            .config
            .public_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        format!("{base}/auth/oauth/callback")
    }
}

/// Every route of the web workspace.
pub fn router(state: AppState) -> Router {
    Router::new()
        // Pages
        .route("/", get(pages::queue))
        .route("/items/{key}", get(pages::item))
        .route("/items/{key}/{action}", post(pages::act_form))
        .route("/bulk", post(pages::bulk_form))
        .route("/searches", post(searches::create_form))
        .route("/searches/{name}/delete", post(searches::delete_form))
        .route("/fragments/items/{key}", get(pages::item_fragment))
        .route("/signin", get(pages::signin))
        .route("/settings", get(pages::settings))
        .route("/privacy", get(pages::privacy))
        .route("/admin/status", get(pages::admin_status))
        .route("/me/delete", post(pages::delete_my_data))
        .route("/me/sessions/end", post(pages::end_session))
        // Sign-in
        .route("/auth/oauth/start", get(auth::oauth_start))
        .route("/auth/oauth/callback", get(auth::oauth_callback))
        .route("/auth/token", post(auth::token_signin))
        .route("/auth/signout", post(auth::signout))
        .route("/auth/revoke", post(auth::signout))
        // JSON API
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/api/v1/items", get(api::items))
        .route("/api/v1/items/{key}", get(api::item))
        .route("/api/v1/items/{key}/{action}", post(api::act))
        .route("/api/v1/bulk/{action}", post(api::bulk))
        .route(
            "/api/v1/searches",
            get(searches::list).post(searches::create),
        )
        .route("/api/v1/searches/{name}", delete(searches::delete))
        .route("/api/v1/events", get(sse::events))
        .route("/api/v1/me/export", get(api::export))
        .route("/api/v1/me/triage", get(api::triage))
        // Media through Mattermost's own endpoints (no outbound traffic elsewhere)
        .route("/media/avatar/{user_id}", get(media::avatar))
        .route("/media/files/{file_id}", get(media::file))
        .route("/media/files/{file_id}/{variant}", get(media::file_variant))
        .route("/media/emoji/{emoji_id}", get(media::emoji))
        // Static assets and operator surfaces
        .route("/static/{name}", get(pages::static_file))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(pages::readyz))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            pages::errors_as_pages,
        ))
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(state)
}

/// Serve the workspace on a bound listener until `shutdown` resolves.
pub async fn serve<F>(listener: TcpListener, state: AppState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
