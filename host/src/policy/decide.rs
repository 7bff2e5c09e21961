//! Turning a router's answer into a route the host can serve.
//!
//! Policies are untrusted: every answer is checked against the catalog, and
//! anything unusable (an error, a trap, a timeout, an unknown model, an absurd
//! reasoning string) becomes the configured safe route, with the reason
//! logged and counted.

use serde::Serialize;

use super::module::{PolicyError, PolicyModule};
use super::types::{Features, ModelInfo, Route};

/// The longest reasoning accepted from a policy; longer is a broken policy.
pub const MAX_REASONING: usize = 16 * 1024;

/// A route and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The route to serve.
    pub route: Route,
    /// `name@hash` of the policy that decided, or `safe-route`.
    pub policy: String,
    /// Why the safe route was served instead of the policy's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// The rollout arm that decided (`<rollout id>/stable|candidate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
    /// Where a shadow candidate's decision lands, once made.
    #[serde(skip)]
    pub shadow: Option<ShadowSlot>,
    /// The shadow decision to make, which fills `shadow`: the caller runs
    /// it next to the upstream call (see [`ShadowWork`]).
    #[serde(skip)]
    pub shadow_work: Option<ShadowWork>,
}

/// A shadow decision waiting to be made. The gateway runs it on the
/// request's own task while the upstream call is in flight, so that it
/// costs no thread wake-up (spawning it cost about 10 µs of kernel time a
/// request, `bench/profile`) and never delays the answer (a shadow still
/// running when the call is done is dropped, and recorded as late).
/// Taken once; dropped untaken (a path that records no answer), it never
/// runs.
#[derive(Clone, Default)]
pub struct ShadowWork(
    std::sync::Arc<std::sync::Mutex<Option<futures::future::BoxFuture<'static, ()>>>>,
);

impl ShadowWork {
    /// Work that runs `future`.
    pub fn new(future: futures::future::BoxFuture<'static, ()>) -> Self {
        ShadowWork(std::sync::Arc::new(std::sync::Mutex::new(Some(future))))
    }

    /// The work, the first time it is asked for.
    pub fn take(&self) -> Option<futures::future::BoxFuture<'static, ()>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl std::fmt::Debug for ShadowWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShadowWork")
    }
}

/// A shadow decision as JSON, filled when the candidate has answered (it
/// runs off the request's path, so a call may settle before it does).
pub type ShadowSlot = std::sync::Arc<std::sync::OnceLock<String>>;

/// What the ledger keeps of a shadow decision.
pub fn shadow_json(d: &Decision) -> String {
    // Serialised straight from borrowed fields: building a `json!` value
    // first cost about 4 µs a request in shadow mode (bench/profile).
    #[derive(Serialize)]
    struct Shadow<'a> {
        policy: &'a str,
        tier: &'a str,
        executor: &'a str,
        planner: Option<&'a str>,
        reasoning: &'a str,
        fallback_reason: Option<&'a str>,
    }
    serde_json::to_string(&Shadow {
        policy: &d.policy,
        tier: d.route.tier.as_str(),
        executor: &d.route.executor,
        planner: d.route.planner.as_deref(),
        reasoning: &d.route.reasoning,
        fallback_reason: d.fallback_reason.as_deref(),
    })
    .unwrap_or_default()
}

/// Asks `module` for a route, falling back to `safe` when there is no module
/// or its answer cannot be used.
pub async fn decide(
    module: Option<&PolicyModule>,
    features: &Features,
    models: &[ModelInfo],
    safe: &Route,
) -> Decision {
    let Some(module) = module else {
        return fallback(
            "no router policy is loaded".into(),
            "safe-route".into(),
            safe,
        );
    };
    let policy = module.info.id();
    match ask(module, features, models).await {
        Ok(route) => Decision {
            route,
            policy,
            fallback_reason: None,
            arm: None,
            shadow: None,
            shadow_work: None,
        },
        Err(error) => {
            tracing::warn!(policy, request = %features.id, "serving the safe route: {error}");
            crate::metrics::policy_fallback(&module.info.name, error.as_str());
            fallback(error.to_string(), policy, safe)
        }
    }
}

/// Asks `module` for a route and checks it against the catalog, without a
/// fallback: what [`decide`] does before it falls back, for callers (the
/// offline commands) that count failures by kind.
pub async fn ask(
    module: &PolicyModule,
    features: &Features,
    models: &[ModelInfo],
) -> Result<Route, PolicyError> {
    let started = std::time::Instant::now();
    let answer = module.route(features, models).await;
    crate::metrics::policy_decision(&module.info.name, started.elapsed().as_secs_f64());
    answer.and_then(|r| validate(r, models))
}

/// The safe route served for `reason`, as [`decide`] serves it.
pub fn safe_route(reason: &str, safe: &Route) -> Route {
    let mut route = safe.clone();
    route.reasoning = format!("safe route: {reason}");
    route
}

fn fallback(reason: String, policy: String, safe: &Route) -> Decision {
    Decision {
        route: safe_route(&reason, safe),
        policy,
        fallback_reason: Some(reason),
        arm: None,
        shadow: None,
        shadow_work: None,
    }
}

/// Checks a route against the contract and the catalog.
pub fn validate(route: Route, models: &[ModelInfo]) -> Result<Route, PolicyError> {
    if route.reasoning.len() > MAX_REASONING {
        return Err(PolicyError::Invalid(format!(
            "reasoning of {} bytes (limit {MAX_REASONING})",
            route.reasoning.len()
        )));
    }
    for id in route.models() {
        if !models.iter().any(|m| m.id == id) {
            let shown: String = id.chars().take(64).collect();
            return Err(PolicyError::Invalid(format!("unknown model {shown:?}")));
        }
    }
    if route.tier != super::types::Tier::Direct && route.planner.is_none() {
        return Err(PolicyError::Invalid(format!(
            "tier {} without a planner",
            route.tier.as_str()
        )));
    }
    Ok(route)
}
