//! Getting an answer despite failing upstreams: load balancing across a
//! model's endpoints, circuit breakers, retries with backoff under a
//! budget, deadlines, and the fallback chain ending in the escalation
//! model.
//!
//! - [`breaker`]: one circuit breaker per endpoint.
//! - [`balance`]: endpoints of a model, round-robin or least-latency.
//! - [`retry`]: backoff with full jitter, and the daemon-wide retry budget.
//!
//! [`Resilience::run`] drives one request: for each model of the chain (the
//! route's executor, its fallbacks, then the escalation model), pick an
//! endpoint whose breaker allows a call, try, retry retryable failures with
//! backoff while the budget and the deadline allow, then move on. Every
//! attempt is reported back, successful or not.
//!
//! What a failed attempt leads to depends on whose fault it is
//! ([`ProviderError::blame`]):
//!
//! - **The upstream's, this time** ([`Blame::Upstream`]): no connection, a
//!   timeout, 408, 409, 429, 5xx, or an answer that started (200) and then
//!   broke off or could not be decoded. Retried on the model within
//!   `max_retries`, the retry budget and the deadline; then the next model.
//!   The retry goes at once to another endpoint of the model when one is
//!   available; on the same endpoint it waits a backoff with full jitter, or
//!   the upstream's `Retry-After` (seconds or an HTTP-date, a past date
//!   meaning now), or moves on to the next model at once when that is longer
//!   than `backoff_max_ms`. Counts against the endpoint's breaker.
//! - **The endpoint's configuration** ([`Blame::Endpoint`]): the provider
//!   answered 401, 403 or 404, or redirected (a provider API that moves is
//!   misconfigured; redirects are not followed). Clients authenticate to Pointsman, not to
//!   the provider, so this is the gateway's key or upstream model name being
//!   wrong there. The endpoint is not asked again for this request; the
//!   model's other endpoints are tried at once (no backoff, no retry from
//!   the budget), then the next model and the escalation model. Counts
//!   against the endpoint's breaker, so a misconfigured endpoint is soon
//!   skipped. If it is the last failure of the chain, the client gets a 502
//!   saying the upstream refused the gateway's credentials, model or address, without
//!   the provider's own words (they can quote part of the key).
//! - **The request's** ([`Blame::Request`]): 400, 422 and the other 4xx (or
//!   a request that cannot be translated to the provider's format). No
//!   endpoint would take it: the request ends at once with the client-format
//!   error, and the endpoint's breaker counts it as a success.
//!
//! A stream counts as answered at its first event, and its endpoint's
//! breaker records the success then. A failure before it is treated as
//! above; after it the client already has the start of the answer, so the
//! stream ends with an error event instead of falling back, and the breaker
//! turns that success into a failure.

pub mod balance;
pub mod breaker;
pub mod retry;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, ModelConfig, ResilienceConfig};
use crate::provider::{Blame, ProviderError};
use balance::{Balancer, Endpoint, Lease};
use breaker::State;
use retry::RetryBudget;

/// One call to one endpoint, as the ledger and the headers report it.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// Catalog id.
    pub model: String,
    /// Provider name.
    pub provider: String,
    /// `ok`, or why it failed.
    pub outcome: String,
    /// HTTP status from the upstream, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long it took, in milliseconds.
    pub elapsed_ms: u64,
    /// The model was skipped without a call (every breaker open).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// The outcome of [`Resilience::run`].
pub struct Outcome<T> {
    /// The answer, or the error that ended the request.
    pub result: Result<T, ProviderError>,
    /// Every attempt made, in order.
    pub attempts: Vec<Attempt>,
    /// The successful call's endpoint, its success already recorded at the
    /// first byte. A stream can still break: settle the lease with
    /// [`settle`] when it ends, which turns that success into a failure if
    /// it did not end well. Dropping it changes nothing.
    pub lease: Option<(String, Lease)>,
}

impl<T> Outcome<T> {
    /// Upstream calls made (models skipped for open breakers aside).
    pub fn calls(&self) -> u32 {
        calls(&self.attempts)
    }
}

/// Upstream calls among `attempts` (models skipped for open breakers aside).
pub fn calls(attempts: &[Attempt]) -> u32 {
    attempts.iter().filter(|a| !a.skipped).count() as u32
}

/// Records how the successful call of an [`Outcome`] ended.
pub fn settle(lease: Option<(String, Lease)>, success: bool) {
    if let Some((model, lease)) = lease {
        let endpoint = lease.endpoint.clone();
        report(&model, &endpoint, lease.finish(success));
    }
}

/// The pools of every model, and the shared retry budget.
pub struct Resilience {
    config: ResilienceConfig,
    pools: HashMap<String, Balancer>,
    budget: RetryBudget,
    jitter: AtomicU64,
}

impl Resilience {
    /// One pool per model, one breaker per endpoint.
    pub fn new(config: &Config) -> Self {
        let r = &config.resilience;
        let pools = config
            .models
            .iter()
            .map(|m| {
                let endpoints = m
                    .endpoint_list()
                    .into_iter()
                    .map(|(provider, upstream)| {
                        // Every breaker is on the dashboard from the start,
                        // not from its first change.
                        crate::metrics::breaker_state(&m.id, provider, State::Closed.gauge());
                        Endpoint::new(provider, upstream, r.breaker)
                    })
                    .collect();
                (m.id.clone(), Balancer::new(m.balance, endpoints))
            })
            .collect();
        Resilience {
            config: r.clone(),
            pools,
            budget: RetryBudget::new(r.retry_budget_ratio, r.retry_budget_reserve),
            jitter: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// The resilience of `config`, keeping from `old` the breaker, latency
    /// and load of every endpoint that remains (the same model, provider
    /// and upstream name, with the same breaker settings): a reload must
    /// not reopen a tripped breaker or forget what was learnt.
    pub fn carry_over(config: &Config, old: &Resilience) -> Self {
        let mut fresh = Self::new(config);
        for (id, pool) in fresh.pools.iter_mut() {
            let Some(before) = old.pools.get(id) else {
                continue;
            };
            if old.config.breaker != config.resilience.breaker {
                continue;
            }
            pool.adopt(before);
        }
        fresh
    }

    /// The settings.
    pub fn config(&self) -> &ResilienceConfig {
        &self.config
    }

    /// The pool of model `id`.
    pub fn pool(&self, id: &str) -> Option<&Balancer> {
        self.pools.get(id)
    }

    /// Live health of model `id`: available (some breaker would allow a
    /// call), the worst success rate of its endpoints, the best median
    /// latency.
    pub fn health(&self, id: &str) -> (bool, f64, Option<Duration>) {
        let Some(pool) = self.pools.get(id) else {
            return (false, 0.0, None);
        };
        let endpoints = pool.endpoints();
        let available = pool.available();
        let success = endpoints
            .iter()
            .map(|e| e.breaker.success_rate())
            .fold(1.0, f64::min);
        let p50 = endpoints.iter().filter_map(|e| e.p50()).min();
        (available, success, p50)
    }

    /// Runs `call` on the chain `models` until an answer, a non-retryable
    /// error, or the deadline. `call` gets the model, the endpoint and the
    /// time left.
    pub async fn run<T, F, Fut>(
        &self,
        models: &[Arc<ModelConfig>],
        escalation: Option<Arc<ModelConfig>>,
        deadline: Instant,
        mut call: F,
    ) -> Outcome<T>
    where
        F: FnMut(Arc<ModelConfig>, Arc<Endpoint>, Duration) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        self.budget.deposit();
        let mut attempts = Vec::new();
        let mut last_error = None;
        let total = deadline.saturating_duration_since(Instant::now());
        let chain = models
            .iter()
            .cloned()
            .chain(escalation.filter(|e| !models.iter().any(|m| m.id == e.id)));
        for (position, model) in chain.enumerate() {
            let Some(pool) = self.pools.get(&model.id) else {
                continue;
            };
            if position == models.len() {
                // Say why, so that an operator can tell an escalation the
                // task needed from one a failing upstream caused.
                let cause = escalation_cause(last_error.as_ref());
                let last = last_error
                    .as_ref()
                    .map_or_else(|| "none".to_string(), ToString::to_string);
                tracing::warn!(model = %model.id, cause, "every model of the route failed ({last}): escalating");
                crate::metrics::escalation(&model.id, cause);
            }
            let mut retries = 0;
            // Endpoints of this model that refused the gateway's credentials
            // or model: asking them again cannot help.
            let mut refused: Vec<Arc<Endpoint>> = Vec::new();
            // Every endpoint of this model that failed this request, the
            // refused ones included: a retry goes to another one if it can.
            let mut failed: Vec<Arc<Endpoint>> = Vec::new();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Outcome {
                        result: Err(ProviderError::Timeout(total)),
                        attempts,
                        lease: None,
                    };
                }
                let picked = pool
                    .pick_except(&failed)
                    .or_else(|| pool.pick_except(&refused));
                let Some(mut lease) = picked else {
                    if refused.len() == pool.endpoints().len() {
                        // Every endpoint was tried and refused: not a skip.
                        break;
                    }
                    attempts.push(Attempt {
                        model: model.id.clone(),
                        provider: String::new(),
                        outcome: "skipped: every endpoint's circuit breaker is open".into(),
                        status: None,
                        elapsed_ms: 0,
                        skipped: true,
                    });
                    // Only when nothing was asked is "every breaker open"
                    // the request's outcome; a real error seen on another
                    // model says more.
                    last_error = match last_error.take() {
                        None => Some(ProviderError::CircuitOpen(model.id.clone())),
                        Some(ProviderError::CircuitOpen(models)) => Some(
                            ProviderError::CircuitOpen(format!("{models} and {}", model.id)),
                        ),
                        Some(other) => Some(other),
                    };
                    break;
                };
                let endpoint = lease.endpoint.clone();
                let started = Instant::now();
                let result =
                    match tokio::time::timeout(left, call(model.clone(), endpoint.clone(), left))
                        .await
                    {
                        Ok(result) => result,
                        Err(_) => Err(ProviderError::Timeout(left)),
                    };
                let elapsed_ms = started.elapsed().as_millis() as u64;
                let error = match result {
                    Ok(answer) => {
                        report(&model.id, &endpoint, lease.mark_answered());
                        crate::metrics::upstream_attempt(
                            &model.id,
                            &endpoint.provider,
                            "ok",
                            started.elapsed().as_secs_f64(),
                        );
                        attempts.push(Attempt {
                            model: model.id.clone(),
                            provider: endpoint.provider.clone(),
                            outcome: "ok".into(),
                            status: Some(200),
                            elapsed_ms,
                            skipped: false,
                        });
                        return Outcome {
                            result: Ok(answer),
                            attempts,
                            lease: Some((model.id.clone(), lease)),
                        };
                    }
                    Err(error) => error,
                };
                let blame = error.blame();
                // A bad request says nothing about the endpoint's health; a
                // refused key or model does: the endpoint cannot serve.
                report(&model.id, &endpoint, lease.finish(blame == Blame::Request));
                crate::metrics::upstream_failure(&model.id);
                crate::metrics::upstream_attempt(
                    &model.id,
                    &endpoint.provider,
                    error.class(),
                    started.elapsed().as_secs_f64(),
                );
                tracing::warn!(model = %model.id, provider = %endpoint.provider, "attempt failed: {error}");
                attempts.push(Attempt {
                    model: model.id.clone(),
                    provider: endpoint.provider.clone(),
                    outcome: error.to_string(),
                    status: match &error {
                        ProviderError::Status { status, .. } => Some(*status),
                        _ => None,
                    },
                    elapsed_ms,
                    skipped: false,
                });
                match blame {
                    Blame::Request => {
                        return Outcome {
                            result: Err(error),
                            attempts,
                            lease: None,
                        };
                    }
                    Blame::Endpoint => {
                        // Another endpoint of the model (another key, region
                        // or name) may take it, at once: nothing here is
                        // overloaded, so neither a backoff nor a retry from
                        // the budget is due.
                        refused.push(endpoint.clone());
                        failed.push(endpoint);
                        last_error = Some(error);
                        continue;
                    }
                    Blame::Upstream => {}
                }
                let wait = self.wait_before_retry(&error, retries + 1);
                last_error = Some(error);
                failed.push(endpoint);
                // The backoff (or the upstream's Retry-After) spares the
                // endpoint that failed; another endpoint of the model (another
                // key, another region) can take the retry at once.
                let wait = if pool.available_except(&failed) {
                    Duration::ZERO
                } else {
                    match wait {
                        Some(wait) => wait,
                        None => break,
                    }
                };
                if retries >= self.config.max_retries
                    || Instant::now() + wait >= deadline
                    || !self.budget.try_withdraw()
                {
                    break;
                }
                retries += 1;
                tokio::time::sleep(wait).await;
            }
        }
        Outcome {
            result: Err(last_error.unwrap_or(ProviderError::Connect("no model to call".into()))),
            attempts,
            lease: None,
        }
    }

    /// The pause before retry `attempt`: the upstream's `Retry-After` when
    /// it sent one (none, meaning "move on", when that is longer than the
    /// longest backoff), otherwise exponential backoff with full jitter.
    fn wait_before_retry(&self, error: &ProviderError, attempt: u32) -> Option<Duration> {
        let max = Duration::from_millis(self.config.backoff_max_ms);
        if let ProviderError::Status {
            retry_after: Some(after),
            ..
        } = error
        {
            return (*after <= max).then_some(*after);
        }
        Some(retry::backoff(
            attempt,
            Duration::from_millis(self.config.backoff_base_ms),
            max,
            &self.jitter,
        ))
    }
}

/// Why a request escalates, for the log and the metric, from the error
/// that ended the route's last model.
fn escalation_cause(last_error: Option<&ProviderError>) -> &'static str {
    match last_error {
        Some(ProviderError::CircuitOpen(_)) => "circuit_open",
        Some(e) if e.blame() == Blame::Endpoint => "endpoint_refused",
        _ => "upstream_fault",
    }
}

fn report(model: &str, endpoint: &Endpoint, change: Option<State>) {
    if let Some(state) = change {
        tracing::warn!(model, provider = %endpoint.provider, upstream = %endpoint.upstream, ?state, "circuit breaker changed state");
        crate::metrics::breaker_state(model, &endpoint.provider, state.gauge());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reload (`carry_over`) keeps what was learnt about an endpoint that
    /// remains, such as a tripped breaker, and starts an added one fresh.
    #[test]
    fn a_reload_keeps_a_tripped_breaker_of_an_endpoint_that_remains() {
        let old = Resilience::new(&Config::demo());
        let pool = old.pool("glm-4.7").expect("glm-4.7 in the demo");
        for _ in 0..200 {
            if let Some(lease) = pool.pick() {
                lease.finish(false);
            }
        }
        assert_eq!(pool.endpoints()[0].breaker.state(), State::Open);

        // Appended to the demo, the endpoint belongs to its last model.
        let changed = Config::parse(&format!(
            "{}\n[[models.endpoints]]\nprovider = \"simulated\"\nupstream = \"glm-replica\"\n",
            crate::config::DEMO_TOML
        ))
        .expect("a valid config");
        let new = Resilience::carry_over(&changed, &old);
        let pool = new.pool("glm-4.7").unwrap();
        assert_eq!(pool.endpoints().len(), 2);
        assert_eq!(pool.endpoints()[0].breaker.state(), State::Open);
        assert_eq!(pool.endpoints()[1].breaker.state(), State::Closed);
        assert_eq!(
            new.pool("claude-opus-4.5").unwrap().endpoints()[0]
                .breaker
                .state(),
            State::Closed
        );
        // A fresh start forgets it.
        let fresh = Resilience::new(&changed);
        assert_eq!(
            fresh.pool("glm-4.7").unwrap().endpoints()[0]
                .breaker
                .state(),
            State::Closed
        );
    }
}
