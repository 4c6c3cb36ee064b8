//! View models: what the pages show (askama templates in `templates/`) and what the JSON API
//! returns ([`ItemSummary`], [`PostView`], [`Counts`] are `Serialize`).
//!
//! Handlers fill these structs; templates never compute domain rules. Every page carries a
//! [`Layout`] (signed-in user, CSRF token, CSP nonce, theme) used by `templates/base.html`.
//! Message text reaches a page only as [`SafeHtml`] (made by [`crate::web::render`]) or as
//! plain text that askama escapes. `Debug` of these types never prints message text or file
//! names (logs carry ids, never content).
//!
//! Static assets (`static/`) are embedded here too: [`static_asset`] serves them and
//! [`asset_version`] is the content hash used in `?v=` for immutable caching.

use std::fmt;
use std::sync::LazyLock;

use askama::Template;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::web::render::{self, RenderCtx};

// ---------------------------------------------------------------------------------------------
// Safe HTML
// ---------------------------------------------------------------------------------------------

/// Message HTML produced by the sanitising renderer. The only constructors render markdown, so
/// a `SafeHtml` cannot hold untrusted markup; askama inserts it without escaping.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SafeHtml(String);

impl SafeHtml {
    /// Renders Mattermost markdown (see [`render::render_message`]).
    pub fn from_markdown(markdown: &str, ctx: &RenderCtx) -> Self {
        Self(render::render_message(markdown, ctx))
    }

    /// Escaped plain text (no markup at all).
    pub fn from_text(text: &str) -> Self {
        Self(render::escape(text))
    }

    /// The HTML.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SafeHtml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SafeHtml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafeHtml([redacted, {} bytes])", self.0.len())
    }
}

impl askama::filters::HtmlSafe for SafeHtml {}

impl Serialize for SafeHtml {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Queue items
// ---------------------------------------------------------------------------------------------

/// What an item in the queue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// A followed thread in a channel (or a DM/GM thread).
    Thread,
    /// A direct message channel (two people).
    Direct,
    /// A group message channel.
    Group,
}

impl ItemKind {
    /// The wire name (`thread`, `direct`, `group`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thread => "thread",
            Self::Direct => "direct",
            Self::Group => "group",
        }
    }

    pub fn is_thread(self) -> bool {
        self == Self::Thread
    }

    /// A human label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Thread => "Thread",
            Self::Direct => "Direct message",
            Self::Group => "Group message",
        }
    }
}

/// One row of the queue (also the JSON API's item and the SSE `item` payload).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSummary {
    /// `t_<root post id>` or `c_<channel id>`.
    pub key: String,
    pub kind: ItemKind,
    /// Channel display name, or the other people of a DM/GM.
    pub title: String,
    /// The team id (absent for DMs/GMs), for the per-team filter.
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub team_name: Option<String>,
    /// Plain text of the latest message, truncated (message content: never logged).
    pub snippet: String,
    /// Milliseconds since the epoch.
    pub last_activity_at: i64,
    pub unread_replies: u32,
    pub mentions: u32,
    pub urgent: bool,
    pub unread: bool,
    #[serde(default)]
    pub snoozed_until: Option<i64>,
    pub done: bool,
    pub following: bool,
    /// The item in Mattermost (opens in a new tab).
    pub permalink: String,
    /// With a text filter: the message that matched it (the snippet shows it; the row opens
    /// the conversation at it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_post_id: Option<String>,
    /// With it: where the words searched for stand in `snippet`, in UTF-16 code units (the
    /// JavaScript string offsets app.js marks them at; the page uses [`Self::snippet_parts`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snippet_marks: Vec<(usize, usize)>,
}

impl fmt::Debug for ItemSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemSummary")
            .field("key", &self.key)
            .field("kind", &self.kind)
            .field("last_activity_at", &self.last_activity_at)
            .field("unread_replies", &self.unread_replies)
            .field("mentions", &self.mentions)
            .field("urgent", &self.urgent)
            .field("unread", &self.unread)
            .field("snoozed_until", &self.snoozed_until)
            .field("done", &self.done)
            .field("following", &self.following)
            .finish_non_exhaustive()
    }
}

impl ItemSummary {
    /// The conversation page.
    pub fn href(&self) -> String {
        match &self.matched_post_id {
            Some(post) => format!("/items/{}#post-{post}", self.key),
            None => format!("/items/{}", self.key),
        }
    }

    /// Marks the byte ranges `marks` of the snippet (kept as UTF-16 ranges: see the field).
    pub fn set_snippet_marks(&mut self, marks: &[(usize, usize)]) {
        let utf16 = |at: usize| {
            self.snippet
                .get(..at)
                .map_or(0, |s| s.chars().map(char::len_utf16).sum::<usize>())
        };
        self.snippet_marks = marks.iter().map(|&(s, e)| (utf16(s), utf16(e))).collect();
    }

    /// The byte offset in the snippet of UTF-16 offset `unit` (`None` inside a character).
    fn snippet_byte_at(&self, unit: usize) -> Option<usize> {
        let mut n = 0;
        for (at, c) in self.snippet.char_indices() {
            if n == unit {
                return Some(at);
            }
            n += c.len_utf16();
        }
        (n == unit).then_some(self.snippet.len())
    }

    /// The snippet as runs of (text, marked): the words a search found are marked.
    pub fn snippet_parts(&self) -> Vec<(&str, bool)> {
        let mut out = Vec::new();
        let mut at = 0;
        for &(s, e) in &self.snippet_marks {
            let (Some(s), Some(e)) = (self.snippet_byte_at(s), self.snippet_byte_at(e)) else {
                continue;
            };
            let (Some(before), Some(hit)) = (self.snippet.get(at..s), self.snippet.get(s..e))
            else {
                continue;
            };
            if !before.is_empty() {
                out.push((before, false));
            }
            out.push((hit, true));
            at = e;
        }
        if let Some(rest) = self.snippet.get(at..).filter(|r| !r.is_empty()) {
            out.push((rest, false));
        }
        out
    }

    /// CSS classes of the row.
    pub fn row_class(&self) -> String {
        let mut c = String::from("item");
        for (on, name) in [
            (self.unread, " unread"),
            (self.urgent, " urgent"),
            (self.mentions > 0, " mentioned"),
            (self.done, " done"),
            (self.snoozed_until.is_some(), " snoozed"),
        ] {
            if on {
                c.push_str(name);
            }
        }
        c
    }

    pub fn activity_iso(&self) -> String {
        iso_time(self.last_activity_at)
    }

    pub fn snoozed_until_ms(&self) -> String {
        self.snoozed_until
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    pub fn snoozed_iso(&self) -> String {
        self.snoozed_until.map(iso_time).unwrap_or_default()
    }

    /// Accessible one-line summary of the badges (the badges themselves are `aria-hidden`).
    pub fn badge_summary(&self) -> String {
        let mut parts = Vec::new();
        if self.urgent {
            parts.push("urgent".to_owned());
        }
        if self.mentions > 0 {
            parts.push(plural(self.mentions, "mention", "mentions"));
        }
        if self.unread_replies > 0 {
            parts.push(format!("{} new", self.unread_replies));
        } else if self.unread {
            parts.push("unread".to_owned());
        }
        parts.join(", ")
    }
}

/// Number of items per filter (sidebar and JSON `counts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub all: u64,
    pub mentions: u64,
    pub direct: u64,
    pub threads: u64,
    pub snoozed: u64,
    pub done: u64,
}

impl Counts {
    pub fn get(&self, filter: QueueFilter) -> u64 {
        match filter {
            QueueFilter::All => self.all,
            QueueFilter::Mentions => self.mentions,
            QueueFilter::Direct => self.direct,
            QueueFilter::Threads => self.threads,
            QueueFilter::Snoozed => self.snoozed,
            QueueFilter::Done => self.done,
        }
    }
}

/// The queue's filters (`?filter=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueFilter {
    #[default]
    All,
    Mentions,
    Direct,
    Threads,
    Snoozed,
    Done,
}

impl QueueFilter {
    /// The view holds items set aside (done or snoozed): its selection can send them back.
    pub fn is_set_aside(self) -> bool {
        matches!(self, Self::Done | Self::Snoozed)
    }

    /// In sidebar order.
    pub const ALL: [QueueFilter; 6] = [
        Self::All,
        Self::Mentions,
        Self::Direct,
        Self::Threads,
        Self::Snoozed,
        Self::Done,
    ];

    /// Parses the query value; `None` for anything unknown (the handler answers 400).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Mentions => "mentions",
            Self::Direct => "direct",
            Self::Threads => "threads",
            Self::Snoozed => "snoozed",
            Self::Done => "done",
        }
    }

    pub fn is_all(self) -> bool {
        self == Self::All
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::All => "Inbox",
            Self::Mentions => "Mentions",
            Self::Direct => "Direct messages",
            Self::Threads => "Threads",
            Self::Snoozed => "Snoozed",
            Self::Done => "Done",
        }
    }

    /// Icon class (see `app.css`).
    pub fn icon(self) -> &'static str {
        match self {
            Self::All => "i-inbox",
            Self::Mentions => "i-at",
            Self::Direct => "i-user",
            Self::Threads => "i-thread",
            Self::Snoozed => "i-clock",
            Self::Done => "i-check",
        }
    }
}

/// A team the user belongs to (per-team filter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamView {
    pub id: String,
    pub name: String,
}

// ---------------------------------------------------------------------------------------------
// Conversation
// ---------------------------------------------------------------------------------------------

/// A message author.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorView {
    pub id: String,
    pub display_name: String,
    pub username: String,
    /// ThreadDesk proxy path `/media/avatar/{user_id}`.
    pub avatar_url: String,
}

/// One reaction on a post. JSON adds `glyph` (the Unicode emoji) for built-in emoji.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionView {
    /// Emoji name without colons (`+1`, `tada`, or a custom emoji name).
    pub emoji: String,
    pub count: u32,
    /// Whether the signed-in user reacted with it.
    pub mine: bool,
    /// For custom emoji: ThreadDesk path `/media/emoji/{id}`. Built-in emoji leave it `None`.
    pub image_url: Option<String>,
}

impl Serialize for ReactionView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ReactionView", 5)?;
        st.serialize_field("emoji", &self.emoji)?;
        st.serialize_field("count", &self.count)?;
        st.serialize_field("mine", &self.mine)?;
        st.serialize_field("image_url", &self.image_url)?;
        st.serialize_field("glyph", &render::emoji_glyph(&self.emoji))?;
        st.end()
    }
}

impl ReactionView {
    /// The Unicode emoji, or `:name:` when it is not a built-in one.
    pub fn glyph(&self) -> String {
        render::emoji_glyph(&self.emoji).map_or_else(|| format!(":{}:", self.emoji), str::to_owned)
    }
}

/// A file attached to a post, served through ThreadDesk.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct FileView {
    pub id: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
    /// `/media/files/{id}/thumbnail`
    pub thumbnail_url: String,
    /// `/media/files/{id}`
    pub url: String,
}

impl fmt::Debug for FileView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileView")
            .field("id", &self.id)
            .field("mime", &self.mime)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl FileView {
    /// Images get a thumbnail; everything else a file chip.
    pub fn is_image(&self) -> bool {
        self.mime.starts_with("image/") && self.mime != "image/svg+xml"
    }

    pub fn size_label(&self) -> String {
        human_size(self.size)
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostView {
    pub id: String,
    pub author: AuthorView,
    /// Milliseconds since the epoch.
    pub create_at: i64,
    pub edited: bool,
    pub deleted: bool,
    /// Rendered by [`SafeHtml::from_markdown`].
    pub html: SafeHtml,
    pub reactions: Vec<ReactionView>,
    pub files: Vec<FileView>,
    /// The thread's root post.
    pub is_root: bool,
    /// A reply the reader sent through ThreadDesk: its outbox marker
    /// (`props.threaddesk_outbox_id`), which the reply's 202 answer names too, so that a page
    /// that already shows the reply adds no "Sending…" copy of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox_marker: Option<String>,
}

impl PostView {
    pub fn time_iso(&self) -> String {
        iso_time(self.create_at)
    }
}

/// An action of the user not delivered to Mattermost yet: a reply being sent (shown as a
/// pending message), or any action Mattermost refused or that could not be delivered in time
/// (shown with its reason, Retry and Discard) — nothing the user asked for disappears silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UndeliveredView {
    /// The outbox id (`outbox_id` of the `retry` / `discard` actions).
    pub id: i64,
    /// `queued` (waiting for its turn or a retry), `sending` (in flight) or `failed`.
    pub state: &'static str,
    /// What the user did, in words ("Reply", "Done", "Mark read", …).
    pub what: String,
    /// A reply's text: the user's own words, kept until they are sent or discarded.
    pub message: Option<String>,
    /// Why it was not delivered (failed only).
    pub reason: Option<String>,
    /// When the user did it, ms since the epoch.
    pub created_at: i64,
}

impl UndeliveredView {
    pub fn failed(&self) -> bool {
        self.state == "failed"
    }

    /// Discard is possible unless it is being sent right now.
    pub fn can_discard(&self) -> bool {
        self.state != "sending"
    }
}

// ---------------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------------

/// The signed-in user as pages show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub display_name: String,
    /// `/media/avatar/{user_id}`
    pub avatar_url: String,
    /// Shows the admin status link.
    pub is_admin: bool,
}

/// Colour theme: the browser's choice, kept in the `td_theme` cookie (a UI preference, set by
/// `app.js`) so that the page is rendered in it from the first frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    /// Name of the cookie `app.js` keeps the choice in.
    pub const COOKIE: &'static str = "td_theme";

    /// The theme a cookie value names; anything else is the system's.
    #[must_use]
    pub fn from_cookie(value: Option<&str>) -> Self {
        match value {
            Some("light") => Self::Light,
            Some("dark") => Self::Dark,
            _ => Self::System,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Light => "light",
            Self::Dark => "dark",
        }
    }

    pub fn is_system(self) -> bool {
        self == Self::System
    }

    pub fn is_light(self) -> bool {
        self == Self::Light
    }

    pub fn is_dark(self) -> bool {
        self == Self::Dark
    }

    /// Class on `<html>`.
    pub fn class(self) -> &'static str {
        match self {
            Self::System => "",
            Self::Light => "theme-light",
            Self::Dark => "theme-dark",
        }
    }
}

/// What every page needs: filled once per request by the lead's middleware.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// `None` on signed-out pages (sign-in, errors before sign-in).
    pub user: Option<UserView>,
    /// CSRF token: `<meta name="csrf-token">` and hidden `csrf` form fields.
    pub csrf: String,
    /// The CSP nonce of this response (for the one `<script>` tag).
    pub nonce: String,
    pub theme: Theme,
    /// Time labels in the reader's time (`td_clock` cookie), as `app.js` writes them.
    pub time: super::local_time::LocalTime,
}

impl Layout {
    pub fn asset_version(&self) -> &'static str {
        asset_version()
    }

    pub fn shortcuts(&self) -> &'static [Shortcut] {
        SHORTCUTS
    }

    pub fn user_id(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.id.as_str())
    }

    pub fn username(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.username.as_str())
    }
}

/// A keyboard shortcut (help overlay and settings page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortcut {
    pub keys: &'static [&'static str],
    pub action: &'static str,
    pub group: &'static str,
}

impl Shortcut {
    /// Keys pressed together (`Ctrl`+`Enter`) rather than in sequence (`g` then `i`).
    pub fn is_chord(&self) -> bool {
        matches!(self.keys.first(), Some(&"Ctrl"))
    }
}

/// All shortcuts. `app.js` implements exactly these.
pub const SHORTCUTS: &[Shortcut] = &[
    sc(&["j"], "Next item / message", "Move"),
    sc(&["k"], "Previous item / message", "Move"),
    sc(&["Enter"], "Open the selected item", "Move"),
    sc(&["o"], "Open the selected item", "Move"),
    sc(&["g", "i"], "Go to the queue", "Move"),
    sc(
        &["Esc"],
        "Close a menu, leave the reply box, back to the queue, clear the selection",
        "Move",
    ),
    sc(
        &["/"],
        "Filter the queue; Enter searches every message",
        "Move",
    ),
    sc(&["e"], "Done (comes back on new activity)", "Triage"),
    sc(&["s"], "Snooze…", "Triage"),
    sc(&["z"], "Undo the last action", "Triage"),
    sc(
        &["x"],
        "Select / unselect (e, s, u then act on all selected)",
        "Triage",
    ),
    sc(&["a"], "Select every row shown, or none", "Triage"),
    sc(&["u"], "Mark read / unread", "Triage"),
    sc(&["f"], "Follow / unfollow the thread", "Triage"),
    sc(&["r"], "Reply", "Conversation"),
    sc(&["Ctrl", "Enter"], "Send the reply", "Conversation"),
    sc(&["v"], "Open in Mattermost", "Conversation"),
    sc(&["?"], "Show these shortcuts", "Help"),
];

const fn sc(keys: &'static [&'static str], action: &'static str, group: &'static str) -> Shortcut {
    Shortcut {
        keys,
        action,
        group,
    }
}

/// `GET /` — the queue.
#[derive(Debug, Clone, Template)]
#[template(path = "queue.html")]
pub struct QueuePage {
    pub layout: Layout,
    pub filter: QueueFilter,
    /// Selected team id (`?team=`), if any.
    pub team: Option<String>,
    pub teams: Vec<TeamView>,
    /// Text filter (`?q=`), empty when none.
    pub q: String,
    pub items: Vec<ItemSummary>,
    pub counts: Counts,
    /// Cursor for the next page (`/api/v1/items?cursor=`), if more items exist.
    pub next_cursor: Option<String>,
    /// Rows per page when the address asked for another number than the default (`?limit=`).
    pub limit: Option<usize>,
    /// The cursor this page starts at (`?cursor=`): it continues the queue and links back to
    /// the first page.
    pub cursor: Option<String>,
    /// Actions Mattermost refused or that could not be delivered, oldest first.
    pub failed: Vec<FailedAction>,
    /// With a text filter: other views holding items whose messages match it, and how many.
    pub elsewhere: Vec<(QueueFilter, usize)>,
    /// The user's saved searches (sidebar).
    pub saved_searches: Vec<SavedSearchView>,
    /// The name the search shown would be saved under (empty without a text): the live
    /// stream's new list of saved searches marks it.
    pub search_name: String,
    /// At inbox zero: items marked done in the last 7 days (said under "Inbox zero").
    pub done_week: Option<i64>,
}

/// The sidebar's saved searches alone (`_saved_searches.html`), for the live stream.
#[derive(Debug, Clone, Template)]
#[template(path = "saved_searches_fragment.html")]
pub struct SavedSearchesFragment {
    /// Only `csrf` is read (the remove buttons' forms).
    pub layout: Layout,
    pub saved_searches: Vec<SavedSearchView>,
}

/// A saved search as the sidebar lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSearchView {
    pub name: String,
    pub label: String,
    pub href: String,
    /// The page shows this search (same view, team and text).
    pub active: bool,
}

/// A failed action as the queue lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedAction {
    /// The item's key.
    pub key: String,
    /// The item's title, when it is still in the cache.
    pub title: Option<String>,
    pub action: UndeliveredView,
}

/// A filter link in the sidebar.
#[derive(Debug, Clone)]
pub struct FilterTab {
    pub filter: QueueFilter,
    pub count: u64,
    pub href: String,
    pub active: bool,
}

/// A team link in the sidebar.
#[derive(Debug, Clone)]
pub struct TeamTab {
    pub name: String,
    pub href: String,
    pub active: bool,
}

impl QueuePage {
    /// `/?filter=…&team=…&q=…` keeping the current team and text filter.
    pub fn url(filter: QueueFilter, team: Option<&str>, q: &str) -> String {
        let mut params = Vec::new();
        if filter != QueueFilter::All {
            params.push(format!("filter={}", filter.as_str()));
        }
        if let Some(team) = team {
            params.push(format!("team={}", url_encode(team)));
        }
        if !q.is_empty() {
            params.push(format!("q={}", url_encode(q)));
        }
        if params.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{}", params.join("&"))
        }
    }

    /// "Load more" as a link: the next page without JavaScript (app.js appends the rows in
    /// place instead).
    pub fn more_href(&self) -> Option<String> {
        let cursor = self.next_cursor.as_deref()?;
        let base = Self::url(self.filter, self.team.as_deref(), &self.q);
        let sep = if base.contains('?') { '&' } else { '?' };
        let mut href = format!("{base}{sep}cursor={}", url_encode(cursor));
        if let Some(n) = self.limit {
            href.push_str(&format!("&limit={n}"));
        }
        Some(href)
    }

    /// The first page of the same view (shown on a page that continues the queue).
    pub fn first_page_href(&self) -> String {
        Self::url(self.filter, self.team.as_deref(), &self.q)
    }

    /// This page continues the queue (it starts at a cursor).
    pub fn paged(&self) -> bool {
        self.cursor.is_some()
    }

    /// The address of this very page (view, cursor, page size): where a row's form comes back
    /// to without JavaScript.
    pub fn here_href(&self) -> String {
        let mut href = Self::url(self.filter, self.team.as_deref(), &self.q);
        let mut sep = if href.contains('?') { '&' } else { '?' };
        if let Some(c) = &self.cursor {
            href.push_str(&format!("{sep}cursor={}", url_encode(c)));
            sep = '&';
        }
        if let Some(n) = self.limit {
            href.push_str(&format!("{sep}limit={n}"));
        }
        href
    }

    /// The page title's prefix: the Inbox count as the sidebar shows it (`"(12) "`, or `""` at
    /// inbox zero), so that a tab in the background says how far from zero the queue is.
    pub fn title_count(&self) -> String {
        match self.counts.get(QueueFilter::All) {
            0 => String::new(),
            n => format!("({n}) "),
        }
    }

    pub fn filter_tabs(&self) -> Vec<FilterTab> {
        QueueFilter::ALL
            .into_iter()
            .map(|f| FilterTab {
                filter: f,
                count: self.counts.get(f),
                href: Self::url(f, self.team.as_deref(), &self.q),
                active: f == self.filter,
            })
            .collect()
    }

    pub fn team_tabs(&self) -> Vec<TeamTab> {
        let mut tabs = vec![TeamTab {
            name: "All teams".to_owned(),
            href: Self::url(self.filter, None, &self.q),
            active: self.team.is_none(),
        }];
        tabs.extend(self.teams.iter().map(|t| TeamTab {
            name: t.name.clone(),
            href: Self::url(self.filter, Some(&t.id), &self.q),
            active: self.team.as_deref() == Some(t.id.as_str()),
        }));
        tabs
    }

    /// The empty row cloned by `app.js` (`<template id="tpl-item">`) for live inserts.
    pub fn blank_item(&self) -> ItemSummary {
        ItemSummary {
            key: String::new(),
            kind: ItemKind::Thread,
            title: String::new(),
            team_id: None,
            team_name: None,
            snippet: String::new(),
            last_activity_at: 0,
            unread_replies: 0,
            mentions: 0,
            urgent: false,
            unread: false,
            snoozed_until: None,
            done: false,
            following: false,
            permalink: String::new(),
            matched_post_id: None,
            snippet_marks: Vec::new(),
        }
    }

    pub fn team_id(&self) -> &str {
        self.team.as_deref().unwrap_or("")
    }

    pub fn team_label(&self) -> Option<&str> {
        let id = self.team.as_deref()?;
        self.teams
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.name.as_str())
    }

    /// The search shown is one of the user's saved searches.
    pub fn search_is_saved(&self) -> bool {
        self.saved_searches.iter().any(|s| s.active)
    }

    /// The other views where the text filter finds messages: (label, address, how many).
    pub fn elsewhere_links(&self) -> Vec<(&'static str, String, usize)> {
        self.elsewhere
            .iter()
            .map(|&(f, n)| {
                let label = if f == QueueFilter::All {
                    "Inbox"
                } else {
                    f.label()
                };
                (label, Self::url(f, self.team.as_deref(), &self.q), n)
            })
            .collect()
    }

    pub fn clear_q_href(&self) -> String {
        Self::url(self.filter, self.team.as_deref(), "")
    }

    /// The inbox is truly empty (celebrate), not just an empty filter.
    pub fn is_inbox_zero(&self) -> bool {
        self.filter == QueueFilter::All && self.team.is_none() && self.q.is_empty()
    }

    pub fn empty_title(&self) -> &'static str {
        match self.filter {
            _ if !self.q.is_empty() => "No matches",
            QueueFilter::All => "Inbox zero",
            QueueFilter::Mentions => "No mentions waiting",
            QueueFilter::Direct => "No direct messages waiting",
            QueueFilter::Threads => "No threads waiting",
            QueueFilter::Snoozed => "Nothing snoozed",
            QueueFilter::Done => "Nothing done yet",
        }
    }

    /// "Inbox zero" with the week's figure, when there is one.
    pub fn zero_figure(&self) -> Option<String> {
        match self.done_week? {
            0 => None,
            1 => Some("You marked 1 item done in the last 7 days.".to_owned()),
            n => Some(format!("You marked {n} items done in the last 7 days.")),
        }
    }

    pub fn empty_text(&self) -> &'static str {
        match self.filter {
            _ if !self.q.is_empty() => {
                "Nothing in this view matches: not its names, nor any message cached here."
            }
            QueueFilter::All if self.team.is_some() => "Nothing from this team needs you.",
            QueueFilter::All => "You're all caught up. New replies will show up here.",
            QueueFilter::Snoozed => "Snoozed items come back at their time or on a new reply.",
            QueueFilter::Done => "Items you mark done (e) rest here until something new happens.",
            _ => "You're all caught up here.",
        }
    }
}

/// `GET /items/{key}` — one conversation.
#[derive(Debug, Clone, Template)]
#[template(path = "item.html")]
pub struct ItemPage {
    pub layout: Layout,
    pub item: ItemSummary,
    /// Oldest first.
    pub posts: Vec<PostView>,
    /// Older messages exist than the ones shown (the page links to Mattermost for them).
    pub has_older: bool,
    /// The user's actions on this item not delivered yet, oldest first.
    pub undelivered: Vec<UndeliveredView>,
    /// A thread's root is among the user's saved posts (Mattermost's `flagged_post`).
    pub saved: bool,
}

impl ItemPage {
    /// Whether post `i` continues the previous one (same author within 5 minutes): its
    /// avatar and name are not repeated.
    pub fn is_continuation(&self, i: &usize) -> bool {
        is_continuation(&self.posts, *i)
    }

    pub fn reply_placeholder(&self) -> String {
        reply_placeholder(&self.item)
    }
}

/// `GET /fragments/items/{key}` — the same conversation as [`ItemPage`] (the same
/// `_conversation.html`), without the page frame: the queue swaps it into the page in place.
#[derive(Debug, Clone, Template)]
#[template(path = "item_fragment.html")]
pub struct ItemFragment {
    /// Only `csrf` is read (the reply form's hidden field).
    pub layout: Layout,
    pub item: ItemSummary,
    /// Oldest first.
    pub posts: Vec<PostView>,
    pub has_older: bool,
    /// The user's actions on this item not delivered yet, oldest first.
    pub undelivered: Vec<UndeliveredView>,
    /// As [`ItemPage::saved`].
    pub saved: bool,
}

impl ItemFragment {
    pub fn is_continuation(&self, i: &usize) -> bool {
        is_continuation(&self.posts, *i)
    }

    pub fn reply_placeholder(&self) -> String {
        reply_placeholder(&self.item)
    }
}

/// Whether post `i` continues the previous one (same author within 5 minutes).
fn is_continuation(posts: &[PostView], i: usize) -> bool {
    if i == 0 {
        return false;
    }
    match (posts.get(i - 1), posts.get(i)) {
        (Some(prev), Some(post)) => {
            prev.author.id == post.author.id
                && !post.is_root
                && post.create_at.saturating_sub(prev.create_at) < 5 * 60 * 1000
        }
        _ => false,
    }
}

fn reply_placeholder(item: &ItemSummary) -> String {
    match item.kind {
        ItemKind::Thread => "Reply to the thread…".to_owned(),
        _ => format!("Message {}…", item.title),
    }
}

/// `GET /signin`.
#[derive(Debug, Clone, Template)]
#[template(path = "signin.html")]
pub struct SignInPage {
    pub layout: Layout,
    pub oauth_enabled: bool,
    pub pat_enabled: bool,
    /// A clear message after a failed attempt.
    pub error: Option<String>,
    /// The configured Mattermost server, shown so users know where they sign in.
    pub mattermost_url: String,
}

/// A snooze preset (computed in the browser's time zone by `app.js`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnoozePreset {
    pub id: &'static str,
    pub label: &'static str,
    pub description: &'static str,
}

/// The snooze menu; `app.js` uses the same ids.
pub const SNOOZE_PRESETS: &[SnoozePreset] = &[
    SnoozePreset {
        id: "later",
        label: "Later today",
        description: "In 3 hours",
    },
    SnoozePreset {
        id: "tomorrow",
        label: "Tomorrow",
        description: "Tomorrow morning",
    },
    SnoozePreset {
        id: "next-week",
        label: "Next week",
        description: "Monday morning",
    },
];

/// `GET /settings`.
#[derive(Debug, Clone, Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub layout: Layout,
    pub mattermost_url: String,
    /// How the user signed in (`"oauth"` or `"token"`), for the "Revoke access" text.
    pub auth_method: String,
    /// The user's live ThreadDesk sessions, most recently used first.
    pub sessions: Vec<SessionView>,
    pub triage: TriageView,
}

/// "Your triage" (settings page; `GET /api/v1/me/triage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TriageView {
    /// Marked done in the last 24 hours / 7 days (on any device; undone ones not counted).
    pub done_day: i64,
    pub done_week: i64,
    /// In the inbox now, and of those, waiting more than a day.
    pub waiting: i64,
    pub waiting_over_day: i64,
    pub oldest: Option<OldestView>,
}

/// The inbox item that has waited longest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OldestView {
    pub key: String,
    pub title: String,
    pub last_activity_at: i64,
}

impl OldestView {
    pub fn iso(&self) -> String {
        iso_time(self.last_activity_at)
    }
}

/// One browser session in the settings page's list (ASVS 7.5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// Public name of the session, posted back to end it.
    pub handle: String,
    /// "Firefox on Linux" (a fixed phrase; "Unknown browser" when older than the column).
    pub agent: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// The session of this page.
    pub current: bool,
}

impl SessionView {
    pub fn created_iso(&self) -> String {
        iso_time(self.created_at)
    }

    pub fn last_seen_iso(&self) -> String {
        iso_time(self.last_seen_at)
    }
}

impl SettingsPage {
    pub fn is_oauth(&self) -> bool {
        self.auth_method == "oauth"
    }

    pub fn snooze_presets(&self) -> &'static [SnoozePreset] {
        SNOOZE_PRESETS
    }
}

/// A cookie ThreadDesk sets (privacy page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieInfo {
    pub name: String,
    pub purpose: String,
    pub lifetime: String,
}

/// A kind of data ThreadDesk keeps (privacy page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInfo {
    pub what: String,
    pub why: String,
    pub kept: String,
}

/// `GET /privacy` — filled from the running configuration.
#[derive(Debug, Clone, Template)]
#[template(path = "privacy.html")]
pub struct PrivacyPage {
    pub layout: Layout,
    pub mattermost_url: String,
    pub retention_days: u32,
    pub stored: Vec<StoredInfo>,
    pub cookies: Vec<CookieInfo>,
    /// Session idle / absolute timeouts as text ("8 hours"), if configured.
    pub session_idle: String,
    pub session_max: String,
}

/// Health of one sync component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Degraded,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Down => "down",
        }
    }
}

/// One row of the admin status table (technical facts only, never content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncHealthRow {
    pub name: String,
    pub health: Health,
    pub detail: String,
    pub last_ok_at: Option<i64>,
}

impl SyncHealthRow {
    pub fn last_ok_label(&self, time: &super::local_time::LocalTime) -> String {
        self.last_ok_at
            .map_or_else(|| "never".to_owned(), |t| time.rel(t))
    }

    pub fn last_ok_iso(&self) -> String {
        self.last_ok_at.map(iso_time).unwrap_or_default()
    }
}

/// `GET /admin/status`.
#[derive(Debug, Clone, Template)]
#[template(path = "admin_status.html")]
pub struct AdminStatusPage {
    pub layout: Layout,
    pub version: String,
    pub mattermost_url: String,
    pub connected_users: u64,
    pub retention_days: u32,
    pub rows: Vec<SyncHealthRow>,
}

/// Any error page.
#[derive(Debug, Clone, Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    /// A fixed, user-facing phrase (never an internal error).
    pub message: String,
}

impl ErrorPage {
    pub fn title(&self) -> &'static str {
        match self.status {
            400 => "That request didn't look right",
            401 => "Please sign in",
            403 => "Not allowed",
            404 => "Not found",
            429 => "Slow down a little",
            500..=599 => "Something went wrong",
            _ => "Something went wrong",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Static assets
// ---------------------------------------------------------------------------------------------

const APP_JS: &[u8] = include_bytes!("../../static/app.js");
const APP_CSS: &[u8] = include_bytes!("../../static/app.css");
const LOGO_SVG: &[u8] = include_bytes!("../../static/logo.svg");

/// `(file name under /static/, content type, bytes)` of every embedded asset.
pub const STATIC_FILES: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", APP_JS),
    ("app.css", "text/css; charset=utf-8", APP_CSS),
    ("logo.svg", "image/svg+xml", LOGO_SVG),
];

/// An embedded asset by file name (`app.js`, `app.css`, `logo.svg`): `(content type, bytes)`.
/// Serve with `Cache-Control: public, max-age=31536000, immutable` when `?v=` matches
/// [`asset_version`].
pub fn static_asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    STATIC_FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ct, bytes)| (*ct, *bytes))
}

/// Short content hash of all assets, used as `?v=` in asset URLs.
pub fn asset_version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        let mut h = Sha256::new();
        for (name, _, bytes) in STATIC_FILES {
            h.update(name.as_bytes());
            h.update(bytes);
        }
        h.finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect()
    });
    &VERSION
}

// ---------------------------------------------------------------------------------------------
// Small formatting helpers
// ---------------------------------------------------------------------------------------------

fn plural(n: u32, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `1.2 MB` style sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// UTC civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

fn split_ms(ms: i64) -> (i64, u32, u32, i64, i64) {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    (y, mo, d, sod / 3600, (sod % 3600) / 60)
}

/// `2026-11-23T08:55:04.120Z` (the `datetime` attribute), as JavaScript's `toISOString`.
pub fn iso_time(ms: i64) -> String {
    let (y, mo, d, h, mi) = split_ms(ms);
    let (s, milli) = (ms.div_euclid(1000).rem_euclid(60), ms.rem_euclid(1000));
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// `Nov 23, 08:55 UTC` — the server-side fallback label before `app.js` localises it.
pub fn short_time(ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi) = split_ms(ms);
    let month = MONTHS
        .get(usize::try_from(mo).unwrap_or(1).saturating_sub(1))
        .copied()
        .unwrap_or("");
    format!("{month} {d} {y}, {h:02}:{mi:02} UTC")
}

#[cfg(test)]
#[path = "views/samples.rs"]
pub(crate) mod samples;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(1_795_424_100_000), "2026-11-23T08:55:00.000Z");
        assert_eq!(iso_time(1_795_424_104_120), "2026-11-23T08:55:04.120Z");
        assert_eq!(iso_time(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(short_time(1_795_424_100_000), "Nov 23 2026, 08:55 UTC");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn sizes_and_encoding() {
        assert_eq!(human_size(10), "10 B");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(50 * 1024 * 1024), "50 MB");
        assert_eq!(url_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn filters_round_trip() {
        for f in QueueFilter::ALL {
            assert_eq!(QueueFilter::parse(f.as_str()), Some(f));
        }
        assert_eq!(QueueFilter::parse("nope"), None);
    }

    #[test]
    fn debug_never_prints_content() {
        let item = samples::items().remove(0);
        let dbg = format!("{item:?}");
        assert!(!dbg.contains(&item.snippet), "{dbg}");
        let post = samples::posts().remove(0);
        let dbg = format!("{post:?}");
        assert!(!dbg.contains("deploy"), "{dbg}");
    }

    #[test]
    fn json_shape() {
        let item = samples::items().remove(0);
        let v = serde_json::to_value(&item).unwrap();
        assert_eq!(v["kind"], "thread");
        assert!(v["snoozed_until"].is_null());
        let post = samples::posts().remove(0);
        let v = serde_json::to_value(&post).unwrap();
        assert!(v["html"].as_str().unwrap().starts_with("<p>"));
        assert_eq!(v["reactions"][0]["glyph"], "👍");
    }

    #[test]
    fn pages_render() {
        for (name, html) in samples::all_pages() {
            assert!(html.starts_with("<!doctype html>"), "{name}");
            assert!(!html.contains("style="), "{name}: inline style");
            assert!(!html.contains(" onclick"), "{name}: inline handler");
            let scripts = html.matches("<script").count();
            assert!(scripts <= 1, "{name}: {scripts} scripts");
            if scripts == 1 {
                assert!(html.contains("nonce=\"n0nce\""), "{name}");
            }
        }
    }

    #[test]
    fn snippet_marks_are_given_in_bytes_for_the_page_and_utf16_for_javascript() {
        let mut it = samples::queue_page().items[0].clone();
        it.snippet = "🎉 é quokka".to_owned();
        let at = it.snippet.find("quokka").unwrap();
        it.set_snippet_marks(&[(at, at + 6)]);
        assert_eq!(it.snippet_parts(), [("🎉 é ", false), ("quokka", true)]);
        // 🎉 is two UTF-16 units, é one: "quokka" starts at 5 in JavaScript.
        assert_eq!(it.snippet_marks, [(5, 11)]);
        let json = serde_json::to_value(&it).unwrap();
        assert_eq!(json["snippet_marks"], serde_json::json!([[5, 11]]));
    }

    #[test]
    fn queue_page_escapes_and_links() {
        let html = samples::queue_page().render().unwrap();
        assert!(html.contains("data-key=\"t_aaaaaaaaaaaaaaaaaaaaaaaaaa\""));
        assert!(
            !html.contains("<script> release"),
            "snippet must be escaped"
        );
        assert!(
            html.contains("<mark>&#60;script&#62;</mark> release"),
            "snippet must be escaped, inside the search's marks too"
        );
        assert!(html.contains(&format!("#post-{}\"", "p".repeat(26))));
        assert!(html.contains("href=\"/?filter=mentions\""));
    }

    #[test]
    fn empty_queue_celebrates() {
        let mut page = samples::queue_page();
        page.items.clear();
        let html = page.render().unwrap();
        assert!(html.contains("Inbox zero"));
    }

    /// The title starts with the Inbox count (whatever view is shown), and has none at zero.
    #[test]
    fn the_title_counts_the_inbox() {
        let mut page = samples::queue_page();
        let html = page.render().unwrap();
        assert!(
            html.contains("<title>(6) Inbox · ThreadDesk</title>"),
            "{html}"
        );
        page.filter = QueueFilter::Done;
        let html = page.render().unwrap();
        assert!(html.contains("<title>(6) Done · ThreadDesk</title>"));
        page.counts.all = 0;
        let html = page.render().unwrap();
        assert!(html.contains("<title>Done · ThreadDesk</title>"));
    }

    /// `cargo test -p threaddesk --lib web::views::tests::preview -- --ignored` writes every
    /// page with sample data to /tmp/threaddesk-preview/ (for screenshots).
    #[test]
    #[ignore]
    fn preview() {
        samples::write_preview(std::path::Path::new("/tmp/threaddesk-preview"));
    }
}
