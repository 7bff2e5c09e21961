//! Translation between the OpenAI Chat Completions and Anthropic Messages
//! formats: requests, responses, errors and streams, in both directions;
//! and from OpenAI Responses requests to chat requests and from chat
//! answers back to Responses objects and events (`responses_*`,
//! `stream_to_responses`).
//!
//! Wire-format decisions every submodule shares:
//!
//! * Tool-call arguments are a JSON *string* at OpenAI and a JSON *object*
//!   at Anthropic. Arguments that do not parse to an object (models do emit
//!   broken JSON) become `{"_raw": "<the string>"}`, and such an object is
//!   unwrapped back to the raw string in the other direction, so the bytes
//!   the model produced survive a round trip. Empty arguments mean `{}`.
//! * Anthropic tool ids must match `^[a-zA-Z0-9_-]+$`; some OpenAI-style
//!   servers emit ids such as `functions.get:0`. Ids are sanitised (other
//!   characters become `_`) identically wherever they appear — tool calls
//!   and tool results — so pairs still match.
//! * Thinking blocks have no OpenAI request equivalent and are dropped from
//!   requests; in responses they surface as the non-standard
//!   `reasoning_content` field (message and delta) used by several
//!   OpenAI-compatible servers. The reverse is not done: a thinking block
//!   without Anthropic's signature would be rejected if the conversation is
//!   later routed to Anthropic.
//! * Token usage goes through the neutral [`Usage`], which documents how
//!   the two APIs count cached input differently.

mod request;
mod response;
pub mod responses_request;
pub mod responses_response;
mod stream_to_anthropic;
mod stream_to_openai;
mod stream_to_responses;
mod usage;

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{anthropic, openai, sse};

pub use request::{anthropic_request_to_openai, openai_request_to_anthropic};
pub use response::{
    anthropic_error_to_openai, anthropic_response_to_openai, finish_reason_to_stop_reason,
    openai_error_to_anthropic, openai_response_to_anthropic, stop_reason_to_finish_reason,
};
pub use responses_request::{ResponsesError, responses_request_to_chat};
pub use responses_response::{ResponseFrame, chat_completion_to_response};
pub use stream_to_anthropic::OpenAiToAnthropicStream;
pub use stream_to_openai::AnthropicToOpenAiStream;
pub use stream_to_responses::ChatToResponsesStream;
pub use usage::{Usage, complete_openai_usage};

/// The key under which tool arguments that are not a JSON object travel in
/// an Anthropic `input` object.
pub const RAW_ARGUMENTS_KEY: &str = "_raw";

/// Why a translation failed.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// The source uses something the target API cannot express.
    #[error("{what} cannot be expressed in the {target} API")]
    Unsupported {
        /// What could not be translated, e.g. "content part `input_audio`".
        what: String,
        /// The target API's name.
        target: &'static str,
    },
    /// An image URL that claims to be a data URL but cannot be used as one.
    #[error("invalid image data URL `{url_prefix}…`: {reason}")]
    InvalidDataUrl {
        /// The first characters of the URL (never the whole payload).
        url_prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Nothing would be left to send to Anthropic, which needs a message.
    #[error("the request has no user or assistant message with content")]
    NoMessages,
    /// An OpenAI response without any choice.
    #[error("the upstream response has no choices")]
    NoChoices,
    /// Upstream JSON that does not fit the expected shape.
    #[error("invalid {what}: {source}")]
    InvalidJson {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// An upstream stream whose events contradict each other.
    #[error("upstream stream violates the protocol: {0}")]
    StreamProtocol(String),
    /// Input fed to a stream translator after it finished.
    #[error("the stream translator already finished")]
    StreamFinished,
    /// The upstream reported an error in the middle of a stream.
    #[error("upstream error ({kind}): {message}")]
    Upstream {
        /// The upstream's error type string.
        kind: String,
        /// The upstream's message.
        message: String,
    },
}

const OPENAI: &str = "OpenAI Chat Completions";
const ANTHROPIC: &str = "Anthropic Messages";

fn unsupported_in_openai(what: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported {
        what: what.into(),
        target: OPENAI,
    }
}

fn unsupported_in_anthropic(what: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported {
        what: what.into(),
        target: ANTHROPIC,
    }
}

/// Turns an OpenAI arguments string into an Anthropic `input` object.
fn tool_input_from_arguments(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => {
            let mut map = Map::new();
            map.insert(
                RAW_ARGUMENTS_KEY.to_owned(),
                Value::String(arguments.to_owned()),
            );
            Value::Object(map)
        }
    }
}

/// Turns an Anthropic `input` into an OpenAI arguments string, unwrapping a
/// `{"_raw": ...}` produced by [`tool_input_from_arguments`].
fn arguments_from_tool_input(input: &Value) -> String {
    if let Value::Object(map) = input
        && map.len() == 1
        && let Some(Value::String(raw)) = map.get(RAW_ARGUMENTS_KEY)
    {
        return raw.clone();
    }
    input.to_string()
}

/// Makes a tool id acceptable to Anthropic (`^[a-zA-Z0-9_-]+$`).
fn sanitize_tool_id(id: &str) -> Cow<'_, str> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if id.chars().all(valid) {
        Cow::Borrowed(id)
    } else {
        Cow::Owned(id.chars().map(|c| if valid(c) { c } else { '_' }).collect())
    }
}

/// An Anthropic message id (`msg_...`) for an answer whose upstream id is
/// `id`: kept when it already is one, else `msg_` and the id's safe
/// characters (an OpenAI `chatcmpl-...` keeps its uniqueness).
fn anthropic_message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{}", sanitize_tool_id(id))
    }
}

/// Splits `data:<media type>[;params];base64,<data>` into media type and
/// data; `Ok(None)` for any URL that is not a data URL.
fn parse_data_url(url: &str) -> Result<Option<(&str, &str)>, TranslateError> {
    let Some(scheme) = url.get(..5) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("data:") {
        return Ok(None);
    }
    let invalid = |reason| TranslateError::InvalidDataUrl {
        url_prefix: url.chars().take(40).collect(),
        reason,
    };
    let (meta, data) = url[5..]
        .split_once(',')
        .ok_or_else(|| invalid("no `,` before the data"))?;
    let meta = meta
        .strip_suffix(";base64")
        .ok_or_else(|| invalid("only base64-encoded data URLs are supported"))?;
    let media_type = meta.split(';').next().unwrap_or_default().trim();
    if media_type.is_empty() {
        return Err(invalid("no media type"));
    }
    Ok(Some((media_type, data)))
}

/// A base64 data URL.
fn data_url(media_type: &str, data: &str) -> String {
    format!("data:{media_type};base64,{data}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_map_to_input_and_back() {
        for (arguments, input) in [
            (r#"{"a":1}"#, json!({"a": 1})),
            ("", json!({})),
            ("  ", json!({})),
            ("{\"a\":", json!({"_raw": "{\"a\":"})),
            ("[1,2]", json!({"_raw": "[1,2]"})),
            ("\"s\"", json!({"_raw": "\"s\""})),
        ] {
            assert_eq!(tool_input_from_arguments(arguments), input, "{arguments:?}");
        }
        assert_eq!(
            arguments_from_tool_input(&json!({"_raw": "{\"a\":"})),
            "{\"a\":"
        );
        assert_eq!(
            arguments_from_tool_input(&json!({"a": [1, "x"]})),
            r#"{"a":[1,"x"]}"#
        );
        // Only our exact wrapper is unwrapped.
        assert_eq!(
            arguments_from_tool_input(&json!({"_raw": "x", "b": 1})),
            r#"{"_raw":"x","b":1}"#
        );
        assert_eq!(
            arguments_from_tool_input(&json!({"_raw": 5})),
            r#"{"_raw":5}"#
        );
    }

    #[test]
    fn tool_ids_are_sanitised() {
        assert!(matches!(
            sanitize_tool_id("call_Ab-9"),
            Cow::Borrowed("call_Ab-9")
        ));
        assert_eq!(sanitize_tool_id("functions.get:0"), "functions_get_0");
        assert_eq!(sanitize_tool_id("é"), "_");
    }

    #[test]
    fn data_urls_are_parsed() {
        assert_eq!(
            parse_data_url("data:image/png;base64,iVBO").expect("valid"),
            Some(("image/png", "iVBO"))
        );
        assert_eq!(
            parse_data_url("DATA:image/jpeg;name=a.jpg;base64,/9j/").expect("valid"),
            Some(("image/jpeg", "/9j/"))
        );
        assert_eq!(parse_data_url("https://x/y.png").expect("not data"), None);
        assert_eq!(parse_data_url("x").expect("short"), None);
        for bad in [
            "data:image/png,abc",
            "data:image/png;base64",
            "data:;base64,abc",
        ] {
            let err = parse_data_url(bad).expect_err(bad).to_string();
            assert!(err.starts_with("invalid image data URL"), "{err}");
        }
        assert_eq!(data_url("image/gif", "R0lG"), "data:image/gif;base64,R0lG");
    }
}

#[cfg(test)]
mod stream_roundtrip_tests;
