//! A user's Mattermost credentials: stored encrypted, loaded into a per-user client, refreshed.
//!
//! One encrypted row per user (kind [`CREDENTIALS_KIND`]) holds the whole credential set as
//! JSON — method, access token, refresh token, expiry — so a refresh (Mattermost rotates both
//! tokens and kills the old session at once, research §2.4) is persisted in ONE durable write
//! before the new access token is used: a crash can never leave the old pair on disk.

use mattermost::{Client, Secret};
use serde::{Deserialize, Serialize};

use crate::privacy::cipher::{CipherError, TokenCipher};
use crate::store::{EncryptedBlob, Store, StoreError, UserId};

/// The token row kind.
pub const CREDENTIALS_KIND: &str = "mattermost";

/// Refresh an OAuth token this long before it expires.
const REFRESH_MARGIN_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    OAuth,
    PersonalToken,
}

impl Method {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OAuth => "oauth",
            Self::PersonalToken => "token",
        }
    }
}

/// Decrypted credentials. `Debug` redacts the tokens.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub method: Method,
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    /// ms since the epoch; 0 = does not expire (personal access tokens).
    #[serde(default)]
    pub expires_at: i64,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("method", &self.method)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    #[must_use]
    pub fn personal(token: &Secret) -> Self {
        Self {
            method: Method::PersonalToken,
            access_token: token.expose().to_owned(),
            refresh_token: None,
            expires_at: 0,
        }
    }

    #[must_use]
    pub fn oauth(access: &Secret, refresh: Option<&Secret>, expires_in_s: i64, now: i64) -> Self {
        Self {
            method: Method::OAuth,
            access_token: access.expose().to_owned(),
            refresh_token: refresh
                .filter(|r| !r.is_empty())
                .map(|r| r.expose().to_owned()),
            expires_at: if expires_in_s > 0 {
                now.saturating_add(expires_in_s.saturating_mul(1000))
            } else {
                0
            },
        }
    }

    #[must_use]
    pub fn access_token(&self) -> Secret {
        Secret::new(self.access_token.clone())
    }

    /// An OAuth token within a day of expiry (with a refresh token to renew it).
    #[must_use]
    pub fn needs_refresh(&self, now: i64) -> bool {
        self.method == Method::OAuth
            && self.refresh_token.is_some()
            && self.expires_at > 0
            && self.expires_at - REFRESH_MARGIN_MS <= now
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no Mattermost credentials are stored for this user; sign in again")]
    Missing,
    #[error(transparent)]
    Cipher(#[from] CipherError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored credentials are unreadable; sign in again")]
    Corrupt,
    #[error("Mattermost refused the stored credentials; sign in again")]
    Revoked,
    #[error("Mattermost could not be reached: {0}")]
    Mattermost(#[from] Box<mattermost::Error>),
}

fn aad(user: &UserId) -> String {
    format!("{}:{CREDENTIALS_KIND}", user.as_str())
}

/// Encrypt and store (durably: `synchronous=FULL`).
pub fn save(
    store: &Store,
    cipher: &TokenCipher,
    user: &UserId,
    creds: &Credentials,
    now: i64,
) -> Result<(), AccountError> {
    let json = serde_json::to_vec(creds).map_err(|_| AccountError::Corrupt)?;
    let blob = EncryptedBlob(cipher.seal(&json, &aad(user))?);
    store
        .for_user(user)
        .write_durable(|tx| tx.put_token(CREDENTIALS_KIND, &blob, now))?;
    Ok(())
}

/// Load and decrypt.
pub fn load(
    store: &Store,
    cipher: &TokenCipher,
    user: &UserId,
) -> Result<Credentials, AccountError> {
    let blob = store
        .for_user(user)
        .token(CREDENTIALS_KIND)?
        .ok_or(AccountError::Missing)?;
    let json = cipher.open(&blob.0, &aad(user))?;
    serde_json::from_slice(&json).map_err(|_| AccountError::Corrupt)
}

/// Forget the stored credentials.
pub fn forget(store: &Store, user: &UserId) -> Result<(), AccountError> {
    store
        .for_user(user)
        .write_durable(|tx| tx.delete_token(CREDENTIALS_KIND))?;
    Ok(())
}

/// OAuth client settings needed to refresh.
#[derive(Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: Secret,
}

/// The user's credentials, refreshed first when an OAuth token is close to expiry (the rotated
/// pair is persisted durably before it is returned, so it is never used unsaved).
pub async fn fresh_credentials(
    base: &Client,
    store: &Store,
    cipher: &TokenCipher,
    oauth: Option<&OAuthApp>,
    user: &UserId,
    now: i64,
) -> Result<Credentials, AccountError> {
    let mut creds = load(store, cipher, user)?;
    if creds.needs_refresh(now)
        && let (Some(app), Some(refresh)) = (oauth, creds.refresh_token.clone())
    {
        let resp = base
            .oauth_refresh(&app.client_id, &app.client_secret, &Secret::new(refresh))
            .await
            .map_err(|e| {
                if e.is_unauthorized() || e.is_not_found() || e.status() == Some(400) {
                    AccountError::Revoked
                } else {
                    AccountError::Mattermost(Box::new(e))
                }
            })?;
        // Mattermost has rotated both tokens: until `save` returns, the only copy of the new
        // pair is in memory (a crash here means the user signs in again, T-17).
        failpoint("after_refresh_response");
        creds = Credentials::oauth(
            &resp.access_token,
            resp.refresh_token.as_ref(),
            resp.expires_in,
            now,
        );
        save(store, cipher, user, &creds, now)?;
        tracing::info!(user.id = %user.as_str(), "oauth token refreshed and persisted");
    }
    Ok(creds)
}

/// A crash point for tests, compiled into debug builds only (release builds have no such
/// code, so no environment variable can stop a production server). With
/// `THREADDESK_FAILPOINT=<name>` the process says so on stderr and stops at that point until it
/// is killed, so a test can `kill -9` it exactly there (`tests/oauth_refresh.rs`).
fn failpoint(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("THREADDESK_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("THREADDESK_FAILPOINT {name} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// A client for `user` with a valid access token (see [`fresh_credentials`]).
pub async fn client_for(
    base: &Client,
    store: &Store,
    cipher: &TokenCipher,
    oauth: Option<&OAuthApp>,
    user: &UserId,
    now: i64,
) -> Result<(Client, Credentials), AccountError> {
    let creds = fresh_credentials(base, store, cipher, oauth, user, now).await?;
    let client = base
        .with_token(creds.access_token())
        .with_user_key(user.as_str().to_owned());
    Ok((client, creds))
}
