//! Serde helpers for the server's quirks: `null` where a list or map is expected, and
//! "string JSON" (a JSON document inside a JSON string, research §0 trap 22).

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

/// Deserialize `null` (or a missing field, together with `#[serde(default)]`) as `T::default()`.
///
/// Used for lists and maps the server sends as `null` when empty (e.g. `participants`,
/// `threads` with `totalsOnly`, `props` of id-only users; research §0 traps 10, 11, 13).
pub(crate) fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Deserialize a value that the server sends as string JSON (`"{\"id\": …}"`), while also
/// accepting the value itself (some events, e.g. `user_updated`, send plain objects).
pub(crate) fn string_json<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    from_string_json(value).map_err(|e| D::Error::custom(crate::error::describe_json_error(&e)))
}

/// Like [`string_json`] but `null`, a missing field or `""` give `T::default()`.
pub(crate) fn string_json_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    match &value {
        serde_json::Value::Null => Ok(T::default()),
        serde_json::Value::String(s) if s.is_empty() => Ok(T::default()),
        _ => from_string_json(value)
            .map_err(|e| D::Error::custom(crate::error::describe_json_error(&e))),
    }
}

/// Parse a JSON value that may be string JSON.
pub(crate) fn from_string_json<T: DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, serde_json::Error> {
    match value {
        serde_json::Value::String(s) => serde_json::from_str(&s),
        other => serde_json::from_value(other),
    }
}
