//! REST client against mmsim over loopback.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use mattermost::models::Preference;
use mattermost::{
    ChannelPostsQuery, ChannelsForUserQuery, Client, Error, ME, NewPost, PostPatch,
    PostThreadQuery, RequestGate, Secret, UserThreadsQuery,
};

#[tokio::test]
async fn users_teams_channels_members() {
    let env = common::env().await;
    let c = &env.alice;

    let me = c.get_me().await.unwrap();
    assert_eq!(me.username, "alice");
    assert_eq!(me.id, env.alice_id);
    assert_eq!(c.get_user(&me.id).await.unwrap().id, me.id);

    let teams = c.get_teams_for_user(ME).await.unwrap();
    assert!(teams.iter().any(|t| t.name == "engineering"), "{teams:?}");
    let members = c.get_team_members_for_user(ME).await.unwrap();
    assert_eq!(members.len(), teams.len());

    let unread = c.get_teams_unread(ME, true).await.unwrap();
    assert_eq!(unread.len(), teams.len());

    let channels = c
        .get_channels_for_user(ME, &ChannelsForUserQuery::default())
        .await
        .unwrap();
    assert!(channels.iter().any(|c| c.channel_type.is_direct_or_group()));
    assert!(channels.iter().any(|c| c.name == "backend"));

    // Paged and NDJSON forms list the same memberships.
    let paged = c.get_all_channel_members_for_user(ME).await.unwrap();
    let ndjson = c.get_channel_members_for_user_ndjson(ME).await.unwrap();
    let ids = |m: &[mattermost::models::ChannelMember]| {
        m.iter()
            .map(|m| m.channel_id.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(ids(&paged), ids(&ndjson));
    assert_eq!(ids(&paged).len(), channels.len());

    let backend = env.channel("engineering", "backend");
    let channel = c.get_channel(&backend).await.unwrap();
    let member = c.get_channel_member(&backend, ME).await.unwrap();
    assert_eq!(member.channel_id, backend);
    assert!(channel.unread_count(&member, false) >= 0);

    let others: Vec<String> = ["bob", "carol"]
        .iter()
        .map(|u| env.driver.user_id(u).unwrap())
        .collect();
    let users = c.get_users_by_ids_batched(&others).await.unwrap();
    assert_eq!(users.len(), 2);
    let statuses = c.get_statuses_by_ids(&others).await.unwrap();
    assert_eq!(statuses.len(), 2);
}

#[tokio::test]
async fn posts_reactions_threads() {
    let env = common::env().await;
    let c = &env.alice;
    let backend = env.channel("engineering", "backend");
    let team = c
        .get_teams_for_user(ME)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "engineering")
        .unwrap();

    let root = c
        .create_post(&NewPost::new(&backend, "client test root").pending_post_id("p:1"))
        .await
        .unwrap();
    assert_eq!(root.message.as_str(), "client test root");
    let bob_reply = env.driver.reply("bob", &root.id, "bob answers").unwrap();
    let reply = c
        .create_post(&NewPost::new(&backend, "alice again").reply_to(&root.id))
        .await
        .unwrap();
    assert_eq!(reply.root_id, root.id);

    let thread = c
        .get_post_thread(&root.id, &PostThreadQuery::default())
        .await
        .unwrap();
    let order: Vec<&str> = thread.order.iter().map(String::as_str).collect();
    assert_eq!(
        order,
        [root.id.as_str(), bob_reply.as_str(), reply.id.as_str()]
    );
    assert!(matches!(
        c.get_post_thread(
            &root.id,
            &PostThreadQuery {
                per_page: Some(500),
                ..Default::default()
            }
        )
        .await,
        Err(Error::InvalidArgument(_))
    ));

    let got = c.get_post(&reply.id).await.unwrap();
    assert_eq!(got.id, reply.id);
    let by_ids = c
        .get_posts_by_ids(&[root.id.clone(), reply.id.clone()])
        .await
        .unwrap();
    assert_eq!(by_ids.len(), 2);

    let since = c
        .get_posts_for_channel(
            &backend,
            &ChannelPostsQuery {
                since: Some(root.create_at - 1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(since.posts.contains_key(&reply.id));
    let page = c
        .get_posts_for_channel(
            &backend,
            &ChannelPostsQuery {
                per_page: Some(5),
                collapsed_threads: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(page.ordered().all(|p| p.is_root()));

    // Followed threads (alice wrote the root and replied).
    let threads = c
        .get_user_threads(
            ME,
            &team.id,
            &UserThreadsQuery {
                per_page: Some(200),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(threads.threads.iter().any(|t| t.id == root.id));
    let all = c
        .get_all_user_threads(
            ME,
            &team.id,
            &UserThreadsQuery {
                per_page: Some(2),
                exclude_direct: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let unique: BTreeSet<_> = all.threads.iter().map(|t| t.id.clone()).collect();
    assert_eq!(
        unique.len(),
        all.threads.len(),
        "no duplicates across pages"
    );
    assert!(unique.contains(&root.id));
    let totals = c
        .get_user_threads(
            ME,
            &team.id,
            &UserThreadsQuery {
                totals_only: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(totals.threads.is_empty());
    assert!(totals.total >= 1);

    let t = c
        .get_user_thread(ME, &team.id, &root.id, true)
        .await
        .unwrap();
    assert_eq!(t.reply_count, 2);
    let t = c
        .set_thread_unread(ME, &team.id, &root.id, &bob_reply)
        .await
        .unwrap();
    assert!(t.unread_replies >= 1);
    let t = c
        .update_thread_read(ME, &team.id, &root.id, reply.create_at + 1)
        .await
        .unwrap();
    assert_eq!(t.unread_replies, 0);
    c.unfollow_thread(ME, &team.id, &root.id).await.unwrap();
    let err = c
        .get_user_thread(ME, &team.id, &root.id, false)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    c.follow_thread(ME, &team.id, &root.id).await.unwrap();
    c.mark_all_threads_read(ME, &team.id).await.unwrap();

    // Edit, react, unread, view, delete.
    let patched = c
        .patch_post(
            &root.id,
            &PostPatch {
                message: Some("edited root".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.message.as_str(), "edited root");
    assert!(patched.edit_at > 0);
    let reaction = c
        .add_reaction(&env.alice_id, &root.id, "thumbsup")
        .await
        .unwrap();
    assert_eq!(reaction.emoji_name, "thumbsup");
    assert!(matches!(
        c.add_reaction(ME, &root.id, "thumbsup").await,
        Err(Error::InvalidArgument(_))
    ));
    c.remove_reaction(ME, &root.id, "thumbsup").await.unwrap();

    let unread = c.set_post_unread(ME, &bob_reply).await.unwrap();
    assert_eq!(unread.channel_id, backend);
    let viewed = c.view_channel(ME, &backend, None).await.unwrap();
    assert_eq!(viewed.status, "OK");
    env.driver.post("bob", &backend, "more news").unwrap();
    let read = c
        .mark_channels_read(ME, std::slice::from_ref(&backend))
        .await
        .unwrap();
    assert!(read.last_viewed_at_times.contains_key(&backend), "{read:?}");

    // Saving a post is a preference; the flagged list shows it.
    c.update_preferences(
        ME,
        &[Preference {
            user_id: env.alice_id.clone(),
            category: "flagged_post".into(),
            name: reply.id.clone(),
            value: "true".into(),
        }],
    )
    .await
    .unwrap();
    let saved = c.get_flagged_posts(ME, 0, 60).await.unwrap();
    assert!(saved.posts.contains_key(&reply.id));

    c.delete_post(&root.id).await.unwrap();
    let err = c.get_post(&root.id).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn preferences_emoji_config_ping_files() {
    let env = common::env().await;
    let c = &env.alice;
    let prefs: Vec<Preference> = (0..150)
        .map(|i| Preference {
            user_id: env.alice_id.clone(),
            category: "td_test".into(),
            name: format!("n{i}"),
            value: format!("{i}"),
        })
        .collect();
    c.update_preferences(ME, &prefs).await.unwrap(); // two chunks
    let got = c.get_preferences_by_category(ME, "td_test").await.unwrap();
    assert_eq!(got.len(), 150);
    assert!(c.get_preferences(ME).await.unwrap().len() >= 150);
    c.delete_preferences(ME, &prefs).await.unwrap();
    assert!(
        c.get_preferences_by_category(ME, "td_test")
            .await
            .unwrap()
            .is_empty()
    );

    let emojis = c.get_all_custom_emojis().await.unwrap();
    let page = c.get_custom_emojis(0, 200).await.unwrap();
    assert_eq!(emojis.len(), page.len());

    let config = c.get_client_config().await.unwrap();
    assert!(config.contains_key("Version"), "{config:?}");
    let anon_config = env.anon.get_client_config().await.unwrap();
    assert!(!anon_config.is_empty());
    assert_eq!(env.anon.ping().await.unwrap().status, "OK");

    // Any file attached to a post in alice's channels.
    let channels = c
        .get_channels_for_user(ME, &ChannelsForUserQuery::default())
        .await
        .unwrap();
    let mut file_id = None;
    for ch in &channels {
        let list = c
            .get_posts_for_channel(&ch.id, &ChannelPostsQuery::default())
            .await
            .unwrap();
        if let Some(id) = list.posts.values().flat_map(|p| p.file_ids.iter()).next() {
            file_id = Some(id.clone());
            break;
        }
    }
    let id = file_id.expect("the demo org has a post with a file");
    {
        let info = c.get_file_info(&id).await.unwrap();
        assert_eq!(info.id, id);
        let bytes = c.get_file(&id).await.unwrap();
        assert_eq!(bytes.bytes.len() as i64, info.size);
        assert!(bytes.content_type.is_some());
        if info.has_preview_image {
            assert!(!c.get_file_thumbnail(&id).await.unwrap().bytes.is_empty());
            assert!(!c.get_file_preview(&id).await.unwrap().bytes.is_empty());
        }
    }
}

#[tokio::test]
async fn errors_auth_and_logout() {
    let env = common::env().await;

    // AppError decoding.
    let err = env
        .alice
        .get_post("abcdefghijklmnopqrstuvwxyz")
        .await
        .unwrap_err();
    match &err {
        Error::Api {
            status,
            id,
            request_id,
            ..
        } => {
            assert!(*status == 404 || *status == 403, "{err:?}");
            assert!(!id.is_empty());
            assert!(request_id.is_some());
        }
        other => panic!("expected an API error, got {other:?}"),
    }

    // No token / bad token.
    assert!(matches!(env.anon.get_me().await, Err(Error::NoToken)));
    let bad = env.anon.with_token("wrongtokenwrongtokenwrongt");
    let err = bad.get_me().await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert!(!err.is_retryable());

    // Wrong password.
    let err = env
        .anon
        .login("alice", &Secret::new("nope"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");

    // Token rotation through set_token is seen by clones.
    let clone = bad.clone();
    bad.set_token(env.alice.token().unwrap());
    assert_eq!(clone.get_me().await.unwrap().username, "alice");

    // Logout revokes the session.
    let login = env
        .anon
        .login("alice", &Secret::new(mmsim::seed::DEMO_PASSWORD))
        .await
        .unwrap();
    let session = env.anon.with_token(login.token);
    session.logout().await.unwrap();
    assert!(session.get_me().await.unwrap_err().is_unauthorized());

    // A personal access token works too.
    let pat = env
        .running
        .sim
        .with_state(|s| mmsim::seed::demo_user(s))
        .unwrap()
        .token;
    assert_eq!(
        env.anon.with_token(pat).get_me().await.unwrap().username,
        "alice"
    );
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let env = common::env().await;
    env.running.sim.inner().faults.fail_next(1, 503);
    let err = env.alice.get_me().await.unwrap_err();
    assert_eq!(err.status(), Some(503), "{err:?}");
    assert!(err.is_retryable());
    env.alice.get_me().await.unwrap();
}

#[derive(Default)]
struct CountingGate {
    acquired: AtomicUsize,
    limited: AtomicUsize,
}

impl RequestGate for CountingGate {
    fn acquire<'a>(&'a self, user_key: Option<&'a str>) -> BoxFuture<'a, ()> {
        assert_eq!(user_key, Some("alice"));
        self.acquired.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }

    fn on_rate_limited(&self, _user_key: Option<&str>, retry_after: Duration) {
        assert!(retry_after >= Duration::from_secs(1));
        self.limited.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn rate_limit_is_reported_and_gate_consulted() {
    let env = common::env().await;
    let gate = Arc::new(CountingGate::default());
    let base = Client::builder(&env.running.url)
        .request_gate(gate.clone())
        .build()
        .unwrap();
    let c = base
        .with_token(env.alice.token().unwrap())
        .with_user_key("alice");

    c.get_me().await.unwrap();
    env.running
        .sim
        .inner()
        .faults
        .rate_limit_storm(Duration::from_millis(1500));
    let err = c.get_me().await.unwrap_err();
    match err {
        Error::RateLimited { retry_after, .. } => assert!(retry_after >= Duration::from_secs(1)),
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(gate.acquired.load(Ordering::SeqCst), 2);
    assert_eq!(gate.limited.load(Ordering::SeqCst), 1);

    // A client configured to retry waits Retry-After and succeeds once the storm is over.
    let patient = Client::builder(&env.running.url)
        .retry_rate_limited(3)
        .build()
        .unwrap()
        .with_token(env.alice.token().unwrap());
    let started = std::time::Instant::now();
    assert_eq!(patient.get_me().await.unwrap().username, "alice");
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[tokio::test]
async fn foreign_origins_are_refused() {
    let env = common::env().await;
    let err = env
        .alice
        .get_url_bytes("http://192.0.2.1/api/v4/users/me")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ForeignOrigin { .. }), "{err:?}");
    // The same server is fine.
    let me_image = format!("{}/api/v4/users/{}/image", env.running.url, env.alice_id);
    let img = env.alice.get_url_bytes(&me_image).await.unwrap();
    assert!(!img.bytes.is_empty());
}
