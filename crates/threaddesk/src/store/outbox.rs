//! The outbox: user actions committed locally (with `synchronous=FULL`) before the web layer
//! answers, then sent to Mattermost by a per-user sender.
//!
//! States: `queued → inflight → sent | failed`, `inflight → queued` (retry later, same
//! `pending_post_id`), `failed → queued` (the user retries). `pending_post_id` and `marker` are
//! fixed at creation. At most one row per item key is in flight and rows of one item go in
//! creation order. Idempotent actions (read, follow, done, snooze) may coalesce: a new row
//! replaces a still-queued one of the same kind and item.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::text::JsonText;
use super::{StoreError, UserStore, exec, q_row};
use crate::inbox::{ItemKey, Millis};

/// Outbox row state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    Queued,
    Inflight,
    Sent,
    Failed,
}

impl OutboxState {
    /// Stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Inflight => "inflight",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    /// Inverse of [`OutboxState::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "inflight" => Self::Inflight,
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// The allowed transitions (pure; the SQL enforces the same with `WHERE state = …`).
    #[must_use]
    pub fn can_go(self, to: Self) -> bool {
        matches!(
            (self, to),
            (Self::Queued, Self::Inflight)
                | (Self::Inflight, Self::Sent | Self::Failed | Self::Queued)
                | (Self::Failed, Self::Queued)
        )
    }
}

/// A new outbox row.
#[derive(Debug, Clone)]
pub struct NewOutbox {
    /// Action kind, e.g. `reply`, `read`, `done`, `snooze`, `follow`, `react`.
    pub kind: String,
    pub item_key: ItemKey,
    /// Action payload (may hold message text: redacted in `Debug`).
    pub payload: JsonText,
    /// Mattermost `pending_post_id` (`<user_id>:<ms>`), `""` for non-post actions.
    pub pending_post_id: String,
    /// Sent as `props.threaddesk_outbox_id` to find the post when reconciling.
    pub marker: String,
    /// Replace a still-queued row of the same kind and item instead of adding one.
    pub coalesce: bool,
}

/// A stored outbox row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub item_key: String,
    pub payload: JsonText,
    pub pending_post_id: String,
    pub marker: String,
    pub state: OutboxState,
    pub attempts: i64,
    pub first_sent_at: Option<Millis>,
    pub next_attempt_at: Millis,
    pub last_error: Option<String>,
    pub post_id: Option<String>,
    pub created_at: Millis,
}

pub(crate) const COLUMNS: &str =
    "id, kind, item_key, payload, pending_post_id, marker, state, attempts,
    first_sent_at, next_attempt_at, last_error, post_id, created_at";

pub(crate) fn from_row(r: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    let state: String = r.get(6)?;
    Ok(OutboxRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        item_key: r.get(2)?,
        payload: JsonText::new(r.get::<_, String>(3)?),
        pending_post_id: r.get(4)?,
        marker: r.get(5)?,
        state: OutboxState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                6,
                rusqlite::types::Type::Text,
                "bad outbox state".into(),
            )
        })?,
        attempts: r.get(7)?,
        first_sent_at: r.get(8)?,
        next_attempt_at: r.get(9)?,
        last_error: r.get(10)?,
        post_id: r.get(11)?,
        created_at: r.get(12)?,
    })
}

fn transition(
    conn: &Connection,
    user: &str,
    id: i64,
    to: OutboxState,
    sql_set: &str,
    extra: &[&dyn rusqlite::ToSql],
) -> Result<(), StoreError> {
    let from: Option<String> = q_row(
        conn,
        "SELECT state FROM outbox WHERE user_id = ?1 AND id = ?2",
        params![user, id],
        |r| r.get(0),
    )
    .optional()?;
    let Some(from) = from else {
        return Err(StoreError::NotFound);
    };
    let from_state = OutboxState::parse(&from).ok_or(StoreError::Corrupt("outbox state"))?;
    if !from_state.can_go(to) {
        return Err(StoreError::InvalidTransition {
            id,
            from,
            to: to.as_str(),
        });
    }
    let sql = format!(
        "UPDATE outbox SET state = '{}', {sql_set} WHERE user_id = ?1 AND id = ?2",
        to.as_str()
    );
    let mut p: Vec<&dyn rusqlite::ToSql> = vec![&user, &id];
    p.extend_from_slice(extra);
    exec(conn, &sql, p.as_slice())?;
    Ok(())
}

/// Inserts (or coalesces) an outbox row for `user` within the caller's transaction.
pub(crate) fn enqueue(
    conn: &Connection,
    user: &str,
    new: &NewOutbox,
    now: Millis,
) -> Result<i64, StoreError> {
    let key = new.item_key.to_string();
    if new.coalesce {
        let id: Option<i64> = q_row(
            conn,
            "UPDATE outbox SET payload = ?4, next_attempt_at = min(next_attempt_at, ?5)
             WHERE id = (SELECT id FROM outbox WHERE user_id = ?1 AND kind = ?2
                         AND item_key = ?3 AND state = 'queued' ORDER BY id DESC LIMIT 1)
             RETURNING id",
            params![user, new.kind, key, new.payload.expose(), now],
            |r| r.get(0),
        )
        .optional()?;
        if let Some(id) = id {
            return Ok(id);
        }
    }
    Ok(q_row(
        conn,
        "INSERT INTO outbox (user_id, kind, item_key, payload, pending_post_id, marker, state,
           attempts, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', 0, ?7, ?7) RETURNING id",
        params![
            user,
            new.kind,
            key,
            new.payload.expose(),
            new.pending_post_id,
            new.marker,
            now
        ],
        |r| r.get(0),
    )?)
}

fn short_error(e: &str) -> String {
    // Errors are ours (status + code), never message text; still bound the size.
    e.chars().take(500).collect()
}

impl UserStore<'_> {
    /// Commits a new action durably and returns its id (answer the browser only after this).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn outbox_enqueue(&self, new: &NewOutbox, now: Millis) -> Result<i64, StoreError> {
        self.write_durable(|t| t.outbox_enqueue(new, now))
    }

    /// Commits several new actions durably in one transaction (all or none) and returns their
    /// ids in order.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn outbox_enqueue_all(
        &self,
        news: &[NewOutbox],
        now: Millis,
    ) -> Result<Vec<i64>, StoreError> {
        self.write_durable(|t| news.iter().map(|n| t.outbox_enqueue(n, now)).collect())
    }

    /// Claims the next due row (queued, `next_attempt_at <= now`, oldest first, and no earlier
    /// unsent row of the same item): it becomes `inflight`, `attempts` + 1, `first_sent_at` set
    /// on the first attempt.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn outbox_claim_next(&self, now: Millis) -> Result<Option<OutboxRow>, StoreError> {
        let user = self.user.as_str().to_owned();
        self.store.write_durable(|tx| {
            let sql = format!(
                "UPDATE outbox SET state = 'inflight', attempts = attempts + 1,
                   first_sent_at = coalesce(first_sent_at, ?2)
                 WHERE id = (
                   SELECT o.id FROM outbox o
                   WHERE o.user_id = ?1 AND o.state = 'queued' AND o.next_attempt_at <= ?2
                     AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.user_id = o.user_id
                                     AND e.item_key = o.item_key AND e.id < o.id
                                     AND e.state IN ('queued', 'inflight'))
                     AND NOT EXISTS (SELECT 1 FROM outbox f WHERE f.user_id = o.user_id
                                     AND f.item_key = o.item_key AND f.state = 'inflight')
                   ORDER BY o.id LIMIT 1)
                 RETURNING {COLUMNS}"
            );
            Ok(q_row(tx.conn, &sql, params![user, now], from_row).optional()?)
        })
    }

    /// `inflight → sent` (Mattermost answered 201, or reconciliation found the marker).
    ///
    /// # Errors
    /// [`StoreError::InvalidTransition`], [`StoreError::NotFound`], SQLite failure.
    pub fn outbox_mark_sent(&self, id: i64, post_id: Option<&str>) -> Result<(), StoreError> {
        let user = self.user.as_str().to_owned();
        self.store.write_durable(|tx| {
            transition(
                tx.conn,
                &user,
                id,
                OutboxState::Sent,
                "post_id = ?3, last_error = NULL",
                &[&post_id],
            )
        })
    }

    /// `inflight → queued`: outcome unknown or retryable (timeout, 5xx, 429); resend at
    /// `next_attempt_at` with the same `pending_post_id`.
    ///
    /// # Errors
    /// As [`UserStore::outbox_mark_sent`].
    pub fn outbox_retry_later(
        &self,
        id: i64,
        next_attempt_at: Millis,
        error: &str,
    ) -> Result<(), StoreError> {
        let user = self.user.as_str().to_owned();
        let e = short_error(error);
        self.store.write_durable(|tx| {
            transition(
                tx.conn,
                &user,
                id,
                OutboxState::Queued,
                "next_attempt_at = ?3, last_error = ?4",
                &[&next_attempt_at, &e],
            )
        })
    }

    /// `inflight → failed` (a 4xx other than 408/429): shown to the user, never dropped.
    ///
    /// # Errors
    /// As [`UserStore::outbox_mark_sent`].
    pub fn outbox_mark_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        let user = self.user.as_str().to_owned();
        let e = short_error(error);
        self.store.write_durable(|tx| {
            transition(
                tx.conn,
                &user,
                id,
                OutboxState::Failed,
                "last_error = ?3",
                &[&e],
            )
        })
    }

    /// `failed → queued` (the user pressed retry).
    ///
    /// # Errors
    /// As [`UserStore::outbox_mark_sent`].
    pub fn outbox_retry_failed(&self, id: i64, now: Millis) -> Result<(), StoreError> {
        let user = self.user.as_str().to_owned();
        self.store.write_durable(|tx| {
            transition(
                tx.conn,
                &user,
                id,
                OutboxState::Queued,
                "next_attempt_at = ?3",
                &[&now],
            )
        })
    }

    /// Deletes a queued or failed row (the user discards it). In-flight rows cannot be cancelled.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] unless such a row exists; SQLite failure.
    pub fn outbox_cancel(&self, id: i64) -> Result<(), StoreError> {
        let user = self.user.as_str().to_owned();
        self.store.write_durable(|tx| {
            let n = exec(tx.conn,
                "DELETE FROM outbox WHERE user_id = ?1 AND id = ?2 AND state IN ('queued', 'failed')",
                params![user, id],
            )?;
            if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
        })
    }

    /// Makes every queued row due now (after the user signs in again following a 401).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn outbox_resume(&self, now: Millis) -> Result<usize, StoreError> {
        let user = self.user.as_str().to_owned();
        self.store.write_durable(|tx| {
            Ok(exec(
                tx.conn,
                "UPDATE outbox SET next_attempt_at = ?2 WHERE user_id = ?1 AND state = 'queued'",
                params![user, now],
            )?)
        })
    }

    /// Re-queues this user's rows left `inflight` by a delivery whose bookkeeping write failed
    /// (disk full, I/O error). Only for the user's own sender, when it holds no row.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn outbox_requeue_inflight(&self, now: Millis) -> Result<usize, StoreError> {
        let user = self.user.as_str().to_owned();
        self.store.write_durable(|tx| {
            Ok(exec(
                tx.conn,
                "UPDATE outbox SET state = 'queued', next_attempt_at = ?2
                 WHERE user_id = ?1 AND state = 'inflight'",
                params![user, now],
            )?)
        })
    }

    /// One of the user's outbox rows (another user's id is not found).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        let user = self.user.as_str().to_owned();
        self.store.read(|c| {
            let sql = format!("SELECT {COLUMNS} FROM outbox WHERE user_id = ?1 AND id = ?2");
            Ok(q_row(c, &sql, params![user, id], from_row).optional()?)
        })
    }

    /// The user's actions on item `key` not delivered to Mattermost (queued, in flight or
    /// failed), oldest first.
    ///
    /// # Errors
    /// SQLite failure.
    pub fn undelivered(&self, key: &ItemKey) -> Result<Vec<OutboxRow>, StoreError> {
        let user = self.user.as_str().to_owned();
        let key = key.to_string();
        self.store.read(|c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM outbox
                 WHERE user_id = ?1 AND state IN ('queued', 'inflight', 'failed') AND item_key = ?2
                 ORDER BY id"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params![user, key], from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// The user's outbox rows, oldest first (all states, or only `state`).
    ///
    /// # Errors
    /// SQLite failure.
    pub fn outbox_rows(&self, state: Option<OutboxState>) -> Result<Vec<OutboxRow>, StoreError> {
        let user = self.user.as_str().to_owned();
        self.store.read(|c| {
            // Two statements, so that one state is a range of the `outbox_user` index (the queue
            // page asks for the failed rows on every load; sent rows stay until the purge).
            let mut st = if state.is_some() {
                c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM outbox WHERE user_id = ?1 AND state = ?2 ORDER BY id"
                ))?
            } else {
                c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM outbox WHERE user_id = ?1 AND ?2 IS NULL ORDER BY id"
                ))?
            };
            let rows = st.query_map(params![user, state.map(OutboxState::as_str)], from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}
