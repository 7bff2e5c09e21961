//! The single place a model call is made, priced and settled.
//!
//! Every model call goes through [`Dispatch::send`]: a client's chat
//! request on either API, a plan for an agent session, and each planner,
//! executor and reviewer call of a task. `send` walks the route's models
//! through the [`resilience`](crate::resilience) layer, translating the
//! request into each provider's format. When the caller knows how the call
//! ended (for a stream, only at its last event), it settles it with
//! [`Dispatch::settle`]: the endpoint's breaker learns the outcome, the
//! metrics count it, and the ledger records it.
//!
//! The dispatch layer owns what those steps need and nothing above them:
//! the providers, the model catalog, the resilience pools and the prices.
//! It knows nothing of HTTP, tasks or policies.

mod settle;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::config::{BudgetConfig, Config, ModelConfig, OnUnavailable};
use crate::ledger::record::{Nanos, nanos};
use crate::ledger::{BudgetScope, Cost, Health, Ledger, Prices, Reservation, ReserveError};
use crate::policy::types::ModelInfo;
use crate::provider::passthrough::NativeRequest;
use crate::provider::{EventStream, Provider, ProviderError, Reply, Request, Response, Usage};
use crate::resilience::Resilience;
use crate::resilience::balance::Lease;

pub use settle::{Caller, Outcome, Settled, Settlement};

/// Providers, catalog, resilience and prices of one configuration.
pub struct Dispatch {
    models: HashMap<String, Arc<ModelConfig>>,
    providers: HashMap<String, Provider>,
    resilience: Resilience,
    baseline: Prices,
    escalation_model: Option<String>,
    first_token: Duration,
    catalog: Vec<ModelInfo>,
    ledger: Ledger,
    on_unavailable: OnUnavailable,
    budgets: Vec<BudgetConfig>,
}

impl Dispatch {
    /// Builds every provider of `config` around `resilience` (new, or
    /// carried over from the previous configuration), settling into
    /// `ledger`.
    pub fn new(
        config: &Config,
        resilience: Resilience,
        ledger: Ledger,
    ) -> anyhow::Result<Dispatch> {
        let providers = config
            .providers
            .iter()
            .map(|(name, p)| Ok((name.clone(), Provider::from_config(name, p)?)))
            .collect::<anyhow::Result<HashMap<_, _>>>()?;
        let models: HashMap<String, Arc<ModelConfig>> = config
            .models
            .iter()
            .map(|m| (m.id.clone(), Arc::new(m.clone())))
            .collect();
        let baseline = Prices::from(&*models[&config.baseline_model]);
        Ok(Dispatch {
            models,
            providers,
            resilience,
            baseline,
            escalation_model: config.resilience.escalation_model.clone(),
            first_token: Duration::from_millis(config.resilience.first_token_timeout_ms),
            catalog: crate::policy::catalog(config),
            ledger,
            on_unavailable: config.ledger.on_unavailable,
            budgets: config.budgets.clone(),
        })
    }

    /// The ledger calls are settled into.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Whether new work may start: with `[ledger] on_unavailable =
    /// "refuse"` (the default), not while the ledger cannot record it.
    /// `Err` says why.
    pub fn admit(&self) -> Result<(), String> {
        if self.on_unavailable == OnUnavailable::Serve {
            return Ok(());
        }
        match self.ledger.health() {
            Health::Ok => Ok(()),
            Health::Unavailable { reason, .. } => Err(format!(
                "the ledger cannot record requests now ({reason}); refusing rather than serving unrecorded work"
            )),
            Health::Backlogged { queued } => Err(format!(
                "the ledger is {queued} records behind; refusing new work until it catches up"
            )),
        }
    }

    /// The budgets that cover work of `client` (an owner, as
    /// [`crate::tenant::Owner::as_str`] writes it) carrying `labels`: a
    /// `[[budgets]]` entry naming the client, and one per label value
    /// named.
    pub fn budget_scopes<'a>(
        &self,
        client: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Vec<BudgetScope> {
        let cap = |usd: Option<f64>| usd.map(nanos);
        self.budgets
            .iter()
            .filter_map(|b| {
                let key = if let Some(name) = &b.client {
                    let key = crate::tenant::Owner::client(name);
                    (key.as_str() == client).then(|| key.as_str().to_string())?
                } else {
                    let label = b.label.as_deref()?;
                    let (k, v) = label.split_once('=')?;
                    labels
                        .clone()
                        .into_iter()
                        .any(|(lk, lv)| lk == k && lv == v)
                        .then(|| format!("label:{label}"))?
                };
                Some(BudgetScope {
                    key,
                    daily_cap: cap(b.daily_usd),
                    monthly_cap: cap(b.monthly_usd),
                })
            })
            .collect()
    }

    /// The most a call can cost: `input` tokens and `output` tokens on
    /// the dearest model it may reach (the chain, then the escalation
    /// model when `escalate`).
    pub fn worst_case(
        &self,
        chain: &[Arc<ModelConfig>],
        escalate: bool,
        input: u64,
        output: u64,
    ) -> Nanos {
        let escalation = if escalate {
            self.escalation(input + output)
        } else {
            None
        };
        let usage = Usage {
            input_tokens: input,
            output_tokens: output,
            ..Usage::default()
        };
        chain
            .iter()
            .chain(escalation.as_ref())
            .flat_map(|m| Prices::of_endpoints(m))
            .map(|p| {
                // Every input token at the dearest input price is the
                // bound (cached input is never dearer than input; a cache
                // write may be).
                let dearest_input = p.input.max(p.cached_input).max(p.cache_write);
                nanos(
                    Prices {
                        input: dearest_input,
                        cached_input: dearest_input,
                        cache_write: dearest_input,
                        ..p
                    }
                    .cost(&usage),
                )
            })
            .max()
            .unwrap_or(0)
    }

    /// Reserves `amount` against `caller`'s budgets before a call; none
    /// when no budget covers it.
    pub async fn reserve(
        &self,
        caller: &Caller,
        amount: Nanos,
    ) -> Result<Option<Reservation>, ReserveError> {
        if caller.budgets.is_empty() {
            return Ok(None);
        }
        self.ledger.reserve(&caller.budgets, amount).await.map(Some)
    }

    /// Gives back a reservation whose call was never made.
    pub async fn release(&self, reservation: Option<Reservation>) {
        if let Some(reservation) = reservation {
            self.ledger.release(reservation).await;
        }
    }

    /// The catalog model `id`.
    pub fn model(&self, id: &str) -> Option<&Arc<ModelConfig>> {
        self.models.get(id)
    }

    /// The provider named `name` (every model's provider exists: the
    /// config is validated at load).
    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.get(name)
    }

    /// Breakers, balancers and the retry budget.
    pub fn resilience(&self) -> &Resilience {
        &self.resilience
    }

    /// Whether any provider speaks the Responses API, so that a Responses
    /// request's own body is worth keeping for it.
    pub fn speaks_responses(&self) -> bool {
        self.providers.values().any(Provider::speaks_responses)
    }

    /// The catalog with live health from the breakers.
    pub fn catalog(&self) -> Vec<ModelInfo> {
        let mut catalog = self.catalog.clone();
        for model in &mut catalog {
            let (available, success_rate, p50) = self.resilience.health(&model.id);
            model.available = available;
            model.success_rate = success_rate;
            model.p50_latency_ms = p50.map_or(0, |d| d.as_millis().min(u32::MAX as u128) as u32);
        }
        catalog
    }

    /// The escalation model, if configured and large enough for a request
    /// needing `needed` tokens.
    pub fn escalation(&self, needed: u64) -> Option<Arc<ModelConfig>> {
        let id = self.escalation_model.as_ref()?;
        self.models
            .get(id)
            .filter(|m| m.context_window as u64 >= needed)
            .cloned()
    }

    /// Prices of the baseline model.
    pub fn baseline_prices(&self) -> Prices {
        self.baseline
    }

    /// The cost of `usage` where `served` answered (that endpoint's
    /// prices), and on the baseline.
    pub fn price(&self, served: &Served, usage: &Usage) -> Cost {
        let prices = Prices::at(&served.model, &served.provider, &served.upstream);
        Cost::of(usage, prices, self.baseline)
    }

    /// Sends `call.request` to the models of `call.chain` in order, then
    /// to the escalation model when `call.escalate`, each in its
    /// provider's format (or, for a Responses request on a provider that
    /// speaks that API, `call.native` as it is). A stream counts as answered at its first event
    /// (waited for within the first-token timeout): until then a failure
    /// moves on, after it the caller relays what comes.
    ///
    /// The caller settles the answer with [`Dispatch::settle`] once it
    /// knows how it ended.
    pub async fn send(&self, call: Call<'_>) -> Sent {
        let escalation = if call.escalate {
            self.escalation(call.needed)
        } else {
            None
        };
        let first_token = self.first_token;
        let request = call.request;
        let native = call.native;
        let outcome = self
            .resilience
            .run(
                call.chain,
                escalation,
                call.deadline,
                |model, endpoint, left| async move {
                    let provider = self.providers.get(&endpoint.provider).ok_or_else(|| {
                        ProviderError::Connect(format!("no provider named {}", endpoint.provider))
                    })?;
                    let native = native.filter(|_| provider.speaks_responses());
                    let served = Served {
                        model: model.clone(),
                        provider: endpoint.provider.clone(),
                        upstream: endpoint.upstream.clone(),
                        passed_through: native.is_some(),
                    };
                    let reply = match native {
                        Some(native) => provider.send_responses(native, &endpoint.upstream).await?,
                        None => {
                            let translated = request.format() != provider.format();
                            let mut upstream = request
                                .clone()
                                .into_format(provider.format())
                                .map_err(|e| ProviderError::Untranslatable(e.to_string()))?;
                            upstream.set_model(&endpoint.upstream);
                            upstream.request_usage();
                            if translated && !model.reasoning {
                                // Effort the client asked of an Anthropic model,
                                // on a model that takes none.
                                upstream.clear_reasoning_effort();
                            }
                            provider.send(upstream).await?
                        }
                    };
                    match reply {
                        Reply::Complete(answer) => Ok(Answer::Complete(served, answer)),
                        Reply::Stream(mut events) => {
                            let wait = first_token.min(left);
                            match tokio::time::timeout(wait, events.next()).await {
                                Err(_) => Err(ProviderError::Timeout(wait)),
                                Ok(None) => Err(ProviderError::Malformed(
                                    "the stream ended before its first event".into(),
                                )),
                                Ok(Some(Err(e))) => Err(e),
                                Ok(Some(Ok(first))) => {
                                    let rest: EventStream = Box::pin(
                                        futures::stream::once(async { Ok(first) }).chain(events),
                                    );
                                    Ok(Answer::Stream(served, rest))
                                }
                            }
                        }
                    }
                },
            )
            .await;
        Sent {
            result: outcome.result,
            attempts: outcome.attempts,
            lease: outcome.lease,
        }
    }

    /// Asks `model`'s first endpoint to count the input tokens of
    /// `request`, when its provider can (Anthropic's `count_tokens`);
    /// `None` for the others. Counting costs nothing, so nothing is
    /// settled.
    pub async fn count_tokens(
        &self,
        model: &ModelConfig,
        mut request: crate::provider::wire::anthropic::CountTokensRequest,
        betas: Option<&str>,
    ) -> Option<Result<u64, ProviderError>> {
        let (provider, upstream) = *model.endpoint_list().first()?;
        request.model = upstream.to_string();
        self.providers
            .get(provider)?
            .count_tokens(&request, betas)
            .await
    }

    /// Sends a request that must not stream and waits for its whole
    /// answer; a stream nobody asked for is a malformed answer. The call
    /// is not settled: see [`Dispatch::settle`].
    pub async fn complete(&self, call: Call<'_>) -> Sent {
        let mut sent = self.send(call).await;
        if let Ok(Answer::Stream(..)) = sent.result {
            sent.result = Err(ProviderError::Malformed(
                "the provider streamed an unrequested stream".into(),
            ));
        }
        sent
    }
}

/// One call: a request and the models that may answer it.
pub struct Call<'a> {
    /// The request, in the client's format (translated per provider).
    pub request: &'a Request,
    /// For a `/v1/responses` request: the client's own body, sent instead
    /// of `request` to a provider that speaks the Responses API.
    pub native: Option<&'a NativeRequest>,
    /// The models to try in order (the route's executor and fallbacks).
    pub chain: &'a [Arc<ModelConfig>],
    /// Whether the escalation model follows the chain.
    pub escalate: bool,
    /// Tokens a context window must hold (prompt and output cap): the
    /// escalation model must hold them too.
    pub needed: u64,
    /// When the call gives up.
    pub deadline: Instant,
}

/// Which model, provider and upstream name answered.
#[derive(Debug, Clone)]
pub struct Served {
    /// The catalog model.
    pub model: Arc<ModelConfig>,
    /// Its provider.
    pub provider: String,
    /// The model's name at that provider.
    pub upstream: String,
    /// The provider was sent the client's own Responses body and answered
    /// in that API ([`crate::provider::passthrough`]).
    pub passed_through: bool,
}

/// What a successful call produced.
pub enum Answer {
    /// A whole answer.
    Complete(Served, Box<Response>),
    /// A stream whose first event has arrived.
    Stream(Served, EventStream),
}

impl Answer {
    /// Who answered.
    pub fn served(&self) -> &Served {
        match self {
            Answer::Complete(served, _) | Answer::Stream(served, _) => served,
        }
    }
}

/// The outcome of [`Dispatch::send`].
pub struct Sent {
    /// The answer, or the error that ended the call.
    pub result: Result<Answer, ProviderError>,
    /// Every attempt, failed ones included.
    pub attempts: Vec<crate::resilience::Attempt>,
    /// The answering endpoint's lease: [`Dispatch::settle`] tells its
    /// breaker how the call ended.
    pub lease: Option<(String, Lease)>,
}

impl Sent {
    /// Upstream calls made (models skipped for open breakers aside).
    pub fn calls(&self) -> u32 {
        crate::resilience::calls(&self.attempts)
    }
}

/// A request id unique within this process and across restarts: `pm-`,
/// the process's start in microseconds, and a counter, in hex.
pub fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    });
    format!("pm-{start:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Now, in Unix milliseconds (UTC), as the ledger records times.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
