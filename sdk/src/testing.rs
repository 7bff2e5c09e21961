//! Builders for native unit tests of policies (contract 0.2.0; the 0.1.0
//! builders are in [`crate::v0_1::testing`]).
//!
//! ```
//! use pointsman_sdk::testing::{request, seed_catalog, task};
//! use pointsman_sdk::{Capabilities, Route};
//!
//! let req = request("what is in this screenshot?").images(1).tools(2).build();
//! assert!(req.has_images);
//! assert_eq!(req.tool_count, 2);
//! let catalog = seed_catalog();
//! assert_eq!(catalog.len(), 4);
//! assert!(catalog[0].can(Capabilities::VISION));
//! let t = task("Add a cache").route(Route::plan("glm-4.7", "deepseek-v3.2", "test")).build();
//! assert_eq!(t.route.planner.as_deref(), Some("deepseek-v3.2"));
//! ```

use crate::{
    Capabilities, Message, Model, Request, ResponseFormat, Route, Subtask, SubtaskKind, Task,
    WireApi,
};

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
            tool_names: Vec::new(),
            has_images: false,
            image_count: 0,
            stream: false,
            temperature: None,
            response_format: ResponseFormat::Text,
            client: None,
            remaining_budget_usd: None,
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

    /// Sets the client's output limit.
    pub fn max_output(mut self, tokens: u32) -> Self {
        self.request.max_output_tokens = Some(tokens);
        self
    }

    /// Offers `count` tools, named `tool0`, `tool1`, ...
    pub fn tools(mut self, count: u32) -> Self {
        self.request.tool_count = count;
        self.request.tool_names = (0..count).map(|i| format!("tool{i}")).collect();
        self
    }

    /// Offers the tools `names`.
    pub fn tool_names(mut self, names: &[&str]) -> Self {
        self.request.tool_count = names.len() as u32;
        self.request.tool_names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Puts `count` images in the conversation.
    pub fn images(mut self, count: u32) -> Self {
        self.request.image_count = count;
        self.request.has_images = count > 0;
        self
    }

    /// Asks for a stream.
    pub fn stream(mut self) -> Self {
        self.request.stream = true;
        self
    }

    /// Asks for `format`.
    pub fn response_format(mut self, format: ResponseFormat) -> Self {
        self.request.response_format = format;
        self
    }

    /// Sets the client's remaining budget in USD.
    pub fn budget(mut self, usd: f64) -> Self {
        self.request.remaining_budget_usd = Some(usd);
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

/// Starts a task titled `title`, routed `direct` to `glm-4.7`.
pub fn task(title: &str) -> TaskBuilder {
    TaskBuilder {
        task: Task {
            id: "task-test".into(),
            title: title.into(),
            description: title.into(),
            context: Vec::new(),
            labels: Vec::new(),
            route: Route::direct("glm-4.7", "test"),
        },
    }
}

/// Builds a [`Task`] for tests.
#[derive(Debug, Clone)]
pub struct TaskBuilder {
    task: Task,
}

impl TaskBuilder {
    /// Sets the description.
    pub fn description(mut self, text: &str) -> Self {
        self.task.description = text.into();
        self
    }

    /// Adds a context file.
    pub fn context(mut self, path: &str, text: &str) -> Self {
        self.task.context.push((path.into(), text.into()));
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.task.labels.push((key.into(), value.into()));
        self
    }

    /// Sets the router's route (see [`Route::plan`] and friends).
    pub fn route(mut self, route: Route) -> Self {
        self.task.route = route;
        self
    }

    /// The task.
    pub fn build(self) -> Task {
        self.task
    }
}

/// Starts a subtask `id` of `kind` on `model`, with no dependencies.
pub fn subtask(id: &str, kind: SubtaskKind, model: &str) -> SubtaskBuilder {
    SubtaskBuilder {
        subtask: Subtask {
            id: id.into(),
            title: id.into(),
            instructions: format!("do {id}"),
            kind,
            depends_on: Vec::new(),
            model: model.into(),
            critical: false,
        },
    }
}

/// Builds a [`Subtask`] for tests.
#[derive(Debug, Clone)]
pub struct SubtaskBuilder {
    subtask: Subtask,
}

impl SubtaskBuilder {
    /// Sets the instructions.
    pub fn instructions(mut self, text: &str) -> Self {
        self.subtask.instructions = text.into();
        self
    }

    /// Adds a dependency.
    pub fn depends_on(mut self, id: &str) -> Self {
        self.subtask.depends_on.push(id.into());
        self
    }

    /// Marks it critical (reviewed under `plan-and-verify`).
    pub fn critical(mut self) -> Self {
        self.subtask.critical = true;
        self
    }

    /// The subtask.
    pub fn build(self) -> Subtask {
        self.subtask
    }
}

/// A healthy catalog entry that can do everything.
pub fn model(id: &str, roles: &[&str], input: f64, output: f64, context_window: u32) -> Model {
    Model {
        id: id.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        input_usd_per_mtok: input,
        output_usd_per_mtok: output,
        context_window,
        capabilities: Capabilities::VISION
            | Capabilities::TOOLS
            | Capabilities::JSON_OUTPUT
            | Capabilities::REASONING,
        tags: Vec::new(),
        available: true,
        success_rate: 1.0,
        p50_latency_ms: 0,
    }
}

/// The seed architecture's four models, all healthy, with the capabilities
/// of the host's demo config: only `claude-opus-4.5` reads images.
pub fn seed_catalog() -> Vec<Model> {
    let text = Capabilities::TOOLS | Capabilities::JSON_OUTPUT | Capabilities::REASONING;
    let with = |mut m: Model, capabilities: Capabilities| {
        m.capabilities = capabilities;
        m
    };
    vec![
        model(
            "claude-opus-4.5",
            &["premium", "planner"],
            5.0,
            25.0,
            200_000,
        ),
        with(
            model("deepseek-v3.2", &["planner"], 0.25, 0.38, 164_000),
            text,
        ),
        with(
            model("deepseek-v3.2-exp", &["executor"], 0.21, 0.32, 164_000),
            text,
        ),
        with(model("glm-4.7", &["executor"], 1.0, 2.0, 128_000), text),
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
