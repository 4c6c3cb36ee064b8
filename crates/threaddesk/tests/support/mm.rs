//! Direct Mattermost (mmsim) calls for tests that run ThreadDesk as a child process (no
//! [`super::Stack`]): sign in as a seeded user, GET a path, count a message in a thread.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use threaddesk::store::UserId;

use super::http;

/// A Mattermost session token of a seeded user.
pub async fn mm_login(sim_url: &str, username: &str) -> Result<(UserId, String)> {
    let r = http()
        .post(format!("{sim_url}/api/v4/users/login"))
        .json(&json!({"login_id": username, "password": mmsim::seed::DEMO_PASSWORD}))
        .send()
        .await?;
    ensure!(
        r.status().is_success(),
        "login of {username}: {}",
        r.status()
    );
    let token = r
        .headers()
        .get("token")
        .context("no Token header")?
        .to_str()?
        .to_owned();
    let me: Value = r.json().await?;
    let id = UserId::parse(me["id"].as_str().context("no id")?)?;
    Ok((id, token))
}

/// GET a Mattermost path with a token.
pub async fn mm_get(sim_url: &str, token: &str, path: &str) -> Result<(u16, Value)> {
    let r = http()
        .get(format!("{sim_url}{path}"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// How many live posts of thread `root` carry exactly `message`.
pub async fn count_in_thread(
    sim_url: &str,
    token: &str,
    root: &str,
    message: &str,
) -> Result<usize> {
    let (status, thread) = mm_get(sim_url, token, &format!("/api/v4/posts/{root}/thread")).await?;
    ensure!(status == 200, "GET thread {root}: {status}");
    Ok(thread["posts"].as_object().map_or(0, |posts| {
        posts
            .values()
            .filter(|p| p["message"] == message && p["delete_at"].as_i64().unwrap_or(0) == 0)
            .count()
    }))
}
