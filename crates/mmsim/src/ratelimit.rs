//! The real server's rate limiter (OWNED BY THE WS WORK).
//!
//! Mattermost wraps its whole HTTP server (API, WebSocket upgrade, static files) in a GCRA
//! limiter from `throttled/throttled` v2 when `RateLimitSettings.Enable` is true — off by default
//! (research `mattermost-api.md` §8, trap 20; reliability finding 2;
//! `server/channels/app/ratelimit.go`, `server/public/model/config.go`). Defaults: 10 req/s,
//! burst 100, keyed by client IP (`VaryByRemoteAddr`), or by auth token when `VaryByUser`
//! (falling back to the IP without a token), plus a header value when `VaryByHeader` is set.
//!
//! Every response on the limited path carries `X-RateLimit-Limit` (= burst + 1),
//! `X-RateLimit-Remaining`, `X-RateLimit-Reset` (seconds until the bucket is full again — the
//! OpenAPI text wrongly says an epoch); a refused request gets 429, `Retry-After` (seconds) and
//! the body `limit exceeded\n` as `text/plain; charset=utf-8` (Go's `http.Error`), not an AppError.
//!
//! Not simulated: the second, per-user-id check that runs after authentication with `VaryByUser`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// `RateLimitSettings` (the subset that shapes behaviour).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    pub per_sec: u32,
    pub max_burst: u32,
    pub vary_by_remote_addr: bool,
    pub vary_by_user: bool,
    /// Header whose (lower-cased) value is appended to the key; empty = none.
    pub vary_by_header: String,
    /// Keys remembered (`MemoryStoreSize`); beyond it, idle keys are forgotten.
    pub memory_store_size: usize,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_sec: 10,
            max_burst: 100,
            vary_by_remote_addr: true,
            vary_by_user: false,
            vary_by_header: String::new(),
            memory_store_size: 10_000,
        }
    }
}

/// The outcome of one check (`throttled.RateLimitResult`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub limited: bool,
    /// `MaxBurst + 1`.
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset_after: Duration,
    /// Until the next request is allowed (only when limited).
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// Add the `X-RateLimit-*` headers (and `Retry-After` when limited), as
    /// `setRateLimitHeaders` does: seconds rounded up.
    pub fn apply_headers(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert(
            "x-ratelimit-reset",
            HeaderValue::from(ceil_secs(self.reset_after)),
        );
        if let Some(retry) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(ceil_secs(retry)));
        }
    }

    /// The 429 response with the headers.
    #[must_use]
    pub fn into_response(self) -> Response {
        let mut resp = too_many_requests();
        self.apply_headers(resp.headers_mut());
        resp
    }
}

/// Go `http.Error(w, "limit exceeded", 429)`.
#[must_use]
pub fn too_many_requests() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        "limit exceeded\n",
    )
        .into_response()
}

fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs();
    if d.subsec_nanos() > 0 { secs + 1 } else { secs }
}

struct Inner {
    settings: Option<RateLimitSettings>,
    /// Theoretical arrival time per key, in nanoseconds since `base`.
    tats: HashMap<String, i128>,
}

/// A GCRA limiter with `throttled` v2 semantics; settings can change at runtime.
pub struct RateLimiter {
    base: Instant,
    inner: Mutex<Inner>,
}

impl RateLimiter {
    #[must_use]
    pub fn new(settings: Option<RateLimitSettings>) -> Self {
        Self {
            base: Instant::now(),
            inner: Mutex::new(Inner {
                settings,
                tats: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Current settings (`None` = disabled, the real default).
    #[must_use]
    pub fn settings(&self) -> Option<RateLimitSettings> {
        self.lock().settings.clone()
    }

    /// Enable (`Some`) or disable (`None`) limiting; every bucket starts full again.
    pub fn set_settings(&self, settings: Option<RateLimitSettings>) {
        let mut inner = self.lock();
        inner.settings = settings;
        inner.tats.clear();
    }

    /// The bucket key of a request (`RateLimiter.GenerateKey`).
    #[must_use]
    pub fn key(settings: &RateLimitSettings, ip: Option<IpAddr>, headers: &HeaderMap) -> String {
        let ip = ip.map(|ip| ip.to_string()).unwrap_or_default();
        let mut key = String::new();
        if settings.vary_by_user {
            match crate::ws::request_token(headers) {
                Some(token) => key.push_str(&token),
                None if settings.vary_by_remote_addr => key.push_str(&ip),
                None => {}
            }
        } else if settings.vary_by_remote_addr {
            key.push_str(&ip);
        }
        if !settings.vary_by_header.is_empty() {
            let value = headers
                .get(settings.vary_by_header.as_str())
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            key.push_str(&value.to_lowercase());
        }
        key
    }

    /// Check a request now; `None` when limiting is off.
    pub fn check(&self, ip: Option<IpAddr>, headers: &HeaderMap) -> Option<Decision> {
        let settings = self.settings()?;
        let key = Self::key(&settings, ip, headers);
        self.check_key_at(&key, Instant::now())
    }

    /// One GCRA step for `key` at `now` (`GCRARateLimiter.RateLimit` with quantity 1).
    pub fn check_key_at(&self, key: &str, now: Instant) -> Option<Decision> {
        let mut inner = self.lock();
        let settings = inner.settings.clone()?;
        let now_ns = i128::try_from(now.saturating_duration_since(self.base).as_nanos())
            .unwrap_or(i128::MAX / 4);
        let emission = 1_000_000_000_i128 / i128::from(settings.per_sec.max(1));
        let tolerance = emission * i128::from(settings.max_burst);
        let increment = emission;

        let tat = inner.tats.get(key).copied().unwrap_or(now_ns);
        let new_tat = if now_ns > tat {
            now_ns + increment
        } else {
            tat + increment
        };
        let allow_at = new_tat - tolerance;
        let diff = now_ns - allow_at;
        let (limited, ttl, retry_after) = if diff < 0 {
            let retry = (increment <= tolerance).then(|| nanos(-diff));
            (true, tat - now_ns, retry)
        } else {
            if inner.tats.len() >= settings.memory_store_size.max(1)
                && !inner.tats.contains_key(key)
            {
                // A full store forgets keys whose bucket is full again (they behave as new).
                inner.tats.retain(|_, t| *t > now_ns);
            }
            inner.tats.insert(key.to_owned(), new_tat);
            (false, new_tat - now_ns, None)
        };
        let next = tolerance - ttl;
        let remaining = if next > -emission {
            u32::try_from((next / emission).max(0)).unwrap_or(u32::MAX)
        } else {
            0
        };
        Some(Decision {
            limited,
            limit: settings.max_burst + 1,
            remaining,
            reset_after: nanos(ttl.max(0)),
            retry_after,
        })
    }
}

fn nanos(n: i128) -> Duration {
    Duration::from_nanos(u64::try_from(n.max(0)).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited_then_recovers() {
        let rl = RateLimiter::new(Some(RateLimitSettings::default()));
        let t0 = Instant::now();
        let first = rl.check_key_at("ip", t0).unwrap();
        assert_eq!(first.limit, 101);
        // throttled counts the request itself: 99 left, 100 allowed at one instant.
        assert_eq!(first.remaining, 99);
        assert!(!first.limited);
        for _ in 0..99 {
            assert!(!rl.check_key_at("ip", t0).unwrap().limited);
        }
        let refused = rl.check_key_at("ip", t0).unwrap();
        assert!(refused.limited);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after, Some(Duration::from_millis(100)));
        assert_eq!(ceil_secs(refused.reset_after), 10);
        // 10 req/s: one more is allowed 100 ms later.
        let later = rl
            .check_key_at("ip", t0 + Duration::from_millis(100))
            .unwrap();
        assert!(!later.limited);
        // Other keys are independent.
        assert!(!rl.check_key_at("other", t0).unwrap().limited);
    }

    #[test]
    fn disabled_by_default() {
        let rl = RateLimiter::new(None);
        assert!(rl.check(None, &HeaderMap::new()).is_none());
    }
}
