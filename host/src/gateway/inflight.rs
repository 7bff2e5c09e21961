//! What an answer carries until its last byte has left: its client's place
//! in the concurrency limits, and the clock of its duration and time to
//! first token. A handler returns as soon as a stream starts, so neither
//! can be settled there.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::response::Response;
use bytes::Bytes;

use super::limits::Admission;

/// `response`, whose duration (and, streamed, time to first token) is
/// recorded under `api` when its body ends, and which holds `admission`
/// until then.
pub fn finish_when_sent(
    response: Response,
    admission: Admission,
    api: &'static str,
    started: Instant,
) -> Response {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let tier = match header("x-pointsman-tier").as_deref() {
        Some("direct") => "direct",
        Some("plan") => "plan",
        Some("plan-and-verify") => "plan-and-verify",
        _ => "none",
    };
    let streamed = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let model = if streamed {
        header("x-pointsman-model")
    } else {
        None
    };
    response.map(|body| {
        Body::new(InFlight {
            body,
            _admission: admission,
            clock: Some(Clock {
                api,
                tier,
                started,
                first_token_of: model,
            }),
        })
    })
}

struct Clock {
    api: &'static str,
    tier: &'static str,
    started: Instant,
    /// For a stream: the model whose first token is still to be timed.
    first_token_of: Option<String>,
}

/// A body that keeps an [`Admission`] and records its timings.
struct InFlight {
    body: Body,
    _admission: Admission,
    clock: Option<Clock>,
}

impl InFlight {
    fn ended(&mut self) {
        if let Some(clock) = self.clock.take() {
            let seconds = clock.started.elapsed().as_secs_f64();
            crate::metrics::request_duration(clock.api, clock.tier, "ok", seconds);
        }
    }
}

impl HttpBody for InFlight {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if frame.is_data() => {
                if let Some(clock) = &mut self.clock
                    && let Some(model) = clock.first_token_of.take()
                {
                    crate::metrics::time_to_first_token(
                        &model,
                        clock.started.elapsed().as_secs_f64(),
                    );
                }
                if self.body.is_end_stream() {
                    self.ended();
                }
            }
            Poll::Ready(None) => self.ended(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // A client that went away mid-answer: still a request that ended.
        self.ended();
    }
}
