//! Reading requests (both formats)

use super::*;

/// The text of a `content` value: a string, or the `text` of its parts.
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| {
                p.get("type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t == "text")
            })
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The text results at the end of the conversation, if its last message is
/// made of tool results.
pub(crate) fn trailing_tool_results(body: &Value) -> Option<Vec<String>> {
    let messages = body.get("messages")?.as_array()?;
    let last = messages.last()?;
    match last.get("role").and_then(Value::as_str)? {
        // OpenAI: one message per result.
        "tool" => {
            let results: Vec<String> = messages
                .iter()
                .rev()
                .take_while(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
                .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
                .collect();
            Some(results.into_iter().rev().collect())
        }
        // Anthropic: tool_result blocks in a user message.
        "user" => {
            let blocks = last.get("content")?.as_array()?;
            let results: Vec<String> = blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                .map(|b| content_text(b.get("content").unwrap_or(&Value::Null)))
                .collect();
            (!results.is_empty()).then_some(results)
        }
        _ => None,
    }
}

/// The text of the last user message (tool results aside), in either format.
pub fn last_user_text(body: &Value) -> Option<String> {
    body.get("messages")?
        .as_array()?
        .iter()
        .rev()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .find(|t| !t.is_empty())
}

/// The names of the tools a request offers, in either format.
pub fn tool_names(body: &Value) -> Vec<String> {
    body.get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| {
                    t.pointer("/function/name")
                        .or_else(|| t.get("name"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The tool `tool_choice` forces, `Some(None)` for "no tool", `None` when the
/// model is free to choose.
pub(crate) fn forced_tool(body: &Value) -> Option<Option<String>> {
    let choice = body.get("tool_choice")?;
    match choice {
        Value::String(s) if s == "none" => Some(None),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("none") => Some(None),
            Some("function") => o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .map(|n| Some(n.to_string())),
            Some("tool") => o
                .get("name")
                .and_then(Value::as_str)
                .map(|n| Some(n.to_string())),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

pub(crate) fn max_tokens(body: &Value) -> Option<u64> {
    body.get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
}

/// The default answer to a request, in either format (see the module docs).
pub fn default_answer(body: &Value) -> Answer {
    if let Some(results) = trailing_tool_results(body) {
        return Answer {
            text: Some(format!("tool said: {}", results.join("; "))),
            ..Answer::default()
        };
    }
    let user_text = last_user_text(body).unwrap_or_default();
    let tools = tool_names(body);
    if !tools.is_empty() {
        let name = match forced_tool(body) {
            Some(None) => None,
            Some(Some(name)) => Some(name),
            None => Some(tools[0].clone()),
        };
        if let Some(name) = name {
            return Answer {
                text: None,
                tool_calls: vec![ToolCall {
                    name,
                    arguments: json!({"query": user_text}),
                }],
                truncated: false,
            };
        }
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let text = format!("[{model}] echo: {user_text}");
    match max_tokens(body) {
        Some(max) if word_count(&text) > max => Answer {
            text: Some(
                text.split_whitespace()
                    .take(max as usize)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            tool_calls: Vec::new(),
            truncated: true,
        },
        _ => Answer {
            text: Some(text),
            ..Answer::default()
        },
    }
}

/// The words of every text in a request: system prompt(s), message texts and
/// tool results (not tool-call arguments), in either format.
pub fn request_words(body: &Value) -> u64 {
    fn walk(content: &Value) -> u64 {
        match content {
            Value::String(s) => word_count(s),
            Value::Array(parts) => parts.iter().map(walk).sum(),
            Value::Object(o) => {
                let mut n = 0;
                if let Some(Value::String(t)) = o.get("text") {
                    n += word_count(t);
                }
                if o.get("type").and_then(Value::as_str) == Some("tool_result") {
                    n += o.get("content").map(walk).unwrap_or(0);
                }
                n
            }
            _ => 0,
        }
    }
    let system = body.get("system").map(walk).unwrap_or(0);
    let messages: u64 = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .map(|m| m.get("content").map(walk).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    system + messages
}

/// The usage the upstream reports for `answer` to `body`, before the
/// configured cached tokens are applied (`cached` is 0).
pub fn default_usage(body: &Value, answer: &Answer) -> Usage {
    let text = answer.text.as_deref().map(word_count).unwrap_or(0);
    let calls: u64 = answer
        .tool_calls
        .iter()
        .map(|c| word_count(&c.arguments.to_string()))
        .sum();
    Usage {
        input: request_words(body) + 10,
        output: (text + calls).max(1),
        cached: 0,
    }
}
