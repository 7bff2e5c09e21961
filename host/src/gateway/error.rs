//! Errors in the format of the API a request came in on.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::provider::wire::anthropic::{self, ErrorType};
use crate::provider::wire::openai;
use crate::provider::{Blame, Format, ProviderError};

/// What went wrong, in terms both APIs can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or asks for something impossible (400).
    InvalidRequest,
    /// The conversation does not fit any candidate model (400).
    ContextLength,
    /// No or wrong client key (401).
    Authentication,
    /// The path or object (a task) does not exist (404).
    NotFound,
    /// The model named resolves to nothing (404, OpenAI code
    /// `model_not_found`).
    ModelNotFound,
    /// The path does not take the request's method (405).
    MethodNotAllowed,
    /// The request conflicts with the object's state (409).
    Conflict,
    /// The body is over the size limit (413).
    TooLarge,
    /// The client did not send its request in time (408).
    RequestTimeout,
    /// Too many requests upstream (429).
    RateLimited,
    /// A spending cap would be passed (429, not to be retried before the
    /// cap resets).
    BudgetExceeded,
    /// The upstream failed or answered nonsense (502).
    Upstream,
    /// Every candidate is unavailable (503).
    Overloaded,
    /// The deadline passed (504).
    Timeout,
}

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Category.
    pub kind: ErrorKind,
    /// Message for the client; never contains credentials.
    pub message: String,
    /// Upstream attempts made before giving up, if any.
    pub attempts: Option<u32>,
    /// Passed on to the client as `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
    /// Sends `x-should-retry: false`, which the official SDKs obey.
    pub no_retry: bool,
}

impl ApiError {
    /// A new error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            attempts: None,
            retry_after: None,
            no_retry: false,
        }
    }

    /// A budget refusal: 429 `budget_exceeded`, naming the cap and its
    /// reset, with `Retry-After` until the reset and `x-should-retry:
    /// false`.
    pub fn budget_exceeded(refusal: &crate::ledger::Refusal, now_ms: i64) -> Self {
        let reset = chrono_free_utc(refusal.resets_at_ms);
        let mut error = ApiError::new(
            ErrorKind::BudgetExceeded,
            format!(
                "budget_exceeded: the {} budget of {} is ${:.2} (spent ${:.4}, ${:.4} held by calls in flight); this request could cost more than is left; it resets at {reset}",
                refusal.window.as_str(),
                refusal.scope,
                crate::ledger::record::usd(refusal.cap),
                crate::ledger::record::usd(refusal.spent),
                crate::ledger::record::usd(refusal.reserved),
            ),
        );
        error.retry_after = Some(((refusal.resets_at_ms - now_ms).max(0) as u64).div_ceil(1000));
        error.no_retry = true;
        error
    }

    /// Why a reservation against the budgets was not made, for the
    /// client: a refusal is [`ApiError::budget_exceeded`]; a store that
    /// cannot be asked is a 503 (budgets hold by refusing, so nothing was
    /// spent).
    pub fn from_reserve(error: crate::ledger::ReserveError, now_ms: i64) -> Self {
        match error {
            crate::ledger::ReserveError::Refused(refusal) => {
                Self::budget_exceeded(&refusal, now_ms)
            }
            crate::ledger::ReserveError::Store(e) => ApiError::new(
                ErrorKind::Overloaded,
                format!("budgets cannot be checked now, so nothing is spent: {e}"),
            ),
        }
    }

    /// A 400.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::InvalidRequest | ErrorKind::ContextLength => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::NotFound | ErrorKind::ModelNotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::RateLimited | ErrorKind::BudgetExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The error an upstream failure becomes for the client.
    pub fn from_upstream(error: &ProviderError) -> Self {
        if let ProviderError::Status { status, .. } = error
            && error.blame() == Blame::Endpoint
        {
            // The client's key is Pointsman's: a provider refusing the
            // gateway's key or model is the gateway's fault. The provider's
            // own message is left out, as it may quote part of the key.
            return Self::new(
                ErrorKind::Upstream,
                format!(
                    "the upstream refused the gateway's credentials, model or address (it answered {status}); \
                     the gateway's provider configuration needs fixing, not this request"
                ),
            );
        }
        let kind = match error {
            ProviderError::Timeout(_) => ErrorKind::Timeout,
            // Nothing answered: the upstream is unavailable.
            ProviderError::Connect(_) => ErrorKind::Overloaded,
            // It answered, then broke its answer.
            ProviderError::Broken(_) | ProviderError::Malformed(_) => ErrorKind::Upstream,
            // Nothing was asked: the breakers say the upstreams are down.
            ProviderError::CircuitOpen(_) => ErrorKind::Overloaded,
            ProviderError::Untranslatable(_) => ErrorKind::InvalidRequest,
            ProviderError::Budget(_) => ErrorKind::BudgetExceeded,
            ProviderError::Status { status, .. } => match status {
                400 | 422 => ErrorKind::InvalidRequest,
                413 => ErrorKind::TooLarge,
                429 => ErrorKind::RateLimited,
                503 | 529 => ErrorKind::Overloaded,
                504 => ErrorKind::Timeout,
                _ => ErrorKind::Upstream,
            },
        };
        let mut api = Self::new(kind, error.to_string());
        if let ProviderError::Status {
            retry_after: Some(after),
            ..
        } = error
        {
            api.retry_after = Some(after.as_secs_f64().ceil() as u64);
        }
        api
    }

    /// The OpenAI error body.
    pub fn openai_body(&self) -> openai::ErrorBody {
        let (kind, code) = match self.kind {
            ErrorKind::InvalidRequest => ("invalid_request_error", None),
            ErrorKind::ContextLength => ("invalid_request_error", Some("context_length_exceeded")),
            ErrorKind::Authentication => ("invalid_request_error", Some("invalid_api_key")),
            // OpenAI answers an unknown path or object with no code.
            ErrorKind::NotFound => ("invalid_request_error", None),
            ErrorKind::ModelNotFound => ("invalid_request_error", Some("model_not_found")),
            ErrorKind::MethodNotAllowed => ("invalid_request_error", Some("method_not_allowed")),
            ErrorKind::Conflict => ("invalid_request_error", Some("conflict")),
            ErrorKind::TooLarge => ("invalid_request_error", Some("request_too_large")),
            ErrorKind::RequestTimeout => ("invalid_request_error", Some("request_timeout")),
            ErrorKind::RateLimited => ("rate_limit_error", Some("rate_limit_exceeded")),
            ErrorKind::BudgetExceeded => ("insufficient_quota", Some("budget_exceeded")),
            ErrorKind::Upstream => ("api_error", Some("upstream_error")),
            ErrorKind::Overloaded => ("api_error", Some("overloaded")),
            ErrorKind::Timeout => ("api_error", Some("timeout")),
        };
        let mut body = openai::ErrorBody::new(kind, self.message.clone());
        body.error.code = code.map(|c| serde_json::Value::String(c.into()));
        body
    }

    /// The Anthropic error body.
    pub fn anthropic_body(&self) -> anthropic::ErrorBody {
        let kind = match self.kind {
            ErrorKind::InvalidRequest | ErrorKind::ContextLength | ErrorKind::RequestTimeout => {
                ErrorType::InvalidRequestError
            }
            ErrorKind::Authentication => ErrorType::AuthenticationError,
            ErrorKind::NotFound | ErrorKind::ModelNotFound => ErrorType::NotFoundError,
            ErrorKind::MethodNotAllowed | ErrorKind::Conflict => ErrorType::InvalidRequestError,
            ErrorKind::TooLarge => ErrorType::RequestTooLarge,
            ErrorKind::RateLimited | ErrorKind::BudgetExceeded => ErrorType::RateLimitError,
            ErrorKind::Upstream | ErrorKind::Timeout => ErrorType::ApiError,
            ErrorKind::Overloaded => ErrorType::OverloadedError,
        };
        anthropic::ErrorBody::new(kind, self.message.clone())
    }

    /// The response in `format`.
    pub fn into_response(self, format: Format) -> Response {
        let status = self.status();
        let body = match format {
            Format::OpenAi => serde_json::to_vec(&self.openai_body()),
            Format::Anthropic => serde_json::to_vec(&self.anthropic_body()),
        }
        .unwrap_or_default();
        let mut response = (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(after) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, after.into());
        }
        if self.no_retry {
            response.headers_mut().insert(
                "x-should-retry",
                axum::http::HeaderValue::from_static("false"),
            );
        }
        if let Some(attempts) = self.attempts {
            response
                .headers_mut()
                .insert("x-pointsman-attempts", attempts.into());
        }
        response
    }
}

/// `ms` (Unix milliseconds) as `YYYY-MM-DDTHH:MM:SSZ`.
fn chrono_free_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn status(status: u16, message: &str) -> ProviderError {
        ProviderError::Status {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    #[test]
    fn an_answer_that_broke_off_is_a_bad_gateway_and_no_answer_is_unavailable() {
        let broken = ApiError::from_upstream(&ProviderError::Broken("connection closed".into()));
        assert_eq!(broken.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(broken.anthropic_body().error.kind, ErrorType::ApiError);
        let body = broken.openai_body().error;
        assert_eq!(
            (body.kind.as_str(), body.code),
            ("api_error", Some("upstream_error".into()))
        );
        let refused = ApiError::from_upstream(&ProviderError::Connect("refused".into()));
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        let late = ApiError::from_upstream(&ProviderError::Timeout(Duration::from_secs(1)));
        assert_eq!(late.status(), StatusCode::GATEWAY_TIMEOUT);
    }

    #[test]
    fn a_refused_key_or_model_is_the_gateways_fault_and_quotes_nothing() {
        for code in [401, 403, 404] {
            let error = ApiError::from_upstream(&status(code, "Incorrect API key sk-abc...wxyz"));
            assert_eq!(error.status(), StatusCode::BAD_GATEWAY, "{code}");
            assert!(
                error
                    .message
                    .contains("refused the gateway's credentials, model or address"),
                "{}",
                error.message
            );
            assert!(!error.message.contains("sk-"), "{}", error.message);
        }
        for code in [400, 422] {
            let error = ApiError::from_upstream(&status(code, "messages: required"));
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{code}");
            assert!(error.message.contains("messages: required"));
        }
    }
}
