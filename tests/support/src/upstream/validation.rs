//! Validation, as strict as the real APIs on the points a gateway can get wrong

use super::*;

pub(crate) fn validate_openai(body: &Value) -> Result<(), String> {
    let obj = body
        .as_object()
        .ok_or("The request body must be a JSON object.")?;
    match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => return Err("you must provide a model parameter".into()),
    }
    let messages = match obj.get("messages") {
        Some(Value::Array(ms)) if !ms.is_empty() => ms,
        Some(Value::Array(_)) => return Err("[] is too short - 'messages'".into()),
        _ => return Err("Missing required parameter: 'messages'.".into()),
    };
    let stream = obj.get("stream").and_then(Value::as_bool) == Some(true);
    if obj.get("stream_options").is_some_and(|v| !v.is_null()) && !stream {
        return Err(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
        );
    }
    if let Some(tools) = obj.get("tools") {
        let tools = tools
            .as_array()
            .ok_or("Invalid type for 'tools': expected an array.")?;
        for (i, tool) in tools.iter().enumerate() {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(format!("Missing required parameter: 'tools[{i}].type'."));
            }
            if tool
                .pointer("/function/name")
                .and_then(Value::as_str)
                .is_none()
            {
                return Err(format!(
                    "Missing required parameter: 'tools[{i}].function.name'."
                ));
            }
        }
    }
    // Tool calls still waiting for their results.
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("Missing required parameter: 'messages[{i}].role'."))?;
        if role != "tool" && !pending.is_empty() {
            return Err(format!(
                "An assistant message with 'tool_calls' must be followed by tool messages \
                 responding to each 'tool_call_id'. The following tool_call_ids did not have \
                 response messages: {}",
                pending.join(", ")
            ));
        }
        match role {
            "system" | "developer" | "user" => {
                check_openai_content(i, m.get("content"), false)?;
            }
            "assistant" => {
                let calls = m.get("tool_calls").and_then(Value::as_array);
                check_openai_content(i, m.get("content"), calls.is_some_and(|c| !c.is_empty()))?;
                for (j, call) in calls.into_iter().flatten().enumerate() {
                    let id = call.get("id").and_then(Value::as_str).ok_or_else(|| {
                        format!("Missing required parameter: 'messages[{i}].tool_calls[{j}].id'.")
                    })?;
                    let args = call.pointer("/function/arguments").and_then(Value::as_str);
                    if call
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .is_none()
                        || args.is_none()
                    {
                        return Err(format!(
                            "Missing required parameter: 'messages[{i}].tool_calls[{j}].function'."
                        ));
                    }
                    pending.push(id.to_string());
                }
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        format!("Missing required parameter: 'messages[{i}].tool_call_id'.")
                    })?;
                match pending.iter().position(|p| p == id) {
                    Some(k) => {
                        pending.remove(k);
                    }
                    None => {
                        return Err(format!(
                            "Invalid parameter: messages with role 'tool' must be a response to a \
                             preceeding message with 'tool_calls'. (messages[{i}], tool_call_id {id})"
                        ));
                    }
                }
                check_openai_content(i, m.get("content"), false)?;
            }
            "function" => {}
            other => {
                return Err(format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'assistant', \
                     'user', 'function', 'tool', and 'developer'. (messages[{i}].role)"
                ));
            }
        }
    }
    if !pending.is_empty() {
        return Err(format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding \
             to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            pending.join(", ")
        ));
    }
    Ok(())
}

pub(crate) fn check_openai_content(
    i: usize,
    content: Option<&Value>,
    may_be_null: bool,
) -> Result<(), String> {
    match content {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                if p.get("type").and_then(Value::as_str).is_none() {
                    return Err(format!(
                        "Missing required parameter: 'messages[{i}].content[{j}].type'."
                    ));
                }
            }
            Ok(())
        }
        None | Some(Value::Null) if may_be_null => Ok(()),
        _ => Err(format!(
            "Invalid type for 'messages[{i}].content': expected one of a string or array of \
             objects, but got {}.",
            match content {
                None => "nothing",
                Some(Value::Null) => "null",
                Some(Value::Object(_)) => "an object",
                Some(Value::Bool(_)) => "a boolean",
                Some(Value::Number(_)) => "a number",
                _ => "a value",
            }
        )),
    }
}

/// A `system` message inside `messages`: a non-empty string or text blocks.
pub(crate) fn check_system_turn(i: usize, content: Option<&Value>) -> Result<(), String> {
    match content {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        Some(Value::Array(blocks)) if !blocks.is_empty() => {
            for (j, b) in blocks.iter().enumerate() {
                check_text_block(&format!("messages.{i}.content.{j}"), b)?;
            }
            Ok(())
        }
        _ => Err(format!(
            "messages.{i}: a system message needs non-empty text content"
        )),
    }
}

pub(crate) fn validate_anthropic(body: &Value) -> Result<(), String> {
    let obj = body
        .as_object()
        .ok_or("The request body must be a JSON object.")?;
    match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => return Err("model: Field required".into()),
    }
    match obj.get("max_tokens") {
        Some(v) if v.as_u64().is_some_and(|n| n >= 1) => {}
        Some(_) => {
            return Err(
                "max_tokens: Input should be a valid integer greater than or equal to 1".into(),
            );
        }
        None => return Err("max_tokens: Field required".into()),
    }
    if obj.contains_key("stream_options") {
        return Err("stream_options: Extra inputs are not permitted".into());
    }
    match obj.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for (j, b) in blocks.iter().enumerate() {
                check_text_block(&format!("system.{j}"), b)?;
            }
        }
        Some(_) => return Err("system: Input should be a valid string or list".into()),
    }
    if let Some(tools) = obj.get("tools") {
        let tools = tools
            .as_array()
            .ok_or("tools: Input should be a valid list")?;
        for (i, t) in tools.iter().enumerate() {
            // Server tools have a `type` (web_search_20250305...); custom ones a schema.
            let custom = t
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(|k| k == "custom");
            if t.get("name").and_then(Value::as_str).is_none() {
                return Err(format!("tools.{i}.name: Field required"));
            }
            if custom && !t.get("input_schema").is_some_and(Value::is_object) {
                return Err(format!("tools.{i}.custom.input_schema: Field required"));
            }
        }
    }
    let messages = match obj.get("messages") {
        Some(Value::Array(ms)) if !ms.is_empty() => ms,
        Some(Value::Array(_)) => return Err("messages: at least one message is required".into()),
        _ => return Err("messages: Field required".into()),
    };
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        let role = match role {
            Some(r @ ("user" | "assistant")) => r,
            // Mid-conversation system turns (Claude Code's): text only, and
            // they do not end a tool exchange.
            Some("system") => {
                check_system_turn(i, m.get("content"))?;
                continue;
            }
            _ => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user', 'assistant' or 'system'"
                ));
            }
        };
        let last = i + 1 == messages.len();
        let blocks: Vec<Map<String, Value>> = match m.get("content") {
            Some(Value::String(s)) => {
                if s.is_empty() && !(last && role == "assistant") {
                    return Err(format!(
                        "messages.{i}: all messages must have non-empty content except for the \
                         optional final assistant message"
                    ));
                }
                Vec::new()
            }
            Some(Value::Array(blocks)) => {
                if blocks.is_empty() && !(last && role == "assistant") {
                    return Err(format!(
                        "messages.{i}: all messages must have non-empty content except for the \
                         optional final assistant message"
                    ));
                }
                blocks
                    .iter()
                    .enumerate()
                    .map(|(j, b)| {
                        b.as_object().cloned().ok_or_else(|| {
                            format!("messages.{i}.content.{j}: Input should be an object")
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => {
                return Err(format!(
                    "messages.{i}.content: Input should be a valid list"
                ));
            }
        };
        // Results answer the tool_use blocks of the message just before.
        let mut answered: Vec<String> = Vec::new();
        let mut uses: Vec<String> = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match b.get("type").and_then(Value::as_str) {
                Some("text") => check_text_block(&at, &Value::Object(b.clone()))?,
                Some("tool_use") => {
                    if role != "assistant" {
                        return Err(format!(
                            "{at}: tool_use blocks are only allowed in assistant messages"
                        ));
                    }
                    let id = b.get("id").and_then(Value::as_str);
                    let name = b.get("name").and_then(Value::as_str);
                    let (Some(id), Some(_)) = (id, name) else {
                        return Err(format!("{at}.tool_use: `id` and `name` are required"));
                    };
                    if !b.get("input").is_some_and(Value::is_object) {
                        return Err(format!(
                            "{at}.tool_use.input: Input should be a valid dictionary"
                        ));
                    }
                    uses.push(id.to_string());
                }
                Some("tool_result") => {
                    if role != "user" {
                        return Err(format!(
                            "{at}: tool_result blocks are only allowed in user messages"
                        ));
                    }
                    let id = b
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("{at}.tool_result.tool_use_id: Field required"))?;
                    if !pending.iter().any(|p| p == id) {
                        return Err(format!(
                            "{at}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. \
                             Each `tool_result` block must have a corresponding `tool_use` block \
                             in the previous message."
                        ));
                    }
                    answered.push(id.to_string());
                    if let Some(Value::Array(inner)) = b.get("content") {
                        for (k, ib) in inner.iter().enumerate() {
                            if ib.get("type").and_then(Value::as_str) == Some("text") {
                                check_text_block(&format!("{at}.content.{k}"), ib)?;
                            }
                        }
                    }
                }
                Some(_) => {}
                None => return Err(format!("{at}.type: Field required")),
            }
        }
        let missing: Vec<&String> = pending.iter().filter(|p| !answered.contains(p)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately \
                 after: {}. Each `tool_use` block must have a corresponding `tool_result` block in \
                 the next message.",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        pending = uses;
    }
    Ok(())
}

pub(crate) fn check_text_block(at: &str, block: &Value) -> Result<(), String> {
    match block.get("text") {
        Some(Value::String(t)) if !t.is_empty() => Ok(()),
        Some(Value::String(_)) => Err(format!("{at}: text content blocks must be non-empty")),
        _ => Err(format!("{at}.text: Field required")),
    }
}
