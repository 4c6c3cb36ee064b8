//! Property tests of the JSON API's input handling (T-25): arbitrary query strings for
//! `GET /api/v1/items` and arbitrary keys, actions and bodies for
//! `POST /api/v1/items/{key}/{action}` never produce a 5xx and never panic. The router runs
//! in-process (`tower::ServiceExt::oneshot`) on the state of a real ThreadDesk signed in
//! against mmsim, so each case costs microseconds, not a loopback round trip.
#![allow(clippy::unwrap_used)]

mod support;

use axum::body::Body;
use axum::http::{Request, header};
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use serde_json::Value;
use tower::ServiceExt as _;

struct Fixture {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    cookie: String,
    csrf: String,
    keys: Vec<String>,
    // Kept alive for the router's state (sync engine, mmsim).
    _stack: support::Stack,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stack, cookie, csrf, keys) = rt.block_on(async {
        let stack = support::Stack::start().await.unwrap();
        let mut alice = stack.sign_in("alice").await.unwrap();
        let items = alice.wait_items(1).await.unwrap();
        let keys: Vec<String> = items
            .iter()
            .filter_map(|i| i["key"].as_str().map(str::to_owned))
            .collect();
        let cookie = format!("td_session={}", alice.cookie("td_session").unwrap());
        (stack, cookie, alice.csrf.clone(), keys)
    });
    let router = threaddesk::web::router(stack.app.state.clone());
    Fixture {
        rt,
        router,
        cookie,
        csrf,
        keys,
        _stack: stack,
    }
}

impl Fixture {
    /// Send one request in-process; returns the status (a handler panic fails the test).
    fn send(&self, req: Request<Body>) -> u16 {
        let router = self.router.clone();
        self.rt.block_on(async move {
            let res = router.oneshot(req).await.unwrap();
            res.status().as_u16()
        })
    }
}

/// A query-string value: ASCII, Unicode, control characters, numbers, huge numbers.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[a-z_]{0,12}",
        "-?[0-9]{1,25}",
        Just(String::new()),
        Just("all".to_owned()),
        Just("done".to_owned()),
        Just("snoozed".to_owned()),
        "[A-Za-z0-9+/=_-]{0,60}",
        "\\PC{0,300}",
    ]
}

fn query_string() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("filter".to_owned()),
        Just("team".to_owned()),
        Just("q".to_owned()),
        Just("cursor".to_owned()),
        Just("limit".to_owned()),
        "[a-z]{1,8}",
        ".{0,10}",
    ];
    let encoded = proptest::collection::vec((key, value()), 0..6).prop_map(|pairs| {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            ser.append_pair(k, v);
        }
        ser.finish()
    });
    // Raw strings too: bad percent escapes, repeated keys, stray `=` and `&`.
    let raw = "([a-z]{0,6}(=|%[0-9A-Fa-f]{0,2}|&|\\+|;|%FF|%00|%C3%28)?){0,12}";
    prop_oneof![encoded, raw]
}

#[test]
fn items_query_strings_never_5xx() {
    let f = fixture();
    let mut runner = TestRunner::new(PropConfig {
        cases: 1000,
        failure_persistence: None,
        ..PropConfig::default()
    });
    let ok = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&query_string(), |qs| {
            let req = Request::get(format!("/api/v1/items?{qs}"))
                .header(header::COOKIE, &f.cookie)
                .body(Body::empty());
            let Ok(req) = req else {
                return Ok(()); // not a valid URI: a browser could not send it either
            };
            let status = f.send(req);
            prop_assert!(
                status == 200 || status == 400,
                "GET /api/v1/items?{} answered {}",
                qs,
                status
            );
            if status == 200 {
                ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    // The generator reaches the query itself, not only the validation errors.
    assert!(ok.into_inner() > 50, "too few valid queries generated");
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        ".{0,30}".prop_map(Value::String),
        "[a-z0-9_+-]{0,20}".prop_map(Value::String),
        "[a-z0-9]{26}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{0,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("message".to_owned()),
        Just("until".to_owned()),
        Just("emoji".to_owned()),
        Just("post_id".to_owned()),
        Just("on".to_owned()),
        "[a-z_]{1,8}",
    ];
    let object = proptest::collection::btree_map(field, json_value(), 0..4)
        .prop_map(|m| serde_json::to_vec(&Value::Object(m.into_iter().collect())).unwrap());
    prop_oneof![
        4 => object,
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => Just(Vec::new()),
    ]
}

#[test]
fn item_actions_with_arbitrary_keys_actions_and_bodies_never_5xx() {
    let f = fixture();
    let real_keys = f.keys.clone();
    let key = prop_oneof![
        3 => proptest::sample::select(real_keys),
        1 => "[tc]_[a-z0-9]{26}",
        1 => "[A-Za-z0-9_.~-]{0,40}",
        1 => "(%[0-9A-F]{2}|[a-z_]){1,20}",
    ];
    let action = prop_oneof![
        4 => proptest::sample::select(vec![
            "reply", "done", "undo", "snooze", "unsnooze", "read", "unread", "follow",
            "unfollow", "react", "save", "unsave",
        ])
        .prop_map(str::to_owned),
        1 => "[A-Za-z0-9_.~-]{0,20}",
        1 => "(%[0-9A-F]{2}){1,6}",
    ];
    let content_type = proptest::sample::select(vec![
        Some("application/json"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ]);
    let mut runner = TestRunner::new(PropConfig {
        cases: 1000,
        failure_persistence: None,
        ..PropConfig::default()
    });
    runner
        .run(
            &(key, action, body(), content_type),
            |(key, action, body, ct)| {
                let mut req = Request::post(format!("/api/v1/items/{key}/{action}"))
                    .header(header::COOKIE, &f.cookie)
                    .header("x-csrf-token", &f.csrf);
                if let Some(ct) = ct {
                    req = req.header(header::CONTENT_TYPE, ct);
                }
                let Ok(req) = req.body(Body::from(body.clone())) else {
                    return Ok(());
                };
                let status = f.send(req);
                prop_assert!(
                    status < 500,
                    "POST /api/v1/items/{}/{} with {:?} answered {}",
                    key,
                    action,
                    String::from_utf8_lossy(&body),
                    status
                );
                prop_assert!(
                    [202, 400, 404, 405].contains(&status),
                    "POST /api/v1/items/{}/{} answered {}",
                    key,
                    action,
                    status
                );
                Ok(())
            },
        )
        .unwrap();
}
