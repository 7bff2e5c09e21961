use super::*;
use serde_json::json;

fn anthropic_request(value: Value) -> anthropic::MessagesRequest {
    serde_json::from_value(value).expect("anthropic request")
}

fn openai_request(value: Value) -> openai::ChatRequest {
    serde_json::from_value(value).expect("openai request")
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serialize")
}

#[test]
fn anthropic_agent_request_to_openai() {
    let request = anthropic_request(json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": [
            {"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be terse."}
        ],
        "messages": [
            {"role": "user", "content": "What's the weather in Paris and the time?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Two tools.", "signature": "sig"},
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C, cloudy"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true, "content": [
                    {"type": "text", "text": "clock unavailable"},
                    {"type": "text", "text": "try later"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
                ]},
                {"type": "text", "text": "Also, what is this?"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ]}
        ],
        "tools": [
            {"name": "get_weather", "description": "Weather by city",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "get_time", "input_schema": {}}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.3,
        "top_p": 0.95,
        "top_k": 40,
        "stream": true,
        "metadata": {"user_id": "user-123"},
        "thinking": {"type": "enabled", "budget_tokens": 1024}
    }));
    let translated = anthropic_request_to_openai(request).expect("translate");
    assert_eq!(
        to_json(&translated),
        json!({
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "system", "content": "You are a coding agent.\n\nBe terse."},
                {"role": "user", "content": "What's the weather in Paris and the time?"},
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C, cloudy"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "clock unavailable\n\ntry later"},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                    {"type": "text", "text": "Also, what is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
                ]}
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
            ],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            // A thinking budget of 1,024 tokens is a low effort.
            "reasoning_effort": "low",
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 4096,
            "temperature": 0.3,
            "top_p": 0.95,
            "stop": ["\n\nHuman:"],
            "user": "user-123"
        })
    );
}

#[test]
fn anthropic_tool_choice_maps_to_openai() {
    let base = json!({
        "model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}]
    });
    for (choice, expected, parallel) in [
        (json!({"type": "auto"}), json!("auto"), Value::Null),
        (json!({"type": "any"}), json!("required"), Value::Null),
        (json!({"type": "none"}), json!("none"), Value::Null),
        (
            json!({"type": "tool", "name": "f", "disable_parallel_tool_use": false}),
            json!({"type": "function", "function": {"name": "f"}}),
            json!(true),
        ),
    ] {
        let mut body = base.clone();
        body["tool_choice"] = choice;
        let translated =
            to_json(&anthropic_request_to_openai(anthropic_request(body)).expect("translate"));
        assert_eq!(translated["tool_choice"], expected);
        assert_eq!(translated["parallel_tool_calls"], parallel);
    }

    // Without tools, a tool_choice would be rejected by OpenAI: drop it.
    let translated = anthropic_request_to_openai(anthropic_request(json!({
        "model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}
    })))
    .expect("translate");
    assert_eq!(translated.tool_choice, None);
    assert_eq!(translated.parallel_tool_calls, None);
}

#[test]
fn anthropic_untranslatable_content_is_an_error() {
    for (body, needle) in [
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}
            ]}]}),
            "user content block of type `document`",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "q"}],
                   "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "Anthropic-hosted tool `web_search`",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
            ]}]}),
            "image source of type `file`",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [
                {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}
            ]}]}),
            "assistant content block of type `server_tool_use`",
        ),
    ] {
        let err = anthropic_request_to_openai(anthropic_request(body))
            .expect_err(needle)
            .to_string();
        assert!(
            err.contains(needle)
                && err.ends_with("cannot be expressed in the OpenAI Chat Completions API"),
            "{err}"
        );
    }
}

#[test]
fn openai_agent_request_to_anthropic() {
    let request = openai_request(json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": [
                {"type": "text", "text": "Describe", "cache_control": {"type": "ephemeral"}},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}}
            ]},
            {"role": "user", "content": "and check the weather"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "broken", "arguments": "{\"a\":"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "bad args"}]},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "thanks"},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "De rien."}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}},
                  {"type": "function", "function": {"name": "broken"}}],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "max_completion_tokens": 2048,
        "max_tokens": 100,
        "temperature": 1.7,
        "top_p": 0.5,
        "stop": "END",
        "n": 1,
        "seed": 3,
        "presence_penalty": 0.5,
        "user": "u-9",
        "stream": true,
        "stream_options": {"include_usage": true},
        "response_format": {"type": "text"},
        "logprobs": true
    }));
    let translated = openai_request_to_anthropic(request, 1024).expect("translate");
    assert_eq!(
        to_json(&translated),
        json!({
            "model": "gpt-4o",
            "max_tokens": 2048,
            "system": [
                {"type": "text", "text": "You are helpful."},
                {"type": "text", "text": "Answer in French."}
            ],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Describe", "cache_control": {"type": "ephemeral"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    {"type": "text", "text": "and check the weather"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "broken", "input": {"_raw": "{\"a\":"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "bad args"}]},
                    {"type": "text", "text": "thanks"}
                ]},
                {"role": "assistant", "content": [{"type": "text", "text": "De rien."}]}
            ],
            "tools": [
                {"name": "get_weather", "description": "Weather",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "broken", "input_schema": {"type": "object", "properties": {}}}
            ],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"],
            "temperature": 1.0,
            "top_p": 0.5,
            "stream": true,
            "metadata": {"user_id": "u-9"}
        })
    );
}

#[test]
fn openai_max_tokens_fallbacks() {
    let body = |extra: Value| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        openai_request(body)
    };
    let max = |req| {
        openai_request_to_anthropic(req, 777)
            .expect("translate")
            .max_tokens
    };
    assert_eq!(max(body(json!({}))), 777);
    assert_eq!(max(body(json!({"max_tokens": 5}))), 5);
    assert_eq!(
        max(body(json!({"max_tokens": 5, "max_completion_tokens": 9}))),
        9
    );
}

#[test]
fn openai_tool_choice_maps_to_anthropic() {
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    for (choice, parallel, expected) in [
        (json!("auto"), Value::Null, json!({"type": "auto"})),
        (json!("required"), Value::Null, json!({"type": "any"})),
        (json!("none"), Value::Null, json!({"type": "none"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!(false),
            json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true}),
        ),
        (
            Value::Null,
            json!(false),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        ),
        (Value::Null, json!(true), Value::Null),
    ] {
        let mut body =
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools});
        if !choice.is_null() {
            body["tool_choice"] = choice;
        }
        if !parallel.is_null() {
            body["parallel_tool_calls"] = parallel;
        }
        let translated =
            to_json(&openai_request_to_anthropic(openai_request(body), 1).expect("translate"));
        assert_eq!(translated["tool_choice"], expected);
    }
}

#[test]
fn openai_untranslatable_requests_are_errors() {
    for (body, needle) in [
        (
            json!({"model": "m", "messages": [{"role": "system", "content": "only system"}]}),
            "no user or assistant message",
        ),
        (
            json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]}),
            "`n: 2`",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}
            ]}]}),
            "content part of type `input_audio` in a user message",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}
            ]}]}),
            "only base64-encoded data URLs",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                   "tools": [{"type": "function", "function": {"name": "f"}}],
                   "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}}),
            "tool_choice of type `allowed_tools`",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                   "tools": [{"type": "custom", "custom": {"name": "grammar"}}]}),
            "tool of type `custom`",
        ),
    ] {
        let err = openai_request_to_anthropic(openai_request(body), 1)
            .expect_err(needle)
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn openai_odd_tool_ids_are_sanitised_consistently() {
    let translated = openai_request_to_anthropic(
        openai_request(json!({"model": "m", "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "ok", "tool_calls": [
                {"id": "functions.search:0", "type": "function", "function": {"name": "search", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "functions.search:0", "content": ""}
        ]})),
        1,
    )
    .expect("translate");
    let json = to_json(&translated);
    assert_eq!(
        json["messages"][1]["content"][1]["id"],
        "functions_search_0"
    );
    assert_eq!(json["messages"][1]["content"][1]["input"], json!({}));
    assert_eq!(
        json["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "functions_search_0"}),
        "an empty tool output is sent without content"
    );
}

/// OpenAI → Anthropic → OpenAI keeps the conversation, the tools and the
/// tool calls (modulo normalisations documented on the functions: system
/// messages hoisted, same-role turns merged).
#[test]
fn openai_request_roundtrips_through_anthropic() {
    let original = openai_request(json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Looking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
                {"id": "call_3", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "24°C"},
            {"role": "tool", "tool_call_id": "call_3", "content": "error: bad arguments"},
            {"role": "assistant", "content": "Paris 18°C, Rome 24°C."},
            {"role": "user", "content": [
                {"type": "text", "text": "And this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 300,
        "temperature": 0.5,
        "stop": ["STOP", "END"],
        "stream": false
    }));
    let anthropic = openai_request_to_anthropic(original.clone(), 1024).expect("to anthropic");
    // The Anthropic form must itself survive JSON (de)serialisation.
    let anthropic: anthropic::MessagesRequest =
        serde_json::from_value(to_json(&anthropic)).expect("anthropic json");
    let back = anthropic_request_to_openai(anthropic).expect("back to openai");

    assert_eq!(back.messages, original.messages);
    assert_eq!(back.tools, original.tools);
    assert_eq!(back.tool_choice, original.tool_choice);
    assert_eq!(back.max_tokens, original.max_tokens);
    assert_eq!(back.temperature, original.temperature);
    assert_eq!(back.stop, original.stop);
    assert_eq!(back.model, original.model);
}

/// Anthropic → OpenAI → Anthropic keeps messages, tools and tool uses.
#[test]
fn anthropic_request_roundtrips_through_openai() {
    let original = anthropic_request(json!({
        "model": "claude-x",
        "max_tokens": 500,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Read a.rs"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Reading."},
                {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a.rs", "lines": [1, 2]}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "fn main() {}"},
                {"type": "text", "text": "Explain it."}
            ]}
        ],
        "tools": [{"name": "read", "description": "Reads a file",
                   "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}],
        "tool_choice": {"type": "tool", "name": "read"},
        "stop_sequences": ["###"],
        "stream": true
    }));
    let openai = anthropic_request_to_openai(original.clone()).expect("to openai");
    let openai: openai::ChatRequest =
        serde_json::from_value(to_json(&openai)).expect("openai json");
    let back = openai_request_to_anthropic(openai, 1).expect("back to anthropic");

    assert_eq!(back.messages, original.messages);
    assert_eq!(back.tools, original.tools);
    assert_eq!(back.tool_choice, original.tool_choice);
    assert_eq!(back.system, original.system);
    assert_eq!(back.max_tokens, original.max_tokens);
    assert_eq!(back.stop_sequences, original.stop_sequences);
    assert_eq!(back.stream, original.stream);
}

/// What Claude Code sends (trimmed from a recording): a system message in
/// the middle of the conversation, adaptive thinking, an effort, context
/// management and cache control on system and user blocks.
fn claude_code_request() -> Value {
    json!({
        "model": "claude-opus-4-8",
        "max_tokens": 32000,
        "stream": true,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332;"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nToday is Monday.\n</system-reminder>\n"},
                {"type": "text", "text": "Fix the typo in main.rs", "cache_control": {"type": "ephemeral"}}
            ]},
            {"role": "system", "content": [{"type": "text", "text": "# Environment\nPrimary working directory: /work"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": "/work/main.rs"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "fn main() {}", "cache_control": {"type": "ephemeral"}}
            ]},
            {"role": "system", "content": "Reminder: keep going."}
        ],
        "tools": [
            {"name": "Read", "description": "Reads a file", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}},
            {"name": "DeferredToolPlaceholder", "description": "Loaded by tool search", "input_schema": {"type": "object"}, "defer_loading": true}
        ],
        "metadata": {"user_id": "{\"device_id\":\"0000\",\"account_uuid\":\"\",\"session_id\":\"c420cb3b\"}"},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"}
    })
}

#[test]
fn claude_code_request_passes_through_anthropic_unchanged() {
    let body = claude_code_request();
    let request = anthropic_request(body.clone());
    assert_eq!(request.messages[1].role, Role::System);
    assert_eq!(
        request.thinking.as_ref().map(anthropic::Thinking::mode),
        Some(anthropic::ThinkingMode::Adaptive)
    );
    assert_eq!(
        request
            .output_config
            .as_ref()
            .and_then(|o| o.effort.as_deref()),
        Some("high")
    );
    assert_eq!(to_json(&request), body);
}

#[test]
fn claude_code_request_to_openai_keeps_system_messages_in_place() {
    let translated =
        anthropic_request_to_openai(anthropic_request(claude_code_request())).expect("translate");
    let roles: Vec<&str> = translated
        .messages
        .iter()
        .map(|m| match m {
            ChatMessage::System(_) => "system",
            ChatMessage::Developer(_) => "developer",
            ChatMessage::User(_) => "user",
            ChatMessage::Assistant(_) => "assistant",
            ChatMessage::Tool(_) => "tool",
        })
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "system", "assistant", "tool", "system"]
    );
    let json = to_json(&translated);
    assert_eq!(
        json["messages"][2]["content"],
        "# Environment\nPrimary working directory: /work"
    );
    assert_eq!(json["messages"][5]["content"], "Reminder: keep going.");
    // Effort becomes the reasoning control; what OpenAI has no place for
    // is dropped, not forwarded (OpenAI rejects unknown fields).
    assert_eq!(json["reasoning_effort"], "high");
    for dropped in [
        "thinking",
        "context_management",
        "output_config",
        "metadata",
    ] {
        assert!(json.get(dropped).is_none(), "{dropped}: {json}");
    }
    assert!(!json.to_string().contains("cache_control"), "{json}");
    assert_eq!(json["user"], "c420cb3b", "Claude Code's session id");
    let tools: Vec<&str> = json["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert_eq!(tools, ["Read"], "deferred tools are not offered");
}

#[test]
fn thinking_budgets_and_efforts_map_to_reasoning_effort() {
    let effort = |extra: Value| {
        let mut body = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        anthropic_request_to_openai(anthropic_request(body))
            .unwrap()
            .reasoning_effort
    };
    let thinking = |budget: u32| json!({"thinking": {"type": "enabled", "budget_tokens": budget}});
    assert_eq!(effort(thinking(1024)).as_deref(), Some("low"));
    assert_eq!(effort(thinking(8000)).as_deref(), Some("medium"));
    assert_eq!(effort(thinking(32000)).as_deref(), Some("high"));
    assert_eq!(effort(json!({"thinking": {"type": "adaptive"}})), None);
    assert_eq!(effort(json!({"thinking": {"type": "disabled"}})), None);
    assert_eq!(
        effort(json!({"output_config": {"effort": "max"}, "thinking": {"type": "enabled", "budget_tokens": 1024}}))
            .as_deref(),
        Some("high")
    );
    assert_eq!(
        effort(json!({"output_config": {"effort": "low"}})).as_deref(),
        Some("low")
    );
    assert_eq!(effort(json!({})), None);
}
