//! One user's browser sessions: the list on the settings page, ending one of them or all the
//! others (ASVS 7.5.2). Every statement is bound to the handle's user id, so a handle of another
//! user's session is simply not found.
//!
//! A session is named to the browser by a *handle*: the first 128 bits of
//! `SHA-256("threaddesk-session-handle:" ‖ id_hash)`. It cannot be turned back into the session
//! id (nor into the stored hash), so showing it in a page gives nothing to replay.

use rusqlite::params;
use sha2::{Digest, Sha256};

use super::{StoreError, UserStore, exec, hash_token};
use crate::inbox::Millis;

/// Longest stored user-agent summary.
pub const MAX_AGENT: usize = 64;

/// One live browser session of the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    /// Public name of the session (see the module documentation).
    pub handle: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
    /// A summary such as "Firefox on Linux" (empty for sessions older than the column).
    pub user_agent: String,
    /// The session of the request that asked.
    pub current: bool,
}

fn handle_of(id_hash: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"threaddesk-session-handle:");
    h.update(id_hash);
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl UserStore<'_> {
    /// The user's live sessions (not past the absolute or idle timeout), most recently used
    /// first; `current_token` marks the asking session.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn sessions(
        &self,
        current_token: &str,
        now: Millis,
        idle_timeout_ms: Millis,
    ) -> Result<Vec<SessionEntry>, StoreError> {
        let current = hash_token(current_token);
        let u = self.user.as_str();
        self.store.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id_hash, created_at, last_seen_at, expires_at, user_agent
                 FROM web_sessions
                 WHERE user_id = ?1 AND expires_at > ?2 AND last_seen_at + ?3 > ?2
                 ORDER BY last_seen_at DESC, created_at DESC",
            )?;
            let rows = st.query_map(params![u, now, idle_timeout_ms], |r| {
                let id_hash: Vec<u8> = r.get(0)?;
                Ok(SessionEntry {
                    handle: handle_of(&id_hash),
                    created_at: r.get(1)?,
                    last_seen_at: r.get(2)?,
                    expires_at: r.get(3)?,
                    user_agent: r.get(4)?,
                    current: id_hash == current,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Ends the user's session named `handle`. `false` when the user has no such session
    /// (whoever else it may belong to).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn end_session(&self, handle: &str) -> Result<bool, StoreError> {
        let u = self.user.as_str();
        self.store.write(|tx| {
            let hashes: Vec<Vec<u8>> = {
                let mut st = tx
                    .conn
                    .prepare_cached("SELECT id_hash FROM web_sessions WHERE user_id = ?1")?;
                st.query_map(params![u], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            };
            let Some(hash) = hashes.iter().find(|h| handle_of(h) == handle) else {
                return Ok(false);
            };
            Ok(exec(
                tx.conn,
                "DELETE FROM web_sessions WHERE user_id = ?1 AND id_hash = ?2",
                params![u, hash],
            )? > 0)
        })
    }

    /// Ends every session of the user except `current_token`'s. Returns how many ended.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn end_other_sessions(&self, current_token: &str) -> Result<usize, StoreError> {
        let u = self.user.as_str();
        let keep = hash_token(current_token);
        self.store.write(|tx| {
            Ok(exec(
                tx.conn,
                "DELETE FROM web_sessions WHERE user_id = ?1 AND id_hash <> ?2",
                params![u, keep],
            )?)
        })
    }

    /// Records the user-agent summary of the user's session `token` (cut to [`MAX_AGENT`]).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn set_session_agent(&self, token: &str, summary: &str) -> Result<(), StoreError> {
        let u = self.user.as_str();
        let summary: String = summary.chars().take(MAX_AGENT).collect();
        let hash = hash_token(token);
        self.store.write(|tx| {
            exec(
                tx.conn,
                "UPDATE web_sessions SET user_agent = ?3 WHERE user_id = ?1 AND id_hash = ?2",
                params![u, hash, summary],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::handle_of;

    #[test]
    fn handles_are_128_bit_hex_and_differ_from_the_hash() {
        let h = handle_of(&[7u8; 32]);
        assert_eq!(h.len(), 32);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(h, handle_of(&[8u8; 32]));
        assert!(!h.contains(&"07".repeat(16)));
    }
}
