//! The shared [`RateLimiter`] as the `mattermost` client's [`RequestGate`]: every REST call and
//! WebSocket upgrade of every user waits for its fair turn in the instance-wide budget, and a
//! 429 anywhere pauses everyone.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use mattermost::RequestGate;

use super::ratelimit::RateLimiter;

/// Adapter; build the base client with `.request_gate(Arc::new(LimiterGate(limiter)))` (or
/// [`super::SyncEngine::request_gate`]) and give each user's client
/// `with_user_key(user_id)` so turns are fair per user.
#[derive(Clone, Debug)]
pub struct LimiterGate(pub RateLimiter);

impl RequestGate for LimiterGate {
    fn acquire<'a>(&'a self, user_key: Option<&'a str>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // The permit is released at once: the client's gate has no guard to hold, so the
            // concurrency bound applies to the engine's own work (SYNC_CONCURRENCY per user)
            // while budget, fairness and 429 pauses apply to every request.
            let _ = self.0.acquire(user_key.unwrap_or("")).await;
        })
    }

    fn on_rate_limited(&self, _user_key: Option<&str>, retry_after: Duration) {
        tracing::warn!(
            retry_after_ms = retry_after.as_millis() as u64,
            "mattermost: 429, pausing all requests"
        );
        self.0.pause_for(retry_after);
    }
}

impl LimiterGate {
    /// As a trait object for `ClientBuilder::request_gate`.
    #[must_use]
    pub fn shared(limiter: RateLimiter) -> Arc<dyn RequestGate> {
        Arc::new(Self(limiter))
    }
}
