//! Serving a chat request on either API: parse, authenticate, route, call
//! the route's models in order, translate, price.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use serde_json::Value;

use super::AppState;
use super::error::{ApiError, ErrorKind};
use super::features::{self, RequestContext};
use super::relay::Relay;
use crate::config::ModelConfig;
use crate::ledger::{Cost, Prices, cost::format_usd};
use crate::orchestrator::transparent::{self, PlanSource};
use crate::policy::Decision;
use crate::policy::types::{Features, Route, Tier};
use crate::provider::async_stream;
use crate::provider::wire::{anthropic, openai};
use crate::provider::{EventStream, Format, ProviderError, Reply, Request, Response as Answer};

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
    match serve(&state, format, &headers, body).await {
        Ok(response) => response,
        Err(error) => {
            crate::metrics::request_failed(format, error.status().as_u16());
            error.into_response(format)
        }
    }
}

/// A request id unique within this process and across restarts.
fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    });
    format!("pm-{start:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

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
    /// Why a route that asked for a plan was served without one.
    plan_error: Option<String>,
}

async fn serve(
    state: &AppState,
    format: Format,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let client = state.auth.check(headers)?;
    let bytes = axum::body::to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorKind::TooLarge,
                format!(
                    "the request body is over the {} byte limit",
                    state.config.max_body_bytes
                ),
            )
        })?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    let id = request_id();
    let mut labels = features::header_labels(headers);
    labels.extend(client.labels);
    let ctx = RequestContext {
        id: id.clone(),
        labels,
        session: headers
            .get("x-pointsman-session")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let (features, mut request) = parse(format, &value, ctx)?;
    let decision = route(state, &features).await?;
    let candidates = candidates(state, &decision.route, &features)?;
    let deadline = deadline(state, &decision.route, headers);
    let (mut planner_cost, mut plan_source) = (Cost::default(), None);
    let mut plan_error = None;
    if decision.route.tier != Tier::Direct {
        // The planner gets the conversation uncut, not the policy's view.
        let conversation = features::conversation(format, &value);
        match transparent::plan_for(state, &features, &conversation, &decision.route, deadline)
            .await
        {
            Ok((plan, source)) => {
                transparent::add_plan(&mut request, &plan.text);
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
    let plan = Plan {
        id,
        decision,
        candidates,
        needed: needed(&features),
        format,
        planner_cost,
        plan: plan_source,
        plan_error,
    };
    call(state, plan, request, deadline).await
}

/// Typed request and features; wrong types and missing fields are 400s
/// that name the field.
fn parse(
    format: Format,
    value: &Value,
    ctx: RequestContext,
) -> Result<(Features, Request), ApiError> {
    use serde::Deserialize;
    let body_error = |e: serde_json::Error| ApiError::invalid(format!("invalid request: {e}"));
    match format {
        Format::OpenAi => {
            let features = features::from_openai(value, ctx);
            let request = openai::ChatRequest::deserialize(value).map_err(body_error)?;
            if request.messages.is_empty() {
                return Err(ApiError::invalid("`messages` must not be empty"));
            }
            if request.n.is_some_and(|n| n != 1) {
                return Err(ApiError::invalid("only `n: 1` is supported"));
            }
            Ok((features, Request::OpenAi(request)))
        }
        Format::Anthropic => {
            let features = features::from_anthropic(value, ctx);
            let request = anthropic::MessagesRequest::deserialize(value).map_err(body_error)?;
            if request.messages.is_empty() {
                return Err(ApiError::invalid("`messages` must not be empty"));
            }
            Ok((features, Request::Anthropic(request)))
        }
    }
}

/// An alias is always routed by the policy; a catalog model is served as
/// asked unless config lets policies override it; anything else is 404.
async fn route(state: &AppState, features: &Features) -> Result<Decision, ApiError> {
    let asked = features.requested_model.as_str();
    let is_alias = state.config.aliases.iter().any(|a| a == asked);
    let in_catalog = state.models.contains_key(asked);
    if !is_alias && !in_catalog {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!(
                "the model `{}` does not exist; use one of {} or an alias ({})",
                asked.chars().take(100).collect::<String>(),
                state
                    .config
                    .models
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                state.config.aliases.join(", ")
            ),
        ));
    }
    if in_catalog && !state.config.policy_overrides_named_models {
        return Ok(Decision {
            route: Route {
                tier: Tier::Direct,
                executor: asked.to_string(),
                fallbacks: Vec::new(),
                planner: None,
                reasoning: "the client named the model".into(),
                deadline_ms: None,
                max_cost_usd: None,
            },
            policy: "client".into(),
            fallback_reason: None,
        });
    }
    let catalog = state.catalog();
    Ok(state.policies.decide(features, &catalog).await)
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

/// The route's models that can hold the request; none is the API's own
/// context-length error.
fn candidates(
    state: &AppState,
    route: &Route,
    features: &Features,
) -> Result<Vec<Arc<ModelConfig>>, ApiError> {
    let needed = needed(features);
    let mut out: Vec<Arc<ModelConfig>> = Vec::new();
    let mut largest = 0;
    for id in std::iter::once(&route.executor).chain(&route.fallbacks) {
        let Some(model) = state.models.get(id.as_str()) else {
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

/// What the first successful attempt produced.
enum Served {
    Complete(Arc<ModelConfig>, Box<Answer>),
    Stream(Arc<ModelConfig>, EventStream),
}

/// Calls the route's models through the resilience layer. A stream counts
/// as answered once its first event arrives: until then a failure falls
/// back to the next candidate, after it the client gets an error event.
async fn call(
    state: &AppState,
    plan: Plan,
    request: Request,
    deadline: Instant,
) -> Result<Response, ApiError> {
    let first_token = Duration::from_millis(state.config.resilience.first_token_timeout_ms);
    let escalation = state.escalation(&plan.needed);
    let outcome = state
        .resilience
        .run(
            &plan.candidates,
            escalation,
            deadline,
            |model, endpoint, left| {
                let request = request.clone();
                async move {
                    let provider = state.provider(&endpoint.provider);
                    let mut upstream = request.into_format(provider.format()).map_err(|e| {
                        ProviderError::Status {
                            status: 400,
                            message: e.to_string(),
                            retry_after: None,
                        }
                    })?;
                    upstream.set_model(&endpoint.upstream);
                    upstream.request_usage();
                    match provider.send(upstream).await? {
                        Reply::Complete(answer) => Ok(Served::Complete(model, answer)),
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
                                    Ok(Served::Stream(model, rest))
                                }
                            }
                        }
                    }
                }
            },
        )
        .await;
    let attempts = outcome.calls();
    let lease = outcome.lease;
    match outcome.result {
        Ok(Served::Complete(model, answer)) => {
            crate::resilience::settle(lease, true);
            complete(state, &plan, &model, *answer, attempts)
        }
        Ok(Served::Stream(model, events)) if request.is_stream() => Ok(streamed(
            state, &plan, &model, events, &request, attempts, deadline, lease,
        )
        .await),
        Ok(Served::Stream(..)) => Err(ApiError::new(
            ErrorKind::Upstream,
            "the provider streamed an answer that was not asked to stream",
        )),
        Err(error) => {
            let mut response_error = ApiError::from_upstream(&error);
            response_error.attempts = Some(attempts);
            Err(response_error)
        }
    }
}

fn complete(
    state: &AppState,
    plan: &Plan,
    model: &ModelConfig,
    answer: Answer,
    attempts: u32,
) -> Result<Response, ApiError> {
    let usage = answer.usage();
    let mut answer = answer
        .into_format(plan.format)
        .map_err(|e| ApiError::new(ErrorKind::Upstream, e.to_string()))?;
    answer.set_model(&model.id);
    let mut cost = state.price(model, &usage);
    cost.add(plan.planner_cost);
    let body = match &answer {
        Answer::OpenAi(r) => serde_json::to_vec(r),
        Answer::Anthropic(r) => serde_json::to_vec(r),
    }
    .map_err(|e| ApiError::new(ErrorKind::Upstream, e.to_string()))?;
    crate::metrics::request_served(plan.format, &model.id, &plan.decision.route, &usage, cost);
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    routing_headers(headers, plan, model, attempts);
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

fn routing_headers(headers: &mut HeaderMap, plan: &Plan, model: &ModelConfig, attempts: u32) {
    insert(headers, "x-pointsman-request-id", &plan.id);
    insert(headers, "x-pointsman-model", &model.id);
    insert(
        headers,
        "x-pointsman-tier",
        plan.decision.route.tier.as_str(),
    );
    insert(headers, "x-pointsman-policy", &plan.decision.policy);
    insert(headers, "x-pointsman-attempts", &attempts.to_string());
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
/// (never a clean end) if the upstream breaks.
#[allow(clippy::too_many_arguments)]
async fn streamed(
    state: &AppState,
    plan: &Plan,
    model: &Arc<ModelConfig>,
    events: EventStream,
    request: &Request,
    attempts: u32,
    deadline: Instant,
    lease: Option<(String, crate::resilience::balance::Lease)>,
) -> Response {
    let client_format = plan.format;
    let include_usage = match request {
        Request::OpenAi(r) => r.include_usage(),
        Request::Anthropic(_) => true,
    };
    let mut relay = Relay::new(client_format, &model.id, include_usage)
        .planner_cost(plan.plan.map(|_| plan.planner_cost));
    let prices = Prices::from(&**model);
    let baseline = state.baseline_prices();
    let route = plan.decision.route.clone();
    let served = model.clone();
    let planner_cost = plan.planner_cost;
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
                return; // the client went away; dropping `events` ends the upstream call
            }
        }
        if failure.is_none() && !relay.finished_upstream() {
            failure = Some("the provider's stream ended before the answer was complete".into());
        }
        let usage = relay.usage();
        let mut cost = Cost::of(&usage, prices, baseline);
        cost.add(planner_cost);
        crate::metrics::request_served(client_format, &served.id, &route, &usage, cost);
        // Only now is the call's outcome known: a stream that broke counts
        // against its endpoint's breaker.
        crate::resilience::settle(lease, failure.is_none());
        let tail = match failure {
            Some(message) => {
                tracing::warn!(model = %served.id, "stream broke: {message}");
                crate::metrics::upstream_failure(&served.id);
                relay.error(&message)
            }
            None => relay.finish(cost),
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
    routing_headers(headers, plan, model, attempts);
    response
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
