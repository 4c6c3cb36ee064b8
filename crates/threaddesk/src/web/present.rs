//! Store rows → view models (pages and JSON API share them).

use std::collections::HashMap;

use serde::Deserialize;

use super::local_time::LocalTime;
use super::render::RenderCtx;
use super::views::{
    AuthorView, FileView, ItemKind, ItemSummary, PostView, ReactionView, SafeHtml, TeamView,
    UndeliveredView,
};
use crate::inbox::{self, ItemKey};
use crate::store::{OutboxRow, OutboxState, Post, Profile, QueueRow, StoreError, Team, UserStore};

/// Longest snippet shown in the queue.
const SNIPPET_CHARS: usize = 160;

/// Display name as Mattermost's default `full_name` setting shows it, falling back to the
/// nickname, then the username.
#[must_use]
pub fn display_name(p: &Profile) -> String {
    let full = format!("{} {}", p.first_name.trim(), p.last_name.trim());
    let full = full.trim();
    if !full.is_empty() {
        full.to_owned()
    } else if !p.nickname.trim().is_empty() {
        p.nickname.trim().to_owned()
    } else {
        p.username.clone()
    }
}

/// What a page needs besides the rows: people, teams, the site.
pub struct Context {
    pub me: Profile,
    pub profiles: HashMap<String, Profile>,
    pub teams: Vec<Team>,
    pub site_url: String,
    pub custom_emoji: HashMap<String, String>,
}

impl Context {
    /// Load the people and teams of the user's cache.
    pub fn load(
        us: &UserStore<'_>,
        site_url: &str,
        custom_emoji: HashMap<String, String>,
    ) -> Result<Self, StoreError> {
        let me = us.profile()?.unwrap_or_default();
        let teams = us.teams()?;
        Ok(Self {
            me,
            profiles: HashMap::new(),
            teams,
            site_url: site_url.trim_end_matches('/').to_owned(),
            custom_emoji,
        })
    }

    /// Make sure the profiles of `ids` are loaded.
    pub fn want_profiles(&mut self, us: &UserStore<'_>, ids: &[&str]) -> Result<(), StoreError> {
        let missing: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| !self.profiles.contains_key(*id))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for p in us.profiles(&missing)? {
            self.profiles.insert(p.user_id.clone(), p);
        }
        Ok(())
    }

    #[must_use]
    pub fn render_ctx(&self) -> RenderCtx {
        let mut ctx = RenderCtx::new(self.me.username.clone(), self.site_url.clone());
        ctx.custom_emoji.clone_from(&self.custom_emoji);
        ctx
    }

    #[must_use]
    pub fn team_views(&self) -> Vec<TeamView> {
        self.teams
            .iter()
            .filter(|t| t.delete_at == 0)
            .map(|t| TeamView {
                id: t.team_id.clone(),
                name: t.display_name.clone(),
            })
            .collect()
    }

    fn team(&self, id: &str) -> Option<&Team> {
        self.teams.iter().find(|t| t.team_id == id)
    }

    /// Any team name (Mattermost permalinks need one; DMs work under every team).
    fn any_team_name(&self, team_id: &str) -> String {
        self.team(team_id)
            .or_else(|| self.teams.first())
            .map(|t| t.name.clone())
            .unwrap_or_default()
    }

    fn name_of(&self, user_id: &str) -> String {
        self.profiles
            .get(user_id)
            .map_or_else(|| "someone".to_owned(), display_name)
    }
}

/// The other member of a DM channel (DM names are `<id>__<id>`, research §3.1); a self-DM
/// yields `me`.
fn dm_partner<'a>(row: &'a QueueRow, me: &'a str) -> Option<&'a str> {
    let (a, b) = row.channel_name.split_once("__")?;
    (row.team_id.is_empty() && a.len() == 26 && b.len() == 26).then_some(if a == me {
        b
    } else {
        a
    })
}

/// User ids a row needs for its title (DM partner) and preview author.
#[must_use]
pub fn row_people<'a>(row: &'a QueueRow, me: &'a str) -> Vec<&'a str> {
    let mut ids = Vec::new();
    if let Some(p) = dm_partner(row, me) {
        ids.push(p);
    }
    if let Some(u) = &row.preview_user_id {
        ids.push(u.as_str());
    }
    ids
}

/// Plain-text snippet of a message: markdown markers removed, whitespace folded, truncated.
#[must_use]
pub fn snippet(text: &str) -> String {
    let mut out = String::new();
    let mut in_fence = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_fence = !in_fence;
            if in_fence {
                out.push_str(" [code] ");
            }
            continue;
        }
        if in_fence {
            continue;
        }
        let t = t.trim_start_matches(['#', '>', '-', '*', '|', ' ']);
        out.push_str(t);
        out.push(' ');
    }
    let cleaned: String = emoji_shortcodes(&out)
        .chars()
        .filter(|c| !matches!(c, '*' | '_' | '`' | '~'))
        .collect();
    let folded = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.chars().count() > SNIPPET_CHARS {
        let cut: String = folded.chars().take(SNIPPET_CHARS - 1).collect();
        format!("{}…", cut.trim_end())
    } else {
        folded
    }
}

/// `:name:` → the Unicode emoji where it is a known built-in one (unknown names stay as text).
fn emoji_shortcodes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(':') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-')))
            .unwrap_or(after.len());
        let glyph = (name_len > 0 && after[name_len..].starts_with(':'))
            .then(|| super::render::emoji_glyph(&after[..name_len]))
            .flatten();
        if let Some(g) = glyph {
            out.push_str(g);
            rest = &after[name_len + 1..];
        } else {
            out.push(':');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A queue row as the page and the API show it.
#[must_use]
pub fn summary(row: &QueueRow, ctx: &Context) -> ItemSummary {
    let me = ctx.me.user_id.as_str();
    let kind = match row.kind {
        inbox::ItemKind::Thread | inbox::ItemKind::Mention => ItemKind::Thread,
        inbox::ItemKind::Direct => ItemKind::Direct,
        inbox::ItemKind::Group => ItemKind::Group,
    };
    let others_of_group = || {
        // GM display names are the members' usernames joined by ", " (research §3.1).
        let others: Vec<&str> = row
            .channel_display_name
            .split(", ")
            .filter(|n| *n != ctx.me.username)
            .collect();
        others.join(", ")
    };
    let title = if let Some(partner) = dm_partner(row, me) {
        ctx.name_of(partner)
    } else if row.kind == inbox::ItemKind::Group
        || (row.team_id.is_empty() && row.channel_display_name.contains(", "))
    {
        others_of_group()
    } else if row.channel_display_name.is_empty() {
        "Thread".to_owned()
    } else {
        row.channel_display_name.clone()
    };
    let team_name = ctx.team(&row.team_id).map(|t| t.display_name.clone());
    let snippet = row.preview.as_ref().map_or_else(String::new, |m| {
        let who = row
            .preview_user_id
            .as_deref()
            .map(|u| ctx.name_of(u))
            .unwrap_or_default();
        let text = snippet(m.expose());
        if who.is_empty() {
            text
        } else {
            format!("{who}: {text}")
        }
    });
    let team_for_link = ctx.any_team_name(&row.team_id);
    let permalink = match &row.key {
        ItemKey::Thread(root) => format!("{}/{team_for_link}/pl/{root}", ctx.site_url),
        ItemKey::Channel(_) if row.kind == inbox::ItemKind::Direct => {
            let partner = dm_partner(row, me).unwrap_or(me);
            let username = ctx
                .profiles
                .get(partner)
                .map_or_else(|| partner.to_owned(), |p| p.username.clone());
            format!("{}/{team_for_link}/messages/@{username}", ctx.site_url)
        }
        ItemKey::Channel(_) => format!(
            "{}/{team_for_link}/messages/{}",
            ctx.site_url, row.channel_name
        ),
    };
    let done = row.done_at.is_some_and(|d| d >= row.last_activity_at);
    ItemSummary {
        key: row.key.to_string(),
        kind,
        title,
        team_id: (!row.team_id.is_empty()).then(|| row.team_id.clone()),
        team_name,
        snippet,
        last_activity_at: row.last_activity_at,
        unread_replies: u32::try_from(row.counts.unread.max(0)).unwrap_or(u32::MAX),
        mentions: u32::try_from(row.counts.mentions.max(0)).unwrap_or(u32::MAX),
        urgent: row.counts.urgent > 0,
        unread: row.counts.unread > 0,
        snoozed_until: row.snoozed_until,
        done,
        following: row.kind == inbox::ItemKind::Thread,
        permalink,
        matched_post_id: None,
        snippet_marks: Vec::new(),
    }
}

#[derive(Deserialize)]
struct ReactionJson {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    emoji_name: String,
}

#[derive(Deserialize, Default)]
struct MetadataJson {
    #[serde(default)]
    files: Vec<FileJson>,
    #[serde(default)]
    reactions: Vec<ReactionJson>,
}

#[derive(Deserialize)]
struct FileJson {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    mime_type: String,
    #[serde(default)]
    size: i64,
}

/// Authors a list of posts needs.
#[must_use]
pub fn post_people(posts: &[Post]) -> Vec<&str> {
    posts.iter().map(|p| p.user_id.as_str()).collect()
}

/// A cached post as the conversation shows it.
#[must_use]
pub fn post_view(p: &Post, ctx: &Context, rctx: &RenderCtx) -> PostView {
    let meta: MetadataJson = serde_json::from_str(p.metadata.expose()).unwrap_or_default();
    let mut reactions_raw: Vec<ReactionJson> =
        serde_json::from_str(p.reactions.expose()).unwrap_or_default();
    if reactions_raw.is_empty() {
        reactions_raw = meta.reactions;
    }
    let mut reactions: Vec<ReactionView> = Vec::new();
    for r in reactions_raw.iter().filter(|r| !r.emoji_name.is_empty()) {
        let mine = r.user_id == ctx.me.user_id;
        if let Some(existing) = reactions.iter_mut().find(|x| x.emoji == r.emoji_name) {
            existing.count += 1;
            existing.mine |= mine;
        } else {
            reactions.push(ReactionView {
                emoji: r.emoji_name.clone(),
                count: 1,
                mine,
                image_url: ctx.custom_emoji.get(&r.emoji_name).cloned(),
            });
        }
    }
    let files = meta
        .files
        .into_iter()
        .filter(|f| super::media::valid_id(&f.id))
        .map(|f| FileView {
            thumbnail_url: format!("/media/files/{}/thumbnail", f.id),
            url: format!("/media/files/{}", f.id),
            id: f.id,
            name: f.name,
            mime: f.mime_type,
            size: u64::try_from(f.size).unwrap_or(0),
        })
        .collect();
    let author = ctx.profiles.get(&p.user_id);
    let deleted = p.delete_at > 0;
    PostView {
        id: p.post_id.clone(),
        author: AuthorView {
            id: p.user_id.clone(),
            display_name: author.map_or_else(|| "Unknown user".to_owned(), display_name),
            username: author.map(|a| a.username.clone()).unwrap_or_default(),
            avatar_url: format!("/media/avatar/{}", p.user_id),
        },
        create_at: p.create_at,
        edited: p.edit_at > 0,
        deleted,
        html: if deleted {
            SafeHtml::from_text("(message deleted)")
        } else {
            SafeHtml::from_markdown(p.message.expose(), rctx)
        },
        reactions,
        files: if deleted { Vec::new() } else { files },
        is_root: p.root_id.is_empty(),
        outbox_marker: outbox_marker(p, &ctx.me.user_id),
    }
}

/// The outbox marker of a post the reader sent through ThreadDesk (`props.threaddesk_outbox_id`
/// of one of the reader's own posts; another author's props name no outbox row of the reader).
#[must_use]
pub fn outbox_marker(p: &Post, me: &str) -> Option<String> {
    if p.user_id != me {
        return None;
    }
    let props: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(p.props.expose()).ok()?;
    crate::sync::convert::marker_in(&props)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
}

/// An undelivered outbox row as the conversation shows it: replies in every state (the
/// pending message), other actions only once they failed (while they wait they are already
/// shown by the item's state). `None` for rows shown nowhere.
#[must_use]
pub fn undelivered_view(row: &OutboxRow, time: &LocalTime) -> Option<UndeliveredView> {
    use crate::sync::Action as A;
    let state = match row.state {
        OutboxState::Queued => "queued",
        OutboxState::Inflight => "sending",
        OutboxState::Failed => "failed",
        OutboxState::Sent => return None,
    };
    let action = serde_json::from_str::<A>(row.payload.expose()).ok();
    let is_reply = matches!(action, Some(A::Reply { .. }));
    if state != "failed" && !is_reply {
        return None;
    }
    let what = match &action {
        Some(A::Reply { .. }) => "Reply".to_owned(),
        Some(A::MarkRead { .. }) => "Mark read".to_owned(),
        Some(A::MarkUnread { .. }) => "Mark unread".to_owned(),
        Some(A::Done { .. }) => "Done".to_owned(),
        Some(A::UndoDone { .. }) => "Undo done".to_owned(),
        Some(A::Snooze { until, .. }) => format!("Snooze until {}", time.future(until)),
        Some(A::Unsnooze { .. }) => "Unsnooze".to_owned(),
        Some(A::Follow { .. }) => "Follow the thread".to_owned(),
        Some(A::Unfollow { .. }) => "Unfollow the thread".to_owned(),
        Some(A::React {
            emoji_name, add, ..
        }) => format!(
            "{} :{emoji_name}:",
            if *add {
                "React with"
            } else {
                "Remove the reaction"
            }
        ),
        Some(A::Save { saved, .. }) => if *saved { "Save" } else { "Unsave" }.to_owned(),
        None => "An action this version cannot read".to_owned(),
    };
    let message = match action {
        Some(A::Reply { message, .. }) => Some(message.expose().to_owned()),
        _ => None,
    };
    Some(UndeliveredView {
        id: row.id,
        state,
        what,
        message,
        reason: (state == "failed").then(|| failure_reason(row.last_error.as_deref())),
        created_at: row.created_at,
    })
}

/// An outbox failure (`"<status> <detail>"` from Mattermost's answer, or our own phrase) in
/// words.
#[must_use]
pub fn failure_reason(error: Option<&str>) -> String {
    let Some(error) = error.filter(|e| !e.is_empty()) else {
        return "Mattermost did not accept it".to_owned();
    };
    let (status, detail) = error.split_once(' ').unwrap_or((error, ""));
    let Ok(status) = status.parse::<u16>() else {
        return error.to_owned();
    };
    let why = match status {
        400 => "Mattermost found the request invalid",
        403 => "Mattermost does not allow you to do this here",
        404 => "it no longer exists in Mattermost",
        413 => "it is too large for Mattermost",
        _ => "Mattermost refused it",
    };
    if detail.is_empty() {
        format!("{why} (HTTP {status})")
    } else {
        format!("{why} (HTTP {status}: {detail})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox_row(state: OutboxState, payload: &str, error: Option<&str>) -> OutboxRow {
        OutboxRow {
            id: 7,
            kind: "reply".into(),
            item_key: "t_".to_owned() + &"a".repeat(26),
            payload: crate::store::JsonText::new(payload.to_owned()),
            pending_post_id: String::new(),
            marker: String::new(),
            state,
            attempts: 1,
            first_sent_at: None,
            next_attempt_at: 0,
            last_error: error.map(str::to_owned),
            post_id: None,
            created_at: 5,
        }
    }

    #[test]
    fn only_the_readers_own_posts_name_an_outbox_marker() {
        let post = |user: &str, props: &str| Post {
            post_id: "p".repeat(26),
            channel_id: "c".repeat(26),
            root_id: String::new(),
            user_id: user.to_owned(),
            post_type: String::new(),
            create_at: 1,
            update_at: 1,
            edit_at: 0,
            delete_at: 0,
            message: crate::store::MessageText::new("hi".to_owned()),
            props: crate::store::JsonText::new(props.to_owned()),
            file_ids: crate::store::JsonText::new("[]".to_owned()),
            reactions: crate::store::JsonText::new("[]".to_owned()),
            metadata: crate::store::JsonText::new("{}".to_owned()),
        };
        let me = "m".repeat(26);
        let marked = r#"{"threaddesk_outbox_id":"abc"}"#;
        assert_eq!(
            outbox_marker(&post(&me, marked), &me).as_deref(),
            Some("abc")
        );
        // Another author's post may carry any props: it names no outbox row of the reader.
        assert_eq!(outbox_marker(&post(&"o".repeat(26), marked), &me), None);
        for props in [
            "{}",
            "",
            "not json",
            r#"{"threaddesk_outbox_id":""}"#,
            r#"{"threaddesk_outbox_id":7}"#,
            "[]",
        ] {
            assert_eq!(outbox_marker(&post(&me, props), &me), None, "{props}");
        }
    }

    #[test]
    fn undelivered_rows_show_replies_always_and_other_actions_once_failed() {
        let reply = format!(
            r#"{{"action":"reply","channel_id":"{c}","root_id":"{c}","message":"hi\nthere"}}"#,
            c = "c".repeat(26)
        );
        let read = format!(r#"{{"action":"mark_read","key":"t_{}"}}"#, "a".repeat(26));
        let v = undelivered_view(
            &outbox_row(OutboxState::Queued, &reply, None),
            &LocalTime::default(),
        )
        .unwrap();
        assert_eq!((v.state, v.what.as_str()), ("queued", "Reply"));
        assert_eq!(v.message.as_deref(), Some("hi\nthere"));
        assert!(v.reason.is_none() && v.can_discard());
        let v = undelivered_view(
            &outbox_row(OutboxState::Inflight, &reply, None),
            &LocalTime::default(),
        )
        .unwrap();
        assert!(!v.can_discard(), "in flight: cannot be discarded");
        assert!(
            undelivered_view(
                &outbox_row(OutboxState::Queued, &read, None),
                &LocalTime::default()
            )
            .is_none()
        );
        assert!(
            undelivered_view(
                &outbox_row(OutboxState::Sent, &reply, None),
                &LocalTime::default()
            )
            .is_none()
        );
        let v = undelivered_view(
            &outbox_row(
                OutboxState::Failed,
                &read,
                Some("403 api.context.permissions.app_error"),
            ),
            &LocalTime::default(),
        )
        .unwrap();
        assert_eq!((v.state, v.what.as_str()), ("failed", "Mark read"));
        assert_eq!(
            v.reason.as_deref(),
            Some(
                "Mattermost does not allow you to do this here (HTTP 403: api.context.permissions.app_error)"
            )
        );
        let v = undelivered_view(
            &outbox_row(OutboxState::Failed, "{not json", None),
            &LocalTime::default(),
        )
        .unwrap();
        assert_eq!(v.what, "An action this version cannot read");
        // A snooze says its time as the page would: in the reader's time when known.
        let until = 1_796_553_000_000; // 2026-12-06 10:30 UTC
        let snooze = format!(
            r#"{{"action":"snooze","key":"t_{}","until":{until}}}"#,
            "a".repeat(26)
        );
        let failed = outbox_row(OutboxState::Failed, &snooze, Some("403"));
        let what = |time: &LocalTime| undelivered_view(&failed, time).unwrap().what;
        assert_eq!(
            what(&LocalTime::default()),
            "Snooze until Dec 6 2026, 10:30 UTC"
        );
        let india = crate::web::local_time::ClockPref::parse("330.12");
        assert_eq!(
            what(&LocalTime::new(india, until - 86_400_000)),
            "Snooze until tomorrow 4:00 PM"
        );
    }

    #[test]
    fn failure_reasons_in_words() {
        assert_eq!(
            failure_reason(Some("404 the thread no longer exists")),
            "it no longer exists in Mattermost (HTTP 404: the thread no longer exists)"
        );
        assert_eq!(
            failure_reason(Some("409")),
            "Mattermost refused it (HTTP 409)"
        );
        assert_eq!(
            failure_reason(Some("not delivered within 24 hours")),
            "not delivered within 24 hours"
        );
        assert_eq!(failure_reason(None), "Mattermost did not accept it");
        assert_eq!(failure_reason(Some("")), "Mattermost did not accept it");
    }

    #[test]
    fn snippet_strips_markdown_and_truncates() {
        assert_eq!(snippet("**Hello** _world_"), "Hello world");
        assert_eq!(snippet("> quoted\n- item"), "quoted item");
        assert_eq!(snippet("```rust\nfn x() {}\n```\nafter"), "[code] after");
        let long = "a ".repeat(200);
        let s = snippet(&long);
        assert!(s.chars().count() <= SNIPPET_CHARS);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn snippet_shows_emoji_and_keeps_unknown_codes() {
        assert_eq!(snippet(":tada: done :nope: 10:30"), "🎉 done :nope: 10:30");
        assert_eq!(snippet(":rotating_light: SEV-2"), "🚨 SEV-2");
        assert_eq!(snippet("a:b"), "a:b");
        assert_eq!(snippet("::"), "::");
    }

    #[test]
    fn display_names() {
        let mut p = Profile {
            username: "bob".into(),
            ..Profile::default()
        };
        assert_eq!(display_name(&p), "bob");
        p.nickname = "Bobby".into();
        assert_eq!(display_name(&p), "Bobby");
        p.first_name = "Bob".into();
        p.last_name = "Stone".into();
        assert_eq!(display_name(&p), "Bob Stone");
    }
}
