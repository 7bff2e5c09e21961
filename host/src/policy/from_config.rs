//! What the policy layer takes from the configuration: the catalog as
//! policies see it, the safe route, the sandbox's limits and the compile
//! cache's folder. Kept here, not in `config`, so that the configuration
//! stays at the bottom of the crate and knows no policy types.

use std::path::PathBuf;
use std::time::Duration;

use super::Limits;
use super::types::{ModelInfo, Route, Tier};
use crate::config::Config;

/// The catalog as policies see it, all healthy (the dispatch layer fills
/// in live health when it has any).
pub fn catalog(config: &Config) -> Vec<ModelInfo> {
    config
        .models
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
            capabilities: m.capabilities(),
            tags: m.tags.clone(),
        })
        .collect()
}

/// The configured safe route as a route.
pub fn safe_route(config: &Config) -> Route {
    Route {
        tier: Tier::Direct,
        executor: config.safe_route.executor.clone(),
        fallbacks: config.safe_route.fallbacks.clone(),
        planner: None,
        reasoning: "safe route".into(),
        deadline_ms: None,
        max_cost_usd: None,
        max_output_tokens: None,
        labels: Vec::new(),
    }
}

/// The sandbox's limits from `[policies]`.
pub fn limits(config: &Config) -> Limits {
    Limits {
        call_deadline: Duration::from_millis(config.policies.call_deadline_ms),
        memory_bytes: config.policies.memory_mib << 20,
        max_instances: config.policies.max_instances,
    }
}

/// Where compiled policies are cached: `policies.cache_dir`, else the
/// user's cache folder; none without either (never a shared folder).
pub fn cache_dir(config: &Config) -> Option<PathBuf> {
    config
        .policies
        .cache_dir
        .clone()
        .or_else(super::cache::default_dir)
}
