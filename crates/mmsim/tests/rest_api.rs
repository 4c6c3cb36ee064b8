//! REST API v4 over real loopback HTTP: status codes, AppError bodies, the server quirks of
//! `shared/research/mattermost-api.md` (numbers in comments are its trap numbers).

#![allow(clippy::unwrap_used)] // test helpers: a panic is a test failure

use mmsim::driver::Driver;
use mmsim::{Running, SimConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Env {
    run: Running,
    http: reqwest::Client,
    token: String,
    me: String,
}

impl Env {
    async fn start() -> Self {
        Self::with(SimConfig::default()).await
    }

    async fn with(config: SimConfig) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let run = mmsim::start(config, 0).await.expect("start mmsim");
        let user = run
            .sim
            .with_state(|s| mmsim::seed::demo_user(s))
            .expect("demo user");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            run,
            http,
            token: user.token,
            me: user.id,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v4{path}", self.run.url)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    fn driver(&self) -> Driver {
        Driver::new(&self.run.sim)
    }

    fn channel(&self, team: &str, name: &str) -> String {
        self.driver().channel_id(team, name).expect("channel")
    }

    async fn team(&self, name: &str) -> String {
        let (_, teams) = self.get("/users/me/teams").await;
        teams
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn assert_app_error(body: &Value, status: u16, id: &str) {
    assert_eq!(body["id"], id, "{body}");
    assert_eq!(body["status_code"], status, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(
        body["detailed_error"].is_string(),
        "detailed_error always present: {body}"
    );
    assert_eq!(
        body["request_id"].as_str().map(str::len),
        Some(26),
        "{body}"
    );
    assert!(body.get("is_oauth").is_none());
}

// ------------------------------------------------------------------------------------------
// conventions and authentication
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn headers_and_unknown_routes() {
    let env = Env::start().await;
    let resp = env
        .http
        .get(env.url("/users/me"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["expires"], "0");
    assert_eq!(h["x-request-id"].len(), 26);
    let version = h["x-version-id"].to_str().unwrap();
    assert!(
        version.starts_with("11.2.0.") && version.ends_with(".false"),
        "{version}"
    );

    // Trap 21: unknown route → message == id, non-empty detailed_error.
    let (status, body) = env.get("/no/such/route").await;
    assert_eq!(status, 404);
    assert_app_error(&body, 404, "api.context.404.app_error");
    assert_eq!(body["message"], body["id"]);
    assert!(
        body["detailed_error"]
            .as_str()
            .unwrap()
            .contains("/api/v4/no/such/route")
    );
}

#[tokio::test]
async fn authentication_forms_cookie_precedence_and_csrf() {
    let env = Env::start().await;
    let me = env.url("/users/me");
    // No token, bad token → 401 session_expired.
    let resp = env.http.get(&me).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_app_error(&body, 401, "api.context.session_expired.app_error");
    assert_eq!(body["detailed_error"], "");
    assert_eq!(body["request_id"], request_id.as_str());
    let resp = env
        .http
        .get(&me)
        .bearer_auth("nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // `BEARER` (any case) and `Token` header forms.
    for header in [
        format!("BEARER {}", env.token),
        format!("token {}", env.token),
    ] {
        let resp = env
            .http
            .get(&me)
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    // Password login: token in the `Token` header, no cookies without X-Requested-With.
    let resp = env
        .http
        .post(env.url("/users/login"))
        .json(&json!({"login_id": "bob", "password": "demo-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("set-cookie").is_none());
    let session = resp.headers()["token"].to_str().unwrap().to_owned();
    let bob: Value = resp.json().await.unwrap();
    assert_eq!(bob["username"], "bob");
    assert!(bob.get("password").is_none());
    let (status, body) = env
        .post(
            "/users/login",
            json!({"login_id": "bob", "password": "wrong"}),
        )
        .await;
    assert_eq!(status, 401);
    assert_app_error(
        &body,
        401,
        "api.user.login.invalid_credentials_email_username",
    );

    // Trap 1: the cookie is read before the Authorization header.
    let resp = env
        .http
        .get(&me)
        .header("Cookie", format!("MMAUTHTOKEN={session}"))
        .bearer_auth("bad-header-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["username"], "bob");
    let resp = env
        .http
        .get(&me)
        .header("Cookie", "MMAUTHTOKEN=badcookie")
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // A cookie-authenticated non-GET needs X-CSRF-Token (or X-Requested-With).
    let prefs = json!([{"user_id": bob["id"], "category": "x", "name": "y", "value": "z"}]);
    let put = |extra: Option<(&'static str, &'static str)>| {
        let mut req = env
            .http
            .put(env.url("/users/me/preferences"))
            .header("Cookie", format!("MMAUTHTOKEN={session}"))
            .json(&prefs);
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        req.send()
    };
    assert_eq!(put(None).await.unwrap().status(), 401);
    assert_eq!(
        put(Some(("X-Requested-With", "XMLHttpRequest")))
            .await
            .unwrap()
            .status(),
        200
    );

    // Logout revokes the session.
    let resp = env
        .http
        .post(env.url("/users/logout"))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = env
        .http
        .get(&me)
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn personal_access_tokens() {
    let env = Env::start().await;
    let (status, created) = env
        .post("/users/me/tokens", json!({"description": "ci"}))
        .await;
    assert_eq!(status, 200);
    let token = created["token"].as_str().unwrap().to_owned();
    let (_, list) = env.get("/users/me/tokens").await;
    let listed = list.as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|t| t["id"] == created["id"] && t.get("token").is_none())
    );
    let resp = env
        .http
        .get(env.url("/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, _) = env
        .post("/users/tokens/revoke", json!({"token_id": created["id"]}))
        .await;
    assert_eq!(status, 200);
    let resp = env
        .http
        .get(env.url("/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (status, body) = env.post("/users/me/tokens", json!({})).await;
    assert_eq!(status, 400, "{body}");

    // Disabled like a default server: creation is 501.
    let off = Env::with(SimConfig {
        enable_user_access_tokens: false,
        ..SimConfig::default()
    })
    .await;
    let resp = off
        .http
        .post(off.url("/users/login"))
        .json(&json!({"login_id": "alice", "password": "demo-password"}))
        .send()
        .await
        .unwrap();
    let session = resp.headers()["token"].to_str().unwrap().to_owned();
    let resp = off
        .http
        .post(off.url("/users/me/tokens"))
        .bearer_auth(&session)
        .json(&json!({"description": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 501);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["id"],
        "app.user_access_token.disabled"
    );
    // ...and the seeded PAT no longer authenticates.
    let (status, _) = off.get("/users/me").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn users_statuses_and_bad_input() {
    let env = Env::start().await;
    let bob = env.driver().user_id("bob").unwrap();
    let (status, users) = env.post("/users/ids", json!([env.me, bob])).await;
    assert_eq!(status, 200);
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 2);
    let other = users.iter().find(|u| u["id"] == bob.as_str()).unwrap();
    assert!(
        other.get("notify_props").is_none(),
        "other users are sanitized"
    );

    let (status, body) = env.post("/users/ids", json!([])).await;
    assert_eq!(status, 400);
    assert_app_error(&body, 400, "api.context.invalid_body_param.app_error");
    // Malformed JSON.
    let resp = env
        .http
        .post(env.url("/users/ids"))
        .bearer_auth(&env.token)
        .body("[\"abc\",")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_app_error(
        &resp.json().await.unwrap(),
        400,
        "api.context.invalid_body_param.app_error",
    );
    // Invalid and unknown ids.
    let (status, body) = env.get("/users/not-an-id").await;
    assert_eq!(status, 400);
    assert_app_error(&body, 400, "api.context.invalid_url_param.app_error");
    let (status, body) = env.get("/users/aaaaaaaaaaaaaaaaaaaaaaaaaa").await;
    assert_eq!(status, 404);
    assert_app_error(&body, 404, "app.user.missing_account.const");

    let (status, statuses) = env.post("/users/status/ids", json!([bob])).await;
    assert_eq!(status, 200);
    assert_eq!(statuses[0]["user_id"], bob.as_str());
    assert!(statuses[0]["dnd_end_time"].is_i64());

    let resp = env
        .http
        .get(env.url(&format!("/users/{bob}/image")))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(&resp.bytes().await.unwrap()[..4], b"\x89PNG");
}

// ------------------------------------------------------------------------------------------
// teams, channels, read counts
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn channels_members_and_ndjson() {
    let env = Env::start().await;
    let (_, channels) = env.get("/users/me/channels").await;
    let channels = channels.as_array().unwrap();
    let types: Vec<&str> = channels
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    for t in ["O", "P", "D", "G"] {
        assert!(types.contains(&t), "all teams plus DMs and GMs: {types:?}");
    }
    let dm = channels.iter().find(|c| c["type"] == "D").unwrap();
    assert_eq!(dm["team_id"], "");
    assert_eq!(dm["display_name"], "");
    let name = dm["name"].as_str().unwrap();
    let (a, b) = name.split_once("__").unwrap();
    assert!(a < b && (a == env.me || b == env.me));
    let gm = channels.iter().find(|c| c["type"] == "G").unwrap();
    assert_eq!(gm["name"].as_str().unwrap().len(), 40);

    // Team channel list also includes DM/GM.
    let eng = env.team("engineering").await;
    let (_, team_channels) = env.get(&format!("/users/me/teams/{eng}/channels")).await;
    assert!(
        team_channels
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "D")
    );

    // Trap 19: page=-1 streams NDJSON.
    let resp = env
        .http
        .get(env.url("/users/me/channel_members?page=-1"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), channels.len());
    assert!(lines[0]["msg_count_root"].is_i64() && lines[0]["team_name"].is_string());
    let (_, page) = env.get("/users/me/channel_members?page=0&per_page=2").await;
    assert_eq!(page.as_array().unwrap().len(), 2);
    let (status, page) = env.get("/users/me/channel_members?per_page=5000").await;
    assert_eq!(status, 200, "oversized per_page is clamped, not rejected");
    assert_eq!(page.as_array().unwrap().len(), channels.len());

    // Other users' lists are forbidden.
    let bob = env.driver().user_id("bob").unwrap();
    let (status, body) = env.get(&format!("/users/{bob}/channels")).await;
    assert_eq!(status, 403);
    assert_app_error(&body, 403, "api.context.permissions.app_error");

    // DM / GM creation answers 201 (also when the DM exists).
    let (status, created) = env.post("/channels/direct", json!([env.me, bob])).await;
    assert_eq!(status, 201);
    assert_eq!(created["type"], "D");
    let carol = env.driver().user_id("carol").unwrap();
    let (status, gm) = env.post("/channels/group", json!([bob, carol])).await;
    assert_eq!(status, 201);
    assert_eq!(gm["display_name"], "alice, bob, carol");
    let (status, _) = env.post("/channels/group", json!([bob])).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn msg_count_is_a_read_count_and_view_marks_read() {
    let env = Env::start().await;
    let channel = env.channel("company", "off-topic");
    let (_, member) = env.get(&format!("/channels/{channel}/members/me")).await;
    let (_, ch) = env.get(&format!("/channels/{channel}")).await;
    assert_eq!(
        member["msg_count"], ch["total_msg_count"],
        "seeded as fully read"
    );

    env.driver().post("bob", &channel, "hello @alice").unwrap();
    let (_, member2) = env.get(&format!("/channels/{channel}/members/me")).await;
    let (_, ch2) = env.get(&format!("/channels/{channel}")).await;
    assert_eq!(
        member2["msg_count"], member["msg_count"],
        "trap 8: read count unchanged"
    );
    assert_eq!(
        ch2["total_msg_count"].as_i64(),
        Some(ch["total_msg_count"].as_i64().unwrap() + 1)
    );
    assert_eq!(member2["mention_count"], 1);
    // The unread endpoint returns msg_count already as unread.
    let (_, unread) = env
        .get(&format!("/users/me/channels/{channel}/unread"))
        .await;
    assert_eq!(unread["msg_count"], 1);
    assert_eq!(unread["mention_count"], 1);

    let (status, view) = env
        .post(
            "/channels/members/me/view",
            json!({"channel_id": channel, "collapsed_threads_supported": true}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "OK");
    assert!(view["last_viewed_at_times"][&channel].is_i64());
    let (_, member3) = env.get(&format!("/channels/{channel}/members/me")).await;
    assert_eq!(member3["msg_count"], ch2["total_msg_count"]);
    assert_eq!(member3["mention_count"], 0);
    // Nothing unread any more → channel not touched (trap 24).
    let (_, view) = env
        .post("/channels/members/me/view", json!({"channel_id": channel}))
        .await;
    assert_eq!(view["last_viewed_at_times"], json!({}));
    let (status, _) = env
        .post("/channels/members/me/view", json!({"channel_id": "bad"}))
        .await;
    assert_eq!(status, 400);

    // set_unread: read counts again, last_viewed_at = create_at − 1.
    let post = env.driver().post("bob", &channel, "second").unwrap();
    let (_, p) = env.get(&format!("/posts/{post}")).await;
    let (status, at) = env
        .post(
            &format!("/users/me/posts/{post}/set_unread"),
            json!({"collapsed_threads_supported": true}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        at["last_viewed_at"].as_i64(),
        Some(p["create_at"].as_i64().unwrap() - 1)
    );
    assert_eq!(at["msg_count"], ch2["total_msg_count"]);

    // mark_read (CRT-aware) and a DM counts as a mention (trap 34b).
    let dm = env.driver().dm("bob", "alice", "ping").unwrap();
    let (_, dm_post) = env.get(&format!("/posts/{dm}")).await;
    let dm_channel = dm_post["channel_id"].as_str().unwrap().to_owned();
    let (_, unread) = env
        .get(&format!("/users/me/channels/{dm_channel}/unread"))
        .await;
    assert!(unread["mention_count"].as_i64().unwrap() >= 1);
    let (status, _) = env
        .post("/channels/members/me/mark_read", json!([dm_channel]))
        .await;
    assert_eq!(status, 200);
    let (_, unread) = env
        .get(&format!("/users/me/channels/{dm_channel}/unread"))
        .await;
    assert_eq!(unread["mention_count"], 0);
    assert_eq!(unread["msg_count"], 0);
}

#[tokio::test]
async fn team_unreads_with_thread_counts() {
    let env = Env::start().await;
    let (_, plain) = env.get("/users/me/teams/unread").await;
    assert!(plain[0].get("thread_count").is_none());
    let (_, with) = env
        .get("/users/me/teams/unread?include_collapsed_threads=true")
        .await;
    let list = with.as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert!(
        list.iter()
            .all(|t| t["thread_count"].is_i64() && t["thread_urgent_mention_count"].is_i64())
    );
    let eng = env.team("engineering").await;
    let team = list.iter().find(|t| t["team_id"] == eng.as_str()).unwrap();
    assert!(team["thread_count"].as_i64().unwrap() > 0, "{team}");
    let (status, one) = env.get(&format!("/users/me/teams/{eng}/unread")).await;
    assert_eq!(status, 200);
    assert_eq!(one["team_id"], eng.as_str());
}

// ------------------------------------------------------------------------------------------
// posts
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_validate_patch_delete_posts() {
    let env = Env::start().await;
    let channel = env.channel("engineering", "backend");
    let (status, root) = env
        .post(
            "/posts",
            json!({"channel_id": channel, "message": "root **post**"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(root["user_id"], env.me.as_str());
    assert_eq!(root["participants"], Value::Null, "trap 10");
    assert!(root["hashtags"].is_string());
    let root_id = root["id"].as_str().unwrap().to_owned();
    let (status, reply) = env
        .post(
            "/posts",
            json!({"channel_id": channel, "message": "reply", "root_id": root_id}),
        )
        .await;
    assert_eq!(status, 201);
    let reply_id = reply["id"].as_str().unwrap().to_owned();

    // Trap 36: a reply must name the root, in the same channel.
    let (status, body) = env
        .post(
            "/posts",
            json!({"channel_id": channel, "message": "x", "root_id": reply_id}),
        )
        .await;
    assert_eq!(status, 400);
    assert_app_error(&body, 400, "api.post.create_post.root_id.app_error");
    let other = env.channel("engineering", "frontend");
    let (status, _) = env
        .post(
            "/posts",
            json!({"channel_id": other, "message": "x", "root_id": root_id}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = env
        .post("/posts", json!({"channel_id": "nope", "message": "x"}))
        .await;
    assert_eq!(status, 400);
    assert_app_error(&body, 400, "api.context.invalid_body_param.app_error");
    let resp = env
        .http
        .post(env.url("/posts"))
        .bearer_auth(&env.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Not a member → 403.
    let leadership_less = env.driver().post("bob", &channel, "x").map(|_| ());
    assert!(leadership_less.is_ok());
    let (status, _) = env
        .post(
            "/posts",
            json!({"channel_id": "aaaaaaaaaaaaaaaaaaaaaaaaaa", "message": "x"}),
        )
        .await;
    assert_eq!(status, 403);

    // Patch: message edit sets edit_at.
    let (status, patched) = env
        .put(
            &format!("/posts/{root_id}/patch"),
            json!({"message": "edited"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(patched["message"], "edited");
    assert!(patched["edit_at"].as_i64().unwrap() > 0);
    let (status, _) = env
        .put(
            &format!("/posts/{root_id}"),
            json!({"id": root_id, "message": "full update"}),
        )
        .await;
    assert_eq!(status, 200);
    // Someone else's post cannot be edited.
    let bobs = env.driver().post("bob", &channel, "bob's").unwrap();
    let (status, _) = env
        .put(
            &format!("/posts/{bobs}/patch"),
            json!({"message": "hijack"}),
        )
        .await;
    assert_eq!(status, 403);

    // Trap 33: deleting a root deletes its replies.
    let (status, ok) = env.delete(&format!("/posts/{root_id}")).await;
    assert_eq!((status.as_u16(), ok["status"].as_str()), (200, Some("OK")));
    let (status, body) = env.get(&format!("/posts/{reply_id}")).await;
    assert_eq!(status, 404);
    assert_app_error(&body, 404, "app.post.get.app_error");
    let (status, _) = env.get(&format!("/posts/{root_id}/thread")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn channel_post_lists_since_and_collapsed_threads() {
    let env = Env::start().await;
    let channel = env.channel("engineering", "incidents");
    let (status, list) = env
        .get(&format!("/channels/{channel}/posts?per_page=2"))
        .await;
    assert_eq!(status, 200);
    let order = list["order"].as_array().unwrap();
    assert_eq!(order.len(), 2);
    assert!(
        list["posts"].as_object().unwrap().len() >= 2,
        "threads fetched too"
    );
    assert!(!list["prev_post_id"].as_str().unwrap().is_empty());
    assert_eq!(list["next_post_id"], "");
    let (_, older) = env
        .get(&format!(
            "/channels/{channel}/posts?per_page=2&before={}",
            order[1].as_str().unwrap()
        ))
        .await;
    assert_eq!(older["next_post_id"], order[1]);

    // CRT: roots only, with participants (id-only) and is_following.
    let (_, crt) = env
        .get(&format!("/channels/{channel}/posts?collapsedThreads=true"))
        .await;
    for id in crt["order"].as_array().unwrap() {
        let p = &crt["posts"][id.as_str().unwrap()];
        assert_eq!(p["root_id"], "");
        assert!(p["participants"].is_array());
    }
    let busy = crt["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| &crt["posts"][id.as_str().unwrap()])
        .find(|p| p["reply_count"].as_i64().unwrap() > 0)
        .unwrap();
    assert_eq!(
        busy["participants"][0]["username"], "",
        "id-only without collapsedThreadsExtended"
    );
    let (_, ext) = env
        .get(&format!(
            "/channels/{channel}/posts?collapsedThreads=true&collapsedThreadsExtended=true"
        ))
        .await;
    let busy_ext = &ext["posts"][busy["id"].as_str().unwrap()];
    assert_ne!(busy_ext["participants"][0]["username"], "");

    // Trap 17: since is strict on update_at and includes deleted posts.
    let (_, newest) = env
        .get(&format!("/channels/{channel}/posts?per_page=1"))
        .await;
    let newest_id = newest["order"][0].as_str().unwrap();
    let since = newest["posts"][newest_id]["update_at"].as_i64().unwrap();
    let (_, none) = env
        .get(&format!("/channels/{channel}/posts?since={since}"))
        .await;
    assert_eq!(none["order"], json!([]));
    let gone = env
        .driver()
        .post("dave", &channel, "will be deleted")
        .unwrap();
    env.driver().delete("dave", &gone).unwrap();
    let (_, since_list) = env
        .get(&format!("/channels/{channel}/posts?since={since}"))
        .await;
    assert_eq!(since_list["order"], json!([gone]));
    assert_eq!(since_list["posts"][&gone]["message"], "");
    assert!(since_list["posts"][&gone]["delete_at"].as_i64().unwrap() > 0);
    assert_eq!(since_list["prev_post_id"], "");
}

#[tokio::test]
async fn post_thread_order_and_per_page() {
    let env = Env::start().await;
    let channel = env.channel("engineering", "incidents");
    let root = env.driver().post("dave", &channel, "root").unwrap();
    let r1 = env.driver().reply("bob", &root, "one").unwrap();
    let r2 = env.driver().reply("ivan", &root, "two").unwrap();
    // Trap 15: the requested post comes first.
    let (status, list) = env.get(&format!("/posts/{r2}/thread")).await;
    assert_eq!(status, 200);
    assert_eq!(list["order"][0], r2.as_str());
    assert_eq!(list["order"].as_array().unwrap().len(), 3);
    assert!(list["posts"][&root]["reply_count"] == 2);
    let (_, paged) = env.get(&format!("/posts/{root}/thread?perPage=2")).await;
    assert_eq!(paged["order"], json!([root, r1]));
    assert_eq!(paged["has_next"], true);
    let (status, body) = env.get(&format!("/posts/{root}/thread?perPage=201")).await;
    assert_eq!(status, 400, "perPage > 200 is a 400 here, not a clamp");
    assert_app_error(&body, 400, "api.context.invalid_url_param.app_error");
    let (status, _) = env.get("/posts/zzzzzzzzzzzzzzzzzzzzzzzzzz/thread").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn pending_post_id_dedup_window_and_in_flight() {
    let env = Env::start().await;
    let channel = env.channel("company", "off-topic");
    let body = json!({"channel_id": channel, "message": "once", "pending_post_id": format!("{}:1", env.me)});
    let (s1, p1) = env.post("/posts", body.clone()).await;
    let (s2, p2) = env.post("/posts", body.clone()).await;
    assert_eq!((s1.as_u16(), s2.as_u16()), (201, 201));
    assert_eq!(
        p1["id"], p2["id"],
        "a retry within 30 s returns the same post"
    );
    // After the window a retry creates a second post.
    env.run.sim.clock().advance(31_000);
    let (s3, p3) = env.post("/posts", body.clone()).await;
    assert_eq!(s3, 201);
    assert_ne!(p3["id"], p1["id"]);

    // While the first create is still running a duplicate gets 500 (trap 35).
    let gate = env.run.sim.hold_post_creation().await;
    let body = json!({"channel_id": channel, "message": "slow", "pending_post_id": "p:2"});
    let first = {
        let req = env
            .http
            .post(env.url("/posts"))
            .bearer_auth(&env.token)
            .json(&body);
        tokio::spawn(async move { req.send().await.unwrap().status() })
    };
    while !env.run.sim.is_post_pending("p:2") {
        tokio::task::yield_now().await;
    }
    let (status, err) = env.post("/posts", body.clone()).await;
    assert_eq!(status, 500);
    assert_app_error(&err, 500, "api.post.deduplicate_create_post.pending");
    drop(gate);
    assert_eq!(first.await.unwrap(), 201);
}

#[tokio::test]
async fn reactions_files_and_flagged() {
    let env = Env::start().await;
    let channel = env.channel("engineering", "backend");
    let post = env.driver().post("bob", &channel, "react to me").unwrap();
    let (_, before) = env.get(&format!("/posts/{post}")).await;
    let (status, reaction) = env
        .post(
            "/reactions",
            json!({"user_id": env.me, "post_id": post, "emoji_name": "tada"}),
        )
        .await;
    assert_eq!(status, 200, "trap 18: 200, not 201");
    assert_eq!(reaction["channel_id"], channel.as_str());
    let (_, after) = env.get(&format!("/posts/{post}")).await;
    assert!(after["update_at"].as_i64() > before["update_at"].as_i64());
    assert_eq!(after["metadata"]["reactions"][0]["emoji_name"], "tada");
    assert_eq!(after["has_reactions"], true);
    let bob = env.driver().user_id("bob").unwrap();
    let (status, _) = env
        .post(
            "/reactions",
            json!({"user_id": bob, "post_id": post, "emoji_name": "x"}),
        )
        .await;
    assert_eq!(status, 403, "user_id must be the session user");
    let (_, list) = env.get(&format!("/posts/{post}/reactions")).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, by_ids) = env.post("/posts/ids/reactions", json!([post])).await;
    assert_eq!(by_ids[&post].as_array().unwrap().len(), 1);
    let (status, _) = env
        .delete(&format!("/users/me/posts/{post}/reactions/tada"))
        .await;
    assert_eq!(status, 200);
    let (_, list) = env.get(&format!("/posts/{post}/reactions")).await;
    assert_eq!(list, json!([]));

    // Seeded attachments: info, thumbnail and preview are real PNGs.
    let design = env.channel("product", "design");
    let (_, posts) = env.get(&format!("/channels/{design}/posts")).await;
    let with_file = posts["posts"]
        .as_object()
        .unwrap()
        .values()
        .find(|p| p["file_ids"].is_array())
        .unwrap();
    let file_id = with_file["file_ids"][0].as_str().unwrap();
    assert_eq!(with_file["metadata"]["files"][0]["id"], file_id);
    let (_, infos) = env
        .get(&format!(
            "/posts/{}/files/info",
            with_file["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(infos[0]["mime_type"], "image/png");
    for kind in ["thumbnail", "preview"] {
        let resp = env
            .http
            .get(env.url(&format!("/files/{file_id}/{kind}")))
            .bearer_auth(&env.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(&resp.bytes().await.unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    }
    let (status, info) = env.get(&format!("/files/{file_id}/info")).await;
    assert_eq!(
        (status.as_u16(), info["has_preview_image"].as_bool()),
        (200, Some(true))
    );

    let (_, flagged) = env.get("/users/me/posts/flagged").await;
    assert_eq!(flagged["order"].as_array().unwrap().len(), 1);
}

// ------------------------------------------------------------------------------------------
// threads (CRT)
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn thread_list_quirks() {
    let env = Env::start().await;
    let eng = env.team("engineering").await;
    let product = env.team("product").await;
    let path = |team: &str, q: &str| format!("/users/me/teams/{team}/threads?{q}");
    let (status, list) = env.get(&path(&eng, "")).await;
    assert_eq!(status, 200);
    let threads = list["threads"].as_array().unwrap();
    assert!(!threads.is_empty());
    assert!(
        threads.iter().all(|t| t.get("is_following").is_none()),
        "trap 11"
    );
    assert!(
        threads[0]["participants"][0]["username"] == "",
        "id-only participants"
    );
    for key in [
        "total",
        "total_unread_threads",
        "total_unread_mentions",
        "total_unread_urgent_mentions",
    ] {
        assert!(list[key].is_i64(), "{key}");
    }
    let lr: Vec<i64> = threads
        .iter()
        .map(|t| t["last_reply_at"].as_i64().unwrap())
        .collect();
    assert!(lr.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // Trap 12: DM/GM threads appear in every team's list, unless excludeDirect.
    let is_direct = |t: &Value| {
        let ch = t["post"]["channel_id"].as_str().unwrap().to_owned();
        env.run.sim.with_state(|s| {
            s.channels
                .values()
                .any(|c| c.id.as_str() == ch && c.team_id.is_none())
        })
    };
    let direct: Vec<String> = threads
        .iter()
        .filter(|t| is_direct(t))
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!direct.is_empty());
    let (_, other) = env.get(&path(&product, "")).await;
    for id in &direct {
        assert!(
            other["threads"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["id"] == id.as_str())
        );
    }
    let (_, excl) = env.get(&path(&eng, "excludeDirect=true")).await;
    assert!(
        excl["threads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| !is_direct(t))
    );

    // Trap 13.
    let (_, totals) = env.get(&path(&eng, "totalsOnly=true")).await;
    assert_eq!(totals["threads"], Value::Null);
    assert_eq!(totals["total"], list["total"]);
    let (_, only) = env.get(&path(&eng, "threadsOnly=true")).await;
    assert_eq!(only["total"], 0);
    let (status, body) = env
        .get(&path(&eng, "totalsOnly=true&threadsOnly=true"))
        .await;
    assert_eq!(status, 400);
    assert_app_error(&body, 400, "api.getThreadsForUser.bad_only_params");
    let (_, unread) = env.get(&path(&eng, "unread=true")).await;
    assert_eq!(unread["total"], list["total_unread_threads"]);
    assert!(
        unread["threads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["unread_replies"].as_i64().unwrap() > 0)
    );

    // Cursors: before/after exclusive; after is ascending.
    let first = threads[0]["id"].as_str().unwrap();
    let last = threads.last().unwrap()["id"].as_str().unwrap();
    let (status, _) = env
        .get(&path(&eng, &format!("before={first}&after={last}")))
        .await;
    assert_eq!(status, 400);
    let (_, before) = env
        .get(&path(&eng, &format!("before={first}&per_page=1")))
        .await;
    assert_eq!(before["threads"][0]["id"], threads[1]["id"]);
    let (_, after) = env.get(&path(&eng, &format!("after={last}"))).await;
    let asc: Vec<i64> = after["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["last_reply_at"].as_i64().unwrap())
        .collect();
    assert!(
        !asc.is_empty() && asc.windows(2).all(|w| w[0] <= w[1]),
        "ascending with after"
    );
    let (_, one) = env.get(&path(&eng, "per_page=1&page=3")).await;
    assert_eq!(one["threads"].as_array().unwrap().len(), 1);
    assert_eq!(one["threads"][0]["id"], threads[0]["id"], "page is ignored");
    let (_, extended) = env.get(&path(&eng, "extended=true&per_page=1")).await;
    assert_ne!(extended["threads"][0]["participants"][0]["username"], "");
    let since = threads[0]["last_reply_at"].as_i64().unwrap();
    let (_, recent) = env.get(&path(&eng, &format!("since={since}"))).await;
    assert!(
        recent["threads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == threads[0]["id"])
    );
}

#[tokio::test]
async fn thread_read_unread_follow() {
    let env = Env::start().await;
    let eng = env.team("engineering").await;
    let channel = env.channel("engineering", "backend");
    let root = env.driver().post("bob", &channel, "new thread").unwrap();
    let base = format!("/users/me/teams/{eng}/threads/{root}");
    // No membership yet → 404 (and no thread before the first reply).
    let (status, body) = env.get(&base).await;
    assert_eq!(status, 404);
    assert_app_error(
        &body,
        404,
        "app.user.get_thread_membership_for_user.not_found",
    );
    // A reply mentioning alice makes her follow with an unread mention.
    env.driver()
        .reply("heidi", &root, "@alice what do you think?")
        .unwrap();
    let (status, t) = env.get(&base).await;
    assert_eq!(status, 200);
    assert_eq!(
        (t["unread_replies"].as_i64(), t["unread_mentions"].as_i64()),
        (Some(1), Some(1))
    );
    assert!(t.get("is_following").is_none());
    // Read at now → 0 unread; read at 0 → unread again.
    let now = t["last_reply_at"].as_i64().unwrap() + 1;
    let (status, t) = env.put(&format!("{base}/read/{now}"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (t["unread_replies"].as_i64(), t["unread_mentions"].as_i64()),
        (Some(0), Some(0))
    );
    let (_, t) = env.put(&format!("{base}/read/0"), json!({})).await;
    assert_eq!(t["unread_replies"], 1);
    // set_unread at the root: last_viewed_at = root.create_at − 1.
    let (_, root_post) = env.get(&format!("/posts/{root}")).await;
    let (status, t) = env
        .post(&format!("{base}/set_unread/{root}"), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        t["last_viewed_at"].as_i64(),
        Some(root_post["create_at"].as_i64().unwrap() - 1)
    );
    let other = env.driver().post("bob", &channel, "unrelated").unwrap();
    let (status, body) = env
        .post(&format!("{base}/set_unread/{other}"), json!({}))
        .await;
    assert_eq!(status, 400);
    assert_app_error(
        &body,
        400,
        "app.user.update_thread_read_for_user_by_post.app_error",
    );
    // Unfollow → 404 on GET and gone from the list; follow again → read.
    let (status, ok) = env.delete(&format!("{base}/following")).await;
    assert_eq!((status.as_u16(), ok["status"].as_str()), (200, Some("OK")));
    let (status, body) = env.get(&base).await;
    assert_eq!(status, 404);
    assert_app_error(&body, 404, "app.user.get_threads_for_user.not_found");
    // An explicit unfollow survives new replies that do not mention her.
    env.driver().reply("bob", &root, "more").unwrap();
    assert_eq!(env.get(&base).await.0, 404);
    let (status, _) = env.put(&format!("{base}/following"), json!({})).await;
    assert_eq!(status, 200);
    let (_, t) = env.get(&base).await;
    assert_eq!(t["unread_replies"], 0);
    // Mark all read, right after a burst of replies (live posts made in the same millisecond
    // get increasing create_at, ahead of the clock: the read must still cover them).
    for n in 0..50 {
        env.driver()
            .reply("bob", &root, &format!("even more {n}"))
            .unwrap();
    }
    let (status, _) = env
        .put(&format!("/users/me/teams/{eng}/threads/read"), json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, totals) = env
        .get(&format!("/users/me/teams/{eng}/threads?totalsOnly=true"))
        .await;
    assert_eq!(totals["total_unread_threads"], 0);
    assert_eq!(totals["total_unread_mentions"], 0);
    // Bad ids.
    let (status, _) = env.get(&format!("/users/me/teams/{eng}/threads/xyz")).await;
    assert_eq!(status, 400);
}

// ------------------------------------------------------------------------------------------
// preferences, emoji, system
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn preferences_roundtrip_and_limits() {
    let env = Env::start().await;
    let pref = json!({"user_id": env.me, "category": "threaddesk_done", "name": "abc", "value": "1700000000000"});
    let (status, ok) = env.put("/users/me/preferences", json!([pref])).await;
    assert_eq!((status.as_u16(), ok["status"].as_str()), (200, Some("OK")));
    let (_, cat) = env.get("/users/me/preferences/threaddesk_done").await;
    assert_eq!(cat, json!([pref]));
    let (_, one) = env
        .get("/users/me/preferences/threaddesk_done/name/abc")
        .await;
    assert_eq!(one, pref);
    let (status, _) = env
        .post("/users/me/preferences/delete", json!([pref]))
        .await;
    assert_eq!(status, 200);
    let (status, _) = env
        .get("/users/me/preferences/threaddesk_done/name/abc")
        .await;
    assert_eq!(status, 404);
    let bob = env.driver().user_id("bob").unwrap();
    let (status, _) = env
        .put(
            "/users/me/preferences",
            json!([{"user_id": bob, "category": "x", "name": "y", "value": "z"}]),
        )
        .await;
    assert_eq!(status, 403);
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"user_id": env.me, "category": "x", "name": format!("n{i}"), "value": "v"}))
        .collect();
    let (status, _) = env.put("/users/me/preferences", Value::Array(many)).await;
    assert_eq!(status, 400);
    let (status, _) = env.put("/users/me/preferences", json!([])).await;
    assert_eq!(status, 400);
    let (_, all) = env.get("/users/me/preferences").await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|p| p["category"] == "display_settings")
    );
}

#[tokio::test]
async fn emoji_ping_and_client_config() {
    let env = Env::start().await;
    let (_, emoji) = env.get("/emoji?sort=name").await;
    let list = emoji.as_array().unwrap();
    assert!(list.iter().any(|e| e["name"] == "lgtm"));
    let id = list[0]["id"].as_str().unwrap();
    let (status, _) = env.get(&format!("/emoji/{id}")).await;
    assert_eq!(status, 200);
    let (status, _) = env.get("/emoji/name/shipit").await;
    assert_eq!(status, 200);
    let resp = env
        .http
        .get(env.url(&format!("/emoji/{id}/image")))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "image/png");

    let resp = env.http.get(env.url("/system/ping")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "OK");
    let (_, config) = env.get("/config/client").await;
    assert_eq!(config["CollapsedThreads"], "always_on");
    assert_eq!(config["Version"], "11.2.0");
    assert_eq!(config["SiteURL"], env.run.url.as_str());
    assert!(config.as_object().unwrap().values().all(Value::is_string));
}

// ------------------------------------------------------------------------------------------
// WebSocket payloads the state publishes (the hub's delivery is tested by the WS tests)
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn mutations_publish_server_shaped_events() {
    use mmsim::state::NewPost;
    let env = Env::start().await;
    let channel = env.channel("engineering", "backend");
    let ch = mmsim::model::Id::parse(&channel).unwrap();
    let (bob, alice) = env
        .run
        .sim
        .with_state(|s| (s.find_user("bob").unwrap(), s.find_user("alice").unwrap()));
    let (root, events) = env.run.sim.with_state(|s| {
        let root = s.create_post(bob, NewPost::new(ch, "hi @alice")).unwrap();
        (root, s.take_outbox())
    });
    let posted = events.iter().find(|d| d.event.event == "posted").unwrap();
    let data = &posted.event.data;
    // Trap 22: post is string JSON; trap 34: the author receives it too.
    let post: Value = serde_json::from_str(data["post"].as_str().unwrap()).unwrap();
    assert_eq!(post["id"], root.as_str());
    assert_eq!(data["channel_type"], "O");
    assert_eq!(data["sender_name"], "@bob");
    assert_eq!(data["channel_name"], "backend");
    assert!(data["team_id"].as_str().unwrap().len() == 26);
    assert_eq!(data["set_online"], true);
    assert_eq!(posted.event.broadcast.channel_id, channel);
    assert!(
        posted.recipients.contains(&bob.to_string())
            && posted.recipients.contains(&alice.to_string())
    );
    // Trap 23: mentions only for the mentioned user, naming only that user.
    let mentions = &posted.per_user_data[alice.as_str()]["mentions"];
    assert_eq!(mentions, &json!(format!("[\"{alice}\"]")));
    assert!(!posted.per_user_data.contains_key(bob.as_str()));

    // A reply: thread_updated per follower with string-JSON thread and previous counters.
    let events = env.run.sim.with_state(|s| {
        s.create_post(bob, NewPost::reply(ch, root, "second @alice"))
            .unwrap();
        s.take_outbox()
    });
    let updates: Vec<_> = events
        .iter()
        .filter(|d| d.event.event == "thread_updated")
        .collect();
    let for_alice = updates
        .iter()
        .find(|d| d.recipients == vec![alice.to_string()])
        .unwrap();
    let thread: Value =
        serde_json::from_str(for_alice.event.data["thread"].as_str().unwrap()).unwrap();
    assert_eq!(thread["id"], root.as_str());
    assert!(thread.get("is_following").is_none());
    assert_eq!(thread["unread_mentions"], 1);
    assert!(for_alice.event.data["previous_unread_replies"].is_i64());
    assert_eq!(for_alice.event.broadcast.user_id, alice.to_string());

    // Viewing: multiple_channels_viewed, never channel_viewed (trap 24).
    let events = env.run.sim.with_state(|s| {
        s.view_channels(alice, &[ch], true);
        s.take_outbox()
    });
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.event, "multiple_channels_viewed");
    assert!(events[0].event.data["channel_times"][channel.as_str()].is_i64());
    assert!(
        env.run
            .sim
            .with_state(|s| {
                s.view_channels(alice, &[ch], true);
                s.take_outbox()
            })
            .is_empty()
    );

    // Deleting: post_deleted carries the post before deletion, one event only (trap 33).
    let events = env.run.sim.with_state(|s| {
        s.delete_post(bob, root).unwrap();
        s.take_outbox()
    });
    assert_eq!(events.len(), 1);
    let before: Value =
        serde_json::from_str(events[0].event.data["post"].as_str().unwrap()).unwrap();
    assert_eq!(
        (before["delete_at"].as_i64(), before["message"].as_str()),
        (Some(0), Some("hi @alice"))
    );

    // Preferences: string JSON list to the user only.
    let events = env.run.sim.with_state(|s| {
        let pref = mmsim::model::Preference {
            user_id: alice.to_string(),
            category: "c".into(),
            name: "n".into(),
            value: "v".into(),
        };
        s.save_preferences(alice, vec![pref]).unwrap();
        s.take_outbox()
    });
    assert_eq!(events[0].event.event, "preferences_changed");
    assert!(events[0].event.data["preferences"].is_string());
    assert_eq!(events[0].recipients, vec![alice.to_string()]);
}

// ------------------------------------------------------------------------------------------
// driver, admin endpoints and the binary
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn driver_and_admin_endpoints() {
    let env = Env::start().await;
    let channel = env.channel("company", "off-topic");
    let admin = |path: &str, body: Value| {
        env.http
            .post(format!("{}/mmsim/admin/{path}", env.run.url))
            .json(&body)
            .send()
    };
    let resp = admin(
        "post",
        json!({"user": "bob", "channel_id": channel, "message": "from admin"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, post) = env.get(&format!("/posts/{id}")).await;
    assert_eq!(post["message"], "from admin");
    let resp = admin(
        "post",
        json!({"user": "nobody", "channel_id": channel, "message": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = admin(
        "react",
        json!({"user": "carol", "post_id": id, "emoji": "tada"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = admin(
        "preferences",
        json!({"user": "alice", "preferences": [{"category": "c", "name": "n", "value": "v"}]}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let (_, pref) = env.get("/users/me/preferences/c/name/n").await;
    assert_eq!(pref["value"], "v");
    let info: Value = env
        .http
        .get(format!("{}/mmsim/admin/info", env.run.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["user"]["username"], "alice");
    assert_eq!(info["user"]["token"], env.token.as_str());
    assert_eq!(
        info["oauth_app"]["client_secret"].as_str().unwrap().len(),
        26
    );

    // Random live activity: deterministic steps, no timers needed.
    let before = env.run.sim.with_state(|s| s.posts.len());
    let driver = env.driver();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
    for _ in 0..20 {
        driver.random_action(&mut rng).unwrap();
    }
    assert!(env.run.sim.with_state(|s| s.posts.len()) > before);

    // Members and channel updates.
    let dave = driver.user_id("dave").unwrap();
    let frontend = env.channel("engineering", "frontend");
    driver.add_member(&frontend, "dave").unwrap();
    let (status, _) = env
        .get(&format!("/channels/{frontend}/members/{dave}"))
        .await;
    assert_eq!(status, 200);
    driver.remove_member(&frontend, "dave").unwrap();
    let (status, _) = env
        .get(&format!("/channels/{frontend}/members/{dave}"))
        .await;
    assert_eq!(status, 404);
    driver.update_channel(&frontend, Some("Web"), None).unwrap();
    let (_, ch) = env.get(&format!("/channels/{frontend}")).await;
    assert_eq!(ch["display_name"], "Web");
}

#[tokio::test]
async fn binary_prints_one_ready_line() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mmsim"))
        .args(["--seed", "1", "--size", "demo", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::io::BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .unwrap()
        .unwrap();
    let rest = line
        .strip_prefix("mmsim ready url=http://127.0.0.1:")
        .unwrap();
    let parts: Vec<&str> = rest.split(' ').collect();
    assert_eq!(parts.len(), 3, "{line}");
    assert_eq!(parts[1], "user=alice");
    let token = parts[2].strip_prefix("token=").unwrap();
    let url = format!("http://127.0.0.1:{}", parts[0]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resp = reqwest::Client::builder()
        .build()
        .unwrap()
        .get(format!("{url}/api/v4/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    child.kill().await.unwrap();
}
