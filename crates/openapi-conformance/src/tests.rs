use std::sync::OnceLock;

use serde_json::{Value, json};

use super::*;

fn conf() -> &'static Conformance {
    static C: OnceLock<Conformance> = OnceLock::new();
    C.get_or_init(|| Conformance::vendored().expect("vendored spec loads"))
}

fn strict() -> Conformance {
    Conformance::with_gaps(Spec::load_vendored().expect("spec"), &[])
}

fn post() -> Value {
    json!({
        "id": "p1xqg8ccdtr3mq9sbbyomzbdre", "create_at": 1_700_000_000_000_i64,
        "update_at": 1_700_000_000_000_i64, "edit_at": 0, "delete_at": 0, "is_pinned": false,
        "user_id": "u1", "channel_id": "c1", "root_id": "", "original_id": "",
        "message": "hello", "type": "", "props": {"from_bot": "true"}, "hashtags": "",
        "pending_post_id": "", "reply_count": 2, "last_reply_at": 1_700_000_000_500_i64,
        "participants": null,
        "metadata": {"reactions": [{"user_id": "u1", "post_id": "p1", "emoji_name": "+1",
            "create_at": 1, "update_at": 1, "delete_at": 0, "remote_id": "", "channel_id": "c1"}]}
    })
}

fn messages(o: &Outcome) -> Vec<String> {
    o.violations.iter().map(ToString::to_string).collect()
}

#[test]
fn spec_loads_with_expected_size() {
    let spec = conf().spec();
    let (paths, ops) = spec.counts();
    // README: 408 paths, 511 operations; one duplicate key tolerated.
    assert_eq!(paths, 408, "paths");
    assert_eq!(ops, 511, "operations");
    assert_eq!(
        spec.duplicate_paths,
        vec!["/api/v4/sharedchannels/{channel_id}/remotes".to_string()]
    );
    assert_eq!(spec.schema_names().len(), 175);
}

#[test]
fn correct_post_passes() {
    let o = conf().validate_schema(&post(), "Post");
    assert!(o.ok(), "{o}");
    assert!(o.gaps_used.contains("post-hashtags"));
    assert!(o.gaps_used.contains("reaction-update_at"));
}

#[test]
fn allow_listed_gaps_are_real() {
    // Without the allow-list the same Post fails exactly on the server-only fields.
    let o = strict().validate_schema(&post(), "Post");
    let m = messages(&o);
    assert!(
        m.iter()
            .any(|v| v == "/hashtags: unknown field `hashtags` (not in `Post`)"),
        "{m:#?}"
    );
    assert!(
        m.iter()
            .any(|v| v.starts_with("/metadata/reactions/0/update_at: unknown field")),
        "{m:#?}"
    );
    assert!(
        m.iter()
            .any(|v| v.starts_with("/participants: unknown field")),
        "{m:#?}"
    );
}

#[test]
fn renamed_field_fails() {
    let mut p = post();
    let obj = p.as_object_mut().expect("object");
    let v = obj.remove("hashtags").expect("hashtags");
    obj.insert("hashtag_list".into(), v);
    let o = conf().validate_schema(&p, "Post");
    assert_eq!(
        messages(&o),
        vec!["/hashtag_list: unknown field `hashtag_list` (not in `Post`)"]
    );

    let mut p = post();
    p["metadata"]["reactions"][0]["emoji"] = json!("smile");
    let o = conf().validate_schema(&p, "Post");
    assert_eq!(
        messages(&o),
        vec!["/metadata/reactions/0/emoji: unknown field `emoji` (not in `Reaction`)"]
    );
}

#[test]
fn wrong_types_fail() {
    let cases = [
        (
            "create_at",
            json!("1700000000000"),
            "expected integer, got string",
        ),
        ("create_at", json!(1.5), "expected integer, got number"),
        ("message", json!(5), "expected string, got integer"),
        ("file_ids", json!("a,b"), "expected array, got string"),
        ("is_pinned", json!("false"), "expected boolean, got string"),
        ("reply_count", json!(true), "expected integer, got boolean"),
        ("message", Value::Null, "null is not allowed"),
        ("props", json!([]), "expected object, got array"),
    ];
    for (field, value, want) in cases {
        let mut p = post();
        p[field] = value;
        let o = conf().validate_schema(&p, "Post");
        let m = messages(&o);
        assert_eq!(m.len(), 1, "{field}: {m:#?}");
        assert!(
            m[0].starts_with(&format!("/{field}: {want}")),
            "{field}: {m:#?}"
        );
    }
    // A whole float is still a whole number.
    let mut p = post();
    p["create_at"] = json!(1_700_000_000_000.0_f64);
    assert!(conf().validate_schema(&p, "Post").ok());
}

#[test]
fn missing_fields_are_fine_and_nulls_need_nullable() {
    let o = conf().validate_schema(&json!({"id": "x"}), "Post");
    assert!(o.ok(), "{o}");
    // UserThreads.threads may be null (allow-listed, trap 13), but not in the strict spec.
    let totals = json!({"total": 3, "total_unread_threads": 1, "total_unread_mentions": 0,
        "total_unread_urgent_mentions": 0, "threads": null});
    assert!(conf().validate_schema(&totals, "UserThreads").ok());
    let strict = strict().validate_schema(&totals, "UserThreads");
    assert!(
        messages(&strict).contains(
            &"/threads: null is not allowed (`UserThreads.threads` is not nullable)".to_string()
        ),
        "{strict}"
    );
}

#[test]
fn user_thread_with_server_fields_passes() {
    let thread = json!({
        "id": "t1", "reply_count": 3, "last_reply_at": 5, "last_viewed_at": 0,
        "participants": [{"id": "u1", "username": "", "first_name": "", "last_name": "",
            "nickname": "", "position": "", "roles": "", "locale": "", "timezone": null,
            "create_at": 0, "update_at": 0, "delete_at": 0, "auth_service": "", "email": "",
            "disable_welcome_email": false}],
        "post": post(), "unread_replies": 3, "unread_mentions": 1, "is_urgent": false, "delete_at": 0
    });
    let list = json!({"total": 1, "total_unread_threads": 1, "total_unread_mentions": 1,
        "total_unread_urgent_mentions": 0, "threads": [thread]});
    let o = conf().validate_schema(&list, "UserThreads");
    assert!(o.ok(), "{o}");
    assert!(o.gaps_used.contains("userthread-participants"));
    // A thread must not carry `is_following` (trap 11).
    let mut bad = list.clone();
    bad["threads"][0]["is_following"] = json!(true);
    let o = conf().validate_schema(&bad, "UserThreads");
    assert_eq!(
        messages(&o),
        vec!["/threads/0/is_following: unknown field `is_following` (not in `UserThread`)"]
    );
}

#[test]
fn path_matching() {
    let spec = conf().spec();
    let op = |m: &str, p: &str| match spec.match_path(m, p) {
        PathMatch::Operation(op) => op.path,
        other => format!("{other:?}"),
    };
    let id = "abcdefghijklmnopqrstuvwxyz";
    assert_eq!(
        op("GET", "/api/v4/users/me/teams/unread"),
        "/api/v4/users/{user_id}/teams/unread"
    );
    assert_eq!(
        op(
            "GET",
            "/api/v4/users/me/teams/unread?include_collapsed_threads=true"
        ),
        "/api/v4/users/{user_id}/teams/unread"
    );
    assert_eq!(
        op(
            "PUT",
            &format!("/api/v4/users/{id}/teams/{id}/threads/{id}/read/1700000000000")
        ),
        "/api/v4/users/{user_id}/teams/{team_id}/threads/{thread_id}/read/{timestamp}"
    );
    assert_eq!(
        op(
            "PUT",
            &format!("/api/v4/users/{id}/teams/{id}/threads/read")
        ),
        "/api/v4/users/{user_id}/teams/{team_id}/threads/read"
    );
    assert_eq!(
        op(
            "GET",
            &format!("/api/v4/users/{id}/teams/{id}/threads/{id}")
        ),
        "/api/v4/users/{user_id}/teams/{team_id}/threads/{thread_id}"
    );
    assert_eq!(
        op("GET", &format!("/api/v4/posts/{id}/thread")),
        "/api/v4/posts/{post_id}/thread"
    );
    assert_eq!(op("POST", "/api/v4/users/login"), "/api/v4/users/login");
    assert_eq!(op("POST", "/api/v4/users/ids"), "/api/v4/users/ids");
    assert_eq!(op("GET", "/api/v4/users/ids"), "/api/v4/users/{user_id}");
    assert_eq!(op("GET", "/api/v4/users/me"), "/api/v4/users/{user_id}");
    assert_eq!(
        spec.match_path("GET", "/api/v4/no/such/route"),
        PathMatch::PathNotDocumented
    );
    assert!(matches!(
        spec.match_path("PATCH", "/api/v4/system/ping"),
        PathMatch::MethodNotDocumented { .. }
    ));
}

#[test]
fn responses_by_status() {
    let c = conf();
    let body = serde_json::to_vec(&post()).expect("json");
    let o = c.check_response(
        "POST",
        "/api/v4/posts",
        201,
        Some("application/json"),
        &body,
    );
    assert!(o.ok(), "{o}");
    // 200 is not documented for POST /posts.
    let o = c.check_response(
        "POST",
        "/api/v4/posts",
        200,
        Some("application/json"),
        &body,
    );
    assert!(!o.ok());
    // POST /reactions: 200 (server) validated against the 201 schema (allow-listed).
    let reaction = br#"{"user_id":"u","post_id":"p","emoji_name":"+1","create_at":1,"update_at":1,"delete_at":0,"remote_id":"","channel_id":"c"}"#;
    let o = c.check_response(
        "POST",
        "/api/v4/reactions",
        200,
        Some("application/json"),
        reaction,
    );
    assert!(o.ok(), "{o}");
    assert!(o.gaps_used.contains("reactions-post-200"));
    let o = strict().check_response(
        "POST",
        "/api/v4/reactions",
        200,
        Some("application/json"),
        reaction,
    );
    assert!(!o.ok());
    // Errors: documented (401 -> Unauthorized -> AppError) and undocumented statuses.
    let err = br#"{"id":"api.context.session_expired.app_error","message":"Invalid or expired session, please login again.","detailed_error":"","request_id":"r","status_code":401}"#;
    let o = c.check_response(
        "GET",
        "/api/v4/users/me",
        401,
        Some("application/json"),
        err,
    );
    assert!(o.ok(), "{o}");
    let o = c.check_response(
        "GET",
        "/api/v4/users/me",
        418,
        Some("application/json"),
        err,
    );
    assert!(o.ok(), "{o}");
    let bad_err = br#"{"id":"x","message":"m","is_oauth":false}"#;
    let o = c.check_response(
        "GET",
        "/api/v4/users/me",
        401,
        Some("application/json"),
        bad_err,
    );
    assert_eq!(
        messages(&o),
        vec!["/is_oauth: unknown field `is_oauth` (not in `AppError`)"]
    );
    // Undocumented operation: reported separately, not a schema failure.
    let o = c.check_response(
        "POST",
        "/oauth/access_token",
        200,
        Some("application/json"),
        b"{}",
    );
    assert!(o.ok() && o.undocumented.is_some(), "{o}");
    // 429 plain text.
    let o = c.check_response(
        "GET",
        "/api/v4/users/me",
        429,
        Some("text/plain; charset=utf-8"),
        b"limit exceeded\n",
    );
    assert!(
        o.ok() && o.gaps_used.contains("ratelimit-429-plain-text"),
        "{o}"
    );
    // Non-JSON where JSON is documented.
    let o = c.check_response("GET", "/api/v4/users/me", 200, Some("text/html"), b"<html>");
    assert!(!o.ok());
}

#[test]
fn replaced_bodies() {
    let c = conf();
    let id = "abcdefghijklmnopqrstuvwxyz";
    let path = format!("/api/v4/users/me/teams/{id}/threads/{id}");
    // The spec documents no body for a single thread; the server's ThreadResponse is checked.
    let thread = br#"{"id":"t","reply_count":1,"last_reply_at":2,"last_viewed_at":0,"participants":[],"post":null,"unread_replies":1,"unread_mentions":0,"is_urgent":false,"delete_at":0}"#;
    let o = c.check_response("GET", &path, 200, Some("application/json"), thread);
    assert!(o.ok() && o.gaps_used.contains("thread-get-body"), "{o}");
    let bad = br#"{"id":"t","reply_count":"1","is_following":true}"#;
    let o = c.check_response("GET", &path, 200, Some("application/json"), bad);
    assert_eq!(
        messages(&o),
        vec![
            "/is_following: unknown field `is_following` (not in `UserThread`)",
            "/reply_count: expected integer, got string \"1\"",
        ]
    );
    // GET /emoji is an array (the spec says one Emoji).
    let o = c.check_response(
        "GET",
        "/api/v4/emoji",
        200,
        Some("application/json"),
        br#"[{"id":"e","name":"x","creator_id":"u","create_at":1,"update_at":1,"delete_at":0}]"#,
    );
    assert!(o.ok(), "{o}");
    // Files are bytes.
    let o = c.check_response(
        "GET",
        &format!("/api/v4/files/{id}"),
        200,
        Some("image/png"),
        b"\x89PNG",
    );
    assert!(o.ok(), "{o}");
    let o = c.check_response(
        "GET",
        &format!("/api/v4/files/{id}"),
        200,
        Some("application/json"),
        b"{}",
    );
    assert!(!o.ok());
}

#[test]
fn ndjson_lines_are_validated() {
    let c = conf();
    let line = r#"{"channel_id":"c","user_id":"u","roles":"channel_user","last_viewed_at":1,"msg_count":1,"mention_count":0,"mention_count_root":0,"urgent_mention_count":0,"msg_count_root":1,"notify_props":{"desktop":"default","push":"default","email":"default","mark_unread":"all","ignore_channel_mentions":"default","channel_auto_follow_threads":"off"},"last_update_at":1,"scheme_guest":false,"scheme_user":true,"scheme_admin":false,"explicit_roles":"","team_display_name":"T","team_name":"t","team_update_at":1}"#;
    let body = format!("{line}\n{line}\n");
    let o = c.check_response(
        "GET",
        "/api/v4/users/me/channel_members?page=-1",
        200,
        Some("application/x-ndjson"),
        body.as_bytes(),
    );
    assert!(o.ok(), "{o}");
    let bad = line.replace("\"msg_count\":1", "\"msg_count\":\"1\"");
    let o = c.check_response(
        "GET",
        "/api/v4/users/me/channel_members?page=-1",
        200,
        Some("application/x-ndjson"),
        bad.as_bytes(),
    );
    assert_eq!(
        messages(&o),
        vec!["/0/msg_count: expected integer, got string \"1\""]
    );
    // The JSON-array form of the same operation.
    let o = c.check_response(
        "GET",
        "/api/v4/users/me/channel_members",
        200,
        Some("application/json"),
        format!("[{line}]").as_bytes(),
    );
    assert!(o.ok(), "{o}");
}

/// Every allow-list entry names something that exists in the spec, and is still needed: the
/// field is really undeclared (ExtraField) / declared (FieldSchema), the status really
/// undocumented, and its replacement schema parses and resolves.
#[test]
fn every_entry_is_still_needed() {
    let spec = conf().spec();
    let mut ids = std::collections::BTreeSet::new();
    let declared = |schema: &str, field: &str| -> Option<bool> {
        // `Schema` or `Schema.inline_property`.
        let mut parts = schema.split('.');
        let mut s = spec.schema(parts.next()?)?;
        for p in parts {
            s = s.get("properties")?.get(p)?;
        }
        let mut fields = Vec::new();
        let mut stack = vec![s];
        while let Some(s) = stack.pop() {
            let s = match s.get("$ref").and_then(Value::as_str) {
                Some(r) => spec.resolve_ref(r)?,
                None => s,
            };
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                fields.extend(props.keys().cloned());
            }
            if let Some(all) = s.get("allOf").and_then(Value::as_array) {
                stack.extend(all);
            }
        }
        Some(fields.iter().any(|f| f == field))
    };
    let mut stale: Vec<String> = Vec::new();
    for g in GAPS {
        assert!(ids.insert(g.id), "duplicate id {}", g.id);
        assert!(
            g.reason.contains("research"),
            "{}: reason must cite the research file",
            g.id
        );
        match g.kind {
            GapKind::ExtraField {
                schema,
                field,
                value,
            }
            | GapKind::FieldSchema {
                schema,
                field,
                value,
            } => {
                let want_declared = matches!(g.kind, GapKind::FieldSchema { .. });
                if declared(schema, field) != Some(want_declared) {
                    stale.push(format!(
                        "{}: {schema}.{field} declared={:?}",
                        g.id,
                        declared(schema, field)
                    ));
                }
                let parsed: Value =
                    serde_json::from_str(value).unwrap_or_else(|e| panic!("{}: {e}", g.id));
                // Every $ref resolves.
                let text = parsed.to_string();
                for r in text.split("\"$ref\":\"").skip(1) {
                    let r = r.split('"').next().expect("ref");
                    assert!(spec.resolve_ref(r).is_some(), "{}: {r}", g.id);
                }
            }
            GapKind::Status {
                method,
                path,
                documented,
                server,
            } => {
                let op = OperationRef {
                    method: method.into(),
                    path: path.into(),
                };
                let statuses = spec.statuses(&op);
                assert!(
                    statuses.contains(&documented.to_string()),
                    "{}: {statuses:?}",
                    g.id
                );
                assert!(
                    !statuses.contains(&server.to_string()),
                    "{}: now documented",
                    g.id
                );
            }
            GapKind::Ndjson { method, path } => {
                let op = OperationRef {
                    method: method.into(),
                    path: path.into(),
                };
                assert!(spec.operation(&op).is_some(), "{}", g.id);
                let ResponseDoc::Json(s) = spec.response(&op, "200").expect("200") else {
                    panic!("{}: no JSON 200", g.id)
                };
                assert!(!format!("{s}").contains("ndjson"), "{}", g.id);
            }
            GapKind::ResponseBody {
                method,
                path,
                status,
                body,
            } => {
                let op = OperationRef {
                    method: method.into(),
                    path: path.into(),
                };
                assert!(spec.operation(&op).is_some(), "{}: no such operation", g.id);
                let documented = spec.response(&op, &status.to_string());
                let needed = match (documented, body) {
                    (None | Some(ResponseDoc::NoJson { .. }), _) => true,
                    (Some(ResponseDoc::Json(d)), Body::Json(b)) => {
                        serde_json::from_str::<Value>(b).ok().as_ref() != Some(d)
                    }
                    (Some(ResponseDoc::Json(_)), Body::Binary) => true,
                };
                if !needed {
                    stale.push(format!("{}: the spec now documents this body", g.id));
                }
            }
            GapKind::PlainTextStatus { status } => {
                // The spec documents 429 as AppError JSON (components.responses.TooManyRequests).
                let r = spec
                    .document()
                    .pointer("/components/responses/TooManyRequests/content");
                assert!(
                    status == 429 && r.and_then(|c| c.get("application/json")).is_some(),
                    "{}",
                    g.id
                );
            }
            GapKind::UndocumentedErrorIsAppError => {
                assert!(spec.schema("AppError").is_some());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale or wrong allow-list entries: {stale:#?}"
    );
}
