//! Request counters per route and bytes served (OWNED BY THE WS WORK).
//!
//! Tests and benchmarks compare call counts exactly (research `reliability-security-performance.md`
//! §A7 "N/M figures come from counters in mmsim", §B3 "Counters in mmsim: requests per route,
//! response bytes, WS frames"), so every request that reaches the router is counted once, under
//! its route *template* (axum's `MatchedPath`, e.g. `GET /api/v4/users/{user_id}/teams/{team_id}/threads`),
//! whatever its outcome (including 429s from the rate limiter and injected faults). The admin
//! API under `/mmsim/` is never counted.
//!
//! Read them from Rust with `sim.inner().metrics.snapshot()` or over HTTP with
//! `GET /mmsim/admin/metrics`; reset with [`Metrics::reset`] / `DELETE /mmsim/admin/metrics`.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// Route label for requests that matched no route (the 404 fallback).
pub const UNMATCHED_ROUTE: &str = "<unmatched>";

/// Counters of one `METHOD route-template` pair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteCounters {
    pub requests: u64,
    pub response_bytes: u64,
    /// Responses by status code (`"200"`, `"429"`, …).
    pub statuses: BTreeMap<String, u64>,
}

/// A copy of every counter at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Requests counted (all routes).
    pub requests: u64,
    /// Response body bytes (all routes).
    pub response_bytes: u64,
    /// Key: `"METHOD /route/{template}"`.
    pub routes: BTreeMap<String, RouteCounters>,
    /// Responses by status code, all routes.
    pub statuses: BTreeMap<String, u64>,
    /// WebSocket text frames written (events and responses).
    pub ws_frames_sent: u64,
    /// WebSocket events written (frames carrying `event`).
    pub ws_events_sent: u64,
    /// Bytes of WebSocket text frames written.
    pub ws_bytes_sent: u64,
}

impl MetricsSnapshot {
    /// Requests for one method and route template, e.g.
    /// `requests_for("GET", "/api/v4/users/{user_id}/teams/{team_id}/threads")`.
    #[must_use]
    pub fn requests_for(&self, method: &str, route: &str) -> u64 {
        self.routes
            .get(&route_key(method, route))
            .map_or(0, |c| c.requests)
    }

    /// Requests whose route template starts with `prefix` (any method).
    #[must_use]
    pub fn requests_under(&self, prefix: &str) -> u64 {
        self.routes
            .iter()
            .filter(|(k, _)| {
                k.split_once(' ')
                    .is_some_and(|(_, r)| r.starts_with(prefix))
            })
            .map(|(_, c)| c.requests)
            .sum()
    }

    /// Responses with this status code, all routes.
    #[must_use]
    pub fn status_count(&self, status: u16) -> u64 {
        self.statuses.get(&status.to_string()).copied().unwrap_or(0)
    }
}

fn route_key(method: &str, route: &str) -> String {
    format!("{method} {route}")
}

/// The simulator's counters (cheap to update from every request).
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<MetricsSnapshot>,
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, MetricsSnapshot> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of every counter.
    #[must_use]
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.lock().clone()
    }

    /// Zero every counter.
    pub fn reset(&self) {
        *self.lock() = MetricsSnapshot::default();
    }

    /// Count one request (called when the response head is ready).
    pub fn record_request(&self, method: &str, route: &str, status: u16) {
        let mut m = self.lock();
        m.requests += 1;
        *m.statuses.entry(status.to_string()).or_default() += 1;
        let c = m.routes.entry(route_key(method, route)).or_default();
        c.requests += 1;
        *c.statuses.entry(status.to_string()).or_default() += 1;
    }

    /// Add response body bytes (called as the body is written).
    pub fn record_bytes(&self, method: &str, route: &str, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut m = self.lock();
        m.response_bytes += bytes;
        m.routes
            .entry(route_key(method, route))
            .or_default()
            .response_bytes += bytes;
    }

    /// Count one WebSocket text frame written.
    pub fn record_ws_frame(&self, bytes: usize, is_event: bool) {
        let mut m = self.lock();
        m.ws_frames_sent += 1;
        m.ws_bytes_sent += bytes as u64;
        if is_event {
            m.ws_events_sent += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_route_and_resets() {
        let m = Metrics::default();
        m.record_request("GET", "/api/v4/users/{user_id}", 200);
        m.record_bytes("GET", "/api/v4/users/{user_id}", 10);
        m.record_request("GET", "/api/v4/users/{user_id}", 429);
        let s = m.snapshot();
        assert_eq!(s.requests, 2);
        assert_eq!(s.requests_for("GET", "/api/v4/users/{user_id}"), 2);
        assert_eq!(s.requests_under("/api/v4/users"), 2);
        assert_eq!(s.response_bytes, 10);
        assert_eq!(s.status_count(429), 1);
        m.reset();
        assert_eq!(m.snapshot(), MetricsSnapshot::default());
    }
}
