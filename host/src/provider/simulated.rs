//! The built-in simulated provider, for demos and load tests.
//!
//! Answers are deterministic (a function of the model and the conversation),
//! speak the OpenAI format, and take the configured time: `latency_ms`
//! before the first token, then `tokens_per_second`. A share `error_rate` of
//! requests fails with 503, on a fixed pseudo-random sequence. Asked for a
//! plan (the seed planner's prompt asks for `"subtasks"`), it answers with a
//! valid JSON plan; asked for a review (`"verdict"`), it accepts; so the demo
//! runs the two tiers end to end without a network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::async_stream;
use super::wire::openai::{
    self, ChatCompletion, ChatCompletionChunk, ChatMessage, Choice, ChunkChoice, Delta,
    FinishReason, FunctionCallDelta, MessageContent, ResponseMessage, ToolCall, ToolCallDelta,
    ToolChoice, ToolChoiceMode,
};
use super::{Event, ProviderError, Reply, Request, Response, unix_now};
use crate::config::ProviderConfig;
use crate::tokens::count as count_tokens;

/// The simulated provider.
pub struct Simulated {
    latency: Duration,
    tokens_per_second: u32,
    error_rate: f64,
    sequence: AtomicU64,
}

/// What the simulation decided to answer.
struct Answer {
    text: String,
    /// The text was cut at the request's `max_tokens`.
    truncated: bool,
    tool_call: Option<(String, String)>,
    prompt_tokens: u64,
}

impl Simulated {
    /// From the provider's config.
    pub fn new(config: &ProviderConfig) -> Self {
        Simulated {
            latency: Duration::from_millis(config.latency_ms),
            tokens_per_second: config.tokens_per_second,
            error_rate: config.error_rate,
            sequence: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// Answers an OpenAI-format request.
    pub async fn send(&self, request: Request) -> Result<Reply, ProviderError> {
        let Request::OpenAi(request) = request else {
            return Err(ProviderError::Malformed(
                "the simulated provider speaks the OpenAI format".into(),
            ));
        };
        if self.fails() {
            tokio::time::sleep(self.latency).await;
            return Err(ProviderError::Status {
                status: 503,
                message: "simulated outage".into(),
                retry_after: None,
            });
        }
        let answer = answer(&request);
        let id = format!(
            "chatcmpl-sim-{:016x}",
            fingerprint(&request.model, &answer.text)
        );
        if request.is_stream() {
            return Ok(Reply::Stream(Box::pin(self.stream(id, request, answer))));
        }
        let words = answer.text.split_inclusive(' ').count() as u32;
        tokio::time::sleep(self.latency + self.pace(words)).await;
        let completion_tokens = count_tokens(&answer.text) as u64;
        let (content, tool_calls, finish) = match answer.tool_call {
            Some((name, arguments)) => (
                None,
                vec![ToolCall::function("call_sim_0", name, arguments)],
                FinishReason::ToolCalls,
            ),
            None if answer.truncated => (Some(answer.text), Vec::new(), FinishReason::Length),
            None => (Some(answer.text), Vec::new(), FinishReason::Stop),
        };
        Ok(Reply::Complete(Box::new(Response::OpenAi(
            ChatCompletion {
                id,
                object: openai::OBJECT_COMPLETION.into(),
                created: unix_now(),
                model: request.model,
                choices: vec![Choice {
                    index: 0,
                    message: ResponseMessage {
                        role: "assistant".into(),
                        content,
                        tool_calls,
                        ..Default::default()
                    },
                    finish_reason: Some(finish),
                    extra: Default::default(),
                }],
                usage: Some(usage(answer.prompt_tokens, completion_tokens)),
                system_fingerprint: None,
                extra: Default::default(),
            },
        ))))
    }

    fn stream(
        &self,
        id: String,
        request: openai::ChatRequest,
        answer: Answer,
    ) -> impl futures::Stream<Item = Result<Event, ProviderError>> + Send + 'static {
        let latency = self.latency;
        let per_token = self.pace(1);
        let include_usage = request.include_usage();
        async_stream(move |tx| async move {
            let chunk = |delta: Delta, finish: Option<FinishReason>| {
                Ok(Event::OpenAi(ChatCompletionChunk {
                    id: id.clone(),
                    object: openai::OBJECT_CHUNK.into(),
                    created: unix_now(),
                    model: request.model.clone(),
                    choices: vec![ChunkChoice {
                        index: 0,
                        delta,
                        finish_reason: finish,
                        ..Default::default()
                    }],
                    usage: None,
                    system_fingerprint: None,
                    extra: Default::default(),
                }))
            };
            tokio::time::sleep(latency).await;
            let role = Delta {
                role: Some("assistant".into()),
                ..Default::default()
            };
            if tx.send(chunk(role, None)).await.is_err() {
                return;
            }
            let finish = if let Some((name, arguments)) = &answer.tool_call {
                let call = Delta {
                    tool_calls: vec![ToolCallDelta {
                        index: 0,
                        id: Some("call_sim_0".into()),
                        kind: Some("function".into()),
                        function: Some(FunctionCallDelta {
                            name: Some(name.clone()),
                            arguments: Some(arguments.clone()),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                if tx.send(chunk(call, None)).await.is_err() {
                    return;
                }
                FinishReason::ToolCalls
            } else {
                for word in answer.text.split_inclusive(' ') {
                    if !per_token.is_zero() {
                        tokio::time::sleep(per_token).await;
                    }
                    let delta = Delta {
                        content: Some(word.to_string()),
                        ..Default::default()
                    };
                    if tx.send(chunk(delta, None)).await.is_err() {
                        return;
                    }
                }
                if answer.truncated {
                    FinishReason::Length
                } else {
                    FinishReason::Stop
                }
            };
            if tx
                .send(chunk(Delta::default(), Some(finish)))
                .await
                .is_err()
            {
                return;
            }
            if include_usage {
                let completion = count_tokens(&answer.text) as u64;
                let _ = tx
                    .send(Ok(Event::OpenAi(ChatCompletionChunk {
                        id: id.clone(),
                        object: openai::OBJECT_CHUNK.into(),
                        created: unix_now(),
                        model: request.model.clone(),
                        choices: Vec::new(),
                        usage: Some(usage(answer.prompt_tokens, completion)),
                        system_fingerprint: None,
                        extra: Default::default(),
                    })))
                    .await;
            }
        })
    }

    fn pace(&self, tokens: u32) -> Duration {
        if self.tokens_per_second == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(tokens as f64 / self.tokens_per_second as f64)
        }
    }

    /// The next draw of a fixed xorshift sequence decides whether this
    /// request fails, so a run is reproducible.
    fn fails(&self) -> bool {
        if self.error_rate <= 0.0 {
            return false;
        }
        let mut x = self.sequence.load(Ordering::Relaxed);
        loop {
            let mut next = x;
            next ^= next << 13;
            next ^= next >> 7;
            next ^= next << 17;
            match self
                .sequence
                .compare_exchange_weak(x, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return ((next >> 11) as f64 / (1u64 << 53) as f64) < self.error_rate,
                Err(current) => x = current,
            }
        }
    }
}

fn usage(prompt: u64, completion: u64) -> openai::Usage {
    openai::Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        ..Default::default()
    }
}

fn answer(request: &openai::ChatRequest) -> Answer {
    let mut system = String::new();
    let mut last_user = String::new();
    let mut prompt_tokens = 0u64;
    for message in &request.messages {
        let text = match message {
            ChatMessage::System(m) | ChatMessage::Developer(m) => {
                let text = m.content.text();
                system.push_str(&text);
                text
            }
            ChatMessage::User(m) => {
                last_user = m.content.text();
                last_user.clone()
            }
            ChatMessage::Assistant(m) => m
                .content
                .as_ref()
                .map(MessageContent::text)
                .unwrap_or_default(),
            ChatMessage::Tool(m) => {
                last_user = format!("the tool said {}", m.content.text());
                last_user.clone()
            }
        };
        prompt_tokens += u64::from(count_tokens(&text)) + u64::from(crate::tokens::PER_MESSAGE);
    }
    let forced_tool = match &request.tool_choice {
        Some(ToolChoice::Function(named)) => Some(named.function.name.clone()),
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) => request
            .tools
            .iter()
            .flatten()
            .find_map(|t| t.function.as_ref().map(|f| f.name.clone())),
        _ => None,
    };
    let text = if system.contains("\"subtasks\"") {
        plan(&last_user)
    } else if system.contains("\"verdict\"") {
        r#"{"verdict": "accept", "feedback": ""}"#.to_string()
    } else {
        prose(&request.model, &last_user)
    };
    let cap = request.max_completion_tokens.or(request.max_tokens);
    let (text, truncated) = match cap {
        Some(cap) => truncate(text, u64::from(cap)),
        None => (text, false),
    };
    Answer {
        text,
        truncated,
        tool_call: forced_tool.map(|name| (name, "{}".to_string())),
        prompt_tokens,
    }
}

/// `text` cut to at most `cap` tokens at a word boundary, as a real model
/// stops at `max_tokens` (budgets reserve on that promise); whether it
/// was cut.
fn truncate(text: String, cap: u64) -> (String, bool) {
    if count_tokens(&text) as u64 <= cap {
        return (text, false);
    }
    let mut words: Vec<&str> = text.split_inclusive(' ').collect();
    let mut kept = 0u64;
    let fits = words
        .iter()
        .take_while(|w| {
            kept += count_tokens(w) as u64;
            kept <= cap
        })
        .count();
    words.truncate(fits);
    // Tokens of a whole may differ from the sum of its words' tokens.
    while !words.is_empty() && count_tokens(&words.concat()) as u64 > cap {
        words.pop();
    }
    (words.concat(), true)
}

/// A small valid plan for the seed planner's prompt.
fn plan(task: &str) -> String {
    let title: String = task
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("the task")
        .trim_start_matches("# Task: ")
        .chars()
        .take(80)
        .collect();
    serde_json::json!({
        "summary": format!("Design, implement and test: {title}"),
        "subtasks": [
            {"id": "design", "title": "Design the change", "kind": "design",
             "instructions": format!("Describe the components and interfaces needed for: {title}"), "depends_on": []},
            {"id": "code", "title": "Implement it", "kind": "code",
             "instructions": "Implement the design.", "depends_on": ["design"]},
            {"id": "tests", "title": "Test it", "kind": "tests",
             "instructions": "Write tests for the design's interfaces.", "depends_on": ["design"]},
            {"id": "docs", "title": "Document it", "kind": "docs",
             "instructions": "Document the change.", "depends_on": ["code", "tests"]}
        ]
    })
    .to_string()
}

/// Deterministic prose of 20 to 60 words about the request.
fn prose(model: &str, prompt: &str) -> String {
    const WORDS: &[&str] = &[
        "the",
        "change",
        "keeps",
        "module",
        "boundaries",
        "clear",
        "and",
        "adds",
        "a",
        "test",
        "for",
        "each",
        "case",
        "so",
        "that",
        "regressions",
        "show",
        "early",
        "while",
        "callers",
        "stay",
        "unchanged",
    ];
    let seed = fingerprint(model, prompt);
    let count = 20 + (seed % 41) as usize;
    let topic: String = prompt
        .split_whitespace()
        .take(8)
        .collect::<Vec<_>>()
        .join(" ");
    let mut text = format!("Simulated answer from {model} on \"{topic}\":");
    let mut x = seed | 1;
    for _ in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.push(' ');
        text.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    text.push('.');
    text
}

/// FNV-1a of the model and prompt.
fn fingerprint(model: &str, prompt: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in model.bytes().chain([0]).chain(prompt.bytes()) {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(error_rate: f64) -> ProviderConfig {
        toml::from_str(&format!("kind = \"simulated\"\nerror_rate = {error_rate}")).unwrap()
    }

    fn request(system: &str, user: &str, stream: bool) -> Request {
        let body = serde_json::json!({
            "model": "glm-4.7",
            "stream": stream,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]
        });
        Request::OpenAi(serde_json::from_value(body).unwrap())
    }

    #[tokio::test]
    async fn answers_are_deterministic_and_priced() {
        let sim = Simulated::new(&config(0.0));
        let mut texts = Vec::new();
        for _ in 0..2 {
            let Ok(Reply::Complete(answer)) = sim.send(request("", "fix the bug", false)).await
            else {
                panic!("expected a completion");
            };
            let Response::OpenAi(r) = *answer else {
                panic!("expected the OpenAI format");
            };
            assert!(r.usage.as_ref().unwrap().completion_tokens > 10);
            texts.push(r.choices[0].message.content.clone().unwrap());
        }
        assert_eq!(texts[0], texts[1]);
    }

    #[tokio::test]
    async fn plans_when_asked_for_one() {
        let sim = Simulated::new(&config(0.0));
        // "plan": the plan tier's name, as the seed planner writes it.
        let system = "plan \"subtasks\"".to_string();
        let Ok(Reply::Complete(answer)) =
            sim.send(request(&system, "# Task: add login", false)).await
        else {
            panic!("expected a completion");
        };
        let Response::OpenAi(r) = *answer else {
            panic!("expected the OpenAI format");
        };
        let plan: serde_json::Value =
            serde_json::from_str(r.choices[0].message.content.as_deref().unwrap()).unwrap();
        assert_eq!(plan["subtasks"].as_array().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn streams_words_then_usage() {
        use futures::StreamExt;
        let sim = Simulated::new(&config(0.0));
        let Ok(Reply::Stream(mut events)) = sim.send(request("", "hello", true)).await else {
            panic!("expected a stream");
        };
        let mut text = String::new();
        let mut usage = None;
        while let Some(Ok(Event::OpenAi(chunk))) = events.next().await {
            for c in &chunk.choices {
                text.push_str(c.delta.content.as_deref().unwrap_or(""));
            }
            usage = chunk.usage.or(usage);
        }
        assert!(text.starts_with("Simulated answer from glm-4.7"));
        assert!(usage.unwrap().completion_tokens > 10);
    }

    #[tokio::test]
    async fn answers_stop_at_max_tokens_like_a_real_model() {
        use futures::StreamExt;
        let sim = Simulated::new(&config(0.0));
        for stream in [false, true] {
            let Request::OpenAi(mut capped) = request("", "fix the bug", stream) else {
                unreachable!()
            };
            capped.max_tokens = Some(5);
            let (text, completion, finish) = match sim.send(Request::OpenAi(capped)).await {
                Ok(Reply::Complete(answer)) => {
                    let Response::OpenAi(r) = *answer else {
                        panic!("expected the OpenAI format");
                    };
                    (
                        r.choices[0].message.content.clone().unwrap(),
                        r.usage.unwrap().completion_tokens,
                        r.choices[0].finish_reason.clone(),
                    )
                }
                Ok(Reply::Stream(mut events)) => {
                    let (mut text, mut usage, mut finish) = (String::new(), None, None);
                    while let Some(Ok(Event::OpenAi(chunk))) = events.next().await {
                        for c in &chunk.choices {
                            text.push_str(c.delta.content.as_deref().unwrap_or(""));
                            finish = c.finish_reason.clone().or(finish);
                        }
                        usage = chunk.usage.or(usage);
                    }
                    (text, usage.unwrap().completion_tokens, finish)
                }
                Err(e) => panic!("{e:?}"),
            };
            assert!((1..=5).contains(&completion), "{completion}: {text}");
            assert_eq!(completion, count_tokens(&text) as u64);
            assert_eq!(finish, Some(FinishReason::Length), "stream: {stream}");
        }
    }

    #[tokio::test]
    async fn error_rate_fails_that_share() {
        let sim = Simulated::new(&config(0.2));
        let mut failures = 0;
        for _ in 0..1000 {
            if sim.send(request("", "x", false)).await.is_err() {
                failures += 1;
            }
        }
        assert!((150..250).contains(&failures), "{failures}");
    }
}
