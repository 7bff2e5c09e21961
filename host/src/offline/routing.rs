//! Routing many requests offline: every request through the daemon's
//! sandboxed engine and catalog checks ([`crate::policy::decide::ask`]), on
//! all cores, with a failure (trap, timeout, invalid answer) counted and
//! served the safe route, as the daemon would serve it.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::policy::decide::{ask, safe_route};
use crate::policy::types::{Features, ModelInfo, Route, Tier};
use crate::policy::{PolicyError, PolicyModule};

/// Runs below this many requests print no progress line.
const PROGRESS_FROM: usize = 2_000;

/// Why a policy's answer was not used.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    /// The kind: `trap`, `timeout`, `invalid`, `rejected`, `memory`, ...
    pub kind: &'static str,
    /// The error, on one line.
    pub message: String,
}

/// One request's route.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The route served: the policy's, or the safe route after a failure.
    pub route: Route,
    /// Why the policy's answer was not used, if it was not.
    pub failure: Option<Failure>,
}

/// A router module with the catalog and the safe route it is run against.
#[derive(Clone)]
pub struct Router {
    /// The module.
    pub module: Arc<PolicyModule>,
    /// The catalog, all models available.
    pub catalog: Arc<Vec<ModelInfo>>,
    /// What a failure is served.
    pub safe: Route,
    /// Most instances of the module at once.
    pub max_instances: usize,
}

impl Router {
    /// Routes one request. A call stopped for time (or that found every
    /// instance busy) is tried once more before it counts as a failure:
    /// offline, a run competes with everything else on the machine, and a
    /// wall-clock stall there is not the policy's doing; a policy that
    /// really loops fails both times.
    pub async fn route(&self, features: &Features) -> Routed {
        let mut answer = ask(&self.module, features, &self.catalog).await;
        if matches!(answer, Err(PolicyError::Timeout(_) | PolicyError::Busy)) {
            answer = ask(&self.module, features, &self.catalog).await;
        }
        match answer {
            Ok(route) => Routed {
                route,
                failure: None,
            },
            Err(error) => Routed {
                route: safe_route(&error.to_string(), &self.safe),
                failure: Some(failure(&error)),
            },
        }
    }

    /// Routes every request, in order, on as many tasks as there are cores
    /// (at most the module's instance limit, so no call waits for an
    /// instance), printing a progress line on a terminal for long runs.
    pub async fn route_all(&self, requests: Arc<Vec<Features>>, what: &str) -> Vec<Routed> {
        let total = requests.len();
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(self.max_instances)
            .clamp(1, total.max(1));
        let next = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let progress = (total >= PROGRESS_FROM && std::io::stderr().is_terminal())
            .then(|| tokio::spawn(show_progress(done.clone(), total, what.to_string())));
        let mut tasks = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (router, requests, next, done) =
                (self.clone(), requests.clone(), next.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(features) = requests.get(i) else {
                        break;
                    };
                    out.push((i, router.route(features).await));
                    done.fetch_add(1, Ordering::Relaxed);
                }
                out
            }));
        }
        let mut routed: Vec<Option<Routed>> = vec![None; total];
        for task in tasks {
            // A worker only ends by panicking if the engine itself panics:
            // that is a bug to surface, not a routing failure.
            for (i, r) in task.await.expect("a routing worker panicked") {
                routed[i] = Some(r);
            }
        }
        if let Some(progress) = progress {
            progress.abort();
            eprint!("\r\x1b[2K");
        }
        routed
            .into_iter()
            .map(|r| r.expect("every request is routed once"))
            .collect()
    }
}

async fn show_progress(done: Arc<AtomicUsize>, total: usize, what: String) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let n = done.load(Ordering::Relaxed);
        eprint!(
            "\r{what}: {n}/{total} ({:.0}%)",
            n as f64 * 100.0 / total as f64
        );
    }
}

fn failure(error: &PolicyError) -> Failure {
    Failure {
        kind: error.as_str(),
        message: error.to_string().replace('\n', " "),
    }
}

/// Whether `route` calls a strong model: a planned tier (the planner model
/// works on it), or an executor with the `premium` role in the catalog.
pub fn is_strong(route: &Route, catalog: &[ModelInfo]) -> bool {
    route.tier != Tier::Direct
        || catalog
            .iter()
            .any(|m| m.id == route.executor && m.roles.iter().any(|r| r == "premium"))
}

/// Failures counted by kind.
pub fn failures_by_kind<'a>(
    routed: impl IntoIterator<Item = &'a Routed>,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in routed {
        if let Some(f) = &r.failure {
            *counts.entry(f.kind.to_string()).or_insert(0) += 1;
        }
    }
    counts
}
