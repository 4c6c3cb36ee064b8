use http::Method;
use serde::Serialize;

use crate::api::{MAX_PER_PAGE, Paging};
use crate::client::Client;
use crate::error::{Error, Result, describe_json_error, is_truncation};
use crate::models::{
    Channel, ChannelMember, ChannelUnreadAt, Team, TeamMember, TeamUnread, ViewChannelResponse,
};

/// Options of `GET /users/{u}/channels`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelsForUserQuery {
    /// Include archived channels.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub include_deleted: bool,
    /// With `include_deleted`: only channels archived after this time (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delete_at: Option<i64>,
}

/// The answer of a conditional GET (`If-None-Match`).
#[derive(Debug, Clone)]
pub enum Conditional<T> {
    /// `304 Not Modified`: the list is unchanged since the ETag was issued (empty body).
    NotModified,
    /// A full answer and its ETag (absent if the server sent none).
    Fresh { value: T, etag: Option<String> },
}

impl Client {
    /// `GET /users/{u}/teams/{t}/channels` with an optional `If-None-Match`: the user's
    /// channels of team `t` **plus every DM/GM** (the server selects `TeamId = t OR TeamId = ''`).
    /// The server's ETag is `{version}.{channel id}.{newest last_post_at/update_at}.0.{count}`
    /// over that list (`model.ChannelList.Etag`), so an unchanged ETag means: no new post and
    /// no channel update in team `t` or any DM/GM, and no channel joined or left there.
    pub async fn get_channels_for_team_for_user(
        &self,
        user_id: &str,
        team_id: &str,
        if_none_match: Option<&str>,
    ) -> Result<Conditional<Vec<Channel>>> {
        let mut req = self.request(
            Method::GET,
            &["users", user_id, "teams", team_id, "channels"],
        );
        if let Some(tag) = if_none_match
            && let Ok(v) = http::HeaderValue::from_str(tag)
        {
            req = req.header(http::header::IF_NONE_MATCH, v);
        }
        let resp = self.send(req).await?;
        if resp.status() == http::StatusCode::NOT_MODIFIED {
            let _ = resp.bytes().await;
            return Ok(Conditional::NotModified);
        }
        let etag = resp
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Conditional::Fresh {
            value: resp.json().await?,
            etag,
        })
    }

    /// `GET /users/{u}/teams/{t}/channels/members`: the user's memberships of team `t`'s
    /// channels **plus every DM/GM** (`Teams.Id = t OR Teams.Id = ''`), one call, no paging.
    pub async fn get_channel_members_for_team_for_user(
        &self,
        user_id: &str,
        team_id: &str,
    ) -> Result<Vec<ChannelMember>> {
        self.json(self.request(
            Method::GET,
            &["users", user_id, "teams", team_id, "channels", "members"],
        ))
        .await
    }

    /// `GET /users/{u}/teams`.
    pub async fn get_teams_for_user(&self, user_id: &str) -> Result<Vec<Team>> {
        self.json(self.request(Method::GET, &["users", user_id, "teams"]))
            .await
    }

    /// `GET /users/{u}/teams/members`.
    pub async fn get_team_members_for_user(&self, user_id: &str) -> Result<Vec<TeamMember>> {
        self.json(self.request(Method::GET, &["users", user_id, "teams", "members"]))
            .await
    }

    /// `GET /users/{u}/teams/unread`. With `include_collapsed_threads`, the per-team
    /// `thread_*` counters are filled (one call tells which teams' threads changed;
    /// reliability finding 4). DM/GM threads count in no team.
    pub async fn get_teams_unread(
        &self,
        user_id: &str,
        include_collapsed_threads: bool,
    ) -> Result<Vec<TeamUnread>> {
        let mut req = self.request(Method::GET, &["users", user_id, "teams", "unread"]);
        if include_collapsed_threads {
            // The server compares to the literal "true" (research §1).
            req = req.query(&[("include_collapsed_threads", "true")])?;
        }
        self.json(req).await
    }

    /// `GET /users/{u}/channels`: the user's channels in **all teams plus DMs/GMs** in one
    /// call. The body is hand-streamed; an error mid-stream leaves a truncated body under
    /// status 200, reported here as [`Error::Decode`] (research §0 trap 19).
    pub async fn get_channels_for_user(
        &self,
        user_id: &str,
        query: &ChannelsForUserQuery,
    ) -> Result<Vec<Channel>> {
        self.json(
            self.request(Method::GET, &["users", user_id, "channels"])
                .query(query)?,
        )
        .await
    }

    /// `GET /users/{u}/channel_members?page=&per_page=`: one page of the user's channel
    /// memberships across all teams plus DMs/GMs (with team data).
    pub async fn get_channel_members_for_user(
        &self,
        user_id: &str,
        page: u32,
        per_page: u32,
    ) -> Result<Vec<ChannelMember>> {
        self.json(
            self.request(Method::GET, &["users", user_id, "channel_members"])
                .query(&Paging {
                    page: i64::from(page),
                    per_page: per_page.min(MAX_PER_PAGE),
                })?,
        )
        .await
    }

    /// Every channel membership of the user, in pages of 200 until a short page.
    pub async fn get_all_channel_members_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<ChannelMember>> {
        let mut all = Vec::new();
        for page in 0.. {
            let batch = self
                .get_channel_members_for_user(user_id, page, MAX_PER_PAGE)
                .await?;
            let len = batch.len();
            all.extend(batch);
            if len < MAX_PER_PAGE as usize {
                break;
            }
        }
        Ok(all)
    }

    /// Every channel membership in **one call**: `page=-1` makes the server stream NDJSON
    /// (`application/x-ndjson`, one member per line; research §0 trap 19).
    pub async fn get_channel_members_for_user_ndjson(
        &self,
        user_id: &str,
    ) -> Result<Vec<ChannelMember>> {
        let req = self
            .request(Method::GET, &["users", user_id, "channel_members"])
            .query(&[("page", "-1")])?;
        let resp = self.send(req).await?;
        let endpoint = resp.endpoint.clone();
        let body = resp.bytes().await?;
        parse_ndjson(&body).map_err(|(reason, truncated)| Error::Decode {
            endpoint,
            reason,
            truncated,
        })
    }

    /// `GET /channels/{c}`.
    pub async fn get_channel(&self, channel_id: &str) -> Result<Channel> {
        self.json(self.request(Method::GET, &["channels", channel_id]))
            .await
    }

    /// `GET /channels/{c}/members/{u}`.
    pub async fn get_channel_member(
        &self,
        channel_id: &str,
        user_id: &str,
    ) -> Result<ChannelMember> {
        self.json(self.request(Method::GET, &["channels", channel_id, "members", user_id]))
            .await
    }

    /// `POST /channels/members/{u}/view`: mark `channel_id` read.
    ///
    /// Always sends `collapsed_threads_supported: true`: without it the server marks **every
    /// thread of the channel read** (research §0 trap 25). Only channels that had unreads
    /// produce a `multiple_channels_viewed` event (trap 24).
    pub async fn view_channel(
        &self,
        user_id: &str,
        channel_id: &str,
        prev_channel_id: Option<&str>,
    ) -> Result<ViewChannelResponse> {
        #[derive(Serialize)]
        struct Body<'a> {
            channel_id: &'a str,
            prev_channel_id: &'a str,
            collapsed_threads_supported: bool,
        }
        self.json(
            self.request(Method::POST, &["channels", "members", user_id, "view"])
                .json(&Body {
                    channel_id,
                    prev_channel_id: prev_channel_id.unwrap_or(""),
                    collapsed_threads_supported: true,
                })?,
        )
        .await
    }

    /// `POST /channels/members/{u}/mark_read`: mark several channels read in one call (always
    /// CRT-aware on the server). `channel_ids` must not be empty.
    pub async fn mark_channels_read(
        &self,
        user_id: &str,
        channel_ids: &[String],
    ) -> Result<ViewChannelResponse> {
        if channel_ids.is_empty() {
            return Err(Error::InvalidArgument("no channel ids".into()));
        }
        self.json(
            self.request(Method::POST, &["channels", "members", user_id, "mark_read"])
                .json(channel_ids)?,
        )
        .await
    }

    /// `POST /users/{u}/posts/{p}/set_unread`: mark the channel unread from post `p` on.
    /// Returns the member's new **read** counts (research §0 trap 8). Sends
    /// `collapsed_threads_supported: true`.
    pub async fn set_post_unread(&self, user_id: &str, post_id: &str) -> Result<ChannelUnreadAt> {
        self.json(
            self.request(
                Method::POST,
                &["users", user_id, "posts", post_id, "set_unread"],
            )
            .json(&serde_json::json!({ "collapsed_threads_supported": true }))?,
        )
        .await
    }
}

/// Parse an NDJSON body (blank lines ignored). On error: the description and whether the
/// body looks truncated (the failing line is the last one and ends early).
fn parse_ndjson<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, (String, bool)> {
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    let last = lines.len().saturating_sub(1);
    lines
        .iter()
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(i, line)| {
            serde_json::from_slice(line).map_err(|e| {
                (
                    format!("NDJSON line {}: {}", i + 1, describe_json_error(&e)),
                    i == last && is_truncation(&e),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_members() {
        let body = b"{\"channel_id\":\"c1\",\"user_id\":\"u\",\"msg_count\":3,\"team_name\":\"t\"}\n{\"channel_id\":\"c2\",\"user_id\":\"u\",\"notify_props\":null}\n\n";
        let m: Vec<ChannelMember> = parse_ndjson(body).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].msg_count, 3);
        assert_eq!(m[1].channel_id, "c2");
        let (err, truncated) =
            parse_ndjson::<ChannelMember>(b"{\"channel_id\":\"c1\"}\n{\"channel_id\":\"se")
                .unwrap_err();
        assert!(err.contains("line 2") && !err.contains("se\""), "{err}");
        assert!(truncated);
        let (_, truncated) = parse_ndjson::<ChannelMember>(b"{\"channel_id\":5}\n").unwrap_err();
        assert!(!truncated);
    }

    #[test]
    fn channels_query_encoding() {
        let q = serde_urlencoded::to_string(ChannelsForUserQuery::default()).unwrap();
        assert_eq!(q, "");
        let q = serde_urlencoded::to_string(ChannelsForUserQuery {
            include_deleted: true,
            last_delete_at: Some(5),
        })
        .unwrap();
        assert_eq!(q, "include_deleted=true&last_delete_at=5");
    }
}
