use http::Method;
use serde::Serialize;

use crate::api::MAX_PER_PAGE;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::models::{JsonMap, ME, Post, PostList, Reaction};
use crate::secret::MessageText;

fn is_false(b: &bool) -> bool {
    !*b
}

/// Options of `GET /channels/{c}/posts`. Precedence on the server: `since` > `after` >
/// `before` > plain page (research §4.2).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelPostsQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Clamped to 200 by the server (default 60).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_page: Option<u32>,
    /// Posts with `update_at > since` (strict), at most 1000, deleted ones included; with
    /// `collapsed_threads` **roots only** (research §0 trap 17).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Post id cursor: older posts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Post id cursor: newer posts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Do not add the threads' other posts to `posts`.
    #[serde(rename = "skipFetchThreads", skip_serializing_if = "is_false")]
    pub skip_fetch_threads: bool,
    /// Collapsed reply threads: roots only, with `reply_count`, `participants`, `is_following`.
    #[serde(rename = "collapsedThreads", skip_serializing_if = "is_false")]
    pub collapsed_threads: bool,
    /// With `collapsed_threads`: full participant objects.
    #[serde(rename = "collapsedThreadsExtended", skip_serializing_if = "is_false")]
    pub collapsed_threads_extended: bool,
}

/// Direction of a paged thread read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreadDirection {
    /// Older posts.
    Up,
    /// Newer posts.
    Down,
}

/// Options of `GET /posts/{id}/thread`; the server's names are camelCase (research §0 trap 15).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PostThreadQuery {
    /// Page size; `None`/0 = everything. **More than 200 is a 400** (not clamped), so it is
    /// refused before sending.
    #[serde(rename = "perPage", skip_serializing_if = "Option::is_none")]
    pub per_page: Option<u32>,
    /// Cursor post id (needs `from_create_at`).
    #[serde(rename = "fromPost", skip_serializing_if = "Option::is_none")]
    pub from_post: Option<String>,
    #[serde(rename = "fromCreateAt", skip_serializing_if = "Option::is_none")]
    pub from_create_at: Option<i64>,
    /// Not together with `from_create_at`.
    #[serde(rename = "fromUpdateAt", skip_serializing_if = "Option::is_none")]
    pub from_update_at: Option<i64>,
    /// Needs `from_update_at`; not with `direction = Up`.
    #[serde(rename = "updatesOnly", skip_serializing_if = "is_false")]
    pub updates_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<ThreadDirection>,
    #[serde(rename = "skipFetchThreads", skip_serializing_if = "is_false")]
    pub skip_fetch_threads: bool,
    #[serde(rename = "collapsedThreads", skip_serializing_if = "is_false")]
    pub collapsed_threads: bool,
    #[serde(rename = "collapsedThreadsExtended", skip_serializing_if = "is_false")]
    pub collapsed_threads_extended: bool,
}

impl PostThreadQuery {
    fn validate(&self) -> Result<()> {
        let fail = |m: &str| Err(Error::InvalidArgument(m.to_owned()));
        if self.per_page.is_some_and(|p| p > MAX_PER_PAGE) {
            return fail("perPage must be at most 200 (the server answers 400 otherwise)");
        }
        if self.from_post.is_some() && self.from_create_at.is_none() {
            return fail("fromPost needs fromCreateAt");
        }
        if self.from_update_at.is_some() && self.from_create_at.is_some() {
            return fail("fromUpdateAt and fromCreateAt are mutually exclusive");
        }
        if self.updates_only
            && (self.from_update_at.is_none() || self.direction == Some(ThreadDirection::Up))
        {
            return fail("updatesOnly needs fromUpdateAt and cannot go up");
        }
        Ok(())
    }
}

/// A post to create (`POST /posts`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewPost {
    pub channel_id: String,
    pub message: MessageText,
    /// The thread's **root** id (the id of a reply is refused with 400, research §0 trap 36).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub root_id: String,
    /// Client-chosen id for deduplication. The server only remembers it for 30 s (trap 35).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pending_post_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub props: Option<JsonMap>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_ids: Vec<String>,
}

impl NewPost {
    /// A root post in `channel_id`.
    pub fn new(channel_id: impl Into<String>, message: impl Into<MessageText>) -> Self {
        Self {
            channel_id: channel_id.into(),
            message: message.into(),
            ..Self::default()
        }
    }

    /// Make it a reply in the thread of `root_id`.
    #[must_use]
    pub fn reply_to(mut self, root_id: impl Into<String>) -> Self {
        self.root_id = root_id.into();
        self
    }

    /// Set the deduplication id.
    #[must_use]
    pub fn pending_post_id(mut self, id: impl Into<String>) -> Self {
        self.pending_post_id = id.into();
        self
    }

    /// Set `props`.
    #[must_use]
    pub fn props(mut self, props: JsonMap) -> Self {
        self.props = Some(props);
        self
    }

    /// Attach uploaded files (≤ 10).
    #[must_use]
    pub fn file_ids(mut self, ids: Vec<String>) -> Self {
        self.file_ids = ids;
        self
    }
}

/// A partial post update (`PUT /posts/{id}/patch`); `None` fields are left unchanged.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PostPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_pinned: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub props: Option<JsonMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_reactions: Option<bool>,
}

impl Client {
    /// `GET /channels/{c}/posts`.
    pub async fn get_posts_for_channel(
        &self,
        channel_id: &str,
        query: &ChannelPostsQuery,
    ) -> Result<PostList> {
        self.json(
            self.request(Method::GET, &["channels", channel_id, "posts"])
                .query(query)?,
        )
        .await
    }

    /// `GET /posts/{id}`.
    pub async fn get_post(&self, post_id: &str) -> Result<Post> {
        self.json(self.request(Method::GET, &["posts", post_id]))
            .await
    }

    /// `GET /users/{u}/posts/flagged?page=&per_page=`: the user's saved posts (saving is the
    /// preference `flagged_post` / post id / `"true"`).
    pub async fn get_flagged_posts(
        &self,
        user_id: &str,
        page: u32,
        per_page: u32,
    ) -> Result<PostList> {
        self.json(
            self.request(Method::GET, &["users", user_id, "posts", "flagged"])
                .query(&crate::api::Paging {
                    page: i64::from(page),
                    per_page: per_page.min(MAX_PER_PAGE),
                })?,
        )
        .await
    }

    /// `POST /posts/ids` (≤ 1000 ids per call, chunked here).
    pub async fn get_posts_by_ids(&self, ids: &[String]) -> Result<Vec<Post>> {
        let mut posts = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let batch: Vec<Post> = self
                .json(self.request(Method::POST, &["posts", "ids"]).json(chunk)?)
                .await?;
            posts.extend(batch);
        }
        Ok(posts)
    }

    /// `GET /posts/{id}/thread`: the root and its replies (`id` may be any post of the thread).
    ///
    /// The server's `order` is not sorted (research §0 trap 15); here it is **sorted oldest
    /// first** by `(create_at, id)`, so the root comes first.
    pub async fn get_post_thread(
        &self,
        post_id: &str,
        query: &PostThreadQuery,
    ) -> Result<PostList> {
        query.validate()?;
        let mut list: PostList = self
            .json(
                self.request(Method::GET, &["posts", post_id, "thread"])
                    .query(query)?,
            )
            .await?;
        sort_oldest_first(&mut list);
        Ok(list)
    }

    /// `POST /posts` (201 with the created post). On a 500 with
    /// [`Error::is_pending_post_duplicate`], another request with the same `pending_post_id`
    /// is still running: re-read instead of resending.
    pub async fn create_post(&self, post: &NewPost) -> Result<Post> {
        if post.channel_id.is_empty() {
            return Err(Error::InvalidArgument("channel_id is required".into()));
        }
        self.json(self.request(Method::POST, &["posts"]).json(post)?)
            .await
    }

    /// `PUT /posts/{id}/patch`.
    pub async fn patch_post(&self, post_id: &str, patch: &PostPatch) -> Result<Post> {
        self.json(
            self.request(Method::PUT, &["posts", post_id, "patch"])
                .json(patch)?,
        )
        .await
    }

    /// `DELETE /posts/{id}`: soft-deletes the post and, for a root, all its replies (no events
    /// for the replies, research §0 trap 33).
    pub async fn delete_post(&self, post_id: &str) -> Result<()> {
        self.no_content(self.request(Method::DELETE, &["posts", post_id]))
            .await
    }

    /// `POST /reactions`. `user_id` must be the session user's real id (`me` is refused by the
    /// server with 403, so it is refused here). Answers 200, not the spec's 201 (trap 18).
    pub async fn add_reaction(
        &self,
        user_id: &str,
        post_id: &str,
        emoji_name: &str,
    ) -> Result<Reaction> {
        if user_id == ME || user_id.is_empty() {
            return Err(Error::InvalidArgument(
                "add_reaction needs the user's id, not \"me\"".into(),
            ));
        }
        self.json(
            self.request(Method::POST, &["reactions"])
                .json(&serde_json::json!({
                    "user_id": user_id,
                    "post_id": post_id,
                    "emoji_name": emoji_name,
                }))?,
        )
        .await
    }

    /// `DELETE /users/{u}/posts/{p}/reactions/{emoji_name}`.
    pub async fn remove_reaction(
        &self,
        user_id: &str,
        post_id: &str,
        emoji_name: &str,
    ) -> Result<()> {
        self.no_content(self.request(
            Method::DELETE,
            &["users", user_id, "posts", post_id, "reactions", emoji_name],
        ))
        .await
    }
}

fn sort_oldest_first(list: &mut PostList) {
    let posts = &list.posts;
    list.order.sort_by(|a, b| {
        let key = |id: &String| posts.get(id).map(|p| p.create_at);
        key(a).cmp(&key(b)).then_with(|| a.cmp(b))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_query_validation_and_names() {
        let q = PostThreadQuery {
            per_page: Some(201),
            ..Default::default()
        };
        assert!(matches!(q.validate(), Err(Error::InvalidArgument(_))));
        let q = PostThreadQuery {
            per_page: Some(50),
            from_post: Some("p".into()),
            from_create_at: Some(5),
            direction: Some(ThreadDirection::Down),
            collapsed_threads: true,
            ..Default::default()
        };
        q.validate().unwrap();
        assert_eq!(
            serde_urlencoded::to_string(&q).unwrap(),
            "perPage=50&fromPost=p&fromCreateAt=5&direction=down&collapsedThreads=true"
        );
        let q = PostThreadQuery {
            updates_only: true,
            ..Default::default()
        };
        assert!(q.validate().is_err());
    }

    #[test]
    fn channel_posts_query_names() {
        let q = ChannelPostsQuery {
            since: Some(10),
            collapsed_threads: true,
            per_page: Some(200),
            ..Default::default()
        };
        assert_eq!(
            serde_urlencoded::to_string(&q).unwrap(),
            "per_page=200&since=10&collapsedThreads=true"
        );
    }

    #[test]
    fn new_post_body() {
        let p = NewPost::new("c1", "hi")
            .reply_to("r1")
            .pending_post_id("u:1");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"channel_id":"c1","message":"hi","root_id":"r1","pending_post_id":"u:1"})
        );
        assert!(!format!("{p:?}").contains("hi\""));
    }

    #[test]
    fn thread_sorting() {
        let mut list: PostList = serde_json::from_str(
            r#"{"order":["b","c","a"],"posts":{"a":{"id":"a","create_at":1},"b":{"id":"b","create_at":3},"c":{"id":"c","create_at":2}}}"#,
        )
        .unwrap();
        sort_oldest_first(&mut list);
        assert_eq!(list.order, ["a", "c", "b"]);
        assert_eq!(list.ordered().count(), 3);
    }
}
