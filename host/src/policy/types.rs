//! The host's own view of what policies see and decide.
//!
//! These types are independent of any contract version: each supported
//! version (`v0_1`) converts to and from them, so the gateway and the
//! orchestrator never depend on generated bindings.

use serde::{Deserialize, Serialize};

/// The wire API a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WireApi {
    /// `POST /v1/chat/completions`.
    OpenaiChat,
    /// `POST /v1/messages`.
    AnthropicMessages,
    /// `POST /v1/tasks`.
    Task,
}

/// One message, flattened to text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text of the message.
    pub content: String,
}

/// The output format a request asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResponseFormat {
    /// Free text: nothing asked.
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON following a schema.
    JsonSchema,
}

/// What a router sees of a request.
///
/// Fields added with contract 0.2.0 default to "nothing known", so code
/// that builds features for a task or a probe can leave them out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// The host's request id.
    pub id: String,
    /// The API the request came in on.
    pub api: WireApi,
    /// The model the client asked for (an id or an alias).
    pub requested_model: String,
    /// The latest messages, each cut short (see the contract).
    pub messages: Vec<Message>,
    /// How many messages the conversation has.
    pub message_count: u32,
    /// Input tokens of the whole request, counted with a BPE tokenizer.
    pub input_tokens: u32,
    /// The client's output-token limit, if any.
    pub max_output_tokens: Option<u32>,
    /// Number of tools offered.
    pub tool_count: u32,
    /// Labels from headers, metadata and the client key.
    pub labels: Vec<(String, String)>,
    /// The agent session, if known.
    pub session: Option<String>,
    /// Names of the tools offered (bounded: see `features`).
    #[serde(default)]
    pub tool_names: Vec<String>,
    /// How many images the conversation holds.
    #[serde(default)]
    pub image_count: u32,
    /// Whether the client asked for a stream.
    #[serde(default)]
    pub stream: bool,
    /// Sampling temperature the client set.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// The output format the client asked for.
    #[serde(default)]
    pub response_format: ResponseFormat,
    /// Name of the client key, when the request was authenticated by one.
    #[serde(default)]
    pub client: Option<String>,
    /// What the request may still spend, in USD: the tightest of its
    /// client's and labels' `[[budgets]]` caps, as of that budget's latest
    /// reservation (`Ledger::remaining`); `None` without a capped budget or
    /// before one has reserved today.
    #[serde(default)]
    pub remaining_budget_usd: Option<f64>,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            id: String::new(),
            api: WireApi::OpenaiChat,
            requested_model: String::new(),
            messages: Vec::new(),
            message_count: 0,
            input_tokens: 0,
            max_output_tokens: None,
            tool_count: 0,
            labels: Vec::new(),
            session: None,
            tool_names: Vec::new(),
            image_count: 0,
            stream: false,
            temperature: None,
            response_format: ResponseFormat::Text,
            client: None,
            remaining_budget_usd: None,
        }
    }
}

pub use crate::config::capabilities::Capabilities;

/// A catalog entry with live health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Catalog id.
    pub id: String,
    /// Roles from config.
    pub roles: Vec<String>,
    /// USD per million input tokens.
    pub input_usd_per_mtok: f64,
    /// USD per million output tokens.
    pub output_usd_per_mtok: f64,
    /// Context window in tokens.
    pub context_window: u32,
    /// False when every endpoint's breaker is open.
    pub available: bool,
    /// Share of recent calls that succeeded.
    pub success_rate: f64,
    /// Median recent latency in ms (0 when unknown).
    pub p50_latency_ms: u32,
    /// What the model can do.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Free-form tags from config.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// How much machinery a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// One executor call.
    Direct,
    /// Planner, then executors.
    Plan,
    /// Planner, executors, then review.
    PlanAndVerify,
}

impl Tier {
    /// The contract's name for the tier.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Direct => "direct",
            Tier::Plan => "plan",
            Tier::PlanAndVerify => "plan-and-verify",
        }
    }

    /// The tier a contract name names.
    pub fn parse(name: &str) -> Option<Tier> {
        [Tier::Direct, Tier::Plan, Tier::PlanAndVerify]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}

/// A routing decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// The tier.
    pub tier: Tier,
    /// The serving (or executing) model.
    pub executor: String,
    /// Models to try next, in order.
    pub fallbacks: Vec<String>,
    /// The planner model for planned tiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planner: Option<String>,
    /// Why.
    #[serde(default)]
    pub reasoning: String,
    /// Total deadline in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u32>,
    /// Spending cap in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Cap on output tokens, applied to the request's own limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Labels the policy attached, for the ledger and reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
}

impl Route {
    /// Every model the route names, executor first.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.executor.as_str())
            .chain(self.fallbacks.iter().map(String::as_str))
            .chain(self.planner.as_deref())
    }
}

/// A request the host sends to a model for a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Catalog id.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Output limit.
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
}

/// Work for the planner tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Task id.
    pub id: String,
    /// Short title.
    pub title: String,
    /// What to do.
    pub description: String,
    /// Context files as (path, text).
    pub context: Vec<(String, String)>,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// The router's decision for the task.
    pub route: Route,
}

/// What a subtask is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubtaskKind {
    /// Design work (planner model).
    Design,
    /// Code (executor).
    Code,
    /// Tests (executor).
    Tests,
    /// Documentation (executor).
    Docs,
    /// Review (planner model).
    Review,
    /// Anything else.
    Other,
}

/// One unit of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subtask {
    /// Unique id within the plan.
    pub id: String,
    /// Title.
    pub title: String,
    /// What the executor is told.
    pub instructions: String,
    /// Kind.
    pub kind: SubtaskKind,
    /// Ids this subtask needs.
    pub depends_on: Vec<String>,
    /// Model that runs it.
    pub model: String,
    /// Reviewed under plan-and-verify.
    pub critical: bool,
}

/// A plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Subtasks, in plan order.
    pub subtasks: Vec<Subtask>,
    /// The planner's summary.
    pub summary: String,
}

/// A review verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum Review {
    /// Keep the output.
    Accept,
    /// Retry on `model` with `feedback`.
    Retry {
        /// The model to retry on.
        model: String,
        /// What to fix.
        feedback: String,
    },
    /// Escalate, for `reason`.
    Escalate {
        /// Why.
        reason: String,
    },
}
