//! Browser sessions and CSRF.
//!
//! - The session cookie holds 256 random bits; the store keeps only their SHA-256, so a leaked
//!   database cannot be replayed. `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` with the
//!   `__Host-` prefix when ThreadDesk is served over https.
//! - Every session has a synchronizer CSRF token: state-changing requests carry it in the
//!   `X-CSRF-Token` header (scripts) or a `csrf` form field (forms), compared in constant time.
//!   Requests a browser marks `Sec-Fetch-Site: cross-site` are refused as well.
//! - Before sign-in a `td_pre` cookie (random, `SameSite=Lax`) binds the OAuth `state` to this
//!   browser and is the double-submit CSRF token of the personal-token form.
//! - A new session id is issued at every sign-in (no fixation); sign-out deletes it server-side.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::WebError;
use crate::store::{SecretText, UserId};

pub const SESSION_COOKIE: &str = "td_session";
pub const SECURE_SESSION_COOKIE: &str = "__Host-td_session";
pub const PRE_COOKIE: &str = "td_pre";
pub const SECURE_PRE_COOKIE: &str = "__Host-td_pre";

/// 32 random bytes, base64url.
#[must_use]
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Read a cookie value from the request headers.
#[must_use]
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Names of the cookies, depending on https.
#[must_use]
pub fn cookie_names(secure: bool) -> (&'static str, &'static str) {
    if secure {
        (SECURE_SESSION_COOKIE, SECURE_PRE_COOKIE)
    } else {
        (SESSION_COOKIE, PRE_COOKIE)
    }
}

/// A `Set-Cookie` value. `max_age_s` 0 deletes the cookie.
#[must_use]
pub fn set_cookie(name: &str, value: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("td_invalid=; Max-Age=0"))
}

/// Constant-time equality of two tokens.
#[must_use]
pub fn tokens_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Refuse requests the browser says come from another site.
pub fn check_fetch_site(headers: &HeaderMap) -> Result<(), WebError> {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("cross-site") => Err(WebError::Csrf),
        _ => Ok(()),
    }
}

/// A short, fixed-vocabulary summary of a `User-Agent` header for the sessions list ("Firefox
/// on Linux"). Only these phrases are stored: never the header itself, so nothing a client
/// sends reaches the database or a page verbatim.
#[must_use]
pub fn agent_summary(headers: &HeaderMap) -> String {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let has = |s: &str| ua.contains(s);
    let browser = if has("Firefox/") {
        "Firefox"
    } else if has("Edg/") {
        "Edge"
    } else if has("OPR/") {
        "Opera"
    } else if has("Chromium/") {
        "Chromium"
    } else if has("Chrome/") {
        "Chrome"
    } else if has("Safari/") {
        "Safari"
    } else if has("curl/") {
        "curl"
    } else {
        "Unknown browser"
    };
    let os = if has("Android") {
        "Android"
    } else if has("iPhone") || has("iPad") {
        "iOS"
    } else if has("CrOS") {
        "ChromeOS"
    } else if has("Mac OS X") || has("Macintosh") {
        "macOS"
    } else if has("Windows") {
        "Windows"
    } else if has("Linux") || has("X11") {
        "Linux"
    } else {
        ""
    };
    if os.is_empty() {
        browser.to_owned()
    } else {
        format!("{browser} on {os}")
    }
}

/// The signed-in user of this request. Cannot be built without a live session.
#[derive(Clone, Debug)]
pub struct CurrentUser {
    pub user_id: UserId,
    pub csrf: SecretText,
    /// The raw session token (to sign this browser out).
    pub(crate) session_token: String,
}

impl CurrentUser {
    /// Check a CSRF token given by a form or header.
    pub fn check_csrf(&self, provided: Option<&str>) -> Result<(), WebError> {
        match provided {
            Some(p) if tokens_equal(p, self.csrf.expose()) => Ok(()),
            _ => Err(WebError::Csrf),
        }
    }
}

/// What the user is told when Mattermost refused ThreadDesk's token.
pub const ACCESS_ENDED: &str = "Mattermost ended ThreadDesk's access; sign in again.";

/// Where a page request goes when Mattermost refused ThreadDesk's token.
pub const ACCESS_ENDED_SIGNIN: &str =
    "/signin?error=Mattermost+ended+ThreadDesk%27s+access%3B+sign+in+again.";

/// Why a request has no user: pages redirect to the sign-in page, the API answers 401.
pub enum NoUser {
    Page,
    Api,
}

impl IntoResponse for NoUser {
    fn into_response(self) -> Response {
        match self {
            Self::Page => Redirect::to("/signin").into_response(),
            Self::Api => WebError::Unauthenticated.into_response(),
        }
    }
}

/// Mattermost refused the user's token (401): every ThreadDesk session of the user ends, the
/// stored token is forgotten and the sync stops (nothing to revoke: the token is already dead).
pub(crate) async fn end_access(state: &AppState, user: &UserId) {
    tracing::warn!(user.id = %user.as_str(), "Mattermost refused the token; user signed out");
    super::auth::sign_out_everywhere(state, user, false).await;
}

/// The answer to a request whose user's access just ended: pages go to the sign-in page with
/// the reason, the API answers 401 with it; the session cookie is deleted either way.
pub(crate) fn access_ended_response(state: &AppState, page: bool) -> Response {
    let mut res = if page {
        Redirect::to(ACCESS_ENDED_SIGNIN).into_response()
    } else {
        WebError::AccessEnded.into_response()
    };
    let secure = state.config().cookie_secure();
    let (name, _) = cookie_names(secure);
    res.headers_mut()
        .append(header::SET_COOKIE, set_cookie(name, "", 0, secure));
    res
}

/// A session lookup's result.
enum Found {
    User(CurrentUser),
    None,
    /// The session was valid but Mattermost refused the user's token: access was just ended.
    AccessEnded,
}

async fn lookup(parts: &Parts, state: &AppState) -> Result<Found, WebError> {
    let found = lookup_session(parts, state)?;
    match found {
        Some(u) if state.engine().needs_sign_in(&u.user_id) => {
            end_access(state, &u.user_id).await;
            Ok(Found::AccessEnded)
        }
        Some(u) => Ok(Found::User(u)),
        None => Ok(Found::None),
    }
}

fn lookup_session(parts: &Parts, state: &AppState) -> Result<Option<CurrentUser>, WebError> {
    let (name, _) = cookie_names(state.config().cookie_secure());
    let Some(token) = cookie(&parts.headers, name) else {
        return Ok(None);
    };
    if token.len() > 128 {
        return Ok(None);
    }
    let now = state.now();
    let idle = i64::try_from(state.config().session_idle_timeout.as_millis()).unwrap_or(i64::MAX);
    let info = state
        .store()
        .session(token, now, idle)
        .map_err(WebError::internal)?;
    Ok(info.map(|i| CurrentUser {
        user_id: i.user_id,
        csrf: i.csrf_token,
        session_token: token.to_owned(),
    }))
}

/// For HTML pages: no session → redirect to `/signin`.
pub struct PageUser(pub CurrentUser);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match lookup(parts, state).await {
            Ok(Found::User(u)) => Ok(Self(u)),
            Ok(Found::None) => Err(NoUser::Page.into_response()),
            Ok(Found::AccessEnded) => Err(access_ended_response(state, true)),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// For the JSON API and the live stream: no session → 401. For non-GET requests the
/// `X-CSRF-Token` header must match, and cross-site requests are refused (403).
pub struct ApiUser(pub CurrentUser);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let user = match lookup(parts, state).await {
            Ok(Found::User(u)) => u,
            Ok(Found::None) => return Err(NoUser::Api.into_response()),
            Ok(Found::AccessEnded) => return Err(access_ended_response(state, false)),
            Err(e) => return Err(e.into_response()),
        };
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            check_fetch_site(&parts.headers).map_err(IntoResponse::into_response)?;
            let provided = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok());
            user.check_csrf(provided)
                .map_err(IntoResponse::into_response)?;
        }
        Ok(Self(user))
    }
}

/// Optional user (pages that work signed in or out).
pub struct MaybeUser(pub Option<CurrentUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match lookup(parts, state).await {
            Ok(Found::User(u)) => Ok(Self(Some(u))),
            Ok(Found::None | Found::AccessEnded) => Ok(Self(None)),
            Err(e) => Err(e.into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; td_session=abc; theme=dark"),
        );
        assert_eq!(cookie(&h, "td_session"), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn set_cookie_flags() {
        let v = set_cookie("td_session", "x", 60, true);
        let s = v.to_str().unwrap();
        assert!(s.contains("HttpOnly"));
        assert!(s.contains("SameSite=Lax"));
        assert!(s.contains("Secure"));
        let v = set_cookie("td_session", "x", 60, false);
        assert!(!v.to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn agent_summary_uses_fixed_phrases_only() {
        let ua = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::USER_AGENT, HeaderValue::from_static(v));
            agent_summary(&h)
        };
        assert_eq!(
            ua("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
            "Firefox on Linux"
        );
        assert_eq!(
            ua(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 Edg/131.0"
            ),
            "Edge on Windows"
        );
        assert_eq!(
            ua(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"
            ),
            "Safari on iOS"
        );
        assert_eq!(ua("<script>alert(1)</script>"), "Unknown browser");
        assert_eq!(agent_summary(&HeaderMap::new()), "Unknown browser");
    }

    #[test]
    fn constant_time_compare() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "ab"));
    }
}
