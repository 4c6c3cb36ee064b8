//! The instance-wide Mattermost request budget, shared by every signed-in user.
//!
//! Mattermost rate-limits by client IP by default and every ThreadDesk user calls it from this one
//! host (research finding 2), so the budget must be global:
//! - a GCRA (the algorithm Mattermost itself uses, `throttled/throttled`) at the configured rate
//!   and burst;
//! - fair: waiting requests are granted round-robin per user, so one user's initial sync cannot
//!   starve everyone else's live actions;
//! - a 429's `Retry-After` (or `X-RateLimit-Reset`) pauses **everyone** until it passes;
//! - bounded concurrency: at most `max_concurrency` requests in flight (a semaphore permit is held
//!   by the [`Permit`] until the response is read).
//!
//! A single dispatcher task grants permits; callers wait on a oneshot. Time comes from tokio, so
//! the tests run with a paused clock.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

/// Budget settings (`[mattermost]` rate settings of the config).
#[derive(Clone, Debug, PartialEq)]
pub struct LimiterSettings {
    /// Sustained requests per second for the whole instance.
    pub requests_per_second: f64,
    /// Requests that may go out back to back after an idle period.
    pub burst: u32,
    /// Requests in flight at once, whatever the budget (protects a recovering server).
    pub max_concurrency: usize,
}

impl Default for LimiterSettings {
    /// Mattermost's own defaults when an admin turns rate limiting on (10 r/s, burst 100), so a
    /// default ThreadDesk never trips a default Mattermost.
    fn default() -> Self {
        Self {
            requests_per_second: 10.0,
            burst: 100,
            max_concurrency: 8,
        }
    }
}

/// The limiter dispatcher stopped (the limiter was dropped).
#[derive(Debug, thiserror::Error)]
#[error("the Mattermost request limiter is shut down")]
pub struct LimiterClosed;

/// Permission to send one request; hold it until the response has been read.
#[derive(Debug)]
pub struct Permit {
    _slot: OwnedSemaphorePermit,
}

/// What the admin status page shows (no user ids, no content).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LimiterStatus {
    pub requests_per_second: String,
    pub burst: u32,
    pub max_concurrency: usize,
    /// Requests waiting for a permit.
    pub queued: usize,
    /// Requests holding a permit.
    pub in_flight: usize,
    /// Milliseconds until a server-requested pause (429 Retry-After) ends; 0 when not paused.
    pub paused_for_ms: u64,
    /// Permits granted since start.
    pub granted_total: u64,
    /// 429 answers reported since start.
    pub rate_limited_total: u64,
    /// Grants handed back because a 429 pause began before they could be used.
    pub requeued_for_pause: u64,
}

impl LimiterStatus {
    /// One line for the admin status page: whether Mattermost is rate limiting ThreadDesk
    /// right now and for how long everyone waits (technical facts only, never content).
    #[must_use]
    pub fn summary(&self) -> String {
        let totals = format!(
            "{} requests granted, {} answered 429 since start",
            self.granted_total, self.rate_limited_total
        );
        if self.paused_for_ms > 0 {
            #[allow(clippy::cast_precision_loss)]
            let secs = self.paused_for_ms as f64 / 1000.0;
            format!(
                "Mattermost is rate limiting ThreadDesk (429): all requests wait another \
                 {secs:.1} s (Retry-After); {} queued, {} in flight; {totals}",
                self.queued, self.in_flight
            )
        } else {
            format!(
                "Not rate limited: budget {} requests/s, burst {}, at most {} in flight; \
                 {} queued, {} in flight; {totals}",
                self.requests_per_second,
                self.burst,
                self.max_concurrency,
                self.queued,
                self.in_flight
            )
        }
    }
}

type Waiter = oneshot::Sender<OwnedSemaphorePermit>;

#[derive(Default)]
struct State {
    /// Waiters per user; a user key exists only while it has waiters.
    queues: BTreeMap<String, VecDeque<Waiter>>,
    /// The user served last (round-robin cursor).
    last_served: Option<String>,
    /// GCRA theoretical arrival time.
    tat: Option<Instant>,
    paused_until: Option<Instant>,
}

impl State {
    fn queued(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    /// Pop the next waiter round-robin: the first user after the last one served.
    fn pop_next(&mut self) -> Option<(String, Waiter)> {
        let user = match &self.last_served {
            Some(last) => self
                .queues
                .range::<String, _>((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
                .next()
                .map(|(k, _)| k.clone())
                .or_else(|| self.queues.keys().next().cloned()),
            None => self.queues.keys().next().cloned(),
        }?;
        let queue = self.queues.get_mut(&user)?;
        let waiter = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(&user);
        }
        waiter.map(|w| (user, w))
    }
}

struct Shared {
    settings: LimiterSettings,
    /// Emission interval (1 / rate) and burst tolerance of the GCRA.
    interval: Duration,
    tolerance: Duration,
    slots: Arc<Semaphore>,
    state: Mutex<State>,
    wake: Notify,
    granted: AtomicU64,
    limited: AtomicU64,
    /// Grants handed back because a pause began before the caller could use them.
    regranted: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Handle {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The shared limiter; cheap to clone. Must be created inside a tokio runtime.
#[derive(Clone)]
pub struct RateLimiter {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("settings", &self.handle.shared.settings)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Start the limiter (spawns its dispatcher task).
    #[must_use]
    pub fn new(settings: LimiterSettings) -> Self {
        let rate = if settings.requests_per_second.is_finite() && settings.requests_per_second > 0.0
        {
            settings.requests_per_second
        } else {
            LimiterSettings::default().requests_per_second
        };
        let interval = Duration::from_secs_f64(1.0 / rate);
        let tolerance = interval.saturating_mul(settings.burst.saturating_sub(1));
        let shared = Arc::new(Shared {
            interval,
            tolerance,
            slots: Arc::new(Semaphore::new(settings.max_concurrency.max(1))),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            granted: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            regranted: AtomicU64::new(0),
            settings,
        });
        let task = tokio::spawn(dispatch(Arc::clone(&shared)));
        Self {
            handle: Arc::new(Handle { shared, task }),
        }
    }

    /// A limiter that never waits on the budget (tests, or an admin who set no limit); the
    /// concurrency bound still applies.
    #[must_use]
    pub fn unlimited(max_concurrency: usize) -> Self {
        Self::new(LimiterSettings {
            requests_per_second: 1e9,
            burst: u32::MAX,
            max_concurrency,
        })
    }

    /// Wait for this user's turn to send one request.
    ///
    /// # Errors
    /// [`LimiterClosed`] if the limiter's dispatcher is gone.
    pub async fn acquire(&self, user_id: &str) -> Result<Permit, LimiterClosed> {
        let shared = &self.handle.shared;
        loop {
            let (tx, rx) = oneshot::channel();
            shared
                .lock()
                .queues
                .entry(user_id.to_owned())
                .or_default()
                .push_back(tx);
            shared.wake.notify_one();
            let slot = rx.await.map_err(|_| LimiterClosed)?;
            // A 429 may have paused everyone between the grant and this task running: a
            // request sent now would go out before the server's `Retry-After` has passed
            // (T-11), so queue again behind the pause instead.
            let paused = shared
                .lock()
                .paused_until
                .is_some_and(|p| p > Instant::now());
            if !paused {
                return Ok(Permit { _slot: slot });
            }
            shared.regranted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Mattermost answered 429: nobody sends before `retry_after` has passed, and then at the
    /// sustained rate, without a burst: the server's bucket is empty (someone else on the same
    /// IP may be using it), so a burst after the pause would mostly be answered 429 again.
    pub fn pause_for(&self, retry_after: Duration) {
        let shared = &self.handle.shared;
        shared.limited.fetch_add(1, Ordering::Relaxed);
        let until = Instant::now() + retry_after;
        {
            let mut st = shared.lock();
            st.paused_until = Some(st.paused_until.map_or(until, |p| p.max(until)));
            // GCRA: the next grant is allowed at `tat - tolerance` = `until`, one interval
            // apart after it; burst credit builds up again only while nothing is sent.
            let no_burst = until + shared.tolerance;
            st.tat = Some(st.tat.map_or(no_burst, |t| t.max(no_burst)));
        }
        shared.wake.notify_one();
    }

    /// Snapshot for the admin status page.
    #[must_use]
    pub fn status(&self) -> LimiterStatus {
        let shared = &self.handle.shared;
        let st = shared.lock();
        let now = Instant::now();
        let paused_for_ms = st.paused_until.filter(|p| *p > now).map_or(0, |p| {
            u64::try_from((p - now).as_millis()).unwrap_or(u64::MAX)
        });
        let max = shared.settings.max_concurrency.max(1);
        LimiterStatus {
            requests_per_second: format!("{}", shared.settings.requests_per_second),
            burst: shared.settings.burst,
            max_concurrency: max,
            queued: st.queued(),
            in_flight: max.saturating_sub(shared.slots.available_permits()),
            paused_for_ms,
            granted_total: shared.granted.load(Ordering::Relaxed),
            rate_limited_total: shared.limited.load(Ordering::Relaxed),
            requeued_for_pause: shared.regranted.load(Ordering::Relaxed),
        }
    }
}

/// The dispatcher: waits for work, the pause, the GCRA slot and a concurrency slot, then grants
/// the next waiter round-robin.
async fn dispatch(shared: Arc<Shared>) {
    loop {
        // 1. Work to do?
        let has_work = shared.lock().queued() > 0;
        if !has_work {
            shared.wake.notified().await;
            continue;
        }
        // 2. Server-requested pause, then the GCRA slot.
        let now = Instant::now();
        let wait_until = {
            let st = shared.lock();
            let paused = st.paused_until.filter(|p| *p > now);
            let gcra = st
                .tat
                .and_then(|tat| tat.checked_sub(shared.tolerance))
                .filter(|at| *at > now);
            match (paused, gcra) {
                (Some(p), Some(g)) => Some(p.max(g)),
                (p, g) => p.or(g),
            }
        };
        if let Some(at) = wait_until {
            // Woken early by a new pause: re-evaluate (the pause may now be longer).
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = shared.wake.notified() => {}
            }
            continue;
        }
        // 3. A concurrency slot.
        let Ok(slot) = Arc::clone(&shared.slots).acquire_owned().await else {
            return;
        };
        // 4. Grant, unless a pause arrived while waiting for the slot.
        let now = Instant::now();
        let mut st = shared.lock();
        if st.paused_until.is_some_and(|p| p > now) {
            continue;
        }
        let Some((user, waiter)) = st.pop_next() else {
            continue;
        };
        if waiter.send(slot).is_ok() {
            let base = st.tat.map_or(now, |tat| tat.max(now));
            st.tat = Some(base + shared.interval);
            st.last_served = Some(user);
            shared.granted.fetch_add(1, Ordering::Relaxed);
        }
        // A dropped waiter (cancelled request) costs no budget; its slot returns on drop.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    fn limiter(rps: f64, burst: u32, conc: usize) -> RateLimiter {
        RateLimiter::new(LimiterSettings {
            requests_per_second: rps,
            burst,
            max_concurrency: conc,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn sustained_rate_is_respected() {
        let l = limiter(10.0, 1, 8);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..5 {
            let p = l.acquire("u").await.unwrap();
            at.push((Instant::now() - start).as_millis());
            drop(p);
        }
        assert_eq!(at, vec![0, 100, 200, 300, 400]);
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let l = limiter(10.0, 3, 8);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..5 {
            let _p = l.acquire("u").await.unwrap();
            at.push((Instant::now() - start).as_millis());
        }
        assert_eq!(at, vec![0, 0, 0, 100, 200]);
    }

    #[tokio::test(start_paused = true)]
    async fn round_robin_between_users() {
        let l = limiter(100.0, 1, 8);
        let order = Arc::new(StdMutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // A queues 6 requests, B 2, C 1 — all before the dispatcher grants anything.
        for (user, n) in [("a", 6), ("b", 2), ("c", 1)] {
            for _ in 0..n {
                let l = l.clone();
                let order = Arc::clone(&order);
                tasks.push(tokio::spawn(async move {
                    let _p = l.acquire(user).await.unwrap();
                    order.lock().unwrap().push(user);
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order, vec!["a", "b", "c", "a", "b", "a", "a", "a", "a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_everyone() {
        let l = limiter(1000.0, 10, 8);
        let _ = l.acquire("a").await.unwrap();
        l.pause_for(Duration::from_secs(2));
        let start = Instant::now();
        let _ = l.acquire("b").await.unwrap();
        assert!(Instant::now() - start >= Duration::from_secs(2));
        let st = l.status();
        assert_eq!(st.rate_limited_total, 1);
        assert_eq!(st.paused_for_ms, 0);
        assert_eq!(st.granted_total, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_pause_the_sustained_rate_without_a_burst() {
        let l = limiter(10.0, 100, 8);
        let start = Instant::now();
        l.pause_for(Duration::from_secs(2));
        let mut at = Vec::new();
        for _ in 0..4 {
            let _p = l.acquire("u").await.unwrap();
            at.push((Instant::now() - start).as_millis());
        }
        assert_eq!(at, vec![2_000, 2_100, 2_200, 2_300]);
        // Idle time rebuilds the burst.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let t = Instant::now();
        for _ in 0..50 {
            let _p = l.acquire("u").await.unwrap();
        }
        assert_eq!(Instant::now() - t, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn status_line_says_when_rate_limited() {
        let l = limiter(10.0, 100, 8);
        assert!(l.status().summary().starts_with("Not rate limited"));
        l.pause_for(Duration::from_secs(3));
        let line = l.status().summary();
        assert!(
            line.starts_with(
                "Mattermost is rate limiting ThreadDesk (429): all requests wait another 3.0 s"
            ),
            "{line}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(l.status().summary().starts_with("Not rate limited"));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_arriving_while_waiting_is_honoured() {
        let l = limiter(1.0, 1, 8);
        let _ = l.acquire("a").await.unwrap(); // next slot at t = 1 s
        let start = Instant::now();
        let l2 = l.clone();
        let waiter = tokio::spawn(async move { l2.acquire("b").await.map(|_| Instant::now()) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        l.pause_for(Duration::from_secs(5)); // until t = 5.1 s
        let granted_at = waiter.await.unwrap().unwrap();
        assert!(granted_at - start >= Duration::from_millis(5_100));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded() {
        let l = limiter(1e6, 1000, 2);
        let p1 = l.acquire("a").await.unwrap();
        let _p2 = l.acquire("b").await.unwrap();
        assert_eq!(l.status().in_flight, 2);
        let l3 = l.clone();
        let third = tokio::spawn(async move { l3.acquire("c").await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished());
        assert_eq!(l.status().queued, 1);
        drop(p1);
        third.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_waiter_costs_nothing() {
        let l = limiter(1.0, 1, 1);
        let p = l.acquire("a").await.unwrap();
        let l2 = l.clone();
        let cancelled = tokio::spawn(async move { l2.acquire("b").await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancelled.abort();
        drop(p);
        let start = Instant::now();
        let _ = l.acquire("c").await.unwrap();
        // One interval after the first grant, not two.
        assert!(Instant::now() - start <= Duration::from_secs(1));
        assert_eq!(l.status().granted_total, 2);
    }
}
