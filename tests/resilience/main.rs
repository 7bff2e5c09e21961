//! Fault injection: the real daemon against local upstreams that, on
//! command, answer 5xx, 408, 409, 429 with and without `Retry-After`, a 400
//! or 422 that must not be retried, a 401, 403 or 404 that refuses the
//! gateway's key or model (not retried on that endpoint, but the next one
//! is tried), hang, reset the connection, send malformed JSON, stall or cut
//! a stream before or after its first event, or are slow.
//!
//! The fault matrix crosses every fault with both client APIs, streaming or
//! not, both upstream formats, and three chains: the safe route (`"model":
//! "auto"`: primary → backup → escalation), a named model (primary →
//! escalation), and a chain whose every model is faulty. For each case it
//! checks who answered (or the error, in the client's format), the attempts
//! per upstream against the retry limits, and that `x-pointsman-attempts`
//! equals the requests the upstreams received, and that no answer quotes a
//! provider key. Further tests cover the breakers (open, skipped, half-open
//! probe, closed) for every fault, the retry budget, `Retry-After` (seconds
//! and HTTP-dates), deadlines, the two balancing strategies, and a pool
//! whose one endpoint has a wrong key.
//!
//! The tests live in `tests/resilience/`, one module per concern: `matrix`
//! (the fault matrix), `breakers`, `retries` (the budget, `Retry-After`,
//! deadlines), `transport` (streams, proxies, connection reuse) and
//! `balancing`, and `independent` (the faults of a mock server written by
//! others); `setup`, `client` and `faults` hold what they share (the
//! daemon's configuration, the client side and its checks, the faults).

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use pointsman::config::Config;
use pointsman_test_support::upstream::{
    ANTHROPIC_KEY, OPENAI_KEY, RecordedRequest, Reply, Upstream, UpstreamConfig,
};
use serde_json::{Value, json};

use common::Daemon;

/// Per-attempt timeout of every provider.
const TIMEOUT_MS: u64 = 500;
/// Time a stream may take to its first event (under the provider timeout,
/// so that a stall before the first event is caught by this one).
const FIRST_TOKEN_MS: u64 = 400;
/// Retries per model in the fault matrix.
const MAX_RETRIES: u32 = 2;
/// How late a slow upstream answers (well under the timeouts).
const SLOW: Duration = Duration::from_millis(150);
/// Requests of the matrix in flight at once.
const PARALLEL: usize = 24;

mod balancing;
mod breakers;
mod client;
mod faults;
mod independent;
mod matrix;
mod retries;
mod setup;
mod transport;

use breakers::*;
use client::*;
use faults::*;
use retries::*;
use setup::*;
