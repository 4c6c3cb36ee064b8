//! Conversation backfill: the initial sync reads each thread's root (and the DM/GM channels'
//! latest posts) but not every reply. When a conversation is opened and the cache holds fewer
//! messages than Mattermost says exist, the missing ones are read once, with the user's token,
//! and cached (within the retention window like everything else).

use std::time::Duration;

use mattermost::{ChannelPostsQuery, PostThreadQuery};

use super::AppState;
use crate::account;
use crate::inbox::ItemKey;
use crate::store::UserId;
use crate::sync::convert;

/// Messages read for a DM/GM conversation.
const CHANNEL_PAGE: u32 = 60;
/// The conversation page does not wait longer than this for Mattermost.
const BACKFILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the cache lacks messages of the item.
fn incomplete(state: &AppState, user: &UserId, key: &ItemKey) -> bool {
    let us = state.store().for_user(user);
    match key {
        ItemKey::Thread(root) => {
            let Ok(Some(thread)) = us.thread(root) else {
                return false;
            };
            let cached = us.thread_posts(root, 1000).map_or(0, |p| p.len());
            let expected = usize::try_from(thread.reply_count.max(0)).unwrap_or(0) + 1;
            cached < expected.min(200)
        }
        ItemKey::Channel(ch) => {
            let cached = us.channel_posts(ch, None, 30).map_or(0, |p| p.len());
            let total = us
                .channel(ch)
                .ok()
                .flatten()
                .map_or(0, |c| c.total_msg_count);
            cached < 30 && i64::try_from(cached).unwrap_or(0) < total
        }
    }
}

/// Why a backfill ended the request.
#[derive(Debug, PartialEq, Eq)]
pub struct AccessEnded;

/// [`ensure_posts`] for a route given the item key as text (an unparsable key reads nothing:
/// the route answers "not found" itself). `Some` is the answer to give instead when Mattermost
/// refused the user's token (the sign-in page for a page route, 401 for the API).
pub async fn ensure_posts_or_ended(
    state: &AppState,
    user: &UserId,
    key: &str,
    page: bool,
) -> Option<axum::response::Response> {
    let k = ItemKey::parse(key).ok()?;
    match ensure_posts(state, user, &k).await {
        Ok(()) => None,
        Err(AccessEnded) => Some(super::session::access_ended_response(state, page)),
    }
}

/// Read the missing messages of `key` (best effort: errors leave the cached view as it is),
/// except that a token Mattermost refused ends the user's access
/// ([`super::session::end_access`]) and `Err(AccessEnded)` is returned.
pub async fn ensure_posts(
    state: &AppState,
    user: &UserId,
    key: &ItemKey,
) -> Result<(), AccessEnded> {
    if !incomplete(state, user, key) {
        return Ok(());
    }
    let client = match state.user_client(user).await {
        Ok(client) => client,
        Err(account::AccountError::Revoked) => {
            super::session::end_access(state, user).await;
            return Err(AccessEnded);
        }
        Err(_) => return Ok(()),
    };
    let since = state.now() - state.config().retention_ms();
    let fetch = async {
        match key {
            ItemKey::Thread(root) => {
                client
                    .get_post_thread(root, &PostThreadQuery::default())
                    .await
            }
            ItemKey::Channel(ch) => {
                let q = ChannelPostsQuery {
                    per_page: Some(CHANNEL_PAGE),
                    ..ChannelPostsQuery::default()
                };
                client.get_posts_for_channel(ch, &q).await
            }
        }
    };
    let list = match tokio::time::timeout(BACKFILL_TIMEOUT, fetch).await {
        Ok(Ok(list)) => list,
        Ok(Err(e)) if e.is_unauthorized() => {
            super::session::end_access(state, user).await;
            return Err(AccessEnded);
        }
        Ok(Err(e)) => {
            tracing::debug!(status = ?e.status(), "conversation backfill failed");
            return Ok(());
        }
        Err(_) => {
            tracing::debug!("conversation backfill timed out");
            return Ok(());
        }
    };
    let posts: Vec<_> = list
        .posts
        .values()
        .filter(|p| p.create_at >= since || p.root_id.is_empty())
        .map(convert::post)
        .collect();
    let n = posts.len();
    let store = std::sync::Arc::clone(&state.inner().store);
    let r = tokio::task::spawn_blocking(move || {
        store.write(|tx| {
            for p in &posts {
                tx.upsert_post(p)?;
            }
            Ok(())
        })
    })
    .await;
    if matches!(r, Ok(Ok(()))) {
        tracing::debug!(user.id = %user.as_str(), posts = n, "conversation backfilled");
    }
    Ok(())
}
