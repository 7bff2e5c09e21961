//! Serde plumbing shared by the OpenAI and Anthropic wire types.
//!
//! Both APIs grow new content-block and event types over time. A gateway must
//! pass the ones it does not understand through untouched, yet reject a
//! malformed instance of a type it *does* understand with a precise message.
//! serde's own `#[serde(untagged)]` fallback variant cannot do the latter: a
//! `tool_use` block missing its `id` would silently become "other". The
//! helpers here dispatch on the `type` tag first and only then deserialize.

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde_json::{Map, Value};

/// Fields a wire type does not model, kept so they pass through unchanged.
pub type Extra = Map<String, Value>;

/// Deserializes a `{"type": ...}` object strictly as the mirror enum `K` when
/// its tag is in `known`, and hands any other tag to `other` untouched.
pub(crate) fn deserialize_tagged<'de, D, K, T>(
    deserializer: D,
    known: &[&str],
    what: &str,
    other: impl FnOnce(Value) -> T,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    K: DeserializeOwned + Into<T>,
{
    let value = Value::deserialize(deserializer)?;
    let Some(tag) = value.get("type").and_then(Value::as_str) else {
        return Err(D::Error::custom(format_args!(
            "{what} must be an object with a string `type` field"
        )));
    };
    if !known.contains(&tag) {
        return Ok(other(value));
    }
    let tag = tag.to_owned();
    K::deserialize(value)
        .map(Into::into)
        .map_err(|e| D::Error::custom(format_args!("invalid `{tag}` {what}: {e}")))
}

/// The two shapes a "string or list" field can take before its list elements
/// are decoded.
pub(crate) enum TextOrList {
    /// A plain JSON string.
    Text(String),
    /// A JSON array, elements not yet decoded.
    List(Vec<Value>),
}

/// Reads a field that is either a string or an array, with an error that
/// names the field instead of serde's "did not match any variant".
pub(crate) fn text_or_list<'de, D: Deserializer<'de>>(
    deserializer: D,
    what: &str,
) -> Result<TextOrList, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(text) => Ok(TextOrList::Text(text)),
        Value::Array(items) => Ok(TextOrList::List(items)),
        other => Err(D::Error::custom(format_args!(
            "{what} must be a string or an array, got {}",
            json_kind(&other)
        ))),
    }
}

/// Decodes array elements one at a time so an error names the failing index.
pub(crate) fn from_list<T: DeserializeOwned, E: serde::de::Error>(
    items: Vec<Value>,
    what: &str,
) -> Result<Vec<T>, E> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value(item).map_err(|e| E::custom(format_args!("{what}[{i}]: {e}")))
        })
        .collect()
}

/// A human word for a JSON value's kind, for error messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
