//! Sign-in (Mattermost OAuth 2.0 or a personal access token), sign-out, revoking access.
//!
//! OAuth: authorization code + PKCE S256 + `state` (RFC 9700 §2.1: Mattermost before 11.2
//! ignores PKCE, so `state` is always sent as well). The state is single-use, expires after 10
//! minutes, and is bound to this browser by the `td_pre` cookie; the redirect URI is exactly the
//! registered one. Tokens never reach the browser: they are encrypted at rest and used by the
//! server only. A personal token is validated with `GET /users/me` before it is accepted, and
//! failed attempts are throttled per client address.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use mattermost::Secret;
use mattermost::oauth::Pkce;
use serde::Deserialize;

use super::AppState;
use super::error::WebError;
use super::pages;
use super::session::{self, PageUser, cookie, cookie_names, random_token, set_cookie};
use crate::account::{self, Credentials, Method};
use crate::config::SignInMethod;
use crate::store::{Profile, SecretText, UserId};

/// Lifetime of the pre-sign-in cookie (the OAuth attempt itself expires after 10 minutes).
const PRE_COOKIE_MAX_AGE_S: i64 = 3600;

fn offered(state: &AppState, m: SignInMethod) -> bool {
    state.config().sign_in_methods.contains(&m)
}

/// The browser binding cookie, created if absent. Returns (value, Set-Cookie if new).
pub fn pre_binding(state: &AppState, headers: &HeaderMap) -> (String, Option<header::HeaderValue>) {
    let secure = state.config().cookie_secure();
    let (_, pre) = cookie_names(secure);
    match cookie(headers, pre) {
        Some(v) if v.len() >= 32 && v.len() <= 64 => (v.to_owned(), None),
        _ => {
            let v = random_token();
            let c = set_cookie(pre, &v, PRE_COOKIE_MAX_AGE_S, secure);
            (v, Some(c))
        }
    }
}

/// `GET /auth/oauth/start` — a plain link: starts the authorization-code flow.
pub async fn oauth_start(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let Some(app) = state.inner().oauth.clone() else {
        return Err(WebError::BadRequest(
            "sign-in with Mattermost is not configured on this ThreadDesk".into(),
        ));
    };
    if !offered(&state, SignInMethod::OAuth) {
        return Err(WebError::BadRequest(
            "sign-in with Mattermost is turned off by the administrator".into(),
        ));
    }
    let (binding, set) = pre_binding(&state, &headers);
    let st = mattermost::oauth::random_token();
    let pkce = Pkce::generate();
    state
        .store()
        .oauth_attempt_create(&st, &binding, pkce.verifier.expose(), "/", state.now())
        .map_err(WebError::internal)?;
    let url = state.inner().mattermost.authorize_url(
        &app.client_id,
        &state.callback_url(),
        &st,
        Some(&pkce),
    );
    let mut res = Redirect::to(url.as_str()).into_response();
    if let Some(c) = set {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(res)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /auth/oauth/callback?code=…&state=…`
pub async fn oauth_callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, WebError> {
    let Some(app) = state.inner().oauth.clone() else {
        return Err(WebError::NotFound);
    };
    if let Some(err) = q.error.as_deref() {
        // Only the error code's safe characters are logged (no log injection, no user text).
        let code: String = err
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(40)
            .collect();
        tracing::info!(error = %code, "oauth sign-in refused by Mattermost");
        return Ok(pages::signin_error(
            &state,
            &headers,
            "Mattermost did not authorize ThreadDesk. Try again, or ask your administrator.",
        )
        .await);
    }
    let (Some(code), Some(st)) = (q.code.as_deref(), q.state.as_deref()) else {
        return Err(WebError::BadRequest(
            "the sign-in answer lacks `code` or `state`".into(),
        ));
    };
    if code.len() > 256 || st.len() > 256 {
        return Err(WebError::BadRequest(
            "the sign-in answer is malformed".into(),
        ));
    }
    let secure = state.config().cookie_secure();
    let (_, pre) = cookie_names(secure);
    let binding = cookie(&headers, pre).unwrap_or_default();
    let attempt = state
        .store()
        .oauth_attempt_take(st, binding, state.now())
        .map_err(WebError::internal)?;
    let Some(attempt) = attempt else {
        return Ok(pages::signin_error(
            &state,
            &headers,
            "This sign-in link has expired, was already used, or was started in another browser. Please sign in again.",
        )
        .await);
    };
    let ip = peer.ip();
    if !state.inner().throttle.allowed(ip, Instant::now()) {
        return Err(WebError::Throttled);
    }
    let verifier = Secret::new(attempt.pkce_verifier.expose().to_owned());
    let tokens = match state
        .inner()
        .mattermost
        .oauth_exchange_code(
            &app.client_id,
            Some(&app.client_secret),
            code,
            &state.callback_url(),
            Some(&verifier),
        )
        .await
    {
        Ok(t) => t,
        Err(e) => {
            state.inner().throttle.failed(ip, Instant::now());
            tracing::warn!(status = ?e.status(), api_id = ?e.api_id(), "oauth code exchange failed");
            return Ok(pages::signin_error(
                &state,
                &headers,
                "Mattermost refused the sign-in. Please try again.",
            )
            .await);
        }
    };
    let now = state.now();
    let creds = Credentials::oauth(
        &tokens.access_token,
        tokens.refresh_token.as_ref(),
        tokens.expires_in,
        now,
    );
    complete_sign_in(&state, creds, &session::agent_summary(&headers)).await
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /auth/token` — sign in with a personal access token.
pub async fn token_signin(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Response, WebError> {
    if !offered(&state, SignInMethod::PersonalAccessToken) {
        return Err(WebError::BadRequest(
            "sign-in with a personal access token is turned off by the administrator".into(),
        ));
    }
    session::check_fetch_site(&headers)?;
    let (_, pre) = cookie_names(state.config().cookie_secure());
    match cookie(&headers, pre) {
        Some(b) if session::tokens_equal(b, &form.csrf) => {}
        _ => return Err(WebError::Csrf),
    }
    let ip = peer.ip();
    if !state.inner().throttle.allowed(ip, Instant::now()) {
        return Err(WebError::Throttled);
    }
    let token = form.token.trim();
    if token.is_empty() || token.len() > 128 || !token.chars().all(|c| c.is_ascii_alphanumeric()) {
        state.inner().throttle.failed(ip, Instant::now());
        return Ok(pages::signin_error_status(
            &state,
            &headers,
            axum::http::StatusCode::BAD_REQUEST,
            "That does not look like a Mattermost personal access token (26 letters and digits).",
        )
        .await);
    }
    let secret = Secret::new(token.to_owned());
    let creds = Credentials::personal(&secret);
    match complete_sign_in(&state, creds, &session::agent_summary(&headers)).await {
        Ok(r) => Ok(r),
        Err(WebError::Unauthenticated) => {
            state.inner().throttle.failed(ip, Instant::now());
            Ok(pages::signin_error_status(
                &state,
                &headers,
                axum::http::StatusCode::UNAUTHORIZED,
                "Mattermost did not accept this token. Check that it is active and that personal access tokens are enabled.",
            )
            .await)
        }
        Err(e) => Err(e),
    }
}

/// Validate the credentials with `/users/me`, store them encrypted, open a fresh session
/// (new id: no fixation) labelled with the browser's `agent` summary, start syncing.
async fn complete_sign_in(
    state: &AppState,
    creds: Credentials,
    agent: &str,
) -> Result<Response, WebError> {
    let client = state.inner().mattermost.with_token(creds.access_token());
    let me = match client.get_me().await {
        Ok(me) => me,
        Err(e) if e.is_unauthorized() => return Err(WebError::Unauthenticated),
        Err(e) => {
            tracing::warn!(status = ?e.status(), "validating credentials failed");
            return Err(WebError::Unavailable);
        }
    };
    let user =
        UserId::parse(&me.id).map_err(|_| WebError::Upstream("unexpected user id".into()))?;
    let now = state.now();
    let profile = Profile {
        user_id: me.id.clone(),
        username: me.username.clone(),
        first_name: me.first_name.clone(),
        last_name: me.last_name.clone(),
        nickname: me.nickname.clone(),
        update_at: me.update_at,
        delete_at: me.delete_at,
    };
    let us = state.store().for_user(&user);
    us.write(|tx| tx.upsert_self(&profile, now))
        .map_err(WebError::internal)?;
    account::save(state.store(), &state.inner().cipher, &user, &creds, now)
        .map_err(WebError::internal)?;
    state.set_admin_from_roles(&user, &me.roles);

    let token = random_token();
    let csrf = SecretText::new(random_token());
    let absolute =
        i64::try_from(state.config().session_absolute_timeout.as_millis()).unwrap_or(i64::MAX);
    us.write(|tx| tx.create_session(&token, &csrf, now, now.saturating_add(absolute)))
        .map_err(WebError::internal)?;
    us.set_session_agent(&token, agent)
        .map_err(WebError::internal)?;
    let user_client = client.with_user_key(user.as_str().to_owned());
    state.start_sync(&user, user_client);
    tracing::info!(user.id = %user.as_str(), method = creds.method.as_str(), "signed in");

    let secure = state.config().cookie_secure();
    let (name, pre) = cookie_names(secure);
    let max_age = absolute / 1000;
    let mut res = Redirect::to("/").into_response();
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(name, &token, max_age, secure),
    );
    h.append(header::SET_COOKIE, set_cookie(pre, "", 0, secure));
    Ok(res)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Sign the user out everywhere: sessions deleted, stored token forgotten, sync stopped.
pub(crate) async fn sign_out_everywhere(state: &AppState, user: &UserId, revoke: bool) {
    if revoke
        && let Ok(creds) = account::load(state.store(), &state.inner().cipher, user)
        && creds.method == Method::OAuth
    {
        // Mattermost deletes the OAuth session and its refresh token (research §2.4).
        let c = state.inner().mattermost.with_token(creds.access_token());
        if let Err(e) = c.logout().await {
            tracing::warn!(status = ?e.status(), "revoking the OAuth token failed");
        }
    }
    let _ = state.inner().signed_out.send(user.as_str().to_owned());
    state.stop_sync(user).await;
    let _ = account::forget(state.store(), user);
    let _ = state
        .store()
        .for_user(user)
        .write(|tx| tx.delete_all_sessions());
}

fn signed_out_response(state: &AppState) -> Response {
    let secure = state.config().cookie_secure();
    let (name, _) = cookie_names(secure);
    let mut res = Redirect::to("/signin").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, set_cookie(name, "", 0, secure));
    res
}

/// `POST /auth/signout` and `POST /auth/revoke` — ends every session of the user, revokes
/// ThreadDesk's OAuth token in Mattermost, stops syncing and forgets the stored token. (A
/// personal access token is only forgotten: it belongs to the user, who revokes it in
/// Mattermost's profile settings, as the settings page explains.)
pub async fn signout(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: PageUser,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    session::check_fetch_site(&headers)?;
    user.0.check_csrf(Some(&form.csrf))?;
    sign_out_everywhere(&state, &user.0.user_id, true).await;
    let _ = state.store().delete_session(&user.0.session_token);
    tracing::info!(user.id = %user.0.user_id.as_str(), "signed out and access revoked");
    Ok(signed_out_response(&state))
}
