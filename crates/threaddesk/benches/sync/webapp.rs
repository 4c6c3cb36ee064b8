//! P-2: the peer. The REST calls Mattermost's own web app makes to show the same thing
//! ThreadDesk's queue shows (every followed thread and every active DM/GM across all teams),
//! replayed against the same mmsim with the same latency so mmsim's counters compare like
//! with like (research `reliability-security-performance.md` §B4, option "replay the webapp's
//! exact sequences"; the official `@mattermost/client` is not used: no Node harness here, the
//! requests are the same paths and query strings `Client4` builds).
//!
//! Sources (research §B1 and its source list):
//! - [S38] `mattermost-redux/src/actions/users.ts` `loadMe`: 6 parallel calls (client config,
//!   license, me, preferences, my teams, my team members), then `teams/unread`, then the users
//!   limit: 8 calls before any channel or thread.
//! - [S39] `actions/channel_actions.ts` `fetchChannelsAndMembers` →
//!   `mattermost-redux/src/actions/channels.ts` `fetchMyChannelsAndMembersREST(teamId)`: two
//!   calls in a `Promise.all` (`/users/me/teams/{id}/channels`, `…/channels/members`) on every
//!   team switch. The team list includes the DM/GM channels.
//! - [S15] `mattermost-redux/src/actions/threads.ts` `getThreads`: `GET /users/{uid}/teams/{tid}/
//!   threads?per_page=20&extended=true&threadsOnly=true` paged with `before=<last id>` (infinite
//!   scroll), each page followed by `getMissingProfilesByIds` (only ids not yet known) and
//!   `getMissingFilesByPosts` (one `files/info` read per root post with unknown files);
//!   `getThreadCounts` is one more call with `totalsOnly=true`. [S17] `THREADS_CHUNK_SIZE = 20`.
//!   The webapp does not pass `excludeDirect`, so DM/GM threads appear in every team's list.
//! - DM/GM conversations (not derived in §B1; our reading of the webapp): opening a
//!   conversation loads its latest posts (`actions/views/channel.ts` `loadLatestPosts` →
//!   `getPosts(channelId, 0, POST_CHUNK_SIZE / 2)`, i.e. `GET /channels/{id}/posts?page=0&
//!   per_page=30`), and the sidebar's DM/GM names need the partners' profiles
//!   (`getMissingProfilesByIds`). One such read per DM/GM with activity in the window — the same
//!   set ThreadDesk lists.
//!
//! Concurrency as in the source: `loadMe`'s `Promise.all`; per team the channel/member pair and
//! the counts in parallel; thread pages one after the other (each page is requested when the
//! previous one has been shown); teams one after the other (a person switches teams). That is
//! the webapp's best case: no think time between team switches.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Which view the loader reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every followed thread of every team (ThreadDesk's complete queue).
    All,
    /// Only unread threads (`unread=true`, the "Unreads" tab of the Threads view).
    Unread,
}

/// What the loader saw (call counts and bytes come from mmsim's counters, not from here).
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub wall_ms: f64,
    pub threads: usize,
    pub directs: usize,
    pub thread_pages: usize,
}

pub struct WebApp {
    http: reqwest::Client,
    base: String,
    token: String,
    known_users: HashSet<String>,
}

/// `THREADS_CHUNK_SIZE` [S17].
const THREADS_CHUNK_SIZE: usize = 20;
/// `POST_CHUNK_SIZE / 2` (`loadLatestPosts`).
const LATEST_POSTS: usize = 30;
/// `getMissingProfilesByIds` batches (`POST /users/ids` takes up to 100 ids per request in the
/// webapp's `getProfilesByIds` debounce).
const PROFILE_BATCH: usize = 100;

impl WebApp {
    pub fn new(base: &str, token: &str) -> Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            base: format!("{base}/api/v4"),
            token: token.to_owned(),
            known_users: HashSet::new(),
        })
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("X-Requested-With", "XMLHttpRequest")
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        if !status.is_success() {
            // Routes mmsim does not serve (license, users limits) answer 404; the webapp makes
            // the call either way, and it is counted.
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("X-Requested-With", "XMLHttpRequest")
            .json(body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("POST {path}: {}", r.status());
        }
        Ok(r.json().await?)
    }

    /// `getMissingProfilesByIds`: only ids not yet in the (session-wide) profile store.
    async fn missing_profiles(&mut self, ids: impl IntoIterator<Item = String>) -> Result<()> {
        let missing: Vec<String> = ids
            .into_iter()
            .filter(|id| !id.is_empty() && !self.known_users.contains(id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for chunk in missing.chunks(PROFILE_BATCH) {
            let users = self.post("/users/ids", &serde_json::json!(chunk)).await?;
            for u in users.as_array().into_iter().flatten() {
                if let Some(id) = u["id"].as_str() {
                    self.known_users.insert(id.to_owned());
                }
            }
            // Ids the server did not return are not asked again either.
            self.known_users.extend(chunk.iter().cloned());
        }
        Ok(())
    }

    /// Load what the webapp needs to show every followed (or unread) thread of every team and
    /// every DM/GM with activity since `since` (ms).
    pub async fn load(&mut self, mode: Mode, since: i64) -> Result<Loaded> {
        let started = Instant::now();
        let mut out = Loaded::default();
        // loadMe [S38]: 6 in parallel, then teams/unread, then the users limit.
        let (_config, _license, me, _prefs, teams, _members) = tokio::try_join!(
            self.get("/config/client?format=old"),
            self.get("/license/client?format=old"),
            self.get("/users/me"),
            self.get("/users/me/preferences"),
            self.get("/users/me/teams"),
            self.get("/users/me/teams/members"),
        )?;
        self.get("/users/me/teams/unread?include_collapsed_threads=true")
            .await?;
        self.get("/limits/users").await?;
        let me_id = me["id"].as_str().context("me.id")?.to_owned();
        self.known_users.insert(me_id.clone());
        let team_ids: Vec<String> = teams
            .as_array()
            .context("teams")?
            .iter()
            .filter(|t| t["delete_at"].as_i64().unwrap_or(0) == 0)
            .filter_map(|t| t["id"].as_str().map(str::to_owned))
            .collect();

        let mut directs: Vec<(String, String, String)> = Vec::new();
        let mut seen_threads: HashSet<String> = HashSet::new();
        let mut files_known: HashSet<String> = HashSet::new();
        for team in &team_ids {
            // Team switch: channels + members [S39] and the thread counts [S15], in parallel.
            let (p_channels, p_members, p_counts) = (
                format!("/users/me/teams/{team}/channels?include_deleted=true"),
                format!("/users/me/teams/{team}/channels/members"),
                format!("/users/{me_id}/teams/{team}/threads?totalsOnly=true&threadsOnly=false"),
            );
            let (channels, _members, _counts) = tokio::try_join!(
                self.get(&p_channels),
                self.get(&p_members),
                self.get(&p_counts),
            )?;
            if directs.is_empty() {
                for ch in channels.as_array().into_iter().flatten() {
                    let ty = ch["type"].as_str().unwrap_or_default();
                    if (ty == "D" || ty == "G")
                        && ch["delete_at"].as_i64().unwrap_or(0) == 0
                        && ch["last_post_at"].as_i64().unwrap_or(0) >= since
                    {
                        directs.push((
                            ch["id"].as_str().unwrap_or_default().to_owned(),
                            ty.to_owned(),
                            ch["name"].as_str().unwrap_or_default().to_owned(),
                        ));
                    }
                }
            }
            // The Threads view, scrolled to the end: pages of 20 [S15][S17].
            let mut before: Option<String> = None;
            loop {
                let mut q = format!(
                    "per_page={THREADS_CHUNK_SIZE}&extended=true&threadsOnly=true&deleted=false"
                );
                if mode == Mode::Unread {
                    q.push_str("&unread=true");
                }
                if let Some(b) = &before {
                    q.push_str("&before=");
                    q.push_str(b);
                }
                let page = self
                    .get(&format!("/users/{me_id}/teams/{team}/threads?{q}"))
                    .await?;
                out.thread_pages += 1;
                let threads = page["threads"].as_array().cloned().unwrap_or_default();
                let n = threads.len();
                let mut people = Vec::new();
                let mut with_files = Vec::new();
                for t in &threads {
                    if let Some(id) = t["id"].as_str() {
                        seen_threads.insert(id.to_owned());
                    }
                    for p in t["participants"].as_array().into_iter().flatten() {
                        if let Some(id) = p["id"].as_str() {
                            people.push(id.to_owned());
                        }
                    }
                    let post = &t["post"];
                    if post["file_ids"].as_array().is_some_and(|f| !f.is_empty())
                        && let Some(pid) = post["id"].as_str()
                        && files_known.insert(pid.to_owned())
                    {
                        with_files.push(pid.to_owned());
                    }
                }
                self.missing_profiles(people).await?;
                for pid in with_files {
                    self.get(&format!("/posts/{pid}/files/info")).await?;
                }
                if n < THREADS_CHUNK_SIZE {
                    break;
                }
                before = threads
                    .last()
                    .and_then(|t| t["id"].as_str())
                    .map(str::to_owned);
                if before.is_none() {
                    break;
                }
            }
        }
        // DM/GM conversations with activity in the window: latest posts, partner profiles.
        let mut partners = Vec::new();
        for (id, ty, name) in &directs {
            let posts = self
                .get(&format!(
                    "/channels/{id}/posts?page=0&per_page={LATEST_POSTS}"
                ))
                .await?;
            if ty == "D" {
                partners.extend(name.split("__").map(str::to_owned));
            }
            for p in posts["posts"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                if let Some(u) = p["user_id"].as_str() {
                    partners.push(u.to_owned());
                }
            }
        }
        self.missing_profiles(partners).await?;
        out.threads = seen_threads.len();
        out.directs = directs.len();
        out.wall_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(out)
    }
}
