//! Keeps the scale bench (`cargo bench -p threaddesk --bench scale`) from rotting: its harness
//! (`benches/scale/harness.rs`) run end to end with 5 users — the `threaddesk` binary as a child
//! process, token sign-in, synced caches, live streams, event → browser matching by sequence
//! number, and a reconnect storm with lost replay buffers. A few seconds (most of it the
//! production WebSocket reconnect delay of 3–5 s).

#[allow(dead_code)]
#[path = "../benches/scale/harness.rs"]
mod harness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{ApiStats, Budget, Shared, Td};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_harness_runs_with_five_users() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (running, users) = harness::start_sim(5).await.unwrap();
    let td = Td::spawn(env!("CARGO_BIN_EXE_threaddesk"), &running.url, Budget::OFF)
        .await
        .unwrap();
    let http = harness::http();
    let shared = Arc::new(Shared::default());
    let api = Arc::new(Mutex::new(ApiStats::default()));
    let conns = harness::connect_all(&http, &td.url, users, &shared, &api, 5)
        .await
        .unwrap();
    assert_eq!(conns.len(), 5);
    assert!(td.rss_kib().unwrap() > 0);
    {
        let api = api.lock().unwrap();
        assert!(api.total >= 5 && api.server_errors == 0, "{api:?}");
    }

    // Event → browser: every DM's frame is matched by its sequence number.
    let sent = harness::drive_dms(
        &running.sim,
        &conns,
        &shared,
        50.0,
        Duration::from_millis(400),
    )
    .await
    .unwrap();
    harness::drain(&shared, Duration::from_secs(5)).await;
    let lat = shared.take_latencies();
    assert!(sent >= 10, "sent {sent}");
    assert_eq!(lat.len() as u64, sent, "frames matched / DMs sent");
    assert!(harness::percentile(&lat, 99.0) < 5_000.0);

    // Storm: every user resyncs and shows the DM sent while the server was down.
    let storm = harness::storm(
        &running.sim,
        &conns,
        &shared,
        &http,
        &td.url,
        Duration::from_millis(200),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!((storm.reloaded, storm.verified), (5, 5), "{storm:?}");
    assert!(storm.calls >= 5 && storm.calls <= 5 * 10, "{storm:?}");
}
