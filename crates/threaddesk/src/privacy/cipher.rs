//! Tokens encrypted at rest with XChaCha20-Poly1305.
//!
//! The 256-bit key lives outside the SQLite file: in a file of mode 0600 in the data directory
//! (created on first start) or in a file the admin names. A copied database reveals no token.
//! The user id and the token kind are bound as associated data, so a ciphertext moved to another
//! user's row (or from a refresh-token slot to an access-token slot) fails to decrypt.

use std::fs;
use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// Format tag stored in front of every ciphertext, so the scheme can change later.
const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error("while reading the encryption key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the encryption key file {path} must hold exactly {KEY_LEN} bytes (found {len}); restore the original key or remove the data directory and sign in again"
    )]
    BadKey { path: String, len: usize },
    #[error(
        "the encryption key file {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
    )]
    Permissions { path: String, mode: u32 },
    #[error("a stored token could not be decrypted (wrong key, or the row was tampered with)")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
}

/// The at-rest cipher. Cheap to clone.
#[derive(Clone)]
pub struct TokenCipher {
    aead: XChaCha20Poly1305,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher([key redacted])")
    }
}

impl TokenCipher {
    /// A cipher from raw key bytes (tests, or keys given by the admin).
    #[must_use]
    pub fn from_key(key: &[u8; KEY_LEN]) -> Self {
        Self {
            aead: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Load the key file, creating it with a fresh random key (mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, CipherError> {
        let shown = path.display().to_string();
        let io = |source| CipherError::Io {
            path: shown.clone(),
            source,
        };
        if !path.exists() {
            let mut key = [0u8; KEY_LEN];
            rand::rng().fill_bytes(&mut key);
            write_private(path, &key).map_err(io)?;
            return Ok(Self::from_key(&key));
        }
        check_private(path, &shown)?;
        let bytes = fs::read(path).map_err(io)?;
        let key: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CipherError::BadKey {
                path: shown.clone(),
                len: bytes.len(),
            })?;
        Ok(Self::from_key(&key))
    }

    /// Encrypt `plaintext`, bound to `aad` (e.g. `"<user id>:oauth_access"`).
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Result<Vec<u8>, CipherError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CipherError::Encrypt)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypt what [`seal`](Self::seal) produced with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<Vec<u8>, CipherError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(CipherError::Decrypt);
        }
        let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
        self.aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CipherError::Decrypt)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, key: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(key)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, key: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(key)?;
    f.sync_all()
}

#[cfg(unix)]
fn check_private(path: &Path, shown: &str) -> Result<(), CipherError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|source| CipherError::Io {
        path: shown.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CipherError::Permissions {
            path: shown.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _shown: &str) -> Result<(), CipherError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_aad_binding() {
        let c = TokenCipher::from_key(&[7u8; KEY_LEN]);
        let sealed = c.seal(b"tok-secret", "user1:access").unwrap();
        assert_eq!(c.open(&sealed, "user1:access").unwrap(), b"tok-secret");
        // Moved to another user's row or another kind: refused.
        assert!(c.open(&sealed, "user2:access").is_err());
        assert!(c.open(&sealed, "user1:refresh").is_err());
        // Ciphertext does not contain the plaintext.
        assert!(!sealed.windows(10).any(|w| w == b"tok-secret"));
        // Tampering detected.
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(c.open(&bad, "user1:access").is_err());
        assert!(c.open(&[], "user1:access").is_err());
    }

    #[test]
    fn key_file_created_0600_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("td-key-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("key");
        let a = TokenCipher::load_or_create(&path).unwrap();
        let sealed = a.seal(b"x", "u:k").unwrap();
        let b = TokenCipher::load_or_create(&path).unwrap();
        assert_eq!(b.open(&sealed, "u:k").unwrap(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                TokenCipher::load_or_create(&path),
                Err(CipherError::Permissions { .. })
            ));
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        fs::write(&path, b"short").unwrap();
        assert!(matches!(
            TokenCipher::load_or_create(&path),
            Err(CipherError::BadKey { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
