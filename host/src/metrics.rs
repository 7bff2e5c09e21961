//! Counters and histograms, exported for Prometheus at `/metrics`.
//!
//! Names follow Prometheus conventions (`_total` for counters, base units).

use crate::policy::PolicyError;

/// A policy's answer was replaced by the safe route.
pub fn policy_fallback(module: &str, error: &PolicyError) {
    let reason = match error {
        PolicyError::Rejected(_) => "rejected",
        PolicyError::Timeout(_) => "timeout",
        PolicyError::OutOfMemory => "memory",
        PolicyError::Trap(_) => "trap",
        PolicyError::WrongWorld(_) => "wrong_world",
        PolicyError::Invalid(_) => "invalid",
    };
    metrics::counter!("switchyard_policy_fallbacks_total", "module" => module.to_string(), "reason" => reason)
        .increment(1);
}

/// A module version started serving.
pub fn policy_loaded(module: &str) {
    metrics::counter!("switchyard_policy_loads_total", "module" => module.to_string()).increment(1);
}

/// A module failed to load; the previous version keeps serving.
pub fn policy_load_failed(module: &str) {
    metrics::counter!("switchyard_policy_load_failures_total", "module" => module.to_string())
        .increment(1);
}
