//! REST endpoints, as `impl Client` blocks grouped by area. Each method documents the route it
//! calls; surprising server behaviour cites `shared/research/mattermost-api.md`.
//!
//! `user_id` parameters accept [`crate::ME`].

mod channels;
mod misc;
mod posts;
mod threads;
mod users;

pub use channels::{ChannelsForUserQuery, Conditional};
pub use posts::{ChannelPostsQuery, NewPost, PostPatch, PostThreadQuery, ThreadDirection};
pub use threads::UserThreadsQuery;

/// Largest page the server accepts (`per_page` is silently clamped to 200; research §0 trap 16).
pub const MAX_PER_PAGE: u32 = 200;

/// Largest batch for preference updates and similar list bodies.
pub const MAX_BATCH: usize = 100;

/// Ids per `POST /users/ids`. The server sets no count limit (`getUsersByIds` only refuses an
/// empty list; the body is bounded by `MaximumPayloadSizeBytes`, 300 kB ≈ 10,000 ids); 1,000
/// keeps one answer around 1 MB and lets a large initial sync read every profile in one call.
pub const MAX_USER_IDS: usize = 1000;

/// `?page=&per_page=` query.
#[derive(serde::Serialize)]
pub(crate) struct Paging {
    pub page: i64,
    pub per_page: u32,
}
