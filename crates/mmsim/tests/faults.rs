//! Fault injection, latency and request metrics over real loopback HTTP (research
//! `reliability-security-performance.md` finding 10, §A6, §A7, §B3).

// Test helpers panic on purpose: a failed set-up step is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use mmsim::faults::{LatencyProfile, OutageMode};
use mmsim::model::Id;
use mmsim::state::SessionKind;
use mmsim::{Running, SimConfig};
use serde_json::{Value, json};

/// A route that always exists in mmsim (the WebSocket endpoint answers a plain GET with 400).
const WS_ROUTE: &str = "/api/v4/websocket";

async fn start() -> (Running, reqwest::Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = mmsim::start(SimConfig::default(), 0).await.unwrap();
    (r, reqwest::Client::new())
}

async fn get(c: &reqwest::Client, r: &Running, path: &str) -> reqwest::Response {
    c.get(format!("{}{path}", r.url)).send().await.unwrap()
}

async fn timed(c: &reqwest::Client, r: &Running, path: &str) -> (u16, Duration) {
    let t = Instant::now();
    let status = get(c, r, path).await.status().as_u16();
    (status, t.elapsed())
}

#[tokio::test]
async fn fixed_latency_and_rtt_are_added_to_every_request() {
    let (r, c) = start().await;
    let (_, base) = timed(&c, &r, WS_ROUTE).await;
    r.sim.inner().faults.set_latency(Duration::from_millis(120));
    r.sim.inner().faults.set_rtt(Duration::from_millis(60));
    let (status, slow) = timed(&c, &r, WS_ROUTE).await;
    assert_eq!(status, 400);
    assert!(slow >= Duration::from_millis(180), "{slow:?}");
    assert!(slow < base + Duration::from_millis(1500), "{slow:?}");
    r.sim.inner().faults.reset();
    let (_, fast) = timed(&c, &r, WS_ROUTE).await;
    assert!(fast < Duration::from_millis(150), "{fast:?}");
}

#[tokio::test]
async fn realistic_latency_follows_the_endpoint_profile_and_scale() {
    let (r, c) = start().await;
    let faults = &r.sim.inner().faults;
    // Constant profile (p99 = avg) to make the measurement exact enough.
    faults.set_endpoint_latency(
        "GET",
        WS_ROUTE,
        LatencyProfile {
            avg_ms: 200.0,
            p99_ms: 200.0,
        },
    );
    let (_, off) = timed(&c, &r, WS_ROUTE).await;
    assert!(
        off < Duration::from_millis(150),
        "realistic mode is off by default: {off:?}"
    );
    faults.set_realistic_latency(true, 1.0);
    let (_, on) = timed(&c, &r, WS_ROUTE).await;
    assert!(on >= Duration::from_millis(195), "{on:?}");
    faults.set_realistic_latency(true, 0.5);
    let (_, half) = timed(&c, &r, WS_ROUTE).await;
    assert!(
        half >= Duration::from_millis(95) && half < on,
        "{half:?} vs {on:?}"
    );
    // The real server's table is there by default.
    let createpost = faults
        .settings()
        .endpoint_latency
        .into_iter()
        .find(|e| e.name == "createPost")
        .unwrap();
    assert_eq!(
        (createpost.profile.avg_ms, createpost.profile.p99_ms),
        (148.0, 613.0)
    );
}

#[tokio::test]
async fn fail_next_and_error_rate_inject_server_errors() {
    let (r, c) = start().await;
    r.sim.inner().faults.fail_next(2, 503);
    for _ in 0..2 {
        let resp = get(&c, &r, WS_ROUTE).await;
        assert_eq!(resp.status(), 503);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["id"], "api.context.server_busy.app_error");
        assert_eq!(body["status_code"], 503);
    }
    assert_eq!(get(&c, &r, WS_ROUTE).await.status(), 400, "back to normal");

    r.sim.inner().faults.set_error_rate(1.0, 502);
    r.sim
        .inner()
        .faults
        .set_error_route_prefix(Some("/api/v4/nothing-here"));
    assert_eq!(
        get(&c, &r, WS_ROUTE).await.status(),
        400,
        "prefix does not match"
    );
    r.sim.inner().faults.set_error_route_prefix(None);
    let resp = get(&c, &r, WS_ROUTE).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.text().await.unwrap(), "Bad Gateway\n");
    r.sim.inner().faults.set_error_rate(0.5, 500);
    let mut failures = 0;
    for _ in 0..60 {
        if get(&c, &r, WS_ROUTE).await.status() == 500 {
            failures += 1;
        }
    }
    assert!((10..=50).contains(&failures), "{failures} of 60");
}

#[tokio::test]
async fn rate_limit_storm_answers_plain_text_429() {
    let (r, c) = start().await;
    r.sim
        .inner()
        .faults
        .rate_limit_storm(Duration::from_millis(1500));
    let resp = get(&c, &r, WS_ROUTE).await;
    assert_eq!(resp.status(), 429);
    let h = resp.headers();
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert_eq!(h["retry-after"], "2");
    assert_eq!(h["x-ratelimit-limit"], "101");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert_eq!(resp.text().await.unwrap(), "limit exceeded\n");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(get(&c, &r, WS_ROUTE).await.status(), 400);
}

#[tokio::test]
async fn outage_refuses_requests_and_drops_websockets() {
    let (r, c) = start().await;
    let user = Id::random();
    let token = r
        .sim
        .with_state(|s| s.create_session(user, SessionKind::Web, 0));
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/api/v4/websocket", r.addr),
    )
    .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (_ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    for _ in 0..100 {
        if r.sim.inner().hub.live_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(r.sim.inner().hub.live_count(), 1);

    r.sim.outage(Duration::from_millis(400));
    assert_eq!(r.sim.inner().hub.live_count(), 0);
    assert!(r.sim.inner().faults.in_outage());
    let resp = get(&c, &r, WS_ROUTE).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.text().await.unwrap(), "Service Unavailable\n");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(get(&c, &r, WS_ROUTE).await.status(), 400);

    // Reset mode: the client gets no usable response.
    r.sim
        .outage_with(Duration::from_millis(400), OutageMode::Reset);
    let outcome = match c.get(format!("{}{WS_ROUTE}", r.url)).send().await {
        Err(_) => Err(()),
        Ok(resp) => resp.bytes().await.map(|_| ()).map_err(|_| ()),
    };
    assert!(outcome.is_err(), "the response must fail");
}

#[tokio::test]
async fn admin_api_reads_and_changes_faults_without_being_counted() {
    let (r, c) = start().await;
    let url = format!("{}/mmsim/admin/faults", r.url);
    let v: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["rtt_ms"], 0);
    assert_eq!(v["realistic_latency"], false);
    assert_eq!(v["endpoint_latency"].as_array().unwrap().len(), 8);

    let v: Value = c
        .put(&url)
        .json(&json!({"fixed_latency_ms": 20, "fail_next": 1, "error_status": 500}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["fixed_latency_ms"], 20);
    assert_eq!(r.sim.inner().faults.settings().fail_next, 1);
    let resp = get(&c, &r, WS_ROUTE).await;
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status_code"], 500);
    assert_eq!(body["detailed_error"], "");

    let v: Value = c.delete(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["fixed_latency_ms"], 0);

    let resp = c
        .post(format!("{}/mmsim/admin/faults/drop_websockets", r.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["dropped"], 0);
    let resp = c
        .post(format!("{}/mmsim/admin/faults/lose_replay_buffers", r.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let m: Value = c
        .get(format!("{}/mmsim/admin/metrics", r.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["requests"], 1, "only the faulted GET was counted: {m}");
    assert_eq!(m["routes"][format!("GET {WS_ROUTE}")]["statuses"]["500"], 1);
}

#[tokio::test]
async fn metrics_count_requests_and_bytes_per_route_template() {
    let (r, c) = start().await;
    for _ in 0..3 {
        get(&c, &r, WS_ROUTE).await.bytes().await.unwrap();
    }
    get(&c, &r, "/api/v4/websocket/")
        .await
        .bytes()
        .await
        .unwrap();
    let m = r.sim.inner().metrics.snapshot();
    assert_eq!(m.requests_for("GET", WS_ROUTE), 3);
    assert_eq!(m.requests_for("GET", "/api/v4/websocket/"), 1);
    assert_eq!(m.requests, 4);
    assert_eq!(m.status_count(400), 4);
    assert!(m.response_bytes > 0);
    assert_eq!(
        m.routes[&format!("GET {WS_ROUTE}")].response_bytes * 4,
        m.response_bytes * 3
    );
    r.sim.inner().metrics.reset();
    assert_eq!(r.sim.inner().metrics.snapshot().requests, 0);
    let m: Value = c
        .delete(format!("{}/mmsim/admin/metrics", r.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["requests"], 0);
}
