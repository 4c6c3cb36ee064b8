//! The allow-list: every known disagreement between the OpenAPI description and the real server,
//! one entry per gap, each with its source in `shared/research/mattermost-api.md` (written from
//! the server's Go code; where the two disagree the server wins).
//!
//! An entry never switches checking off: an extra field is still type-checked against the
//! schema given here, and a status-code difference still validates the body against the schema
//! the spec documents for its own status. `tests::every_entry_is_still_needed` fails when the
//! spec is updated so that an entry becomes unnecessary (field now declared, status now
//! documented, …) or when an entry names a schema that does not exist.

/// One known spec gap.
#[derive(Clone, Copy, Debug)]
pub struct Gap {
    /// Short stable identifier, printed when the entry is used.
    pub id: &'static str,
    pub kind: GapKind,
    /// Why, with the research reference.
    pub reason: &'static str,
}

#[derive(Clone, Copy, Debug)]
pub enum GapKind {
    /// The server sends `field`, which component schema `schema` (or an inline schema named
    /// `Schema.property`) does not declare. The value must match `value` (a JSON schema, `$ref`s
    /// to `#/components/schemas/...` allowed).
    ExtraField {
        schema: &'static str,
        field: &'static str,
        value: &'static str,
    },
    /// `schema` declares `field`, but wrongly (type, nullability, item schema): the server's
    /// value must match `value` instead.
    FieldSchema {
        schema: &'static str,
        field: &'static str,
        value: &'static str,
    },
    /// The server answers `server` where the spec documents `documented`; the body is validated
    /// against the schema documented for `documented`.
    Status {
        method: &'static str,
        path: &'static str,
        documented: &'static str,
        server: u16,
    },
    /// The operation may answer `application/x-ndjson`: every line is validated against the
    /// item schema of the documented JSON array.
    Ndjson {
        method: &'static str,
        path: &'static str,
    },
    /// The spec documents no body, no such status, or a wrong schema for this response: the
    /// server's body is validated against `body` instead.
    ResponseBody {
        method: &'static str,
        path: &'static str,
        status: u16,
        body: Body,
    },
    /// Any operation may answer this status with a `text/plain` body (not validated as JSON).
    PlainTextStatus { status: u16 },
    /// An error status (4xx/5xx) the operation does not document is validated as `AppError`.
    UndocumentedErrorIsAppError,
}

/// A response body replacing the documented one.
#[derive(Clone, Copy, Debug)]
pub enum Body {
    /// JSON matching this schema (`$ref`s to `#/components/schemas/...` allowed).
    Json(&'static str),
    /// Non-JSON bytes (files, images).
    Binary,
}

const STR: &str = r#"{"type":"string"}"#;
const INT: &str = r#"{"type":"integer","format":"int64"}"#;
const BOOL: &str = r#"{"type":"boolean"}"#;
const NSTR: &str = r#"{"type":"string","nullable":true}"#;
const NBOOL: &str = r#"{"type":"boolean","nullable":true}"#;

macro_rules! extra {
    ($id:literal, $schema:literal . $field:literal : $value:expr, $reason:literal) => {
        Gap {
            id: $id,
            kind: GapKind::ExtraField {
                schema: $schema,
                field: $field,
                value: $value,
            },
            reason: $reason,
        }
    };
}

macro_rules! body {
    ($id:literal, $method:literal $path:literal $status:literal => $body:expr, $reason:literal) => {
        Gap {
            id: $id,
            kind: GapKind::ResponseBody {
                method: $method,
                path: $path,
                status: $status,
                body: $body,
            },
            reason: $reason,
        }
    };
}

macro_rules! status {
    ($id:literal, $method:literal $path:literal $documented:literal => $server:literal, $reason:literal) => {
        Gap {
            id: $id,
            kind: GapKind::Status {
                method: $method,
                path: $path,
                documented: $documented,
                server: $server,
            },
            reason: $reason,
        }
    };
}

macro_rules! field {
    ($id:literal, $schema:literal . $field:literal : $value:expr, $reason:literal) => {
        Gap {
            id: $id,
            kind: GapKind::FieldSchema {
                schema: $schema,
                field: $field,
                value: $value,
            },
            reason: $reason,
        }
    };
}

/// Every known gap. Keep one entry per gap; never add one to hide a simulator or client bug.
pub const GAPS: &[Gap] = &[
    // ---- Post (research trap 10, §4.1, §11.3 "Post.hashtag") ----
    extra!("post-hashtags", "Post"."hashtags": STR, "server field; spec says `hashtag` — research trap 10, §11.3"),
    extra!("post-is_pinned", "Post"."is_pinned": BOOL, "server Post field missing from spec — research §4.1, §11.3"),
    extra!("post-reply_count", "Post"."reply_count": INT, "server Post field missing from spec — research §4.1, §11.3"),
    extra!("post-last_reply_at", "Post"."last_reply_at": INT, "server Post field missing from spec — research §4.1, §11.3"),
    extra!("post-participants", "Post"."participants":
        r##"{"type":"array","nullable":true,"items":{"$ref":"#/components/schemas/User"}}"##,
        "server field, User[] or null — research trap 10, §4.1, §11.3"),
    extra!("post-is_following", "Post"."is_following": BOOL, "CRT responses only — research trap 10, §4.2, §11.3"),
    extra!("post-message_source", "Post"."message_source": STR, "omitempty server field — research §4.1, §11.3"),
    extra!("post-has_reactions", "Post"."has_reactions": BOOL, "omitempty server field — research §4.1, §11.3"),
    extra!("post-remote_id", "Post"."remote_id": STR, "omitempty server field — research §4.1, §11.3"),
    field!("postmetadata-priority-requested_ack", "PostMetadata.priority"."requested_ack": NBOOL,
        "server: bool|null — research §4.1 (priority)"),
    extra!("postmetadata-priority-persistent_notifications", "PostMetadata.priority"."persistent_notifications": NBOOL,
        "server field bool|null missing from spec — research §4.1 (priority)"),
    extra!("postacknowledgement-channel_id", "PostAcknowledgement"."channel_id": STR,
        "server field missing from spec — research §4.1 (acknowledgements)"),
    extra!("postacknowledgement-remote_id", "PostAcknowledgement"."remote_id": STR,
        "omitempty server field — research §4.1 (acknowledgements)"),
    extra!("postlist-first_inaccessible_post_time", "PostList"."first_inaccessible_post_time": INT,
        "server PostList field missing from spec — research §4.1 (PostList)"),
    // ---- Reaction (research §4.1, §11.3) ----
    extra!("reaction-update_at", "Reaction"."update_at": INT, "server field — research §4.1, §11.3"),
    extra!("reaction-delete_at", "Reaction"."delete_at": INT, "server field — research §4.1, §11.3"),
    extra!("reaction-remote_id", "Reaction"."remote_id": NSTR, "server field, string|null — research §4.1, §11.3"),
    extra!("reaction-channel_id", "Reaction"."channel_id": STR, "server field — research §4.1, §11.3"),
    // ---- FileInfo (research §4.1) ----
    extra!("fileinfo-channel_id", "FileInfo"."channel_id": STR, "server field missing from spec — research §4.1 (FileInfo)"),
    extra!("fileinfo-mini_preview", "FileInfo"."mini_preview": NSTR, "server field base64|null — research §4.1 (FileInfo)"),
    extra!("fileinfo-remote_id", "FileInfo"."remote_id": NSTR, "server field string|null — research §4.1 (FileInfo)"),
    extra!("fileinfo-archived", "FileInfo"."archived": BOOL, "server field missing from spec — research §4.1 (FileInfo)"),
    // ---- Threads (research traps 11-13, §5.2, §11.3) ----
    extra!("userthread-unread_replies", "UserThread"."unread_replies": INT, "ThreadResponse field — research §5.2, §11.3"),
    extra!("userthread-unread_mentions", "UserThread"."unread_mentions": INT, "ThreadResponse field — research §5.2, §11.3"),
    extra!("userthread-is_urgent", "UserThread"."is_urgent": BOOL, "ThreadResponse field — research §5.2, §11.3"),
    extra!("userthread-delete_at", "UserThread"."delete_at": INT, "ThreadResponse field — research §5.2, §11.3"),
    field!("userthread-participants", "UserThread"."participants":
        r##"{"type":"array","items":{"$ref":"#/components/schemas/User"}}"##,
        "spec says Post[]; server sends User objects (id-only unless extended) — research trap 11, §5.2"),
    field!("userthread-post", "UserThread"."post": r##"{"allOf":[{"$ref":"#/components/schemas/Post"}],"nullable":true}"##,
        "root Post, or null if unavailable — research §5.2"),
    extra!("userthreads-total_unread_threads", "UserThreads"."total_unread_threads": INT, "Threads field — research trap 13, §5.2, §11.3"),
    extra!("userthreads-total_unread_mentions", "UserThreads"."total_unread_mentions": INT, "Threads field — research §5.2, §11.3"),
    extra!("userthreads-total_unread_urgent_mentions", "UserThreads"."total_unread_urgent_mentions": INT,
        "Threads field — research §5.2, §11.3"),
    field!("userthreads-threads-null", "UserThreads"."threads":
        r##"{"type":"array","nullable":true,"items":{"$ref":"#/components/schemas/UserThread"}}"##,
        "`threads: null` with totalsOnly=true — research trap 13, §11.3"),
    // ---- Channel members and unread counts (research trap 8, §3.1, §11.3) ----
    extra!("channelmember-msg_count_root", "ChannelMember"."msg_count_root": INT, "server field — research §3.1, §11.3"),
    extra!("channelmember-mention_count_root", "ChannelMember"."mention_count_root": INT, "server field — research §3.1, §11.3"),
    extra!("channelmember-urgent_mention_count", "ChannelMember"."urgent_mention_count": INT, "server field — research §3.1, §11.3"),
    extra!("channelmember-scheme_guest", "ChannelMember"."scheme_guest": BOOL, "scheme field — research §3.1, §11.3"),
    extra!("channelmember-scheme_user", "ChannelMember"."scheme_user": BOOL, "scheme field — research §3.1, §11.3"),
    extra!("channelmember-scheme_admin", "ChannelMember"."scheme_admin": BOOL, "scheme field — research §3.1, §11.3"),
    extra!("channelmember-explicit_roles", "ChannelMember"."explicit_roles": STR, "scheme field — research §3.1, §11.3"),
    extra!("channelnotifyprops-ignore_channel_mentions", "ChannelNotifyProps"."ignore_channel_mentions": STR,
        "default notify prop — research §3.1 (notify_props)"),
    extra!("channelnotifyprops-channel_auto_follow_threads", "ChannelNotifyProps"."channel_auto_follow_threads": STR,
        "default notify prop — research §3.1 (notify_props)"),
    extra!("channelnotifyprops-desktop_threads", "ChannelNotifyProps"."desktop_threads": STR, "notify prop — research §3.1"),
    extra!("channelnotifyprops-push_threads", "ChannelNotifyProps"."push_threads": STR, "notify prop — research §3.1"),
    extra!("channelnotifyprops-email_threads", "ChannelNotifyProps"."email_threads": STR, "notify prop — research §3.1"),
    extra!("channelnotifyprops-desktop_sound", "ChannelNotifyProps"."desktop_sound": STR, "notify prop — research §3.1"),
    extra!("channelunread-msg_count_root", "ChannelUnread"."msg_count_root": INT, "ChannelUnread field — research §3.1"),
    extra!("channelunread-mention_count_root", "ChannelUnread"."mention_count_root": INT, "ChannelUnread field — research §3.1"),
    extra!("channelunread-urgent_mention_count", "ChannelUnread"."urgent_mention_count": INT, "ChannelUnread field — research §3.1"),
    extra!("channelunreadat-user_id", "ChannelUnreadAt"."user_id": STR, "ChannelUnreadAt field — research §3.1"),
    extra!("channelunreadat-msg_count_root", "ChannelUnreadAt"."msg_count_root": INT, "ChannelUnreadAt field — research §3.1, §6.5 post_unread"),
    extra!("channelunreadat-mention_count_root", "ChannelUnreadAt"."mention_count_root": INT,
        "ChannelUnreadAt field — research §3.1, §6.5 post_unread"),
    extra!("channelunreadat-urgent_mention_count", "ChannelUnreadAt"."urgent_mention_count": INT,
        "ChannelUnreadAt field — research §3.1, §6.5 post_unread"),
    extra!("teamunread-msg_count_root", "TeamUnread"."msg_count_root": INT, "TeamUnread field — research §3.1"),
    extra!("teamunread-mention_count_root", "TeamUnread"."mention_count_root": INT, "TeamUnread field — research §3.1"),
    extra!("teamunread-thread_count", "TeamUnread"."thread_count": INT, "with include_collapsed_threads — research §3.1, §5.3"),
    extra!("teamunread-thread_mention_count", "TeamUnread"."thread_mention_count": INT, "research §3.1, §5.3"),
    extra!("teamunread-thread_urgent_mention_count", "TeamUnread"."thread_urgent_mention_count": INT, "research §3.1, §5.3"),
    extra!("teammember-scheme_guest", "TeamMember"."scheme_guest": BOOL, "TeamMember scheme_* — research §3.2"),
    // ---- Channel and Team (research §3.1) ----
    extra!("channel-scheme_id", "Channel"."scheme_id": NSTR, "server field string|null — research §3.1"),
    extra!("channel-props", "Channel"."props": r#"{"type":"object","nullable":true}"#, "server field object|null — research §3.1"),
    extra!("channel-group_constrained", "Channel"."group_constrained": NBOOL, "server field bool|null — research §3.1"),
    extra!("channel-shared", "Channel"."shared": NBOOL, "server field bool|null — research §3.1"),
    extra!("channel-total_msg_count_root", "Channel"."total_msg_count_root": INT, "server field — research §3.1, trap 8"),
    extra!("channel-policy_id", "Channel"."policy_id": NSTR, "server field string|null — research §3.1"),
    extra!("channel-last_root_post_at", "Channel"."last_root_post_at": INT, "server field — research §3.1"),
    extra!("channel-banner_info", "Channel"."banner_info":
        r##"{"allOf":[{"$ref":"#/components/schemas/ChannelBanner"}],"nullable":true}"##,
        "server field ChannelBanner|null — research §3.1"),
    extra!("channel-policy_enforced", "Channel"."policy_enforced": BOOL, "server field — research §3.1"),
    extra!("channel-default_category_name", "Channel"."default_category_name": STR, "server field — research §3.1"),
    extra!("team-company_name", "Team"."company_name": STR, "server field — research §3.1"),
    extra!("team-last_team_icon_update", "Team"."last_team_icon_update": INT, "omitempty server field — research §3.1"),
    extra!("team-scheme_id", "Team"."scheme_id": NSTR, "server field string|null — research §3.1"),
    extra!("team-group_constrained", "Team"."group_constrained": NBOOL, "server field bool|null — research §3.1"),
    extra!("team-cloud_limits_archived", "Team"."cloud_limits_archived": BOOL, "server field — research §3.1"),
    field!("team-policy_id-null", "Team"."policy_id": NSTR, "string|null (the spec text says null, the type does not) — research §3.1"),
    // ---- User (research §2.5, trap 11) ----
    extra!("user-position", "User"."position": STR, "server User field — research §2.5"),
    extra!("user-last_activity_at", "User"."last_activity_at": INT, "omitempty server User field — research §2.5"),
    extra!("user-is_bot", "User"."is_bot": BOOL, "omitempty server User field — research §2.5"),
    extra!("user-bot_description", "User"."bot_description": STR, "omitempty server User field — research §2.5"),
    extra!("user-disable_welcome_email", "User"."disable_welcome_email": BOOL, "server User field — research §2.5"),
    extra!("user-remote_id", "User"."remote_id": STR, "omitempty server User field — research §2.5"),
    field!("user-timezone-null", "User"."timezone":
        r##"{"allOf":[{"$ref":"#/components/schemas/Timezone"}],"nullable":true}"##,
        "id-only participants carry every non-omitempty field empty, timezone null — research trap 11"),
    extra!("usernotifyprops-auto_responder_active", "UserNotifyProps"."auto_responder_active": STR,
        "notify_props auto_responder_* — research §2.5"),
    extra!("usernotifyprops-push_status", "UserNotifyProps"."push_status": STR,
        "server default notify prop (model/user.go SetDefaultNotifications sets push_status=away); research §2.5 lists notify_props without it"),
    // ---- Tokens and OAuth apps (research §2.2, §2.4) ----
    extra!("useraccesstoken-is_active", "UserAccessToken"."is_active": BOOL,
        "UserAccessToken {id, token, user_id, description, is_active} — research §2.2"),
    extra!("oauthapp-creator_id", "OAuthApp"."creator_id": STR, "server OAuthApp field — research §2.4"),
    extra!("oauthapp-mattermost_app_id", "OAuthApp"."mattermost_app_id": STR, "server OAuthApp field — research §2.4"),
    extra!("oauthapp-is_dynamically_registered", "OAuthApp"."is_dynamically_registered": BOOL,
        "omitempty server OAuthApp field — research §2.4"),
    // ---- Status, ping (research §7) ----
    extra!("status-active_channel", "Status"."active_channel": STR, "omitempty Status field — research §7"),
    extra!("status-dnd_end_time", "Status"."dnd_end_time": INT, "Status field, seconds — research §7, trap 9"),
    extra!("systemstatusresponse-activesearchbackend", "SystemStatusResponse"."ActiveSearchBackend": STR,
        "/system/ping field — research §7"),
    // ---- Errors (research trap 21, §9) ----
    extra!("apperror-detailed_error", "AppError"."detailed_error": STR, "always present, no is_oauth — research trap 21, §9, §11.3"),
    Gap {
        id: "undocumented-error-status-is-apperror",
        kind: GapKind::UndocumentedErrorIsAppError,
        reason: "every API error body is AppError JSON, whatever the spec lists per operation — research §1, §9, trap 21",
    },
    Gap {
        id: "ratelimit-429-plain-text",
        kind: GapKind::PlainTextStatus { status: 429 },
        reason: "429 body is plain text `limit exceeded`, not AppError — research trap 20, §8",
    },
    // ---- Status codes and body formats ----
    status!("reactions-post-200", "post" "/api/v4/reactions" "201" => 200,
        "POST /reactions answers 200 (spec: 201) — research trap 18, §4.4, §11.3"),
    status!("login-200", "post" "/api/v4/users/login" "201" => 200,
        "POST /users/login answers 200 with the User (spec: 201) — research §2.3"),
    status!("logout-200", "post" "/api/v4/users/logout" "201" => 200,
        "POST /users/logout answers 200 {status: OK} via ReturnStatusOK (spec: 201) — research §1 (Status OK), §2.3"),
    status!("create-token-200", "post" "/api/v4/users/{user_id}/tokens" "201" => 200,
        "POST /users/{id}/tokens answers 200 UserAccessToken (spec: 201) — research §2.2"),
    body!("emoji-list-array", "get" "/api/v4/emoji" 200 =>
        Body::Json(r##"{"type":"array","items":{"$ref":"#/components/schemas/Emoji"}}"##),
        "GET /emoji returns Emoji[] (spec: a single Emoji) — research §7"),
    body!("flagged-posts-postlist", "get" "/api/v4/users/{user_id}/posts/flagged" 200 =>
        Body::Json(r##"{"$ref":"#/components/schemas/PostList"}"##),
        "GET /users/{u}/posts/flagged returns one PostList (spec: an array of PostList) — research §4.2"),
    body!("config-client-string-map", "get" "/api/v4/config/client" 200 =>
        Body::Json(r#"{"type":"object","additionalProperties":{"type":"string"}}"#),
        "spec documents no body; the server returns a flat {string: string} map — research §7"),
    body!("thread-get-body", "get" "/api/v4/users/{user_id}/teams/{team_id}/threads/{thread_id}" 200 =>
        Body::Json(r##"{"$ref":"#/components/schemas/UserThread"}"##),
        "spec documents no body; the server returns ThreadResponse — research §5.2, §5.3"),
    body!("thread-read-body", "put" "/api/v4/users/{user_id}/teams/{team_id}/threads/{thread_id}/read/{timestamp}" 200 =>
        Body::Json(r##"{"$ref":"#/components/schemas/UserThread"}"##),
        "spec documents no body; the server returns ThreadResponse — research §5.3"),
    body!("thread-set-unread-body", "post" "/api/v4/users/{user_id}/teams/{team_id}/threads/{thread_id}/set_unread/{post_id}" 200 =>
        Body::Json(r##"{"$ref":"#/components/schemas/UserThread"}"##),
        "spec documents no body; the server returns ThreadResponse — research §5.3"),
    body!("threads-read-all-body", "put" "/api/v4/users/{user_id}/teams/{team_id}/threads/read" 200 =>
        Body::Json(r##"{"$ref":"#/components/schemas/StatusOK"}"##),
        "spec documents no body; the server returns {status: OK} — research §5.3"),
    body!("thread-follow-body", "put" "/api/v4/users/{user_id}/teams/{team_id}/threads/{thread_id}/following" 200 =>
        Body::Json(r##"{"$ref":"#/components/schemas/StatusOK"}"##),
        "spec documents no body; the server returns {status: OK} — research §5.3"),
    body!("thread-unfollow-body", "delete" "/api/v4/users/{user_id}/teams/{team_id}/threads/{thread_id}/following" 200 =>
        Body::Json(r##"{"$ref":"#/components/schemas/StatusOK"}"##),
        "spec documents no body; the server returns {status: OK} — research §5.3"),
    body!("file-get-binary", "get" "/api/v4/files/{file_id}" 200 => Body::Binary,
        "spec documents no 200; the server sends the file bytes — research §4.5"),
    body!("file-thumbnail-binary", "get" "/api/v4/files/{file_id}/thumbnail" 200 => Body::Binary,
        "spec documents no 200; the server sends image bytes — research §4.5"),
    body!("file-preview-binary", "get" "/api/v4/files/{file_id}/preview" 200 => Body::Binary,
        "spec documents no 200; the server sends image bytes — research §4.5"),
    Gap {
        id: "channel-members-ndjson",
        kind: GapKind::Ndjson {
            method: "get",
            path: "/api/v4/users/{user_id}/channel_members",
        },
        reason: "page=-1 streams NDJSON — research trap 19, §11.3",
    },
];
