//! Mattermost as an OAuth 2.0 provider (research §2.4): the authorize URL with `state` and
//! PKCE S256, and the token endpoint (code exchange and refresh).
//!
//! Quirks handled here: client credentials go **only in form fields** (`client_secret_post`;
//! HTTP Basic is ignored, trap 5); errors are `AppError` JSON, not RFC 6749 bodies (trap 4),
//! and arrive as [`crate::Error::Api`] with odd statuses (unknown client 404, wrong secret 401,
//! expired code 403); refresh **rotates both tokens** and kills the old session at once
//! (trap 6), so persist the new pair before using it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use sha2::{Digest, Sha256};
use url::Url;

use crate::client::{Client, Request};
use crate::error::Result;
use crate::models::OAuthTokenResponse;
use crate::secret::Secret;

/// A PKCE pair (RFC 7636, method S256).
#[derive(Debug, Clone)]
pub struct Pkce {
    /// Keep server-side until the callback; send with the code exchange.
    pub verifier: Secret,
    /// `BASE64URL-NOPAD(SHA-256(verifier))`, sent in the authorize URL.
    pub challenge: String,
}

impl Pkce {
    /// A fresh random verifier (32 random bytes → 43 URL-safe characters) and its challenge.
    #[must_use]
    pub fn generate() -> Self {
        Self::from_verifier(Secret::new(random_token()))
    }

    /// The challenge for a given verifier.
    #[must_use]
    pub fn from_verifier(verifier: Secret) -> Self {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose().as_bytes()));
        Self {
            verifier,
            challenge,
        }
    }
}

/// 32 random bytes from a CSPRNG, base64url without padding (43 chars): use for `state`.
#[must_use]
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Client {
    /// `{site}/oauth/authorize?response_type=code&client_id=…&redirect_uri=…&state=…
    /// &code_challenge=…&code_challenge_method=S256`. `redirect_uri` must equal a registered
    /// callback exactly. PKCE needs Mattermost ≥ 11.2 (reliability finding 6).
    #[must_use]
    pub fn authorize_url(
        &self,
        client_id: &str,
        redirect_uri: &str,
        state: &str,
        pkce: Option<&Pkce>,
    ) -> Url {
        let mut url = self.url_with_prefix(&["oauth", "authorize"], &[]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("state", state);
            if let Some(p) = pkce {
                q.append_pair("code_challenge", &p.challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        url
    }

    /// Exchange an authorization code (`grant_type=authorization_code`). `client_secret` is
    /// `None` for public clients; `code_verifier` is required when a challenge was sent.
    pub async fn oauth_exchange_code(
        &self,
        client_id: &str,
        client_secret: Option<&Secret>,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&Secret>,
    ) -> Result<OAuthTokenResponse> {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(s) = client_secret {
            form.push(("client_secret", s.expose()));
        }
        if let Some(v) = code_verifier {
            form.push(("code_verifier", v.expose()));
        }
        self.token_request(&form).await
    }

    /// Refresh (`grant_type=refresh_token`). Both tokens rotate; the old access token stops
    /// working at once. Public clients cannot refresh.
    pub async fn oauth_refresh(
        &self,
        client_id: &str,
        client_secret: &Secret,
        refresh_token: &Secret,
    ) -> Result<OAuthTokenResponse> {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("client_secret", client_secret.expose()),
            ("refresh_token", refresh_token.expose()),
        ])
        .await
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<OAuthTokenResponse> {
        let url = self.url_with_prefix(&["oauth", "access_token"], &[]);
        let req = Request::with_url(Method::POST, url)
            .without_auth()
            .form(form)?;
        self.json(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rfc7636_example() {
        // RFC 7636 appendix B.
        let p = Pkce::from_verifier(Secret::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let g = Pkce::generate();
        assert_eq!(g.verifier.expose().len(), 43);
        assert_ne!(random_token(), random_token());
    }

    #[test]
    fn authorize_url_shape() {
        let c = Client::new("https://chat.example.com/mm").unwrap();
        let p = Pkce::from_verifier(Secret::new("v"));
        let u = c.authorize_url("cid", "https://td.example.com/cb?x=1", "st", Some(&p));
        assert!(
            u.as_str()
                .starts_with("https://chat.example.com/mm/oauth/authorize?")
        );
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["redirect_uri"], "https://td.example.com/cb?x=1");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["state"], "st");
        assert!(c.check_url(u.as_str()).is_ok());
    }
}
