//! Sign-in throttling: failed sign-in attempts (bad personal access tokens, failed OAuth
//! exchanges) are limited per client address, so nobody can probe tokens through ThreadDesk.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `max_failures` failures per `window` per address; successes do not count.
pub struct SignInThrottle {
    max_failures: u32,
    window: Duration,
    entries: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SignInThrottle {
    #[must_use]
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether another attempt from `ip` may be tried now.
    pub fn allowed(&self, ip: IpAddr, now: Instant) -> bool {
        let mut map = self.lock();
        match map.get(&ip) {
            Some((start, n)) if now.duration_since(*start) < self.window => *n < self.max_failures,
            Some(_) => {
                map.remove(&ip);
                true
            }
            None => true,
        }
    }

    /// Record a failed attempt.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.lock();
        // Bound memory: forget expired windows when the table grows.
        if map.len() > 10_000 {
            let window = self.window;
            map.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for SignInThrottle {
    fn default() -> Self {
        Self::new(5, Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_failures_and_recovers() {
        let t = SignInThrottle::new(3, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(t.allowed(ip, t0));
            t.failed(ip, t0);
        }
        assert!(!t.allowed(ip, t0));
        assert!(t.allowed(other, t0), "other addresses are not affected");
        assert!(t.allowed(ip, t0 + Duration::from_secs(61)));
    }
}
