//! A validator for the OpenAPI 3.0 schema subset the Mattermost description uses.
//!
//! Rules (chosen for catching simulator/client mistakes, see the crate docs):
//! - an object schema that declares `properties` is **closed**: a field it does not declare is a
//!   violation unless `additionalProperties` allows it or the allow-list names it;
//!   an object schema without `properties` (e.g. `props: {type: object}`) is free-form;
//! - types are checked (`integer` must be a whole number; `format: int32` must fit);
//! - `null` only where `nullable: true` or the allow-list overrides the field;
//! - missing fields are fine unless `required` lists them (the server omits `omitempty` fields);
//! - `allOf` merges the members' properties; `oneOf`/`anyOf` pass if any branch passes;
//! - `enum` is checked.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use crate::allow::{Gap, GapKind};
use crate::spec::Spec;

/// One schema violation, located by a JSON pointer into the validated document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub pointer: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{p}: {}", self.message)
    }
}

pub(crate) struct Validator<'a> {
    spec: &'a Spec,
    gaps: &'a [Gap],
    pub(crate) violations: Vec<Violation>,
    pub(crate) gaps_used: BTreeSet<&'static str>,
    depth: usize,
}

/// How an object treats fields it does not declare.
enum Additional<'a> {
    Closed,
    Open,
    Schema(&'a Value, String),
}

/// An object schema with `allOf` members (and `$ref`s) merged.
struct ObjectView<'a> {
    /// (field, schema, context of the declaring schema)
    properties: Vec<(&'a str, &'a Value, String)>,
    additional: Additional<'a>,
    required: Vec<&'a str>,
    /// Names of the schemas merged into this view (for the allow-list).
    contexts: Vec<String>,
}

const MAX_DEPTH: usize = 64;

pub(crate) fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

impl<'a> Validator<'a> {
    pub(crate) fn new(spec: &'a Spec, gaps: &'a [Gap]) -> Self {
        Self {
            spec,
            gaps,
            violations: Vec::new(),
            gaps_used: BTreeSet::new(),
            depth: 0,
        }
    }

    fn fail(&mut self, pointer: &str, message: impl Into<String>) {
        self.violations.push(Violation {
            pointer: pointer.to_string(),
            message: message.into(),
        });
    }

    /// Follow `$ref`s; returns the target and its component name when it is a schema.
    fn deref(&mut self, schema: &'a Value, ctx: &str, ptr: &str) -> Option<(&'a Value, String)> {
        let mut schema = schema;
        let mut ctx = ctx.to_string();
        for _ in 0..16 {
            let Some(r) = schema.get("$ref").and_then(Value::as_str) else {
                return Some((schema, ctx));
            };
            match self.spec.resolve_ref(r) {
                Some(target) => {
                    if let Some(name) = r.strip_prefix("#/components/schemas/") {
                        ctx = name.to_string();
                    }
                    schema = target;
                }
                None => {
                    self.fail(ptr, format!("spec error: unresolvable $ref `{r}`"));
                    return None;
                }
            }
        }
        self.fail(ptr, "spec error: $ref chain too long");
        None
    }

    /// Validate `value` against `schema`; `ctx` names the nearest component schema (or the
    /// inline path below it, e.g. `PostMetadata.priority`).
    pub(crate) fn validate(&mut self, value: &Value, schema: &'a Value, ctx: &str, ptr: &str) {
        if self.depth > MAX_DEPTH {
            self.fail(ptr, "nesting too deep");
            return;
        }
        self.depth += 1;
        self.validate_inner(value, schema, ctx, ptr);
        self.depth -= 1;
    }

    fn validate_inner(&mut self, value: &Value, schema: &'a Value, ctx: &str, ptr: &str) {
        let Some((schema, ctx)) = self.deref(schema, ctx, ptr) else {
            return;
        };
        let ctx = ctx.as_str();
        let Some(obj) = schema.as_object() else {
            // `true`/empty schemas accept anything.
            return;
        };
        let nullable = obj.get("nullable").and_then(Value::as_bool) == Some(true);
        let declared_type = obj.get("type").and_then(Value::as_str);

        if value.is_null() {
            let constrained = declared_type.is_some()
                || ["properties", "items", "allOf", "oneOf", "anyOf", "enum"]
                    .iter()
                    .any(|k| obj.contains_key(*k));
            if constrained && !nullable {
                self.fail(
                    ptr,
                    format!("null is not allowed (`{ctx}` is not nullable)"),
                );
            }
            return;
        }

        if let Some(list) = obj.get("enum").and_then(Value::as_array)
            && !list.contains(value)
        {
            self.fail(
                ptr,
                format!(
                    "value {} is not one of the enum {}",
                    short(value),
                    short(&Value::Array(list.clone()))
                ),
            );
        }

        for key in ["oneOf", "anyOf"] {
            if let Some(branches) = obj.get(key).and_then(Value::as_array) {
                self.validate_alternatives(value, branches, ctx, ptr, key);
            }
        }

        let has_all_of = obj.contains_key("allOf");
        let effective_type = declared_type.or_else(|| {
            if obj.contains_key("properties") || obj.contains_key("additionalProperties") {
                Some("object")
            } else if obj.contains_key("items") {
                Some("array")
            } else {
                None
            }
        });

        match effective_type {
            Some("string") => {
                if !value.is_string() {
                    self.fail(
                        ptr,
                        format!("expected string, got {} {}", type_name(value), short(value)),
                    );
                }
            }
            Some("boolean") => {
                if !value.is_boolean() {
                    self.fail(
                        ptr,
                        format!(
                            "expected boolean, got {} {}",
                            type_name(value),
                            short(value)
                        ),
                    );
                }
            }
            Some("number") => {
                if !value.is_number() {
                    self.fail(
                        ptr,
                        format!("expected number, got {} {}", type_name(value), short(value)),
                    );
                }
            }
            Some("integer") => {
                self.check_integer(value, obj.get("format").and_then(Value::as_str), ptr)
            }
            Some("array") => match value.as_array() {
                Some(items) => {
                    if let Some(item_schema) = obj.get("items") {
                        for (i, item) in items.iter().enumerate() {
                            self.validate(item, item_schema, ctx, &format!("{ptr}/{i}"));
                        }
                    }
                }
                None => self.fail(
                    ptr,
                    format!("expected array, got {} {}", type_name(value), short(value)),
                ),
            },
            Some("object") => {
                if value.is_object() {
                    self.validate_object(value, schema, ctx, ptr);
                } else {
                    self.fail(
                        ptr,
                        format!("expected object, got {} {}", type_name(value), short(value)),
                    );
                }
            }
            Some(other) => self.fail(
                ptr,
                format!("spec error: unknown type `{other}` in `{ctx}`"),
            ),
            None => {
                if has_all_of {
                    if value.is_object() {
                        self.validate_object(value, schema, ctx, ptr);
                    } else if let Some(members) = obj.get("allOf").and_then(Value::as_array) {
                        for m in members {
                            self.validate(value, m, ctx, ptr);
                        }
                    }
                }
            }
        }
    }

    fn check_integer(&mut self, value: &Value, format: Option<&str>, ptr: &str) {
        let whole = match value {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Some(i128::from(i))
                } else if let Some(u) = n.as_u64() {
                    Some(i128::from(u))
                } else {
                    // A float: acceptable only if it is a whole number within i64.
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                        .map(|f| f as i128)
                }
            }
            _ => None,
        };
        match whole {
            None => self.fail(
                ptr,
                format!(
                    "expected integer, got {} {}",
                    type_name(value),
                    short(value)
                ),
            ),
            Some(i) => {
                if format == Some("int32") && (i < i128::from(i32::MIN) || i > i128::from(i32::MAX))
                {
                    self.fail(ptr, format!("integer {i} does not fit int32"));
                }
            }
        }
    }

    fn validate_alternatives(
        &mut self,
        value: &Value,
        branches: &'a [Value],
        ctx: &str,
        ptr: &str,
        key: &str,
    ) {
        let mut best: Option<Validator<'a>> = None;
        for b in branches {
            let mut sub = Validator::new(self.spec, self.gaps);
            sub.depth = self.depth;
            sub.validate(value, b, ctx, ptr);
            if sub.violations.is_empty() {
                self.gaps_used.extend(sub.gaps_used);
                return;
            }
            if best
                .as_ref()
                .is_none_or(|x| sub.violations.len() < x.violations.len())
            {
                best = Some(sub);
            }
        }
        if let Some(b) = best {
            self.fail(
                ptr,
                format!("matches no `{key}` branch; closest branch says:"),
            );
            self.violations.extend(b.violations);
        }
    }

    /// Merge `allOf` members and `$ref`s into one object view.
    fn object_view(
        &mut self,
        schema: &'a Value,
        ctx: &str,
        ptr: &str,
        view: &mut ObjectView<'a>,
        depth: usize,
    ) {
        if depth > 16 {
            return;
        }
        let Some((schema, ctx)) = self.deref(schema, ctx, ptr) else {
            return;
        };
        if !view.contexts.contains(&ctx) {
            view.contexts.push(ctx.clone());
        }
        let Some(obj) = schema.as_object() else {
            view.additional = Additional::Open;
            return;
        };
        if let Some(members) = obj.get("allOf").and_then(Value::as_array) {
            for m in members {
                self.object_view(m, &ctx, ptr, view, depth + 1);
            }
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                view.properties.push((k.as_str(), v, format!("{ctx}.{k}")));
            }
        }
        if let Some(req) = obj.get("required").and_then(Value::as_array) {
            view.required.extend(req.iter().filter_map(Value::as_str));
        }
        match obj.get("additionalProperties") {
            Some(Value::Bool(true)) => view.additional = Additional::Open,
            Some(Value::Bool(false)) => {}
            Some(s @ Value::Object(_)) => {
                if !matches!(view.additional, Additional::Open) {
                    view.additional = Additional::Schema(s, format!("{ctx}.*"));
                }
            }
            _ => {
                // No `properties` and no `allOf`: a free-form object (`props: {type: object}`).
                if !obj.contains_key("properties") && !obj.contains_key("allOf") {
                    view.additional = Additional::Open;
                }
            }
        }
    }

    fn find_gap(
        &mut self,
        contexts: &[String],
        field: &str,
        extra: bool,
    ) -> Option<(&'static str, &'static str, String)> {
        for g in self.gaps {
            let (schema, f, value) = match g.kind {
                GapKind::ExtraField {
                    schema,
                    field,
                    value,
                } if extra => (schema, field, value),
                GapKind::FieldSchema {
                    schema,
                    field,
                    value,
                } if !extra => (schema, field, value),
                _ => continue,
            };
            if f == field && contexts.iter().any(|c| c == schema) {
                return Some((g.id, value, schema.to_string()));
            }
        }
        None
    }

    fn validate_object(&mut self, value: &Value, schema: &'a Value, ctx: &str, ptr: &str) {
        let Some(map) = value.as_object() else {
            return;
        };
        let mut view = ObjectView {
            properties: Vec::new(),
            additional: Additional::Closed,
            required: Vec::new(),
            contexts: Vec::new(),
        };
        self.object_view(schema, ctx, ptr, &mut view, 0);
        for r in &view.required {
            if !map.contains_key(*r) {
                self.fail(
                    ptr,
                    format!(
                        "missing required field `{r}` (`{}`)",
                        view.contexts.join(" + ")
                    ),
                );
            }
        }
        for (field, v) in map {
            let fptr = format!("{ptr}/{}", escape(field));
            let declared = view
                .properties
                .iter()
                .find(|(k, _, _)| *k == field)
                .map(|(_, s, c)| (*s, c.clone()));
            if let Some((fschema, fctx)) = declared {
                if let Some((id, gap_schema, gctx)) = self.find_gap(&view.contexts, field, false) {
                    self.gaps_used.insert(id);
                    self.validate_gap_value(v, id, gap_schema, &format!("{gctx}.{field}"), &fptr);
                } else {
                    self.validate(v, fschema, &fctx, &fptr);
                }
                continue;
            }
            if let Some((id, gap_schema, gctx)) = self.find_gap(&view.contexts, field, true) {
                self.gaps_used.insert(id);
                self.validate_gap_value(v, id, gap_schema, &format!("{gctx}.{field}"), &fptr);
                continue;
            }
            match &view.additional {
                Additional::Open => {}
                Additional::Schema(s, c) => {
                    let (s, c) = (*s, c.clone());
                    self.validate(v, s, &c, &fptr);
                }
                Additional::Closed => self.fail(
                    &fptr,
                    format!(
                        "unknown field `{field}` (not in `{}`)",
                        view.contexts.join(" + ")
                    ),
                ),
            }
        }
    }

    fn validate_gap_value(&mut self, v: &Value, id: &str, gap_schema: &str, ctx: &str, ptr: &str) {
        match serde_json::from_str::<Value>(gap_schema) {
            Ok(s) => self.validate_owned(v, &s, ctx, ptr),
            Err(e) => self.fail(
                ptr,
                format!("allow-list entry `{id}` has an invalid schema: {e}"),
            ),
        }
    }
}

impl Validator<'_> {
    /// Validate against a schema that is not part of the spec document (allow-list schemas).
    pub(crate) fn validate_owned(&mut self, value: &Value, schema: &Value, ctx: &str, ptr: &str) {
        // Re-borrow through a short-lived validator so the schema lifetime can be local.
        let mut sub = Validator {
            spec: self.spec,
            gaps: self.gaps,
            violations: Vec::new(),
            gaps_used: BTreeSet::new(),
            depth: self.depth,
        };
        sub.validate(value, schema, ctx, ptr);
        self.violations.extend(sub.violations);
        self.gaps_used.extend(sub.gaps_used);
    }
}
