//! Serving a chat request on either API: parse, authenticate, route, call
//! the route's models in order, translate, price.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use serde_json::Value;

use super::AppState;
use super::auth::Client;
use super::error::{ApiError, ErrorKind};
use super::relay::Relay;
use super::responses_relay::{ClientRelay, ResponsesRelay};
use crate::config::{KeepRequests, ModelConfig, ModelTarget};
use crate::dispatch::{Answer, Call, Caller, Outcome, Served, Settlement};
use crate::features::{self, RequestContext};
use crate::ledger::record::{Api, CallRole};
use crate::ledger::{Cost, cost::format_usd};
use crate::orchestrator::transparent::{self, PlanSource};
use crate::policy::Decision;
use crate::policy::capabilities::{self, Abilities, Correction, Needs};
use crate::policy::types::{Features, Route, Tier};
use crate::provider::async_stream;
use crate::provider::passthrough::NativeRequest;
use crate::provider::wire::translate::{ResponseFrame, chat_completion_to_response};
use crate::provider::{EventStream, Format, ProviderError, Request, Response as Answer_};

/// Longest reasoning echoed in the `x-pointsman-reason` header.
const MAX_REASON_HEADER: usize = 256;

/// Handles `POST /v1/chat/completions` (`format` OpenAI) or `POST
/// /v1/messages` (`format` Anthropic).
pub async fn handle(
    state: Arc<AppState>,
    format: Format,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let api = match format {
        Format::OpenAi => "openai",
        Format::Anthropic => "anthropic",
    };
    let result = match admit(&state, &headers) {
        Ok((admission, client)) => serve(&state, client, format, &headers, body)
            .await
            .map(|response| super::inflight::finish_when_sent(response, admission, api, started)),
        Err(error) => Err(error),
    };
    result.unwrap_or_else(|error| {
        crate::metrics::request_failed(api, error.status().as_u16());
        crate::metrics::request_duration(api, "none", "error", started.elapsed().as_secs_f64());
        error.into_response(format)
    })
}

/// The client presenting `headers`, admitted within its limits (a 401 or
/// a 429 otherwise).
pub(super) fn admit(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(super::limits::Admission, Client), ApiError> {
    let client = state.auth.check(headers)?;
    ledger_admits(state)?;
    let admission = state.limits.admit(&client)?;
    crate::metrics::client_request(&client.name);
    Ok((admission, client))
}

/// A 503 while the ledger cannot record new work (`[ledger]
/// on_unavailable = "refuse"`, the default): nothing is served unrecorded.
pub(super) fn ledger_admits(state: &AppState) -> Result<(), ApiError> {
    state.dispatch.admit().map_err(|reason| {
        let mut error = ApiError::new(ErrorKind::Overloaded, reason);
        error.retry_after = Some(LEDGER_RETRY_AFTER_S);
        error
    })
}

/// What a refusal for an unavailable ledger asks clients to wait: the
/// writer retries with a backoff of at most 5 s, so a brief outage clears
/// within it.
const LEDGER_RETRY_AFTER_S: u64 = 5;

pub(super) use crate::dispatch::request_id;

/// Everything decided before the first upstream call.
struct Plan {
    id: String,
    decision: Decision,
    candidates: Vec<Arc<ModelConfig>>,
    /// Tokens the request needs from a context window.
    needed: u64,
    format: Format,
    /// The planner's share, when this request made the plan.
    planner_cost: Cost,
    /// Where the plan came from, in plan mode.
    plan: Option<PlanSource>,
    /// For `/v1/responses`: how the chat answer becomes a Responses one.
    responses: Option<Arc<ResponseFrame>>,
    /// Why a route that asked for a plan was served without one.
    plan_error: Option<String>,
    /// Whom the call is made for, as the ledger records it.
    caller: Caller,
    /// What is held against the client's budgets for the answer.
    reservation: Option<crate::ledger::Reservation>,
    /// When the request was read.
    started: Instant,
    /// The same, in Unix milliseconds.
    at_ms: i64,
}

/// How a request came in, beyond its chat body.
#[derive(Default)]
pub(super) struct Inbound {
    /// A session from the client's own identifiers, used when no
    /// `x-pointsman-session` header names one.
    pub session: Option<String>,
    /// Set for `/v1/responses`: the request was translated into the chat
    /// body served here, and the answer goes back as a Responses one.
    pub responses: Option<Arc<ResponseFrame>>,
    /// For `/v1/responses`, when a provider speaks that API: the client's
    /// own body, passed through to such a provider instead of the chat
    /// body.
    pub native: Option<NativeRequest>,
    /// The body was large: parse it off the async workers.
    pub large: bool,
}

async fn serve(
    state: &AppState,
    client: Client,
    format: Format,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(state, body).await?;
    let large = bytes.len() > BLOCKING_PARSE_BYTES;
    serve_value(
        state,
        format,
        headers,
        client,
        request_id(),
        ChatBody::Bytes(bytes),
        Inbound {
            large,
            ..Inbound::default()
        },
    )
    .await
}

/// What reading a request found besides its body.
pub(super) struct ReadBody {
    /// Over [`BLOCKING_PARSE_BYTES`]: parsed off the async workers.
    pub large: bool,
}

/// A chat body as the gateway received it.
pub(super) enum ChatBody {
    /// A chat completions or messages body, parsed straight into its
    /// request ([`Request::from_slice`]).
    Bytes(bytes::Bytes),
    /// A chat body made by translating another API's request.
    Value(Value),
}

/// The bytes of a request's body, read within the body bounds.
async fn read_body(state: &AppState, body: Body) -> Result<bytes::Bytes, ApiError> {
    super::body::read(
        body,
        state.config.max_body_bytes,
        Duration::from_millis(state.config.server.body_timeout_ms),
    )
    .await
}

/// The body of a request as a JSON object, read within the body
/// bounds and parsed where a large one cannot hold up other requests.
pub(super) async fn read_request(
    state: &AppState,
    body: Body,
) -> Result<(ReadBody, Value), ApiError> {
    let bytes = read_body(state, body).await?;
    let large = bytes.len() > BLOCKING_PARSE_BYTES;
    let value = off_workers(large, move || {
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::invalid("the body must be a JSON object"));
        }
        Ok(value)
    })
    .await?;
    Ok((ReadBody { large }, value))
}

/// Serves a chat body in `format` for request `id`.
pub(super) async fn serve_value(
    state: &AppState,
    format: Format,
    headers: &HeaderMap,
    client: Client,
    id: String,
    body: ChatBody,
    inbound: Inbound,
) -> Result<Response, ApiError> {
    let ctx = RequestContext {
        id: id.clone(),
        labels: features::header_labels(headers),
        session: features::header_session(headers).or(inbound.session.clone()),
    };
    // The JSON is dropped where it was parsed: a large one off the workers.
    let (mut features, mut request) =
        off_workers(inbound.large, move || parse(format, &body, ctx)).await?;
    features.labels = client.labels_with(std::mem::take(&mut features.labels));
    features.client = Some(client.name.clone());
    // The budgets the request counts against, from its client and the
    // labels it came with (the router's `task_tier` label, added below,
    // names no budget).
    let budgets = state.dispatch.budget_scopes(
        client.owner.as_str(),
        features
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    features.remaining_budget_usd = remaining_budget(state, &budgets);
    if let Request::Anthropic(r) = &mut request {
        r.betas = headers
            .get("anthropic-beta")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }
    let started = Instant::now();
    let at_ms = crate::dispatch::unix_ms();
    let asked = features.requested_model.clone();
    let mut decision = route(state, client.owner.as_str(), &mut features).await?;
    let mut native = inbound.native;
    cap_output(
        &decision.route,
        &mut request,
        native.as_mut(),
        &mut features,
    );
    let candidates = candidates(state, &mut decision.route, &features)?;
    let candidates = super::server_tools::restrict(state, &request, candidates)?;
    let deadline = deadline(state, &decision.route, headers);
    let caller = Caller {
        request_id: Some(id.clone()),
        task_id: None,
        client: client.owner.as_str().to_string(),
        labels: features.labels.iter().cloned().collect(),
        session: features.session.clone(),
        api: match (format, &inbound.responses) {
            (_, Some(_)) => Api::Responses,
            (Format::OpenAi, None) => Api::ChatCompletions,
            (Format::Anthropic, None) => Api::Messages,
        },
        requested_model: asked,
        router: Some(decision.policy.clone()),
        // A planned request is on a planner rollout's arm when one runs.
        arm: decision.arm.clone().or_else(|| {
            (decision.route.tier != Tier::Direct)
                .then(|| {
                    state
                        .policies
                        .planner_for(crate::policy::ActivePolicies::assignment_key(&features))
                        .1
                })
                .flatten()
        }),
        shadow: decision.shadow.clone(),
        planner: None,
        tier: Some(decision.route.tier),
        reasoning: Some(decision.route.reasoning.clone()),
        budgets,
        policy_view: match state.config.ledger.keep_requests {
            KeepRequests::PolicyView => serde_json::to_string(&features).ok().map(Arc::from),
            KeepRequests::None => None,
        },
    };
    let (mut planner_cost, mut plan_source) = (Cost::default(), None);
    let mut plan_error = None;
    if decision.route.tier != Tier::Direct {
        // The planner gets the conversation uncut, not the policy's view.
        let conversation = features::conversation(&request);
        match transparent::plan_for(
            &state.orchestrator(),
            &client.owner,
            &caller,
            &features,
            &conversation,
            &decision.route,
            deadline,
        )
        .await
        {
            Ok((plan, source)) => {
                transparent::add_plan(&mut request, &plan.text);
                if let Some(native) = &mut native {
                    native.add_plan(&plan.text);
                }
                if source == PlanSource::New {
                    planner_cost = plan.cost;
                }
                plan_source = Some(source);
            }
            Err(why) => {
                tracing::warn!(request = %id, "serving without a plan: {why}");
                plan_source = Some(PlanSource::Unavailable);
                plan_error = Some(why);
            }
        }
    }
    // The shadow decision, if any, is made while the upstream answers.
    let shadow_work = decision.shadow_work.as_ref().and_then(|w| w.take());
    let plan = Plan {
        id,
        decision,
        candidates,
        needed: needed(&features),
        format,
        planner_cost,
        plan: plan_source,
        responses: inbound.responses,
        plan_error,
        caller,
        reservation: None,
        started,
        at_ms,
    };
    match shadow_work {
        // The answer never waits for the shadow: once the call is done, a
        // shadow still running is dropped (its call was recorded as late).
        Some(work) => {
            // Pinned here, not boxed: boxing the call's large future cost
            // a copy and an allocation per shadowed request (bench/profile).
            let call = std::pin::pin!(call(state, plan, request, native, deadline));
            match futures::future::select(call, work).await {
                futures::future::Either::Left((answer, _late)) => answer,
                futures::future::Either::Right(((), call)) => call.await,
            }
        }
        None => call(state, plan, request, native, deadline).await,
    }
}

/// Bodies larger than this are parsed and counted on the blocking pool:
/// the work is linear in the body, but a body of megabytes still takes tens
/// of milliseconds, which would stall every other request on this worker.
const BLOCKING_PARSE_BYTES: usize = 64 * 1024;

/// Runs `work` here, or on the blocking pool when it is `large`.
async fn off_workers<T: Send + 'static>(
    large: bool,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if !large {
        return work();
    }
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        tracing::error!("parsing a request failed: {e}");
        Err(ApiError::invalid("the request could not be parsed"))
    })
}

/// Typed request and its features; wrong types and missing fields are
/// 400s that name the field.
fn parse(
    format: Format,
    body: &ChatBody,
    ctx: RequestContext,
) -> Result<(Features, Request), ApiError> {
    let request = match body {
        ChatBody::Bytes(bytes) => Request::from_slice(format, bytes),
        ChatBody::Value(value) => Request::from_json(format, value),
    }
    .map_err(ApiError::invalid)?;
    Ok((features::of(&request, ctx), request))
}

/// Resolves the requested model ([`Config::resolve_model`]): a name that
/// resolves to the router is routed by the policy, one that resolves to a
/// catalog model is served as named unless config lets policies override
/// it; anything else is 404. The policy sees the resolved name as
/// `requested_model` and the client's own in the `asked_model` label.
/// `client` is the client's owner id ([`crate::tenant::Owner`]): a
/// session's task belongs to it.
///
/// [`Config::resolve_model`]: crate::config::Config::resolve_model
pub async fn route(
    state: &AppState,
    client: &str,
    features: &mut Features,
) -> Result<Decision, ApiError> {
    let asked = features.requested_model.clone();
    let Some(resolved) = state.config.resolve_model(&asked) else {
        return Err(unknown_model(state, &asked));
    };
    if resolved.pattern.is_some() {
        features::set_label(&mut features.labels, "asked_model", asked.clone());
        features.requested_model = resolved.name().to_string();
    }
    if let ModelTarget::Catalog(id) = resolved.target
        && !state.config.policy_overrides_named_models
    {
        let reasoning = match resolved.pattern {
            None => "the client named the model".to_string(),
            Some(pattern) => {
                format!("the client asked for {asked:.100}, mapped by model_names {pattern:?}")
            }
        };
        return Ok(Decision {
            route: Route {
                tier: Tier::Direct,
                executor: id.to_string(),
                fallbacks: Vec::new(),
                planner: None,
                reasoning,
                deadline_ms: None,
                max_cost_usd: None,
                max_output_tokens: None,
                labels: Vec::new(),
            },
            policy: "client".into(),
            fallback_reason: None,
            arm: None,
            shadow: None,
            shadow_work: None,
        });
    }
    let task = task_turn(state, client, features);
    let catalog = state.dispatch.catalog();
    let decision = state.policies.decide(features, &catalog).await;
    if let (TaskTurn::Starts, Some(session)) = (task, &features.session) {
        state.task_tiers.put(client, session, decision.route.tier);
    }
    Ok(decision)
}

/// Whether a routed request starts a task or carries one on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskTurn {
    /// The latest message asks something: a task starts.
    Starts,
    /// The latest message answers tool calls.
    Continues,
}

/// Which turn of a task `features` is; on a turn that answers tool calls
/// in a session whose task is known, the policy is told the tier that task
/// started with (the `task_tier` label). A client's own `task_tier` label
/// is never passed on.
fn task_turn(state: &AppState, client: &str, features: &mut Features) -> TaskTurn {
    features
        .labels
        .retain(|(k, _)| k != features::TASK_TIER_LABEL);
    if !features::answers_tools(&features.messages) {
        return TaskTurn::Starts;
    }
    if let Some(tier) = features
        .session
        .as_deref()
        .and_then(|s| state.task_tiers.get(client, s))
    {
        features::set_label(
            &mut features.labels,
            features::TASK_TIER_LABEL,
            tier.as_str().to_string(),
        );
    }
    TaskTurn::Continues
}

/// The 404 for a model name nothing resolves.
pub(super) fn unknown_model(state: &AppState, asked: &str) -> ApiError {
    ApiError::new(
        ErrorKind::ModelNotFound,
        format!(
            "the model `{}` does not exist; use one of {} or an alias ({}){}",
            asked.chars().take(100).collect::<String>(),
            state
                .config
                .models
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            state.config.aliases.join(", "),
            if state.config.model_names.is_empty() {
                String::new()
            } else {
                format!(
                    ", or a name matching {}",
                    state
                        .config
                        .model_names
                        .iter()
                        .map(|r| r.pattern.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
    )
}

/// Tokens a context window must hold for `features`.
fn needed(features: &Features) -> u64 {
    features.input_tokens as u64 + features.max_output_tokens.unwrap_or(0) as u64
}

/// The request's total deadline: the config's, shortened by the route's and
/// by an `x-pointsman-deadline-ms` header.
fn deadline(state: &AppState, route: &Route, headers: &HeaderMap) -> Instant {
    let header = headers
        .get("x-pointsman-deadline-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let ms = [
        Some(state.config.resilience.total_deadline_ms),
        route.deadline_ms.map(u64::from),
        header,
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(state.config.resilience.total_deadline_ms);
    Instant::now() + Duration::from_millis(ms)
}

/// What the request may still spend under its client's and labels'
/// `[[budgets]]`, in USD, for routers to see: the tightest cap's headroom
/// as of its latest reservation ([`crate::ledger::Ledger::remaining`], no
/// store read); None without a capped budget, or before one has reserved
/// today.
fn remaining_budget(state: &AppState, budgets: &[crate::ledger::BudgetScope]) -> Option<f64> {
    state
        .ledger
        .remaining(budgets)
        .map(crate::ledger::record::usd)
}

/// Lowers the request's output limit to the route's cap, when the policy
/// set one below it (or the client set none).
fn cap_output(
    route: &Route,
    request: &mut Request,
    native: Option<&mut NativeRequest>,
    features: &mut Features,
) {
    let Some(cap) = route.max_output_tokens else {
        return;
    };
    if features.max_output_tokens.is_none_or(|asked| asked > cap) {
        request.cap_output_tokens(cap);
        if let Some(native) = native {
            native.cap_output_tokens(cap);
        }
        features.max_output_tokens = Some(cap);
    }
}

/// The models that may serve `route`: first corrected for what the request
/// needs (a model that cannot read its images or call its tools is
/// dropped, the reason appended to the route's), then those whose window
/// holds it.
fn candidates(
    state: &AppState,
    route: &mut Route,
    features: &Features,
) -> Result<Vec<Arc<ModelConfig>>, ApiError> {
    let needs = Needs::of(features);
    let lookup = |id: &str| {
        state.dispatch.model(id).map(|m| Abilities {
            capabilities: m.capabilities(),
            context_window: m.context_window,
        })
    };
    let safe = crate::policy::safe_route(&state.config);
    let correction = match capabilities::correct(route, &needs, lookup, &safe) {
        // Too large for every model: the window check below says so, as a
        // context-length error.
        Correction::Impossible(_) => {
            let capabilities_only = Needs { tokens: 0, ..needs };
            capabilities::correct(route, &capabilities_only, lookup, &safe)
        }
        correction => correction,
    };
    match correction {
        Correction::Unchanged => {}
        Correction::Corrected(corrected, why) => {
            tracing::info!(request = %features.id, "route corrected: {why}");
            let reasoning = format!("{}; {why}", route.reasoning);
            *route = corrected;
            route.reasoning = reasoning;
        }
        Correction::Impossible(why) => return Err(ApiError::invalid(why)),
    }
    let needed = needed(features);
    let mut out: Vec<Arc<ModelConfig>> = Vec::new();
    let mut largest = 0;
    for id in std::iter::once(&route.executor).chain(&route.fallbacks) {
        let Some(model) = state.dispatch.model(id) else {
            continue;
        };
        largest = largest.max(model.context_window);
        if (model.context_window as u64) >= needed && !out.iter().any(|m| m.id == model.id) {
            out.push(model.clone());
        }
    }
    if out.is_empty() {
        return Err(ApiError::new(
            ErrorKind::ContextLength,
            format!(
                "this request needs {needed} tokens ({} input + {} output), more than the largest context window among its models ({largest} tokens); shorten the conversation or lower max_tokens",
                features.input_tokens,
                features.max_output_tokens.unwrap_or(0)
            ),
        ));
    }
    Ok(out)
}

/// Calls the route's models through the dispatch layer and answers in
/// the client's format. A stream counts as answered once its first event
/// arrives: until then a failure falls back to the next candidate, after
/// it the client gets an error event.
async fn call(
    state: &AppState,
    plan: Plan,
    request: Request,
    native: Option<NativeRequest>,
    deadline: Instant,
) -> Result<Response, ApiError> {
    let mut plan = plan;
    let mut request = request;
    let mut native = native;
    plan.reservation = reserve(state, &plan, &mut request, native.as_mut()).await?;
    let sent = state
        .dispatch
        .send(Call {
            request: &request,
            native: native.as_ref(),
            chain: &plan.candidates,
            escalate: true,
            needed: plan.needed,
            deadline,
        })
        .await;
    let attempts = sent.calls();
    match sent.result {
        Ok(Answer::Complete(served, answer)) => {
            complete(state, &plan, served, *answer, &sent.attempts, sent.lease).await
        }
        Ok(Answer::Stream(served, events)) if request.is_stream() => Ok(streamed(
            state,
            plan,
            served,
            events,
            &request,
            sent.attempts,
            deadline,
            sent.lease,
        )
        .await),
        Ok(Answer::Stream(served, _)) => {
            let error = ProviderError::Malformed(
                "the provider streamed an answer that was not asked to stream".into(),
            );
            let outcome = failed(&plan, Some(&served), &sent.attempts, &error);
            settle(state, &plan, outcome, request.is_stream(), sent.lease).await?;
            Err(ApiError::from_upstream(&error))
        }
        Err(error) => {
            let outcome = failed(&plan, None, &sent.attempts, &error);
            settle(state, &plan, outcome, request.is_stream(), sent.lease).await?;
            let mut response_error = ApiError::from_upstream(&error);
            response_error.attempts = Some(attempts);
            Err(response_error)
        }
    }
}

/// Reserves the answer's worst case against the client's budgets, before
/// any upstream call: its input and its output cap on the dearest model
/// it may reach. A request without an output cap is held to its first
/// model's default so that the worst case is bounded. Refused: 429
/// `budget_exceeded`, which clients must not retry before the reset.
async fn reserve(
    state: &AppState,
    plan: &Plan,
    request: &mut Request,
    native: Option<&mut NativeRequest>,
) -> Result<Option<crate::ledger::Reservation>, ApiError> {
    if plan.caller.budgets.is_empty() {
        return Ok(None);
    }
    let cap = match request.max_output_tokens() {
        Some(cap) => cap,
        None => {
            let cap = crate::provider::DEFAULT_MAX_TOKENS;
            request.set_max_output_tokens(cap);
            if let Some(native) = native {
                native.cap_output_tokens(cap);
            }
            cap
        }
    };
    let input = plan.needed.saturating_sub(u64::from(cap));
    // Tokenizers differ: a tenth more input than counted here.
    let input = input + input / 10 + 16;
    let amount = state
        .dispatch
        .worst_case(&plan.candidates, true, input, u64::from(cap));
    state
        .dispatch
        .reserve(&plan.caller, amount)
        .await
        .map_err(|e| ApiError::from_reserve(e, crate::dispatch::unix_ms()))
}

/// How a call that got no usable answer went.
fn failed<'a>(
    plan: &'a Plan,
    served: Option<&'a Served>,
    attempts: &'a [crate::resilience::Attempt],
    error: &'a ProviderError,
) -> Outcome<'a> {
    static NO_USAGE: crate::provider::Usage = crate::provider::Usage {
        input_tokens: 0,
        output_tokens: 0,
        cached_input_tokens: 0,
        cache_creation_input_tokens: 0,
    };
    Outcome {
        served,
        first: plan.candidates.first().map(|m| m.id.as_str()),
        usage: &NO_USAGE,
        cost: Cost::default(),
        attempts,
        error: Some(error),
        broken: false,
        started: plan.started,
        at_ms: plan.at_ms,
        ttft: None,
    }
}

/// Settles the answer's call; an answer that cannot be recorded is not
/// served (see `[ledger] on_unavailable`).
async fn settle(
    state: &AppState,
    plan: &Plan,
    outcome: Outcome<'_>,
    stream: bool,
    lease: Option<(String, crate::resilience::balance::Lease)>,
) -> Result<(), ApiError> {
    let record = plan.caller.record(CallRole::Answer, stream, outcome);
    state
        .dispatch
        .settle(Settlement {
            record,
            lease,
            reservation: plan.reservation.clone(),
        })
        .await
        .map_err(|e| ApiError::new(ErrorKind::Overloaded, e.to_string()))
}

async fn complete(
    state: &AppState,
    plan: &Plan,
    served: Served,
    answer: Answer_,
    attempts: &[crate::resilience::Attempt],
    lease: Option<(String, crate::resilience::balance::Lease)>,
) -> Result<Response, ApiError> {
    let model = &served.model;
    let usage = answer.usage();
    // A passed-through answer goes back in its own API, as it came.
    let mut answer = if served.passed_through {
        answer
    } else {
        answer
            .into_format(plan.format)
            .map_err(|e| ApiError::new(ErrorKind::Upstream, e.to_string()))?
    };
    answer.set_model(&model.id);
    let own_cost = state.dispatch.price(&served, &usage);
    let mut cost = own_cost;
    cost.add(plan.planner_cost);
    let body = match (answer, &plan.responses) {
        (Answer_::OpenAi(r), Some(frame)) => {
            serde_json::to_vec(&chat_completion_to_response(r, frame, &model.id))
        }
        (Answer_::OpenAi(r), None) => serde_json::to_vec(&r),
        (Answer_::Anthropic(r), _) => serde_json::to_vec(&r),
        (Answer_::Responses(r), _) => r.to_vec(),
    }
    .map_err(|e| ApiError::new(ErrorKind::Upstream, e.to_string()))?;
    let outcome = Outcome {
        served: Some(&served),
        first: plan.candidates.first().map(|m| m.id.as_str()),
        usage: &usage,
        cost: own_cost,
        attempts,
        error: None,
        broken: false,
        started: plan.started,
        at_ms: plan.at_ms,
        ttft: None,
    };
    // The answer leaves only once it is on record.
    settle(state, plan, outcome, false, lease).await?;
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    routing_headers(headers, plan, &served, crate::resilience::calls(attempts));
    insert(headers, "x-pointsman-cost-usd", &format_usd(cost.usd));
    if plan.plan.is_some() {
        insert(
            headers,
            "x-pointsman-planner-cost-usd",
            &format_usd(plan.planner_cost.usd),
        );
    }
    insert(
        headers,
        "x-pointsman-baseline-cost-usd",
        &format_usd(cost.baseline_usd),
    );
    Ok(response)
}

fn routing_headers(headers: &mut HeaderMap, plan: &Plan, served: &Served, attempts: u32) {
    let model = &served.model;
    insert(headers, "x-pointsman-request-id", &plan.id);
    insert(headers, "x-pointsman-model", &model.id);
    insert(
        headers,
        "x-pointsman-tier",
        plan.decision.route.tier.as_str(),
    );
    insert(headers, "x-pointsman-policy", &plan.decision.policy);
    if let Some(arm) = &plan.decision.arm {
        insert(headers, "x-pointsman-arm", arm);
    }
    insert(headers, "x-pointsman-attempts", &attempts.to_string());
    if served.passed_through {
        insert(headers, "x-pointsman-passthrough", "responses");
    }
    if let Some(source) = plan.plan {
        insert(headers, "x-pointsman-plan", source.as_str());
    }
    if let Some(why) = &plan.plan_error {
        let why: String = why
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(MAX_REASON_HEADER)
            .collect();
        insert(headers, "x-pointsman-plan-error", &why);
    }
    let reason: String = plan
        .decision
        .route
        .reasoning
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_REASON_HEADER)
        .collect();
    insert(headers, "x-pointsman-reason", &reason);
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Relays a stream, translating it to the client's format, holding back
/// the final usage event to add the cost, and ending with an error event
/// (never a clean end) if the upstream breaks. The final event leaves only
/// once the call is on record.
#[allow(clippy::too_many_arguments)]
async fn streamed(
    state: &AppState,
    plan: Plan,
    served: Served,
    events: EventStream,
    request: &Request,
    attempts: Vec<crate::resilience::Attempt>,
    deadline: Instant,
    lease: Option<(String, crate::resilience::balance::Lease)>,
) -> Response {
    let client_format = plan.format;
    let include_usage = match request {
        Request::OpenAi(r) => r.include_usage(),
        Request::Anthropic(_) => true,
    };
    let model = served.model.clone();
    let planner_share = plan.plan.map(|_| plan.planner_cost);
    let mut relay = match &plan.responses {
        Some(frame) => ClientRelay::Responses(Box::new(
            ResponsesRelay::new((**frame).clone(), &model.id).planner_cost(planner_share),
        )),
        None => ClientRelay::Chat(Box::new(
            Relay::new(client_format, &model.id, include_usage).planner_cost(planner_share),
        )),
    };
    let mut head = HeaderMap::new();
    routing_headers(
        &mut head,
        &plan,
        &served,
        crate::resilience::calls(&attempts),
    );
    let dispatch = state.dispatch.clone();
    let ttft = plan.started.elapsed();
    let mut events = Batches::new(events);
    let body = async_stream(move |tx| async move {
        let send = |bytes: Vec<u8>| {
            let tx = tx.clone();
            async move {
                bytes.is_empty()
                    || tx
                        .send(Ok::<_, std::io::Error>(Bytes::from(bytes)))
                        .await
                        .is_ok()
            }
        };
        let mut failure = None;
        let mut client_left = false;
        // The last batch waits for the tail, so that they leave in one frame.
        let mut frame = Vec::new();
        while failure.is_none() {
            let batch = match tokio::time::timeout_at(deadline.into(), events.next()).await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(_) => {
                    failure = Some("the request's deadline passed".to_string());
                    break;
                }
            };
            for event in batch {
                match event.map_err(|e| e.to_string()).and_then(|e| relay.feed(e)) {
                    Ok(out) => out.iter().for_each(|bytes| frame.extend_from_slice(bytes)),
                    Err(message) => {
                        failure = Some(message);
                        break;
                    }
                }
            }
            // Past the upstream's last event only the end of its body is
            // left to come.
            if events.ended() || failure.is_some() || relay.finished_upstream() {
                continue;
            }
            if !send(std::mem::take(&mut frame)).await {
                // The client went away; dropping `events` ends the
                // upstream call. What it used so far is still billed.
                client_left = true;
                failure = Some("the client went away".into());
                break;
            }
        }
        if failure.is_none() && !relay.finished_upstream() {
            failure = Some("the provider's stream ended before the answer was complete".into());
        }
        let usage = relay.usage();
        let own_cost = dispatch.price(&served, &usage);
        let mut cost = own_cost;
        cost.add(planner_cost_of(&plan));
        let record = plan.caller.record(
            CallRole::Answer,
            true,
            Outcome {
                served: Some(&served),
                first: plan.candidates.first().map(|m| m.id.as_str()),
                usage: &usage,
                cost: own_cost,
                attempts: &attempts,
                error: None,
                broken: failure.is_some(),
                started: plan.started,
                at_ms: plan.at_ms,
                ttft: Some(ttft),
            },
        );
        // Only now is the call's outcome known: a stream that broke counts
        // against its endpoint's breaker. The last event waits for the
        // record.
        let recorded = dispatch
            .settle(Settlement {
                record,
                lease,
                reservation: plan.reservation.clone(),
            })
            .await;
        if client_left {
            return;
        }
        let tail = match (failure, recorded) {
            (Some(message), _) => {
                tracing::warn!(model = %served.model.id, "stream broke: {message}");
                relay.error(&message)
            }
            (None, Err(e)) => relay.error(&e.to_string()),
            (None, Ok(())) => relay.finish(cost),
        };
        tail.iter().for_each(|bytes| frame.extend_from_slice(bytes));
        send(frame).await;
    });
    // The head waits for the first frame, so that both leave in one write.
    let mut body = Box::pin(body);
    let first = body.next().await;
    let body = futures::stream::iter(first).chain(body);
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.extend(head);
    response
}

/// The planner's share a request reports, when it made the plan.
fn planner_cost_of(plan: &Plan) -> Cost {
    if plan.plan.is_some() {
        plan.planner_cost
    } else {
        Cost::default()
    }
}

/// A stream's events in batches: events that arrive together leave
/// together, as one frame and so one write to the client, rather than a
/// write and a wake-up of the client per event.
///
/// One upstream read usually carries the whole burst, but hyper's client
/// hands a body over from its connection task one HTTP chunk at a time, so
/// after taking an event the relay yields once to let that task decode the
/// next one from what it already holds. A yield costs far less than a write
/// to the client (about 20 µs on loopback); when nothing more is ready after
/// it, as between a model's tokens, the batch leaves at once.
struct Batches {
    events: EventStream,
    ended: bool,
}

/// Most events in one frame.
const MAX_BATCH: usize = 64;

impl Batches {
    fn new(events: EventStream) -> Self {
        Batches {
            events,
            ended: false,
        }
    }

    /// The next batch; `None` once the stream has ended.
    async fn next(&mut self) -> Option<Vec<Result<crate::provider::Event, ProviderError>>> {
        if self.ended {
            return None;
        }
        let Some(first) = self.events.next().await else {
            self.ended = true;
            return None;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let mut more = self.ready();
            if more.is_none() {
                tokio::task::yield_now().await;
                more = self.ready();
            }
            match more {
                Some(event) => batch.push(event),
                None => break,
            }
        }
        Some(batch)
    }

    /// Whether the stream has ended: no batch follows.
    fn ended(&self) -> bool {
        self.ended
    }

    /// An event that is ready now, if any.
    fn ready(&mut self) -> Option<Result<crate::provider::Event, ProviderError>> {
        if self.ended {
            return None;
        }
        match self.events.next().now_or_never() {
            Some(Some(event)) => Some(event),
            Some(None) => {
                self.ended = true;
                None
            }
            None => None,
        }
    }
}
