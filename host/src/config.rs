//! One TOML file → a typed, validated configuration.
//!
//! Errors name the file, the key and the problem. With no file the daemon
//! runs on [`Config::demo`]: the seed architecture's catalog on the built-in
//! simulated provider.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::policy::types::{ModelInfo, Route, Tier};
use crate::resilience::balance::Strategy;
use crate::resilience::breaker::BreakerConfig;

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
    /// Whether this is the built-in demo (not settable from a file).
    #[serde(skip)]
    pub demo: bool,
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
    /// Where compiled modules are cached; defaults to the user cache folder.
    pub cache_dir: Option<PathBuf>,
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
    /// Labels added to the client's requests (`team`, `project`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
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
fn default_timeout_ms() -> u64 {
    120_000
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut config =
            Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        // Relative folders are relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        for dir in [&mut config.policies.dir, &mut config.policies.cache_dir]
            .into_iter()
            .flatten()
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
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let mut ids = HashSet::new();
        for (i, model) in self.models.iter().enumerate() {
            let at = format!("models[{i}] ({})", model.id);
            if model.id.is_empty() {
                bail!("models[{i}].id: must not be empty");
            }
            if !ids.insert(model.id.as_str()) {
                bail!("{at}.id: duplicate model id");
            }
            if self.aliases.contains(&model.id) {
                bail!("{at}.id: is also an alias");
            }
            if !self.providers.contains_key(&model.provider) {
                bail!(
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
                    bail!("{at}.{key}: must be a price of zero or more");
                }
            }
            for (j, endpoint) in model.endpoints.iter().enumerate() {
                if !self.providers.contains_key(&endpoint.provider) {
                    bail!(
                        "{at}.endpoints[{j}].provider: no provider named {:?} in [providers]",
                        endpoint.provider
                    );
                }
            }
            if model.context_window == 0 {
                bail!("{at}.context_window: must be more than zero");
            }
        }
        if self.models.is_empty() {
            bail!("models: the catalog is empty");
        }
        let known = |key: &str, id: &str| -> anyhow::Result<()> {
            if ids.contains(id) {
                Ok(())
            } else {
                bail!("{key}: no model {id:?} in the catalog")
            }
        };
        known("baseline_model", &self.baseline_model)?;
        if let Some(id) = &self.resilience.escalation_model {
            known("resilience.escalation_model", id)?;
        }
        let r = &self.resilience;
        if !(0.0..=1.0).contains(&r.retry_budget_ratio) {
            bail!("resilience.retry_budget_ratio: must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&r.breaker.failure_rate) || r.breaker.failure_rate == 0.0 {
            bail!("resilience.breaker.failure_rate: must be more than 0 and at most 1");
        }
        if r.total_deadline_ms == 0 || r.first_token_timeout_ms == 0 {
            bail!("resilience: deadlines must be more than zero");
        }
        known("safe_route.executor", &self.safe_route.executor)?;
        for (i, id) in self.safe_route.fallbacks.iter().enumerate() {
            known(&format!("safe_route.fallbacks[{i}]"), id)?;
        }
        for (name, provider) in &self.providers {
            let at = format!("providers.{name}");
            match provider.kind {
                ProviderKind::Simulated => {
                    if !(0.0..=1.0).contains(&provider.error_rate) {
                        bail!("{at}.error_rate: must be between 0 and 1");
                    }
                }
                ProviderKind::Openai | ProviderKind::Anthropic => {
                    let Some(url) = &provider.base_url else {
                        bail!("{at}.base_url: required for kind {:?}", provider.kind);
                    };
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        bail!("{at}.base_url: must start with http:// or https://");
                    }
                }
            }
            if provider.timeout_ms == 0 {
                bail!("{at}.timeout_ms: must be more than zero");
            }
        }
        for (i, client) in self.clients.iter().enumerate() {
            let key = &client.key_sha256;
            if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "clients[{i}] ({}).key_sha256: must be 64 hex digits (the SHA-256 of the key, never the key itself)",
                    client.name
                );
            }
        }
        if self.policies.call_deadline_ms == 0 {
            bail!("policies.call_deadline_ms: must be more than zero");
        }
        if self.policies.memory_mib < 16 {
            bail!("policies.memory_mib: must be at least 16");
        }
        Ok(())
    }

    /// The catalog as policies see it, all healthy (resilience fills in live
    /// health when it has any).
    pub fn catalog(&self) -> Vec<ModelInfo> {
        self.models
            .iter()
            .map(|m| ModelInfo {
                id: m.id.clone(),
                roles: m.roles.clone(),
                input_usd_per_mtok: m.input_usd_per_mtok,
                output_usd_per_mtok: m.output_usd_per_mtok,
                context_window: m.context_window,
                available: true,
                success_rate: 1.0,
                p50_latency_ms: 0,
            })
            .collect()
    }

    /// The safe route as a route.
    pub fn safe_route(&self) -> Route {
        Route {
            tier: Tier::Direct,
            executor: self.safe_route.executor.clone(),
            fallbacks: self.safe_route.fallbacks.clone(),
            planner: None,
            reasoning: "safe route".into(),
            deadline_ms: None,
            max_cost_usd: None,
        }
    }

    /// The policy limits.
    pub fn policy_limits(&self) -> crate::policy::Limits {
        crate::policy::Limits {
            call_deadline: Duration::from_millis(self.policies.call_deadline_ms),
            memory_bytes: self.policies.memory_mib << 20,
        }
    }

    /// Where compiled policies are cached.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(dir) = &self.policies.cache_dir {
            return dir.clone();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("pointsman").join("components")
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
}
