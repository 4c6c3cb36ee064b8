//! The real server's rate limiter over loopback HTTP (research `mattermost-api.md` §8, trap 20;
//! reliability finding 2).

// Test helpers panic on purpose: a failed set-up step is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mmsim::ratelimit::RateLimitSettings;
use mmsim::{Running, SimConfig};
use serde_json::{Value, json};

const ROUTE: &str = "/api/v4/websocket";

async fn start(settings: Option<RateLimitSettings>) -> (Running, reqwest::Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = SimConfig {
        rate_limit: settings,
        ..SimConfig::default()
    };
    let r = mmsim::start(config, 0).await.unwrap();
    (r, reqwest::Client::new())
}

fn small(per_sec: u32, max_burst: u32) -> RateLimitSettings {
    RateLimitSettings {
        per_sec,
        max_burst,
        ..RateLimitSettings::default()
    }
}

async fn get(c: &reqwest::Client, r: &Running, token: Option<&str>) -> reqwest::Response {
    let mut req = c.get(format!("{}{ROUTE}", r.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn off_by_default_no_headers() {
    let (r, c) = start(None).await;
    for _ in 0..150 {
        let resp = get(&c, &r, None).await;
        assert_ne!(resp.status(), 429);
        assert!(header(&resp, "x-ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn burst_then_plain_text_429_with_retry_after() {
    let (r, c) = start(Some(small(1, 3))).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let resp = get(&c, &r, None).await;
        assert_eq!(resp.status(), 400, "passed through to the handler");
        assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("4"));
        assert!(header(&resp, "retry-after").is_none());
        assert!(header(&resp, "x-ratelimit-reset").is_some());
        remaining.push(header(&resp, "x-ratelimit-remaining").unwrap());
    }
    assert_eq!(remaining, ["2", "1", "0"]);

    let resp = get(&c, &r, None).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(header(&resp, "x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("1"));
    assert_eq!(header(&resp, "x-ratelimit-reset").as_deref(), Some("3"));
    assert_eq!(resp.text().await.unwrap(), "limit exceeded\n");

    // One request per second refills.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(get(&c, &r, None).await.status(), 400);

    // Refused requests are counted too, under their route.
    let m = r.sim.inner().metrics.snapshot();
    assert_eq!(m.requests_for("GET", ROUTE), 5);
    assert_eq!(m.status_count(429), 1);
}

#[tokio::test]
async fn keyed_by_ip_unless_vary_by_user() {
    // By IP: two tokens share one bucket (every ThreadDesk user shares the server's IP).
    let (r, c) = start(Some(small(1, 1))).await;
    assert_eq!(get(&c, &r, Some("token-a")).await.status(), 400);
    assert_eq!(get(&c, &r, Some("token-b")).await.status(), 429);

    // VaryByUser: one bucket per token.
    let settings = RateLimitSettings {
        vary_by_user: true,
        ..small(1, 1)
    };
    r.sim.inner().ratelimit.set_settings(Some(settings));
    assert_eq!(get(&c, &r, Some("token-a")).await.status(), 400);
    assert_eq!(get(&c, &r, Some("token-b")).await.status(), 400);
    assert_eq!(get(&c, &r, Some("token-a")).await.status(), 429);
}

#[tokio::test]
async fn admin_api_switches_limiting_and_is_never_limited() {
    let (r, c) = start(None).await;
    let url = format!("{}/mmsim/admin/ratelimit", r.url);
    let v: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v, Value::Null);
    let v: Value = c
        .put(&url)
        .json(&json!({"per_sec": 1, "max_burst": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["per_sec"], 1);
    assert_eq!(
        v["vary_by_remote_addr"], true,
        "real defaults fill the rest"
    );
    assert_eq!(get(&c, &r, None).await.status(), 400);
    assert_eq!(get(&c, &r, None).await.status(), 429);
    for _ in 0..5 {
        assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    }
    c.put(&url).json(&Value::Null).send().await.unwrap();
    assert_eq!(get(&c, &r, None).await.status(), 400);
}
