//! Outbox delivery rules as a pure function: `(row, outcome, now) → next step`.
//!
//! Research §A4 / issue 6. Every user action is committed to the store first, then delivered.
//! Replies are the delicate case: Mattermost deduplicates `pending_post_id` only for 30 s
//! (trap 35), so a reply also carries a durable marker `props.threaddesk_outbox_id`, and any
//! resend more than [`DEDUP_SAFE_MS`] after the first attempt is preceded by a *reconcile*: read the
//! thread and look for the marker. A lost response therefore never produces a second post.
//!
//! | outcome | reply | other actions (idempotent PUT/POST of a state) |
//! |---|---|---|
//! | delivered | `Sent` | `Sent` |
//! | unknown (timeout, reset, 5xx, 408, 500-pending) | < 25 s since first attempt: resend, same `pending_post_id`; later: reconcile first | retry with backoff |
//! | 429 | wait `Retry-After`, **not** counted as a failure | same |
//! | 401 | `Parked` until the user signs in again | same |
//! | other 4xx | `Failed(reason)`, shown to the user with edit/retry | same |
//! | reconcile: marker found | `Sent(post_id)` | — |
//! | reconcile: marker absent | resend now | — |
//!
//! Nothing is ever dropped silently: after [`GIVE_UP_MS`] an undelivered row becomes `Failed`
//! with a visible reason, never deleted.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::planner::Millis;

/// The outbox's clock: wall-clock milliseconds plus an offset that only tests move (T-2: a
/// retry 40 s or 5 min after an unknown outcome, without sleeping; mmsim's clock moves by the
/// same amount). Clones share the offset. Every outbox time (row creation, attempt, next
/// attempt, due rows) is read from it; message and read-mark times are not.
#[derive(Clone, Debug, Default)]
pub struct OutboxClock {
    offset_ms: Arc<AtomicI64>,
}

impl OutboxClock {
    /// Now, in ms since the Unix epoch (plus the offset).
    #[must_use]
    pub fn now(&self) -> Millis {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| {
                Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
            });
        wall.saturating_add(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Move this clock (and every clone) forward.
    pub fn advance(&self, by: Duration) {
        let ms = Millis::try_from(by.as_millis()).unwrap_or(Millis::MAX / 4);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

/// Props key carrying the outbox row id on every reply ThreadDesk sends.
pub const MARKER_PROP: &str = "threaddesk_outbox_id";

/// Resends with the same `pending_post_id` are only safe inside Mattermost's 30 s dedup window;
/// keep a 5 s margin for clock and queueing differences.
pub const DEDUP_SAFE_MS: Millis = 25_000;

/// First retry delay; doubles per failed attempt up to [`BACKOFF_MAX_MS`].
pub const BACKOFF_BASE_MS: Millis = 1_000;
/// Longest wait between two attempts (a recovering server sees at most one try a minute per row).
pub const BACKOFF_MAX_MS: Millis = 60_000;
/// After this long undelivered, a row is shown as failed (with retry), not retried forever.
pub const GIVE_UP_MS: Millis = 24 * 3_600_000;

/// Delivery state of an outbox row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its next attempt (also the state of a fresh row).
    Pending,
    /// Before the next send, search the thread for the marker.
    Reconcile,
    /// Delivered; for a reply, the created post id.
    Sent { post_id: Option<String> },
    /// Refused by Mattermost (or given up); shown to the user, who may edit and retry.
    Failed { reason: String },
    /// Mattermost said 401: waiting for the user to sign in again.
    Parked,
}

impl DeliveryState {
    /// The short name stored in the outbox table.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Reconcile => "reconcile",
            Self::Sent { .. } => "sent",
            Self::Failed { .. } => "failed",
            Self::Parked => "parked",
        }
    }

    /// True when the worker has nothing more to do with the row.
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Sent { .. } | Self::Failed { .. })
    }
}

/// What the rules need to know of a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowView {
    /// A reply (needs the 30 s / marker rules); everything else is idempotent.
    pub is_reply: bool,
    /// Failed attempts so far (429s are not counted).
    pub attempts: u32,
    /// When the first send was attempted (`None` before the first attempt).
    pub first_attempt_at: Option<Millis>,
    /// When the row was created (the give-up clock).
    pub created_at: Millis,
}

/// What happened to one attempt (a send, or a reconcile read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The action was applied; for a reply, the post id.
    Delivered { post_id: Option<String> },
    /// No answer, a transport error, 5xx, 408, or 500 `deduplicate_create_post.pending`: the
    /// server may or may not have applied it.
    Unknown,
    /// 429, with the server's `Retry-After` (or `X-RateLimit-Reset`).
    RateLimited { retry_after: Duration },
    /// 401: the token is no longer valid.
    Unauthorized,
    /// Any other 4xx: the server refused the action; `reason` is a fixed phrase / error id,
    /// never message text.
    Rejected { status: u16, reason: String },
    /// Reconcile read: a post carrying our marker exists.
    MarkerFound { post_id: String },
    /// Reconcile read: no post carries our marker.
    MarkerAbsent,
}

impl Outcome {
    /// Classify an HTTP status of a send (for outcomes without a body worth reading).
    #[must_use]
    pub fn from_status(status: u16, retry_after: Option<Duration>, reason: &str) -> Self {
        match status {
            200..=299 => Self::Delivered { post_id: None },
            401 => Self::Unauthorized,
            429 => Self::RateLimited {
                retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
            },
            408 => Self::Unknown,
            400..=499 => Self::Rejected {
                status,
                reason: reason.to_owned(),
            },
            _ => Self::Unknown,
        }
    }
}

/// The next step for a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub state: DeliveryState,
    /// Failed attempts after this outcome.
    pub attempts: u32,
    /// First attempt time after this outcome.
    pub first_attempt_at: Option<Millis>,
    /// When to act next (`None` for terminal / parked rows).
    pub next_at: Option<Millis>,
}

/// Exponential backoff for the `attempts`-th failure (1 → base), capped; `jitter` in `[0, 1)`
/// spreads retries of many rows after a shared outage (the caller draws it).
#[must_use]
pub fn backoff_ms(attempts: u32, jitter: f64) -> Millis {
    let exp = attempts.saturating_sub(1).min(16);
    let base = BACKOFF_BASE_MS
        .saturating_mul(1_i64 << exp)
        .min(BACKOFF_MAX_MS);
    let j = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // Up to +50 % jitter; `as` on a bounded, non-negative f64 is exact enough here.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let extra = (base as f64 * 0.5 * j) as Millis;
    base + extra
}

/// Apply one attempt's outcome (`attempted_at` = when that attempt started).
#[must_use]
pub fn next_step(
    row: &RowView,
    outcome: &Outcome,
    attempted_at: Millis,
    now: Millis,
    jitter: f64,
) -> Step {
    let first = row.first_attempt_at.unwrap_or(attempted_at);
    let keep = |state: DeliveryState, attempts: u32, next_at: Option<Millis>| Step {
        state,
        attempts,
        first_attempt_at: Some(first),
        next_at,
    };
    match outcome {
        Outcome::Delivered { post_id } => keep(
            DeliveryState::Sent {
                post_id: post_id.clone(),
            },
            row.attempts,
            None,
        ),
        Outcome::MarkerFound { post_id } => keep(
            DeliveryState::Sent {
                post_id: Some(post_id.clone()),
            },
            row.attempts,
            None,
        ),
        // Marker absent: the earlier sends never landed; resend at once (same ids).
        Outcome::MarkerAbsent => keep(DeliveryState::Pending, row.attempts, Some(now)),
        Outcome::RateLimited { retry_after } => {
            let wait = Millis::try_from(retry_after.as_millis()).unwrap_or(BACKOFF_MAX_MS);
            // Not a failure: attempts unchanged, and a reply keeps whatever mode it was in
            // (a 429 means the request was not processed, so no reconcile is needed for it).
            // An earlier unknown outcome may still have landed: if the wait carries the next
            // send past the dedup window, search for the marker first.
            let next = now + wait.max(0);
            let state = if row.is_reply && row.attempts > 0 && next - first >= DEDUP_SAFE_MS {
                DeliveryState::Reconcile
            } else {
                DeliveryState::Pending
            };
            keep(state, row.attempts, Some(next))
        }
        Outcome::Unauthorized => keep(DeliveryState::Parked, row.attempts, None),
        Outcome::Rejected { status, reason } => keep(
            DeliveryState::Failed {
                reason: format!("{status} {reason}").trim_end().to_owned(),
            },
            row.attempts + 1,
            None,
        ),
        Outcome::Unknown => {
            let attempts = row.attempts + 1;
            if now - row.created_at >= GIVE_UP_MS {
                return keep(
                    DeliveryState::Failed {
                        reason: "not delivered within 24 hours".into(),
                    },
                    attempts,
                    None,
                );
            }
            let next = now + backoff_ms(attempts, jitter);
            // The server may hold our post. Within the dedup window the same pending_post_id
            // makes a resend safe; after it, only a marker search is (it runs at `next`, which
            // is when a resend would have happened).
            let state = if row.is_reply && next - first >= DEDUP_SAFE_MS {
                DeliveryState::Reconcile
            } else {
                DeliveryState::Pending
            };
            keep(state, attempts, Some(next))
        }
    }
}

/// When a pending reply is finally sent: can it be sent directly, or must the thread be searched
/// for the marker first? (Used by the worker right before sending, e.g. after a restart that
/// happened between an unknown outcome and its retry.)
#[must_use]
pub fn must_reconcile_before_send(row: &RowView, now: Millis) -> bool {
    row.is_reply
        && row.attempts > 0
        && row
            .first_attempt_at
            .is_some_and(|f| now - f >= DEDUP_SAFE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reply(attempts: u32, first: Option<Millis>) -> RowView {
        RowView {
            is_reply: true,
            attempts,
            first_attempt_at: first,
            created_at: 0,
        }
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            row: RowView,
            outcome: Outcome,
            at: Millis,
            now: Millis,
            state: DeliveryState,
            attempts: u32,
            next_at: Option<Millis>,
        }
        let cases = vec![
            Case {
                name: "first send ok",
                row: reply(0, None),
                outcome: Outcome::Delivered {
                    post_id: Some("p".into()),
                },
                at: 10,
                now: 20,
                state: DeliveryState::Sent {
                    post_id: Some("p".into()),
                },
                attempts: 0,
                next_at: None,
            },
            Case {
                name: "unknown early: resend same id",
                row: reply(0, None),
                outcome: Outcome::Unknown,
                at: 0,
                now: 100,
                state: DeliveryState::Pending,
                attempts: 1,
                next_at: Some(1_100),
            },
            Case {
                name: "unknown near window: reconcile",
                row: reply(3, Some(0)),
                outcome: Outcome::Unknown,
                at: 20_000,
                now: 20_500,
                state: DeliveryState::Reconcile,
                attempts: 4,
                next_at: Some(28_500),
            },
            Case {
                name: "429 not counted",
                row: reply(0, None),
                outcome: Outcome::RateLimited {
                    retry_after: Duration::from_secs(3),
                },
                at: 0,
                now: 50,
                state: DeliveryState::Pending,
                attempts: 0,
                next_at: Some(3_050),
            },
            Case {
                name: "401 parks",
                row: reply(1, Some(0)),
                outcome: Outcome::Unauthorized,
                at: 5,
                now: 6,
                state: DeliveryState::Parked,
                attempts: 1,
                next_at: None,
            },
            Case {
                name: "400 fails visibly",
                row: reply(0, None),
                outcome: Outcome::Rejected {
                    status: 400,
                    reason: "api.post.create_post.root_id.app_error".into(),
                },
                at: 0,
                now: 1,
                state: DeliveryState::Failed {
                    reason: "400 api.post.create_post.root_id.app_error".into(),
                },
                attempts: 1,
                next_at: None,
            },
            Case {
                name: "marker found",
                row: reply(4, Some(0)),
                outcome: Outcome::MarkerFound {
                    post_id: "x".into(),
                },
                at: 40_000,
                now: 40_100,
                state: DeliveryState::Sent {
                    post_id: Some("x".into()),
                },
                attempts: 4,
                next_at: None,
            },
            Case {
                name: "marker absent: resend now",
                row: reply(4, Some(0)),
                outcome: Outcome::MarkerAbsent,
                at: 40_000,
                now: 40_100,
                state: DeliveryState::Pending,
                attempts: 4,
                next_at: Some(40_100),
            },
            Case {
                name: "idempotent action never reconciles",
                row: RowView {
                    is_reply: false,
                    attempts: 5,
                    first_attempt_at: Some(0),
                    created_at: 0,
                },
                outcome: Outcome::Unknown,
                at: 90_000,
                now: 90_000,
                state: DeliveryState::Pending,
                attempts: 6,
                next_at: Some(90_000 + 32_000),
            },
            Case {
                name: "gives up visibly after 24 h",
                row: reply(30, Some(0)),
                outcome: Outcome::Unknown,
                at: GIVE_UP_MS,
                now: GIVE_UP_MS,
                state: DeliveryState::Failed {
                    reason: "not delivered within 24 hours".into(),
                },
                attempts: 31,
                next_at: None,
            },
        ];
        for c in cases {
            let s = next_step(&c.row, &c.outcome, c.at, c.now, 0.0);
            assert_eq!(s.state, c.state, "{}", c.name);
            assert_eq!(s.attempts, c.attempts, "{}", c.name);
            assert_eq!(s.next_at, c.next_at, "{}", c.name);
        }
    }

    #[test]
    fn status_classification() {
        assert_eq!(Outcome::from_status(408, None, ""), Outcome::Unknown);
        assert_eq!(Outcome::from_status(503, None, ""), Outcome::Unknown);
        assert_eq!(Outcome::from_status(401, None, ""), Outcome::Unauthorized);
        assert!(matches!(
            Outcome::from_status(429, Some(Duration::from_secs(2)), ""),
            Outcome::RateLimited { .. }
        ));
        assert!(matches!(
            Outcome::from_status(403, None, "x"),
            Outcome::Rejected { status: 403, .. }
        ));
        assert!(matches!(
            Outcome::from_status(201, None, ""),
            Outcome::Delivered { .. }
        ));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_ms(1, 0.0), 1_000);
        assert_eq!(backoff_ms(2, 0.0), 2_000);
        assert_eq!(backoff_ms(7, 0.0), 60_000);
        assert_eq!(backoff_ms(100, 0.0), 60_000);
        assert_eq!(backoff_ms(1, 1.0), 1_500);
        assert_eq!(backoff_ms(1, f64::NAN), 1_000);
    }

    #[test]
    fn reconcile_before_send_after_restart() {
        assert!(!must_reconcile_before_send(&reply(0, None), 1_000_000));
        assert!(!must_reconcile_before_send(&reply(1, Some(0)), 24_999));
        assert!(must_reconcile_before_send(&reply(1, Some(0)), 25_000));
    }

    proptest! {
        /// The duplicate-post invariant: a reply is never *sent* (state Pending with a next time)
        /// at or after the dedup window following an unknown outcome unless a reconcile said the
        /// marker is absent.
        #[test]
        fn no_blind_resend_after_window(
            outcomes in proptest::collection::vec(0u8..4, 1..30),
            gaps in proptest::collection::vec(0i64..20_000, 30),
            jitter in 0.0f64..1.0,
        ) {
            let mut row = reply(0, None);
            let mut state = DeliveryState::Pending;
            let mut now = 0;
            let mut unknown_seen = false;
            for (i, o) in outcomes.iter().enumerate() {
                if state.is_terminal() || state == DeliveryState::Parked { break; }
                let outcome = match (&state, o) {
                    (DeliveryState::Reconcile, 0) => Outcome::MarkerAbsent,
                    (DeliveryState::Reconcile, _) => Outcome::Unknown,
                    (_, 0 | 1) => Outcome::Unknown,
                    (_, 2) => Outcome::RateLimited { retry_after: Duration::from_millis(500) },
                    _ => Outcome::Unknown,
                };
                let was_reconcile = state == DeliveryState::Reconcile;
                let s = next_step(&row, &outcome, now, now, jitter);
                if outcome == Outcome::Unknown && !was_reconcile { unknown_seen = true; }
                if let (DeliveryState::Pending, Some(next)) = (&s.state, s.next_at) {
                    let first = s.first_attempt_at.unwrap_or(0);
                    if unknown_seen && next - first >= DEDUP_SAFE_MS {
                        prop_assert_eq!(outcome.clone(), Outcome::MarkerAbsent, "blind resend at step {}", i);
                    }
                }
                if outcome == Outcome::MarkerAbsent { unknown_seen = false; }
                row.attempts = s.attempts;
                row.first_attempt_at = s.first_attempt_at;
                state = s.state;
                now = s.next_at.unwrap_or(now) + gaps[i % gaps.len()] % 10;
            }
        }
    }
}
