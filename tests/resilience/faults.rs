//! Faults

use super::*;

/// What an upstream does to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A 5xx, 408 or 409: retried, then the next model.
    Status(u16),
    /// 429 without `Retry-After`: retried with backoff.
    RateLimited,
    /// 429 with `Retry-After: 0`: retried at once.
    RateLimitedRetryNow,
    /// 429 with a `Retry-After` over `backoff_max_ms`: the next model, no
    /// wait.
    RateLimitedRetryLater,
    /// 400 or 422: the request's fault, not retried anywhere.
    Refused(u16),
    /// 401, 403 or 404: the provider refuses the gateway's key or model
    /// name. The endpoint's fault: not asked again, the next one is.
    Denied(u16),
    /// No answer before the provider's timeout.
    Hang,
    /// A TCP reset instead of an answer.
    Reset,
    /// 200 with a body (or first event) that is not JSON.
    Malformed,
    /// 200, a good first event, then one that is not JSON (a non-streamed
    /// answer is malformed from the start).
    MalformedMidStream,
    /// 200 and headers, then silence.
    StallBeforeFirst,
    /// 200 and two events (or a few bytes), then silence.
    StallMidway,
    /// 200 and headers, then the connection drops.
    CutBeforeFirst,
    /// 200 and two events (or a few bytes), then the connection drops.
    CutMidway,
    /// The answer, late.
    Slow,
}

pub(crate) const FAULTS: &[Fault] = &[
    Fault::Status(500),
    Fault::Status(502),
    Fault::Status(503),
    Fault::Status(408),
    Fault::Status(409),
    Fault::RateLimited,
    Fault::RateLimitedRetryNow,
    Fault::RateLimitedRetryLater,
    Fault::Refused(400),
    Fault::Refused(422),
    Fault::Denied(401),
    Fault::Denied(403),
    Fault::Denied(404),
    Fault::Hang,
    Fault::Reset,
    Fault::Malformed,
    Fault::MalformedMidStream,
    Fault::StallBeforeFirst,
    Fault::StallMidway,
    Fault::CutBeforeFirst,
    Fault::CutMidway,
    Fault::Slow,
];

/// How the daemon should treat one faulty model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Treatment {
    /// It answers (late, maybe).
    Answers,
    /// `1 + max_retries` attempts, then the next model.
    Retried,
    /// One attempt, then the next model.
    MovedOn,
    /// One attempt, and its error is the client's.
    Final,
    /// One attempt whose stream started: the client gets it, broken.
    Broken,
}

pub(crate) const SSE: &str = "text/event-stream";

/// A first event of a stream, in `wire`'s format.
pub(crate) fn first_event(wire: Wire) -> String {
    match wire {
        Wire::OpenAi => format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0,
                   "model": "m", "choices": [{"index": 0,
                   "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]})
        ),
        Wire::Anthropic => format!(
            "event: message_start\ndata: {}\n\n",
            json!({"type": "message_start", "message": {"id": "msg_x", "type": "message",
                   "role": "assistant", "model": "m", "content": [], "stop_reason": null,
                   "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 1}}})
        ),
    }
}

/// An event whose data is not JSON.
pub(crate) fn garbage_event(wire: Wire) -> String {
    match wire {
        Wire::OpenAi => "data: {\"id\": chatcmpl-x, \"choices\n\n".into(),
        Wire::Anthropic => "event: content_block_delta\ndata: {\"type\": content_bl\n\n".into(),
    }
}

impl Fault {
    pub(crate) fn treatment(self, stream: bool) -> Treatment {
        match self {
            Fault::Slow => Treatment::Answers,
            Fault::Refused(_) => Treatment::Final,
            Fault::RateLimitedRetryLater | Fault::Denied(_) => Treatment::MovedOn,
            Fault::MalformedMidStream | Fault::StallMidway | Fault::CutMidway if stream => {
                Treatment::Broken
            }
            _ => Treatment::Retried,
        }
    }

    /// The client's error when every model of the chain has this fault.
    pub(crate) fn error(self) -> ErrorShape {
        match self {
            Fault::Status(503) => UNAVAILABLE,
            Fault::Status(_) | Fault::Denied(_) => BAD_GATEWAY,
            Fault::Refused(_) => INVALID,
            Fault::RateLimited | Fault::RateLimitedRetryNow | Fault::RateLimitedRetryLater => {
                RATE_LIMITED
            }
            Fault::Hang | Fault::StallBeforeFirst | Fault::StallMidway => TIMED_OUT,
            // Nothing answered.
            Fault::Reset => UNAVAILABLE,
            // It answered 200, then broke its answer.
            Fault::CutBeforeFirst | Fault::CutMidway => BAD_GATEWAY,
            Fault::Malformed | Fault::MalformedMidStream => BAD_GATEWAY,
            Fault::Slow => unreachable!("a slow upstream answers"),
        }
    }

    /// The upstream's reply to `request`, in `wire`'s format.
    pub(crate) fn reply(self, request: &RecordedRequest, wire: Wire) -> Reply {
        let stream = request.is_stream();
        let midway = if stream { 2 } else { 20 };
        match self {
            Fault::Status(status) | Fault::Refused(status) => {
                Reply::error(status, "injected fault")
            }
            // Worded as real providers word them, but quoting the key in
            // full (they mask most of it), so that a leak would show.
            Fault::Denied(status) => Reply::error(
                status,
                match status {
                    401 => format!(
                        "Incorrect API key provided: {}",
                        request.api_key().unwrap_or_default()
                    ),
                    403 => format!(
                        "the key {} has no access to this model",
                        request.api_key().unwrap_or_default()
                    ),
                    _ => format!(
                        "The model `{}` does not exist",
                        request.model().unwrap_or_default()
                    ),
                },
            ),
            Fault::RateLimited => Reply::error(429, "slow down"),
            Fault::RateLimitedRetryNow => Reply::error(429, "slow down").header("retry-after", "0"),
            Fault::RateLimitedRetryLater => {
                Reply::error(429, "slow down").header("retry-after", "1")
            }
            Fault::Hang => Reply::echo().delay(Duration::from_secs(20)),
            Fault::Reset => Reply::reset(),
            Fault::Malformed if stream => Reply::raw(200, SSE, garbage_event(wire)),
            Fault::MalformedMidStream if stream => Reply::raw(
                200,
                SSE,
                format!("{}{}", first_event(wire), garbage_event(wire)),
            ),
            Fault::Malformed | Fault::MalformedMidStream => Reply::raw(
                200,
                "application/json",
                "{\"id\": \"x\", \"choices\": [{\"mess",
            ),
            Fault::StallBeforeFirst => Reply::echo().stall_after(0),
            Fault::StallMidway => Reply::echo().stall_after(midway),
            Fault::CutBeforeFirst => Reply::echo().truncate_after(0),
            Fault::CutMidway => Reply::echo().truncate_after(midway),
            Fault::Slow => Reply::echo()
                .delay(SLOW)
                .chunk_delay(Duration::from_millis(10)),
        }
    }
}
