//! Sample view models for template tests and the preview (`tests::preview`).

use std::path::Path;

use askama::Template;

use super::*;

const NOW: i64 = 1_795_424_100_000;

pub(crate) fn layout() -> Layout {
    Layout {
        user: Some(UserView {
            id: "uuuuuuuuuuuuuuuuuuuuuuuuuu".into(),
            username: "alice".into(),
            display_name: "Alice Martin".into(),
            avatar_url: "/media/avatar/uuuuuuuuuuuuuuuuuuuuuuuuuu".into(),
            is_admin: true,
        }),
        csrf: "csrf-token-value".into(),
        nonce: "n0nce".into(),
        theme: Theme::System,
        time: crate::web::local_time::LocalTime::new(
            Some(crate::web::local_time::ClockPref {
                offset_min: 60,
                h12: false,
            }),
            NOW,
        ),
    }
}

fn item(
    key: &str,
    kind: ItemKind,
    title: &str,
    team: Option<&str>,
    snippet: &str,
    ago_min: i64,
) -> ItemSummary {
    ItemSummary {
        key: key.into(),
        kind,
        title: title.into(),
        team_id: team.map(|_| "teamidteamidteamidteamid01".into()),
        team_name: team.map(Into::into),
        snippet: snippet.into(),
        last_activity_at: NOW - ago_min * 60_000,
        unread_replies: 0,
        mentions: 0,
        urgent: false,
        unread: false,
        snoozed_until: None,
        done: false,
        following: true,
        permalink: format!("https://mm.example.com/acme/pl/{key}"),
        matched_post_id: None,
        snippet_marks: Vec::new(),
    }
}

pub(crate) fn items() -> Vec<ItemSummary> {
    let mut v = vec![
        item(
            "t_aaaaaaaaaaaaaaaaaaaaaaaaaa",
            ItemKind::Thread,
            "release-planning",
            Some("Engineering"),
            "Bob: can we cut the <script> release candidate today? The deploy window closes at 5",
            2,
        ),
        item(
            "c_bbbbbbbbbbbbbbbbbbbbbbbbbb",
            ItemKind::Direct,
            "Bob Kowalski",
            None,
            "Did you see the on-call handover notes?",
            14,
        ),
        item(
            "t_cccccccccccccccccccccccccc",
            ItemKind::Thread,
            "incident-2231",
            Some("Operations"),
            "Carol: root cause is the connection pool; fix is rolling out now",
            55,
        ),
        item(
            "c_dddddddddddddddddddddddddd",
            ItemKind::Group,
            "Bob, Carol, Dave",
            None,
            "Dave: lunch on Friday? 🍕",
            180,
        ),
        item(
            "t_eeeeeeeeeeeeeeeeeeeeeeeeee",
            ItemKind::Thread,
            "design-review",
            Some("Product"),
            "Erin: updated mocks are in the doc, feedback welcome",
            60 * 26,
        ),
        item(
            "t_ffffffffffffffffffffffffff",
            ItemKind::Thread,
            "town-square",
            Some("Engineering"),
            "Frank: reminder — the office is closed on Monday",
            60 * 24 * 4,
        ),
    ];
    v[0].unread = true;
    v[0].unread_replies = 3;
    v[0].mentions = 1;
    v[1].unread = true;
    v[1].unread_replies = 1;
    v[2].urgent = true;
    v[2].mentions = 2;
    v[2].unread = true;
    v[2].unread_replies = 7;
    v[3].unread = true;
    v[3].unread_replies = 2;
    // Found by a search: the marked words include markup, which must stay text.
    let at = v[0].snippet.find("<script>").unwrap_or(0);
    v[0].set_snippet_marks(&[(at, at + "<script>".len())]);
    v[0].matched_post_id = Some("p".repeat(26));
    v
}

pub(crate) fn queue_page() -> QueuePage {
    QueuePage {
        layout: layout(),
        filter: QueueFilter::All,
        team: None,
        teams: vec![
            TeamView {
                id: "teamidteamidteamidteamid01".into(),
                name: "Engineering".into(),
            },
            TeamView {
                id: "teamidteamidteamidteamid02".into(),
                name: "Operations".into(),
            },
            TeamView {
                id: "teamidteamidteamidteamid03".into(),
                name: "Product".into(),
            },
        ],
        q: String::new(),
        items: items(),
        counts: Counts {
            all: 6,
            mentions: 2,
            direct: 2,
            threads: 4,
            snoozed: 1,
            done: 12,
        },
        next_cursor: None,
        limit: None,
        cursor: None,
        failed: vec![FailedAction {
            key: "t_".to_owned() + &"r".repeat(26),
            title: Some("Release train".into()),
            action: failed_reply(),
        }],
        elsewhere: Vec::new(),
        saved_searches: vec![super::SavedSearchView {
            name: "0123456789abcdef0123456789".into(),
            label: "<b>deploys</b> from:bob".into(),
            href: "/?q=deploy%2A".into(),
            active: false,
        }],
        search_name: String::new(),
        done_week: None,
    }
}

/// A reply Mattermost refused (its text carries markup, which must show as text).
fn failed_reply() -> UndeliveredView {
    UndeliveredView {
        id: 41,
        state: "failed",
        what: "Reply".into(),
        message: Some("<script>alert(1)</script> I'll take the\nrollback".into()),
        reason: Some(
            "Mattermost does not allow you to do this here (HTTP 403: api.context.permissions.app_error)"
                .into(),
        ),
        created_at: NOW - 5 * 60_000,
    }
}

fn author(id: &str, name: &str, username: &str) -> AuthorView {
    AuthorView {
        id: id.repeat(26),
        display_name: name.into(),
        username: username.into(),
        avatar_url: format!("/media/avatar/{}", id.repeat(26)),
    }
}

pub(crate) fn posts() -> Vec<PostView> {
    let ctx = RenderCtx::new("alice", "https://mm.example.com");
    let md = |s: &str| SafeHtml::from_markdown(s, &ctx);
    vec![
        PostView {
            id: "p1".into(),
            author: author("b", "Bob Kowalski", "bob"),
            create_at: NOW - 40 * 60_000,
            edited: false,
            deleted: false,
            html: md(
                "Can we cut the **release candidate** today, @alice? The deploy window \
                      closes at 17:00.\n\nChecklist:\n- [x] changelog\n- migrations reviewed :eyes:\n- \
                      `cargo test` green",
            ),
            reactions: vec![
                ReactionView {
                    emoji: "+1".into(),
                    count: 2,
                    mine: true,
                    image_url: None,
                },
                ReactionView {
                    emoji: "eyes".into(),
                    count: 1,
                    mine: false,
                    image_url: None,
                },
            ],
            files: vec![],
            is_root: true,
            outbox_marker: None,
        },
        PostView {
            id: "p2".into(),
            author: author("c", "Carol Nguyen", "carol"),
            create_at: NOW - 30 * 60_000,
            edited: true,
            deleted: false,
            html: md(
                "One blocker — the pool size regression:\n\n```rust\nlet pool = Pool::builder()\n    .max_size(32) // was 8\n    .build(manager)?;\n```\n\n| env | p95 | status |\n|:--|--:|:-:|\n| staging | 41 ms | :white_check_mark: |\n| prod | 380 ms | :warning: |",
            ),
            reactions: vec![],
            files: vec![
                FileView {
                    id: "f1".into(),
                    name: "latency-graph.png".into(),
                    mime: "image/png".into(),
                    size: 184_320,
                    thumbnail_url: "/media/files/f1/thumbnail".into(),
                    url: "/media/files/f1".into(),
                },
                FileView {
                    id: "f2".into(),
                    name: "pool-config.toml".into(),
                    mime: "text/plain".into(),
                    size: 2_048,
                    thumbnail_url: "/media/files/f2/thumbnail".into(),
                    url: "/media/files/f2".into(),
                },
            ],
            is_root: false,
            outbox_marker: None,
        },
        PostView {
            id: "p3".into(),
            author: author("c", "Carol Nguyen", "carol"),
            create_at: NOW - 29 * 60_000,
            edited: false,
            deleted: false,
            html: md(
                "> fix is rolling out now\n\nsee https://status.example.com/incidents/2231 — @channel FYI",
            ),
            reactions: vec![ReactionView {
                emoji: "tada".into(),
                count: 3,
                mine: false,
                image_url: None,
            }],
            files: vec![],
            is_root: false,
            outbox_marker: None,
        },
        PostView {
            id: "p4".into(),
            author: author("d", "Dave Okafor", "dave"),
            create_at: NOW - 10 * 60_000,
            edited: false,
            deleted: true,
            html: SafeHtml::default(),
            reactions: vec![],
            files: vec![],
            is_root: false,
            outbox_marker: None,
        },
        PostView {
            id: "p5".into(),
            author: author("b", "Bob Kowalski", "bob"),
            create_at: NOW - 2 * 60_000,
            edited: false,
            deleted: false,
            html: md(
                "<img src=x onerror=alert(1)> ![tracker](https://evil.example/t.gif) \
                      [click](javascript:alert(1)) — shipping it :rocket:",
            ),
            reactions: vec![],
            files: vec![],
            is_root: false,
            outbox_marker: None,
        },
    ]
}

pub(crate) fn item_page() -> ItemPage {
    ItemPage {
        layout: layout(),
        item: items().remove(0),
        posts: posts(),
        has_older: true,
        undelivered: vec![
            failed_reply(),
            UndeliveredView {
                id: 42,
                state: "failed",
                what: "Mark read".into(),
                message: None,
                reason: Some("not delivered within 24 hours".into()),
                created_at: NOW - 60_000,
            },
            UndeliveredView {
                id: 43,
                state: "queued",
                what: "Reply".into(),
                message: Some("On it.".into()),
                reason: None,
                created_at: NOW - 1_000,
            },
        ],
        saved: true,
    }
}

/// Every page rendered with sample data: `(file name, html)`.
pub(crate) fn all_pages() -> Vec<(&'static str, String)> {
    let mut empty = queue_page();
    empty.items.clear();
    let mut signed_out = layout();
    signed_out.user = None;
    let pages: Vec<(&'static str, Result<String, askama::Error>)> = vec![
        ("queue.html", queue_page().render()),
        ("queue-empty.html", empty.render()),
        ("item.html", item_page().render()),
        (
            "signin.html",
            SignInPage {
                layout: signed_out.clone(),
                oauth_enabled: true,
                pat_enabled: true,
                error: None,
                mattermost_url: "https://mm.example.com".into(),
            }
            .render(),
        ),
        (
            "settings.html",
            SettingsPage {
                layout: layout(),
                mattermost_url: "https://mm.example.com".into(),
                auth_method: "oauth".into(),
                triage: super::TriageView {
                    done_day: 3,
                    done_week: 17,
                    waiting: 6,
                    waiting_over_day: 2,
                    oldest: Some(super::OldestView {
                        key: "t_".to_owned() + &"o".repeat(26),
                        title: "<script>alert(1)</script> release train".into(),
                        last_activity_at: NOW - 3 * 86_400_000,
                    }),
                },
                sessions: vec![
                    SessionView {
                        handle: "0123456789abcdef0123456789abcdef".into(),
                        agent: "Firefox on Linux".into(),
                        created_at: 1_763_884_500_000,
                        last_seen_at: 1_763_888_100_000,
                        current: true,
                    },
                    SessionView {
                        handle: "fedcba9876543210fedcba9876543210".into(),
                        agent: "Safari on iOS".into(),
                        created_at: 1_763_800_000_000,
                        last_seen_at: 1_763_810_000_000,
                        current: false,
                    },
                ],
            }
            .render(),
        ),
        (
            "privacy.html",
            PrivacyPage {
                layout: layout(),
                mattermost_url: "https://mm.example.com".into(),
                retention_days: 14,
                stored: vec![
                    StoredInfo {
                        what: "Messages of your followed threads and DMs".into(),
                        why: "To show the queue and conversations quickly".into(),
                        kept: "14 days".into(),
                    },
                    StoredInfo {
                        what: "Your Mattermost access token (encrypted)".into(),
                        why: "To act for you in Mattermost".into(),
                        kept: "Until you sign out or delete your data".into(),
                    },
                ],
                cookies: vec![
                    CookieInfo {
                        name: "td_session".into(),
                        purpose: "Keeps you signed in".into(),
                        lifetime: "Session, at most 30 days".into(),
                    },
                    CookieInfo {
                        name: "td_csrf".into(),
                        purpose: "Protects forms against cross-site requests".into(),
                        lifetime: "Session".into(),
                    },
                ],
                session_idle: "8 hours".into(),
                session_max: "30 days".into(),
            }
            .render(),
        ),
        (
            "admin_status.html",
            AdminStatusPage {
                layout: layout(),
                version: "0.1.0".into(),
                mattermost_url: "https://mm.example.com".into(),
                connected_users: 42,
                retention_days: 14,
                rows: vec![
                    SyncHealthRow {
                        name: "WebSocket".into(),
                        health: Health::Ok,
                        detail: "42 sockets open".into(),
                        last_ok_at: Some(NOW),
                    },
                    SyncHealthRow {
                        name: "Outbox".into(),
                        health: Health::Degraded,
                        detail: "3 pending, oldest 40 s".into(),
                        last_ok_at: Some(NOW - 40_000),
                    },
                ],
            }
            .render(),
        ),
        (
            "error.html",
            ErrorPage {
                layout: signed_out,
                status: 404,
                message: "This item does not exist or is not yours.".into(),
            }
            .render(),
        ),
    ];
    pages
        .into_iter()
        .map(|(name, html)| (name, html.expect("template renders")))
        .collect()
}

/// Writes every page plus the static assets to `dir` so a headless browser can screenshot it.
pub(crate) fn write_preview(dir: &Path) {
    std::fs::create_dir_all(dir.join("static")).expect("preview dir");
    for (name, _, bytes) in STATIC_FILES {
        std::fs::write(dir.join("static").join(name), bytes).expect("asset");
    }
    for (name, html) in all_pages() {
        // Root-relative URLs → relative, so file:// previews find the assets.
        let html = html.replace("\"/static/", "\"static/");
        std::fs::write(dir.join(name), html).expect("page");
    }
}
