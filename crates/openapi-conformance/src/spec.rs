//! Loading the vendored OpenAPI fragments and finding operations and response schemas.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Failure to load the spec.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("spec structure: {0}")]
    Structure(String),
}

/// One segment of a templated path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

/// A templated spec path, e.g. `/api/v4/users/{user_id}/teams`.
#[derive(Clone, Debug)]
struct Template {
    path: String,
    segments: Vec<Segment>,
}

/// A matched operation: the templated path and the method (lower case).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperationRef {
    pub method: String,
    pub path: String,
}

impl std::fmt::Display for OperationRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method.to_uppercase(), self.path)
    }
}

/// What the spec documents for one response status of one operation.
#[derive(Clone, Debug)]
pub enum ResponseDoc<'a> {
    /// `application/json` content with this schema (reference already resolved one level).
    Json(&'a Value),
    /// The response exists but documents no JSON body (none, or other media types).
    NoJson { media_types: Vec<String> },
}

/// How a concrete request path relates to the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// Template and method found.
    Operation(OperationRef),
    /// Some template matches the path, but none documents this method.
    MethodNotDocumented { paths: Vec<String> },
    /// No template matches the path at all.
    PathNotDocumented,
}

/// The merged OpenAPI document.
#[derive(Debug)]
pub struct Spec {
    doc: Value,
    templates: Vec<Template>,
    /// Path keys that were defined more than once (the last definition was kept).
    pub duplicate_paths: Vec<String>,
}

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

impl Spec {
    /// The copy vendored at `<workspace root>/spec/mattermost-openapi`.
    pub fn load_vendored() -> Result<Spec, Error> {
        Self::load(&vendored_dir())
    }

    /// Load the fragments of `dir`: `introduction.yaml`, every other path file, then
    /// `definitions.yaml`. Path files are split into one block per path key and parsed block by
    /// block, so a path key defined twice is tolerated (the last one wins, as lenient parsers do).
    pub fn load(dir: &Path) -> Result<Spec, Error> {
        let intro = read_yaml(&dir.join("introduction.yaml"))?;
        let defs = read_yaml(&dir.join("definitions.yaml"))?;
        let mut doc = match intro {
            Value::Object(map) => map,
            _ => {
                return Err(Error::Structure(
                    "introduction.yaml is not a mapping".into(),
                ));
            }
        };
        let components = defs
            .get("components")
            .cloned()
            .ok_or_else(|| Error::Structure("definitions.yaml has no `components`".into()))?;
        doc.insert("components".into(), components);

        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| e == "yaml")
                    && !p
                        .file_name()
                        .is_some_and(|n| n == "introduction.yaml" || n == "definitions.yaml")
            })
            .collect();
        files.sort();

        let mut paths = Map::new();
        let mut duplicate_paths = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
                path: file.clone(),
                source,
            })?;
            for block in split_path_blocks(&text) {
                let parsed: serde_yaml::Value =
                    serde_yaml::from_str(&block).map_err(|source| Error::Yaml {
                        path: file.clone(),
                        source,
                    })?;
                if let Value::Object(map) = yaml_to_json(parsed) {
                    for (k, v) in map {
                        if paths.insert(k.clone(), v).is_some() {
                            duplicate_paths.push(k);
                        }
                    }
                }
            }
        }
        let mut templates: Vec<Template> = paths
            .keys()
            .map(|p| Template {
                path: p.clone(),
                segments: split_segments(p)
                    .map(|s| {
                        if s.starts_with('{') && s.ends_with('}') {
                            Segment::Param
                        } else {
                            Segment::Literal(s.to_string())
                        }
                    })
                    .collect(),
            })
            .collect();
        templates.sort_by(|a, b| a.path.cmp(&b.path));
        doc.insert("paths".into(), Value::Object(paths));
        Ok(Spec {
            doc: Value::Object(doc),
            templates,
            duplicate_paths,
        })
    }

    /// The whole merged document.
    #[must_use]
    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// Number of path keys and operations.
    #[must_use]
    pub fn counts(&self) -> (usize, usize) {
        let ops = self
            .doc
            .get("paths")
            .and_then(Value::as_object)
            .map_or(0, |p| {
                p.values()
                    .filter_map(Value::as_object)
                    .map(|item| {
                        item.keys()
                            .filter(|k| HTTP_METHODS.contains(&k.as_str()))
                            .count()
                    })
                    .sum()
            });
        (self.templates.len(), ops)
    }

    /// A component schema by name (`Post`, `UserThread`, …).
    #[must_use]
    pub fn schema(&self, name: &str) -> Option<&Value> {
        self.doc
            .pointer(&format!("/components/schemas/{}", escape_pointer(name)))
    }

    /// Names of all component schemas.
    #[must_use]
    pub fn schema_names(&self) -> Vec<&str> {
        self.doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Resolve a local `$ref` (`#/components/...`).
    #[must_use]
    pub fn resolve_ref(&self, reference: &str) -> Option<&Value> {
        let pointer = reference.strip_prefix('#')?;
        self.doc.pointer(pointer)
    }

    /// The operation object for `op`.
    #[must_use]
    pub fn operation(&self, op: &OperationRef) -> Option<&Value> {
        self.doc
            .get("paths")?
            .get(&op.path)?
            .get(op.method.as_str())
    }

    /// Map a concrete request path (query string allowed) and method to a spec operation.
    /// Among matching templates, literal segments beat parameters at the first position where
    /// they differ (`/users/me/teams/unread` → `/users/{user_id}/teams/unread`, and a literal
    /// `/users/login` over `/users/{user_id}`).
    #[must_use]
    pub fn match_path(&self, method: &str, path: &str) -> PathMatch {
        let method = method.to_ascii_lowercase();
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let concrete: Vec<&str> = split_segments(path).collect();
        let mut candidates: Vec<&Template> = self
            .templates
            .iter()
            .filter(|t| {
                t.segments.len() == concrete.len()
                    && t.segments.iter().zip(&concrete).all(|(s, c)| match s {
                        Segment::Literal(l) => l == c,
                        Segment::Param => !c.is_empty(),
                    })
            })
            .collect();
        if candidates.is_empty() {
            return PathMatch::PathNotDocumented;
        }
        // Literal before parameter, position by position.
        candidates.sort_by(|a, b| {
            let key = |t: &Template| -> Vec<u8> {
                t.segments
                    .iter()
                    .map(|s| u8::from(*s == Segment::Param))
                    .collect()
            };
            key(a).cmp(&key(b))
        });
        for t in &candidates {
            let op = OperationRef {
                method: method.clone(),
                path: t.path.clone(),
            };
            if self.operation(&op).is_some() {
                return PathMatch::Operation(op);
            }
        }
        PathMatch::MethodNotDocumented {
            paths: candidates.iter().map(|t| t.path.clone()).collect(),
        }
    }

    /// Documented status codes of an operation (keys of `responses`).
    #[must_use]
    pub fn statuses(&self, op: &OperationRef) -> Vec<String> {
        self.operation(op)
            .and_then(|o| o.get("responses"))
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The response documentation for `status`: exact code, then `2XX`-style range, then
    /// `default`. `None` when the status is not documented.
    #[must_use]
    pub fn response(&self, op: &OperationRef, status: &str) -> Option<ResponseDoc<'_>> {
        let responses = self.operation(op)?.get("responses")?.as_object()?;
        let range = status
            .chars()
            .next()
            .map(|c| format!("{c}XX"))
            .unwrap_or_default();
        let resp = responses
            .get(status)
            .or_else(|| responses.get(&range))
            .or_else(|| responses.get(&range.to_lowercase()))
            .or_else(|| responses.get("default"))?;
        Some(self.response_doc(resp))
    }

    fn response_doc<'a>(&'a self, resp: &'a Value) -> ResponseDoc<'a> {
        let mut resp = resp;
        // Shared responses (`#/components/responses/NotFound`) may chain.
        for _ in 0..8 {
            match resp.get("$ref").and_then(Value::as_str) {
                Some(r) => match self.resolve_ref(r) {
                    Some(v) => resp = v,
                    None => break,
                },
                None => break,
            }
        }
        let content = resp.get("content").and_then(Value::as_object);
        match content {
            Some(c) => match c.get("application/json").and_then(|m| m.get("schema")) {
                Some(schema) => ResponseDoc::Json(schema),
                None => ResponseDoc::NoJson {
                    media_types: c.keys().cloned().collect(),
                },
            },
            None => ResponseDoc::NoJson {
                media_types: Vec::new(),
            },
        }
    }
}

/// `<workspace root>/spec/mattermost-openapi`, from this crate's manifest directory.
#[must_use]
pub fn vendored_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .join("spec")
        .join("mattermost-openapi")
}

fn split_segments(path: &str) -> impl Iterator<Item = &str> {
    path.trim_start_matches('/').split('/')
}

fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn read_yaml(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|source| Error::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(yaml_to_json(v))
}

/// Split a path fragment (path items indented two spaces) into one text block per path key.
fn split_path_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let starts_path =
            line.starts_with("  /") || line.starts_with("  \"/") || line.starts_with("  '/");
        if starts_path && !current.trim().is_empty() {
            blocks.push(std::mem::take(&mut current));
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        blocks.push(current);
    }
    blocks
}

/// YAML → JSON, stringifying non-string keys (`200:` → `"200"`).
fn yaml_to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(seq) => Value::Array(seq.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_string(),
                    other => format!("{other:?}"),
                };
                out.insert(key, yaml_to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}
