//! Sync engine against mmsim over loopback: initial sync, live events, reconnects, actions.
//! Conditions are awaited on the engine's item-changed channel with a timeout (no fixed sleeps).

use std::sync::Arc;
use std::time::Duration;

use mattermost::{Client, ME, Secret, UserThreadsQuery};
use threaddesk::inbox::{self, Filter, ItemKey};
use threaddesk::store::{Store, UserId};
use threaddesk::sync::ratelimit::RateLimiter;
use threaddesk::sync::{Action, Cause, ItemChanged, Phase, SyncEngine, SyncSettings};
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(20);

struct Env {
    running: mmsim::Running,
    driver: mmsim::driver::Driver,
    base: Client,
    alice: UserId,
    token: String,
}

async fn env() -> Env {
    let running = mmsim::start(mmsim::SimConfig::default(), 0)
        .await
        .expect("simulator starts");
    let base = Client::builder(&running.url)
        .request_timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let login = base
        .login(
            mmsim::seed::DEMO_USERNAME,
            &Secret::new(mmsim::seed::DEMO_PASSWORD),
        )
        .await
        .expect("alice logs in");
    let driver = mmsim::driver::Driver::new(&running.sim);
    Env {
        alice: UserId::parse(&login.user.id).expect("id"),
        token: login.token.expose().to_owned(),
        running,
        driver,
        base,
    }
}

fn settings() -> SyncSettings {
    let mut s = SyncSettings::default();
    s.ws.min_backoff = Duration::from_millis(50);
    s.ws.backoff_jitter = Duration::from_millis(10);
    s
}

struct Side {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    engine: SyncEngine,
    rx: broadcast::Receiver<ItemChanged>,
}

impl Env {
    /// A fresh store + engine syncing alice; returns once the initial sync is complete.
    async fn side(&self) -> Side {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        self.side_with(dir, store).await
    }

    async fn side_with(&self, dir: tempfile::TempDir, store: Arc<Store>) -> Side {
        self.side_with_settings(dir, store, settings()).await
    }

    async fn side_with_settings(
        &self,
        dir: tempfile::TempDir,
        store: Arc<Store>,
        settings: SyncSettings,
    ) -> Side {
        let engine = SyncEngine::new(Arc::clone(&store), settings, RateLimiter::unlimited(8));
        let mut rx = engine.subscribe();
        let base = Client::builder(&self.running.url)
            .request_gate(engine.request_gate())
            .build()
            .expect("client");
        engine.start_user(&self.alice, base.with_token(self.token.clone()));
        wait(&mut rx, |c| {
            c.key.is_none() && c.cause == Cause::InitialSync
        })
        .await;
        assert_eq!(
            engine.user_status(&self.alice).map(|s| s.phase),
            Some(Phase::Live)
        );
        Side {
            _dir: dir,
            store,
            engine,
            rx,
        }
    }

    fn alice_client(&self) -> Client {
        self.base.with_token(self.token.clone())
    }
}

async fn wait(
    rx: &mut broadcast::Receiver<ItemChanged>,
    pred: impl Fn(&ItemChanged) -> bool,
) -> ItemChanged {
    tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(c) if pred(&c) => return c,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("engine closed"),
            }
        }
    })
    .await
    .expect("condition within the timeout")
}

/// Wait until `cond` holds, re-checking after every item-changed notice.
async fn until(rx: &mut broadcast::Receiver<ItemChanged>, what: &str, cond: impl Fn() -> bool) {
    let r = tokio::time::timeout(WAIT, async {
        while !cond() {
            match rx.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("engine closed"),
            }
        }
    })
    .await;
    assert!(r.is_ok(), "timed out waiting for: {what}");
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What must be equal between two stores of the same user: queue rows, threads, marks.
fn snapshot(store: &Store, user: &UserId) -> String {
    let e = store.for_user(user).export().expect("export");
    let mut items: Vec<String> = e
        .items
        .iter()
        .map(|r| {
            format!(
                "{} {} {} u{} m{} d{:?} s{:?}",
                r.key,
                r.kind.as_str(),
                r.last_activity_at,
                r.counts.unread,
                r.counts.mentions,
                r.done_at,
                r.snoozed_until
            )
        })
        .collect();
    items.sort();
    let mut threads: Vec<String> = e
        .threads
        .iter()
        .map(|t| {
            format!(
                "{} r{} l{} v{} f{} d{}",
                t.root_id,
                t.reply_count,
                t.last_reply_at,
                t.unread_replies,
                t.following,
                t.delete_at
            )
        })
        .collect();
    threads.sort();
    format!(
        "{}\n--\n{}\n--\n{:?}",
        items.join("\n"),
        threads.join("\n"),
        e.marks
    )
}

fn open_keys(store: &Store, user: &UserId) -> Vec<ItemKey> {
    store
        .for_user(user)
        .queue(&Filter::All, now(), None, 500)
        .expect("queue")
        .rows
        .into_iter()
        .map(|r| r.key)
        .collect()
}

#[tokio::test]
async fn initial_sync_builds_the_queue_with_few_calls() {
    let env = env().await;
    env.running.sim.inner().metrics.reset();
    let side = env.side().await;
    let calls = env.running.sim.inner().metrics.snapshot();
    let rest: u64 = calls
        .routes
        .iter()
        .filter(|(k, _)| !k.contains("/websocket"))
        .map(|(_, c)| c.requests)
        .sum();
    let teams = env
        .alice_client()
        .get_teams_for_user(ME)
        .await
        .expect("teams");
    eprintln!(
        "initial sync of demo: {rest} REST calls for {} teams; routes: {:?}",
        teams.len(),
        calls.routes.keys().collect::<Vec<_>>()
    );
    // 6 fixed + one thread list per team + DM/GM posts (≤ 10) + mentions + profiles.
    assert!(rest <= 6 + teams.len() as u64 + 10 + 20 + 5, "{rest} calls");
    assert_eq!(side.engine.calls_made(&env.alice), Some(rest));

    // Every followed thread with activity in the window is an item; unread ones are open.
    let since = now() - 14 * 86_400_000;
    let c = env.alice_client();
    let keys = open_keys(&side.store, &env.alice);
    assert!(!keys.is_empty(), "demo queue is empty");
    let all_items: Vec<ItemKey> = side
        .store
        .for_user(&env.alice)
        .export()
        .expect("export")
        .items
        .into_iter()
        .map(|r| r.key)
        .collect();
    for t in &teams {
        let list = c
            .get_all_user_threads(
                ME,
                &t.id,
                &UserThreadsQuery {
                    since: Some(since),
                    ..UserThreadsQuery::default()
                },
            )
            .await
            .expect("threads");
        for th in list
            .threads
            .iter()
            .filter(|th| th.post.as_ref().is_some_and(|p| p.delete_at == 0))
        {
            let key = ItemKey::thread(&th.id).expect("key");
            assert!(all_items.contains(&key), "thread {key} missing");
            if th.unread_replies > 0 {
                assert!(
                    keys.contains(&key)
                        || side
                            .store
                            .for_user(&env.alice)
                            .marks()
                            .expect("marks")
                            .contains_key(&key),
                    "unread thread {key} not open"
                );
            }
        }
    }
    // The status page knows the sync.
    let st = side.engine.status();
    assert_eq!(st.users.len(), 1);
    assert!(st.users[0].initial_sync_calls > 0);
}

#[tokio::test]
async fn live_events_update_the_store() {
    let env = env().await;
    let mut side = env.side().await;
    let d = &env.driver;
    let store = &side.store;
    let alice = &env.alice;
    let c = env.alice_client();
    let (team, threads) = team_threads(&c, 5).await;
    let thread = threads.threads.first().expect("a followed thread").clone();
    let root = thread.id.clone();
    let channel = thread.post.as_ref().expect("root").channel_id.clone();

    let us = || store.for_user(alice);
    // New reply by someone else → the thread item moves.
    let reply = d.reply("bob", &root, "a new reply").expect("reply");
    until(&mut side.rx, "reply cached and thread moved", || {
        let post = us().post(&reply).ok().flatten();
        let row = us().thread(&root).ok().flatten();
        matches!((post, row), (Some(p), Some(t)) if t.last_reply_at >= p.create_at)
    })
    .await;

    // Edit, reaction and delete of that reply.
    d.edit("bob", &reply, "edited text").expect("edit");
    until(&mut side.rx, "edit applied", || {
        us().post(&reply)
            .ok()
            .flatten()
            .is_some_and(|p| p.message.expose() == "edited text")
    })
    .await;
    d.react("carol", &reply, "smile").expect("react");
    until(&mut side.rx, "reaction applied", || {
        us().post(&reply)
            .ok()
            .flatten()
            .is_some_and(|p| p.reactions.expose().contains("smile"))
    })
    .await;
    d.delete("bob", &reply).expect("delete");
    until(&mut side.rx, "delete applied", || {
        us().post(&reply)
            .ok()
            .flatten()
            .is_none_or(|p| p.delete_at > 0)
    })
    .await;

    // A mention in a new root post → a mention item.
    let m = d
        .mention("bob", &channel, None, "alice", "please look")
        .expect("mention");
    let mkey = ItemKey::thread(&m).expect("key");
    until(&mut side.rx, "mention item open", || {
        open_keys(store, alice).contains(&mkey)
    })
    .await;

    // A DM → the DM channel item is open with an unread message.
    let dm = d.dm("carol", "alice", "hello there").expect("dm");
    until(&mut side.rx, "dm cached", || {
        us().post(&dm).ok().flatten().is_some()
    })
    .await;
    let dm_channel = us().post(&dm).expect("post").expect("dm").channel_id;
    let dkey = ItemKey::channel(&dm_channel).expect("key");
    until(&mut side.rx, "dm item unread", || {
        us().item(&dkey, 5)
            .ok()
            .flatten()
            .is_some_and(|i| i.row.counts.unread > 0)
    })
    .await;

    // Read in another client: DM viewed, thread read.
    d.view_channel("alice", &dm_channel).expect("view");
    until(&mut side.rx, "dm read", || {
        us().item(&dkey, 5)
            .ok()
            .flatten()
            .is_some_and(|i| i.row.counts.unread == 0)
    })
    .await;
    d.reply("carol", &root, "another").expect("reply");
    until(&mut side.rx, "thread unread", || {
        us().thread(&root)
            .ok()
            .flatten()
            .is_some_and(|t| t.unread_replies > 0)
    })
    .await;
    d.read_thread("alice", &root).expect("read");
    until(&mut side.rx, "thread read", || {
        us().thread(&root)
            .ok()
            .flatten()
            .is_some_and(|t| t.unread_replies == 0)
    })
    .await;

    // Follow change in another client.
    c.unfollow_thread(ME, &team, &root).await.expect("unfollow");
    until(&mut side.rx, "unfollowed", || {
        us().thread(&root)
            .ok()
            .flatten()
            .is_some_and(|t| !t.following)
    })
    .await;

    // Preference change from another device: done mark, then undo.
    let done_at = now();
    d.set_preferences(
        "alice",
        &[(
            inbox::DONE_CATEGORY,
            &mkey.to_string(),
            &done_at.to_string(),
        )],
    )
    .expect("prefs");
    until(&mut side.rx, "done from another device", || {
        us().marks()
            .ok()
            .and_then(|m| m.get(&mkey).and_then(|m| m.done_at))
            == Some(done_at)
    })
    .await;
    assert!(!open_keys(store, alice).contains(&mkey));
    d.delete_preferences("alice", &[(inbox::DONE_CATEGORY, &mkey.to_string())])
        .expect("prefs");
    until(&mut side.rx, "undone from another device", || {
        us().marks()
            .ok()
            .is_some_and(|m| m.get(&mkey).is_none_or(|m| m.done_at.is_none()))
    })
    .await;

    // Removed from the channel: its items leave the queue; added back: they return.
    let in_channel = |ch: &str| {
        us().export()
            .expect("export")
            .items
            .iter()
            .any(|i| i.channel_id == ch)
    };
    assert!(in_channel(&channel));
    d.remove_member(&channel, "alice").expect("remove");
    until(&mut side.rx, "items of the left channel gone", || {
        !in_channel(&channel)
    })
    .await;
    d.add_member(&channel, "alice").expect("add");
    until(&mut side.rx, "membership back", || {
        us().channel(&channel).ok().flatten().is_some()
    })
    .await;
    assert_eq!(side.engine.user_status(alice).map(|s| s.resyncs), Some(0));
}

/// Activity while the socket is down, then a reconnect (with or without the server's replay
/// buffer) must end in the same state as a fresh sync.
async fn reconnect_case(lose_buffer: bool) {
    let env = env().await;
    let mut side = env.side().await;
    let c = env.alice_client();
    let (_, threads) = team_threads(&c, 3).await;
    let root = threads.threads[0].id.clone();
    let channel = threads.threads[0]
        .post
        .as_ref()
        .expect("root")
        .channel_id
        .clone();

    assert!(env.running.sim.drop_websockets_of(env.alice.as_str()) > 0);
    if lose_buffer {
        env.running.sim.lose_replay_buffers();
    }
    env.driver.reply("bob", &root, "while away").expect("reply");
    env.driver.dm("dave", "alice", "are you there").expect("dm");
    env.driver
        .mention("bob", &channel, None, "alice", "ping")
        .expect("mention");
    // Replay delivers the three events; a lost buffer triggers one resync. Either way, wait
    // until the store shows all three changes.
    let us = || side.store.for_user(&env.alice);
    let rx = &mut side.rx;
    until(rx, "reply, dm and mention applied", || {
        let e = us().export().expect("export");
        let thread_moved = e
            .threads
            .iter()
            .any(|t| t.root_id == root && t.last_reply_at > threads.threads[0].last_reply_at);
        let dm = e.items.iter().any(|i| {
            i.kind == inbox::ItemKind::Direct
                && i.counts.unread > 0
                && i.last_activity_at > now() - 60_000
        });
        let mention = e
            .items
            .iter()
            .any(|i| i.kind == inbox::ItemKind::Mention && i.last_activity_at > now() - 60_000);
        thread_moved && dm && mention
    })
    .await;
    let st = side.engine.user_status(&env.alice).expect("status");
    if lose_buffer {
        assert!(st.resyncs >= 1);
        eprintln!("resync after lost buffer: {} calls", st.last_resync_calls);
        // 3 fixed reads (teams/unread, the first team's channels, preferences) + the changed
        // team's threads and memberships (a new root mention) + the first team's memberships
        // (DM read state) + the DM's posts + the mention's channel roots + at most one profile
        // batch. Nothing proportional to the org.
        assert!(
            st.last_resync_calls <= 3 + 6,
            "resync cost {}",
            st.last_resync_calls
        );
    } else {
        assert_eq!(st.resyncs, 0, "replay must not resync");
    }
    let fresh = env.side().await;
    assert_eq!(
        snapshot(&side.store, &env.alice),
        snapshot(&fresh.store, &env.alice)
    );
}

#[tokio::test]
async fn reconnect_with_replay_equals_fresh_sync() {
    reconnect_case(false).await;
}

#[tokio::test]
async fn reconnect_without_replay_equals_fresh_sync() {
    reconnect_case(true).await;
}

#[tokio::test]
async fn actions_reach_mattermost_and_marks_survive_a_new_store() {
    let env = env().await;
    let mut side = env.side().await;
    let c = env.alice_client();
    let (_, threads) = team_threads(&c, 3).await;
    let t = &threads.threads[0];
    let key = ItemKey::thread(&t.id).expect("key");
    let channel = t.post.as_ref().expect("root").channel_id.clone();

    // Done + snooze: optimistic at once, delivered as preferences.
    let done_at = now();
    let snooze_until = done_at + 3_600_000;
    side.engine
        .act(
            &env.alice,
            Action::Done {
                key: key.clone(),
                at: done_at,
            },
        )
        .await
        .expect("done");
    assert_eq!(
        side.store
            .for_user(&env.alice)
            .marks()
            .expect("marks")
            .get(&key)
            .and_then(|m| m.done_at),
        Some(done_at)
    );
    let other = open_keys(&side.store, &env.alice)
        .into_iter()
        .find(|k| *k != key)
        .expect("a second open item");
    side.engine
        .act(
            &env.alice,
            Action::Snooze {
                key: other.clone(),
                until: snooze_until,
            },
        )
        .await
        .expect("snooze");
    // Delivery is confirmed by the echoed preferences_changed events.
    until(&mut side.rx, "snooze echoed", || {
        side.store
            .for_user(&env.alice)
            .outbox_rows(None)
            .is_ok_and(|rows| {
                rows.iter()
                    .all(|r| r.state == threaddesk::store::OutboxState::Sent)
            })
    })
    .await;

    // A reply through the outbox, with a 503 on the first attempt: delivered once.
    env.running.sim.inner().faults.fail_next(1, 503);
    side.engine
        .act(
            &env.alice,
            Action::Reply {
                channel_id: channel,
                root_id: t.id.clone(),
                message: threaddesk::store::MessageText::new("from threaddesk"),
            },
        )
        .await
        .expect("reply");
    until(&mut side.rx, "reply delivered", || {
        side.store
            .for_user(&env.alice)
            .outbox_rows(None)
            .is_ok_and(|rows| {
                rows.iter()
                    .all(|r| r.state == threaddesk::store::OutboxState::Sent)
            })
    })
    .await;
    let thread = c
        .get_post_thread(&t.id, &mattermost::PostThreadQuery::default())
        .await
        .expect("thread");
    let ours = thread
        .posts
        .values()
        .filter(|p| {
            p.props
                .0
                .contains_key(threaddesk::sync::outbox::MARKER_PROP)
        })
        .count();
    assert_eq!(ours, 1, "exactly one delivered reply");

    // A new store (reinstall): marks come back from Mattermost.
    let fresh = env.side().await;
    let marks = fresh.store.for_user(&env.alice).marks().expect("marks");
    assert_eq!(marks.get(&key).and_then(|m| m.done_at), Some(done_at));
    assert_eq!(
        marks.get(&other).and_then(|m| m.snoozed_until),
        Some(snooze_until)
    );
}

/// T-2: a reply whose first send reached Mattermost but whose answer was lost, retried after
/// the 30 s dedup window: the worker finds the marker in the thread and sends nothing.
#[tokio::test]
async fn reply_with_lost_response_is_reconciled_not_duplicated() {
    let env = env().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let c = env.alice_client();
    let (_, threads) = team_threads(&c, 1).await;
    let root = threads.threads[0].clone();
    let channel_id = root.post.as_ref().expect("root").channel_id.clone();

    // The action is recorded while the user's sync is not running (nothing is sent yet).
    let engine = SyncEngine::new(Arc::clone(&store), settings(), RateLimiter::unlimited(8));
    store
        .write(|tx| {
            tx.user(&env.alice).upsert_self(
                &threaddesk::store::Profile {
                    user_id: env.alice.as_str().to_owned(),
                    username: "alice".into(),
                    ..Default::default()
                },
                now(),
            )
        })
        .expect("user row");
    engine
        .act(
            &env.alice,
            Action::Reply {
                channel_id: channel_id.clone(),
                root_id: root.id.clone(),
                message: threaddesk::store::MessageText::new("sent once"),
            },
        )
        .await
        .expect("act");
    let row = store.for_user(&env.alice).outbox_rows(None).expect("rows")[0].clone();
    // Simulate the lost answer: the post exists on the server with our marker, and the row
    // says it was first sent a minute ago.
    let mut props = mattermost::models::JsonMap::new();
    props.insert(
        threaddesk::sync::outbox::MARKER_PROP.into(),
        serde_json::Value::String(row.marker.clone()),
    );
    let created = c
        .create_post(
            &mattermost::NewPost::new(channel_id, "sent once")
                .reply_to(root.id.clone())
                .props(props),
        )
        .await
        .expect("post");
    drop(engine);
    {
        let conn =
            rusqlite::Connection::open(dir.path().join(threaddesk::store::DB_FILE)).expect("db");
        conn.execute(
            "UPDATE outbox SET attempts = 1, first_sent_at = ?1 WHERE id = ?2",
            rusqlite::params![now() - 60_000, row.id],
        )
        .expect("age the row");
    }
    // Restart: the worker reconciles before any resend.
    let side = env.side_with(dir, store).await;
    let mut rx = side.engine.subscribe();
    until(&mut rx, "row settled", || {
        side.store
            .for_user(&env.alice)
            .outbox_rows(None)
            .is_ok_and(|rows| rows[0].state == threaddesk::store::OutboxState::Sent)
    })
    .await;
    let rows = side
        .store
        .for_user(&env.alice)
        .outbox_rows(None)
        .expect("rows");
    assert_eq!(rows[0].post_id.as_deref(), Some(created.id.as_str()));
    let thread = c
        .get_post_thread(&root.id, &mattermost::PostThreadQuery::default())
        .await
        .expect("thread");
    let ours = thread
        .posts
        .values()
        .filter(|p| {
            p.props
                .0
                .contains_key(threaddesk::sync::outbox::MARKER_PROP)
        })
        .count();
    assert_eq!(ours, 1, "no duplicate after a lost response");
}

/// Drop alice's socket with the server's replay buffer lost, and wait for the resync.
async fn lost_buffer_resync(env: &Env, side: &mut Side) {
    env.running.sim.inner().metrics.reset();
    env.running.sim.lose_replay_buffers();
    assert!(env.running.sim.drop_websockets_of(env.alice.as_str()) > 0);
    wait(&mut side.rx, |x| {
        x.cause == Cause::Resync && x.key.is_none()
    })
    .await;
}

/// Alice reads every DM/GM thread the store shows unread (live, on another device), so that a
/// resync does not list DM/GM threads because of them (the demo org gives her one): the
/// call counts below are then those of the change each test makes alone.
async fn read_direct_threads(env: &Env, side: &mut Side) {
    let unread: Vec<String> = side
        .store
        .for_user(&env.alice)
        .threads()
        .expect("threads")
        .into_iter()
        .filter(|t| t.team_id.is_empty() && (t.unread_replies > 0 || t.unread_mentions > 0))
        .map(|t| t.root_id)
        .collect();
    for root in &unread {
        env.driver.read_thread("alice", root).expect("read thread");
    }
    let us = || side.store.for_user(&env.alice);
    until(&mut side.rx, "DM/GM threads read", || {
        !us().has_unread_direct_thread().unwrap_or(true)
    })
    .await;
}

/// Alice reads every DM/GM channel and thread the store shows unread (live, on another
/// device), so that the store shows no unread DM/GM and a resync's DM/GM membership read (and
/// DM/GM thread list) is not triggered by it.
async fn read_every_direct(env: &Env, side: &mut Side) {
    read_direct_threads(env, side).await;
    let unread_dms: Vec<String> = side
        .store
        .for_user(&env.alice)
        .export()
        .expect("export")
        .items
        .into_iter()
        .filter(|i| i.kind != inbox::ItemKind::Thread && i.kind != inbox::ItemKind::Mention)
        .filter(|i| i.counts.unread > 0 || i.counts.mentions > 0)
        .filter_map(|i| match i.key {
            ItemKey::Channel(c) => Some(c),
            ItemKey::Thread(_) => None,
        })
        .collect();
    for c in &unread_dms {
        env.driver.view_channel("alice", c).expect("view");
    }
    let us = || side.store.for_user(&env.alice);
    until(&mut side.rx, "DMs read", || {
        !us().has_unread_direct().unwrap_or(true)
    })
    .await;
}

/// The calls a resync makes, by route (`"GET /api/v4/…"` → count), since the last metrics
/// reset. Not counted: the WebSocket upgrade (and its refusals during an outage), and
/// `GET /users/me` — the reconnect loop's token check after repeated socket failures
/// (`WS_FAILURES_BEFORE_TOKEN_CHECK`), made while the outage still refuses everything; the
/// resync itself never calls it.
fn resync_calls(env: &Env) -> std::collections::BTreeMap<String, u64> {
    env.running
        .sim
        .inner()
        .metrics
        .snapshot()
        .routes
        .into_iter()
        .filter(|(k, c)| {
            !k.contains("/websocket") && k != "GET /api/v4/users/{user_id}" && c.requests > 0
        })
        .map(|(k, c)| (k, c.requests))
        .collect()
}

/// P-3 with k = 0: a reconnect that lost the buffer but nothing changed costs only the fixed
/// reads — 3, plus the DM/GM memberships while the store shows an unread DM/GM, plus the DM/GM
/// thread list while it shows an unread DM/GM thread (a read on another device moves nothing
/// else).
#[tokio::test]
async fn resync_with_no_changes_costs_only_fixed_reads() {
    let env = env().await;
    let mut side = env.side().await;
    assert!(
        side.store
            .for_user(&env.alice)
            .has_unread_direct_thread()
            .expect("store"),
        "the demo org gives alice an unread GM thread"
    );
    lost_buffer_resync(&env, &mut side).await;
    let st = side.engine.user_status(&env.alice).expect("status");
    assert_eq!(
        st.last_resync_calls, 5,
        "teams/unread, the first team's channels (DM/GM signal), preferences, DM/GM memberships, DM/GM threads"
    );
    // Its DM/GM threads read (live): the thread list goes.
    read_direct_threads(&env, &mut side).await;
    lost_buffer_resync(&env, &mut side).await;
    let st = side.engine.user_status(&env.alice).expect("status");
    assert_eq!(
        st.last_resync_calls, 4,
        "teams/unread, the first team's channels (DM/GM signal), preferences, DM/GM memberships"
    );
    // Every DM/GM read (live): then the 3 fixed reads alone.
    read_every_direct(&env, &mut side).await;
    lost_buffer_resync(&env, &mut side).await;
    let st = side.engine.user_status(&env.alice).expect("status");
    assert_eq!(
        st.last_resync_calls, 3,
        "teams/unread, the first team's channels (DM/GM signal), preferences"
    );
}

const THREADS_ROUTE: &str = "/api/v4/users/{user_id}/teams/{team_id}/threads";

/// A followed thread (root id, someone other than alice in it) in each of the first `n` teams
/// that have one.
async fn followed_threads_in_teams(env: &Env, n: usize) -> Vec<(String, String, String)> {
    let c = env.alice_client();
    let mut teams = c.get_teams_for_user(ME).await.expect("teams");
    teams.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = Vec::new();
    for t in &teams {
        let list = c
            .get_user_threads(
                ME,
                &t.id,
                &UserThreadsQuery {
                    per_page: Some(5),
                    exclude_direct: true,
                    ..UserThreadsQuery::default()
                },
            )
            .await
            .expect("threads");
        let me = env.alice.as_str();
        let found = list.threads.iter().find_map(|th| {
            th.post
                .as_ref()
                .map(|p| p.user_id.clone())
                .filter(|u| u != me)
                .or_else(|| {
                    th.participants
                        .iter()
                        .map(|u| u.id.clone())
                        .find(|u| u != me)
                })
                .map(|author| (t.id.clone(), th.id.clone(), author))
        });
        out.extend(found);
        if out.len() == n {
            break;
        }
    }
    assert_eq!(out.len(), n, "the seed has followed threads in {n} teams");
    out
}

/// Live replies in two teams while connected, each applied to the store.
async fn live_replies(env: &Env, side: &mut Side, threads: &[(String, String, String)]) {
    let mut replies = Vec::new();
    for (_, root, author) in threads {
        let id = env.driver.reply(author, root, "live").expect("reply");
        replies.push((root.clone(), id));
    }
    let us = || side.store.for_user(&env.alice);
    until(&mut side.rx, "live replies applied", || {
        replies.iter().all(|(root, id)| {
            let post = us().post(id).ok().flatten();
            let thread = us().thread(root).ok().flatten();
            matches!((post, thread), (Some(p), Some(t)) if t.last_reply_at >= p.create_at)
        })
    })
    .await;
    // Let any trailing event of the same replies (thread_updated after posted) be applied.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// P-3 "k = 0 right after live activity": teams that had live activity (already applied) are
/// not re-read when nothing changed while the socket was down.
#[tokio::test]
async fn resync_after_live_activity_rereads_no_team() {
    let env = env().await;
    let mut side = env.side().await;
    read_direct_threads(&env, &mut side).await;
    let threads = followed_threads_in_teams(&env, 2).await;
    live_replies(&env, &mut side, &threads).await;
    assert_eq!(
        side.engine.user_status(&env.alice).map(|s| s.resyncs),
        Some(0)
    );

    env.running.sim.inner().metrics.reset();
    env.running.sim.lose_replay_buffers();
    assert!(env.running.sim.drop_all_websockets() > 0);
    wait(&mut side.rx, |x| {
        x.cause == Cause::Resync && x.key.is_none()
    })
    .await;
    let m = env.running.sim.inner().metrics.snapshot();
    let st = side.engine.user_status(&env.alice).expect("status");
    eprintln!(
        "resync right after live activity in 2 teams: {} calls: {:?}",
        st.last_resync_calls,
        m.routes.keys().collect::<Vec<_>>()
    );
    assert_eq!(m.requests_for("GET", THREADS_ROUTE), 0, "no team re-read");
    assert_eq!(
        st.last_resync_calls, 4,
        "teams/unread, the first team's channels (DM/GM signal), preferences, DM/GM memberships (alice has an unread DM)"
    );
}

/// Control: after live activity in two teams, a reply lost while the socket was down (an
/// outage, replay buffer lost) in one of them → exactly that team is read, and the store
/// converges.
#[tokio::test]
async fn resync_after_live_activity_rereads_only_the_team_changed_while_down() {
    let env = env().await;
    let mut side = env.side().await;
    read_direct_threads(&env, &mut side).await;
    let threads = followed_threads_in_teams(&env, 2).await;
    live_replies(&env, &mut side, &threads).await;

    env.running.sim.inner().metrics.reset();
    // Outage: sockets dropped and no reconnect for a while; the buffer is lost, so the reply
    // made now reaches alice only through the resync.
    env.running.sim.outage(Duration::from_millis(500));
    env.running.sim.lose_replay_buffers();
    let (_, root, author) = &threads[1];
    let before = side
        .store
        .for_user(&env.alice)
        .thread(root)
        .expect("read")
        .expect("thread")
        .last_reply_at;
    env.driver.reply(author, root, "while down").expect("reply");
    wait(&mut side.rx, |x| {
        x.cause == Cause::Resync && x.key.is_none()
    })
    .await;
    let m = env.running.sim.inner().metrics.snapshot();
    let st = side.engine.user_status(&env.alice).expect("status");
    eprintln!(
        "resync after live activity in 2 teams + 1 lost reply: {} calls",
        st.last_resync_calls
    );
    assert_eq!(
        m.requests_for("GET", THREADS_ROUTE),
        1,
        "only the changed team's threads"
    );
    // The one list read was that team's: the lost reply's thread moved in the store.
    let thread = side
        .store
        .for_user(&env.alice)
        .thread(root)
        .expect("read")
        .expect("thread");
    assert!(
        thread.last_reply_at > before,
        "lost reply reached the store"
    );
    let fresh = env.side().await;
    assert_eq!(
        snapshot(&side.store, &env.alice),
        snapshot(&fresh.store, &env.alice)
    );
}

/// P-1: the benchmark organisation (50 teams, 10,000 followed threads). Slow to seed; run with
/// `cargo test -p threaddesk --test sync_engine -- --ignored`.
#[tokio::test]
#[ignore = "large seed; run explicitly"]
async fn initial_sync_large_org_call_count() {
    let running = mmsim::start(
        mmsim::SimConfig {
            size: mmsim::seed::Size::Large,
            ..mmsim::SimConfig::default()
        },
        0,
    )
    .await
    .expect("sim");
    let base = Client::builder(&running.url).build().expect("client");
    let login = base
        .login(
            mmsim::seed::DEMO_USERNAME,
            &Secret::new(mmsim::seed::DEMO_PASSWORD),
        )
        .await
        .expect("login");
    let alice = UserId::parse(&login.user.id).expect("id");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let engine = SyncEngine::new(Arc::clone(&store), settings(), RateLimiter::unlimited(8));
    let mut rx = engine.subscribe();
    running.sim.inner().metrics.reset();
    let started = std::time::Instant::now();
    let client = Client::builder(&running.url)
        .request_gate(engine.request_gate())
        .request_timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    engine.start_user(&alice, client.with_token(login.token.expose().to_owned()));
    tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            if let Ok(c) = rx.recv().await
                && c.key.is_none()
                && c.cause == Cause::InitialSync
            {
                return;
            }
        }
    })
    .await
    .expect("initial sync");
    let st = engine.user_status(&alice).expect("status");
    let m = running.sim.inner().metrics.snapshot();
    let threads = store
        .for_user(&alice)
        .export()
        .expect("export")
        .threads
        .len();
    eprintln!(
        "large org: initial sync {} calls (queue complete), {} ms ({} ms store commit); total incl. backfill {}; {} threads; bytes {}",
        st.initial_sync_calls,
        st.initial_sync_ms,
        st.initial_sync_commit_ms,
        engine.calls_made(&alice).unwrap_or(0),
        threads,
        m.response_bytes
    );
    for (route, c) in &m.routes {
        eprintln!("  {route}: {}", c.requests);
    }
    eprintln!("wall {:?}", started.elapsed());
    // 6 fixed reads + 50 team thread lists (+1 page) + 10 DM/GM post reads + 1 profile batch
    // (POST /users/ids takes up to 1,000 ids) = 68 on the bench; the older DM/GM previews are
    // read after the queue is announced complete.
    assert!(
        st.initial_sync_calls <= 70,
        "{} calls",
        st.initial_sync_calls
    );

    // P-3: lost events, then k replies in followed threads of 3 teams → resync cost.
    let mut rx = engine.subscribe();
    let c = base.with_token(login.token.expose().to_owned());
    let teams = c.get_teams_for_user(ME).await.expect("teams");
    let driver = mmsim::driver::Driver::new(&running.sim);
    running.sim.lose_replay_buffers();
    running.sim.drop_websockets_of(alice.as_str());
    let mut k = 0;
    for t in teams.iter().take(3) {
        let list = c
            .get_user_threads(
                ME,
                &t.id,
                &UserThreadsQuery {
                    per_page: Some(5),
                    exclude_direct: true,
                    ..UserThreadsQuery::default()
                },
            )
            .await
            .expect("threads");
        for th in list.threads.iter().take(4) {
            let me = login.user.id.as_str();
            let author = th
                .post
                .as_ref()
                .map(|p| p.user_id.clone())
                .filter(|u| u != me)
                .or_else(|| {
                    th.participants
                        .iter()
                        .map(|u| u.id.clone())
                        .find(|u| u != me)
                });
            let Some(author) = author else { continue };
            if driver.reply(&author, &th.id, "while away").is_ok() {
                k += 1;
            }
        }
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if let Ok(c) = rx.recv().await
                && c.key.is_none()
                && c.cause == Cause::Resync
            {
                return;
            }
        }
    })
    .await
    .expect("resync");
    let st = engine.user_status(&alice).expect("status");
    eprintln!(
        "large org: resync after {k} replies in 3 teams: {} calls",
        st.last_resync_calls
    );
}

/// T-11/T-12: 5xx and a 429 storm during the initial sync: it completes, and nothing is sent
/// while the server asked us to wait.
#[tokio::test]
async fn initial_sync_survives_errors_and_rate_limits() {
    let env = env().await;
    let faults = &env.running.sim.inner().faults;
    faults.fail_next(3, 503);
    faults.rate_limit_storm(Duration::from_millis(1500));
    let side = env.side().await;
    assert!(!open_keys(&side.store, &env.alice).is_empty());
    let st = side.engine.status();
    assert!(
        st.rate_limit.rate_limited_total >= 1,
        "429 seen by the limiter"
    );
    let m = env.running.sim.inner().metrics.snapshot();
    // The storm answers every request with 429 until it ends. The first wave (6 parallel reads
    // + the WebSocket upgrade) is in flight when the first 429 arrives; after that the shared
    // limiter holds everyone until Retry-After, so at most one more probe meets the storm.
    assert!(
        m.status_count(429) <= 7 + 1,
        "{} requests hit the 429 storm",
        m.status_count(429)
    );
}

/// Alice's first team and the `n` newest followed threads of it that are not DM/GM threads,
/// as Mattermost lists them.
async fn team_threads(c: &Client, n: u32) -> (String, mattermost::models::Threads) {
    let team = c.get_teams_for_user(ME).await.expect("teams")[0].id.clone();
    let threads = c
        .get_user_threads(
            ME,
            &team,
            &UserThreadsQuery {
                per_page: Some(n),
                exclude_direct: true,
                ..UserThreadsQuery::default()
            },
        )
        .await
        .expect("threads");
    (team, threads)
}

fn all_sent(store: &Store, user: &UserId) -> bool {
    store.for_user(user).outbox_rows(None).is_ok_and(|rows| {
        rows.iter()
            .all(|r| r.state == threaddesk::store::OutboxState::Sent)
    })
}

/// Every action kind reaches Mattermost through the outbox.
#[tokio::test]
async fn every_action_reaches_mattermost() {
    let env = env().await;
    let mut side = env.side().await;
    let (engine, store, alice) = (&side.engine, Arc::clone(&side.store), env.alice.clone());
    let c = env.alice_client();
    let (team, threads) = team_threads(&c, 1).await;
    let root = threads.threads[0].id.clone();
    let tkey = ItemKey::thread(&root).expect("key");
    let reply = env.driver.reply("bob", &root, "news").expect("reply");
    until(&mut side.rx, "reply arrived", || {
        store.for_user(&alice).post(&reply).ok().flatten().is_some()
    })
    .await;

    // Thread read.
    engine
        .act(&alice, Action::MarkRead { key: tkey.clone() })
        .await
        .expect("read");
    until(&mut side.rx, "read sent", || all_sent(&store, &alice)).await;
    let t = c
        .get_user_thread(ME, &team, &root, false)
        .await
        .expect("thread");
    assert_eq!(t.unread_replies, 0);
    // Thread unread from the reply.
    engine
        .act(
            &alice,
            Action::MarkUnread {
                key: tkey.clone(),
                post_id: reply.clone(),
            },
        )
        .await
        .expect("unread");
    until(&mut side.rx, "unread sent", || all_sent(&store, &alice)).await;
    let t = c
        .get_user_thread(ME, &team, &root, false)
        .await
        .expect("thread");
    assert!(t.unread_replies > 0);
    // Reaction and saved post.
    engine
        .act(
            &alice,
            Action::React {
                post_id: reply.clone(),
                emoji_name: "tada".into(),
                add: true,
            },
        )
        .await
        .expect("react");
    engine
        .act(
            &alice,
            Action::Save {
                post_id: reply.clone(),
                saved: true,
            },
        )
        .await
        .expect("save");
    until(&mut side.rx, "react + save sent", || {
        all_sent(&store, &alice)
    })
    .await;
    let p = c.get_post(&reply).await.expect("post");
    assert!(
        p.has_reactions
            || p.metadata
                .as_ref()
                .is_some_and(|m| m.reactions.iter().any(|r| r.emoji_name == "tada"))
    );
    let prefs = c.get_preferences(ME).await.expect("prefs");
    assert!(
        prefs
            .iter()
            .any(|p| p.category == "flagged_post" && p.name == reply)
    );
    // Unfollow, then follow again.
    engine
        .act(
            &alice,
            Action::Unfollow {
                root_id: root.clone(),
            },
        )
        .await
        .expect("unfollow");
    until(&mut side.rx, "unfollow sent", || all_sent(&store, &alice)).await;
    assert!(
        c.get_user_thread(ME, &team, &root, false)
            .await
            .is_err_and(|e| e.is_not_found())
    );
    engine
        .act(
            &alice,
            Action::Follow {
                root_id: root.clone(),
            },
        )
        .await
        .expect("follow");
    until(&mut side.rx, "follow sent", || all_sent(&store, &alice)).await;
    assert!(c.get_user_thread(ME, &team, &root, false).await.is_ok());
    // DM read (channel view, CRT-safe).
    let dm = env.driver.dm("carol", "alice", "hi").expect("dm");
    until(&mut side.rx, "dm arrived", || {
        store.for_user(&alice).post(&dm).ok().flatten().is_some()
    })
    .await;
    let dm_channel = store
        .for_user(&alice)
        .post(&dm)
        .expect("post")
        .expect("dm")
        .channel_id;
    engine
        .act(
            &alice,
            Action::MarkRead {
                key: ItemKey::channel(&dm_channel).expect("key"),
            },
        )
        .await
        .expect("dm read");
    until(&mut side.rx, "dm read sent", || all_sent(&store, &alice)).await;
    let ch = c.get_channel(&dm_channel).await.expect("channel");
    let member = c.get_channel_member(&dm_channel, ME).await.expect("member");
    assert_eq!(ch.unread_count(&member, true), 0);
    assert_eq!(member.mention_count, 0);
    // Nothing failed, nothing is pending.
    assert!(
        store
            .for_user(&alice)
            .outbox_rows(None)
            .expect("rows")
            .iter()
            .all(|r| r.last_error.is_none() || r.state == threaddesk::store::OutboxState::Sent)
    );
}

/// Mark unread is shown at once, like every other triage action: the store moves the read
/// point before Mattermost has answered (here it cannot: it is down), so the queue and a
/// reload show the item unread instead of flipping back to read until the echo arrives. Once
/// delivered, the echoed counts agree with the server's, for a thread and for a DM.
#[tokio::test]
async fn mark_unread_shows_at_once_and_agrees_with_mattermost_after_delivery() {
    let env = env().await;
    let mut side = env.side().await;
    let (engine, store, alice) = (&side.engine, Arc::clone(&side.store), env.alice.clone());
    let us = || store.for_user(&alice);
    let c = env.alice_client();
    let (team, threads) = team_threads(&c, 1).await;
    let root = threads.threads[0].id.clone();
    let tkey = ItemKey::thread(&root).expect("key");
    let first = env.driver.reply("bob", &root, "one").expect("reply");
    let second = env.driver.reply("bob", &root, "two").expect("reply");
    let dm1 = env.driver.dm("carol", "alice", "first").expect("dm");
    let dm2 = env.driver.dm("carol", "alice", "second").expect("dm");
    until(&mut side.rx, "replies and DMs cached", || {
        [&first, &second, &dm1, &dm2]
            .iter()
            .all(|p| us().post(p).ok().flatten().is_some())
    })
    .await;
    let dm_channel = us().post(&dm1).expect("post").expect("dm").channel_id;
    let dkey = ItemKey::channel(&dm_channel).expect("key");
    for key in [&tkey, &dkey] {
        engine
            .act(&alice, Action::MarkRead { key: key.clone() })
            .await
            .expect("read");
    }
    until(&mut side.rx, "both read in Mattermost", || {
        all_sent(&store, &alice)
    })
    .await;
    let unread = |key: &ItemKey| {
        us().item(key, 5)
            .expect("item")
            .expect("present")
            .row
            .counts
            .unread
    };
    until(&mut side.rx, "both read here", || {
        unread(&tkey) == 0 && unread(&dkey) == 0
    })
    .await;

    env.running.sim.outage(Duration::from_millis(1500));
    engine
        .act(
            &alice,
            Action::MarkUnread {
                key: tkey.clone(),
                post_id: first.clone(),
            },
        )
        .await
        .expect("thread unread");
    engine
        .act(
            &alice,
            Action::MarkUnread {
                key: dkey.clone(),
                post_id: dm2.clone(),
            },
        )
        .await
        .expect("dm unread");
    // Nothing has reached Mattermost yet.
    assert!(!all_sent(&store, &alice));
    assert_eq!(unread(&tkey), 2, "both replies from the first one on");
    assert_eq!(unread(&dkey), 1, "the second DM");

    until(&mut side.rx, "delivered", || all_sent(&store, &alice)).await;
    let t = c
        .get_user_thread(ME, &team, &root, false)
        .await
        .expect("thread");
    assert_eq!(t.unread_replies, 2);
    let ch = c.get_channel(&dm_channel).await.expect("channel");
    let member = c.get_channel_member(&dm_channel, ME).await.expect("member");
    assert_eq!(ch.unread_count(&member, true), 1);
    // The echo (or nothing) leaves the same counts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(unread(&tkey), t.unread_replies);
    assert_eq!(unread(&dkey), ch.unread_count(&member, true));
}

/// T-1 (small): replies typed during an outage are all delivered once it ends, none twice.
#[tokio::test]
async fn replies_during_an_outage_are_delivered_once() {
    let env = env().await;
    let mut side = env.side().await;
    let c = env.alice_client();
    let (_, threads) = team_threads(&c, 1).await;
    let root = threads.threads[0].clone();
    let channel_id = root.post.as_ref().expect("root").channel_id.clone();
    env.running.sim.outage(Duration::from_millis(2500));
    for i in 0..5 {
        side.engine
            .act(
                &env.alice,
                Action::Reply {
                    channel_id: channel_id.clone(),
                    root_id: root.id.clone(),
                    message: threaddesk::store::MessageText::new(format!("during outage {i}")),
                },
            )
            .await
            .expect("recorded while Mattermost is down");
    }
    let store = Arc::clone(&side.store);
    until(&mut side.rx, "all delivered", || {
        all_sent(&store, &env.alice)
    })
    .await;
    let thread = c
        .get_post_thread(&root.id, &mattermost::PostThreadQuery::default())
        .await
        .expect("thread");
    let ours = thread
        .posts
        .values()
        .filter(|p| {
            p.props
                .0
                .contains_key(threaddesk::sync::outbox::MARKER_PROP)
        })
        .count();
    assert_eq!(ours, 5, "5 replies, 0 lost, 0 duplicated");
}

/// P-12 (small): many users on one engine behind a shared rate limit; the server restarts
/// (every socket dropped, every replay buffer lost). Everyone resyncs at fixed cost, within
/// the budget.
#[tokio::test]
async fn reconnect_storm_many_users_shared_budget() {
    let env = env().await;
    let names = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let limiter = RateLimiter::new(threaddesk::sync::ratelimit::LimiterSettings {
        requests_per_second: 200.0,
        burst: 20,
        max_concurrency: 8,
    });
    let engine = SyncEngine::new(Arc::clone(&store), settings(), limiter);
    let mut rx = engine.subscribe();
    let base = Client::builder(&env.running.url)
        .request_gate(engine.request_gate())
        .build()
        .expect("client");
    let mut users = Vec::new();
    for n in names {
        let login = env
            .base
            .login(n, &Secret::new(mmsim::seed::DEMO_PASSWORD))
            .await
            .expect("login");
        let id = UserId::parse(&login.user.id).expect("id");
        engine.start_user(&id, base.with_token(login.token.expose().to_owned()));
        users.push(id);
    }
    let mut synced = std::collections::HashSet::new();
    while synced.len() < users.len() {
        let c = wait(&mut rx, |c| {
            c.key.is_none() && c.cause == Cause::InitialSync
        })
        .await;
        synced.insert(c.user_id);
    }
    env.running.sim.inner().metrics.reset();
    env.running.sim.lose_replay_buffers();
    assert!(env.running.sim.drop_all_websockets() >= users.len());
    let mut resynced = std::collections::HashSet::new();
    while resynced.len() < users.len() {
        let c = wait(&mut rx, |c| c.key.is_none() && c.cause == Cause::Resync).await;
        resynced.insert(c.user_id);
    }
    let m = env.running.sim.inner().metrics.snapshot();
    let rest: u64 = m
        .routes
        .iter()
        .filter(|(k, _)| !k.contains("/websocket"))
        .map(|(_, c)| c.requests)
        .sum();
    eprintln!("reconnect storm: {} users, {rest} REST calls", users.len());
    // Nothing changed: 3 fixed reads per user, +1 (DM/GM memberships) for a user whose store
    // shows an unread DM/GM.
    let n = users.len() as u64;
    assert!(
        (3 * n..=4 * n).contains(&rest),
        "{rest} calls for {n} users"
    );
    let st = engine.status();
    assert_eq!(st.users.len(), users.len());
    assert!(
        st.users
            .iter()
            .all(|u| u.phase == Phase::Live && u.resyncs == 1)
    );
}

/// Events lost while `change` runs: an outage drops alice's socket and refuses reconnects for
/// a while, and the server loses its replay buffers, so the change reaches the engine only
/// through a resync. Returns that resync's REST calls.
async fn changed_while_down(env: &Env, side: &mut Side, change: impl FnOnce()) -> u64 {
    env.running.sim.outage(Duration::from_millis(400));
    env.running.sim.lose_replay_buffers();
    change();
    wait(&mut side.rx, |x| {
        x.cause == Cause::Resync && x.key.is_none()
    })
    .await;
    let st = side.engine.user_status(&env.alice).expect("status");
    assert_eq!(st.phase, Phase::Live);
    st.last_resync_calls
}

/// A followed thread of alice's that is unread, in a team channel: (team, root, channel).
fn unread_team_thread(store: &Store, user: &UserId) -> (String, String, String) {
    let t = store
        .for_user(user)
        .threads()
        .expect("threads")
        .into_iter()
        .find(|t| t.following && t.delete_at == 0 && !t.team_id.is_empty() && t.unread_replies > 0)
        .expect("the demo org has an unread followed thread");
    (t.team_id, t.root_id, t.channel_id)
}

#[tokio::test]
async fn dm_received_while_down_converges() {
    let env = env().await;
    let mut side = env.side().await;
    read_direct_threads(&env, &mut side).await;
    let calls = changed_while_down(&env, &mut side, || {
        env.driver.dm("dave", "alice", "while down").expect("dm");
    })
    .await;
    eprintln!("resync after a DM while down: {calls} calls");
    let dm_fresh = side
        .store
        .for_user(&env.alice)
        .export()
        .expect("export")
        .items
        .iter()
        .any(|i| {
            i.kind == inbox::ItemKind::Direct
                && i.counts.unread > 0
                && i.last_activity_at > now() - 60_000
        });
    assert!(dm_fresh, "the DM is in the queue");
    // teams/unread, channels (200: the DM moved), preferences, the first team's memberships
    // (DM read state), the DM's posts — no thread list (a plain DM moves no thread).
    assert_eq!(calls, 5, "resync cost");
    let fresh = env.side().await;
    assert_eq!(
        snapshot(&side.store, &env.alice),
        snapshot(&fresh.store, &env.alice)
    );
}

/// P-12 for one user: one DM received while the socket was down and the server could not
/// replay (an outage with the replay buffers lost), nothing else changed, the store showing no
/// unread DM/GM before. The exact call list is the minimum the real API allows:
/// - `teams/unread`: the team counters (none moved: a DM is counted in no team);
/// - `preferences`: done/snooze marks and saved posts (no `since`, no ETag, no counter);
/// - the first team's channels with `If-None-Match`: the DM/GM signal (a `200` here, the DM's
///   `last_post_at` moved) and the DM's new channel row (totals, `last_post_at`);
/// - that team's channel memberships (all DM/GM memberships): the DM's read state and mention
///   count (a DM counts as a mention; it may also have been read on another device meanwhile);
/// - the DM's posts since the last sync (the message itself).
///
/// No thread list: the DM was not a thread reply, and no team counter moved.
#[tokio::test]
async fn dm_received_while_down_makes_exactly_the_minimum_calls() {
    let env = env().await;
    let mut side = env.side().await;
    read_every_direct(&env, &mut side).await;
    env.running.sim.inner().metrics.reset();
    let calls = changed_while_down(&env, &mut side, || {
        env.driver.dm("dave", "alice", "while down").expect("dm");
    })
    .await;
    let got = resync_calls(&env);
    eprintln!("resync after a DM while down: {calls} calls: {got:?}");
    let want: std::collections::BTreeMap<String, u64> = [
        "GET /api/v4/users/{user_id}/teams/unread",
        "GET /api/v4/users/{user_id}/preferences",
        "GET /api/v4/users/{user_id}/teams/{team_id}/channels",
        "GET /api/v4/users/{user_id}/teams/{team_id}/channels/members",
        "GET /api/v4/channels/{channel_id}/posts",
    ]
    .into_iter()
    .map(|r| (r.to_owned(), 1))
    .collect();
    assert_eq!(got, want);
    assert_eq!(calls, 5, "the engine's own count agrees");
    let dm_fresh = side
        .store
        .for_user(&env.alice)
        .export()
        .expect("export")
        .items
        .iter()
        .any(|i| {
            i.kind == inbox::ItemKind::Direct
                && i.counts.unread > 0
                && i.last_activity_at > now() - 60_000
        });
    assert!(dm_fresh, "the DM is in the queue");
    let fresh = env.side().await;
    assert_eq!(
        snapshot(&side.store, &env.alice),
        snapshot(&fresh.store, &env.alice)
    );
    // The membership rows too (the DM's mention count moved on the server).
    assert_eq!(
        memberships(&side.store, &env.alice),
        memberships(&fresh.store, &env.alice)
    );
}

fn memberships(store: &Store, user: &UserId) -> Vec<threaddesk::store::Membership> {
    let mut m = store.for_user(user).memberships().expect("memberships");
    m.sort_by(|a, b| a.channel_id.cmp(&b.channel_id));
    m
}

/// Why a moved DM costs a membership read: while down, a DM arrives **and** is read on another
/// device. The channel list shows the DM moved; only the membership says it was read (no
/// counter, no ETag, no event survives). The store showed no unread DM before, so nothing
/// else asks for the memberships.
#[tokio::test]
async fn dm_received_and_read_elsewhere_while_down_converges() {
    let env = env().await;
    let mut side = env.side().await;
    read_every_direct(&env, &mut side).await;
    let dave = env.driver.user_id("dave").expect("dave");
    let channel = env
        .alice_client()
        .get_channels_for_user(ME, &mattermost::ChannelsForUserQuery::default())
        .await
        .expect("channels")
        .into_iter()
        .find(|c| c.channel_type.as_str() == "D" && c.name.contains(&dave))
        .expect("alice has a DM with dave")
        .id;
    let key = ItemKey::channel(&channel).expect("key");
    env.running.sim.inner().metrics.reset();
    let calls = changed_while_down(&env, &mut side, || {
        env.driver.dm("dave", "alice", "while down").expect("dm");
        env.driver.view_channel("alice", &channel).expect("view");
    })
    .await;
    let got = resync_calls(&env);
    eprintln!("resync after a DM received and read elsewhere while down: {calls} calls: {got:?}");
    let item = side
        .store
        .for_user(&env.alice)
        .export()
        .expect("export")
        .items
        .into_iter()
        .find(|i| i.key == key)
        .expect("the DM item");
    assert!(
        item.last_activity_at > now() - 60_000,
        "the DM's new message is there"
    );
    assert_eq!(
        (item.counts.unread, item.counts.mentions),
        (0, 0),
        "read elsewhere: not unread"
    );
    let fresh = env.side().await;
    assert_eq!(
        snapshot(&side.store, &env.alice),
        snapshot(&fresh.store, &env.alice)
    );
    assert_eq!(
        memberships(&side.store, &env.alice),
        memberships(&fresh.store, &env.alice)
    );
    assert_eq!(calls, 5, "the same 5 calls as an unread DM");
}

/// A reply in a followed GM thread while down: the GM's posts show a reply, so the resync adds
/// the one thread list that carries DM/GM threads (the first team's, without `excludeDirect`)
/// and the thread converges.
#[tokio::test]
async fn dm_thread_reply_while_down_lists_direct_threads_and_converges() {
    let env = env().await;
    let mut side = env.side().await;
    let thread = side
        .store
        .for_user(&env.alice)
        .threads()
        .expect("threads")
        .into_iter()
        .find(|t| t.following && t.delete_at == 0 && t.team_id.is_empty())
        .expect("the demo org has a followed DM/GM thread");
    env.running.sim.inner().metrics.reset();
    let calls = changed_while_down(&env, &mut side, || {
        env.driver
            .reply("dave", &thread.root_id, "while down, in a GM thread")
            .expect("reply");
    })
    .await;
    let got = resync_calls(&env);
    eprintln!("resync after a GM thread reply while down: {calls} calls: {got:?}");
    assert_eq!(
        got.get("GET /api/v4/users/{user_id}/teams/{team_id}/threads"),
        Some(&1),
        "exactly the DM-carrying thread list"
    );
    assert_eq!(
        got.get("GET /api/v4/channels/{channel_id}/posts"),
        Some(&1),
        "the GM's posts"
    );
    let after = side
        .store
        .for_user(&env.alice)
        .thread(&thread.root_id)
        .expect("read")
        .expect("thread");
    assert!(
        after.last_reply_at > thread.last_reply_at && after.reply_count > thread.reply_count,
        "the lost reply reached the thread"
    );
    let fresh = env.side().await;
    assert_eq!(
        snapshot(&side.store, &env.alice),
        snapshot(&fresh.store, &env.alice)
    );
}

/// A DM from someone alice never had a DM with, while down: the channel set changed (new
/// channel row, new membership), the DM's posts are read, and no thread list is needed.
#[tokio::test]
async fn new_dm_channel_while_down_converges_without_a_thread_list() {
    let env = env().await;
    let mut side = env.side().await;
    read_direct_threads(&env, &mut side).await;
    let mallory = env.driver.user_id("mallory").expect("mallory");
    let before = side
        .store
        .for_user(&env.alice)
        .memberships()
        .expect("memberships")
        .len();
    env.running.sim.inner().metrics.reset();
    let calls = changed_while_down(&env, &mut side, || {
        env.driver
            .dm("mallory", "alice", "first message, while down")
            .expect("dm");
    })
    .await;
    let got = resync_calls(&env);
    eprintln!("resync after a new DM channel while down: {calls} calls: {got:?}");
    assert_eq!(
        got.get("GET /api/v4/users/{user_id}/teams/{team_id}/threads"),
        None,
        "no thread list for a plain DM"
    );
    let us = side.store.for_user(&env.alice);
    assert_eq!(
        us.memberships().expect("memberships").len(),
        before + 1,
        "the new DM's membership"
    );
    let dm = us
        .export()
        .expect("export")
        .items
        .into_iter()
        .find(|i| i.kind == inbox::ItemKind::Direct && i.last_activity_at > now() - 60_000)
        .expect("the new DM is in the queue");
    assert!(dm.counts.unread > 0, "unread");
    assert!(
        us.profiles(&[mallory.as_str()])
            .map(|p| !p.is_empty())
            .unwrap_or(false),
        "the sender's profile is known"
    );
    let fresh = env.side().await;
    assert_eq!(
        snapshot(&side.store, &env.alice),
        snapshot(&fresh.store, &env.alice)
    );
}

#[tokio::test]
async fn done_and_snooze_from_another_device_while_down_converge() {
    let env = env().await;
    let mut side = env.side().await;
    read_direct_threads(&env, &mut side).await;
    let open = open_keys(&side.store, &env.alice);
    assert!(open.len() >= 2, "the demo queue has items");
    let (done_key, snooze_key) = (open[0].to_string(), open[1].to_string());
    let done_at = now();
    let until_ms = now() + 3_600_000;
    let calls = changed_while_down(&env, &mut side, || {
        env.driver
            .set_preferences(
                "alice",
                &[
                    (inbox::DONE_CATEGORY, &done_key, &done_at.to_string()),
                    (inbox::SNOOZE_CATEGORY, &snooze_key, &until_ms.to_string()),
                ],
            )
            .expect("prefs");
    })
    .await;
    assert_eq!(
        calls, 4,
        "nothing but marks changed: the fixed reads (+ DM/GM memberships: alice has an unread DM)"
    );
    let marks = side.store.for_user(&env.alice).marks().expect("marks");
    assert_eq!(marks.get(&open[0]).and_then(|m| m.done_at), Some(done_at));
    assert_eq!(
        marks.get(&open[1]).and_then(|m| m.snoozed_until),
        Some(until_ms)
    );
    let now_open = open_keys(&side.store, &env.alice);
    assert!(!now_open.contains(&open[0]) && !now_open.contains(&open[1]));
    // And back: both cleared from another device while down again.
    changed_while_down(&env, &mut side, || {
        env.driver
            .delete_preferences(
                "alice",
                &[
                    (inbox::DONE_CATEGORY, &done_key),
                    (inbox::SNOOZE_CATEGORY, &snooze_key),
                ],
            )
            .expect("prefs");
    })
    .await;
    let now_open = open_keys(&side.store, &env.alice);
    assert!(now_open.contains(&open[0]) && now_open.contains(&open[1]));
    let fresh = env.side().await;
    assert_eq!(
        snapshot(&side.store, &env.alice),
        snapshot(&fresh.store, &env.alice)
    );
}

#[tokio::test]
async fn channel_membership_removed_while_down_converges() {
    let env = env().await;
    let mut side = env.side().await;
    let (_, root, channel) = unread_team_thread(&side.store, &env.alice);
    let key = ItemKey::thread(&root).expect("key");
    assert!(open_keys(&side.store, &env.alice).contains(&key));
    let calls = changed_while_down(&env, &mut side, || {
        env.driver.remove_member(&channel, "alice").expect("remove");
    })
    .await;
    eprintln!("resync after a removal while down: {calls} calls");
    let us = side.store.for_user(&env.alice);
    assert!(
        us.memberships()
            .expect("memberships")
            .iter()
            .all(|m| m.channel_id != channel),
        "membership gone"
    );
    assert!(
        !open_keys(&side.store, &env.alice).contains(&key),
        "the channel's thread left the queue"
    );
    let fresh = env.side().await;
    assert_eq!(
        open_keys(&side.store, &env.alice),
        open_keys(&fresh.store, &env.alice)
    );
}

#[tokio::test]
async fn thread_unfollowed_while_down_is_unfollowed_after_resync() {
    let env = env().await;
    let mut side = env.side().await;
    let (_, root, _) = unread_team_thread(&side.store, &env.alice);
    let key = ItemKey::thread(&root).expect("key");
    assert!(open_keys(&side.store, &env.alice).contains(&key));
    let calls = changed_while_down(&env, &mut side, || {
        env.driver
            .set_following("alice", &root, false)
            .expect("unfollow");
    })
    .await;
    eprintln!("resync after an unfollow while down: {calls} calls");
    let t = side
        .store
        .for_user(&env.alice)
        .thread(&root)
        .expect("read")
        .expect("thread row");
    assert!(!t.following, "unfollowed elsewhere");
    assert!(!open_keys(&side.store, &env.alice).contains(&key));
    let fresh = env.side().await;
    assert_eq!(
        open_keys(&side.store, &env.alice),
        open_keys(&fresh.store, &env.alice)
    );
}

#[tokio::test]
async fn saved_posts_are_stored_and_kept_live() {
    let env = env().await;
    let mut side = env.side().await;
    // The demo seed saves one post for alice.
    let seeded = side
        .store
        .for_user(&env.alice)
        .saved_posts()
        .expect("saved");
    assert_eq!(seeded.len(), 1, "initial sync stores the seeded saved post");
    let (_, root, _) = unread_team_thread(&side.store, &env.alice);
    // Saved from another device (live event), then un-saved.
    env.driver
        .set_preferences("alice", &[("flagged_post", &root, "true")])
        .expect("save");
    let us = || side.store.for_user(&env.alice);
    until(&mut side.rx, "saved live", || {
        us().saved_posts().is_ok_and(|s| s.contains(&root))
    })
    .await;
    env.driver
        .delete_preferences("alice", &[("flagged_post", &root)])
        .expect("unsave");
    until(&mut side.rx, "unsaved live", || {
        us().saved_posts().is_ok_and(|s| !s.contains(&root))
    })
    .await;
    // Saved while events were lost: the resync's preference read brings it.
    changed_while_down(&env, &mut side, || {
        env.driver
            .set_preferences("alice", &[("flagged_post", &root, "true")])
            .expect("save");
    })
    .await;
    assert!(
        side.store
            .for_user(&env.alice)
            .saved_posts()
            .expect("saved")
            .contains(&root)
    );
    // Our own save action shows at once (optimistic) and reaches Mattermost.
    let (_, other, _) = {
        let threads = side.store.for_user(&env.alice).threads().expect("threads");
        let t = threads
            .into_iter()
            .find(|t| t.following && t.root_id != root && !t.team_id.is_empty())
            .expect("another thread");
        (t.team_id, t.root_id, t.channel_id)
    };
    side.engine
        .act(
            &env.alice,
            Action::Save {
                post_id: other.clone(),
                saved: true,
            },
        )
        .await
        .expect("save");
    assert!(
        side.store
            .for_user(&env.alice)
            .saved_posts()
            .expect("saved")
            .contains(&other)
    );
    until(&mut side.rx, "save delivered", || {
        all_sent(&side.store, &env.alice)
    })
    .await;
    let prefs = env.alice_client().get_preferences(ME).await.expect("prefs");
    assert!(
        prefs
            .iter()
            .any(|p| p.category == "flagged_post" && p.name == other)
    );
}

/// Poll `cond` every 20 ms (for state that changes without an item-changed notice).
async fn poll_until(what: &str, cond: impl Fn() -> bool) {
    let r = tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "timed out waiting for: {what}");
}

/// A ThreadDesk restart against the same (intact) store: `lose_buffer` false → the WebSocket
/// resumes from the saved position and the server replays what was missed (0 REST calls);
/// true → the server cannot replay, one incremental resync. Never an initial sync, never a
/// thread list when nothing changed in a team.
async fn restart_case(lose_buffer: bool) {
    let env = env().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let mut side = env.side_with(dir, Arc::clone(&store)).await;
    read_direct_threads(&env, &mut side).await;
    // The position is saved once the first connection is processed, and moves with events.
    let us = || store.for_user(&env.alice);
    let mut rx = side.engine.subscribe();
    poll_until("position saved", || {
        us().sync_state()
            .is_ok_and(|s| !s.ws_connection_id.is_empty())
    })
    .await;
    let dm_live = env.driver.dm("dave", "alice", "live").expect("dm");
    until(&mut rx, "live DM applied", || {
        us().post(&dm_live).ok().flatten().is_some()
    })
    .await;
    let seq_before = us().sync_state().expect("state").ws_next_seq;
    assert!(seq_before > 1, "the position moved with the applied events");
    side.engine.stop_user(&env.alice).await;
    drop(side.engine);

    // While ThreadDesk is down: a DM arrives.
    let dm_down = env.driver.dm("dave", "alice", "while down").expect("dm");
    if lose_buffer {
        env.running.sim.lose_replay_buffers();
    }
    env.running.sim.inner().metrics.reset();
    let engine = SyncEngine::new(Arc::clone(&store), settings(), RateLimiter::unlimited(8));
    let mut rx = engine.subscribe();
    let client = Client::builder(&env.running.url)
        .request_gate(engine.request_gate())
        .build()
        .expect("client");
    engine.start_user(&env.alice, client.with_token(env.token.clone()));
    if lose_buffer {
        wait(&mut rx, |x| x.cause == Cause::Resync && x.key.is_none()).await;
    }
    until(&mut rx, "the DM sent while down arrives", || {
        us().post(&dm_down).ok().flatten().is_some()
    })
    .await;
    let st = engine.user_status(&env.alice).expect("status");
    let m = env.running.sim.inner().metrics.snapshot();
    let rest: u64 = m
        .routes
        .iter()
        .filter(|(k, _)| !k.contains("/websocket"))
        .map(|(_, c)| c.requests)
        .sum();
    eprintln!(
        "restart (lose_buffer={lose_buffer}): {rest} REST calls: {:?}",
        m.routes.keys().collect::<Vec<_>>()
    );
    assert_eq!(st.initial_sync_calls, 0, "no initial sync after a restart");
    assert_eq!(
        m.requests_for("GET", THREADS_ROUTE),
        0,
        "no thread list: a plain DM moves no thread, through a replay or a resync"
    );
    if lose_buffer {
        assert_eq!(st.resyncs, 1);
    } else {
        assert_eq!(rest, 0, "the replay brought everything");
        assert_eq!(st.resyncs, 0);
    }
    let fresh = env.side().await;
    assert_eq!(
        snapshot(&store, &env.alice),
        snapshot(&fresh.store, &env.alice)
    );
}

#[tokio::test]
async fn restart_resumes_the_websocket_without_any_rest_call() {
    restart_case(false).await;
}

#[tokio::test]
async fn restart_without_replay_runs_an_incremental_resync_not_an_initial_sync() {
    restart_case(true).await;
}

#[tokio::test]
async fn dm_read_on_another_device_while_down_converges() {
    let env = env().await;
    let mut side = env.side().await;
    read_direct_threads(&env, &mut side).await;
    let unread_dm = side
        .store
        .for_user(&env.alice)
        .export()
        .expect("export")
        .items
        .into_iter()
        .find(|i| i.kind == inbox::ItemKind::Direct && i.counts.unread > 0)
        .expect("the demo org has an unread DM");
    let key = unread_dm.key.clone();
    let ItemKey::Channel(channel) = &key else {
        panic!("a DM item is keyed by its channel");
    };
    let calls = changed_while_down(&env, &mut side, || {
        env.driver.view_channel("alice", channel).expect("view");
    })
    .await;
    eprintln!("resync after a DM read elsewhere while down: {calls} calls");
    let item = side
        .store
        .for_user(&env.alice)
        .export()
        .expect("export")
        .items
        .into_iter()
        .find(|i| i.key == key)
        .expect("item");
    assert_eq!(item.counts.unread, 0, "read elsewhere: no longer unread");
    // The fixed reads + the DM memberships (the store showed an unread DM).
    assert_eq!(calls, 4);
    let fresh = env.side().await;
    assert_eq!(
        snapshot(&side.store, &env.alice),
        snapshot(&fresh.store, &env.alice)
    );
}

/// A DM/GM thread read on another device while events were lost moves no team counter, no
/// channel and no membership; while the store shows it unread, the resync lists the DM/GM
/// threads (one call more) and the thread is read, as a fresh sync would show it.
#[tokio::test]
async fn dm_thread_read_on_another_device_while_down_converges() {
    let env = env().await;
    let mut side = env.side().await;
    read_every_direct(&env, &mut side).await;
    let thread = side
        .store
        .for_user(&env.alice)
        .threads()
        .expect("threads")
        .into_iter()
        .find(|t| t.following && t.delete_at == 0 && t.team_id.is_empty())
        .expect("the demo org has a followed DM/GM thread");
    // A live reply makes it unread (dave is in alice's GM).
    env.driver
        .reply("dave", &thread.root_id, "unread for alice")
        .expect("reply");
    let store = Arc::clone(&side.store);
    let us = || store.for_user(&env.alice);
    until(&mut side.rx, "the GM thread unread", || {
        us().has_unread_direct_thread().unwrap_or(false)
    })
    .await;
    env.running.sim.inner().metrics.reset();
    let calls = changed_while_down(&env, &mut side, || {
        env.driver
            .read_thread("alice", &thread.root_id)
            .expect("read thread");
    })
    .await;
    let got = resync_calls(&env);
    eprintln!("resync after a GM thread read elsewhere while down: {calls} calls: {got:?}");
    let after = us().thread(&thread.root_id).expect("read").expect("thread");
    assert_eq!(
        (after.unread_replies, after.unread_mentions),
        (0, 0),
        "read elsewhere: no longer unread"
    );
    assert!(!us().has_unread_direct_thread().expect("store"));
    assert_eq!(
        got.get("GET /api/v4/users/{user_id}/teams/{team_id}/threads"),
        Some(&1),
        "exactly the DM-carrying thread list"
    );
    // The 3 fixed reads and that list: no DM/GM moved, none is unread.
    assert_eq!(calls, 4);
    let fresh = env.side().await;
    assert_eq!(
        snapshot(&side.store, &env.alice),
        snapshot(&fresh.store, &env.alice)
    );
}

/// A read thread unfollowed on another device while events were lost moves no counter, so the
/// incremental resync cannot see it; the periodic full sync corrects it.
#[tokio::test]
async fn periodic_full_sync_corrects_what_no_resync_can_see() {
    let env = env().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let mut fast = settings();
    fast.full_sync_every = Duration::from_secs(3);
    let mut side = env.side_with_settings(dir, store, fast).await;
    let read = side
        .store
        .for_user(&env.alice)
        .threads()
        .expect("threads")
        .into_iter()
        .find(|t| t.following && t.delete_at == 0 && !t.team_id.is_empty() && t.unread_replies == 0)
        .expect("the demo org has a read followed thread");
    changed_while_down(&env, &mut side, || {
        env.driver
            .set_following("alice", &read.root_id, false)
            .expect("unfollow");
    })
    .await;
    let following = |side: &Side| {
        side.store
            .for_user(&env.alice)
            .thread(&read.root_id)
            .expect("read")
            .is_some_and(|t| t.following)
    };
    let before = side
        .engine
        .user_status(&env.alice)
        .expect("status")
        .periodic_full_syncs;
    // A periodic full sync completes after the change (under load the reconnect itself may
    // take a while: wait for the sync, not for a fixed time), and the unfollow is applied.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = side.engine.user_status(&env.alice).expect("status");
        if st.periodic_full_syncs > before && !following(&side) {
            assert_eq!(st.phase, Phase::Live);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the periodic full sync never corrected the unfollow (full syncs {} → {}, following {})",
            before,
            st.periodic_full_syncs,
            following(&side)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Equal to a fresh sync (a later periodic sync may be running: compare until equal).
    let fresh = env.side().await;
    let want = open_keys(&fresh.store, &env.alice);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while open_keys(&side.store, &env.alice) != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store differs from a fresh sync: {:?} vs {:?}",
            open_keys(&side.store, &env.alice),
            want
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An action Mattermost refuses does not leave its optimistic change behind: the store reads
/// Mattermost's value back, the failed row stays (with its reason) until the user retries it —
/// then it is shown and delivered again — or discards it, which reads Mattermost's value back
/// too (here after the first read-back also failed). Retrying what did not fail, or an action
/// of another item, is refused.
#[tokio::test]
async fn a_refused_action_shows_mattermosts_state_again_until_retried_or_discarded() {
    use threaddesk::store::OutboxState;
    use threaddesk::sync::OutboxActionError;
    let env = env().await;
    let mut side = env.side().await;
    let (engine, store, alice) = (&side.engine, Arc::clone(&side.store), env.alice.clone());
    let us = || store.for_user(&alice);
    let c = env.alice_client();
    let (team, threads) = team_threads(&c, 1).await;
    let root = threads.threads[0].id.clone();
    let key = ItemKey::thread(&root).expect("key");
    let news = env.driver.reply("bob", &root, "news").expect("reply");
    let row = || us().item(&key, 5).expect("item").expect("present").row;
    until(&mut side.rx, "the reply cached, unread", || {
        us().post(&news).ok().flatten().is_some() && row().counts.unread > 0
    })
    .await;
    let unread_before = row().counts.unread;
    let failed = || -> Vec<threaddesk::store::OutboxRow> {
        us().undelivered(&key)
            .expect("undelivered")
            .into_iter()
            .filter(|r| r.state == OutboxState::Failed)
            .collect()
    };
    let faults = &env.running.sim.inner().faults;

    // 1. Mark read, refused (403): the item is unread again, as in Mattermost.
    faults.set_error_route_prefix(Some(&format!(
        "/api/v4/users/me/teams/{team}/threads/{root}/read/"
    )));
    faults.fail_next(1, 403);
    engine
        .act(&alice, Action::MarkRead { key: key.clone() })
        .await
        .expect("read");
    until(&mut side.rx, "the read refused and read back", || {
        failed().len() == 1 && row().counts.unread == unread_before
    })
    .await;
    let read_row = failed().remove(0);
    assert!(
        read_row
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("403")),
        "the reason is kept: {:?}",
        read_row.last_error
    );
    let mm_thread = c
        .get_user_thread(ME, &team, &root, false)
        .await
        .expect("thread");
    assert_eq!(
        mm_thread.unread_replies, unread_before,
        "Mattermost has it unread"
    );

    // Only a failed row can be retried; only the item's own rows are found.
    let other =
        ItemKey::thread(&threads.threads[0].post.as_ref().expect("root").channel_id).expect("key");
    assert!(matches!(
        engine.retry(&alice, &other, read_row.id).await,
        Err(OutboxActionError::NotFound)
    ));
    assert!(matches!(
        engine.discard(&alice, &key, read_row.id + 1000).await,
        Err(OutboxActionError::NotFound)
    ));

    // 2. Retry: shown read at once, delivered this time.
    engine
        .retry(&alice, &key, read_row.id)
        .await
        .expect("retry");
    assert_eq!(row().counts.unread, 0, "shown read again at once");
    until(&mut side.rx, "the retry delivered", || {
        all_sent(&store, &alice)
    })
    .await;
    let mm_thread = c
        .get_user_thread(ME, &team, &root, false)
        .await
        .expect("thread");
    assert_eq!(mm_thread.unread_replies, 0, "Mattermost has it read");
    assert!(matches!(
        engine.retry(&alice, &key, read_row.id).await,
        Err(OutboxActionError::WrongState(_))
    ));

    // 3. Done, refused, and the read-back fails too (Mattermost answers 403 twice): the
    //    optimistic mark is all the store has until the user discards the action.
    faults.set_error_route_prefix(Some(&format!(
        "/api/v4/users/{}/preferences",
        alice.as_str()
    )));
    faults.fail_next(2, 403);
    engine
        .act(
            &alice,
            Action::Done {
                key: key.clone(),
                at: now(),
            },
        )
        .await
        .expect("done");
    until(&mut side.rx, "the done refused", || failed().len() == 1).await;
    let done_row = failed().remove(0);
    assert!(
        row().done_at.is_some(),
        "the read-back failed: still shown done"
    );
    engine
        .discard(&alice, &key, done_row.id)
        .await
        .expect("discard");
    assert!(
        us().undelivered(&key).expect("undelivered").is_empty(),
        "the row is gone"
    );
    assert!(
        row().done_at.is_none(),
        "Mattermost's value is back: not done"
    );
    let prefs = c
        .get_preferences_by_category(ME, inbox::prefs::DONE_CATEGORY)
        .await
        .expect("prefs");
    assert!(
        prefs.is_empty(),
        "nothing was written to Mattermost: {prefs:?}"
    );
    faults.set_error_route_prefix(None);
}

/// A selection's actions are recorded together: all of them (in order, each shown at once and
/// delivered), or none when one is malformed.
#[tokio::test]
async fn actions_recorded_together_are_all_or_none() {
    let env = env().await;
    let mut side = env.side().await;
    let c = env.alice_client();
    team_threads(&c, 3).await;
    let keys: Vec<ItemKey> = open_keys(&side.store, &env.alice)
        .into_iter()
        .take(3)
        .collect();
    assert_eq!(keys.len(), 3, "three open items");
    let at = now();
    let done = |k: &ItemKey| Action::Done { key: k.clone(), at };
    // One malformed action (a bad post id): nothing is recorded, nothing changes.
    let mut bad: Vec<Action> = keys.iter().map(done).collect();
    bad.push(Action::MarkUnread {
        key: keys[0].clone(),
        post_id: "not-an-id".into(),
    });
    assert!(side.engine.act_all(&env.alice, bad).await.is_err());
    let us = side.store.for_user(&env.alice);
    assert!(us.outbox_rows(None).expect("rows").is_empty());
    assert!(us.marks().expect("marks").is_empty());
    // Well-formed: one ack per action, in order; every item done at once, then delivered.
    let acks = side
        .engine
        .act_all(&env.alice, keys.iter().map(done).collect())
        .await
        .expect("recorded");
    assert_eq!(
        acks.iter()
            .map(|a| a.key.clone().expect("key"))
            .collect::<Vec<_>>(),
        keys
    );
    assert!(acks.windows(2).all(|w| w[0].outbox_id < w[1].outbox_id));
    let marks = us.marks().expect("marks");
    assert!(
        keys.iter()
            .all(|k| marks.get(k).and_then(|m| m.done_at) == Some(at))
    );
    until(&mut side.rx, "all delivered", || {
        us.outbox_rows(None).is_ok_and(|rows| {
            rows.len() == 3
                && rows
                    .iter()
                    .all(|r| r.state == threaddesk::store::OutboxState::Sent)
        })
    })
    .await;
}

/// A saved search is a Mattermost preference: it survives a new store (a reinstall, another
/// instance), and forgetting it removes it there too.
#[tokio::test]
async fn saved_searches_survive_a_new_store() {
    use threaddesk::inbox::searches::SavedSearch;
    let env = env().await;
    let side = env.side().await;
    let search = SavedSearch::new("Roadmap", "roadmap -draft", "all", "").expect("valid");
    side.engine
        .save_search(&env.alice, search.clone())
        .await
        .expect("saved");
    assert_eq!(
        side.store
            .for_user(&env.alice)
            .saved_searches()
            .expect("read"),
        std::slice::from_ref(&search)
    );
    let fresh = env.side().await;
    assert_eq!(
        fresh
            .store
            .for_user(&env.alice)
            .saved_searches()
            .expect("read"),
        std::slice::from_ref(&search),
        "read back from Mattermost by the full sync"
    );
    fresh
        .engine
        .forget_search(&env.alice, &search.name)
        .await
        .expect("forgotten");
    let again = env.side().await;
    assert!(
        again
            .store
            .for_user(&env.alice)
            .saved_searches()
            .expect("read")
            .is_empty()
    );
}
