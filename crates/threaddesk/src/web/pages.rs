//! HTML pages. Each handler: load the user, query the user-scoped store, render.

use std::collections::{HashMap, HashSet};

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::AppState;
use super::error::WebError;
use super::local_time::{ClockPref, LocalTime};
use super::present::{self, Context};
use super::security::CspNonce;
use super::session::{self, ApiUser, CurrentUser, MaybeUser, PageUser};
use super::views::{
    self, AdminStatusPage, CookieInfo, Counts, ErrorPage, Health, ItemFragment, ItemPage,
    ItemSummary, Layout, PrivacyPage, QueueFilter, QueuePage, SessionView, SettingsPage,
    SignInPage, StoredInfo, SyncHealthRow, UserView,
};
use crate::config::SignInMethod;
use crate::inbox::prefs::MarkKind;
use crate::inbox::search::{SearchQuery, excerpt};
use crate::inbox::{Filter, ItemKey};
use crate::store::{Cursor, MessageMatch, MessageText, QueueCounts, UserId, UserStore};

/// Messages shown in a conversation.
pub const CONVERSATION_POSTS: usize = 200;
/// Queue rows per page.
pub const PAGE_SIZE: usize = 50;
/// Longest text filter.
pub const MAX_Q: usize = 200;
/// Store rows read per step when the queue is filtered by team or text ([`load_queue`]).
const FILTER_SCAN_PAGE: usize = 200;
/// Store rows one filtered request reads at most (≈ 2 ms at the P-5 sizes); past that the page
/// may hold fewer rows than asked, with a cursor that continues the scan.
const FILTER_SCAN_MAX: usize = 2_000;
/// Matching messages a text filter reads at most (newest first): a word used more often than
/// this finds the items of its latest uses.
const SEARCH_POSTS_MAX: usize = 1_000;

/// Render a template into a response (a template error is an internal error).
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => WebError::internal(e).into_response(),
    }
}

/// The sidebar's saved searches; `shown` (a saved search's name, or empty) is marked active.
///
/// # Errors
/// Store failure.
pub fn saved_search_views(
    us: &UserStore<'_>,
    shown: &str,
) -> Result<Vec<views::SavedSearchView>, WebError> {
    Ok(us
        .saved_searches()
        .map_err(WebError::internal)?
        .iter()
        .map(|s| views::SavedSearchView {
            name: s.name.clone(),
            label: s.label.clone(),
            href: super::searches::href(s),
            active: !shown.is_empty() && s.name == shown,
        })
        .collect())
}

/// What a full page takes from the request besides the user: the CSP nonce of the response
/// (security middleware) and the UI-preference cookies (the colour theme, the reader's clock).
#[derive(Debug, Clone, Default)]
pub struct PageCtx {
    pub nonce: String,
    pub theme: views::Theme,
    /// The reader's clock (`td_clock`), for time labels.
    pub clock: Option<ClockPref>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PageCtx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let nonce = parts
            .extensions
            .get::<CspNonce>()
            .map(|n| n.0.clone())
            .unwrap_or_default();
        Ok(Self::from_headers(&parts.headers, nonce))
    }
}

impl PageCtx {
    /// The UI-preference cookies of a request, with the response's nonce.
    #[must_use]
    pub fn from_headers(headers: &HeaderMap, nonce: String) -> Self {
        Self {
            nonce,
            theme: views::Theme::from_cookie(session::cookie(headers, views::Theme::COOKIE)),
            clock: session::cookie(headers, ClockPref::COOKIE).and_then(ClockPref::parse),
        }
    }

    /// Time labels in the reader's time, now.
    #[must_use]
    pub fn time(&self, state: &AppState) -> LocalTime {
        LocalTime::new(self.clock, state.now())
    }

    /// The frame of a page for someone not signed in.
    fn signed_out(&self) -> Layout {
        Layout {
            nonce: self.nonce.clone(),
            theme: self.theme,
            ..Layout::default()
        }
    }
}

/// The page frame for a signed-in user.
pub fn layout(state: &AppState, user: &CurrentUser, us: &UserStore<'_>, page: &PageCtx) -> Layout {
    let me = us.profile().ok().flatten().unwrap_or_default();
    Layout {
        user: Some(UserView {
            id: user.user_id.as_str().to_owned(),
            username: me.username.clone(),
            display_name: present::display_name(&me),
            avatar_url: format!("/media/avatar/{}", user.user_id.as_str()),
            is_admin: state.is_admin(&user.user_id),
        }),
        csrf: user.csrf.expose().to_owned(),
        nonce: page.nonce.clone(),
        theme: page.theme,
        time: page.time(state),
    }
}

fn counts_view(c: &QueueCounts) -> Counts {
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    Counts {
        all: u(c.all),
        mentions: u(c.mentions),
        direct: u(c.direct),
        threads: u(c.threads),
        snoozed: u(c.snoozed),
        done: u(c.done),
    }
}

/// Query of the queue (page and API).
#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    pub filter: Option<String>,
    pub team: Option<String>,
    pub q: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

/// A validated queue query.
pub struct QueueRequest {
    pub filter: QueueFilter,
    pub team: Option<String>,
    pub q: String,
    pub cursor: Option<Cursor>,
    pub limit: usize,
}

impl QueueQuery {
    pub fn validate(self) -> Result<QueueRequest, WebError> {
        let filter = match self.filter.as_deref() {
            None | Some("") => QueueFilter::All,
            Some(f) => QueueFilter::parse(f).ok_or_else(|| {
                WebError::BadRequest(
                    "unknown filter; use all, mentions, direct, threads, snoozed or done".into(),
                )
            })?,
        };
        let team = match self.team.as_deref() {
            None | Some("") => None,
            Some(t) if crate::inbox::is_valid_id(t) => Some(t.to_owned()),
            Some(_) => {
                return Err(WebError::BadRequest(
                    "team must be a Mattermost team id".into(),
                ));
            }
        };
        let q = self.q.unwrap_or_default().trim().to_owned();
        if q.chars().count() > MAX_Q {
            return Err(WebError::BadRequest(format!(
                "the text filter is limited to {MAX_Q} characters"
            )));
        }
        let cursor = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(
                Cursor::decode(c)
                    .ok_or_else(|| WebError::BadRequest("cursor is malformed".into()))?,
            ),
        };
        let limit = match self.limit {
            None => PAGE_SIZE,
            Some(n @ 1..=200) => n,
            Some(_) => {
                return Err(WebError::BadRequest(
                    "limit must be between 1 and 200".into(),
                ));
            }
        };
        Ok(QueueRequest {
            filter,
            team,
            q,
            cursor,
            limit,
        })
    }
}

/// The queue for a request, as [`load_queue`] reads it.
pub struct LoadedQueue {
    pub items: Vec<ItemSummary>,
    pub next_cursor: Option<String>,
    pub counts: QueueCounts,
    pub ctx: Context,
    /// With a text filter: items of other views whose messages match it (`filter`, how many).
    pub elsewhere: Vec<(QueueFilter, usize)>,
}

/// The queue for a request: rows as summaries, next cursor, counts, context.
///
/// A text filter (`q`) keeps the rows whose title, snippet or team name contains it, and the
/// rows whose cached messages match it as a search ([`SearchQuery`]): those show the newest
/// matching message as their snippet and link to it.
pub fn load_queue(
    state: &AppState,
    us: &UserStore<'_>,
    req: &QueueRequest,
) -> Result<LoadedQueue, WebError> {
    let now = state.now();
    // A team narrows the store query; the other filters then apply to that team's rows.
    let store_filter = match (&req.team, req.filter) {
        (
            Some(t),
            QueueFilter::All | QueueFilter::Mentions | QueueFilter::Direct | QueueFilter::Threads,
        ) => Filter::Team(t.clone()),
        (_, QueueFilter::All) => Filter::All,
        (_, QueueFilter::Mentions) => Filter::Mentions,
        (_, QueueFilter::Direct) => Filter::Direct,
        (_, QueueFilter::Threads) => Filter::Threads,
        (_, QueueFilter::Snoozed) => Filter::Snoozed,
        (_, QueueFilter::Done) => Filter::Done,
    };
    let post_filter = req.team.is_some() || !req.q.is_empty();
    let counts = us.counts(now).map_err(WebError::internal)?;
    let mut ctx =
        Context::load(us, &state.mattermost_url(), HashMap::new()).map_err(WebError::internal)?;
    if !post_filter {
        let page = us
            .queue(&store_filter, now, req.cursor.as_ref(), req.limit)
            .map_err(WebError::internal)?;
        let items = summaries(us, &mut ctx, &page.rows)?;
        return Ok(LoadedQueue {
            items,
            next_cursor: page.next.map(|c| c.encode()),
            counts,
            ctx,
            elsewhere: Vec::new(),
        });
    }
    let search = SearchQuery::parse(&req.q);
    let matches: HashMap<ItemKey, MessageMatch> = us
        .search_items(&search, SEARCH_POSTS_MAX)
        .map_err(WebError::internal)?
        .into_iter()
        .filter(|m| req.team.is_none() || req.team.as_deref() == Some(m.team_id.as_str()))
        .map(|m| (m.key.clone(), m))
        .collect();
    let elsewhere = elsewhere(req.filter, matches.values(), now);
    // A team's other filters and the text filter apply to what a row shows (its title, snippet,
    // team name), known only once presented: the store's rows are read page by page from the
    // cursor and filtered until the page is full. The scan is bounded per request; where it
    // stops, the next cursor continues it, so every match is reachable.
    let q = req.q.to_lowercase();
    let keep = |s: &ItemSummary| {
        let in_team = match (&req.team, req.filter) {
            (Some(t), f) => {
                s.team_id.as_deref() == Some(t.as_str())
                    && match f {
                        QueueFilter::Mentions => s.mentions > 0,
                        QueueFilter::Direct => !s.kind.is_thread(),
                        QueueFilter::Threads => s.kind.is_thread(),
                        _ => true,
                    }
            }
            _ => true,
        };
        in_team
            && (q.is_empty()
                || s.matched_post_id.is_some()
                || s.title.to_lowercase().contains(&q)
                || s.snippet.to_lowercase().contains(&q)
                || s.team_name
                    .as_deref()
                    .is_some_and(|t| t.to_lowercase().contains(&q)))
    };
    let mut items: Vec<ItemSummary> = Vec::new();
    let mut cursor = req.cursor.clone();
    let mut scanned = 0;
    let next_cursor = 'scan: loop {
        let mut page = us
            .queue(&store_filter, now, cursor.as_ref(), FILTER_SCAN_PAGE)
            .map_err(WebError::internal)?;
        scanned += page.rows.len();
        // A row found by one of its messages shows that message.
        let mut found = Vec::with_capacity(page.rows.len());
        for r in &mut page.rows {
            let m = matches.get(&r.key);
            if let Some(m) = m {
                r.preview_user_id = Some(m.post.user_id.clone());
                r.preview = Some(MessageText::new(excerpt(m.post.message.expose(), &search)));
            }
            found.push(m.map(|m| m.post.post_id.clone()));
        }
        let rows = summaries(us, &mut ctx, &page.rows)?;
        for ((r, mut s), found) in page.rows.iter().zip(rows).zip(found) {
            if found.is_some() {
                let marks = search.highlights(&s.snippet);
                s.set_snippet_marks(&marks);
            }
            s.matched_post_id = found;
            if keep(&s) {
                items.push(s);
                if items.len() == req.limit {
                    // Full: continue after this row (the store's order is activity, key).
                    let after = Cursor {
                        last_activity_at: r.last_activity_at,
                        key: r.key.to_string(),
                    };
                    break 'scan Some(after.encode());
                }
            }
        }
        match page.next {
            None => break None,
            Some(next) if scanned >= FILTER_SCAN_MAX => break Some(next.encode()),
            Some(next) => cursor = Some(next),
        }
    };
    Ok(LoadedQueue {
        items,
        next_cursor,
        counts,
        ctx,
        elsewhere,
    })
}

/// How many of the items found by their messages are in the other views a search can
/// continue in: the inbox, Snoozed and Done (the view shown is left out; Mentions, Direct and
/// Threads are parts of the inbox).
fn elsewhere<'a>(
    shown: QueueFilter,
    matches: impl Iterator<Item = &'a MessageMatch>,
    now: crate::inbox::Millis,
) -> Vec<(QueueFilter, usize)> {
    let views: Vec<QueueFilter> = matches
        .map(|m| {
            if !m.is_open {
                QueueFilter::Done
            } else if m.snoozed_until.is_some_and(|t| t > now) {
                QueueFilter::Snoozed
            } else {
                QueueFilter::All
            }
        })
        .collect();
    let shown = match shown {
        QueueFilter::Snoozed | QueueFilter::Done => shown,
        _ => QueueFilter::All,
    };
    [QueueFilter::All, QueueFilter::Snoozed, QueueFilter::Done]
        .into_iter()
        .filter(|&view| view != shown)
        .map(|view| (view, views.iter().filter(|&&v| v == view).count()))
        .filter(|&(_, n)| n > 0)
        .collect()
}

/// The rows as the queue shows them (the profiles they name loaded into `ctx` first).
fn summaries(
    us: &UserStore<'_>,
    ctx: &mut Context,
    rows: &[crate::store::QueueRow],
) -> Result<Vec<ItemSummary>, WebError> {
    let me = ctx.me.user_id.clone();
    let people: Vec<&str> = rows
        .iter()
        .flat_map(|r| present::row_people(r, &me))
        .collect();
    ctx.want_profiles(us, &people).map_err(WebError::internal)?;
    Ok(rows.iter().map(|r| present::summary(r, ctx)).collect())
}

/// `GET /` — the queue.
pub async fn queue(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    pctx: PageCtx,
    Query(query): Query<QueueQuery>,
) -> Result<Response, WebError> {
    let req = query.validate()?;
    let us = state.store().for_user(&user.user_id);
    let LoadedQueue {
        items,
        next_cursor,
        counts,
        mut ctx,
        elsewhere,
    } = load_queue(&state, &us, &req)?;
    let failed = failed_actions(&us, &mut ctx, &pctx.time(&state))?;
    // The name the search shown would be saved under (none without a text).
    let search_name = if req.q.is_empty() {
        String::new()
    } else {
        crate::inbox::searches::SavedSearch::name_for(
            &req.q,
            req.filter.as_str(),
            req.team.as_deref().unwrap_or(""),
        )
    };
    let saved_searches = saved_search_views(&us, &search_name)?;
    let done_week = if items.is_empty()
        && req.filter == QueueFilter::All
        && req.team.is_none()
        && req.q.is_empty()
    {
        Some(
            us.triage_stats(state.now())
                .map_err(WebError::internal)?
                .done_week,
        )
    } else {
        None
    };
    let page = QueuePage {
        layout: layout(&state, &user, &us, &pctx),
        filter: req.filter,
        team: req.team,
        teams: ctx.team_views(),
        q: req.q,
        items,
        counts: counts_view(&counts),
        next_cursor,
        limit: (req.limit != PAGE_SIZE).then_some(req.limit),
        cursor: req.cursor.as_ref().map(|c| c.encode()),
        failed,
        elsewhere,
        saved_searches,
        search_name,
        done_week,
    };
    Ok(render(&page))
}

/// The user's actions that Mattermost refused or that could not be delivered, with the item
/// each belongs to (the queue lists them above the items, so none goes unnoticed).
fn failed_actions(
    us: &UserStore<'_>,
    ctx: &mut Context,
    time: &LocalTime,
) -> Result<Vec<views::FailedAction>, WebError> {
    let rows = us
        .outbox_rows(Some(crate::store::OutboxState::Failed))
        .map_err(WebError::internal)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(view) = present::undelivered_view(row, time) else {
            continue;
        };
        let title = match ItemKey::parse(&row.item_key) {
            Ok(key) => title_of(us, ctx, &key)?,
            Err(_) => None,
        };
        out.push(views::FailedAction {
            key: row.item_key.clone(),
            title,
            action: view,
        });
    }
    Ok(out)
}

/// An item's title as the queue shows it, if it is still in the cache.
fn title_of(
    us: &UserStore<'_>,
    ctx: &mut Context,
    key: &ItemKey,
) -> Result<Option<String>, WebError> {
    let Some(detail) = us.item(key, 0).map_err(WebError::internal)? else {
        return Ok(None);
    };
    let me = ctx.me.user_id.clone();
    ctx.want_profiles(us, &present::row_people(&detail.row, &me))
        .map_err(WebError::internal)?;
    Ok(Some(present::summary(&detail.row, ctx).title))
}

/// The settings page's "Your triage": the figures, and the oldest waiting item's title.
pub fn triage_view(state: &AppState, us: &UserStore<'_>) -> Result<views::TriageView, WebError> {
    let now = state.now();
    let stats = us.triage_stats(now).map_err(WebError::internal)?;
    let waiting = us.counts(now).map_err(WebError::internal)?.all;
    let oldest = match &stats.oldest {
        Some((key, at)) => {
            let mut ctx = Context::load(us, &state.mattermost_url(), HashMap::new())
                .map_err(WebError::internal)?;
            title_of(us, &mut ctx, key)?.map(|title| views::OldestView {
                key: key.to_string(),
                title,
                last_activity_at: *at,
            })
        }
        None => None,
    };
    Ok(views::TriageView {
        done_day: stats.done_day,
        done_week: stats.done_week,
        waiting,
        waiting_over_day: stats.waiting_over_day,
        oldest,
    })
}

/// One conversation as the item page, its fragment and the JSON API show it.
pub struct LoadedItem {
    pub item: ItemSummary,
    /// Oldest first.
    pub posts: Vec<views::PostView>,
    /// Older messages exist than the ones loaded.
    pub has_older: bool,
    /// The user's actions on the item not delivered yet ([`present::undelivered_view`]).
    pub undelivered: Vec<views::UndeliveredView>,
    /// The user's saved posts (Mattermost's `flagged_post`): the item's and its messages'
    /// saved state.
    pub saved_posts: HashSet<String>,
}

impl LoadedItem {
    /// A thread's root is among the user's saved posts (a DM/GM item has no saved state of its
    /// own: its messages carry theirs).
    #[must_use]
    pub fn saved(&self) -> bool {
        super::api::item_post(&self.item.key).is_some_and(|root| self.saved_posts.contains(root))
    }
}

/// The conversation of an item for the page and the API.
pub fn load_item(
    state: &AppState,
    us: &UserStore<'_>,
    key: &str,
    time: &LocalTime,
) -> Result<LoadedItem, WebError> {
    let key = ItemKey::parse(key).map_err(|_| {
        WebError::BadRequest("item key must be t_<post id> or c_<channel id>".into())
    })?;
    let detail = us
        .item(&key, CONVERSATION_POSTS)
        .map_err(WebError::internal)?
        .ok_or(WebError::NotFound)?;
    let mut ctx =
        Context::load(us, &state.mattermost_url(), HashMap::new()).map_err(WebError::internal)?;
    let me = ctx.me.user_id.clone();
    let mut people: Vec<&str> = present::row_people(&detail.row, &me);
    people.extend(present::post_people(&detail.posts));
    ctx.want_profiles(us, &people).map_err(WebError::internal)?;
    let rctx = ctx.render_ctx();
    let summary = present::summary(&detail.row, &ctx);
    let posts: Vec<views::PostView> = detail
        .posts
        .iter()
        .map(|p| present::post_view(p, &ctx, &rctx))
        .collect();
    let has_older = posts.len() >= CONVERSATION_POSTS;
    // A reply whose post has arrived (by the live events) before the outbox has heard
    // Mattermost's answer is shown once, as the post.
    let arrived: HashSet<&str> = posts
        .iter()
        .filter_map(|p| p.outbox_marker.as_deref())
        .collect();
    let undelivered = us
        .undelivered(&key)
        .map_err(WebError::internal)?
        .iter()
        .filter(|r| !arrived.contains(r.marker.as_str()))
        .filter_map(|r| present::undelivered_view(r, time))
        .collect();
    let saved_posts = super::api::saved_set(us)?;
    Ok(LoadedItem {
        item: summary,
        posts,
        has_older,
        undelivered,
        saved_posts,
    })
}

/// `GET /items/{key}` — one conversation.
pub async fn item(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    pctx: PageCtx,
    Path(key): Path<String>,
) -> Result<Response, WebError> {
    if let Some(ended) =
        super::backfill::ensure_posts_or_ended(&state, &user.user_id, &key, true).await
    {
        return Ok(ended);
    }
    let us = state.store().for_user(&user.user_id);
    let loaded = match load_item(&state, &us, &key, &pctx.time(&state)) {
        Ok(v) => v,
        Err(WebError::NotFound) => {
            return Ok(error_page(
                &state,
                Some(&user),
                &pctx,
                StatusCode::NOT_FOUND,
                "This item is not in your ThreadDesk (it may have expired from the cache, or belongs to someone else).",
            ));
        }
        Err(e) => return Err(e),
    };
    let saved = loaded.saved();
    let page = ItemPage {
        layout: layout(&state, &user, &us, &pctx),
        item: loaded.item,
        posts: loaded.posts,
        has_older: loaded.has_older,
        undelivered: loaded.undelivered,
        saved,
    };
    Ok(render(&page))
}

/// `GET /fragments/items/{key}` — the conversation of `/items/{key}` without the page frame,
/// for the queue to swap into the page in place (`static/app.js`); the page itself stays the
/// real address of the item (links, reload, no JavaScript). Same loading and the same
/// `_conversation.html` as [`item`]; answers like the JSON API when there is no session (401)
/// and is never cached (the security middleware's `no-store`).
pub async fn item_fragment(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(key): Path<String>,
    pctx: PageCtx,
) -> Result<Response, WebError> {
    if let Some(ended) =
        super::backfill::ensure_posts_or_ended(&state, &user.user_id, &key, false).await
    {
        return Ok(ended);
    }
    let us = state.store().for_user(&user.user_id);
    let time = pctx.time(&state);
    let loaded = load_item(&state, &us, &key, &time)?;
    let saved = loaded.saved();
    let fragment = ItemFragment {
        layout: Layout {
            csrf: user.csrf.expose().to_owned(),
            time,
            ..Layout::default()
        },
        item: loaded.item,
        posts: loaded.posts,
        has_older: loaded.has_older,
        undelivered: loaded.undelivered,
        saved,
    };
    Ok(render(&fragment))
}

#[derive(Deserialize)]
pub struct SignInQuery {
    error: Option<String>,
}

fn signin_page(
    state: &AppState,
    csrf: String,
    pctx: &PageCtx,
    error: Option<String>,
) -> SignInPage {
    let methods = &state.config().sign_in_methods;
    SignInPage {
        layout: Layout {
            csrf,
            ..pctx.signed_out()
        },
        oauth_enabled: methods.contains(&SignInMethod::OAuth) && state.inner().oauth.is_some(),
        pat_enabled: methods.contains(&SignInMethod::PersonalAccessToken),
        error,
        mattermost_url: state.mattermost_url(),
    }
}

/// `GET /signin`
pub async fn signin(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    headers: HeaderMap,
    pctx: PageCtx,
    Query(q): Query<SignInQuery>,
) -> Response {
    if user.is_some() {
        return Redirect::to("/").into_response();
    }
    let (binding, set) = super::auth::pre_binding(&state, &headers);
    let error = q.error.map(|e| e.chars().take(200).collect());
    let mut res = render(&signin_page(&state, binding, &pctx, error));
    if let Some(c) = set {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

/// The sign-in page with an error message.
pub async fn signin_error(state: &AppState, headers: &HeaderMap, message: &str) -> Response {
    signin_error_status(state, headers, StatusCode::BAD_REQUEST, message).await
}

/// The sign-in page with an error message and status.
pub async fn signin_error_status(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    message: &str,
) -> Response {
    let (binding, set) = super::auth::pre_binding(state, headers);
    // The nonce of an error render: a fresh one is set by the middleware for this response.
    let pctx = PageCtx::from_headers(headers, String::new());
    let mut res = render(&signin_page(
        state,
        binding,
        &pctx,
        Some(message.to_owned()),
    ));
    *res.status_mut() = status;
    if let Some(c) = set {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

/// `GET /settings`
pub async fn settings(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    pctx: PageCtx,
) -> Result<Response, WebError> {
    let us = state.store().for_user(&user.user_id);
    let method = crate::account::load(state.store(), &state.inner().cipher, &user.user_id)
        .map(|c| c.method.as_str().to_owned())
        .unwrap_or_else(|_| "token".to_owned());
    let idle = i64::try_from(state.config().session_idle_timeout.as_millis()).unwrap_or(i64::MAX);
    let sessions = us
        .sessions(&user.session_token, state.now(), idle)
        .map_err(WebError::internal)?
        .into_iter()
        .map(|s| SessionView {
            handle: s.handle,
            agent: if s.user_agent.is_empty() {
                "Unknown browser".to_owned()
            } else {
                s.user_agent
            },
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            current: s.current,
        })
        .collect();
    let page = SettingsPage {
        layout: layout(&state, &user, &us, &pctx),
        mattermost_url: state.mattermost_url(),
        auth_method: method,
        sessions,
        triage: triage_view(&state, &us)?,
    };
    Ok(render(&page))
}

/// Form of `POST /me/sessions/end`.
#[derive(Deserialize)]
pub struct EndSessionForm {
    #[serde(default)]
    csrf: String,
    /// A session handle from the settings page, or `others`.
    #[serde(default)]
    session: String,
}

/// `POST /me/sessions/end` — end one of the user's sessions (by its handle from the settings
/// page) or, with `session=others`, every session but this one. Only the user's own sessions
/// can be named: any other handle is "not found", whoever it belongs to.
pub async fn end_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageUser(user): PageUser,
    Form(form): Form<EndSessionForm>,
) -> Result<Response, WebError> {
    session::check_fetch_site(&headers)?;
    user.check_csrf(Some(&form.csrf))?;
    let us = state.store().for_user(&user.user_id);
    if form.session == "others" {
        let n = us
            .end_other_sessions(&user.session_token)
            .map_err(WebError::internal)?;
        tracing::info!(user.id = %user.user_id.as_str(), ended = n, "other sessions ended");
        return Ok(Redirect::to("/settings#sessions").into_response());
    }
    if form.session.len() != 32 || !form.session.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WebError::BadRequest(
            "`session` must be a session from the settings page, or `others`".into(),
        ));
    }
    let current = us
        .sessions(&user.session_token, state.now(), i64::MAX)
        .map_err(WebError::internal)?
        .into_iter()
        .any(|s| s.current && s.handle == form.session);
    if !us.end_session(&form.session).map_err(WebError::internal)? {
        return Err(WebError::NotFound);
    }
    tracing::info!(user.id = %user.user_id.as_str(), current, "session ended");
    if current {
        let secure = state.config().cookie_secure();
        let (name, _) = session::cookie_names(secure);
        let mut res = Redirect::to("/signin").into_response();
        res.headers_mut()
            .append(header::SET_COOKIE, session::set_cookie(name, "", 0, secure));
        return Ok(res);
    }
    Ok(Redirect::to("/settings#sessions").into_response())
}

fn human_duration(d: std::time::Duration) -> String {
    let h = d.as_secs() / 3600;
    if h >= 48 && h.is_multiple_of(24) {
        format!("{} days", h / 24)
    } else if h >= 1 {
        format!("{h} hours")
    } else {
        format!("{} minutes", d.as_secs() / 60)
    }
}

/// `GET /privacy` — what ThreadDesk processes and keeps, from the running configuration.
pub async fn privacy(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    pctx: PageCtx,
) -> Response {
    let cfg = state.config();
    let days = cfg.retention_days;
    let secure = cfg.cookie_secure();
    let (session_name, pre_name) = session::cookie_names(secure);
    let layout = match &user {
        Some(u) => layout(&state, u, &state.store().for_user(&u.user_id), &pctx),
        None => pctx.signed_out(),
    };
    let page = PrivacyPage {
        layout,
        mattermost_url: state.mattermost_url(),
        retention_days: days,
        stored: vec![
            StoredInfo {
                what: "Recent messages, threads and channel read state of the conversations in your queue".into(),
                why: "To show your queue instantly; it is a cache of what Mattermost already holds".into(),
                kept: format!("{days} days, then purged automatically"),
            },
            StoredInfo {
                what: "Your Mattermost access token".into(),
                why: "To act for you in Mattermost (read state, replies, follows)".into(),
                kept: "Encrypted at rest; deleted when you sign out or delete your data".into(),
            },
            StoredInfo {
                what: "Done and snooze marks".into(),
                why: "Your triage state".into(),
                kept: "In your Mattermost preferences (they follow you across devices); mirrored here for the same retention".into(),
            },
            StoredInfo {
                what: "Replies and actions waiting to be delivered".into(),
                why: "So nothing you type is lost while Mattermost is unreachable".into(),
                kept: "Until Mattermost confirms them".into(),
            },
            StoredInfo {
                what: "Your signed-in sessions: when each began and was last used, and the browser's name and system (e.g. “Firefox on Linux”); no IP address".into(),
                why: "To keep you signed in, and so you can see and end your sessions in Settings".into(),
                kept: format!(
                    "Until you sign out or end the session, after {} unused, or after {} at most",
                    human_duration(cfg.session_idle_timeout),
                    human_duration(cfg.session_absolute_timeout)
                ),
            },
        ],
        cookies: vec![
            CookieInfo {
                name: session_name.into(),
                purpose: "Keeps you signed in (technical; HttpOnly)".into(),
                lifetime: human_duration(cfg.session_absolute_timeout),
            },
            CookieInfo {
                name: pre_name.into(),
                purpose: "Protects the sign-in against forgery (technical)".into(),
                lifetime: "1 hour, removed after sign-in".into(),
            },
            CookieInfo {
                name: views::Theme::COOKIE.into(),
                purpose: "Your colour theme when it is not the system's (a UI preference), so pages open in it".into(),
                lifetime: "1 year, removed when you choose the system's theme again".into(),
            },
            CookieInfo {
                name: ClockPref::COOKIE.into(),
                purpose: "Your browser's time zone offset and 12- or 24-hour clock (a UI preference), so times are shown in your time".into(),
                lifetime: "1 year".into(),
            },
        ],
        session_idle: human_duration(cfg.session_idle_timeout),
        session_max: human_duration(cfg.session_absolute_timeout),
    };
    render(&page)
}

/// `GET /admin/status` — sync health without any message content.
pub async fn admin_status(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    pctx: PageCtx,
) -> Result<Response, WebError> {
    if !state.is_admin(&user.user_id) {
        return Err(WebError::NotFound);
    }
    let us = state.store().for_user(&user.user_id);
    let status = state.engine().status();
    let connected = status.users.iter().filter(|u| u.connected).count();
    let mut rows: Vec<SyncHealthRow> = status
        .users
        .iter()
        .map(|u| SyncHealthRow {
            name: format!("user {}", u.user_id),
            health: if u.connected {
                Health::Ok
            } else if u.last_error.is_some() {
                Health::Down
            } else {
                Health::Degraded
            },
            detail: format!(
                "{:?}; {} events; initial sync {} calls / {} ms; {} resyncs{}",
                u.phase,
                u.events_applied,
                u.initial_sync_calls,
                u.initial_sync_ms,
                u.resyncs,
                u.last_error
                    .as_deref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            ),
            last_ok_at: u.last_sync_at,
        })
        .collect();
    rows.insert(
        0,
        SyncHealthRow {
            name: "Mattermost rate limit".into(),
            health: if status.rate_limit.paused_for_ms > 0 {
                Health::Degraded
            } else {
                Health::Ok
            },
            // "Mattermost is rate limiting ThreadDesk (429): all requests wait another 2.4 s …"
            detail: status.rate_limit.summary(),
            last_ok_at: None,
        },
    );
    let page = AdminStatusPage {
        layout: layout(&state, &user, &us, &pctx),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        mattermost_url: state.mattermost_url(),
        connected_users: u64::try_from(connected).unwrap_or(0),
        retention_days: state.config().retention_days,
        rows,
    };
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
    /// Also delete ThreadDesk's done/snooze preferences in Mattermost.
    #[serde(default)]
    delete_preferences: Option<String>,
}

/// `POST /me/delete` — "Delete my data": signs out everywhere, deletes the user's cache rows
/// and stored token, optionally ThreadDesk's preferences in Mattermost.
pub async fn delete_my_data(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageUser(user): PageUser,
    Form(form): Form<DeleteForm>,
) -> Result<Response, WebError> {
    session::check_fetch_site(&headers)?;
    user.check_csrf(Some(&form.csrf))?;
    if form.delete_preferences.is_some() {
        delete_mark_preferences(&state, &user.user_id).await?;
    }
    super::auth::sign_out_everywhere(&state, &user.user_id, true).await;
    state
        .store()
        .for_user(&user.user_id)
        .delete_all()
        .map_err(WebError::internal)?;
    tracing::info!(user.id = %user.user_id.as_str(), "user data deleted");
    let secure = state.config().cookie_secure();
    let (name, _) = session::cookie_names(secure);
    let mut res = Redirect::to("/signin?error=Your+ThreadDesk+data+was+deleted.").into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, session::set_cookie(name, "", 0, secure));
    Ok(res)
}

/// Delete ThreadDesk's preferences (done and snooze marks, saved searches) from the user's
/// Mattermost account.
async fn delete_mark_preferences(state: &AppState, user: &UserId) -> Result<(), WebError> {
    let client = state
        .user_client(user)
        .await
        .map_err(|_| WebError::Unauthenticated)?;
    let ours = [
        MarkKind::Done.category(),
        MarkKind::Snooze.category(),
        crate::inbox::searches::SEARCH_CATEGORY,
    ];
    let prefs: Vec<_> = client
        .get_preferences(mattermost::ME)
        .await
        .map_err(|_| WebError::Unavailable)?
        .into_iter()
        .filter(|p| ours.contains(&p.category.as_str()))
        .collect();
    if !prefs.is_empty() {
        client
            .delete_preferences(mattermost::ME, &prefs)
            .await
            .map_err(|_| WebError::Unavailable)?;
    }
    Ok(())
}

/// `GET /static/{name}` — embedded assets, immutable when the version matches.
pub async fn static_file(Path(name): Path<String>) -> Response {
    match views::static_asset(&name) {
        Some((ct, bytes)) => {
            let mut res = bytes.into_response();
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            res
        }
        None => WebError::NotFound.into_response(),
    }
}

/// `GET /readyz` — the store answers.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store().schema_version() {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response(),
    }
}

/// An error page.
pub fn error_page(
    state: &AppState,
    user: Option<&CurrentUser>,
    pctx: &PageCtx,
    status: StatusCode,
    message: &str,
) -> Response {
    let layout = match user {
        Some(u) => layout(state, u, &state.store().for_user(&u.user_id), pctx),
        None => pctx.signed_out(),
    };
    let page = ErrorPage {
        layout,
        status: status.as_u16(),
        message: message.to_owned(),
    };
    let mut res = render(&page);
    *res.status_mut() = status;
    res
}

/// Addresses whose errors stay JSON: the API, and what pages fetch or embed rather than show
/// (fragments, media, assets, probes).
fn errors_stay_json(path: &str) -> bool {
    ["/api/", "/fragments/", "/media/", "/static/"]
        .iter()
        .any(|p| path.starts_with(p))
        || matches!(path, "/healthz" | "/readyz")
}

/// Pages answer an error as a page: a handler's [`WebError`] (JSON, as the API wants it) on a
/// page address (`/items/<bad key>`, `/?filter=bogus`, a form posted with a stale CSRF token,
/// `/admin/status` for a user who is not an admin) becomes the error page, with the same status,
/// message and `Set-Cookie` / `Retry-After`. Inside the security layer, so the page's script
/// nonce is the response's.
pub async fn errors_as_pages(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if errors_stay_json(req.uri().path()) {
        return next.run(req).await;
    }
    // What the error page reads of the request: the session and UI-preference cookies.
    let mut cookies = HeaderMap::new();
    for v in req.headers().get_all(header::COOKIE) {
        cookies.append(header::COOKIE, v.clone());
    }
    let nonce = req
        .extensions()
        .get::<CspNonce>()
        .map(|n| n.0.clone())
        .unwrap_or_default();
    let res = next.run(req).await;
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !json || !(res.status().is_client_error() || res.status().is_server_error()) {
        return res;
    }
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            parts
                .status
                .canonical_reason()
                .unwrap_or("error")
                .to_owned()
        });
    let (mut probe, ()) = axum::http::Request::new(()).into_parts();
    probe.headers = cookies;
    let user = match <MaybeUser as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut probe, &state,
    )
    .await
    {
        Ok(MaybeUser(u)) => u,
        Err(_) => None,
    };
    let pctx = PageCtx::from_headers(&probe.headers, nonce);
    let mut page = error_page(&state, user.as_ref(), &pctx, parts.status, &message);
    for name in [header::SET_COOKIE, header::RETRY_AFTER] {
        for v in parts.headers.get_all(&name) {
            page.headers_mut().append(name.clone(), v.clone());
        }
    }
    page
}

/// Fallback: 404 as JSON under `/api/`, as a page elsewhere.
pub async fn not_found(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    MaybeUser(user): MaybeUser,
    pctx: PageCtx,
) -> Response {
    if uri.path().starts_with("/api/") {
        return WebError::NotFound.into_response();
    }
    error_page(
        &state,
        user.as_ref(),
        &pctx,
        StatusCode::NOT_FOUND,
        "There is no page at this address.",
    )
}

/// Form fields of an action posted without JavaScript.
#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    message: Option<String>,
    emoji: Option<String>,
    /// Snooze for this many hours.
    hours: Option<i64>,
    /// `queue`: the form is the queue's, whose page comes back after any action.
    return_to: Option<String>,
    /// `retry` / `discard`: the undelivered action.
    outbox_id: Option<i64>,
}

/// Snooze for `hours` (a form's field) from `now`: 1 hour to a year.
fn hours_until(hours: Option<i64>, now: i64) -> Result<Option<i64>, WebError> {
    match hours {
        Some(h @ 1..=8784) => Ok(Some(now + h * 3_600_000)),
        Some(_) => Err(WebError::BadRequest(
            "hours must be between 1 and 8784".into(),
        )),
        None => Ok(None),
    }
}

/// `POST /bulk` — the queue's selection without JavaScript: the checked rows (`key`, repeated),
/// the button pressed (`bulk` = done, snooze, read, …; `hours` for a snooze), the CSRF token,
/// and the page to come back to (`return_to`). Every item acted on comes back to the queue;
/// if some could not be, a page says which and why.
pub async fn bulk_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageUser(user): PageUser,
    pctx: PageCtx,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    session::check_fetch_site(&headers)?;
    let (mut csrf, mut action, mut hours, mut return_to) = (None, None, None, None);
    let mut keys = Vec::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "csrf" => csrf = Some(v.into_owned()),
            // `snooze:<hours>`: the snooze button carries its duration (a separate field
            // would be sent by the rows' own buttons too).
            "bulk" => match v.split_once(':') {
                Some(("snooze", h)) => {
                    action = Some("snooze".to_owned());
                    hours = Some(
                        h.parse::<i64>()
                            .map_err(|_| WebError::BadRequest("hours must be a number".into()))?,
                    );
                }
                _ => action = Some(v.into_owned()),
            },
            "key" => keys.push(v.into_owned()),
            "return_to" => return_to = Some(v.into_owned()),
            _ => {}
        }
    }
    user.check_csrf(csrf.as_deref())?;
    let action = action
        .ok_or_else(|| WebError::BadRequest("choose what to do with the selected items".into()))?;
    let until = hours_until(hours, state.now())?;
    let results = super::api::perform_bulk(
        &state,
        &user.user_id,
        &action,
        &keys,
        until,
        &HashMap::new(),
    )
    .await?;
    let failed: Vec<&super::api::BulkResult> = results.iter().filter(|r| !r.ok).collect();
    if let Some(first) = failed.first() {
        let why: Vec<String> = failed
            .iter()
            .map(|r| r.error.clone().unwrap_or_default())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let status = first
            .status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        return Ok(error_page(
            &state,
            Some(&user),
            &pctx,
            status,
            &format!(
                "{} of {} selected items could not be changed ({}); the others were.",
                failed.len(),
                results.len(),
                why.join("; ")
            ),
        ));
    }
    let back = return_to
        .as_deref()
        .and_then(queue_return_path)
        .unwrap_or("/");
    Ok(Redirect::to(back).into_response())
}

/// Where a form asks to come back to, when it is a page of the queue: `queue` (its first
/// page) or the queue's own address with its view, cursor and page size (`/?…`, at most 2 KiB,
/// printable ASCII). Anything else — another path, another host (`//…`), a scheme — is not
/// followed.
fn queue_return_path(to: &str) -> Option<&str> {
    if to == "queue" {
        return Some("/");
    }
    let ok = (to == "/" || to.starts_with("/?"))
        && to.len() <= 2048
        && to.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    ok.then_some(to)
}

/// `POST /items/{key}/{action}` — the same actions as the JSON API, for plain HTML forms (the
/// page works without JavaScript): CSRF from the form field, then a redirect back.
pub async fn act_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageUser(user): PageUser,
    Path((key, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    session::check_fetch_site(&headers)?;
    user.check_csrf(Some(&form.csrf))?;
    let until = hours_until(form.hours, state.now())?;
    let body = super::api::ActionBody {
        message: form.message,
        until,
        emoji: form.emoji,
        post_id: None,
        on: None,
        outbox_id: form.outbox_id,
    };
    super::api::perform(&state, &user.user_id, &key, &action, body).await?;
    let back = match form.return_to.as_deref().and_then(queue_return_path) {
        Some(queue) => queue.to_owned(),
        None if matches!(action.as_str(), "done" | "snooze") => "/".to_owned(),
        None => format!("/items/{key}"),
    };
    Ok(Redirect::to(&back).into_response())
}

#[cfg(test)]
mod tests {
    use super::queue_return_path;

    #[test]
    fn return_paths_are_queue_addresses_only() {
        for ok in ["queue", "/", "/?filter=mentions", "/?cursor=abc&limit=2"] {
            assert!(queue_return_path(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "/items/t_x",
            "/?a=b c",
            "/?\u{e9}",
            "?filter=done",
        ] {
            assert!(queue_return_path(bad).is_none(), "{bad}");
        }
        assert!(queue_return_path(&format!("/?q={}", "a".repeat(2100))).is_none());
    }

    proptest::proptest! {
        /// Whatever a form sends, a redirect goes to a path of this site's queue: `/` alone or
        /// `/?…` in printable ASCII without a backslash (never `//host`, a scheme or another
        /// path), and only what was sent (or `/` for `queue`).
        #[test]
        fn any_return_to_is_a_local_queue_address_or_refused(s in "\\PC{0,40}|/\\?[ -~]{0,40}|//[ -~]{0,20}") {
            if let Some(to) = queue_return_path(&s) {
                proptest::prop_assert!(to == "/" || to.starts_with("/?"));
                proptest::prop_assert!(to.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'));
                proptest::prop_assert!(to == s || (s == "queue" && to == "/"));
            }
        }
    }
}
