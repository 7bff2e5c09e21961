//! Builders for native unit tests of contract 0.1.0 policies.
//!
//! ```
//! use pointsman_sdk_v0_1::testing::{request, seed_catalog};
//!
//! let req = request("fix the typo in README").tools(2).build();
//! assert_eq!(req.tool_count, 2);
//! assert_eq!(seed_catalog().len(), 4);
//! ```

use crate::{Message, Model, Request, WireApi};

/// Starts a chat request whose last user message is `text`.
pub fn request(text: &str) -> RequestBuilder {
    RequestBuilder {
        request: Request {
            id: "test".into(),
            api: WireApi::OpenaiChat,
            requested_model: "auto".into(),
            messages: vec![Message {
                role: "user".into(),
                content: text.into(),
            }],
            message_count: 1,
            // A rough estimate is enough for tests: four characters a token.
            input_tokens: (text.len() / 4) as u32 + 1,
            max_output_tokens: None,
            tool_count: 0,
            labels: Vec::new(),
            session: None,
        },
    }
}

/// Builds a [`Request`] for tests.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    request: Request,
}

impl RequestBuilder {
    /// Sets the host's input-token estimate.
    pub fn tokens(mut self, input_tokens: u32) -> Self {
        self.request.input_tokens = input_tokens;
        self
    }

    /// Sets the number of tools offered.
    pub fn tools(mut self, count: u32) -> Self {
        self.request.tool_count = count;
        self
    }

    /// Adds `count` earlier turns before the last message.
    pub fn history(mut self, count: usize) -> Self {
        let last = self.request.messages.pop();
        for i in 0..count {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            self.request.messages.push(Message {
                role: role.into(),
                content: format!("turn {i}"),
            });
        }
        self.request.messages.extend(last);
        self.request.message_count = self.request.messages.len() as u32;
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.request.labels.push((key.into(), value.into()));
        self
    }

    /// Sets the requested model.
    pub fn model(mut self, model: &str) -> Self {
        self.request.requested_model = model.into();
        self
    }

    /// The request.
    pub fn build(self) -> Request {
        self.request
    }
}

/// A healthy catalog entry.
pub fn model(id: &str, roles: &[&str], input: f64, output: f64, context_window: u32) -> Model {
    Model {
        id: id.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        input_usd_per_mtok: input,
        output_usd_per_mtok: output,
        context_window,
        available: true,
        success_rate: 1.0,
        p50_latency_ms: 0,
    }
}

/// The seed architecture's four models, all healthy.
pub fn seed_catalog() -> Vec<Model> {
    vec![
        model(
            "claude-opus-4.5",
            &["premium", "planner"],
            5.0,
            25.0,
            200_000,
        ),
        model("deepseek-v3.2", &["planner"], 0.25, 0.38, 164_000),
        model("deepseek-v3.2-exp", &["executor"], 0.21, 0.32, 164_000),
        model("glm-4.7", &["executor"], 1.0, 2.0, 128_000),
    ]
}

/// `models` with `id` marked unavailable (all breakers open).
pub fn without(mut models: Vec<Model>, id: &str) -> Vec<Model> {
    for m in &mut models {
        if m.id == id {
            m.available = false;
        }
    }
    models
}
