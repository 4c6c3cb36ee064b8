//! Configuration: one typed [`Config`] with defaults, layered as
//! defaults → TOML file (`--config` / `THREADDESK_CONFIG`) → `THREADDESK_*` environment → flags
//! (the binary calls the setters). Every setting has one entry in [`SETTINGS`], which drives the
//! file keys, the environment names, the error messages and `threaddesk config example`.
//!
//! Errors name the setting and where to set it. Secrets (`oauth_client_secret`) are redacted in
//! `Debug` and can be read from a file (`oauth_client_secret_file` / `…_FILE`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "THREADDESK_CONFIG";
const ENV_PREFIX: &str = "THREADDESK_";

/// A secret string: `Debug`/`Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A way for users to sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    /// Mattermost as OAuth 2.0 provider (needs an OAuth app registered in Mattermost).
    OAuth,
    /// A Mattermost personal access token pasted by the user.
    PersonalAccessToken,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Mattermost's base URL (scheme, host, optional port and subpath). Required for `serve`.
    pub mattermost_url: Option<Url>,
    /// ThreadDesk's own external URL (OAuth callback; `https` turns on the cookie Secure flag).
    pub public_url: Option<Url>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the database and the key file.
    pub data_dir: PathBuf,
    /// Days of messages kept in the cache (7..=14).
    pub retention_days: u32,
    /// Log filter in `tracing` `EnvFilter` syntax (e.g. `info`, `threaddesk=debug`).
    pub log: String,
    /// Sign-in methods offered, in display order, never empty.
    pub sign_in_methods: Vec<SignInMethod>,
    /// OAuth client id of the app registered in Mattermost.
    pub oauth_client_id: Option<String>,
    /// OAuth client secret (absent for a public client using PKCE only).
    pub oauth_client_secret: Option<Secret>,
    /// File holding the token-encryption key; `None` = `<data_dir>/key`.
    pub encryption_key_file: Option<PathBuf>,
    /// A session ends after this long without a request.
    pub session_idle_timeout: Duration,
    /// A session ends this long after sign-in, whatever the activity.
    pub session_absolute_timeout: Duration,
    /// Concurrent Mattermost requests during one user's sync.
    pub sync_concurrency: usize,
    /// Requests per second to Mattermost, shared by all users (Mattermost limits per client IP).
    pub mattermost_rate_limit: f64,
    /// Burst allowed above the rate.
    pub mattermost_rate_burst: u32,
    /// `THREADDESK_*` environment variables that matched no setting (for a warning at start).
    pub ignored_env: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mattermost_url: None,
            public_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            retention_days: 14,
            log: "info".to_owned(),
            sign_in_methods: vec![SignInMethod::OAuth, SignInMethod::PersonalAccessToken],
            oauth_client_id: None,
            oauth_client_secret: None,
            encryption_key_file: None,
            session_idle_timeout: Duration::from_secs(7 * 24 * 3600),
            session_absolute_timeout: Duration::from_secs(30 * 24 * 3600),
            sync_concurrency: 4,
            mattermost_rate_limit: 10.0,
            mattermost_rate_burst: 100,
            ignored_env: Vec::new(),
        }
    }
}

/// One setting: its file key, help line and example value (TOML syntax).
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    pub help: &'static str,
    pub example: &'static str,
    /// Shown uncommented in the example (a required setting).
    pub required: bool,
}

impl Setting {
    /// `THREADDESK_<KEY>`.
    #[must_use]
    pub fn env(&self) -> String {
        env_name(self.key)
    }
}

fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// Every setting, in the order of the example file.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "mattermost_url",
        help: "Base URL of your Mattermost server (http or https; a subpath such as /chat is allowed). Required.",
        example: "\"https://mattermost.example.com\"",
        required: true,
    },
    Setting {
        key: "public_url",
        help: "ThreadDesk's own external URL, used for the OAuth callback; https turns on Secure cookies.",
        example: "\"https://threaddesk.example.com\"",
        required: false,
    },
    Setting {
        key: "listen",
        help: "Address and port to listen on.",
        example: "\"127.0.0.1:8080\"",
        required: false,
    },
    Setting {
        key: "data_dir",
        help: "Directory for the cache database (threaddesk.db) and the key file.",
        example: "\"data\"",
        required: false,
    },
    Setting {
        key: "retention_days",
        help: "Days of messages kept in the cache, 7 to 14. Older data is purged.",
        example: "14",
        required: false,
    },
    Setting {
        key: "log",
        help: "Log filter (tracing EnvFilter syntax): error, warn, info, debug, trace, or e.g. \"threaddesk=debug,info\". Logs never contain message text or tokens.",
        example: "\"info\"",
        required: false,
    },
    Setting {
        key: "sign_in_methods",
        help: "Sign-in methods offered: \"oauth\" and/or \"token\" (personal access token). In the environment: comma-separated.",
        example: "[\"oauth\", \"token\"]",
        required: false,
    },
    Setting {
        key: "oauth_client_id",
        help: "Client id of the OAuth app registered in Mattermost (System Console > Integrations > OAuth 2.0 Applications).",
        example: "\"abcdefghijklmnopqrstuvwxyz\"",
        required: false,
    },
    Setting {
        key: "oauth_client_secret",
        help: "Client secret of that OAuth app. Prefer oauth_client_secret_file.",
        example: "\"…\"",
        required: false,
    },
    Setting {
        key: "oauth_client_secret_file",
        help: "File whose content is the OAuth client secret (trailing newline ignored).",
        example: "\"/run/secrets/threaddesk_oauth\"",
        required: false,
    },
    Setting {
        key: "encryption_key_file",
        help: "File holding the key that encrypts stored tokens; created with mode 0600 if missing. Default: <data_dir>/key.",
        example: "\"data/key\"",
        required: false,
    },
    Setting {
        key: "session_idle_timeout",
        help: "Sign a browser out after this long without activity (s, m, h or d suffix; plain number = seconds).",
        example: "\"7d\"",
        required: false,
    },
    Setting {
        key: "session_absolute_timeout",
        help: "Sign a browser out this long after sign-in, whatever the activity.",
        example: "\"30d\"",
        required: false,
    },
    Setting {
        key: "sync_concurrency",
        help: "Concurrent Mattermost requests while syncing one user (1 to 64).",
        example: "4",
        required: false,
    },
    Setting {
        key: "mattermost_rate_limit",
        help: "Requests per second to Mattermost, shared by all users (Mattermost rate-limits per client IP, and all ThreadDesk users share one).",
        example: "10.0",
        required: false,
    },
    Setting {
        key: "mattermost_rate_burst",
        help: "Requests allowed in a burst above that rate.",
        example: "100",
        required: false,
    },
];

/// A configuration error; the message names the setting and where to set it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML (the message gives line and column, not content).
    #[error("config file {path} is not valid TOML at line {line}, column {column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A key in the file matches no setting.
    #[error(
        "unknown setting `{key}` in config file {path}; run `threaddesk config example` to list the settings"
    )]
    UnknownKey { key: String, path: PathBuf },
    /// A value is invalid.
    #[error("{message}; set {env} or {key} in the config file")]
    Invalid {
        key: &'static str,
        env: String,
        message: String,
    },
    /// A secret file could not be read.
    #[error("cannot read {key} file {path}: {source}; set {env} or {key} in the config file")]
    SecretFile {
        key: &'static str,
        env: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        env: env_name(key),
        message: message.into(),
    }
}

/// A raw value before typing: from TOML, or a string from the environment / a flag.
#[derive(Debug, Clone)]
enum Raw {
    Toml(toml::Value),
    Str(String),
}

impl Raw {
    fn describe(&self) -> String {
        match self {
            Self::Toml(v) => toml_describe(v),
            Self::Str(s) => format!("{s:?}"),
        }
    }

    fn string(&self, key: &'static str) -> Result<String, ConfigError> {
        match self {
            Self::Str(s) | Self::Toml(toml::Value::String(s)) => Ok(s.trim().to_owned()),
            Self::Toml(_) => Err(invalid(
                key,
                format!("{key} must be a string (got {})", self.describe()),
            )),
        }
    }

    fn integer(&self, key: &'static str) -> Result<i64, ConfigError> {
        match self {
            Self::Toml(toml::Value::Integer(i)) => Ok(*i),
            Self::Str(s) => s.trim().parse::<i64>().map_err(|_| {
                invalid(
                    key,
                    format!("{key} must be a whole number (got {})", self.describe()),
                )
            }),
            Self::Toml(_) => Err(invalid(
                key,
                format!("{key} must be a whole number (got {})", self.describe()),
            )),
        }
    }

    fn float(&self, key: &'static str) -> Result<f64, ConfigError> {
        match self {
            Self::Toml(toml::Value::Float(f)) => Ok(*f),
            #[allow(clippy::cast_precision_loss)]
            Self::Toml(toml::Value::Integer(i)) => Ok(*i as f64),
            Self::Str(s) => s.trim().parse::<f64>().map_err(|_| {
                invalid(
                    key,
                    format!("{key} must be a number (got {})", self.describe()),
                )
            }),
            Self::Toml(_) => Err(invalid(
                key,
                format!("{key} must be a number (got {})", self.describe()),
            )),
        }
    }

    fn list(&self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        match self {
            Self::Str(s) => Ok(s
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()),
            Self::Toml(toml::Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.trim().to_owned()),
                    other => Err(invalid(
                        key,
                        format!(
                            "{key} must be a list of strings (got {})",
                            toml_describe(other)
                        ),
                    )),
                })
                .collect(),
            Self::Toml(_) => Err(invalid(
                key,
                format!("{key} must be a list of strings (got {})", self.describe()),
            )),
        }
    }
}

fn toml_describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(_) => "a date".to_owned(),
        toml::Value::Array(_) => "a list".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

fn in_range<T: PartialOrd + fmt::Display + Copy>(
    key: &'static str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, ConfigError> {
    if v < lo || v > hi {
        return Err(invalid(
            key,
            format!("{key} must be between {lo} and {hi} (got {v})"),
        ));
    }
    Ok(v)
}

/// Parses a Mattermost base URL: http(s), a host, no credentials, query or fragment, and a path
/// that is at most a subpath (not an API path). The trailing slash is removed.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_base_url(key: &'static str, s: &str) -> Result<Url, ConfigError> {
    let bad = |why: &str| invalid(key, format!("{key} {why} (got {s:?})"));
    let mut url = Url::parse(s.trim()).map_err(|e| bad(&format!("is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not contain a query (?) or fragment (#)"));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    if path
        .split('/')
        .any(|seg| seg == "api" || seg == "." || seg == "..")
        || path.contains("//")
    {
        return Err(bad(
            "must be the server's base URL, with at most a subpath such as /chat (no /api/v4)",
        ));
    }
    url.set_path(&path);
    Ok(url)
}

/// Parses a duration: a whole number of seconds, or a number with `s`, `m`, `h` or `d`.
///
/// # Errors
/// A message naming the setting.
pub fn parse_duration(key: &'static str, s: &str) -> Result<Duration, ConfigError> {
    let t = s.trim();
    let bad = || {
        invalid(
            key,
            format!("{key} must be a duration such as 90s, 30m, 12h or 7d (got {s:?})"),
        )
    };
    let (num, mult) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1),
        Some((i, 'm')) => (&t[..i], 60),
        Some((i, 'h')) => (&t[..i], 3600),
        Some((i, 'd')) => (&t[..i], 86_400),
        Some(_) => (t, 1),
        None => return Err(bad()),
    };
    let n: u64 = num.trim().parse().map_err(|_| bad())?;
    n.checked_mul(mult).map(Duration::from_secs).ok_or_else(bad)
}

fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn both_secrets() -> ConfigError {
    invalid(
        "oauth_client_secret",
        "set only one of oauth_client_secret and oauth_client_secret_file",
    )
}

fn read_secret_file(key: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        key,
        env: env_name(key),
        path: path.to_owned(),
        source,
    })?;
    let s = text.trim_end_matches(['\r', '\n']).to_owned();
    if s.is_empty() {
        return Err(invalid(
            key,
            format!("{key} points to an empty file ({})", path.display()),
        ));
    }
    Ok(Secret(s))
}

impl Config {
    /// Loads defaults, then the file (`file`, else `THREADDESK_CONFIG` from `env`, else none),
    /// then `THREADDESK_*` variables from `env`, and validates the result.
    /// Pass `std::env::vars()` in the binary and a fixed list in tests.
    ///
    /// # Errors
    /// The first invalid setting, unreadable or malformed file, or unknown key in the file.
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = env.filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        let mut cfg = Self::default();
        let file_path = file.map(Path::to_path_buf).or_else(|| {
            env.iter()
                .find(|(k, v)| k == CONFIG_ENV && !v.trim().is_empty())
                .map(|(_, v)| PathBuf::from(v.trim()))
        });
        if let Some(path) = file_path {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadFile {
                path: path.clone(),
                source,
            })?;
            cfg.apply_toml(&path, &text)?;
        }
        let mut env = env;
        env.sort();
        let has = |k: &str| env.iter().any(|(n, _)| n == &env_name(k));
        if has("oauth_client_secret") && has("oauth_client_secret_file") {
            return Err(both_secrets());
        }
        for (name, value) in env {
            if name == CONFIG_ENV {
                continue;
            }
            let suffix = &name[ENV_PREFIX.len()..];
            match SETTINGS.iter().find(|s| s.key.eq_ignore_ascii_case(suffix)) {
                Some(s) if suffix.bytes().all(|b| !b.is_ascii_lowercase()) => {
                    cfg.apply(s.key, &Raw::Str(value))?;
                }
                _ => cfg.ignored_env.push(name),
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_toml(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let (line, column) = e.span().map_or((0, 0), |sp| line_col(text, sp.start));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        if table.contains_key("oauth_client_secret")
            && table.contains_key("oauth_client_secret_file")
        {
            return Err(both_secrets());
        }
        for (key, value) in table {
            let Some(s) = SETTINGS.iter().find(|s| s.key == key) else {
                return Err(ConfigError::UnknownKey {
                    key,
                    path: path.to_owned(),
                });
            };
            self.apply(s.key, &Raw::Toml(value))?;
        }
        Ok(())
    }

    /// Sets one setting from its string form, as a flag would (`key` as in the file).
    ///
    /// # Errors
    /// Unknown key, or an invalid value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let Some(s) = SETTINGS.iter().find(|s| s.key == key) else {
            return Err(ConfigError::UnknownKey {
                key: key.to_owned(),
                path: PathBuf::from("(command line)"),
            });
        };
        self.apply(s.key, &Raw::Str(value.to_owned()))?;
        self.validate()
    }

    /// Sets the Mattermost URL.
    ///
    /// # Errors
    /// Not an http(s) base URL.
    pub fn set_mattermost_url(&mut self, url: &str) -> Result<(), ConfigError> {
        self.set("mattermost_url", url)
    }

    /// Sets ThreadDesk's public URL.
    ///
    /// # Errors
    /// Not an http(s) base URL.
    pub fn set_public_url(&mut self, url: &str) -> Result<(), ConfigError> {
        self.set("public_url", url)
    }

    /// Sets the listen address.
    pub fn set_listen(&mut self, addr: SocketAddr) {
        self.listen = addr;
    }

    /// Sets the data directory.
    pub fn set_data_dir(&mut self, dir: impl Into<PathBuf>) {
        self.data_dir = dir.into();
    }

    /// Sets the retention.
    ///
    /// # Errors
    /// Outside 7..=14.
    pub fn set_retention_days(&mut self, days: u32) -> Result<(), ConfigError> {
        self.retention_days = in_range("retention_days", days, 7, 14)?;
        Ok(())
    }

    /// Sets the log filter.
    ///
    /// # Errors
    /// Not a valid filter.
    pub fn set_log(&mut self, filter: &str) -> Result<(), ConfigError> {
        self.set("log", filter)
    }

    #[allow(clippy::too_many_lines)]
    fn apply(&mut self, key: &'static str, raw: &Raw) -> Result<(), ConfigError> {
        match key {
            "mattermost_url" => self.mattermost_url = Some(parse_base_url(key, &raw.string(key)?)?),
            "public_url" => self.public_url = Some(parse_base_url(key, &raw.string(key)?)?),
            "listen" => {
                let s = raw.string(key)?;
                self.listen = s.parse().map_err(|_| {
                    invalid(key, format!("{key} must be an address and port such as 127.0.0.1:8080 or [::]:8080 (got {s:?})"))
                })?;
            }
            "data_dir" => {
                let s = raw.string(key)?;
                if s.is_empty() {
                    return Err(invalid(key, format!("{key} must not be empty")));
                }
                self.data_dir = PathBuf::from(s);
            }
            "retention_days" => {
                let v = raw.integer(key)?;
                self.retention_days = u32::try_from(in_range(key, v, 7, 14)?).unwrap_or(14);
            }
            "log" => {
                let s = raw.string(key)?;
                tracing_subscriber::EnvFilter::try_new(&s).map_err(|e| {
                    invalid(
                        key,
                        format!("{key} is not a valid log filter ({e}) (got {s:?})"),
                    )
                })?;
                self.log = s;
            }
            "sign_in_methods" => {
                let mut methods = Vec::new();
                for m in raw.list(key)? {
                    let method = match m.to_ascii_lowercase().as_str() {
                        "oauth" => SignInMethod::OAuth,
                        "token" | "pat" | "personal_access_token" => {
                            SignInMethod::PersonalAccessToken
                        }
                        _ => {
                            return Err(invalid(
                                key,
                                format!("{key} accepts \"oauth\" and \"token\" (got {m:?})"),
                            ));
                        }
                    };
                    if !methods.contains(&method) {
                        methods.push(method);
                    }
                }
                if methods.is_empty() {
                    return Err(invalid(
                        key,
                        format!("{key} must offer at least one of \"oauth\", \"token\""),
                    ));
                }
                self.sign_in_methods = methods;
            }
            "oauth_client_id" => {
                let s = raw.string(key)?;
                if s.is_empty()
                    || s.len() > 128
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(invalid(
                        key,
                        format!(
                            "{key} must be the app's client id (letters and digits) (got {s:?})"
                        ),
                    ));
                }
                self.oauth_client_id = Some(s);
            }
            "oauth_client_secret" => {
                // Never echo the value in an error.
                let s = match raw {
                    Raw::Str(s) | Raw::Toml(toml::Value::String(s)) => s.trim().to_owned(),
                    Raw::Toml(_) => return Err(invalid(key, format!("{key} must be a string"))),
                };
                if s.is_empty() {
                    return Err(invalid(key, format!("{key} must not be empty")));
                }
                self.oauth_client_secret = Some(Secret(s));
            }
            "oauth_client_secret_file" => {
                let path = PathBuf::from(raw.string(key)?);
                self.oauth_client_secret = Some(read_secret_file(key, &path)?);
            }
            "encryption_key_file" => {
                let s = raw.string(key)?;
                if s.is_empty() {
                    return Err(invalid(key, format!("{key} must not be empty")));
                }
                self.encryption_key_file = Some(PathBuf::from(s));
            }
            "session_idle_timeout" | "session_absolute_timeout" => {
                let d = match raw {
                    Raw::Toml(toml::Value::Integer(i)) => {
                        Duration::from_secs(u64::try_from(*i).map_err(|_| {
                            invalid(key, format!("{key} must not be negative (got {i})"))
                        })?)
                    }
                    _ => parse_duration(key, &raw.string(key)?)?,
                };
                if d < Duration::from_secs(60) || d > Duration::from_secs(366 * 86_400) {
                    return Err(invalid(
                        key,
                        format!(
                            "{key} must be between 1m and 366d (got {})",
                            format_duration(d)
                        ),
                    ));
                }
                if key == "session_idle_timeout" {
                    self.session_idle_timeout = d;
                } else {
                    self.session_absolute_timeout = d;
                }
            }
            "sync_concurrency" => {
                let v = in_range(key, raw.integer(key)?, 1, 64)?;
                self.sync_concurrency = usize::try_from(v).unwrap_or(4);
            }
            "mattermost_rate_limit" => {
                let v = raw.float(key)?;
                if !v.is_finite() || v <= 0.0 || v > 10_000.0 {
                    return Err(invalid(
                        key,
                        format!(
                            "{key} must be a number of requests per second above 0 and at most 10000 (got {v})"
                        ),
                    ));
                }
                self.mattermost_rate_limit = v;
            }
            "mattermost_rate_burst" => {
                let v = in_range(key, raw.integer(key)?, 1, 100_000)?;
                self.mattermost_rate_burst = u32::try_from(v).unwrap_or(100);
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.to_owned(),
                    path: PathBuf::from("(built-in)"),
                });
            }
        }
        Ok(())
    }

    /// Checks rules between settings (those not tied to one value).
    ///
    /// # Errors
    /// The first broken rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("retention_days", self.retention_days, 7, 14)?;
        if self.session_idle_timeout > self.session_absolute_timeout {
            return Err(invalid(
                "session_idle_timeout",
                format!(
                    "session_idle_timeout ({}) must not be longer than session_absolute_timeout ({})",
                    format_duration(self.session_idle_timeout),
                    format_duration(self.session_absolute_timeout)
                ),
            ));
        }
        Ok(())
    }

    /// Checks what `serve` needs on top of [`Config::validate`]: a Mattermost URL, and for OAuth a
    /// client id and a public URL.
    ///
    /// # Errors
    /// The first missing setting.
    pub fn validate_for_serve(&self) -> Result<(), ConfigError> {
        self.validate()?;
        if self.mattermost_url.is_none() {
            return Err(invalid(
                "mattermost_url",
                "mattermost_url is required to serve",
            ));
        }
        if self.sign_in_methods.contains(&SignInMethod::OAuth) {
            if self.oauth_client_id.is_none() {
                return Err(invalid(
                    "oauth_client_id",
                    "oauth_client_id is required when sign_in_methods includes \"oauth\" (or remove \"oauth\" from sign_in_methods)",
                ));
            }
            if self.public_url.is_none() {
                return Err(invalid(
                    "public_url",
                    "public_url is required when sign_in_methods includes \"oauth\" (it forms the OAuth callback URL)",
                ));
            }
        }
        Ok(())
    }

    /// The key file: `encryption_key_file`, else `<data_dir>/key`.
    #[must_use]
    pub fn key_file(&self) -> PathBuf {
        self.encryption_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("key"))
    }

    /// The database file: `<data_dir>/threaddesk.db`.
    #[must_use]
    pub fn database_file(&self) -> PathBuf {
        self.data_dir.join("threaddesk.db")
    }

    /// Whether cookies get the Secure flag (public URL is https).
    #[must_use]
    pub fn cookie_secure(&self) -> bool {
        self.public_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https")
    }

    /// Retention window in milliseconds.
    #[must_use]
    pub fn retention_ms(&self) -> i64 {
        i64::from(self.retention_days) * 86_400_000
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A commented example config file (for `threaddesk config example`), listing every setting
/// with its environment variable.
#[must_use]
pub fn example() -> String {
    let mut out = String::from(
        "# ThreadDesk configuration (TOML).\n\
         # Pass it with --config PATH or THREADDESK_CONFIG=PATH. Every setting can also be given as an\n\
         # environment variable THREADDESK_<NAME IN CAPITALS>, which overrides the file; flags override both.\n\
         # Secrets can be read from files: *_FILE variables or the oauth_client_secret_file setting.\n",
    );
    for s in SETTINGS {
        out.push('\n');
        out.push_str(&format!("# {}\n# env: {}\n", s.help, s.env()));
        let prefix = if s.required { "" } else { "# " };
        out.push_str(&format!("{prefix}{} = {}\n", s.key, s.example));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn load_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(None, env(pairs))
    }

    fn load_file(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(Some(&p), env(&[]))
    }

    #[test]
    fn defaults() {
        let c = load_env(&[]).unwrap();
        assert_eq!(c.retention_days, 14);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.key_file(), PathBuf::from("data/key"));
        assert_eq!(c.database_file(), PathBuf::from("data/threaddesk.db"));
        assert!(!c.cookie_secure());
        assert_eq!(c.retention_ms(), 14 * 86_400_000);
        assert!(c.validate_for_serve().is_err());
    }

    #[test]
    fn retention_message_names_the_setting() {
        let e = load_env(&[("THREADDESK_RETENTION_DAYS", "30")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "retention_days must be between 7 and 14 (got 30); set THREADDESK_RETENTION_DAYS or retention_days in the config file"
        );
        let e = load_file("retention_days = 6").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("retention_days must be between 7 and 14 (got 6)")
        );
    }

    #[test]
    fn env_validation_table() {
        // (var, value, Some(substring of error) | None = ok)
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("THREADDESK_RETENTION_DAYS", "7", None),
            ("THREADDESK_RETENTION_DAYS", "14", None),
            (
                "THREADDESK_RETENTION_DAYS",
                "abc",
                Some("retention_days must be a whole number"),
            ),
            ("THREADDESK_RETENTION_DAYS", "-1", Some("between 7 and 14")),
            (
                "THREADDESK_RETENTION_DAYS",
                "99999999999999999999",
                Some("whole number"),
            ),
            ("THREADDESK_MATTERMOST_URL", "https://mm.example.com/", None),
            (
                "THREADDESK_MATTERMOST_URL",
                "http://mm.local:8065/chat",
                None,
            ),
            (
                "THREADDESK_MATTERMOST_URL",
                "ftp://mm.example.com",
                Some("http:// or https://"),
            ),
            (
                "THREADDESK_MATTERMOST_URL",
                "mm.example.com",
                Some("not a valid URL"),
            ),
            (
                "THREADDESK_MATTERMOST_URL",
                "https://mm.example.com/api/v4",
                Some("base URL"),
            ),
            (
                "THREADDESK_MATTERMOST_URL",
                "https://u:p@mm.example.com",
                Some("user name or password"),
            ),
            (
                "THREADDESK_MATTERMOST_URL",
                "https://mm.example.com/?x=1",
                Some("query"),
            ),
            (
                "THREADDESK_MATTERMOST_URL",
                "https://mm.example.com/#f",
                Some("fragment"),
            ),
            ("THREADDESK_MATTERMOST_URL", "", Some("not a valid URL")),
            ("THREADDESK_PUBLIC_URL", "https://td.example.com", None),
            (
                "THREADDESK_PUBLIC_URL",
                "javascript:alert(1)",
                Some("http:// or https://"),
            ),
            ("THREADDESK_LISTEN", "0.0.0.0:80", None),
            ("THREADDESK_LISTEN", "[::]:8080", None),
            ("THREADDESK_LISTEN", "localhost", Some("address and port")),
            ("THREADDESK_DATA_DIR", "", Some("must not be empty")),
            ("THREADDESK_LOG", "threaddesk=debug,info", None),
            ("THREADDESK_LOG", "trace", None),
            ("THREADDESK_LOG", "[[[", Some("not a valid log filter")),
            ("THREADDESK_SIGN_IN_METHODS", "token", None),
            ("THREADDESK_SIGN_IN_METHODS", "oauth, token", None),
            (
                "THREADDESK_SIGN_IN_METHODS",
                "password",
                Some("accepts \"oauth\" and \"token\""),
            ),
            ("THREADDESK_SIGN_IN_METHODS", " , ", Some("at least one")),
            ("THREADDESK_OAUTH_CLIENT_ID", "abc123", None),
            ("THREADDESK_OAUTH_CLIENT_ID", "a b", Some("client id")),
            (
                "THREADDESK_OAUTH_CLIENT_SECRET",
                "",
                Some("must not be empty"),
            ),
            (
                "THREADDESK_OAUTH_CLIENT_SECRET_FILE",
                "/nonexistent/secret",
                Some("cannot read oauth_client_secret_file"),
            ),
            ("THREADDESK_ENCRYPTION_KEY_FILE", "/k", None),
            ("THREADDESK_SESSION_IDLE_TIMEOUT", "12h", None),
            ("THREADDESK_SESSION_IDLE_TIMEOUT", "3600", None),
            (
                "THREADDESK_SESSION_IDLE_TIMEOUT",
                "10s",
                Some("between 1m and 366d"),
            ),
            (
                "THREADDESK_SESSION_IDLE_TIMEOUT",
                "7x",
                Some("must be a duration"),
            ),
            (
                "THREADDESK_SESSION_IDLE_TIMEOUT",
                "99999999999999999999d",
                Some("must be a duration"),
            ),
            (
                "THREADDESK_SESSION_IDLE_TIMEOUT",
                "60d",
                Some("must not be longer than session_absolute_timeout"),
            ),
            (
                "THREADDESK_SESSION_ABSOLUTE_TIMEOUT",
                "1d",
                Some("must not be longer"),
            ),
            ("THREADDESK_SYNC_CONCURRENCY", "8", None),
            ("THREADDESK_SYNC_CONCURRENCY", "0", Some("between 1 and 64")),
            (
                "THREADDESK_SYNC_CONCURRENCY",
                "65",
                Some("between 1 and 64"),
            ),
            ("THREADDESK_MATTERMOST_RATE_LIMIT", "2.5", None),
            ("THREADDESK_MATTERMOST_RATE_LIMIT", "0", Some("above 0")),
            ("THREADDESK_MATTERMOST_RATE_LIMIT", "NaN", Some("above 0")),
            (
                "THREADDESK_MATTERMOST_RATE_LIMIT",
                "fast",
                Some("must be a number"),
            ),
            (
                "THREADDESK_MATTERMOST_RATE_BURST",
                "0",
                Some("between 1 and 100000"),
            ),
        ];
        for (var, value, want) in cases {
            let got = load_env(&[(var, value)]);
            match (want, got) {
                (None, Ok(_)) => {}
                (Some(sub), Err(e)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(sub), "{var}={value:?}: {msg}");
                    if let ConfigError::Invalid { env, .. } = &e {
                        assert!(msg.contains(env.as_str()), "{msg}");
                    }
                }
                (want, got) => panic!("{var}={value:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn file_validation_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("retention_days = 10\nlisten = \"0.0.0.0:9000\"", None),
            ("retention_days = \"10\"", Some("whole number")),
            ("retention_days = 1.5", Some("whole number")),
            ("mattermost_url = 5", Some("must be a string")),
            ("sign_in_methods = \"oauth\"", Some("list of strings")),
            ("sign_in_methods = [1]", Some("list of strings")),
            ("sign_in_methods = []", Some("at least one")),
            ("session_idle_timeout = 3600", None),
            ("session_idle_timeout = -5", Some("must not be negative")),
            ("mattermost_rate_limit = 5", None),
            ("mattermost_rate_limit = true", Some("must be a number")),
            ("oauth_client_secret = 7", Some("must be a string")),
            ("bogus_key = 1", Some("unknown setting `bogus_key`")),
            ("[section]\nx = 1", Some("unknown setting `section`")),
            ("retention_days = ", Some("not valid TOML at line 1")),
            ("a = \"unterminated", Some("not valid TOML")),
            (
                "\n\nretention_days = 10\nretention_days = 11",
                Some("not valid TOML at line 4"),
            ),
            ("\u{0}\u{ff}", Some("not valid TOML")),
        ];
        for (text, want) in cases {
            match (want, load_file(text)) {
                (None, Ok(_)) => {}
                (Some(sub), Err(e)) => assert!(e.to_string().contains(sub), "{text:?}: {e}"),
                (want, got) => panic!("{text:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn layering_env_over_file_and_setters_over_env() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "retention_days = 8\ndata_dir = \"/srv/td\"\nlog = \"warn\"\n",
        )
        .unwrap();
        let mut c = Config::load(
            None,
            env(&[
                ("THREADDESK_CONFIG", p.to_str().unwrap()),
                ("THREADDESK_RETENTION_DAYS", "9"),
                ("THREADDESK_NOT_A_SETTING", "x"),
                ("OTHER", "y"),
            ]),
        )
        .unwrap();
        assert_eq!(c.retention_days, 9);
        assert_eq!(c.data_dir, PathBuf::from("/srv/td"));
        assert_eq!(c.log, "warn");
        assert_eq!(c.ignored_env, vec!["THREADDESK_NOT_A_SETTING".to_owned()]);
        c.set_retention_days(7).unwrap();
        assert!(c.set_retention_days(15).is_err());
        c.set_log("debug").unwrap();
        c.set_mattermost_url("https://mm.example.com/chat/")
            .unwrap();
        assert_eq!(
            c.mattermost_url.as_ref().unwrap().as_str(),
            "https://mm.example.com/chat"
        );
        c.set_public_url("https://td.example.com").unwrap();
        assert!(c.cookie_secure());
        assert!(c.set("nope", "1").is_err());
        assert!(
            c.validate_for_serve()
                .unwrap_err()
                .to_string()
                .contains("oauth_client_id")
        );
        c.set("sign_in_methods", "token").unwrap();
        c.validate_for_serve().unwrap();
        c.set_data_dir("/x");
        assert_eq!(c.key_file(), PathBuf::from("/x/key"));
        // explicit file argument wins over THREADDESK_CONFIG; missing file is an error
        let e = Config::load(Some(Path::new("/nonexistent.toml")), env(&[])).unwrap_err();
        assert!(e.to_string().contains("cannot read config file"));
    }

    #[test]
    fn secret_and_secret_file_together_are_refused() {
        let e = load_env(&[
            ("THREADDESK_OAUTH_CLIENT_SECRET", "a"),
            ("THREADDESK_OAUTH_CLIENT_SECRET_FILE", "/x"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("set only one of"), "{e}");
        let e = load_file("oauth_client_secret = \"a\"\noauth_client_secret_file = \"/x\"")
            .unwrap_err();
        assert!(e.to_string().contains("set only one of"), "{e}");
    }

    #[test]
    fn secrets_are_redacted_and_read_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        std::fs::write(&p, "s3cr3t-canary\n").unwrap();
        let c = load_env(&[("THREADDESK_OAUTH_CLIENT_SECRET_FILE", p.to_str().unwrap())]).unwrap();
        assert_eq!(
            c.oauth_client_secret.as_ref().unwrap().expose(),
            "s3cr3t-canary"
        );
        assert!(!format!("{c:?}").contains("canary"));
        std::fs::write(&p, "\n").unwrap();
        assert!(load_env(&[("THREADDESK_OAUTH_CLIENT_SECRET_FILE", p.to_str().unwrap())]).is_err());
        // a bad TOML line holding a secret is not echoed
        let e = load_file("oauth_client_secret = \"canary-xyz\" junk").unwrap_err();
        assert!(!e.to_string().contains("canary-xyz"), "{e}");
        let c = load_env(&[("THREADDESK_OAUTH_CLIENT_SECRET", "canary2")]).unwrap();
        assert!(!format!("{c:?}").contains("canary2"));
    }

    #[test]
    fn example_parses_and_lists_every_setting() {
        let ex = example();
        for s in SETTINGS {
            assert!(ex.contains(&s.env()), "{}", s.key);
            assert!(ex.contains(&format!("{} = ", s.key)), "{}", s.key);
        }
        // Uncommented lines form a valid config.
        let c = load_file(&ex).unwrap();
        assert_eq!(
            c.mattermost_url.unwrap().as_str(),
            "https://mattermost.example.com/"
        );
        // Every commented example is valid on its own (except the file-reading one).
        for s in SETTINGS
            .iter()
            .filter(|s| s.key != "oauth_client_secret_file")
        {
            let text = format!("{} = {}", s.key, s.example);
            assert!(load_file(&text).is_ok(), "{text}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("x", "90s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("x", "30m").unwrap(),
            Duration::from_secs(1800)
        );
        assert_eq!(
            parse_duration("x", "2d").unwrap(),
            Duration::from_secs(172_800)
        );
        for bad in ["", "d", "-1h", "1.5h", "h1", "é"] {
            assert!(parse_duration("x", bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
    }

    proptest::proptest! {
        #[test]
        fn prop_env_values_never_panic(idx in 0usize..SETTINGS.len(), value in ".{0,40}") {
            let var = SETTINGS[idx].env();
            let _ = load_env(&[(var.as_str(), value.as_str())]);
        }

        #[test]
        fn prop_file_never_panics(text in ".{0,80}") {
            let _ = load_file(&text);
        }
    }
}
