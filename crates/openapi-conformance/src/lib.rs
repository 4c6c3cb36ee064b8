//! Validates JSON responses against the official Mattermost OpenAPI description (vendored in
//! `spec/mattermost-openapi`), allowing the known spec gaps one by one ([`allow::GAPS`]).
//!
//! ```no_run
//! use openapi_conformance::Conformance;
//! let c = Conformance::vendored().expect("spec loads");
//! let out = c.check_response("GET", "/api/v4/users/me", 200, Some("application/json"), br#"{"id":"x"}"#);
//! assert!(out.violations.is_empty(), "{out}");
//! ```
//!
//! What counts as a violation: a field the schema does not declare (unless allow-listed or the
//! schema allows additional properties), a wrong JSON type (integers must be whole numbers),
//! `null` where the schema is not nullable, a value outside an `enum`, a missing `required`
//! field, a success status the operation does not document, a non-JSON body where JSON is
//! documented. Not a violation: missing optional fields (the server omits `omitempty` fields).
//! Requests outside the spec (e.g. `/oauth/access_token`) are reported as
//! [`Outcome::undocumented`], separately from schema failures.

pub mod allow;
pub mod spec;
mod validate;

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

pub use allow::{Body, GAPS, Gap, GapKind};
pub use spec::{Error, OperationRef, PathMatch, ResponseDoc, Spec};
pub use validate::Violation;

/// The spec plus the allow-list.
#[derive(Debug)]
pub struct Conformance {
    spec: Spec,
    gaps: &'static [Gap],
}

/// The result of checking one response.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// `METHOD /concrete/path?query status`.
    pub request: String,
    /// The spec operation the request maps to.
    pub operation: Option<OperationRef>,
    /// Schema or status violations (must be empty).
    pub violations: Vec<Violation>,
    /// Set when the request is not in the spec (path or method): not a schema failure.
    pub undocumented: Option<String>,
    /// Things not checked and why (e.g. the spec documents no JSON body for this status).
    pub notes: Vec<String>,
    /// Allow-list entries that this response needed.
    pub gaps_used: BTreeSet<&'static str>,
}

impl Outcome {
    /// No violations.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.request)?;
        if let Some(op) = &self.operation {
            write!(f, " [spec: {op}]")?;
        }
        if let Some(u) = &self.undocumented {
            write!(f, " [undocumented: {u}]")?;
        }
        for v in &self.violations {
            write!(f, "\n    {v}")?;
        }
        Ok(())
    }
}

fn media_type(content_type: Option<&str>) -> String {
    content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

impl Conformance {
    /// The vendored spec with the built-in allow-list.
    pub fn vendored() -> Result<Self, Error> {
        Ok(Self::new(Spec::load_vendored()?))
    }

    #[must_use]
    pub fn new(spec: Spec) -> Self {
        Self { spec, gaps: GAPS }
    }

    /// Use another allow-list (tests use an empty one to prove a gap is real).
    #[must_use]
    pub fn with_gaps(spec: Spec, gaps: &'static [Gap]) -> Self {
        Self { spec, gaps }
    }

    #[must_use]
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    #[must_use]
    pub fn gaps(&self) -> &'static [Gap] {
        self.gaps
    }

    /// Validate a JSON value against a component schema by name (`"Post"`, `"UserThreads"`).
    #[must_use]
    pub fn validate_schema(&self, value: &Value, schema_name: &str) -> Outcome {
        let mut out = Outcome {
            request: format!("schema {schema_name}"),
            ..Outcome::default()
        };
        match self.spec.schema(schema_name) {
            Some(schema) => self.run(value, schema, schema_name, "", &mut out),
            None => out.violations.push(Violation {
                pointer: String::new(),
                message: format!("no component schema `{schema_name}`"),
            }),
        }
        out
    }

    /// Validate a JSON value against an arbitrary schema (`$ref`s into the spec allowed).
    #[must_use]
    pub fn validate_value(&self, value: &Value, schema: &Value) -> Outcome {
        let mut out = Outcome::default();
        let mut v = validate::Validator::new(&self.spec, self.gaps);
        v.validate_owned(value, schema, "", "");
        out.violations = v.violations;
        out.gaps_used = v.gaps_used;
        out
    }

    fn run(&self, value: &Value, schema: &Value, ctx: &str, ptr: &str, out: &mut Outcome) {
        let mut v = validate::Validator::new(&self.spec, self.gaps);
        v.validate(value, schema, ctx, ptr);
        out.violations.extend(v.violations);
        out.gaps_used.extend(v.gaps_used);
    }

    fn app_error(&self, body: &[u8], out: &mut Outcome) {
        match serde_json::from_slice::<Value>(body) {
            Ok(json) => match self.spec.schema("AppError") {
                Some(s) => self.run(&json, s, "AppError", "", out),
                None => out.notes.push("spec has no AppError schema".into()),
            },
            Err(e) => out.violations.push(Violation {
                pointer: String::new(),
                message: format!("error body is not JSON (AppError expected): {e}"),
            }),
        }
    }

    fn gap_id(&self, pred: impl Fn(&GapKind) -> bool) -> Option<&'static str> {
        self.gaps.iter().find(|g| pred(&g.kind)).map(|g| g.id)
    }

    /// Check one HTTP response: `path` is the concrete request path (a query string is
    /// ignored), `content_type` the response header, `body` the raw bytes.
    #[must_use]
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body_bytes: &[u8],
    ) -> Outcome {
        let body = body_bytes;
        let mut out = Outcome {
            request: format!("{} {path} -> {status}", method.to_uppercase()),
            ..Outcome::default()
        };
        let media = media_type(content_type);
        let is_json = media == "application/json" || media.ends_with("+json");

        // Plain-text statuses (429) are allowed anywhere, documented or not.
        if !is_json
            && media.starts_with("text/plain")
            && let Some(id) =
                self.gap_id(|k| matches!(k, GapKind::PlainTextStatus { status: s } if *s == status))
        {
            out.gaps_used.insert(id);
            out.notes
                .push(format!("{status} with a plain-text body (allowed: {id})"));
            return out;
        }

        let op = match self.spec.match_path(method, path) {
            PathMatch::Operation(op) => op,
            other => {
                out.undocumented = Some(match other {
                    PathMatch::MethodNotDocumented { paths } => format!(
                        "method {} not documented for {}",
                        method.to_uppercase(),
                        paths.join(", ")
                    ),
                    _ => "path not in the spec".to_string(),
                });
                // Errors are still AppError JSON (research §9, trap 4 for /oauth, trap 21 for
                // unknown routes).
                if status >= 400 && is_json {
                    if let Some(id) =
                        self.gap_id(|k| matches!(k, GapKind::UndocumentedErrorIsAppError))
                    {
                        out.gaps_used.insert(id);
                    }
                    self.app_error(body, &mut out);
                }
                return out;
            }
        };
        out.operation = Some(op.clone());

        let mut status_key = status.to_string();
        if let Some(g) = self.gaps.iter().find(|g| {
            matches!(g.kind, GapKind::Status { method: m, path: p, server, .. }
                if m == op.method && p == op.path && server == status)
        }) {
            if let GapKind::Status { documented, .. } = g.kind {
                status_key = documented.to_string();
            }
            out.gaps_used.insert(g.id);
        }

        if let Some(g) = self.gaps.iter().find(|g| {
            matches!(g.kind, GapKind::ResponseBody { method: m, path: p, status: s, .. }
                if m == op.method && p == op.path && s == status)
        }) {
            out.gaps_used.insert(g.id);
            if let GapKind::ResponseBody { body, .. } = g.kind {
                self.check_replaced_body(body, g.id, is_json, &media, body_bytes, &mut out);
            }
            return out;
        }

        let doc = match self.spec.response(&op, &status_key) {
            Some(d) => d,
            None if status >= 400 => {
                let Some(id) = self.gap_id(|k| matches!(k, GapKind::UndocumentedErrorIsAppError))
                else {
                    out.violations.push(Violation {
                        pointer: String::new(),
                        message: format!("status {status} not documented for {op}"),
                    });
                    return out;
                };
                out.gaps_used.insert(id);
                out.notes.push(format!(
                    "status {status} not documented for {op}; validated as AppError"
                ));
                if is_json {
                    self.app_error(body, &mut out);
                } else {
                    out.violations.push(Violation {
                        pointer: String::new(),
                        message: format!("error body is `{media}`, AppError JSON expected"),
                    });
                }
                return out;
            }
            None => {
                out.violations.push(Violation {
                    pointer: String::new(),
                    message: format!(
                        "status {status} not documented for {op} (documented: {})",
                        self.spec.statuses(&op).join(", ")
                    ),
                });
                return out;
            }
        };

        match doc {
            ResponseDoc::Json(schema) => {
                if media == "application/x-ndjson" {
                    let Some(id) = self.gap_id(|k| {
                        matches!(k, GapKind::Ndjson { method: m, path: p } if *m == op.method && *p == op.path)
                    }) else {
                        out.violations.push(Violation {
                            pointer: String::new(),
                            message: "NDJSON body where the spec documents application/json".into(),
                        });
                        return out;
                    };
                    out.gaps_used.insert(id);
                    self.check_ndjson(schema, body, &mut out);
                    return out;
                }
                if !is_json {
                    if body.is_empty() && status == 304 {
                        return out;
                    }
                    out.violations.push(Violation {
                        pointer: String::new(),
                        message: format!(
                            "content type `{media}`, the spec documents application/json"
                        ),
                    });
                    return out;
                }
                match serde_json::from_slice::<Value>(body) {
                    Ok(json) => self.run(&json, schema, "", "", &mut out),
                    Err(e) => out.violations.push(Violation {
                        pointer: String::new(),
                        message: format!("body is not valid JSON: {e}"),
                    }),
                }
            }
            ResponseDoc::NoJson { media_types } => {
                if is_json {
                    out.notes.push(format!(
                        "the spec documents no JSON body for {op} {status_key} (media types: [{}]); body not validated",
                        media_types.join(", ")
                    ));
                }
            }
        }
        out
    }

    fn check_replaced_body(
        &self,
        body: Body,
        id: &str,
        is_json: bool,
        media: &str,
        bytes: &[u8],
        out: &mut Outcome,
    ) {
        match body {
            Body::Binary => {
                if is_json {
                    out.violations.push(Violation {
                        pointer: String::new(),
                        message: format!("JSON body where bytes are expected ({id})"),
                    });
                }
            }
            Body::Json(schema) => {
                if !is_json {
                    out.violations.push(Violation {
                        pointer: String::new(),
                        message: format!("content type `{media}`, JSON expected ({id})"),
                    });
                    return;
                }
                let parsed = serde_json::from_str::<Value>(schema);
                match (serde_json::from_slice::<Value>(bytes), parsed) {
                    (Ok(json), Ok(schema)) => {
                        let r = self.validate_value(&json, &schema);
                        out.violations.extend(r.violations);
                        out.gaps_used.extend(r.gaps_used);
                    }
                    (Err(e), _) => out.violations.push(Violation {
                        pointer: String::new(),
                        message: format!("body is not valid JSON: {e}"),
                    }),
                    (_, Err(e)) => out.violations.push(Violation {
                        pointer: String::new(),
                        message: format!("allow-list entry `{id}` has an invalid schema: {e}"),
                    }),
                }
            }
        }
    }

    fn check_ndjson(&self, array_schema: &Value, body: &[u8], out: &mut Outcome) {
        let text = String::from_utf8_lossy(body);
        let item = self
            .spec
            .resolve_ref(
                array_schema
                    .get("$ref")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )
            .unwrap_or(array_schema)
            .get("items");
        let Some(item) = item else {
            out.violations.push(Violation {
                pointer: String::new(),
                message: "NDJSON allowed, but the documented schema is not an array".into(),
            });
            return;
        };
        for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            match serde_json::from_str::<Value>(line) {
                Ok(json) => self.run(&json, item, "", &format!("/{i}"), out),
                Err(e) => out.violations.push(Violation {
                    pointer: format!("/{i}"),
                    message: format!("NDJSON line is not JSON: {e}"),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests;
