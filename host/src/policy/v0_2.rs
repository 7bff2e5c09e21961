//! Contract `pointsman:policy@0.2.0`: generated bindings and conversions to
//! and from the host's own types.
//!
//! Unlike 0.1.0, the static catalog and the module's configuration are not
//! passed on every call: [`Catalog`] converts them once per change and
//! numbers each change (its *generation*); the module calls `configure` on
//! an instance whose generation is behind before its next call. A call
//! carries only [`health`], one compact entry per catalog position.

use std::sync::Arc;

use super::types as host;

/// The contract version these bindings speak.
pub const VERSION: &str = "0.2.0";
/// Export name of the router world's interface.
pub const ROUTING_EXPORT: &str = "pointsman:policy/routing@0.2.0";
/// Export name of the planner world's interface.
pub const PLANNING_EXPORT: &str = "pointsman:policy/planning@0.2.0";

/// Bindings for the `router` world.
pub mod router {
    wasmtime::component::bindgen!({
        path: "../wit/0.2.0",
        world: "router",
        exports: { default: async },
    });
}

/// Bindings for the `planner` world, sharing the router's types.
pub mod planner {
    wasmtime::component::bindgen!({
        path: "../wit/0.2.0",
        world: "planner",
        exports: { default: async },
        with: {
            "pointsman:policy/types": super::router::pointsman::policy::types,
            "pointsman:policy/host": super::router::pointsman::policy::host,
        },
    });
}

pub use router::pointsman::policy::host::{Host, Level, add_to_linker as add_host_to_linker};
pub use router::pointsman::policy::types as wit;

/// Most tool names passed to a policy; an agent offers a few dozen.
pub const MAX_TOOL_NAMES: usize = 128;
/// Most bytes of one tool name passed to a policy.
pub const MAX_TOOL_NAME_BYTES: usize = 64;

impl From<host::WireApi> for wit::WireApi {
    fn from(api: host::WireApi) -> Self {
        match api {
            host::WireApi::OpenaiChat => wit::WireApi::OpenaiChat,
            host::WireApi::AnthropicMessages => wit::WireApi::AnthropicMessages,
            host::WireApi::Task => wit::WireApi::Task,
        }
    }
}

impl From<host::ResponseFormat> for wit::ResponseFormat {
    fn from(f: host::ResponseFormat) -> Self {
        match f {
            host::ResponseFormat::Text => wit::ResponseFormat::Text,
            host::ResponseFormat::JsonObject => wit::ResponseFormat::JsonObject,
            host::ResponseFormat::JsonSchema => wit::ResponseFormat::JsonSchema,
        }
    }
}

fn messages(messages: &[host::Message]) -> Vec<wit::Message> {
    messages
        .iter()
        .map(|m| wit::Message {
            role: m.role.clone(),
            content: m.content.clone(),
        })
        .collect()
}

fn host_messages(messages: Vec<wit::Message>) -> Vec<host::Message> {
    messages
        .into_iter()
        .map(|m| host::Message {
            role: m.role,
            content: m.content,
        })
        .collect()
}

impl From<&host::Features> for wit::Request {
    fn from(f: &host::Features) -> Self {
        wit::Request {
            id: f.id.clone(),
            api: f.api.into(),
            requested_model: f.requested_model.clone(),
            messages: messages(&f.messages),
            message_count: f.message_count,
            input_tokens: f.input_tokens,
            max_output_tokens: f.max_output_tokens,
            tool_count: f.tool_count,
            tool_names: f.tool_names.clone(),
            has_images: f.image_count > 0,
            image_count: f.image_count,
            stream: f.stream,
            temperature: f.temperature,
            response_format: f.response_format.into(),
            client: f.client.clone(),
            remaining_budget_usd: f.remaining_budget_usd,
            labels: f.labels.clone(),
            session: f.session.clone(),
        }
    }
}

fn capabilities(c: host::Capabilities) -> wit::Capabilities {
    let mut out = wit::Capabilities::empty();
    for (has, flag) in [
        (c.vision, wit::Capabilities::VISION),
        (c.tools, wit::Capabilities::TOOLS),
        (c.json_output, wit::Capabilities::JSON_OUTPUT),
        (c.reasoning, wit::Capabilities::REASONING),
    ] {
        if has {
            out |= flag;
        }
    }
    out
}

/// Whether two catalog entries agree on everything `configure` sends.
fn same_static(a: &host::ModelInfo, b: &host::ModelInfo) -> bool {
    a.id == b.id
        && a.roles == b.roles
        && a.input_usd_per_mtok == b.input_usd_per_mtok
        && a.output_usd_per_mtok == b.output_usd_per_mtok
        && a.context_window == b.context_window
        && a.capabilities == b.capabilities
        && a.tags == b.tags
}

/// The catalog and configuration as last sent, numbered by generation.
pub struct Converted {
    /// What it was converted from, to tell whether it still applies.
    from: Vec<host::ModelInfo>,
    /// The contract's form, with its generation.
    pub catalog: wit::Catalog,
}

impl Converted {
    /// The generation of this catalog (never 0: an instance at 0 has not
    /// been configured).
    pub fn generation(&self) -> u64 {
        self.catalog.generation
    }
}

/// The static catalog of one module, converted once per change.
pub struct Catalog {
    config: Vec<(String, String)>,
    last: std::sync::Mutex<Option<Arc<Converted>>>,
}

impl Catalog {
    /// A catalog cache for a module configured with `config`.
    pub fn new(config: Vec<(String, String)>) -> Self {
        Catalog {
            config,
            last: std::sync::Mutex::new(None),
        }
    }

    /// The static part of `models` with the module's configuration, under
    /// a new generation when it differs from the last one.
    pub fn of(&self, models: &[host::ModelInfo]) -> Arc<Converted> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = &*last
            && current.from.len() == models.len()
            && current
                .from
                .iter()
                .zip(models)
                .all(|(a, b)| same_static(a, b))
        {
            return current.clone();
        }
        let generation = last.as_ref().map_or(0, |c| c.catalog.generation) + 1;
        let converted = Arc::new(Converted {
            from: models.to_vec(),
            catalog: wit::Catalog {
                generation,
                models: models
                    .iter()
                    .map(|m| wit::Model {
                        id: m.id.clone(),
                        roles: m.roles.clone(),
                        input_usd_per_mtok: m.input_usd_per_mtok,
                        output_usd_per_mtok: m.output_usd_per_mtok,
                        context_window: m.context_window,
                        capabilities: capabilities(m.capabilities),
                        tags: m.tags.clone(),
                    })
                    .collect(),
                config: self.config.clone(),
            },
        });
        *last = Some(converted.clone());
        converted
    }
}

/// Live health of `models`, by catalog position.
pub fn health(models: &[host::ModelInfo]) -> Vec<wit::Health> {
    models
        .iter()
        .map(|m| wit::Health {
            available: m.available,
            success_rate: m.success_rate as f32,
            p50_latency_ms: m.p50_latency_ms,
        })
        .collect()
}

impl From<host::Tier> for wit::Tier {
    fn from(t: host::Tier) -> Self {
        match t {
            host::Tier::Direct => wit::Tier::Direct,
            host::Tier::Plan => wit::Tier::Plan,
            host::Tier::PlanAndVerify => wit::Tier::PlanAndVerify,
        }
    }
}

impl From<wit::Tier> for host::Tier {
    fn from(t: wit::Tier) -> Self {
        match t {
            wit::Tier::Direct => host::Tier::Direct,
            wit::Tier::Plan => host::Tier::Plan,
            wit::Tier::PlanAndVerify => host::Tier::PlanAndVerify,
        }
    }
}

impl From<wit::Route> for host::Route {
    fn from(r: wit::Route) -> Self {
        host::Route {
            tier: r.tier.into(),
            executor: r.executor,
            fallbacks: r.fallbacks,
            planner: r.planner,
            reasoning: r.reasoning,
            deadline_ms: r.deadline_ms,
            max_cost_usd: r.max_cost_usd,
            max_output_tokens: r.max_output_tokens,
            labels: r.labels,
        }
    }
}

impl From<&host::Route> for wit::Route {
    fn from(r: &host::Route) -> Self {
        wit::Route {
            tier: r.tier.into(),
            executor: r.executor.clone(),
            fallbacks: r.fallbacks.clone(),
            planner: r.planner.clone(),
            reasoning: r.reasoning.clone(),
            deadline_ms: r.deadline_ms,
            max_cost_usd: r.max_cost_usd,
            max_output_tokens: r.max_output_tokens,
            labels: r.labels.clone(),
        }
    }
}

impl From<&host::Task> for wit::Task {
    fn from(t: &host::Task) -> Self {
        wit::Task {
            id: t.id.clone(),
            title: t.title.clone(),
            description: t.description.clone(),
            context: t.context.clone(),
            labels: t.labels.clone(),
            route: (&t.route).into(),
        }
    }
}

impl From<wit::ChatRequest> for host::ChatRequest {
    fn from(c: wit::ChatRequest) -> Self {
        host::ChatRequest {
            model: c.model,
            messages: host_messages(c.messages),
            max_output_tokens: c.max_output_tokens,
            temperature: c.temperature,
        }
    }
}

impl From<wit::SubtaskKind> for host::SubtaskKind {
    fn from(k: wit::SubtaskKind) -> Self {
        match k {
            wit::SubtaskKind::Design => host::SubtaskKind::Design,
            wit::SubtaskKind::Code => host::SubtaskKind::Code,
            wit::SubtaskKind::Tests => host::SubtaskKind::Tests,
            wit::SubtaskKind::Docs => host::SubtaskKind::Docs,
            wit::SubtaskKind::Review => host::SubtaskKind::Review,
            wit::SubtaskKind::Other => host::SubtaskKind::Other,
        }
    }
}

impl From<host::SubtaskKind> for wit::SubtaskKind {
    fn from(k: host::SubtaskKind) -> Self {
        match k {
            host::SubtaskKind::Design => wit::SubtaskKind::Design,
            host::SubtaskKind::Code => wit::SubtaskKind::Code,
            host::SubtaskKind::Tests => wit::SubtaskKind::Tests,
            host::SubtaskKind::Docs => wit::SubtaskKind::Docs,
            host::SubtaskKind::Review => wit::SubtaskKind::Review,
            host::SubtaskKind::Other => wit::SubtaskKind::Other,
        }
    }
}

impl From<wit::Subtask> for host::Subtask {
    fn from(s: wit::Subtask) -> Self {
        host::Subtask {
            id: s.id,
            title: s.title,
            instructions: s.instructions,
            kind: s.kind.into(),
            depends_on: s.depends_on,
            model: s.model,
            critical: s.critical,
        }
    }
}

impl From<&host::Subtask> for wit::Subtask {
    fn from(s: &host::Subtask) -> Self {
        wit::Subtask {
            id: s.id.clone(),
            title: s.title.clone(),
            instructions: s.instructions.clone(),
            kind: s.kind.into(),
            depends_on: s.depends_on.clone(),
            model: s.model.clone(),
            critical: s.critical,
        }
    }
}

impl From<wit::Plan> for host::Plan {
    fn from(p: wit::Plan) -> Self {
        host::Plan {
            subtasks: p.subtasks.into_iter().map(Into::into).collect(),
            summary: p.summary,
        }
    }
}

impl From<wit::Review> for host::Review {
    fn from(r: wit::Review) -> Self {
        match r {
            wit::Review::Accept => host::Review::Accept,
            wit::Review::Retry(wit::Retry { model, feedback }) => {
                host::Review::Retry { model, feedback }
            }
            wit::Review::Escalate(reason) => host::Review::Escalate { reason },
        }
    }
}
