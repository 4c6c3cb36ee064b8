use http::Method;
use serde::Serialize;

use crate::api::MAX_PER_PAGE;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::models::{ThreadResponse, Threads};

fn is_false(b: &bool) -> bool {
    !*b
}

/// Options of `GET /users/{u}/teams/{t}/threads` (research §5.3). There is no `page`: paging
/// is by `before`/`after` thread-id cursors on `last_reply_at`.
///
/// The list holds only **followed** threads and also **every DM/GM thread** (their team id is
/// `""`), so the same DM thread appears under each team: set `exclude_direct` for all teams
/// but one (research §0 trap 12).
#[derive(Debug, Clone, Default, Serialize)]
pub struct UserThreadsQuery {
    /// Threads whose membership or last reply changed at or after this time (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Only unread threads (then `total` equals `total_unread_threads`).
    #[serde(skip_serializing_if = "is_false")]
    pub unread: bool,
    /// Full participant objects (otherwise id-only users, trap 11).
    #[serde(skip_serializing_if = "is_false")]
    pub extended: bool,
    /// Include threads whose root was deleted.
    #[serde(skip_serializing_if = "is_false")]
    pub deleted: bool,
    /// Page size, default 60 on the server, at most 200.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_page: Option<u32>,
    /// Threads whose `last_reply_at` is older than this thread's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Threads newer than this thread's, in **ascending** order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Only totals; `threads` comes back `null`.
    #[serde(rename = "totalsOnly", skip_serializing_if = "is_false")]
    pub totals_only: bool,
    /// Only threads; totals are 0.
    #[serde(rename = "threadsOnly", skip_serializing_if = "is_false")]
    pub threads_only: bool,
    /// Leave out DM/GM threads.
    #[serde(rename = "excludeDirect", skip_serializing_if = "is_false")]
    pub exclude_direct: bool,
}

impl UserThreadsQuery {
    fn validate(&self) -> Result<()> {
        if self.before.is_some() && self.after.is_some() {
            return Err(Error::InvalidArgument(
                "before and after are mutually exclusive".into(),
            ));
        }
        if self.totals_only && self.threads_only {
            return Err(Error::InvalidArgument(
                "totalsOnly and threadsOnly are mutually exclusive".into(),
            ));
        }
        Ok(())
    }
}

impl Client {
    /// `GET /users/{u}/teams/{t}/threads`: one page of followed threads plus totals.
    pub async fn get_user_threads(
        &self,
        user_id: &str,
        team_id: &str,
        query: &UserThreadsQuery,
    ) -> Result<Threads> {
        query.validate()?;
        let mut query = query.clone();
        if let Some(p) = query.per_page.as_mut() {
            *p = (*p).min(MAX_PER_PAGE);
        }
        self.json(
            self.request(
                Method::GET,
                &["users", user_id, "teams", team_id, "threads"],
            )
            .query(&query)?,
        )
        .await
    }

    /// Every followed thread matching `query`, newest first: pages of `per_page` (default 200)
    /// with `before = <last id>` until a short page. Totals come from the first page.
    /// `after` and `totals_only` are refused (use [`Client::get_user_threads`]).
    pub async fn get_all_user_threads(
        &self,
        user_id: &str,
        team_id: &str,
        query: &UserThreadsQuery,
    ) -> Result<Threads> {
        if query.after.is_some() || query.totals_only {
            return Err(Error::InvalidArgument(
                "get_all_user_threads pages with `before`; `after`/`totalsOnly` not allowed".into(),
            ));
        }
        let per_page = query
            .per_page
            .unwrap_or(MAX_PER_PAGE)
            .clamp(1, MAX_PER_PAGE);
        let mut q = query.clone();
        q.per_page = Some(per_page);
        let mut all = self.get_user_threads(user_id, team_id, &q).await?;
        let mut last_len = all.threads.len();
        // Subsequent pages need no totals.
        q.threads_only = true;
        while last_len >= per_page as usize {
            let Some(cursor) = all.threads.last().map(|t| t.id.clone()) else {
                break;
            };
            if q.before.as_deref() == Some(cursor.as_str()) {
                break; // no progress; never loop forever
            }
            q.before = Some(cursor);
            let page = self.get_user_threads(user_id, team_id, &q).await?;
            last_len = page.threads.len();
            all.threads.extend(page.threads);
        }
        Ok(all)
    }

    /// `GET /users/{u}/teams/{t}/threads/{id}`. 404 when the user does not follow the thread
    /// or the root has no reply yet (research §5.3). Any of the user's teams works for DM
    /// threads.
    pub async fn get_user_thread(
        &self,
        user_id: &str,
        team_id: &str,
        thread_id: &str,
        extended: bool,
    ) -> Result<ThreadResponse> {
        let mut req = self.request(
            Method::GET,
            &["users", user_id, "teams", team_id, "threads", thread_id],
        );
        if extended {
            req = req.query(&[("extended", "true")])?;
        }
        self.json(req).await
    }

    /// `PUT /users/{u}/teams/{t}/threads/read`: marks all followed threads of the team **and
    /// all DM/GM threads** read (no timestamp segment, research §0 trap 14).
    pub async fn mark_all_threads_read(&self, user_id: &str, team_id: &str) -> Result<()> {
        self.no_content(self.request(
            Method::PUT,
            &["users", user_id, "teams", team_id, "threads", "read"],
        ))
        .await
    }

    /// `PUT /users/{u}/teams/{t}/threads/{id}/read/{timestamp}`: set the thread's
    /// `last_viewed_at` (an earlier time makes it unread again).
    pub async fn update_thread_read(
        &self,
        user_id: &str,
        team_id: &str,
        thread_id: &str,
        timestamp: i64,
    ) -> Result<ThreadResponse> {
        let ts = timestamp.to_string();
        self.json(self.request(
            Method::PUT,
            &[
                "users", user_id, "teams", team_id, "threads", thread_id, "read", &ts,
            ],
        ))
        .await
    }

    /// `POST /users/{u}/teams/{t}/threads/{id}/set_unread/{post_id}`: follow the thread and
    /// make it unread from `post_id` on.
    pub async fn set_thread_unread(
        &self,
        user_id: &str,
        team_id: &str,
        thread_id: &str,
        post_id: &str,
    ) -> Result<ThreadResponse> {
        self.json(self.request(
            Method::POST,
            &[
                "users",
                user_id,
                "teams",
                team_id,
                "threads",
                thread_id,
                "set_unread",
                post_id,
            ],
        ))
        .await
    }

    /// `PUT /users/{u}/teams/{t}/threads/{id}/following` (also works on a root without
    /// replies; following marks the thread read).
    pub async fn follow_thread(&self, user_id: &str, team_id: &str, thread_id: &str) -> Result<()> {
        self.no_content(self.request(
            Method::PUT,
            &[
                "users",
                user_id,
                "teams",
                team_id,
                "threads",
                thread_id,
                "following",
            ],
        ))
        .await
    }

    /// `DELETE /users/{u}/teams/{t}/threads/{id}/following`.
    pub async fn unfollow_thread(
        &self,
        user_id: &str,
        team_id: &str,
        thread_id: &str,
    ) -> Result<()> {
        self.no_content(self.request(
            Method::DELETE,
            &[
                "users",
                user_id,
                "teams",
                team_id,
                "threads",
                thread_id,
                "following",
            ],
        ))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_and_validation() {
        let q = UserThreadsQuery {
            since: Some(7),
            extended: true,
            per_page: Some(200),
            before: Some("t1".into()),
            exclude_direct: true,
            threads_only: true,
            ..Default::default()
        };
        q.validate().unwrap();
        assert_eq!(
            serde_urlencoded::to_string(&q).unwrap(),
            "since=7&extended=true&per_page=200&before=t1&threadsOnly=true&excludeDirect=true"
        );
        let bad = UserThreadsQuery {
            before: Some("a".into()),
            after: Some("b".into()),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = UserThreadsQuery {
            totals_only: true,
            threads_only: true,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
