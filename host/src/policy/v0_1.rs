//! Contract `pointsman:policy@0.1.0`: generated bindings and conversions to
//! and from the host's own types.
//!
//! Frozen with the contract: `0.2.0` lives in the sibling [`super::v0_2`];
//! the engine picks the bindings by the version in a component's export
//! names. Fields the host gained since (capabilities, images, route labels)
//! are not passed to a 0.1.0 module, and what it cannot return takes its
//! default.

use std::sync::Arc;

use super::types as host;

/// The contract version these bindings speak.
pub const VERSION: &str = "0.1.0";
/// Export name of the router world's interface.
pub const ROUTING_EXPORT: &str = "pointsman:policy/routing@0.1.0";
/// Export name of the planner world's interface.
pub const PLANNING_EXPORT: &str = "pointsman:policy/planning@0.1.0";

/// Bindings for the `router` world.
pub mod router {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "router",
        exports: { default: async },
    });
}

/// Bindings for the `planner` world, sharing the router's types.
pub mod planner {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
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

impl From<host::WireApi> for wit::WireApi {
    fn from(api: host::WireApi) -> Self {
        match api {
            host::WireApi::OpenaiChat => wit::WireApi::OpenaiChat,
            host::WireApi::AnthropicMessages => wit::WireApi::AnthropicMessages,
            host::WireApi::Task => wit::WireApi::Task,
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
            labels: f.labels.clone(),
            session: f.session.clone(),
        }
    }
}

/// The catalog as the contract sees it, converted once per catalog change.
///
/// A route call would otherwise copy every model's strings before lowering
/// them; the catalog changes only when live health moves, so the last
/// conversion is kept and reused while the catalog equals it.
#[derive(Default)]
pub struct Catalog {
    last: arc_swap::ArcSwapOption<Converted>,
}

/// One catalog in both forms.
pub struct Converted {
    /// What it was converted from, to tell whether it still applies.
    from: Vec<host::ModelInfo>,
    /// The contract's form.
    pub models: Vec<wit::Model>,
}

impl Catalog {
    /// `models` in the contract's types.
    pub fn of(&self, models: &[host::ModelInfo]) -> Arc<Converted> {
        if let Some(last) = self.last.load_full()
            && last.from == models
        {
            return last;
        }
        let converted = Arc::new(Converted {
            from: models.to_vec(),
            models: convert(models),
        });
        self.last.store(Some(converted.clone()));
        converted
    }
}

fn convert(models: &[host::ModelInfo]) -> Vec<wit::Model> {
    models
        .iter()
        .map(|m| wit::Model {
            id: m.id.clone(),
            roles: m.roles.clone(),
            input_usd_per_mtok: m.input_usd_per_mtok,
            output_usd_per_mtok: m.output_usd_per_mtok,
            context_window: m.context_window,
            available: m.available,
            success_rate: m.success_rate,
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
            // 0.1.0 has neither: no cap, no labels.
            max_output_tokens: None,
            labels: Vec::new(),
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
            wit::Review::Retry((model, feedback)) => host::Review::Retry { model, feedback },
            wit::Review::Escalate(reason) => host::Review::Escalate { reason },
        }
    }
}
