//! Security headers on every response, and the per-request CSP nonce.
//!
//! The Content-Security-Policy forbids every external origin (ThreadDesk promises no outbound
//! traffic from the browser either: images and files come through ThreadDesk's own media
//! routes), inline scripts without the nonce, inline styles, framing and `<base>` tricks.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use rand::RngCore;

/// The nonce of the current request, readable by handlers through request extensions.
#[derive(Clone, Debug)]
pub struct CspNonce(pub String);

impl CspNonce {
    fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Self(base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

/// The policy for a nonce. `style-src 'self'` only: no inline styles anywhere.
#[must_use]
pub fn csp(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; img-src 'self' data:; \
         font-src 'self'; connect-src 'self'; media-src 'self'; object-src 'none'; frame-src 'none'; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
}

/// Middleware: generate the nonce, run the handler, add the headers.
pub async fn headers(mut req: Request, next: Next) -> Response {
    let nonce = CspNonce::generate();
    let policy = csp(&nonce.0);
    req.extensions_mut().insert(nonce);
    let is_static = req.uri().path().starts_with("/static/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&policy) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    );
    // Personal pages and API answers are never cached; static assets are content-hashed.
    if !is_static && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_has_no_unsafe_and_no_external_origin() {
        let p = csp("abc");
        assert!(!p.contains("unsafe-inline"));
        assert!(!p.contains("unsafe-eval"));
        assert!(!p.contains("http:"));
        assert!(!p.contains("https:"));
        assert!(!p.contains('*'));
        assert!(p.contains("frame-ancestors 'none'"));
        assert!(p.contains("'nonce-abc'"));
    }
}
