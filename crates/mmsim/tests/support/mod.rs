//! A test HTTP client for mmsim that validates every response against the official OpenAPI
//! description (`openapi-conformance`) and keeps a log for coverage reports.
//!
//! Use from an integration test with `mod support;`. Every call records an [`Outcome`];
//! [`ConformanceClient::assert_conformant`] fails the test listing every violation.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};

use openapi_conformance::{Conformance, Outcome};
use reqwest::Method;
use serde_json::Value;

/// The vendored spec with the allow-list, loaded once per test binary.
pub fn conformance() -> &'static Conformance {
    static C: OnceLock<Conformance> = OnceLock::new();
    C.get_or_init(|| Conformance::vendored().expect("vendored OpenAPI spec loads"))
}

/// One checked response.
#[derive(Debug)]
pub struct Checked {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    pub outcome: Outcome,
}

impl Checked {
    /// The body as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} -> {}: body is not JSON ({e}): {}",
                self.method,
                self.path,
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Assert the status, showing the body on mismatch; returns `self` for chaining.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "{} {}: body {}",
            self.method,
            self.path,
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A request logged for the coverage report.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub outcome: Outcome,
}

/// reqwest client bound to one mmsim base URL and (optionally) a token; clones share the log.
#[derive(Clone)]
pub struct ConformanceClient {
    http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
    log: Arc<Mutex<Vec<LogEntry>>>,
}

impl ConformanceClient {
    pub fn new(base: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            // No redirects (OAuth answers 302s to be inspected) and no cookie store (trap 2).
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("reqwest client builds"),
            base: base.trim_end_matches('/').to_owned(),
            token: None,
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The same client (and log) with another token (`None` = anonymous).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    /// Send and validate. `body` is sent as JSON when given.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Checked {
        self.send_with(method, path, body, &[]).await
    }

    /// Send with extra headers and validate.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Checked {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: request failed: {e}"));
        self.finish(method.as_str(), path, resp).await
    }

    /// Send a form-encoded body (OAuth token endpoint) and validate.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Checked {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: request failed: {e}"));
        self.finish("POST", path, resp).await
    }

    async fn finish(&self, method: &str, path: &str, resp: reqwest::Response) -> Checked {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading body: {e}"))
            .to_vec();
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let outcome = conformance().check_response(method, path, status, content_type, &body);
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(LogEntry {
                method: method.to_owned(),
                path: path.to_owned(),
                status,
                outcome: outcome.clone(),
            });
        Checked {
            method: method.to_owned(),
            path: path.to_owned(),
            status,
            headers,
            body,
            outcome,
        }
    }

    pub async fn get(&self, path: &str) -> Checked {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Checked {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Checked {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn put_empty(&self, path: &str) -> Checked {
        self.send(Method::PUT, path, None).await
    }

    pub async fn delete(&self, path: &str) -> Checked {
        self.send(Method::DELETE, path, None).await
    }

    pub fn log(&self) -> Vec<LogEntry> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Print the coverage report: for each spec operation (or undocumented route) the
    /// concrete requests and statuses seen, then the allow-list entries used and unused.
    pub fn print_coverage(&self) {
        let log = self.log();
        let mut by_op: BTreeMap<String, (BTreeSet<String>, BTreeSet<u16>)> = BTreeMap::new();
        let mut gaps_used: BTreeSet<&'static str> = BTreeSet::new();
        let mut notes: BTreeSet<String> = BTreeSet::new();
        for e in &log {
            let key = match (&e.outcome.operation, &e.outcome.undocumented) {
                (Some(op), _) => op.to_string(),
                (None, Some(u)) => {
                    format!("(undocumented: {u}) {} {}", e.method, route_shape(&e.path))
                }
                (None, None) => format!("(unmatched) {} {}", e.method, route_shape(&e.path)),
            };
            let entry = by_op.entry(key).or_default();
            entry
                .0
                .insert(format!("{} {}", e.method, route_shape(&e.path)));
            entry.1.insert(e.status);
            gaps_used.extend(e.outcome.gaps_used.iter().copied());
            notes.extend(e.outcome.notes.iter().cloned());
        }
        let documented = by_op.keys().filter(|k| !k.starts_with('(')).count();
        println!(
            "\n=== OpenAPI conformance coverage: {} requests, {} spec operations, {} undocumented routes ===",
            log.len(),
            documented,
            by_op.len() - documented
        );
        for (op, (routes, statuses)) in &by_op {
            let statuses: Vec<String> = statuses.iter().map(ToString::to_string).collect();
            println!("{op}  [{}]", statuses.join(","));
            for r in routes {
                println!("    <- {r}");
            }
        }
        println!("--- allow-list entries used ({}):", gaps_used.len());
        for g in &gaps_used {
            println!("    {g}");
        }
        let unused: Vec<&str> = conformance()
            .gaps()
            .iter()
            .map(|g| g.id)
            .filter(|id| !gaps_used.contains(id))
            .collect();
        println!(
            "--- allow-list entries not exercised by this run ({}): {}",
            unused.len(),
            unused.join(", ")
        );
        println!("--- not validated (spec documents no JSON body etc.):");
        for n in &notes {
            println!("    {n}");
        }
    }

    /// Every response logged so far that violates the spec.
    pub fn failures(&self) -> Vec<LogEntry> {
        self.log().into_iter().filter(|e| !e.outcome.ok()).collect()
    }

    /// Fail listing every violation of every logged response.
    #[track_caller]
    pub fn assert_conformant(&self) {
        let failures = self.failures();
        if !failures.is_empty() {
            let text: Vec<String> = failures.iter().map(|e| e.outcome.to_string()).collect();
            panic!(
                "{} response(s) violate the OpenAPI description:\n{}",
                failures.len(),
                text.join("\n")
            );
        }
    }
}

/// `/api/v4/posts/8x…26chars…/thread?x=1` → `/api/v4/posts/{id}/thread?x`.
pub fn route_shape(path: &str) -> String {
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut out: Vec<String> = p
        .split('/')
        .map(|s| {
            if s.len() == 26 && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
                "{id}".to_owned()
            } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "{n}".to_owned()
            } else {
                s.to_owned()
            }
        })
        .collect::<Vec<_>>();
    let mut shaped = out.join("/");
    if let Some(q) = q {
        let keys: Vec<&str> = q
            .split('&')
            .map(|kv| kv.split('=').next().unwrap_or(kv))
            .collect();
        shaped.push('?');
        shaped.push_str(&keys.join("&"));
    }
    out.clear();
    shaped
}
