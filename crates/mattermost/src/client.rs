//! The HTTP client: configuration, authentication, the egress guard, the rate-limit gate and
//! the request/response plumbing shared by every endpoint in [`crate::api`].

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{AppError, Error, Result, describe_json_error, is_truncation};
use crate::secret::Secret;

/// The default user agent sent on every request (REST and WebSocket upgrade).
pub const USER_AGENT: &str = concat!("threaddesk/", env!("CARGO_PKG_VERSION"));

/// A gate consulted before every request (REST and WebSocket upgrade), so that many clients can
/// share one rate limiter.
///
/// Mattermost rate-limits by client IP by default, so every user of one ThreadDesk instance
/// shares a single bucket (reliability finding 2). The client itself never waits on a 429
/// unless [`ClientBuilder::retry_rate_limited`] is set; instead it reports
/// [`Error::RateLimited`] and calls [`RequestGate::on_rate_limited`] so the shared limiter can
/// slow everybody down.
pub trait RequestGate: Send + Sync {
    /// Wait until a request on behalf of `user_key` (see [`Client::with_user_key`]) may go.
    fn acquire<'a>(&'a self, user_key: Option<&'a str>) -> BoxFuture<'a, ()>;

    /// The server answered 429 and asked us to wait `retry_after`.
    fn on_rate_limited(&self, user_key: Option<&str>, retry_after: Duration) {
        let _ = (user_key, retry_after);
    }
}

/// Builds a [`Client`].
#[must_use]
pub struct ClientBuilder {
    base_url: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    rate_limit_retries: u32,
    gate: Option<Arc<dyn RequestGate>>,
    token: Option<Secret>,
    user_agent: String,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("rate_limit_retries", &self.rate_limit_retries)
            .field("gate", &self.gate.is_some())
            .field("token", &self.token)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

impl ClientBuilder {
    /// Connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whole-request timeout, including reading the body (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// On 429, wait `Retry-After` and retry up to `retries` times before returning
    /// [`Error::RateLimited`] (default 0: never sleep silently). A 429 is rejected before the
    /// handler runs, so retrying is safe for every method.
    pub fn retry_rate_limited(mut self, retries: u32) -> Self {
        self.rate_limit_retries = retries;
        self
    }

    /// Consult `gate` before each request (see [`RequestGate`]).
    pub fn request_gate(mut self, gate: Arc<dyn RequestGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Override the user agent (default [`USER_AGENT`], `threaddesk/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Initial bearer token.
    pub fn token(mut self, token: impl Into<Secret>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Build the client. Installs the `ring` rustls crypto provider as the process default if
    /// none is installed yet.
    pub fn build(self) -> Result<Client> {
        let base = parse_base_url(&self.base_url)?;
        let user_agent = HeaderValue::try_from(self.user_agent.as_str())
            .map_err(|_| Error::InvalidArgument("user agent has invalid characters".into()))?;
        // rustls-no-provider: somebody must pick the crypto provider; an error only means one
        // is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let origin = base.origin();
        let redirect_origin = origin.clone();
        let http = reqwest::Client::builder()
            .user_agent(user_agent.clone())
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            // Never keep cookies: the server sets MMAUTHTOKEN on Bearer calls and would then
            // demand CSRF tokens (research §0 traps 1–2). reqwest's `cookies` feature is off
            // in the workspace, so no cookie store can exist; keep it that way.
            // Redirects may only stay on the configured origin (egress guard).
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if attempt.url().origin() == redirect_origin {
                    attempt.follow()
                } else {
                    attempt.error("redirect to a foreign origin refused")
                }
            }))
            .build()
            .map_err(Error::Build)?;

        Ok(Client {
            shared: Arc::new(Shared {
                http,
                base,
                origin,
                gate: self.gate,
                rate_limit_retries: self.rate_limit_retries,
                user_agent,
            }),
            token: Arc::new(RwLock::new(self.token)),
            user_key: None,
        })
    }
}

fn parse_base_url(raw: &str) -> Result<Url> {
    let mut url = Url::parse(raw.trim()).map_err(|e| Error::InvalidBaseUrl(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::InvalidBaseUrl(
            "the scheme must be http or https".into(),
        ));
    }
    if url.host_str().is_none() {
        return Err(Error::InvalidBaseUrl("a host is required".into()));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(Error::InvalidBaseUrl(
            "no query, fragment or credentials allowed".into(),
        ));
    }
    // Keep an optional sub-path (Mattermost may live under e.g. /chat), without trailing '/'.
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

struct Shared {
    http: reqwest::Client,
    /// Origin plus optional sub-path, no trailing slash.
    base: Url,
    origin: url::Origin,
    gate: Option<Arc<dyn RequestGate>>,
    rate_limit_retries: u32,
    user_agent: HeaderValue,
}

/// A Mattermost REST client. Cheap to clone (two `Arc`s).
///
/// One client is built per server with [`Client::builder`]; per-user clients that share its
/// connection pool, rate-limit gate and egress guard are made with [`Client::with_token`].
/// Clones of a per-user client share its token, so [`Client::set_token`] (after an OAuth
/// refresh) is seen by all of them, including the WebSocket's next reconnect.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    token: Arc<RwLock<Option<Secret>>>,
    user_key: Option<Arc<str>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.shared.base.as_str())
            .field("user_key", &self.user_key)
            .field("has_token", &self.token().is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Start building a client for the Mattermost server at `base_url` (its site URL, e.g.
    /// `https://chat.example.com` or `https://example.com/mattermost`).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            rate_limit_retries: 0,
            gate: None,
            token: None,
            user_agent: USER_AGENT.to_owned(),
        }
    }

    /// A client with default settings and no token.
    pub fn new(base_url: impl Into<String>) -> Result<Self> {
        Self::builder(base_url).build()
    }

    /// A client sharing this one's connection pool and settings, with its own token cell.
    #[must_use]
    pub fn with_token(&self, token: impl Into<Secret>) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            token: Arc::new(RwLock::new(Some(token.into()))),
            user_key: self.user_key.clone(),
        }
    }

    /// A client sharing pool and token cell, whose requests are attributed to `user_key` in
    /// [`RequestGate::acquire`] (for per-user fairness in a shared limiter).
    #[must_use]
    pub fn with_user_key(&self, user_key: impl Into<Arc<str>>) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            token: Arc::clone(&self.token),
            user_key: Some(user_key.into()),
        }
    }

    /// Replace the token (e.g. after an OAuth refresh, which rotates it, research §0 trap 6).
    /// Affects every clone of this client.
    pub fn set_token(&self, token: impl Into<Secret>) {
        let mut guard = self
            .token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Some(token.into());
    }

    /// Forget the token.
    pub fn clear_token(&self) {
        let mut guard = self
            .token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = None;
    }

    /// The current token, if any.
    #[must_use]
    pub fn token(&self) -> Option<Secret> {
        self.token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The user key given to the request gate.
    #[must_use]
    pub fn user_key(&self) -> Option<&str> {
        self.user_key.as_deref()
    }

    /// The configured base URL (origin plus optional sub-path).
    #[must_use]
    pub fn base_url(&self) -> &Url {
        &self.shared.base
    }

    /// Egress guard: accept `url` only if it is on the configured origin (same scheme, host and
    /// port) and under the configured base path.
    pub fn check_url(&self, url: &str) -> Result<Url> {
        let parsed =
            Url::parse(url).map_err(|e| Error::InvalidArgument(format!("bad URL: {e}")))?;
        self.guard(&parsed)?;
        Ok(parsed)
    }

    fn guard(&self, url: &Url) -> Result<()> {
        let base_path = self.shared.base.path().trim_end_matches('/');
        let path_ok = base_path.is_empty()
            || url.path() == base_path
            || url
                .path()
                .strip_prefix(base_path)
                .is_some_and(|rest| rest.starts_with('/'));
        let has_credentials = !url.username().is_empty() || url.password().is_some();
        if url.origin() != self.shared.origin || !path_ok || has_credentials {
            return Err(Error::ForeignOrigin {
                origin: url.origin().ascii_serialization(),
            });
        }
        Ok(())
    }

    pub(crate) fn user_agent(&self) -> &HeaderValue {
        &self.shared.user_agent
    }

    pub(crate) fn gate(&self) -> Option<&Arc<dyn RequestGate>> {
        self.shared.gate.as_ref()
    }

    /// `base + /api/v4/ + segments` (each segment percent-encoded).
    pub(crate) fn api_url(&self, segments: &[&str]) -> Url {
        self.url_with_prefix(&["api", "v4"], segments)
    }

    pub(crate) fn url_with_prefix(&self, prefix: &[&str], segments: &[&str]) -> Url {
        let mut url = self.shared.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(prefix);
            path.extend(segments);
        }
        url
    }

    /// Start an API request.
    pub(crate) fn request(&self, method: Method, segments: &[&str]) -> Request {
        Request::new(method, self.api_url(segments))
    }

    /// Fetch the bytes at an absolute URL on the configured server (e.g. a `/api/v4/...` link
    /// found in data). Any other origin is refused with [`Error::ForeignOrigin`].
    pub async fn get_url_bytes(&self, url: &str) -> Result<crate::models::FileBytes> {
        let url = self.check_url(url)?;
        let resp = self.send(Request::new(Method::GET, url)).await?;
        crate::client::read_bytes(resp).await
    }

    /// Send a request: egress guard, gate, bearer token, 429 handling, error decoding.
    pub(crate) async fn send(&self, req: Request) -> Result<Response> {
        self.guard(&req.url)?;
        let endpoint = req.endpoint();
        let token = if req.auth {
            Some(self.token().ok_or(Error::NoToken)?)
        } else {
            None
        };
        let mut attempts_left = self.shared.rate_limit_retries;
        loop {
            if let Some(gate) = &self.shared.gate {
                gate.acquire(self.user_key()).await;
            }
            let mut rb = self
                .shared
                .http
                .request(req.method.clone(), req.url.clone());
            if let Some(token) = &token {
                let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose()))
                    .map_err(|_| Error::InvalidArgument("token has invalid characters".into()))?;
                value.set_sensitive(true);
                rb = rb.header(header::AUTHORIZATION, value);
            }
            for (name, value) in &req.headers {
                rb = rb.header(name.clone(), value.clone());
            }
            rb = match &req.body {
                Body::None => rb,
                Body::Json(bytes) => rb
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(bytes.clone()),
                Body::Form(bytes) => rb
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(bytes.clone()),
            };
            let resp = rb.send().await.map_err(|e| transport_error(&endpoint, e))?;
            let status = resp.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let (retry_after, reset) = rate_limit_headers(resp.headers());
                if let Some(gate) = &self.shared.gate {
                    gate.on_rate_limited(self.user_key(), retry_after);
                }
                tracing::debug!(%endpoint, ?retry_after, "rate limited by Mattermost");
                if attempts_left > 0 {
                    attempts_left -= 1;
                    tokio::time::sleep(retry_after).await;
                    continue;
                }
                return Err(Error::RateLimited { retry_after, reset });
            }
            // 304 answers a conditional GET (`If-None-Match`); only callers that sent one see it.
            if status.is_success() || status == StatusCode::NOT_MODIFIED {
                return Ok(Response { resp, endpoint });
            }
            let body = resp.bytes().await.unwrap_or_default();
            return Err(match AppError::parse(&body) {
                Some(app) => Error::Api {
                    status: status.as_u16(),
                    id: app.id,
                    message: app.message,
                    request_id: app.request_id,
                    detailed_error: app.detailed_error,
                    endpoint,
                },
                None => Error::Http {
                    status: status.as_u16(),
                    endpoint,
                },
            });
        }
    }

    /// Send and decode a JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(&self, req: Request) -> Result<T> {
        self.send(req).await?.json().await
    }

    /// Send and ignore the answer body (e.g. `{"status":"OK"}`).
    pub(crate) async fn no_content(&self, req: Request) -> Result<()> {
        let resp = self.send(req).await?;
        // Drain the body so the connection can be reused.
        let _ = resp.resp.bytes().await;
        Ok(())
    }
}

/// Parse `Retry-After` and `X-RateLimit-Reset`, both *seconds from now* in Mattermost
/// (research §0 trap 20; the spec's "epoch" is wrong).
pub(crate) fn rate_limit_headers(headers: &HeaderMap) -> (Duration, Option<Duration>) {
    let secs = |name: &str| -> Option<Duration> {
        let v = headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()?;
        (v.is_finite() && v >= 0.0).then(|| Duration::from_secs_f64(v.min(86_400.0)))
    };
    let reset = secs("x-ratelimit-reset");
    let retry_after = secs("retry-after")
        .or(reset)
        .unwrap_or(Duration::from_secs(1));
    (retry_after, reset)
}

fn transport_error(endpoint: &str, e: reqwest::Error) -> Error {
    if e.is_timeout() {
        Error::Timeout {
            endpoint: endpoint.to_owned(),
        }
    } else {
        Error::Transport {
            endpoint: endpoint.to_owned(),
            source: e.without_url(),
        }
    }
}

/// Request body, pre-serialized so a request can be re-sent after a 429.
pub(crate) enum Body {
    None,
    Json(bytes::Bytes),
    Form(bytes::Bytes),
}

/// A request being built.
pub(crate) struct Request {
    method: Method,
    url: Url,
    body: Body,
    auth: bool,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Request {
    fn new(method: Method, url: Url) -> Self {
        Self {
            method,
            url,
            body: Body::None,
            auth: true,
            headers: Vec::new(),
        }
    }

    /// Method and path (no query), for errors and logs.
    fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.url.path())
    }

    /// Append query parameters.
    pub(crate) fn query<Q: Serialize + ?Sized>(mut self, query: &Q) -> Result<Self> {
        let encoded = serde_urlencoded::to_string(query)
            .map_err(|e| Error::InvalidArgument(format!("query: {e}")))?;
        if !encoded.is_empty() {
            let joined = match self.url.query() {
                Some(q) if !q.is_empty() => format!("{q}&{encoded}"),
                _ => encoded,
            };
            self.url.set_query(Some(&joined));
        }
        Ok(self)
    }

    /// A JSON body.
    pub(crate) fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Result<Self> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::InvalidArgument(format!("body: {}", describe_json_error(&e))))?;
        self.body = Body::Json(bytes.into());
        Ok(self)
    }

    /// A form-encoded body.
    pub(crate) fn form<B: Serialize + ?Sized>(mut self, body: &B) -> Result<Self> {
        let encoded = serde_urlencoded::to_string(body)
            .map_err(|e| Error::InvalidArgument(format!("form: {e}")))?;
        self.body = Body::Form(encoded.into_bytes().into());
        Ok(self)
    }

    /// An extra request header (e.g. `If-None-Match`).
    pub(crate) fn header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Send without `Authorization` (login, OAuth token endpoint, ping).
    pub(crate) fn without_auth(mut self) -> Self {
        self.auth = false;
        self
    }

    pub(crate) fn with_url(method: Method, url: Url) -> Self {
        Self::new(method, url)
    }
}

/// A successful response.
pub(crate) struct Response {
    pub(crate) resp: reqwest::Response,
    pub(crate) endpoint: String,
}

impl Response {
    pub(crate) fn headers(&self) -> &HeaderMap {
        self.resp.headers()
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.resp.status()
    }

    pub(crate) async fn bytes(self) -> Result<bytes::Bytes> {
        let endpoint = self.endpoint;
        self.resp
            .bytes()
            .await
            .map_err(|e| transport_error(&endpoint, e))
    }

    pub(crate) async fn json<T: DeserializeOwned>(self) -> Result<T> {
        let endpoint = self.endpoint.clone();
        let body = self.bytes().await?;
        serde_json::from_slice(&body).map_err(|e| Error::Decode {
            endpoint,
            reason: describe_json_error(&e),
            truncated: is_truncation(&e),
        })
    }
}

pub(crate) async fn read_bytes(resp: Response) -> Result<crate::models::FileBytes> {
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = resp.bytes().await?;
    Ok(crate::models::FileBytes {
        bytes,
        content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_validation() {
        assert!(Client::new("ftp://x").is_err());
        assert!(Client::new("not a url").is_err());
        assert!(Client::new("https://x/?a=b").is_err());
        let c = Client::new("https://chat.example.com/").unwrap();
        assert_eq!(
            c.api_url(&["users", "me"]).as_str(),
            "https://chat.example.com/api/v4/users/me"
        );
        let c = Client::new("https://example.com/mm/").unwrap();
        assert_eq!(
            c.api_url(&["emoji", "name", "a/b c"]).as_str(),
            "https://example.com/mm/api/v4/emoji/name/a%2Fb%20c"
        );
    }

    #[test]
    fn origin_guard() {
        let c = Client::new("https://chat.example.com/mm").unwrap();
        assert!(
            c.check_url("https://chat.example.com/mm/api/v4/users/me")
                .is_ok()
        );
        assert!(c.check_url("https://chat.example.com/mm").is_ok());
        for bad in [
            "https://evil.example.com/mm/api/v4/users/me",
            "http://chat.example.com/mm/api/v4/users/me",
            "https://chat.example.com:8443/mm/api/v4/users/me",
            "https://chat.example.com/other/api/v4",
            "https://chat.example.com/mmx/api",
            "https://user@chat.example.com/mm/api",
            "https://:pw@chat.example.com/mm/api",
        ] {
            assert!(
                matches!(c.check_url(bad), Err(Error::ForeignOrigin { .. })),
                "{bad} should be refused"
            );
        }
    }

    #[tokio::test]
    async fn foreign_url_is_refused_before_any_request() {
        let c = Client::new("http://127.0.0.1:9").unwrap().with_token("t");
        let err = c
            .get_url_bytes("http://203.0.113.7/api/v4/users/me")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ForeignOrigin { .. }), "{err:?}");
    }

    #[test]
    fn rate_limit_header_parsing() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("10"));
        assert_eq!(
            rate_limit_headers(&h),
            (Duration::from_secs(3), Some(Duration::from_secs(10)))
        );
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", HeaderValue::from_static("2"));
        assert_eq!(
            rate_limit_headers(&h),
            (Duration::from_secs(2), Some(Duration::from_secs(2)))
        );
        assert_eq!(
            rate_limit_headers(&HeaderMap::new()),
            (Duration::from_secs(1), None)
        );
    }

    #[test]
    fn token_is_not_in_debug_and_is_shared_by_clones() {
        let base = Client::new("https://chat.example.com").unwrap();
        let user = base.with_token("tok-123").with_user_key("u1");
        let clone = user.clone();
        user.set_token("tok-456");
        assert_eq!(clone.token().unwrap().expose(), "tok-456");
        assert!(base.token().is_none());
        let dbg = format!("{user:?}");
        assert!(!dbg.contains("tok-"), "{dbg}");
        assert_eq!(clone.user_key(), Some("u1"));
    }
}
