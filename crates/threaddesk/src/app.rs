//! Wiring: configuration → store, cipher, sync engine, Mattermost client → web server.
//! `serve`, `demo` and the integration tests all start ThreadDesk through [`start`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::account::OAuthApp;
use crate::config::Config;
use crate::privacy::cipher::TokenCipher;
use crate::store::Store;
use crate::sync::ratelimit::{LimiterSettings, RateLimiter};
use crate::sync::{SyncEngine, SyncSettings};
use crate::web::{self, AppInner, AppState, Clock};

/// How often the retention purge, the expired-session sweep and the OAuth refresh check run.
/// (Tokens are refreshed a day before expiry; Mattermost's default lifetime is 30 days.)
pub const PURGE_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// A running ThreadDesk.
pub struct App {
    pub state: AppState,
    pub url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    purger: tokio::task::JoinHandle<()>,
}

impl App {
    /// Stop serving (graceful).
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.purger.abort();
    }

    /// Wait until the server task ends.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let server = std::mem::replace(&mut self.server, tokio::spawn(async { Ok(()) }));
        server.await.context("while serving")??;
        Ok(())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Purge what is older than the retention window (and expired sign-in state).
pub fn purge_once(store: &Store, config: &Config, now: i64) -> anyhow::Result<()> {
    let report = store
        .purge_older_than(now - config.retention_ms())
        .context("while purging the cache past its retention window")?;
    let idle = i64::try_from(config.session_idle_timeout.as_millis()).unwrap_or(i64::MAX);
    let auth = store.purge_expired_auth(now, idle)?;
    tracing::info!(
        posts = report.posts,
        threads = report.threads,
        items = report.items,
        expired_auth = auth,
        "retention purge"
    );
    Ok(())
}

/// Start ThreadDesk on a bound listener.
pub async fn start(config: Config, listener: TcpListener, clock: Clock) -> anyhow::Result<App> {
    config.validate_for_serve()?;
    let addr = listener.local_addr()?;
    let mm_url = config
        .mattermost_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_owned())
        .context("mattermost_url is required")?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "while creating the data directory {}",
            config.data_dir.display()
        )
    })?;
    let store =
        Arc::new(Store::open(&config.data_dir).with_context(|| {
            format!("while opening the store in {}", config.data_dir.display())
        })?);
    let cipher = TokenCipher::load_or_create(&config.key_file())?;

    let limiter = RateLimiter::new(LimiterSettings::from_config(&config));
    let engine = Arc::new(SyncEngine::new(
        Arc::clone(&store),
        SyncSettings::from_config(&config),
        limiter,
    ));
    let mattermost = mattermost::Client::builder(mm_url.clone())
        .request_gate(engine.request_gate())
        .build()
        .context("while building the Mattermost client")?;
    let oauth = match (&config.oauth_client_id, &config.oauth_client_secret) {
        (Some(id), Some(secret)) => Some(OAuthApp {
            client_id: id.clone(),
            client_secret: mattermost::Secret::new(secret.expose().to_owned()),
        }),
        _ => None,
    };
    let public_url = config.public_url.as_ref().map_or_else(
        || format!("http://{addr}"),
        |u| u.as_str().trim_end_matches('/').to_owned(),
    );
    let state = AppState::new(AppInner {
        config,
        store: Arc::clone(&store),
        engine: Arc::clone(&engine),
        cipher,
        mattermost,
        oauth,
        throttle: web::throttle::SignInThrottle::default(),
        clock: Arc::clone(&clock),
        admins: std::sync::RwLock::new(std::collections::HashSet::new()),
        sync_clients: std::sync::Mutex::new(std::collections::HashMap::new()),
        signed_out: tokio::sync::broadcast::channel(64).0,
    });

    resume_users(&state).await;

    let purger = {
        let state = state.clone();
        let store = Arc::clone(&store);
        let config = state.config().clone();
        let clock = Arc::clone(&clock);
        tokio::spawn(async move {
            // The first tick is at once: the start-up purge runs here, not before the server is
            // ready (it walks the threads and items, research P-15: no full scans at start).
            let mut tick = tokio::time::interval(PURGE_INTERVAL);
            loop {
                tick.tick().await;
                let store = Arc::clone(&store);
                let config = config.clone();
                let now = clock();
                let r = tokio::task::spawn_blocking(move || purge_once(&store, &config, now)).await;
                if !matches!(r, Ok(Ok(()))) {
                    tracing::warn!("periodic retention purge failed");
                }
                state.refresh_tokens().await;
            }
        })
    };

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(web::serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    Ok(App {
        state,
        url: public_url,
        shutdown: Some(tx),
        server,
        purger,
    })
}

/// Users with a live browser session and stored credentials sync again after a restart.
async fn resume_users(state: &AppState) {
    let Ok(users) = state.store().user_ids() else {
        return;
    };
    for user in users {
        let us = state.store().for_user(&user);
        if us.session_count().unwrap_or(0) == 0 {
            continue;
        }
        match state.user_client(&user).await {
            Ok(client) => {
                if let Ok(me) = client.get_me().await {
                    state.set_admin_from_roles(&user, &me.roles);
                }
                state.start_sync(&user, client);
            }
            // Mattermost refused the stored refresh token (e.g. a crash lost the rotated pair,
            // T-17), or the stored token cannot be read (another key, a damaged or missing
            // row): the user's sessions end, so the next page is the sign-in prompt instead of
            // a stale queue that never syncs.
            Err(
                crate::account::AccountError::Revoked
                | crate::account::AccountError::Missing
                | crate::account::AccountError::Corrupt
                | crate::account::AccountError::Cipher(_),
            ) => {
                web::session::end_access(state, &user).await;
            }
            // Mattermost could not be reached for a refresh that was due (it is tried a day
            // before expiry): sync with the stored token, which is still valid, rather than
            // leave the user signed in on a queue that never syncs; the periodic check
            // refreshes it once Mattermost answers.
            Err(e @ crate::account::AccountError::Mattermost(_)) => {
                tracing::warn!(user.id = %user.as_str(), error = %e, "token refresh failed at start; syncing with the stored token");
                match crate::account::load(state.store(), &state.inner().cipher, &user) {
                    Ok(creds) => {
                        let client = state
                            .inner()
                            .mattermost
                            .with_token(creds.access_token())
                            .with_user_key(user.as_str().to_owned());
                        state.start_sync(&user, client);
                    }
                    Err(e) => {
                        tracing::warn!(user.id = %user.as_str(), error = %e, "cannot resume sync");
                    }
                }
            }
            Err(e) => tracing::warn!(user.id = %user.as_str(), error = %e, "cannot resume sync"),
        }
    }
}
