//! The official Python SDKs against the local upstream itself: proves both
//! the upstream's wire formats and the SDK scripts before any gateway sits in
//! between.

use pointsman_test_support::sdk::{run_sdk_script, run_sdk_script_with};
use pointsman_test_support::upstream::{
    ANTHROPIC_KEY, Api, OPENAI_KEY, Reply, Upstream, UpstreamConfig, Usage,
};
use serde_json::{Value, json};

const NO_HEADERS: &[(&str, &str)] = &[("POINTSMAN_EXPECT_HEADERS", "0")];

fn usage_of(up: &Upstream, seq: usize) -> Usage {
    up.requests()[seq].usage.expect("a usage")
}

#[test]
fn openai_sdk_against_the_upstream() {
    let up = Upstream::start_blocking(UpstreamConfig::default().cached_tokens(3));
    let out = run_sdk_script_with("openai_sdk", &up.url(), OPENAI_KEY, NO_HEADERS);
    assert_eq!(out["sdk"], "openai");

    let basic = &out["basic"];
    assert_eq!(
        basic["text"],
        "[gpt-4o-mini] echo: Say hello to the gateway"
    );
    assert_eq!(basic["model"], "gpt-4o-mini");
    assert_eq!(basic["finish_reason"], "stop");
    // "You are terse." + "Say hello to the gateway" = 8 words, + 10.
    assert_eq!(basic["usage"]["prompt_tokens"], 18);
    assert_eq!(basic["usage"]["cached_tokens"], 3);
    assert_eq!(basic["usage"]["completion_tokens"], 7);
    assert_eq!(basic["headers"]["x-pointsman-model"], Value::Null);

    let stream = &out["stream"];
    assert_eq!(
        stream["text"],
        "[gpt-4o-mini] echo: Stream a few words back to me please"
    );
    assert!(stream["deltas"].as_u64().unwrap() >= 5, "{stream}");
    assert_eq!(stream["usage"]["completion_tokens"], 10);

    for case in ["tools", "stream_tools"] {
        let tools = &out[case];
        assert_eq!(tools["call"]["name"], "lookup", "{case}");
        assert_eq!(
            tools["call"]["arguments"],
            json!({"query": "What is the capital of France?"}),
            "{case}"
        );
        assert_eq!(tools["text"], "tool said: Paris", "{case}");
    }

    // What the SDK sent: 1 + 1 + 2 + 2 requests, all authenticated with the key.
    let log = up.requests();
    assert_eq!(log.len(), 6);
    for r in &log {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.bearer(), Some(OPENAI_KEY));
        assert_eq!(r.status, Some(200));
    }
    assert!(log[1].is_stream());
    assert_eq!(
        log[1].body["stream_options"],
        json!({"include_usage": true})
    );
    assert_eq!(log[2].tool_names(), ["lookup"]);
    let round_trip = log[3].messages();
    assert_eq!(round_trip[1]["tool_calls"][0]["id"], "call_up3_0");
    assert_eq!(round_trip[2]["role"], "tool");
    assert_eq!(round_trip[2]["tool_call_id"], "call_up3_0");
    assert_eq!(
        usage_of(&up, 0),
        Usage {
            input: 18,
            output: 7,
            cached: 3
        }
    );
}

#[test]
fn anthropic_sdk_against_the_upstream() {
    let up = Upstream::start_blocking(UpstreamConfig::default().cached_tokens(4));
    let out = run_sdk_script_with("anthropic_sdk", &up.url(), ANTHROPIC_KEY, NO_HEADERS);
    assert_eq!(out["sdk"], "anthropic");

    let basic = &out["basic"];
    assert_eq!(
        basic["text"],
        "[claude-sonnet-4-5] echo: Say hello to the gateway"
    );
    assert_eq!(basic["stop_reason"], "end_turn");
    // 18 prompt tokens, 4 of them read from the cache.
    assert_eq!(basic["usage"]["input_tokens"], 14);
    assert_eq!(basic["usage"]["cache_read_input_tokens"], 4);
    assert_eq!(basic["usage"]["output_tokens"], 7);

    let stream = &out["stream"];
    assert_eq!(
        stream["text"],
        "[claude-sonnet-4-5] echo: Stream a few words back to me please"
    );
    assert!(stream["deltas"].as_u64().unwrap() >= 5, "{stream}");
    let events: Vec<&str> = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
    assert_eq!(stream["usage"]["output_tokens"], 10);

    for case in ["tools", "stream_tools"] {
        let tools = &out[case];
        assert_eq!(tools["call"]["name"], "lookup", "{case}");
        assert_eq!(
            tools["call"]["arguments"],
            json!({"query": "What is the capital of France?"}),
            "{case}"
        );
        assert_eq!(tools["text"], "tool said: Paris", "{case}");
    }

    let log = up.requests();
    assert_eq!(log.len(), 6);
    for r in &log {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.api, Some(Api::Anthropic));
        // The SDK sends its API key as a bearer token, not as x-api-key.
        assert_eq!(r.api_key(), Some(ANTHROPIC_KEY));
        assert!(r.header("anthropic-version").is_some());
        assert_eq!(r.status, Some(200));
    }
    let round_trip = log[3].messages();
    assert_eq!(round_trip[1]["content"][0]["type"], "tool_use");
    assert_eq!(round_trip[2]["content"][0]["tool_use_id"], "toolu_up3_0");
}

/// The scripts require the gateway's headers unless told otherwise...
#[test]
#[should_panic(expected = "missing gateway header")]
fn scripts_require_the_gateway_headers_by_default() {
    let up = Upstream::start_blocking(UpstreamConfig::default());
    run_sdk_script_with(
        "openai_sdk",
        &up.url(),
        OPENAI_KEY,
        &[("POINTSMAN_CASES", "basic")],
    );
}

/// ...and read them from plain and streamed answers alike.
#[test]
fn scripts_report_the_gateway_headers() {
    let up = Upstream::start_blocking(UpstreamConfig::default());
    up.on(|req| {
        let streamed = req.is_stream();
        let mut reply = Reply::default()
            .header("x-pointsman-model", req.model().unwrap_or("?"))
            .header("x-pointsman-tier", "executor")
            .header("x-pointsman-policy", "seed-matrix@1");
        if !streamed {
            reply = reply
                .header("x-pointsman-cost-usd", "0.000123")
                .header("x-pointsman-baseline-cost-usd", "0.0042");
        }
        Some(reply)
    });
    for (script, key, model) in [
        ("openai_sdk", OPENAI_KEY, "gpt-4o-mini"),
        ("anthropic_sdk", ANTHROPIC_KEY, "claude-sonnet-4-5"),
    ] {
        let out = run_sdk_script(script, &up.url(), key);
        let headers = &out["basic"]["headers"];
        assert_eq!(headers["x-pointsman-model"], model);
        assert_eq!(headers["x-pointsman-tier"], "executor");
        assert_eq!(headers["x-pointsman-policy"], "seed-matrix@1");
        assert_eq!(headers["x-pointsman-cost-usd"], "0.000123");
        assert_eq!(headers["x-pointsman-baseline-cost-usd"], "0.0042");
        let streamed = &out["stream"]["headers"];
        assert_eq!(streamed["x-pointsman-tier"], "executor");
        assert_eq!(streamed["x-pointsman-cost-usd"], Value::Null);
        assert_eq!(out["tools"]["headers"][1]["x-pointsman-tier"], "executor");
    }
}

/// A gateway that lets an upstream error through fails the script, with the
/// error in the panic message.
#[test]
#[should_panic(expected = "RateLimitError")]
fn scripts_fail_on_upstream_errors() {
    let up = Upstream::start_blocking(UpstreamConfig::default());
    up.push(Reply::error(429, "slow down"));
    run_sdk_script_with(
        "anthropic_sdk",
        &up.url(),
        ANTHROPIC_KEY,
        &[
            ("POINTSMAN_CASES", "basic"),
            ("POINTSMAN_EXPECT_HEADERS", "0"),
        ],
    );
}

/// From an async test, the script runs on the blocking pool while the test's
/// runtime stays free.
#[tokio::test]
async fn scripts_run_from_async_tests() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let out = pointsman_test_support::sdk::run_sdk_script_async(
        "openai_sdk.py",
        &up.url(),
        OPENAI_KEY,
        &[
            ("POINTSMAN_CASES", "basic"),
            ("POINTSMAN_EXPECT_HEADERS", "0"),
            ("POINTSMAN_OPENAI_MODEL", "auto"),
        ],
    )
    .await;
    assert_eq!(
        out["basic"]["text"],
        "[auto] echo: Say hello to the gateway"
    );
    assert!(out.get("stream").is_none());
    assert_eq!(up.count(), 1);
}
