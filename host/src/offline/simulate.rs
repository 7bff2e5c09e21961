//! `pointsman simulate`: what routers cost on a workload, against sending
//! every request direct to the baseline model, with no upstream call.
//!
//! Requests are routed in file order, one policy at a time, with the state
//! the gateway keeps: a turn answering tool calls in a session gets the
//! `task_tier` of the session's task, and a session is planned once (the
//! daemon caches a session's plan). Prices are the catalog's input and
//! output prices (cached-input discounts are not modelled).
//!
//! - Input tokens: the daemon's tokenizer on the request (as routers see).
//! - Output tokens: the record's `output_tokens`, else [`assumed_output`].
//! - A planned tier's first request in a session costs a planner call: the
//!   request the configured planner policy builds ([`PolicyModule::plan_request`]),
//!   its tokens counted, its output at [`PLANNER_OUTPUT`] tokens, priced
//!   at the model it names; every planned request then carries the plan
//!   (that many more input tokens to the executor).
//! - Baseline: the same input tokens on the baseline model, direct, with the
//!   recorded output or the direct tier's assumption.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Serialize;

use super::input;
use super::routing::{Failure, Router, failures_by_kind};
use super::workload::{self, Record};
use super::{OutputFormat, csv_field, percent};
use crate::config::Config;
use crate::features;
use crate::orchestrator::transparent::{CONVERSATION_TOKENS, task_of};
use crate::policy::types::{ModelInfo, Route, Tier};
use crate::policy::{PolicyEngine, PolicyModule, Registry, builtin};
use crate::tokens;

/// Output tokens of a planner call.
pub const PLANNER_OUTPUT: u32 = 1_500;

/// Output tokens assumed for a request without a recorded count, by tier:
/// a planned request's executor writes more.
pub fn assumed_output(tier: Tier) -> u32 {
    match tier {
        Tier::Direct => 1_000,
        Tier::Plan | Tier::PlanAndVerify => 2_000,
    }
}

/// Days in the month and the year of the projections (the seed's).
const DAYS_A_MONTH: f64 = 30.0;
const DAYS_A_YEAR: f64 = 365.0;
/// Most examples of changed routes shown in a diff.
const DIFF_EXAMPLES: usize = 5;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// The workload file.
    pub workload: PathBuf,
    /// Requests a day, for projections.
    pub per_day: Option<f64>,
    /// How to print.
    pub format: OutputFormat,
}

/// One request under one policy.
#[derive(Debug, Clone)]
struct Priced {
    route: Route,
    failure: Option<Failure>,
    executor_usd: f64,
    planner_usd: f64,
    baseline_usd: f64,
    /// A planner call was made for this request: `Some(true)` when the
    /// planner policy built it.
    planner_call: Option<bool>,
}

/// USD of `input` and `output` tokens on `model`.
fn price(model: &ModelInfo, input: u64, output: u64) -> f64 {
    (input as f64 * model.input_usd_per_mtok + output as f64 * model.output_usd_per_mtok) / 1e6
}

/// Daily, monthly and yearly cost at a number of requests a day.
#[derive(Debug, Clone, Serialize)]
pub struct Projection {
    /// USD a day.
    pub daily: f64,
    /// USD a month (30 days).
    pub monthly: f64,
    /// USD a year (365 days).
    pub yearly: f64,
}

impl Projection {
    fn of(cost: f64, requests: usize, per_day: f64) -> Self {
        let daily = cost / requests.max(1) as f64 * per_day;
        Projection {
            daily,
            monthly: daily * DAYS_A_MONTH,
            yearly: daily * DAYS_A_YEAR,
        }
    }
}

/// One policy's results.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyResult {
    /// `name@hash`.
    pub policy: String,
    /// Requests routed.
    pub requests: usize,
    /// Requests per tier.
    pub tiers: BTreeMap<String, usize>,
    /// Requests per executor model.
    pub models: BTreeMap<String, usize>,
    /// Planner calls made (a session's first planned request).
    pub planner_calls: usize,
    /// Planner calls the planner policy could not build.
    pub planner_failures: usize,
    /// Requests whose policy call failed, by kind (served the safe route).
    pub failures: BTreeMap<String, usize>,
    /// USD of the executor calls.
    pub executor_usd: f64,
    /// USD of the planner calls.
    pub planner_usd: f64,
    /// Executor plus planner.
    pub cost_usd: f64,
    /// USD of the same requests direct on the baseline model.
    pub baseline_usd: f64,
    /// `1 - cost / baseline`.
    pub savings: Option<f64>,
    /// Projections of `cost_usd`, given `--per-day`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection: Option<Projection>,
    /// Projections of `baseline_usd`, given `--per-day`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_projection: Option<Projection>,
}

/// How a request's route changed between two policies.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    /// Route under the first policy (`tier executor`).
    pub from: String,
    /// Route under the other.
    pub to: String,
    /// Requests.
    pub requests: usize,
    /// Cost change, USD.
    pub cost_delta_usd: f64,
}

/// One changed request, with both reasonings.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// Its line in the workload.
    pub line: usize,
    /// The start of its latest user message.
    pub request: String,
    /// Route under the first policy.
    pub from: String,
    /// Why, according to the first policy.
    pub from_reasoning: String,
    /// Route under the other.
    pub to: String,
    /// Why, according to the other.
    pub to_reasoning: String,
}

/// The routes of one policy against the first.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// The first policy.
    pub from: String,
    /// The other.
    pub to: String,
    /// Requests whose route (tier, executor or planner) changes.
    pub changed: usize,
    /// By which way, most requests first.
    pub transitions: Vec<Transition>,
    /// `to`'s cost minus `from`'s, USD.
    pub cost_delta_usd: f64,
    /// A few changed requests.
    pub examples: Vec<Example>,
}

/// Everything `pointsman simulate` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The workload file.
    pub workload: String,
    /// Lines left out, with why.
    pub malformed: Vec<input::Malformed>,
    /// Requests with a recorded output count.
    pub recorded_outputs: usize,
    /// The output tokens assumed otherwise, by tier, and of a planner call.
    pub assumed_output_tokens: BTreeMap<String, u32>,
    /// The baseline model.
    pub baseline_model: String,
    /// Requests a day for the projections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_day: Option<f64>,
    /// One per policy, in the order given.
    pub policies: Vec<PolicyResult>,
    /// Each later policy against the first.
    pub diffs: Vec<Diff>,
}

/// The configured planner policy (a module of that name in the configured
/// folder, else the built-in), which builds the planner model's request.
async fn planner_module(
    config: &Config,
    catalog: &[ModelInfo],
) -> anyhow::Result<Arc<PolicyModule>> {
    let engine = PolicyEngine::new(
        crate::policy::limits(config),
        crate::policy::cache_dir(config),
    )?;
    engine.set_module_config(config.policy_config());
    let mut registry = Registry::new(engine);
    registry.load_builtins(builtin::ALL, catalog).await?;
    let name = &config.policies.planner;
    if let Some(dir) = &config.policies.dir {
        let path = dir.join(format!("{name}.wasm"));
        if path.is_file() {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            return registry.load(name, bytes, catalog).await;
        }
    }
    registry.get(name).with_context(|| {
        format!("the planner policy {name:?} is neither built in nor in policies.dir")
    })
}

/// Runs `pointsman simulate` and returns what it prints.
pub async fn run(
    config: &Config,
    routers: &[Router],
    opts: &SimulateOptions,
) -> anyhow::Result<String> {
    let (records, malformed) = workload::load(&opts.workload)?;
    if !malformed.is_empty() {
        eprintln!(
            "warning: {}; simulating the other {} line(s)",
            input::describe_malformed(&opts.workload, &malformed),
            records.len()
        );
    }
    if records.is_empty() {
        bail!(
            "{}: no usable request in the workload",
            opts.workload.display()
        );
    }
    if let Some(n) = opts.per_day
        && !(n.is_finite() && n > 0.0)
    {
        bail!("--per-day must be a positive number");
    }
    let catalog = crate::policy::catalog(config);
    let baseline = catalog
        .iter()
        .find(|m| m.id == config.baseline_model)
        .with_context(|| {
            format!(
                "the baseline model {:?} is not in the catalog",
                config.baseline_model
            )
        })?
        .clone();
    let planner = planner_module(config, &catalog).await?;
    let mut results = Vec::new();
    let mut priced_all = Vec::new();
    for router in routers {
        let priced = simulate_one(router, &planner, &baseline, &records).await;
        results.push(summarize(router, &priced, opts.per_day));
        priced_all.push(priced);
    }
    let diffs = (1..routers.len())
        .map(|i| {
            diff(
                &results[0],
                &results[i],
                &priced_all[0],
                &priced_all[i],
                &records,
            )
        })
        .collect();
    let mut assumed = BTreeMap::new();
    for tier in [Tier::Direct, Tier::Plan, Tier::PlanAndVerify] {
        assumed.insert(tier.as_str().to_string(), assumed_output(tier));
    }
    assumed.insert("planner call".to_string(), PLANNER_OUTPUT);
    let report = Report {
        workload: opts.workload.display().to_string(),
        malformed,
        recorded_outputs: records.iter().filter(|r| r.output_tokens.is_some()).count(),
        assumed_output_tokens: assumed,
        baseline_model: baseline.id.clone(),
        per_day: opts.per_day,
        policies: results,
        diffs,
    };
    Ok(match opts.format {
        OutputFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        OutputFormat::Table => table(&report),
        OutputFormat::Csv => csv(&report),
    })
}

/// Routes and prices every record under one router, in order.
async fn simulate_one(
    router: &Router,
    planner: &PolicyModule,
    baseline: &ModelInfo,
    records: &[Record],
) -> Vec<Priced> {
    let catalog = &router.catalog;
    let model = |id: &str| catalog.iter().find(|m| m.id == id);
    // Per session: the tier its current task started with, and whether it
    // has a plan (`false`: the planner call failed).
    let mut task_tiers: HashMap<String, Tier> = HashMap::new();
    let mut plans: HashMap<String, bool> = HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let mut features = record.features();
        features
            .labels
            .retain(|(k, _)| k != features::TASK_TIER_LABEL);
        let continues = features::answers_tools(&features.messages);
        if continues && let Some(tier) = features.session.as_ref().and_then(|s| task_tiers.get(s)) {
            features::set_label(
                &mut features.labels,
                features::TASK_TIER_LABEL,
                tier.as_str().to_string(),
            );
        }
        let routed = router.route(&features).await;
        let route = routed.route;
        if !continues && let Some(session) = &features.session {
            task_tiers.insert(session.clone(), route.tier);
        }
        let output = record.output_tokens.unwrap_or(assumed_output(route.tier)) as u64;
        let mut input = features.input_tokens as u64;
        let mut planner_usd = 0.0;
        let mut planner_call = None;
        if route.tier != Tier::Direct {
            let known = features
                .session
                .as_ref()
                .and_then(|s| plans.get(s))
                .copied();
            let has_plan = match known {
                Some(has_plan) => has_plan,
                None => {
                    let call = plan_call(planner, record, &features, &route, catalog).await;
                    if let Some(usd) = call {
                        planner_usd = usd;
                    }
                    planner_call = Some(call.is_some());
                    if let Some(session) = &features.session {
                        plans.insert(session.clone(), call.is_some());
                    }
                    call.is_some()
                }
            };
            if has_plan {
                input += PLANNER_OUTPUT as u64;
            }
        }
        let executor_usd = model(&route.executor).map_or(0.0, |m| price(m, input, output));
        out.push(Priced {
            // The baseline is a direct call: its output, when not recorded,
            // is the direct tier's assumption, whatever the policy chose, so
            // every policy has the same baseline.
            baseline_usd: price(
                baseline,
                features.input_tokens as u64,
                record.output_tokens.unwrap_or(assumed_output(Tier::Direct)) as u64,
            ),
            route,
            failure: routed.failure,
            executor_usd,
            planner_usd,
            planner_call,
        });
    }
    out
}

/// The USD of the planner call for a planned request, or `None` when the
/// planner policy cannot build it (the daemon then serves without a plan).
async fn plan_call(
    planner: &PolicyModule,
    record: &Record,
    features: &crate::policy::types::Features,
    route: &Route,
    catalog: &[ModelInfo],
) -> Option<f64> {
    let planner_model = route
        .planner
        .as_deref()
        .and_then(|id| catalog.iter().find(|m| m.id == id));
    let budget = planner_model.map_or(CONVERSATION_TOKENS, |m| {
        CONVERSATION_TOKENS.min(m.context_window as usize / 2)
    });
    let task = task_of(features, &record.conversation(), route, budget);
    let request = match planner.plan_request(&task, catalog).await {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!(line = record.line, "the planner policy failed: {e}");
            return None;
        }
    };
    // The daemon calls the model the planner names, then the route's planner.
    let model = catalog
        .iter()
        .find(|m| m.id == request.model)
        .or(planner_model)?;
    let input: u64 = request
        .messages
        .iter()
        .map(|m| (tokens::count(&m.content) + tokens::PER_MESSAGE) as u64)
        .sum();
    let output = PLANNER_OUTPUT.min(request.max_output_tokens.unwrap_or(u32::MAX)) as u64;
    Some(price(model, input, output))
}

fn summarize(router: &Router, priced: &[Priced], per_day: Option<f64>) -> PolicyResult {
    let mut tiers = BTreeMap::new();
    let mut models = BTreeMap::new();
    for p in priced {
        *tiers.entry(p.route.tier.as_str().to_string()).or_insert(0) += 1;
        *models.entry(p.route.executor.clone()).or_insert(0) += 1;
    }
    let executor_usd: f64 = priced.iter().map(|p| p.executor_usd).sum();
    let planner_usd: f64 = priced.iter().map(|p| p.planner_usd).sum();
    let baseline_usd: f64 = priced.iter().map(|p| p.baseline_usd).sum();
    let cost_usd = executor_usd + planner_usd;
    let routed: Vec<super::routing::Routed> = priced
        .iter()
        .map(|p| super::routing::Routed {
            route: p.route.clone(),
            failure: p.failure.clone(),
        })
        .collect();
    PolicyResult {
        policy: router.module.info.id(),
        requests: priced.len(),
        tiers,
        models,
        planner_calls: priced
            .iter()
            .filter(|p| p.planner_call == Some(true))
            .count(),
        planner_failures: priced
            .iter()
            .filter(|p| p.planner_call == Some(false))
            .count(),
        failures: failures_by_kind(&routed),
        executor_usd,
        planner_usd,
        cost_usd,
        baseline_usd,
        savings: (baseline_usd > 0.0).then(|| 1.0 - cost_usd / baseline_usd),
        projection: per_day.map(|n| Projection::of(cost_usd, priced.len(), n)),
        baseline_projection: per_day.map(|n| Projection::of(baseline_usd, priced.len(), n)),
    }
}

/// A route as `tier executor` (and its planner, when planned).
fn route_name(route: &Route) -> String {
    match &route.planner {
        Some(planner) if route.tier != Tier::Direct => {
            format!(
                "{} {} (planner {planner})",
                route.tier.as_str(),
                route.executor
            )
        }
        _ => format!("{} {}", route.tier.as_str(), route.executor),
    }
}

fn diff(
    a: &PolicyResult,
    b: &PolicyResult,
    pa: &[Priced],
    pb: &[Priced],
    records: &[Record],
) -> Diff {
    let mut transitions: BTreeMap<(String, String), (usize, f64)> = BTreeMap::new();
    let mut examples = Vec::new();
    let mut changed = 0;
    for ((x, y), record) in pa.iter().zip(pb).zip(records) {
        let (from, to) = (route_name(&x.route), route_name(&y.route));
        if from == to {
            continue;
        }
        changed += 1;
        let delta = (y.executor_usd + y.planner_usd) - (x.executor_usd + x.planner_usd);
        let entry = transitions
            .entry((from.clone(), to.clone()))
            .or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 += delta;
        if examples.len() < DIFF_EXAMPLES {
            examples.push(Example {
                line: record.line,
                request: record.excerpt(),
                from,
                from_reasoning: x.route.reasoning.clone(),
                to,
                to_reasoning: y.route.reasoning.clone(),
            });
        }
    }
    let mut transitions: Vec<Transition> = transitions
        .into_iter()
        .map(|((from, to), (requests, cost_delta_usd))| Transition {
            from,
            to,
            requests,
            cost_delta_usd,
        })
        .collect();
    transitions.sort_by_key(|t| std::cmp::Reverse(t.requests));
    Diff {
        from: a.policy.clone(),
        to: b.policy.clone(),
        changed,
        transitions,
        cost_delta_usd: b.cost_usd - a.cost_usd,
        examples,
    }
}

fn usd(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("${v:.0}")
    } else if v.abs() >= 0.01 {
        format!("${v:.2}")
    } else {
        format!("${v:.4}")
    }
}

fn share(n: usize, total: usize) -> String {
    format!("{} ({n})", percent(n as f64 / total.max(1) as f64))
}

fn table(r: &Report) -> String {
    let mut out = format!(
        "workload: {} ({} requests, {} malformed line(s) left out, {} with recorded output tokens)\n",
        r.workload,
        r.policies.first().map_or(0, |p| p.requests),
        r.malformed.len(),
        r.recorded_outputs
    );
    let assumed: Vec<String> = r
        .assumed_output_tokens
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    out.push_str(&format!(
        "output tokens assumed where none is recorded: {}\nbaseline: every request direct on {}\n",
        assumed.join(", "),
        r.baseline_model
    ));
    for p in &r.policies {
        let tiers: Vec<String> = p
            .tiers
            .iter()
            .map(|(k, n)| format!("{k} {}", share(*n, p.requests)))
            .collect();
        let models: Vec<String> = p
            .models
            .iter()
            .map(|(k, n)| format!("{k} {}", share(*n, p.requests)))
            .collect();
        let failures: usize = p.failures.values().sum();
        out.push_str(&format!(
            "\npolicy {}\n  tiers:    {}\n  models:   {}\n  planner calls: {} ({} the planner policy could not build)   policy failures: {}\n  cost: {} (executors {}, planner {})   baseline: {}   savings: {}\n",
            p.policy,
            tiers.join(", "),
            models.join(", "),
            p.planner_calls,
            p.planner_failures,
            failures,
            usd(p.cost_usd),
            usd(p.executor_usd),
            usd(p.planner_usd),
            usd(p.baseline_usd),
            p.savings.map_or("n/a".into(), percent),
        ));
    }
    if let Some(per_day) = r.per_day {
        let name = |p: &PolicyResult| p.policy.split('@').next().unwrap_or("").to_string();
        let mut header = vec![
            format!("{:<24}", format!("at {per_day} requests/day")),
            format!("{:>14}", format!("baseline ({})", r.baseline_model)),
        ];
        for p in &r.policies {
            header.push(format!("{:>14}", name(p)));
            header.push(format!("{:>8}", "savings"));
        }
        out.push_str(&format!("\n{}\n", header.join("  ")));
        for (label, pick) in [
            (
                "Daily",
                (|j: &Projection| j.daily) as fn(&Projection) -> f64,
            ),
            ("Monthly", |j: &Projection| j.monthly),
            ("Yearly", |j: &Projection| j.yearly),
        ] {
            let base = r.policies[0].baseline_projection.as_ref().map_or(0.0, pick);
            let mut row = vec![format!("{label:<24}"), format!("{:>14}", usd(base))];
            for p in &r.policies {
                let cost = p.projection.as_ref().map_or(0.0, pick);
                let base = p.baseline_projection.as_ref().map_or(0.0, pick);
                row.push(format!("{:>14}", usd(cost)));
                row.push(format!(
                    "{:>8}",
                    if base > 0.0 {
                        percent(1.0 - cost / base)
                    } else {
                        "n/a".into()
                    }
                ));
            }
            out.push_str(&format!("{}\n", row.join("  ")));
        }
    }
    if r.policies.len() > 1 {
        out.push_str("\nside by side:\n");
        let mut rows: Vec<(String, Vec<String>)> = vec![(
            "".into(),
            r.policies
                .iter()
                .map(|p| p.policy.split('@').next().unwrap_or("").to_string())
                .collect(),
        )];
        for tier in ["direct", "plan", "plan-and-verify"] {
            rows.push((
                tier.into(),
                r.policies
                    .iter()
                    .map(|p| share(p.tiers.get(tier).copied().unwrap_or(0), p.requests))
                    .collect(),
            ));
        }
        rows.push((
            "cost".into(),
            r.policies.iter().map(|p| usd(p.cost_usd)).collect(),
        ));
        rows.push((
            "baseline".into(),
            r.policies.iter().map(|p| usd(p.baseline_usd)).collect(),
        ));
        rows.push((
            "savings".into(),
            r.policies
                .iter()
                .map(|p| p.savings.map_or("n/a".into(), percent))
                .collect(),
        ));
        for (label, cells) in rows {
            let cells: Vec<String> = cells.iter().map(|c| format!("{c:>20}")).collect();
            out.push_str(&format!("  {label:<16}{}\n", cells.join("")));
        }
    }
    for d in &r.diffs {
        out.push_str(&format!(
            "\n{} → {}: {} request(s) change route; cost {}{}\n",
            d.from,
            d.to,
            d.changed,
            if d.cost_delta_usd >= 0.0 { "+" } else { "-" },
            usd(d.cost_delta_usd.abs()),
        ));
        for t in &d.transitions {
            out.push_str(&format!(
                "  {:>5} × {} → {} ({}{})\n",
                t.requests,
                t.from,
                t.to,
                if t.cost_delta_usd >= 0.0 { "+" } else { "-" },
                usd(t.cost_delta_usd.abs())
            ));
        }
        for e in &d.examples {
            out.push_str(&format!(
                "  line {}: {}\n    {}: {}\n    {}: {}\n",
                e.line, e.request, e.from, e.from_reasoning, e.to, e.to_reasoning
            ));
        }
    }
    out
}

fn csv(r: &Report) -> String {
    let mut out = String::from(
        "policy,requests,direct,plan,plan_and_verify,planner_calls,failures,cost_usd,baseline_usd,savings,daily_usd,monthly_usd,yearly_usd\n",
    );
    for p in &r.policies {
        let tier = |t: &str| p.tiers.get(t).copied().unwrap_or(0);
        let proj = |f: fn(&Projection) -> f64| {
            p.projection
                .as_ref()
                .map_or(String::new(), |j| f(j).to_string())
        };
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&p.policy),
            p.requests,
            tier("direct"),
            tier("plan"),
            tier("plan-and-verify"),
            p.planner_calls,
            p.failures.values().sum::<usize>(),
            p.cost_usd,
            p.baseline_usd,
            p.savings.map_or(String::new(), |s| s.to_string()),
            proj(|j| j.daily),
            proj(|j| j.monthly),
            proj(|j| j.yearly),
        ));
    }
    out
}
