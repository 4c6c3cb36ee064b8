//! Mattermost as an OAuth 2.0 provider (research §2.4, traps 4-7).
//!
//! - `/oauth/authorize`: exact redirect match, `state`, PKCE S256 (when `SimConfig::pkce`).
//!   Without a session cookie the simulator approves as `SimConfig::oauth_auto_approve_user`
//!   (demo/test), or redirects to `/login` like the real server when that is `None`. Unlike the
//!   real server it never shows a consent page (untrusted apps are approved too).
//! - `/oauth/access_token`: form fields only (`client_secret_post`), `authorization_code` and
//!   `refresh_token` grants, one-time codes valid 10 minutes, refresh rotation that deletes the
//!   old session at once; errors are AppError JSON with the server's unusual statuses.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Sim;
use crate::api::{self, Auth, Params, parse_body, path_id};
use crate::error::{ApiResult, AppError};
use crate::model::{self, Id, STATUS_OK};
use crate::state::{AccessDataRec, AuthCodeRec, OAuthAppRec, SessionKind, State as SimState};

/// `AuthCodeExpireTime`: 10 minutes.
pub const AUTH_CODE_TTL_MS: i64 = 600_000;
/// `SessionLengthSSOInHours` = 720 → `expires_in` 2 592 000 s.
pub const ACCESS_TOKEN_TTL_MS: i64 = 720 * 3600 * 1000;

/// Routes at the site root (`/oauth/*`, `/.well-known/*`).
pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/oauth/authorize", get(authorize))
        .route("/oauth/access_token", post(access_token))
        .route("/oauth/deauthorize", post(deauthorize))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .layer(axum::middleware::from_fn(api::api_headers))
}

/// Routes under `/api/v4` (app registration).
pub fn api_routes() -> Router<Sim> {
    Router::new()
        .route("/oauth/apps", post(create_app).get(list_apps))
        .route("/oauth/apps/{app_id}", get(get_app))
        .route("/oauth/apps/{app_id}/info", get(app_info))
}

/// What registering an app needs.
#[derive(Clone, Debug)]
pub struct AppSpec {
    pub name: String,
    pub callback_urls: Vec<String>,
    pub homepage: String,
    pub is_trusted: bool,
    /// Public client: no secret, PKCE required, no refresh tokens (trap 7).
    pub is_public: bool,
}

/// A registered app's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppCredentials {
    pub client_id: String,
    /// Empty for public clients.
    pub client_secret: String,
}

impl SimState {
    /// Register an OAuth app (seed, Rust API, `POST /oauth/apps`).
    pub fn register_oauth_app(&mut self, spec: AppSpec, creator: Option<Id>) -> AppCredentials {
        let id = self.new_id();
        let secret = if spec.is_public {
            String::new()
        } else {
            self.new_id().to_string()
        };
        self.insert_oauth_app(id, secret, spec, creator)
    }

    pub(crate) fn insert_oauth_app(
        &mut self,
        id: Id,
        secret: String,
        spec: AppSpec,
        creator: Option<Id>,
    ) -> AppCredentials {
        let now = self.now();
        self.oauth_apps.insert(
            id,
            OAuthAppRec {
                id,
                secret: secret.clone(),
                name: spec.name,
                description: String::new(),
                homepage: spec.homepage,
                icon_url: String::new(),
                callback_urls: spec.callback_urls,
                is_trusted: spec.is_trusted,
                is_public: spec.is_public,
                creator_id: creator,
                create_at: now,
            },
        );
        AppCredentials {
            client_id: id.into(),
            client_secret: secret,
        }
    }

    fn oauth_app_json(&self, app: &OAuthAppRec, with_secret: bool) -> model::OAuthApp {
        model::OAuthApp {
            id: app.id,
            creator_id: app.creator_id.map(String::from).unwrap_or_default(),
            create_at: app.create_at,
            update_at: app.create_at,
            client_secret: if with_secret {
                app.secret.clone()
            } else {
                String::new()
            },
            name: app.name.clone(),
            description: app.description.clone(),
            icon_url: app.icon_url.clone(),
            callback_urls: app.callback_urls.clone(),
            homepage: app.homepage.clone(),
            is_trusted: app.is_trusted,
            is_public: app.is_public,
            mattermost_app_id: String::new(),
        }
    }

    /// Issue a new OAuth session + refresh token for `(user, client)`.
    fn issue_tokens(&mut self, user: Id, client: Id, public: bool) -> AccessDataRec {
        let expires_at = self.now() + ACCESS_TOKEN_TTL_MS;
        let token = self.create_session(user, SessionKind::OAuth(client), expires_at);
        AccessDataRec {
            client_id: client,
            user_id: user,
            token,
            refresh_token: if public {
                String::new()
            } else {
                self.new_id().to_string()
            },
            expires_at,
        }
    }
}

impl Sim {
    /// Register an OAuth app (e.g. ThreadDesk's exact callback URL at demo start).
    pub fn register_oauth_app(&self, spec: AppSpec) -> AppCredentials {
        self.with_state(|s| s.register_oauth_app(spec, None))
    }

    /// Add a callback URL to an existing app (`false` when the client id is unknown).
    pub fn add_oauth_callback(&self, client_id: &str, url: &str) -> bool {
        let Some(id) = Id::parse(client_id) else {
            return false;
        };
        self.with_state(|s| match s.oauth_apps.get_mut(&id) {
            Some(app) => {
                if !app.callback_urls.iter().any(|u| u == url) {
                    app.callback_urls.push(url.to_owned());
                }
                true
            }
            None => false,
        })
    }
}

fn html_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><title>Mattermost</title><p>{message}</p>"
        )),
    )
        .into_response()
}

fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let extra = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{extra}")
}

fn valid_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

fn valid_challenge(c: &str) -> bool {
    (43..=128).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /oauth/authorize` (research §2.4).
async fn authorize(State(sim): State<Sim>, headers: HeaderMap, uri: Uri, q: Params) -> Response {
    let get = |k: &str| q.get(k).unwrap_or_default().to_owned();
    let (client_id, redirect_uri, state) = (get("client_id"), get("redirect_uri"), get("state"));
    let (challenge, method) = (get("code_challenge"), get("code_challenge_method"));
    let Some(client) = Id::parse(&client_id) else {
        return html_error(StatusCode::BAD_REQUEST, "invalid_request: Bad client_id");
    };
    if get("response_type").is_empty()
        || redirect_uri.is_empty()
        || redirect_uri.len() > 256
        || !valid_http_url(&redirect_uri)
        || state.len() > 1024
        || get("scope").len() > 128
    {
        return html_error(
            StatusCode::BAD_REQUEST,
            "invalid_request: Bad request parameters",
        );
    }
    let pkce = sim.inner().config.pkce;
    let challenge = if pkce && (!challenge.is_empty() || !method.is_empty()) {
        if method != "S256" || !valid_challenge(&challenge) {
            return html_error(
                StatusCode::BAD_REQUEST,
                "invalid_request: Bad PKCE parameters",
            );
        }
        Some(challenge)
    } else {
        None
    };
    let app = sim.with_state(|s| {
        s.oauth_apps
            .get(&client)
            .map(|a| (a.callback_urls.clone(), a.is_public))
    });
    let Some((callbacks, is_public)) = app else {
        return html_error(StatusCode::NOT_FOUND, "invalid_client: Unknown client_id");
    };
    if !callbacks.contains(&redirect_uri) {
        return html_error(
            StatusCode::BAD_REQUEST,
            "The redirect URL does not match the OAuth application's registered callback URLs (oauth_invalid_redirect_url).",
        );
    }
    if is_public && challenge.is_none() {
        return html_error(
            StatusCode::BAD_REQUEST,
            "invalid_request: PKCE is required for public clients",
        );
    }
    let user = match api::cookie(&headers, "MMAUTHTOKEN") {
        Some(token) => sim.with_state(|s| s.session(&token).map(|x| (x.user_id, x.kind.clone()))),
        None => None,
    };
    let user = match user {
        Some((_, SessionKind::OAuth(_))) => {
            return html_error(
                StatusCode::FORBIDDEN,
                "OAuth sessions cannot authorize apps",
            );
        }
        Some((u, _)) => Some(u),
        None => sim
            .inner()
            .config
            .oauth_auto_approve_user
            .as_deref()
            .and_then(|name| sim.with_state(|s| s.find_user(name))),
    };
    let Some(user) = user else {
        let site = sim.with_state(|s| s.settings.site_url.clone());
        let original = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        return redirect(&with_query(
            &format!("{site}/login"),
            &[("redirect_to", &original)],
        ));
    };
    if get("response_type") != "code" {
        return redirect(&with_query(
            &redirect_uri,
            &[("error", "unsupported_response_type"), ("state", &state)],
        ));
    }
    let code = format!("{}{}", Id::random(), Id::random());
    sim.with_state(|s| {
        let expires_at = s.now() + AUTH_CODE_TTL_MS;
        s.auth_codes.insert(
            code.clone(),
            AuthCodeRec {
                client_id: client,
                user_id: user,
                redirect_uri: redirect_uri.clone(),
                expires_at,
                code_challenge: challenge,
            },
        );
        s.preferences.entry(user).or_default().insert(
            ("oauth_app".to_owned(), client.to_string()),
            "user".to_owned(),
        );
    });
    redirect(&with_query(
        &redirect_uri,
        &[("code", &code), ("state", &state)],
    ))
}

#[derive(Deserialize, Default)]
struct TokenForm {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    refresh_token: String,
    #[serde(default)]
    code_verifier: String,
}

fn oauth_error(status: u16, id: &str, message: &str) -> AppError {
    AppError::new(status, id, message)
}

fn bad_credentials(status: u16) -> AppError {
    let id = if status == 401 {
        "model.oauth.validate_grant.credentials.app_error"
    } else {
        "api.oauth.get_access_token.credentials.app_error"
    };
    oauth_error(
        status,
        id,
        "invalid_client: The client credentials are invalid.",
    )
}

/// `POST /oauth/access_token` (form fields + query, trap 5).
async fn access_token(State(sim): State<Sim>, q: Params, body: Bytes) -> ApiResult<Response> {
    let mut form: TokenForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let fill = |field: &mut String, name: &str| {
        if field.is_empty() {
            *field = q.get(name).unwrap_or_default().to_owned();
        }
    };
    fill(&mut form.grant_type, "grant_type");
    fill(&mut form.client_id, "client_id");
    fill(&mut form.client_secret, "client_secret");
    fill(&mut form.code, "code");
    fill(&mut form.redirect_uri, "redirect_uri");
    fill(&mut form.refresh_token, "refresh_token");
    fill(&mut form.code_verifier, "code_verifier");
    if form.grant_type != "authorization_code" && form.grant_type != "refresh_token" {
        return Err(oauth_error(
            400,
            "api.oauth.get_access_token.bad_grant.app_error",
            "invalid_request: Bad grant_type.",
        ));
    }
    let client = Id::parse(&form.client_id).ok_or_else(|| {
        oauth_error(
            400,
            "api.oauth.get_access_token.bad_client_id.app_error",
            "invalid_request: Bad client_id.",
        )
    })?;
    if form.grant_type == "authorization_code" && form.code.is_empty() {
        return Err(oauth_error(
            400,
            "api.oauth.get_access_token.missing_code.app_error",
            "invalid_request: Missing code.",
        ));
    }
    let data = sim.with_state(|s| exchange(s, client, &form))?;
    let expires_in = sim.with_state(|s| ((data.expires_at - s.now()) / 1000).max(0));
    let body = json!({
        "access_token": data.token,
        "token_type": "bearer",
        "expires_in": expires_in,
        "scope": "",
        "refresh_token": data.refresh_token,
        "id_token": "",
    });
    let mut resp = Json(body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// The grant itself, under the state lock.
fn exchange(s: &mut SimState, client: Id, form: &TokenForm) -> ApiResult<AccessDataRec> {
    let app = s
        .oauth_apps
        .get(&client)
        .ok_or_else(|| bad_credentials(404))?;
    let public = app.is_public;
    if !public && app.secret != form.client_secret {
        return Err(bad_credentials(401));
    }
    if form.grant_type == "refresh_token" {
        return refresh(s, client, public, &form.refresh_token);
    }
    let bad_code = |status| {
        oauth_error(
            status,
            "api.oauth.get_access_token.expired_code.app_error",
            "invalid_grant: Invalid or expired authorization code.",
        )
    };
    // One-time: the code is gone whatever happens next.
    let code = s
        .auth_codes
        .remove(&form.code)
        .ok_or_else(|| bad_code(400))?;
    if code.client_id != client {
        return Err(bad_code(400));
    }
    if code.expires_at < s.now() {
        return Err(bad_code(403));
    }
    if code.redirect_uri != form.redirect_uri {
        return Err(oauth_error(
            400,
            "api.oauth.get_access_token.redirect_uri.app_error",
            "invalid_request: Supplied redirect_uri does not match authorization code redirect_uri.",
        ));
    }
    if let Some(challenge) = &code.code_challenge {
        let digest = Sha256::digest(form.code_verifier.as_bytes());
        let computed =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, digest);
        if form.code_verifier.is_empty() || computed != *challenge {
            return Err(oauth_error(
                400,
                "api.oauth.get_access_token.pkce_verification_failed.app_error",
                "invalid_grant: PKCE verification failed.",
            ));
        }
    }
    // An existing, unexpired token for the same app and user is returned again (trap 6).
    let now = s.now();
    let existing = s.access_data.values().find(|a| {
        a.client_id == client
            && a.user_id == code.user_id
            && a.expires_at > now
            && s.sessions.contains_key(&a.token)
    });
    if let Some(a) = existing {
        return Ok(a.clone());
    }
    let data = s.issue_tokens(code.user_id, client, public);
    let key = if data.refresh_token.is_empty() {
        data.token.clone()
    } else {
        data.refresh_token.clone()
    };
    s.access_data.insert(key, data.clone());
    Ok(data)
}

/// Refresh rotation: the old session is deleted at once, both tokens are new (trap 6).
fn refresh(s: &mut SimState, client: Id, public: bool, token: &str) -> ApiResult<AccessDataRec> {
    if public {
        return Err(oauth_error(
            400,
            "api.oauth.get_access_token.refresh_token.app_error",
            "invalid_request: Public clients cannot use refresh tokens.",
        ));
    }
    let invalid = || {
        oauth_error(
            404,
            "api.oauth.get_access_token.refresh_token.app_error",
            "invalid_grant: Invalid refresh token.",
        )
    };
    if token.is_empty() {
        return Err(invalid());
    }
    let old = s.access_data.remove(token).ok_or_else(invalid)?;
    if old.client_id != client {
        s.access_data.insert(token.to_owned(), old);
        return Err(invalid());
    }
    s.sessions.remove(&old.token);
    let data = s.issue_tokens(old.user_id, client, false);
    s.access_data
        .insert(data.refresh_token.clone(), data.clone());
    Ok(data)
}

#[derive(Deserialize)]
struct DeauthorizeBody {
    #[serde(default)]
    client_id: String,
}

/// `POST /oauth/deauthorize {"client_id"}`: revokes the user's tokens for that app.
async fn deauthorize(
    State(sim): State<Sim>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<Json<model::StatusOk>> {
    let req: DeauthorizeBody = parse_body(&body, "client_id")?;
    let client =
        Id::parse(&req.client_id).ok_or_else(|| AppError::invalid_body_param("client_id"))?;
    sim.with_state(|s| {
        let tokens: Vec<String> = s
            .access_data
            .values()
            .filter(|a| a.client_id == client && a.user_id == auth.user)
            .map(|a| a.token.clone())
            .collect();
        for t in &tokens {
            s.sessions.remove(t);
        }
        s.access_data
            .retain(|_, a| !(a.client_id == client && a.user_id == auth.user));
        if let Some(p) = s.preferences.get_mut(&auth.user) {
            p.remove(&("oauth_app".to_owned(), client.to_string()));
        }
    });
    Ok(Json(STATUS_OK))
}

/// `GET /.well-known/oauth-authorization-server`.
async fn metadata(State(sim): State<Sim>) -> Json<Value> {
    let site = sim.with_state(|s| s.settings.site_url.clone());
    let mut body = json!({
        "issuer": site,
        "authorization_endpoint": format!("{site}/oauth/authorize"),
        "token_endpoint": format!("{site}/oauth/access_token"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "scopes_supported": ["user"],
    });
    if sim.inner().config.pkce {
        body["code_challenge_methods_supported"] = json!(["S256"]);
    }
    Json(body)
}

#[derive(Deserialize)]
struct AppRequest {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    icon_url: String,
    #[serde(default)]
    callback_urls: Vec<String>,
    #[serde(default)]
    homepage: String,
    #[serde(default)]
    is_trusted: bool,
    #[serde(default)]
    is_public: bool,
}

/// `POST /api/v4/oauth/apps` → 201 (`is_trusted` honoured only for system admins).
async fn create_app(
    State(sim): State<Sim>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<model::OAuthApp>)> {
    let req: AppRequest = parse_body(&body, "app")?;
    let invalid = |field: &str| {
        AppError::new(
            400,
            &format!("model.oauth.is_valid.{field}.app_error"),
            &format!("Invalid {field}."),
        )
    };
    if req.name.is_empty() || req.name.chars().count() > 64 {
        return Err(invalid("name"));
    }
    if req.description.chars().count() > 512 {
        return Err(invalid("description"));
    }
    if req.callback_urls.is_empty()
        || req.callback_urls.iter().any(|u| !valid_http_url(u))
        || req.callback_urls.iter().map(String::len).sum::<usize>() > 1024
    {
        return Err(invalid("callback"));
    }
    if req.homepage.len() > 256 || !valid_http_url(&req.homepage) {
        return Err(invalid("homepage"));
    }
    sim.with_state(|s| {
        let admin = s
            .users
            .get(&auth.user)
            .is_some_and(|u| u.roles.contains("system_admin"));
        let spec = AppSpec {
            name: req.name,
            callback_urls: req.callback_urls,
            homepage: req.homepage,
            is_trusted: req.is_trusted && admin,
            is_public: req.is_public,
        };
        let creds = s.register_oauth_app(spec, Some(auth.user));
        let id = Id::parse(&creds.client_id).ok_or_else(|| {
            AppError::internal(
                "app.oauth.save_app.save.app_error",
                "We couldn't save the app.",
            )
        })?;
        let app = s.oauth_apps.get_mut(&id).ok_or_else(|| {
            AppError::internal(
                "app.oauth.save_app.save.app_error",
                "We couldn't save the app.",
            )
        })?;
        app.description = req.description;
        app.icon_url = req.icon_url;
        let app = &s.oauth_apps[&id];
        Ok((StatusCode::CREATED, Json(s.oauth_app_json(app, true))))
    })
}

/// `GET /api/v4/oauth/apps`: the caller's apps (all for admins).
async fn list_apps(State(sim): State<Sim>, auth: Auth, q: Params) -> Json<Vec<model::OAuthApp>> {
    let per_page = q.per_page();
    Json(sim.with_state(|s| {
        let admin = s
            .users
            .get(&auth.user)
            .is_some_and(|u| u.roles.contains("system_admin"));
        s.oauth_apps
            .values()
            .filter(|a| admin || a.creator_id == Some(auth.user))
            .skip(q.page().saturating_mul(per_page))
            .take(per_page)
            .map(|a| s.oauth_app_json(a, true))
            .collect()
    }))
}

fn app_not_found() -> AppError {
    AppError::not_found(
        "app.oauth.get_app.find.app_error",
        "Unable to find the requested app.",
    )
}

/// `GET /api/v4/oauth/apps/{id}` (creator or admin).
async fn get_app(
    State(sim): State<Sim>,
    auth: Auth,
    Path(app_id): Path<String>,
) -> ApiResult<Json<model::OAuthApp>> {
    let id = path_id(&app_id, "app_id")?;
    sim.with_state(|s| {
        let app = s.oauth_apps.get(&id).ok_or_else(app_not_found)?;
        let admin = s
            .users
            .get(&auth.user)
            .is_some_and(|u| u.roles.contains("system_admin"));
        if !admin && app.creator_id != Some(auth.user) {
            return Err(AppError::permissions());
        }
        Ok(Json(s.oauth_app_json(app, true)))
    })
}

/// `GET /api/v4/oauth/apps/{id}/info` (no secret).
async fn app_info(
    State(sim): State<Sim>,
    _auth: Auth,
    Path(app_id): Path<String>,
) -> ApiResult<Json<model::OAuthApp>> {
    let id = path_id(&app_id, "app_id")?;
    sim.with_state(|s| {
        let app = s.oauth_apps.get(&id).ok_or_else(app_not_found)?;
        Ok(Json(s.oauth_app_json(app, false)))
    })
}
