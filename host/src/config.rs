//! One TOML file → a typed, validated configuration.
//!
//! Errors name the file, the key and the problem. With no file the daemon
//! runs on [`Config::demo`]: the seed architecture's catalog on the built-in
//! simulated provider.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use capabilities::Capabilities;
pub mod capabilities;
pub mod check;
pub mod ledger;
pub mod resilience;
pub mod rollouts;
pub use resilience::{BreakerConfig, Strategy};
mod model_names;
pub use ledger::{BudgetConfig, KeepRequests, LedgerConfig, OnUnavailable, SyncMode};
pub use model_names::{ModelNameRule, ModelTarget, ResolvedModel, glob_matches};

/// The built-in demo configuration.
pub const DEMO_TOML: &str = include_str!("demo.toml");

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the daemon listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Model names that are always routed by the policy.
    #[serde(default = "default_aliases")]
    pub aliases: Vec<String>,
    /// Patterns of other requested model names (an agent's own, such as
    /// `claude-*`), mapped to an alias or a catalog model; first match wins.
    #[serde(default)]
    pub model_names: Vec<ModelNameRule>,
    /// Whether the router may override a request that names a catalog model.
    #[serde(default)]
    pub policy_overrides_named_models: bool,
    /// The model whose price is the "before" in savings reports.
    pub baseline_model: String,
    /// Allow a non-loopback listen address without client keys.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Policy modules and their limits.
    pub policies: PoliciesConfig,
    /// Served when the router cannot decide.
    pub safe_route: SafeRoute,
    /// Upstream providers by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The model catalog.
    pub models: Vec<ModelConfig>,
    /// Client keys; none means any key is accepted (loopback only, unless
    /// `allow_unauthenticated`).
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// Retries, deadlines, breakers, escalation.
    #[serde(default)]
    pub resilience: ResilienceConfig,
    /// Bounds of the HTTP listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// Bounds of the task API.
    #[serde(default)]
    pub tasks: TasksConfig,
    /// The operator's key for the admin endpoints.
    #[serde(default)]
    pub admin: AdminConfig,
    /// How the file itself is watched.
    #[serde(default)]
    pub config: ConfigFileConfig,
    /// Request limits shared by every client with a given label value.
    #[serde(default)]
    pub label_limits: Vec<LabelLimitConfig>,
    /// Where calls and tasks are recorded.
    #[serde(default)]
    pub ledger: LedgerConfig,
    /// Spending caps per client or label value.
    #[serde(default)]
    pub budgets: Vec<BudgetConfig>,
    /// `[rollouts]`: defaults and guards of policy rollouts, and rollouts
    /// declared in the file.
    #[serde(default)]
    pub rollouts: rollouts::RolloutsConfig,
    /// Whether this is the built-in demo (not settable from a file).
    #[serde(skip)]
    pub demo: bool,
    /// The file it was read from (none for the demo or parsed text).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// SHA-256 of the text it was parsed from, hex.
    #[serde(skip)]
    pub text_sha256: String,
}

/// `[policies]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesConfig {
    /// A folder of `.wasm` modules, watched for changes. Modules there
    /// replace built-in ones of the same name.
    pub dir: Option<PathBuf>,
    /// Name of the active router module.
    #[serde(default = "default_router")]
    pub router: String,
    /// Name of the active planner module.
    #[serde(default = "default_planner")]
    pub planner: String,
    /// Wall-clock budget of one policy call, in milliseconds.
    #[serde(default = "default_call_deadline_ms")]
    pub call_deadline_ms: u64,
    /// Memory cap of a policy instance, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: usize,
    /// Most instances of one module alive at once; a call that finds them
    /// all busy waits up to a call's wall-clock bound, then gets the safe
    /// route.
    #[serde(default = "default_max_instances")]
    pub max_instances: usize,
    /// Largest module file loaded from the watched folder, in bytes.
    #[serde(default = "default_max_module_bytes")]
    pub max_module_bytes: u64,
    /// Longest a module's compile and probe call may take, in
    /// milliseconds; past it the module is refused and the last good
    /// version keeps serving.
    #[serde(default = "default_load_timeout_ms")]
    pub load_timeout_ms: u64,
    /// Where compiled modules are cached; defaults to the user cache folder.
    pub cache_dir: Option<PathBuf>,
    /// `[policies.config.<module>]`: keys and values (strings, numbers or
    /// booleans) a contract 0.2.0 module receives with the catalog.
    #[serde(default)]
    pub config: BTreeMap<String, BTreeMap<String, toml::Value>>,
}

/// `[safe_route]`: a direct route that needs no policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeRoute {
    /// The model that serves.
    pub executor: String,
    /// Models tried next.
    #[serde(default)]
    pub fallbacks: Vec<String>,
}

/// The kind of a provider: which wire format it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible chat-completions API.
    Openai,
    /// The Anthropic Messages API.
    Anthropic,
    /// Built in: deterministic answers for demos and load tests.
    Simulated,
}

/// `[providers.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Wire format.
    pub kind: ProviderKind,
    /// Base URL, e.g. `https://api.deepseek.com/v1`.
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// A file holding the API key (its whole content, trimmed), read at
    /// start and at every reload; for keys rotated on disk. Not with
    /// `api_key_env`.
    pub api_key_file: Option<PathBuf>,
    /// Per-attempt timeout in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Connect timeout in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Simulated: latency before the first token, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Simulated: streaming speed (0 = instant).
    #[serde(default)]
    pub tokens_per_second: u32,
    /// Simulated: share of requests that fail with a 503, 0.0 to 1.0.
    #[serde(default)]
    pub error_rate: f64,
    /// Largest answer body read from this provider, in bytes (a streamed
    /// answer: its whole length). An answer past it fails the attempt.
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: usize,
    /// OpenAI format only: the upstream also serves the Responses API
    /// (`POST {base_url}/responses`), so a `/v1/responses` request routed
    /// here is passed through as its client sent it instead of translated
    /// to chat completions.
    #[serde(default)]
    pub responses: bool,
}

/// `[[models]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Catalog id clients and policies use.
    pub id: String,
    /// Provider name (a key of `[providers]`).
    pub provider: String,
    /// The model's name at the provider; defaults to `id`.
    pub upstream: Option<String>,
    /// Free-form roles (`planner`, `executor`, `premium`).
    #[serde(default)]
    pub roles: Vec<String>,
    /// USD per million input tokens.
    pub input_usd_per_mtok: f64,
    /// USD per million output tokens.
    pub output_usd_per_mtok: f64,
    /// USD per million cached input tokens; defaults to the input price.
    pub cached_usd_per_mtok: Option<f64>,
    /// USD per million input tokens written to the prompt cache (Anthropic's
    /// `cache_creation_input_tokens`, billed at a premium); defaults to the
    /// input price.
    #[serde(default)]
    pub cache_write_usd_per_mtok: Option<f64>,
    /// Context window in tokens.
    pub context_window: u32,
    /// Whether the model takes OpenAI's `reasoning_effort`: an Anthropic
    /// request's `output_config.effort` or thinking budget becomes one only
    /// for such a model on an OpenAI-format provider.
    #[serde(default)]
    pub reasoning: bool,
    /// What the model can do besides text: any of `vision`, `tools`,
    /// `json`, `reasoning`. Left out, the model is taken to do everything
    /// (as before capabilities existed) and the host corrects nothing.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// Free-form tags policies see (`fast`, `eu`, ...).
    #[serde(default)]
    pub tags: Vec<String>,
    /// How traffic is shared between the model's endpoints.
    #[serde(default)]
    pub balance: Strategy,
    /// More endpoints (instances, regions, keys) besides `provider`.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
}

/// `[[models.endpoints]]`: another place to call a model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Provider name.
    pub provider: String,
    /// The model's name there; defaults to the model's `upstream`.
    pub upstream: Option<String>,
    /// USD per million input tokens at this endpoint, where its provider
    /// charges differently from the model's `input_usd_per_mtok` (one
    /// model served by several providers at different prices).
    #[serde(default)]
    pub input_usd_per_mtok: Option<f64>,
    /// USD per million output tokens here; defaults to the model's.
    #[serde(default)]
    pub output_usd_per_mtok: Option<f64>,
    /// USD per million cached input tokens here; defaults to the model's
    /// cached price, else this endpoint's input price.
    #[serde(default)]
    pub cached_usd_per_mtok: Option<f64>,
    /// USD per million input tokens written to the prompt cache here;
    /// defaults to the model's cache-write price, else this endpoint's
    /// input price.
    #[serde(default)]
    pub cache_write_usd_per_mtok: Option<f64>,
}

/// `[resilience]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    /// Total time a request may take, across retries and fallbacks; a route
    /// or the `x-pointsman-deadline-ms` header may shorten it.
    pub total_deadline_ms: u64,
    /// Time a stream may take to produce its first event.
    pub first_token_timeout_ms: u64,
    /// Retries on the same model after a retryable failure.
    pub max_retries: u32,
    /// Backoff before the first retry (the ceiling of its jitter).
    pub backoff_base_ms: u64,
    /// Longest backoff; a longer `Retry-After` moves on to the next model.
    pub backoff_max_ms: u64,
    /// Retries allowed per request on average, daemon-wide (0 to 1).
    pub retry_budget_ratio: f64,
    /// Retries always allowed, however quiet the daemon.
    pub retry_budget_reserve: u32,
    /// Tried once every model of a route has failed (the seed's premium
    /// fallback); none disables escalation.
    pub escalation_model: Option<String>,
    /// Circuit breakers, per endpoint.
    pub breaker: BreakerConfig,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            total_deadline_ms: 300_000,
            first_token_timeout_ms: 60_000,
            max_retries: 2,
            backoff_base_ms: 100,
            backoff_max_ms: 5_000,
            retry_budget_ratio: 0.2,
            retry_budget_reserve: 10,
            escalation_model: None,
            breaker: BreakerConfig::default(),
        }
    }
}

impl ModelConfig {
    /// The capabilities config lists (unknown names are reported by
    /// [`Config::problems`]), or all of them when it lists none.
    pub fn capabilities(&self) -> Capabilities {
        let Some(names) = &self.capabilities else {
            return Capabilities::ALL;
        };
        let mut capabilities = Capabilities::NONE;
        for name in names {
            capabilities.add(name);
        }
        capabilities
    }

    /// The upstream model name.
    pub fn upstream(&self) -> &str {
        self.upstream.as_deref().unwrap_or(&self.id)
    }

    /// Every endpoint as (provider, upstream model name), the main one first.
    pub fn endpoint_list(&self) -> Vec<(&str, &str)> {
        std::iter::once((self.provider.as_str(), self.upstream()))
            .chain(self.endpoints.iter().map(|e| {
                (
                    e.provider.as_str(),
                    e.upstream.as_deref().unwrap_or(self.upstream()),
                )
            }))
            .collect()
    }
}

/// `[[clients]]`: a key allowed to use the daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Who this is, for logs and labels.
    pub name: String,
    /// SHA-256 of the key, hex (`printf %s "$KEY" | sha256sum`).
    pub key_sha256: String,
    /// Labels added to the client's requests (`team`, `project`). They win
    /// over any label the client sends itself.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Most requests this client may start per minute (off when unset).
    pub requests_per_minute: Option<u32>,
    /// Most requests this client may have in flight at once (off when
    /// unset).
    pub max_concurrent: Option<u32>,
}

/// `[[label_limits]]`: limits shared by all clients whose key carries
/// `label`, one budget per value (e.g. per `team`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelLimitConfig {
    /// A label set on client keys in `[[clients]]`.
    pub label: String,
    /// Most requests per minute for each value of the label.
    pub requests_per_minute: Option<u32>,
    /// Most requests in flight at once for each value of the label.
    pub max_concurrent: Option<u32>,
}

/// `[server]`: bounds of the HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// A request's head must arrive within this many milliseconds of the
    /// connection opening or of the previous answer ending; on HTTP/1.1 it
    /// is also how long a kept-alive connection may sit idle.
    pub header_timeout_ms: u64,
    /// A request's body must arrive within this many milliseconds.
    pub body_timeout_ms: u64,
    /// Most client connections open at once; further ones wait in the
    /// kernel's accept queue until one closes.
    pub max_connections: usize,
    /// On SIGTERM or SIGINT, how long requests (streams included) and tasks
    /// in flight may go on before the daemon exits anyway, in milliseconds.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_timeout_ms: 20_000,
            body_timeout_ms: 60_000,
            max_connections: 4096,
            shutdown_grace_ms: 30_000,
        }
    }
}

/// `[tasks]`: bounds of the task API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// How long a finished task stays readable, in seconds.
    pub keep_secs: u64,
    /// Most tasks kept per client; past it the client's oldest finished
    /// task is forgotten, and when all of them are still running a new one
    /// is refused (429).
    pub max_per_client: usize,
    /// Longest task title, in bytes.
    pub max_title_bytes: usize,
    /// Longest task description, in bytes.
    pub max_description_bytes: usize,
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig {
            keep_secs: 86_400,
            max_per_client: 1_000,
            max_title_bytes: 1_024,
            max_description_bytes: 256 * 1024,
        }
    }
}

/// `[config]`: the config file itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFileConfig {
    /// Reload when the file changes (as on SIGHUP or `pointsman reload`).
    #[serde(default)]
    pub watch: bool,
}

/// `[admin]`: the operator's key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// SHA-256 of the admin key, hex. When set, `/metrics`, `/v1/policies`,
    /// `/v1/providers` and every admin endpoint require this key; the
    /// daemon refuses to listen beyond loopback without it.
    pub key_sha256: Option<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body() -> usize {
    8 << 20
}
fn default_aliases() -> Vec<String> {
    vec!["auto".into()]
}
fn default_router() -> String {
    "seed-matrix".into()
}
fn default_planner() -> String {
    "seed-planner".into()
}
fn default_call_deadline_ms() -> u64 {
    10
}
fn default_memory_mib() -> usize {
    256
}
fn default_max_instances() -> usize {
    16
}
fn default_max_module_bytes() -> u64 {
    64 << 20
}
fn default_load_timeout_ms() -> u64 {
    60_000
}
fn default_timeout_ms() -> u64 {
    120_000
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_max_answer_bytes() -> usize {
    64 << 20
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut config =
            Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config.source = Some(path.to_path_buf());
        // Relative folders are relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        let key_files = config
            .providers
            .values_mut()
            .filter_map(|p| p.api_key_file.as_mut());
        for dir in [&mut config.policies.dir, &mut config.policies.cache_dir]
            .into_iter()
            .flatten()
            .chain(key_files)
        {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        Ok(config)
    }

    /// The built-in demo: the seed's catalog on the simulated provider.
    pub fn demo() -> Config {
        let mut config = Self::parse(DEMO_TOML).expect("the built-in demo config is valid");
        config.demo = true;
        config
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let mut config: Config = toml::from_str(text)?;
        config.validate()?;
        config.text_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()));
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let problems = self.problems();
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Ok(())
    }

    /// Every problem of the configuration, each as `key: what is wrong`
    /// (empty when it is valid). What serde could not parse is reported
    /// before this is called.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = Vec::new();
        macro_rules! problem {
            ($($message:tt)*) => {
                problems.push(format!($($message)*))
            };
        }
        let mut ids = HashSet::new();
        for (i, model) in self.models.iter().enumerate() {
            let at = format!("models[{i}] ({})", model.id);
            if model.id.is_empty() {
                problem!("models[{i}].id: must not be empty");
                continue;
            }
            if !ids.insert(model.id.as_str()) {
                problem!("{at}.id: duplicate model id");
            }
            if self.aliases.contains(&model.id) {
                problem!("{at}.id: is also an alias");
            }
            if !self.providers.contains_key(&model.provider) {
                problem!(
                    "{at}.provider: no provider named {:?} in [providers]",
                    model.provider
                );
            }
            for (key, price) in [
                ("input_usd_per_mtok", Some(model.input_usd_per_mtok)),
                ("output_usd_per_mtok", Some(model.output_usd_per_mtok)),
                ("cached_usd_per_mtok", model.cached_usd_per_mtok),
                ("cache_write_usd_per_mtok", model.cache_write_usd_per_mtok),
            ] {
                if price.is_some_and(|p| !(p.is_finite() && p >= 0.0)) {
                    problem!("{at}.{key}: must be a price of zero or more");
                }
            }
            for (j, endpoint) in model.endpoints.iter().enumerate() {
                if !self.providers.contains_key(&endpoint.provider) {
                    problem!(
                        "{at}.endpoints[{j}].provider: no provider named {:?} in [providers]",
                        endpoint.provider
                    );
                }
                for (key, price) in [
                    ("input_usd_per_mtok", endpoint.input_usd_per_mtok),
                    ("output_usd_per_mtok", endpoint.output_usd_per_mtok),
                    ("cached_usd_per_mtok", endpoint.cached_usd_per_mtok),
                    (
                        "cache_write_usd_per_mtok",
                        endpoint.cache_write_usd_per_mtok,
                    ),
                ] {
                    if price.is_some_and(|p| !(p.is_finite() && p >= 0.0)) {
                        problem!("{at}.endpoints[{j}].{key}: must be a price of zero or more");
                    }
                }
            }
            if model.context_window == 0 {
                problem!("{at}.context_window: must be more than zero");
            }
        }
        if self.models.is_empty() {
            problem!("models: the catalog is empty");
        }
        if let Err(e) = self.validate_model_names() {
            problem!("{e}");
        }
        let unknown = |key: &str, id: &str| {
            (!ids.contains(id)).then(|| format!("{key}: no model {id:?} in the catalog"))
        };
        problems.extend(unknown("baseline_model", &self.baseline_model));
        if let Some(id) = &self.resilience.escalation_model {
            problems.extend(unknown("resilience.escalation_model", id));
        }
        let r = &self.resilience;
        if !(0.0..=1.0).contains(&r.retry_budget_ratio) {
            problem!("resilience.retry_budget_ratio: must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&r.breaker.failure_rate) || r.breaker.failure_rate == 0.0 {
            problem!("resilience.breaker.failure_rate: must be more than 0 and at most 1");
        }
        if r.total_deadline_ms == 0 || r.first_token_timeout_ms == 0 {
            problem!("resilience: deadlines must be more than zero");
        }
        problems.extend(unknown("safe_route.executor", &self.safe_route.executor));
        for (i, id) in self.safe_route.fallbacks.iter().enumerate() {
            problems.extend(unknown(&format!("safe_route.fallbacks[{i}]"), id));
        }
        for (name, provider) in &self.providers {
            let at = format!("providers.{name}");
            match provider.kind {
                ProviderKind::Simulated => {
                    if !(0.0..=1.0).contains(&provider.error_rate) {
                        problem!("{at}.error_rate: must be between 0 and 1");
                    }
                }
                ProviderKind::Openai | ProviderKind::Anthropic => {
                    let Some(url) = &provider.base_url else {
                        problem!("{at}.base_url: required for kind {:?}", provider.kind);
                        continue;
                    };
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        problem!("{at}.base_url: must start with http:// or https://");
                    }
                }
            }
            if provider.responses && provider.kind != ProviderKind::Openai {
                problem!(
                    "{at}.responses: only an OpenAI-format provider (kind \"openai\") speaks the Responses API"
                );
            }
            if provider.timeout_ms == 0 {
                problem!("{at}.timeout_ms: must be more than zero");
            }
            if provider.api_key_env.is_some() && provider.api_key_file.is_some() {
                problem!("{at}.api_key_file: set api_key_env or api_key_file, not both");
            }
        }
        for (i, client) in self.clients.iter().enumerate() {
            let key = &client.key_sha256;
            if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                problem!(
                    "clients[{i}] ({}).key_sha256: must be 64 hex digits (the SHA-256 of the key, never the key itself)",
                    client.name
                );
            }
        }
        let sha256 = |key: &str| key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
        if let Some(key) = &self.admin.key_sha256
            && !sha256(key)
        {
            problem!(
                "admin.key_sha256: must be 64 hex digits (the SHA-256 of the key, never the key itself)"
            );
        }
        for (i, limit) in self.label_limits.iter().enumerate() {
            if !self
                .clients
                .iter()
                .any(|c| c.labels.contains_key(&limit.label) || limit.label == "client")
            {
                problem!(
                    "label_limits[{i}].label: no client key in [[clients]] carries the label {:?}",
                    limit.label
                );
            }
        }
        if let Err(e) = self.rollouts.validate() {
            problem!("{e}");
        }
        // A budget that names nothing matches nothing: a misspelt client
        // would silently leave its spending uncapped.
        for (i, budget) in self.budgets.iter().enumerate() {
            let at = format!("budgets[{i}]");
            match (&budget.client, &budget.label) {
                (Some(_), Some(_)) | (None, None) => {
                    problem!("{at}: set client or label (one of them)")
                }
                (Some(name), None) => {
                    if !self.clients.iter().any(|c| &c.name == name) {
                        problem!("{at}.client: no client named {name:?} in [[clients]]");
                    }
                }
                (None, Some(label)) => {
                    if !label
                        .split_once('=')
                        .is_some_and(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty())
                    {
                        problem!("{at}.label: must be KEY=VALUE (e.g. \"team=platform\")");
                    }
                }
            }
            if budget.daily_usd.is_none() && budget.monthly_usd.is_none() {
                problem!("{at}: set daily_usd, monthly_usd or both");
            }
            for (key, usd) in [
                ("daily_usd", budget.daily_usd),
                ("monthly_usd", budget.monthly_usd),
            ] {
                if usd.is_some_and(|u| !(u.is_finite() && u >= 0.0)) {
                    problem!("{at}.{key}: must be an amount of zero or more");
                }
            }
        }
        let limits = self
            .clients
            .iter()
            .map(|c| {
                (
                    format!("clients ({})", c.name),
                    c.requests_per_minute,
                    c.max_concurrent,
                )
            })
            .chain(self.label_limits.iter().enumerate().map(|(i, l)| {
                (
                    format!("label_limits[{i}]"),
                    l.requests_per_minute,
                    l.max_concurrent,
                )
            }));
        for (at, rpm, concurrent) in limits {
            if rpm == Some(0) || concurrent == Some(0) {
                problem!(
                    "{at}: requests_per_minute and max_concurrent must be more than zero (leave them out for no limit)"
                );
            }
        }
        let server = &self.server;
        if server.header_timeout_ms == 0 || server.body_timeout_ms == 0 {
            problem!("server: timeouts must be more than zero");
        }
        if server.max_connections == 0 {
            problem!("server.max_connections: must be more than zero");
        }
        let tasks = &self.tasks;
        if tasks.keep_secs == 0 || tasks.max_per_client == 0 {
            problem!("tasks: keep_secs and max_per_client must be more than zero");
        }
        for (name, provider) in &self.providers {
            if provider.max_answer_bytes < 1024 {
                problem!("providers.{name}.max_answer_bytes: must be at least 1024");
            }
        }
        for (i, model) in self.models.iter().enumerate() {
            for name in model.capabilities.iter().flatten() {
                if !Capabilities::NAMES.contains(&name.as_str()) {
                    problem!(
                        "models[{i}] ({}).capabilities: unknown capability {name:?}; known: {}",
                        model.id,
                        Capabilities::NAMES.join(", ")
                    );
                }
            }
        }
        for (module, values) in &self.policies.config {
            for (key, value) in values {
                if config_text(value).is_none() {
                    problem!(
                        "policies.config.{module}.{key}: must be a string, a number or a boolean"
                    );
                }
            }
        }
        if self.policies.call_deadline_ms == 0 {
            problem!("policies.call_deadline_ms: must be more than zero");
        }
        if self.policies.max_instances == 0 {
            problem!("policies.max_instances: must be at least 1");
        }
        if self.policies.memory_mib < 16 {
            problem!("policies.memory_mib: must be at least 16");
        }
        problems
    }

    /// `[policies.config.<module>]` as each module receives it: keys and
    /// values as text, in key order.
    pub fn policy_config(&self) -> std::collections::HashMap<String, Vec<(String, String)>> {
        self.policies
            .config
            .iter()
            .map(|(module, values)| {
                let values = values
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), config_text(v)?)))
                    .collect();
                (module.clone(), values)
            })
            .collect()
    }
}

/// A `[policies.config.<module>]` value as a module receives it: strings as
/// they are, numbers and booleans as TOML writes them; `None` for tables,
/// arrays and dates.
fn config_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_is_the_seed_catalog() {
        let config = Config::demo();
        let ids: Vec<&str> = config.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "claude-opus-4.5",
                "deepseek-v3.2",
                "deepseek-v3.2-exp",
                "glm-4.7"
            ]
        );
        assert_eq!(config.baseline_model, "claude-opus-4.5");
    }

    #[test]
    fn seed_example_is_valid() {
        let text = include_str!("../../examples/seed.toml");
        Config::parse(text).unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let broken = DEMO_TOML.replace("executor = \"glm-4.7\"", "executor = \"gpt-9\"");
        let err = Config::parse(&broken).unwrap_err().to_string();
        assert!(err.contains("safe_route.executor"), "{err}");
        assert!(err.contains("gpt-9"), "{err}");

        let broken = DEMO_TOML.replace("context_window = 128000", "context_window = \"big\"");
        let err = Config::parse(&broken).unwrap_err().to_string();
        assert!(err.contains("context_window"), "{err}");

        let broken = format!("{DEMO_TOML}\nlisten_on = 1\n");
        let err = Config::parse(&broken).unwrap_err().to_string();
        assert!(err.contains("listen_on"), "{err}");
    }

    #[test]
    fn only_an_openai_provider_speaks_the_responses_api() {
        let with = |kind: &str, url: &str| {
            Config::parse(&format!(
                "{DEMO_TOML}\n[providers.up]\nkind = \"{kind}\"\n{url}responses = true\n"
            ))
        };
        with("openai", "base_url = \"http://127.0.0.1:9/v1\"\n").unwrap();
        for kind in ["anthropic", "simulated"] {
            let err = with(kind, "base_url = \"http://127.0.0.1:9\"\n")
                .unwrap_err()
                .to_string();
            assert!(err.contains("providers.up.responses"), "{kind}: {err}");
        }
    }

    #[test]
    fn a_budget_must_name_what_it_caps() {
        let client = format!(
            "[[clients]]\nname = \"web\"\nkey_sha256 = \"{}\"\n",
            "a".repeat(64)
        );
        let with = |budget: &str| Config::parse(&format!("{DEMO_TOML}\n{client}{budget}"));
        with("[[budgets]]\nclient = \"web\"\ndaily_usd = 5.0\n").unwrap();
        with("[[budgets]]\nlabel = \"team=core\"\nmonthly_usd = 50.0\n").unwrap();
        for (budget, expected) in [
            (
                "[[budgets]]\nclient = \"wbe\"\ndaily_usd = 5.0\n",
                "budgets[0].client: no client named \"wbe\"",
            ),
            (
                "[[budgets]]\nlabel = \"team\"\ndaily_usd = 5.0\n",
                "budgets[0].label: must be KEY=VALUE",
            ),
            (
                "[[budgets]]\nclient = \"web\"\n",
                "set daily_usd, monthly_usd",
            ),
            (
                "[[budgets]]\nclient = \"web\"\ndaily_usd = -1.0\n",
                "budgets[0].daily_usd: must be an amount",
            ),
            ("[[budgets]]\ndaily_usd = 1.0\n", "set client or label"),
        ] {
            let err = with(budget).unwrap_err().to_string();
            assert!(err.contains(expected), "{budget}: {err}");
        }
    }
}
