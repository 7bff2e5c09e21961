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
///
/// `K` is *externally* tagged: the object is handed to it as
/// `{"<tag>": {<the other fields>}}`. serde buffers an internally tagged
/// enum's content, which loses the path of a failing field; this way the
/// error names it (`usage.output_tokens`).
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
    let Value::Object(mut fields) = value else {
        return Err(D::Error::custom(format_args!(
            "{what} must be an object with a string `type` field"
        )));
    };
    fields.remove("type");
    let mut tagged = Map::new();
    tagged.insert(tag.clone(), Value::Object(fields));
    // Through `serde_path_to_error`: the message names the failing field
    // inside the object (`usage.output_tokens`), not just the object.
    serde_path_to_error::deserialize::<_, K>(Value::Object(tagged))
        .map(Into::into)
        .map_err(|e| {
            // The first segment is the tag, already named.
            let path = e.path().to_string();
            let path = path
                .strip_prefix(tag.as_str())
                .map_or(path.as_str(), |p| p.trim_start_matches('.'))
                .to_string();
            let e = e.into_inner();
            if path.is_empty() || path == "." {
                D::Error::custom(format_args!("invalid `{tag}` {what}: {e}"))
            } else {
                D::Error::custom(format_args!("invalid `{tag}` {what} at `{path}`: {e}"))
            }
        })
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

// ---------------------------------------------------------------------------
// Tolerant reading of upstream answers
// ---------------------------------------------------------------------------
//
// OpenAI-compatible servers differ in how they say "nothing": absent, `null`,
// `[]` or `""`. The official SDKs accept all of them, so the answer types
// read every optional field through these helpers. They are for fields of
// *answers* read from upstreams; what Pointsman writes stays strict.

/// The most tokens one count may claim. Anything above is a broken or
/// hostile upstream; capping keeps sums and prices far from overflow
/// (a million times this still fits in a `u64`, and costs stay finite).
pub const MAX_TOKEN_COUNT: u64 = 1 << 40;

/// Reads `T`, taking `null` as `T::default()`. Used with
/// `#[serde(default, deserialize_with = "null_default")]` so absence and
/// `null` mean the same.
pub(crate) fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Reads an optional string, taking `null` and `""` as absent.
pub(crate) fn non_empty_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.filter(|s| !s.is_empty()))
}

/// A token count as servers really send it: an integer, a float
/// (`12.0`), a numeric string (`"12"`), or `null` (zero). Negative counts
/// read as zero and huge ones are capped at [`MAX_TOKEN_COUNT`]; anything
/// else (`"many"`, `true`, an object) is an error naming what came.
pub(crate) fn token_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(opt_token_count(deserializer)?.unwrap_or(0))
}

/// [`token_count`] for a count that may be absent: `null` stays `None`.
pub(crate) fn opt_token_count<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    lenient_count(&value)
        .map(|n| n.map(|n| n.min(MAX_TOKEN_COUNT)))
        .map_err(D::Error::custom)
}

/// A non-negative integer (an index, a timestamp) read like a token count,
/// without the token cap: `null` is zero.
pub(crate) fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(lenient_count(&value)
        .map_err(D::Error::custom)?
        .unwrap_or(0))
}

/// A `u32` index read like [`lenient_u64`], saturating.
pub(crate) fn lenient_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    lenient_u64(deserializer).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn lenient_count(value: &Value) -> Result<Option<u64>, String> {
    fn from_f64(f: f64) -> Result<u64, String> {
        if f.is_nan() {
            return Err("expected a count, got NaN".into());
        }
        // `as` saturates: negative → 0, +inf and too large → u64::MAX.
        Ok(f.max(0.0) as u64)
    }
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Ok(Some(u)),
            (None, Some(_), _) => Ok(Some(0)),
            (None, None, Some(f)) => from_f64(f).map(Some),
            _ => Err(format!("expected a count, got {n}")),
        },
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if let Ok(u) = s.parse::<u64>() {
                return Ok(Some(u));
            }
            match s.parse::<f64>() {
                Ok(f) if f.is_finite() => from_f64(f).map(Some),
                _ => Err(format!(
                    "expected a count, got the string {:?}",
                    s.chars().take(32).collect::<String>()
                )),
            }
        }
        other => Err(format!("expected a count, got {}", json_kind(other))),
    }
}

#[cfg(test)]
mod tolerant_tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize, Debug)]
    struct Counts {
        #[serde(default, deserialize_with = "token_count")]
        a: u64,
        #[serde(default, deserialize_with = "opt_token_count")]
        b: Option<u64>,
        #[serde(default, deserialize_with = "null_default")]
        list: Vec<u32>,
    }

    fn counts(value: Value) -> Result<Counts, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn counts_arrive_in_every_shape() {
        for (a, expected) in [
            (json!(12), 12),
            (json!(12.0), 12),
            (json!(12.7), 12),
            (json!("12"), 12),
            (json!(" 12 "), 12),
            (json!("12.0"), 12),
            (json!(null), 0),
            (json!(-3), 0),
            (json!(-3.5), 0),
            (json!(1e300), MAX_TOKEN_COUNT),
            (json!(u64::MAX), MAX_TOKEN_COUNT),
            (json!("99999999999999999999999"), MAX_TOKEN_COUNT),
        ] {
            let c = counts(json!({"a": a.clone()})).expect("accepted");
            assert_eq!(c.a, expected, "{a}");
        }
        let c = counts(json!({"b": null, "list": null})).expect("accepted");
        assert_eq!((c.b, c.list.len()), (None, 0));
        let c = counts(json!({})).expect("accepted");
        assert_eq!((c.a, c.b), (0, None));
        for bad in [json!("many"), json!(true), json!({"n": 1}), json!("NaN")] {
            let err = counts(json!({"a": bad.clone()})).expect_err("refused");
            assert!(err.contains("expected a count"), "{bad}: {err}");
        }
    }
}
