//! `rollout diff`: what a shadow candidate would have changed, from the
//! decisions recorded next to the stable policy's.
//!
//! The candidate's cost is projected on each request's recorded tokens at
//! its executor's prices. A request the candidate would plan is priced as
//! its executor alone (a plan's planner call and subtasks cannot be known
//! without running them); the diff counts those requests so that the
//! projection is read with that in mind.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ledger::Prices;
use crate::ledger::record::{CallRecord, CallRole, usd};
use crate::provider::Usage;

/// Changed requests a diff shows in full.
pub const SAMPLES: usize = 10;

/// One side of a changed request.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// The tier.
    pub tier: String,
    /// The executor model.
    pub executor: String,
    /// The policy's reasoning.
    pub reasoning: String,
}

/// A request the candidate would have routed otherwise.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The request's id.
    pub request_id: String,
    /// What was served.
    pub stable: Side,
    /// What the candidate decided.
    pub candidate: Side,
}

/// What a shadow candidate would have changed over a window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Diff {
    /// Requests answered in the window, shadowed or not (a replica past
    /// `max_shadow_per_second` shadows a sample of them).
    pub answers: u64,
    /// Requests with a shadow decision on record.
    pub shadowed: u64,
    /// Requests whose shadow decision was not made by the time they
    /// settled (not counted below).
    pub late: u64,
    /// Requests the candidate would have routed to another tier or model.
    pub changed: u64,
    /// `changed / shadowed`.
    pub changed_share: f64,
    /// Share of each tier in what was served.
    pub stable_tiers: BTreeMap<String, f64>,
    /// Share of each tier in what the candidate decided.
    pub candidate_tiers: BTreeMap<String, f64>,
    /// What the served requests cost (recorded).
    pub stable_cost_usd: f64,
    /// What the candidate's routes would have cost on the same tokens.
    pub candidate_cost_usd: f64,
    /// Requests the candidate would have planned, priced as their
    /// executor alone.
    pub candidate_plans_priced_as_executor: u64,
    /// A few changed requests, with both reasonings.
    pub samples: Vec<Sample>,
}

#[derive(serde::Deserialize)]
struct Shadow {
    #[serde(default)]
    late: bool,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    executor: String,
    #[serde(default)]
    reasoning: String,
}

/// The diff of the shadowed answers among `calls`; `prices` gives a
/// catalog model's prices.
pub fn diff(calls: &[CallRecord], prices: impl Fn(&str) -> Option<Prices>) -> Diff {
    let mut d = Diff::default();
    let mut stable_tiers: BTreeMap<String, u64> = BTreeMap::new();
    let mut candidate_tiers: BTreeMap<String, u64> = BTreeMap::new();
    for call in calls.iter().filter(|c| c.role == CallRole::Answer) {
        d.answers += 1;
        let Some(text) = &call.shadow else { continue };
        let Ok(shadow) = serde_json::from_str::<Shadow>(text) else {
            continue;
        };
        if shadow.late {
            d.late += 1;
            continue;
        }
        d.shadowed += 1;
        let tier = call.tier.clone().unwrap_or_else(|| "direct".into());
        *stable_tiers.entry(tier.clone()).or_default() += 1;
        *candidate_tiers.entry(shadow.tier.clone()).or_default() += 1;
        d.stable_cost_usd += usd(call.cost_nanos);
        let usage = Usage {
            input_tokens: call.input_tokens,
            output_tokens: call.output_tokens,
            cached_input_tokens: call.cache_read_tokens,
            cache_creation_input_tokens: call.cache_write_tokens,
        };
        d.candidate_cost_usd += prices(&shadow.executor).map_or(0.0, |p| p.cost(&usage));
        if shadow.tier != "direct" {
            d.candidate_plans_priced_as_executor += 1;
        }
        let served = call.served_model.clone().unwrap_or_default();
        if shadow.tier != tier || shadow.executor != served {
            d.changed += 1;
            if d.samples.len() < SAMPLES {
                d.samples.push(Sample {
                    request_id: call.request_id.clone(),
                    stable: Side {
                        tier,
                        executor: served,
                        reasoning: call.reasoning.clone().unwrap_or_default(),
                    },
                    candidate: Side {
                        tier: shadow.tier,
                        executor: shadow.executor,
                        reasoning: shadow.reasoning,
                    },
                });
            }
        }
    }
    let share = |counts: BTreeMap<String, u64>, n: u64| {
        counts
            .into_iter()
            .map(|(k, v)| (k, v as f64 / n.max(1) as f64))
            .collect()
    };
    d.changed_share = d.changed as f64 / d.shadowed.max(1) as f64;
    d.stable_tiers = share(stable_tiers, d.shadowed);
    d.candidate_tiers = share(candidate_tiers, d.shadowed);
    d
}
