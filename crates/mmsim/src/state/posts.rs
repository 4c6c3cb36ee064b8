//! Posts, reactions and files (research §4).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::{ChannelType, PendingRec, PostExtra, PostRec, ReactionRec, State, obj, string_json};
use crate::error::{ApiResult, AppError};
use crate::events::Broadcast;
use crate::model::{self, Id};

/// Longest message (runes) a default server accepts (`MaxPostSize`).
pub const MAX_POST_SIZE: usize = 16383;
/// Unique reactions per post (`UniqueEmojiReactionLimitPerPost`).
const MAX_UNIQUE_REACTIONS: usize = 50;

/// A post to create.
#[derive(Clone, Debug)]
pub struct NewPost {
    pub channel_id: Id,
    pub message: String,
    pub root_id: Option<Id>,
    pub file_ids: Vec<Id>,
    pub props: Map<String, Value>,
    pub priority: Option<model::PostPriority>,
    pub pending_post_id: String,
    pub kind: String,
    pub set_online: bool,
    /// Seeded history only; `None` = now.
    pub create_at: Option<i64>,
}

impl NewPost {
    /// A plain post (`set_online` true, as the server's default).
    #[must_use]
    pub fn new(channel_id: Id, message: impl Into<String>) -> Self {
        Self {
            channel_id,
            message: message.into(),
            root_id: None,
            file_ids: Vec::new(),
            props: Map::new(),
            priority: None,
            pending_post_id: String::new(),
            kind: String::new(),
            set_online: true,
            create_at: None,
        }
    }

    /// A reply to `root`.
    #[must_use]
    pub fn reply(channel_id: Id, root: Id, message: impl Into<String>) -> Self {
        Self {
            root_id: Some(root),
            ..Self::new(channel_id, message)
        }
    }
}

/// `PostPatch` (research §4.3).
#[derive(Clone, Debug, Default)]
pub struct PostPatch {
    pub message: Option<String>,
    pub props: Option<Map<String, Value>>,
    pub is_pinned: Option<bool>,
    pub file_ids: Option<Vec<Id>>,
}

/// Parameters of `GET /channels/{c}/posts` (research §4.2).
#[derive(Clone, Debug, Default)]
pub struct PostListQuery {
    pub page: usize,
    pub per_page: usize,
    pub since: Option<i64>,
    pub before: Option<Id>,
    pub after: Option<Id>,
    pub skip_fetch_threads: bool,
    pub collapsed: bool,
    pub extended: bool,
}

/// Parameters of `GET /posts/{id}/thread` (camelCase on the wire, trap 15).
#[derive(Clone, Debug, Default)]
pub struct ThreadQuery {
    /// 0 = everything.
    pub per_page: usize,
    pub from_post: Option<Id>,
    pub from_create_at: Option<i64>,
    /// `direction=up` (older first); default down.
    pub up: bool,
    pub collapsed: bool,
    pub extended: bool,
}

/// Outcome of the `pending_post_id` check (trap 35).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dedup {
    Proceed,
    InFlight,
    Existing(Id),
}

/// How a post is rendered.
#[derive(Clone, Copy, Debug, Default)]
pub struct PostView {
    pub viewer: Option<Id>,
    /// CRT list: participants (and `is_following`) on roots.
    pub crt: bool,
    /// Full participant users instead of id-only ones.
    pub extended: bool,
}

fn post_not_found() -> AppError {
    AppError::not_found("app.post.get.app_error", "Unable to get the post.")
}

impl State {
    pub fn post_idx(&self, id: Id) -> ApiResult<u32> {
        self.post_index.get(&id).copied().ok_or_else(post_not_found)
    }

    /// Root index of a post (itself for roots).
    #[must_use]
    pub fn root_of(&self, idx: u32) -> u32 {
        self.posts[idx as usize].root.unwrap_or(idx)
    }

    #[must_use]
    pub fn is_urgent(&self, idx: u32) -> bool {
        let root = self.root_of(idx);
        self.posts[root as usize]
            .extra
            .as_ref()
            .and_then(|e| e.priority.as_ref())
            .is_some_and(|p| p.priority == "urgent")
    }

    /// Users a post mentions among its channel's members, never the author: in a DM the other
    /// member (trap 34b); elsewhere `@username`, and `@channel`/`@all`/`@here` for everyone.
    #[must_use]
    pub fn post_mentions(&self, idx: u32) -> Vec<Id> {
        let p = &self.posts[idx as usize];
        self.mentions_in(p.channel_id, p.user_id, &p.message)
    }

    fn mentions_in(&self, channel: Id, author: Id, message: &str) -> Vec<Id> {
        let members = self
            .channel_members
            .get(&channel)
            .map_or(&[][..], Vec::as_slice);
        let Some(ch) = self.channels.get(&channel) else {
            return Vec::new();
        };
        if ch.kind == ChannelType::Direct {
            return members.iter().copied().filter(|u| *u != author).collect();
        }
        let mut out: Vec<Id> = Vec::new();
        for word in super::users::mention_words(message) {
            let lower = word.to_lowercase();
            if matches!(lower.as_str(), "channel" | "all" | "here") {
                out.extend(members.iter().copied().filter(|u| *u != author));
            } else if let Some(uid) = self.usernames.get(&lower)
                && *uid != author
                && members.contains(uid)
            {
                out.push(*uid);
            }
        }
        let mut seen = HashSet::new();
        out.retain(|u| seen.insert(*u));
        out
    }

    /// The `Post` JSON (research §4.1; deleted posts have `message: ""` and empty metadata,
    /// trap 10).
    #[must_use]
    pub fn post_json(&self, idx: u32, view: PostView) -> model::Post {
        let p = &self.posts[idx as usize];
        let root_idx = self.root_of(idx);
        let thread = self.threads.get(&root_idx);
        let is_root = p.root.is_none();
        let extra = p.extra.as_deref();
        let deleted = p.delete_at != 0;
        let mut metadata = model::PostMetadata::default();
        if !deleted && let Some(e) = extra {
            metadata.reactions = e
                .reactions
                .iter()
                .map(|r| self.reaction_json(p, r))
                .collect();
            metadata.files = e
                .file_ids
                .iter()
                .filter_map(|f| self.files.get(f).map(|f| f.info.clone()))
                .collect();
            if is_root {
                metadata.priority.clone_from(&e.priority);
            }
            let custom: HashSet<&str> = e.reactions.iter().map(|r| r.emoji_name.as_str()).collect();
            metadata.emojis = self
                .emoji
                .iter()
                .filter(|em| custom.contains(em.name.as_str()))
                .map(|em| self.emoji_json(em))
                .collect();
        }
        let crt_root = view.crt && is_root;
        let participants = if crt_root {
            Some(
                thread
                    .map(|t| t.participants.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(|u| self.participant(*u, view.extended))
                    .collect(),
            )
        } else {
            None
        };
        let is_following = match (crt_root, view.viewer) {
            (true, Some(v)) => self.thread_members.get(&(v, idx)).map(|m| m.following),
            _ => None,
        };
        model::Post {
            id: p.id,
            create_at: p.create_at,
            update_at: p.update_at,
            edit_at: p.edit_at,
            delete_at: p.delete_at,
            is_pinned: p.is_pinned,
            user_id: p.user_id,
            channel_id: p.channel_id,
            root_id: p
                .root
                .map(|r| self.posts[r as usize].id.to_string())
                .unwrap_or_default(),
            original_id: String::new(),
            message: if deleted {
                String::new()
            } else {
                p.message.to_string()
            },
            kind: extra.map(|e| e.kind.clone()).unwrap_or_default(),
            props: extra.map(|e| e.props.clone()).unwrap_or_default(),
            hashtags: hashtags(&p.message),
            file_ids: extra.map(|e| e.file_ids.clone()).unwrap_or_default(),
            pending_post_id: extra.map(|e| e.pending_post_id.clone()).unwrap_or_default(),
            has_reactions: extra.is_some_and(|e| !e.reactions.is_empty()),
            reply_count: thread.map_or(0, |t| t.reply_count),
            last_reply_at: if is_root {
                thread.map_or(0, |t| t.last_reply_at)
            } else {
                0
            },
            participants,
            is_following,
            metadata,
        }
    }

    /// A participant: full (sanitized) user with `extended`, else id-only (trap 11).
    #[must_use]
    pub fn participant(&self, user: Id, extended: bool) -> model::User {
        match (extended, self.users.get(&user)) {
            (true, Some(u)) => self.user_json(u, None),
            _ => model::User::id_only(user),
        }
    }

    fn reaction_json(&self, p: &PostRec, r: &ReactionRec) -> model::Reaction {
        model::Reaction {
            user_id: r.user_id,
            post_id: p.id,
            emoji_name: r.emoji_name.clone(),
            create_at: r.create_at,
            update_at: r.create_at,
            delete_at: 0,
            remote_id: String::new(),
            channel_id: p.channel_id,
        }
    }

    #[must_use]
    pub fn emoji_json(&self, e: &super::EmojiRec) -> model::Emoji {
        model::Emoji {
            id: e.id,
            create_at: e.create_at,
            update_at: e.create_at,
            delete_at: 0,
            creator_id: e.creator_id,
            name: e.name.clone(),
        }
    }

    /// A post `viewer` may read (404 unknown, 403 without channel access).
    pub fn readable_post(&self, viewer: Id, id: Id) -> ApiResult<u32> {
        let idx = self.post_idx(id).map_err(|_| AppError::permissions())?;
        self.readable_channel(self.posts[idx as usize].channel_id, viewer)?;
        Ok(idx)
    }

    /// `pending_post_id` dedup, first half (trap 35): `Proceed` records the id as in flight.
    pub fn dedup_begin(&mut self, pending_post_id: &str) -> Dedup {
        if pending_post_id.is_empty() {
            return Dedup::Proceed;
        }
        let now = self.now();
        let window = self.settings.dedup_window_ms;
        self.pending_posts.retain(|_, p| now - p.at < window);
        match self.pending_posts.get(pending_post_id) {
            Some(PendingRec { post: None, .. }) => Dedup::InFlight,
            Some(PendingRec { post: Some(id), .. }) => Dedup::Existing(*id),
            None => {
                self.pending_posts.insert(
                    pending_post_id.to_owned(),
                    PendingRec {
                        at: now,
                        post: None,
                    },
                );
                Dedup::Proceed
            }
        }
    }

    /// Second half: remember the created post, or forget the key after a failure so a retry
    /// can proceed.
    pub fn dedup_finish(&mut self, pending_post_id: &str, created: Option<Id>) {
        if pending_post_id.is_empty() {
            return;
        }
        match created {
            Some(id) => {
                if let Some(p) = self.pending_posts.get_mut(pending_post_id) {
                    p.post = Some(id);
                }
            }
            None => {
                self.pending_posts.remove(pending_post_id);
            }
        }
    }

    fn validate_new_post(&self, author: Id, np: &NewPost) -> ApiResult<Option<u32>> {
        let ch = self
            .channel(np.channel_id)
            .map_err(|_| AppError::permissions())?;
        if !self.is_member(np.channel_id, author) {
            return Err(AppError::permissions());
        }
        if ch.delete_at != 0 {
            return Err(AppError::new(
                400,
                "api.post.create_post.can_not_post_to_deleted.error",
                "Can not post to deleted channel.",
            ));
        }
        if np.kind.starts_with("system_") {
            return Err(AppError::invalid_body_param("post.type"));
        }
        if np.message.chars().count() > MAX_POST_SIZE {
            return Err(AppError::new(
                400,
                "model.post.is_valid.message_length.app_error",
                "Message property length is greater than the allowed limit.",
            ));
        }
        let Some(root_id) = np.root_id else {
            return Ok(None);
        };
        let bad_root = || {
            AppError::new(
                400,
                "api.post.create_post.root_id.app_error",
                "Invalid RootId parameter.",
            )
        };
        let root = self
            .post_index
            .get(&root_id)
            .copied()
            .ok_or_else(bad_root)?;
        let r = &self.posts[root as usize];
        if r.root.is_some() || r.delete_at != 0 {
            return Err(bad_root());
        }
        if r.channel_id != np.channel_id {
            return Err(AppError::new(
                400,
                "api.post.create_post.channel_root_id.app_error",
                "Invalid ChannelId for RootId parameter.",
            ));
        }
        if np.priority.is_some() {
            return Err(AppError::new(
                400,
                "api.post.create_post.post_priority.root_id.app_error",
                "Post priority can only be set on root posts.",
            ));
        }
        Ok(Some(root))
    }

    /// Create a post as `author` (research §4.3): counters, mentions, CRT thread memberships
    /// (§5.1), the author's read state, then `posted` and `thread_updated` events.
    pub fn create_post(&mut self, author: Id, np: NewPost) -> ApiResult<Id> {
        let root = self.validate_new_post(author, &np)?;
        for f in &np.file_ids {
            match self.files.get(f) {
                Some(file) if file.info.user_id == author && file.info.post_id.is_empty() => {}
                _ => return Err(AppError::invalid_body_param("file_ids")),
            }
        }
        // Live posts get strictly increasing create_at, so posts made in the same millisecond
        // still have a stable (create_at, id) order.
        let create_at = match np.create_at {
            Some(at) => at,
            None => {
                let at = self.now().max(self.last_live_create_at + 1);
                self.last_live_create_at = at;
                at
            }
        };
        let id = self.new_id();
        let idx = self.insert_post(id, author, &np, root, create_at);
        for f in &np.file_ids {
            if let Some(file) = self.files.get_mut(f) {
                file.info.post_id = id.into();
                file.info.channel_id = np.channel_id;
            }
        }
        let mentions = self.post_mentions(idx);
        let urgent = self.is_urgent(idx);
        for m in &mentions {
            if let Some(member) = self.members.get_mut(&(np.channel_id, *m)) {
                member.mention_count += 1;
                if root.is_none() {
                    member.mention_count_root += 1;
                    if urgent {
                        member.urgent_mention_count += 1;
                    }
                }
            }
        }
        // The author has read the channel, unless this is a CRT reply (trap 36).
        if root.is_none() {
            self.mark_read_quiet(np.channel_id, author, create_at);
        }
        let (followers, previous) = match root {
            Some(r) => self.on_reply(r, idx, &mentions, create_at),
            None => (Vec::new(), HashMap::new()),
        };
        self.emit_posted(idx, &mentions, &followers, np.set_online);
        if let Some(r) = root {
            self.emit_thread_updates(r, &followers, &previous);
        }
        Ok(id)
    }

    /// Append a post and update channel and thread counters (no events).
    pub(crate) fn insert_post(
        &mut self,
        id: Id,
        author: Id,
        np: &NewPost,
        root: Option<u32>,
        create_at: i64,
    ) -> u32 {
        let extra = (!np.props.is_empty()
            || !np.file_ids.is_empty()
            || !np.pending_post_id.is_empty()
            || np.priority.is_some()
            || !np.kind.is_empty())
        .then(|| {
            Box::new(PostExtra {
                props: np.props.clone(),
                file_ids: np.file_ids.clone(),
                pending_post_id: np.pending_post_id.clone(),
                priority: np.priority.clone(),
                kind: np.kind.clone(),
                reactions: Vec::new(),
            })
        });
        let idx = u32::try_from(self.posts.len()).unwrap_or(u32::MAX);
        self.posts.push(PostRec {
            id,
            user_id: author,
            channel_id: np.channel_id,
            root,
            create_at,
            update_at: create_at,
            edit_at: 0,
            delete_at: 0,
            message: np.message.clone().into_boxed_str(),
            is_pinned: false,
            extra,
        });
        self.post_index.insert(id, idx);
        let list = self.channel_posts.entry(np.channel_id).or_default();
        // Keep creation order even if seeded history is inserted out of order.
        let pos = list.partition_point(|&i| self.posts[i as usize].create_at <= create_at);
        list.insert(pos, idx);
        if let Some(ch) = self.channels.get_mut(&np.channel_id) {
            ch.total_msg_count += 1;
            ch.last_post_at = ch.last_post_at.max(create_at);
            if root.is_none() {
                ch.total_msg_count_root += 1;
                ch.last_root_post_at = ch.last_root_post_at.max(create_at);
            }
        }
        if let Some(r) = root {
            let root_post = &mut self.posts[r as usize];
            root_post.update_at = root_post.update_at.max(create_at);
            let thread = self.threads.entry(r).or_default();
            thread.replies.push(idx);
            thread.reply_count += 1;
            thread.last_reply_at = thread.last_reply_at.max(create_at);
            if !thread.participants.contains(&author) {
                thread.participants.push(author);
            }
        }
        idx
    }

    /// Member has read everything in the channel (no event).
    pub(crate) fn mark_read_quiet(&mut self, channel: Id, user: Id, at: i64) {
        let Some(ch) = self.channels.get(&channel) else {
            return;
        };
        let (total, total_root) = (ch.total_msg_count, ch.total_msg_count_root);
        if let Some(m) = self.members.get_mut(&(channel, user)) {
            m.msg_count = total;
            m.msg_count_root = total_root;
            m.mention_count = 0;
            m.mention_count_root = 0;
            m.urgent_mention_count = 0;
            m.last_viewed_at = m.last_viewed_at.max(at);
            m.last_update_at = at;
        }
    }

    /// `posted` (research §6.5): post as string JSON, per-user `mentions`/`followers` naming only
    /// that user (trap 23), delivered to the author too (trap 34).
    fn emit_posted(&mut self, idx: u32, mentions: &[Id], followers: &[Id], set_online: bool) {
        let post = self.post_json(idx, PostView::default());
        let p = &self.posts[idx as usize];
        let (author, channel) = (p.user_id, p.channel_id);
        let Some(ch) = self.channels.get(&channel) else {
            return;
        };
        let sender = self
            .users
            .get(&author)
            .map(|u| format!("@{}", u.username))
            .unwrap_or_default();
        let display = match ch.kind {
            ChannelType::Direct => sender.clone(),
            _ => ch.display_name.clone(),
        };
        let mut data = obj([
            ("channel_display_name", json!(display)),
            ("channel_name", json!(ch.name)),
            ("channel_type", json!(ch.kind.as_str())),
            ("post", string_json(&post)),
            ("sender_name", json!(sender)),
            ("set_online", json!(set_online)),
            (
                "team_id",
                json!(ch.team_id.map(String::from).unwrap_or_default()),
            ),
        ]);
        if !post.metadata.files.is_empty() {
            let image = post
                .metadata
                .files
                .iter()
                .any(|f| f.mime_type.starts_with("image/"));
            let key = if image { "image" } else { "otherFile" };
            data.insert(key.to_owned(), json!("true"));
        }
        let mut per_user: HashMap<String, Map<String, Value>> = HashMap::new();
        for m in mentions {
            per_user.insert(
                m.to_string(),
                obj([("mentions", string_json(&[m.as_str()]))]),
            );
        }
        for f in followers {
            if *f != author && !mentions.contains(f) {
                per_user.insert(
                    f.to_string(),
                    obj([("followers", string_json(&[f.as_str()]))]),
                );
            }
        }
        let recipients = self
            .channel_members
            .get(&channel)
            .cloned()
            .unwrap_or_default();
        let broadcast = Broadcast {
            channel_id: channel.into(),
            ..Broadcast::default()
        };
        self.emit("posted", data, broadcast, recipients, per_user);
    }

    /// `GET /posts/{id}`, `POST /posts/ids`.
    pub fn get_post(&self, viewer: Id, id: Id) -> ApiResult<model::Post> {
        let idx = self.post_idx(id)?;
        self.readable_channel(self.posts[idx as usize].channel_id, viewer)
            .map_err(|_| AppError::permissions())?;
        if self.posts[idx as usize].delete_at != 0 {
            return Err(post_not_found());
        }
        Ok(self.post_json(
            idx,
            PostView {
                viewer: Some(viewer),
                ..PostView::default()
            },
        ))
    }

    /// `PUT /posts/{id}/patch` and `PUT /posts/{id}` → `post_edited`.
    pub fn patch_post(&mut self, editor: Id, id: Id, patch: PostPatch) -> ApiResult<model::Post> {
        let idx = self.readable_post(editor, id)?;
        let now = self.now();
        let p = &mut self.posts[idx as usize];
        if p.delete_at != 0 {
            return Err(post_not_found());
        }
        if p.user_id != editor {
            return Err(AppError::permissions());
        }
        if let Some(message) = patch.message {
            if message.chars().count() > MAX_POST_SIZE {
                return Err(AppError::new(
                    400,
                    "model.post.is_valid.message_length.app_error",
                    "Message property length is greater than the allowed limit.",
                ));
            }
            if *p.message != *message {
                p.message = message.into_boxed_str();
                p.edit_at = now;
            }
        }
        if let Some(pinned) = patch.is_pinned {
            p.is_pinned = pinned;
        }
        if let Some(props) = patch.props {
            p.extra.get_or_insert_default().props = props;
        }
        if let Some(files) = patch.file_ids {
            p.extra.get_or_insert_default().file_ids = files;
        }
        p.update_at = now;
        let channel = p.channel_id;
        let json = self.post_json(idx, PostView::default());
        self.emit_channel("post_edited", channel, obj([("post", string_json(&json))]));
        Ok(self.post_json(
            idx,
            PostView {
                viewer: Some(editor),
                ..PostView::default()
            },
        ))
    }

    /// `DELETE /posts/{id}` (trap 33): soft-deletes the post and its replies; one
    /// `post_deleted` event carrying the post as it was before.
    pub fn delete_post(&mut self, actor: Id, id: Id) -> ApiResult<()> {
        let idx = self.readable_post(actor, id)?;
        let p = &self.posts[idx as usize];
        if p.delete_at != 0 {
            return Err(post_not_found());
        }
        if p.user_id != actor
            && !self
                .users
                .get(&actor)
                .is_some_and(|u| u.roles.contains("system_admin"))
        {
            return Err(AppError::permissions());
        }
        let before = self.post_json(idx, PostView::default());
        let channel = p.channel_id;
        let root = p.root;
        let now = self.now();
        let mut targets = vec![idx];
        if root.is_none() {
            targets.extend(
                self.threads
                    .get(&idx)
                    .map(|t| t.replies.clone())
                    .unwrap_or_default(),
            );
        }
        for t in targets {
            let p = &mut self.posts[t as usize];
            if p.delete_at == 0 {
                p.delete_at = now;
                p.update_at = now;
            }
        }
        if let Some(r) = root {
            self.recount_thread(r);
            self.posts[r as usize].update_at = now;
        }
        self.emit_channel(
            "post_deleted",
            channel,
            obj([("post", string_json(&before))]),
        );
        Ok(())
    }

    /// Recompute a thread's counters after a reply was deleted.
    fn recount_thread(&mut self, root: u32) {
        let posts = &self.posts;
        if let Some(t) = self.threads.get_mut(&root) {
            let live: Vec<u32> = t
                .replies
                .iter()
                .copied()
                .filter(|r| posts[*r as usize].delete_at == 0)
                .collect();
            t.reply_count = i64::try_from(live.len()).unwrap_or(0);
            t.last_reply_at = live
                .iter()
                .map(|r| posts[*r as usize].create_at)
                .max()
                .unwrap_or(0);
        }
    }

    /// `POST /reactions` (research §4.4, trap 18: 200, bumps the post's `update_at`).
    pub fn add_reaction(&mut self, user: Id, post: Id, emoji: &str) -> ApiResult<model::Reaction> {
        let idx = self.readable_post(user, post)?;
        if !valid_emoji_name(emoji) {
            return Err(AppError::invalid_body_param("emoji_name"));
        }
        let now = self.now();
        let channel = self.posts[idx as usize].channel_id;
        if self
            .channels
            .get(&channel)
            .is_some_and(|c| c.delete_at != 0)
        {
            return Err(AppError::permissions());
        }
        let p = &mut self.posts[idx as usize];
        if p.delete_at != 0 {
            return Err(post_not_found());
        }
        let extra = p.extra.get_or_insert_default();
        let known: HashSet<&str> = extra
            .reactions
            .iter()
            .map(|r| r.emoji_name.as_str())
            .collect();
        if !known.contains(emoji) && known.len() >= MAX_UNIQUE_REACTIONS {
            return Err(AppError::new(
                400,
                "app.reaction.save.unique_limit.app_error",
                "Unique reaction limit reached.",
            ));
        }
        if !extra
            .reactions
            .iter()
            .any(|r| r.user_id == user && r.emoji_name == emoji)
        {
            extra.reactions.push(ReactionRec {
                user_id: user,
                emoji_name: emoji.to_owned(),
                create_at: now,
            });
        }
        p.update_at = now;
        let rec = ReactionRec {
            user_id: user,
            emoji_name: emoji.to_owned(),
            create_at: now,
        };
        let reaction = self.reaction_json(&self.posts[idx as usize], &rec);
        self.emit_channel(
            "reaction_added",
            channel,
            obj([("reaction", string_json(&reaction))]),
        );
        Ok(reaction)
    }

    /// `DELETE /users/{u}/posts/{p}/reactions/{emoji}` → `reaction_removed`.
    pub fn remove_reaction(&mut self, user: Id, post: Id, emoji: &str) -> ApiResult<()> {
        let idx = self.readable_post(user, post)?;
        let now = self.now();
        let p = &mut self.posts[idx as usize];
        let channel = p.channel_id;
        let Some(extra) = p.extra.as_mut() else {
            return Ok(());
        };
        let Some(pos) = extra
            .reactions
            .iter()
            .position(|r| r.user_id == user && r.emoji_name == emoji)
        else {
            return Ok(());
        };
        let rec = extra.reactions.remove(pos);
        p.update_at = now;
        let reaction = self.reaction_json(&self.posts[idx as usize], &rec);
        self.emit_channel(
            "reaction_removed",
            channel,
            obj([("reaction", string_json(&reaction))]),
        );
        Ok(())
    }

    /// `GET /posts/{p}/reactions`.
    pub fn reactions(&self, viewer: Id, post: Id) -> ApiResult<Vec<model::Reaction>> {
        let idx = self.readable_post(viewer, post)?;
        let p = &self.posts[idx as usize];
        Ok(p.extra
            .as_ref()
            .map(|e| {
                e.reactions
                    .iter()
                    .map(|r| self.reaction_json(p, r))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `GET /channels/{c}/posts` (research §4.2, trap 17).
    pub fn channel_posts_list(
        &self,
        viewer: Id,
        channel: Id,
        q: &PostListQuery,
    ) -> ApiResult<model::PostList> {
        self.readable_channel(channel, viewer)?;
        let view = PostView {
            viewer: Some(viewer),
            crt: q.collapsed,
            extended: q.extended,
        };
        let all = self
            .channel_posts
            .get(&channel)
            .map_or(&[][..], Vec::as_slice);
        if let Some(since) = q.since {
            return Ok(self.posts_since(all, since, view));
        }
        let list: Vec<u32> = all
            .iter()
            .copied()
            .filter(|&i| {
                let p = &self.posts[i as usize];
                p.delete_at == 0 && (!q.collapsed || p.root.is_none())
            })
            .collect();
        let position = |id: Id| {
            let idx = self.post_index.get(&id)?;
            let key = (self.posts[*idx as usize].create_at, *idx);
            Some(list.partition_point(|&i| (self.posts[i as usize].create_at, i) < key))
        };
        let skip = q.page.saturating_mul(q.per_page);
        // Page as ascending positions in `list`.
        let (lo, hi) = if let Some(after) = q.after {
            let Some(pos) = position(after) else {
                return Ok(model::PostList::default());
            };
            let start = (pos + 1 + skip).min(list.len());
            (start, (start + q.per_page).min(list.len()))
        } else {
            let end = match q.before {
                Some(before) => match position(before) {
                    Some(pos) => pos,
                    None => return Ok(model::PostList::default()),
                },
                None => list.len(),
            };
            let hi = end.saturating_sub(skip);
            (hi.saturating_sub(q.per_page), hi)
        };
        let mut out = model::PostList::default();
        if lo < hi {
            for &i in list[lo..hi].iter().rev() {
                out.order.push(self.posts[i as usize].id);
                self.add_to_list(&mut out, i, view, !(q.skip_fetch_threads || q.collapsed));
            }
            if hi < list.len() {
                out.next_post_id = self.posts[list[hi] as usize].id.into();
            }
            if lo > 0 {
                out.prev_post_id = self.posts[list[lo - 1] as usize].id.into();
            }
        }
        Ok(out)
    }

    fn add_to_list(&self, out: &mut model::PostList, idx: u32, view: PostView, with_thread: bool) {
        let p = &self.posts[idx as usize];
        out.posts
            .entry(p.id)
            .or_insert_with(|| self.post_json(idx, view));
        if !with_thread {
            return;
        }
        let root = self.root_of(idx);
        let mut members = vec![root];
        members.extend(
            self.threads
                .get(&root)
                .map(|t| t.replies.clone())
                .unwrap_or_default(),
        );
        for m in members {
            let mp = &self.posts[m as usize];
            if mp.delete_at == 0 {
                out.posts
                    .entry(mp.id)
                    .or_insert_with(|| self.post_json(m, view));
            }
        }
    }

    /// `since`: `update_at > since` (strict), deleted included, ≤ 1000, roots of replies in
    /// `posts` only; CRT → roots only (trap 17).
    fn posts_since(&self, all: &[u32], since: i64, view: PostView) -> model::PostList {
        let mut hits: Vec<u32> = all
            .iter()
            .copied()
            .filter(|&i| {
                let p = &self.posts[i as usize];
                p.update_at > since && (!view.crt || p.root.is_none())
            })
            .collect();
        hits.sort_by_key(|&i| std::cmp::Reverse((self.posts[i as usize].create_at, i)));
        hits.truncate(1000);
        let mut out = model::PostList::default();
        for i in hits {
            let p = &self.posts[i as usize];
            out.order.push(p.id);
            out.posts.insert(p.id, self.post_json(i, view));
            if let Some(r) = p.root {
                let rp = &self.posts[r as usize];
                out.posts
                    .entry(rp.id)
                    .or_insert_with(|| self.post_json(r, view));
            }
        }
        out
    }

    /// `GET /posts/{id}/thread` (trap 15): the requested post first, the rest in creation
    /// order; with `per_page` a `(create_at, id)` cursor page and `has_next`.
    pub fn post_thread(&self, viewer: Id, id: Id, q: &ThreadQuery) -> ApiResult<model::PostList> {
        let idx = self.post_idx(id)?;
        self.readable_channel(self.posts[idx as usize].channel_id, viewer)
            .map_err(|_| AppError::permissions())?;
        let root = self.root_of(idx);
        if self.posts[root as usize].delete_at != 0 || self.posts[idx as usize].delete_at != 0 {
            return Err(post_not_found());
        }
        let view = PostView {
            viewer: Some(viewer),
            crt: q.collapsed,
            extended: q.extended,
        };
        let mut items: Vec<u32> = std::iter::once(root)
            .chain(
                self.threads
                    .get(&root)
                    .into_iter()
                    .flat_map(|t| t.replies.iter().copied()),
            )
            .filter(|&i| self.posts[i as usize].delete_at == 0)
            .collect();
        let key = |i: u32| (self.posts[i as usize].create_at, self.posts[i as usize].id);
        items.sort_by_key(|&i| key(i));
        let mut out = model::PostList::default();
        if q.per_page == 0 {
            out.order.push(self.posts[idx as usize].id);
            for &i in &items {
                if i != idx {
                    out.order.push(self.posts[i as usize].id);
                }
                out.posts
                    .insert(self.posts[i as usize].id, self.post_json(i, view));
            }
            out.has_next = Some(false);
            return Ok(out);
        }
        let cursor = q.from_create_at.map(|at| (at, q.from_post));
        let mut page: Vec<u32> = if q.up {
            items.reverse();
            items
                .into_iter()
                .filter(|&i| cursor.is_none_or(|c| cursor_cmp(key(i), c).is_lt()))
                .collect()
        } else {
            items
                .into_iter()
                .filter(|&i| cursor.is_none_or(|c| cursor_cmp(key(i), c).is_gt()))
                .collect()
        };
        out.has_next = Some(page.len() > q.per_page);
        page.truncate(q.per_page);
        for i in page {
            let p = &self.posts[i as usize];
            out.order.push(p.id);
            out.posts.insert(p.id, self.post_json(i, view));
        }
        Ok(out)
    }

    /// `GET /users/{u}/posts/flagged`: posts saved with the `flagged_post` preference.
    #[must_use]
    pub fn flagged_posts(&self, user: Id, page: usize, per_page: usize) -> model::PostList {
        let mut idxs: Vec<u32> = self
            .preferences
            .get(&user)
            .into_iter()
            .flatten()
            .filter(|((cat, _), v)| cat == "flagged_post" && v.as_str() == "true")
            .filter_map(|((_, name), _)| Id::parse(name))
            .filter_map(|id| self.post_index.get(&id).copied())
            .filter(|&i| {
                let p = &self.posts[i as usize];
                p.delete_at == 0 && self.readable_channel(p.channel_id, user).is_ok()
            })
            .collect();
        idxs.sort_by_key(|&i| std::cmp::Reverse(self.posts[i as usize].create_at));
        let mut out = model::PostList::default();
        let view = PostView {
            viewer: Some(user),
            ..PostView::default()
        };
        for i in idxs
            .into_iter()
            .skip(page.saturating_mul(per_page))
            .take(per_page)
        {
            let p = &self.posts[i as usize];
            out.order.push(p.id);
            out.posts.insert(p.id, self.post_json(i, view));
        }
        out
    }

    /// File info readable by `viewer` (uploader or channel access).
    pub fn file(&self, viewer: Id, id: Id) -> ApiResult<&super::FileRec> {
        let f = self.files.get(&id).ok_or_else(|| {
            AppError::not_found(
                "app.file_info.get.app_error",
                "Unable to get the file info.",
            )
        })?;
        if f.info.user_id == viewer || self.readable_channel(f.info.channel_id, viewer).is_ok() {
            Ok(f)
        } else {
            Err(AppError::permissions())
        }
    }

    /// `GET /posts/{p}/files/info`.
    pub fn post_files(&self, viewer: Id, post: Id) -> ApiResult<Vec<model::FileInfo>> {
        let idx = self.readable_post(viewer, post)?;
        Ok(self.posts[idx as usize]
            .extra
            .as_ref()
            .map(|e| {
                e.file_ids
                    .iter()
                    .filter_map(|f| self.files.get(f).map(|f| f.info.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Posts by ids that `viewer` may read (unknown or unreadable ids skipped).
    #[must_use]
    pub fn posts_by_ids(&self, viewer: Id, ids: &[Id]) -> Vec<model::Post> {
        ids.iter()
            .filter_map(|id| self.get_post(viewer, *id).ok())
            .collect()
    }

    /// `POST /posts/ids/reactions`.
    #[must_use]
    pub fn reactions_for(&self, viewer: Id, ids: &[Id]) -> BTreeMap<String, Vec<model::Reaction>> {
        ids.iter()
            .filter_map(|id| Some((id.to_string(), self.reactions(viewer, *id).ok()?)))
            .collect()
    }
}

fn cursor_cmp(item: (i64, Id), cursor: (i64, Option<Id>)) -> std::cmp::Ordering {
    match cursor.1 {
        Some(id) => item.cmp(&(cursor.0, id)),
        None => item.0.cmp(&cursor.0),
    }
}

/// `#tags` of a message, space separated (the Post `hashtags` field).
fn hashtags(message: &str) -> String {
    message
        .split_whitespace()
        .filter(|w| {
            w.len() > 1
                && w.starts_with('#')
                && w[1..]
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        })
        .filter(|w| w[1..].chars().next().is_some_and(char::is_alphabetic))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Emoji names: 1–64 of `[A-Za-z0-9_+-]`.
fn valid_emoji_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
}
