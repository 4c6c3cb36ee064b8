//! WebSocket client against mmsim over loopback: hello, typed events, resume with replay,
//! resync after a lost buffer, outage, actions, close.

mod common;

use std::time::Duration;

use mattermost::ws::{Event, ResyncReason, WsClient, WsConfig, WsItem};
use mattermost::{ME, NewPost};
use tokio::sync::mpsc::Receiver;

fn fast_config() -> WsConfig {
    WsConfig {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        backoff_jitter: Duration::ZERO,
        connect_timeout: Duration::from_secs(5),
        ..WsConfig::default()
    }
}

/// The next item matching `pred`, skipping others; panics after 10 s.
async fn next_matching(rx: &mut Receiver<WsItem>, mut pred: impl FnMut(&WsItem) -> bool) -> WsItem {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let item = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("timed out waiting for a WebSocket item")
            .expect("WebSocket task ended");
        if pred(&item) {
            return item;
        }
    }
}

fn is_posted(item: &WsItem, id: &str) -> bool {
    matches!(item, WsItem::Event(ev) if matches!(&ev.event, Event::Posted(p) if p.post.id == id))
}

#[tokio::test]
async fn events_resume_and_resync() {
    let env = common::env().await;
    let backend = env.channel("engineering", "backend");
    let (handle, mut rx) = WsClient::connect(env.alice.clone(), fast_config());

    let first = next_matching(&mut rx, |_| true).await;
    let WsItem::Connected {
        connection_id,
        resumed: false,
    } = first
    else {
        panic!("expected a fresh connection, got {first:?}")
    };

    // A post by bob arrives as a typed event with the post decoded from string JSON.
    let id = env.driver.post("bob", &backend, "hello from bob").unwrap();
    let item = next_matching(&mut rx, |i| is_posted(i, &id)).await;
    let WsItem::Event(ev) = item else {
        unreachable!()
    };
    assert_eq!(ev.broadcast.channel_id, backend);
    let Event::Posted(p) = &ev.event else {
        unreachable!()
    };
    assert_eq!(p.post.message.as_str(), "hello from bob");
    assert_eq!(p.channel_type, "O");

    // Action round trip.
    let pong = handle.ping().await.unwrap();
    assert!(pong.is_ok());
    assert_eq!(pong.data["text"], "pong");

    // Dropped socket, events while away: resumed with replay, no resync.
    assert!(env.running.sim.drop_websockets_of(&env.alice_id) >= 1);
    let missed = env
        .driver
        .post(
            "carol",
            &env.channel("company", "town-square"),
            "while away",
        )
        .unwrap();
    let item = next_matching(&mut rx, |i| {
        matches!(i, WsItem::Connected { .. } | WsItem::Resync { .. })
    })
    .await;
    match item {
        WsItem::Connected {
            connection_id: id,
            resumed: true,
        } => assert_eq!(id, connection_id),
        other => panic!("expected a resumed connection, got {other:?}"),
    }
    next_matching(&mut rx, |i| {
        assert!(!matches!(i, WsItem::Resync { .. }), "unexpected {i:?}");
        is_posted(i, &missed)
    })
    .await;

    // Lost replay buffer: a new connection id and a resync signal.
    env.running.sim.lose_replay_buffers();
    env.running.sim.drop_websockets_of(&env.alice_id);
    let item = next_matching(&mut rx, |i| matches!(i, WsItem::Connected { .. })).await;
    let WsItem::Connected {
        connection_id: new_id,
        resumed: false,
    } = item
    else {
        panic!("expected a fresh connection, got {item:?}")
    };
    assert_ne!(new_id, connection_id);
    let item = next_matching(&mut rx, |_| true).await;
    match item {
        WsItem::Resync {
            reason: ResyncReason::NewConnection { previous, new },
        } => {
            assert_eq!(previous, connection_id);
            assert_eq!(new, new_id);
        }
        other => panic!("expected a resync, got {other:?}"),
    }

    // Still live after all that.
    let id = env.driver.post("bob", &backend, "after resync").unwrap();
    next_matching(&mut rx, |i| is_posted(i, &id)).await;

    handle.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, rx.recv()).await {}
    assert!(handle.is_closed());
}

#[tokio::test]
async fn typed_thread_reaction_preference_events() {
    let env = common::env().await;
    let c = &env.alice;
    let backend = env.channel("engineering", "backend");
    let (handle, mut rx) = WsClient::connect(c.clone(), fast_config());
    next_matching(&mut rx, |i| matches!(i, WsItem::Connected { .. })).await;

    let root = c
        .create_post(&NewPost::new(&backend, "thread root"))
        .await
        .unwrap();
    let reply = env
        .driver
        .reply("bob", &root.id, "@alice have a look")
        .unwrap();

    // The reply reaches alice as `posted` and, since she follows her own root, `thread_updated`.
    let item = next_matching(&mut rx, |i| is_posted(i, &reply)).await;
    let WsItem::Event(ev) = item else {
        unreachable!()
    };
    let Event::Posted(p) = &ev.event else {
        unreachable!()
    };
    assert_eq!(p.post.root_id, root.id);
    // Per-connection lists holding only the receiver's id (trap 23).
    assert_eq!(p.mentions, std::slice::from_ref(&env.alice_id));
    assert!(p.followers.iter().all(|f| *f == env.alice_id));
    let item = next_matching(
        &mut rx,
        |i| matches!(i, WsItem::Event(ev) if matches!(ev.event, Event::ThreadUpdated(_))),
    )
    .await;
    let WsItem::Event(ev) = item else {
        unreachable!()
    };
    let Event::ThreadUpdated(t) = &ev.event else {
        unreachable!()
    };
    assert_eq!(t.thread.id, root.id);
    assert_eq!(t.thread.reply_count, 1);
    assert!(t.thread.unread_replies >= 1);

    env.driver.react("bob", &root.id, "smile").unwrap();
    let item = next_matching(
        &mut rx,
        |i| matches!(i, WsItem::Event(ev) if matches!(ev.event, Event::ReactionAdded(_))),
    )
    .await;
    let WsItem::Event(ev) = item else {
        unreachable!()
    };
    let Event::ReactionAdded(r) = &ev.event else {
        unreachable!()
    };
    assert_eq!(
        (r.post_id.as_str(), r.emoji_name.as_str()),
        (root.id.as_str(), "smile")
    );

    env.driver
        .set_preferences("alice", &[("flagged_post", &root.id, "true")])
        .unwrap();
    let item = next_matching(
        &mut rx,
        |i| matches!(i, WsItem::Event(ev) if matches!(ev.event, Event::PreferencesChanged(_))),
    )
    .await;
    let WsItem::Event(ev) = item else {
        unreachable!()
    };
    let Event::PreferencesChanged(p) = &ev.event else {
        unreachable!()
    };
    assert_eq!(p[0].category, "flagged_post");
    assert_eq!(p[0].name, root.id);

    // Viewing a channel with unreads elsewhere: multiple_channels_viewed (never channel_viewed).
    env.driver.post("bob", &backend, "one more").unwrap();
    c.view_channel(ME, &backend, None).await.unwrap();
    let item = next_matching(&mut rx, |i| {
        matches!(i, WsItem::Event(ev) if matches!(ev.event, Event::MultipleChannelsViewed { .. }))
    })
    .await;
    let WsItem::Event(ev) = item else {
        unreachable!()
    };
    let Event::MultipleChannelsViewed { channel_times } = &ev.event else {
        unreachable!()
    };
    assert!(channel_times.contains_key(&backend));

    // No item was ever a malformed known event.
    handle.close().await;
    while let Some(item) = rx.recv().await {
        if let WsItem::Event(ev) = item {
            assert!(!matches!(ev.event, Event::Malformed { .. }), "{ev:?}");
        }
    }
}

#[tokio::test]
async fn reconnects_after_an_outage() {
    let env = common::env().await;
    let (_handle, mut rx) = WsClient::connect(env.alice.clone(), fast_config());
    let WsItem::Connected { connection_id, .. } =
        next_matching(&mut rx, |i| matches!(i, WsItem::Connected { .. })).await
    else {
        unreachable!()
    };
    env.running.sim.outage(Duration::from_millis(400));
    // At least one failure is reported, then the connection comes back (resumed).
    next_matching(&mut rx, |i| matches!(i, WsItem::Disconnected { .. })).await;
    let item = next_matching(&mut rx, |i| matches!(i, WsItem::Connected { .. })).await;
    match item {
        WsItem::Connected {
            connection_id: id,
            resumed,
        } => {
            assert!(resumed, "expected a resume after a short outage");
            assert_eq!(id, connection_id);
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn missing_token_is_reported() {
    let env = common::env().await;
    let (handle, mut rx) = WsClient::connect(env.anon.clone(), fast_config());
    let item = next_matching(&mut rx, |_| true).await;
    match item {
        WsItem::Disconnected { error } => assert!(error.is_unauthorized(), "{error:?}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    handle.close().await;
}

#[tokio::test]
async fn rejected_token_is_reported_as_closed_before_hello() {
    let env = common::env().await;
    let hub = &env.running.sim.inner().hub;
    hub.set_config(mmsim::events::HubConfig {
        auth_timeout: Duration::from_millis(200),
        ..hub.config()
    });
    let bad = env.anon.with_token("wrongtokenwrongtokenwrongt");
    let (handle, mut rx) = WsClient::connect(bad, fast_config());
    let item = next_matching(&mut rx, |_| true).await;
    match item {
        WsItem::Disconnected { error } => {
            assert!(error.to_string().contains("is the token valid?"), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    handle.close().await;
}

/// A loopback TCP relay whose current connections can be frozen (bytes stop flowing both ways,
/// sockets stay open): a half-open network path, which only an application-level ping detects.
struct Relay {
    url: String,
    freeze: tokio::sync::watch::Sender<u64>,
}

async fn relay(target: std::net::SocketAddr) -> Relay {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("relay binds");
    let url = format!("http://{}", listener.local_addr().expect("relay address"));
    let (freeze, watch) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let mut watch = watch.clone();
            let generation = *watch.borrow_and_update();
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut ri, mut wi) = inbound.into_split();
                let (mut ro, mut wo) = outbound.into_split();
                let pump = async {
                    tokio::select! {
                        _ = tokio::io::copy(&mut ri, &mut wo) => {}
                        _ = tokio::io::copy(&mut ro, &mut wi) => {}
                    }
                };
                let frozen = async move {
                    let _ = watch.wait_for(|g| *g > generation).await.map(|_| ());
                };
                tokio::select! {
                    () = pump => {}
                    () = frozen => {
                        // Frozen: hold the sockets open, forward nothing.
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
    });
    Relay { url, freeze }
}

#[tokio::test]
async fn half_open_connection_is_detected_by_ping() {
    let env = common::env().await;
    let relay = relay(env.running.addr).await;
    let client = mattermost::Client::new(&relay.url)
        .unwrap()
        .with_token(env.alice.token().unwrap());
    let config = WsConfig {
        ping_interval: Duration::from_millis(200),
        ..fast_config()
    };
    let (_handle, mut rx) = WsClient::connect(client, config);
    let WsItem::Connected { connection_id, .. } =
        next_matching(&mut rx, |i| matches!(i, WsItem::Connected { .. })).await
    else {
        unreachable!()
    };

    relay.freeze.send_modify(|g| *g += 1);
    let item = next_matching(&mut rx, |i| matches!(i, WsItem::Disconnected { .. })).await;
    let WsItem::Disconnected { error } = item else {
        unreachable!()
    };
    assert!(error.to_string().contains("ping timeout"), "{error}");

    // New connections through the relay flow again. The server still holds the frozen socket
    // as active, and only inactive connections can be resumed, so this is a fresh connection
    // and the consumer is told to resync.
    let item = next_matching(&mut rx, |i| matches!(i, WsItem::Connected { .. })).await;
    let WsItem::Connected {
        connection_id: id, ..
    } = item
    else {
        unreachable!()
    };
    if id != connection_id {
        let item = next_matching(&mut rx, |_| true).await;
        assert!(
            matches!(
                item,
                WsItem::Resync {
                    reason: ResyncReason::NewConnection { .. }
                }
            ),
            "{item:?}"
        );
    }
}

#[tokio::test]
async fn rate_limited_upgrade_waits_retry_after() {
    let env = common::env().await;
    env.running
        .sim
        .inner()
        .faults
        .rate_limit_storm(Duration::from_millis(300));
    let (_handle, mut rx) = WsClient::connect(env.alice.clone(), fast_config());
    let item = next_matching(&mut rx, |_| true).await;
    match item {
        WsItem::Disconnected { error } => {
            assert!(
                matches!(error, mattermost::Error::RateLimited { .. }),
                "{error:?}"
            );
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    next_matching(&mut rx, |i| matches!(i, WsItem::Connected { .. })).await;
}

/// T-24: a message larger than `max_message_size` is refused by the transport: the client
/// reports the connection as failed (naming the size), reconnects by itself — fresh, with a
/// resync, instead of resuming into the same message forever — and neither panics nor
/// delivers a truncated event; normal-size events arrive again.
#[tokio::test]
async fn oversized_messages_are_refused_and_the_client_reconnects() {
    let env = common::env().await;
    let backend = env.channel("engineering", "backend");
    let config = WsConfig {
        max_message_size: 4096,
        ..fast_config()
    };
    let (handle, mut rx) = WsClient::connect(env.alice.clone(), config);
    next_matching(&mut rx, |i| matches!(i, WsItem::Connected { .. })).await;
    let small = env.driver.post("bob", &backend, "small one").unwrap();
    next_matching(&mut rx, |i| is_posted(i, &small)).await;
    let huge = env.driver.post("bob", &backend, &"x".repeat(8000)).unwrap();
    let item = next_matching(&mut rx, |i| {
        matches!(i, WsItem::Disconnected { .. }) || is_posted(i, &huge)
    })
    .await;
    let WsItem::Disconnected { error } = item else {
        panic!("an oversized event was delivered: {item:?}")
    };
    let text = error.to_string().to_lowercase();
    assert!(
        text.contains("size") || text.contains("capacity") || text.contains("too long"),
        "{text}"
    );
    // It reconnects by itself, fresh (resuming would replay the same message and fail again
    // forever), and says that events were lost; then events flow again.
    let item = next_matching(&mut rx, |i| matches!(i, WsItem::Connected { .. })).await;
    assert!(
        matches!(item, WsItem::Connected { resumed: false, .. }),
        "{item:?}"
    );
    next_matching(&mut rx, |i| matches!(i, WsItem::Resync { .. })).await;
    let after = env
        .driver
        .post("bob", &backend, "after the big one")
        .unwrap();
    next_matching(&mut rx, |i| is_posted(i, &after)).await;
    assert!(!handle.is_closed());
    handle.close().await;
}
