//! Per-client request limits: requests per minute and requests in flight,
//! per client key and per value of a key's label (`team = "platform"`).
//!
//! Limits are off unless configured: a gateway in front of one team should
//! not throttle it by surprise. When none is configured the check is one
//! branch, so an unlimited daemon pays nothing for this.
//!
//! A request is admitted only if every limit that applies to it has room,
//! checked and taken under one lock, so a refused request consumes nothing.
//! What it takes of a concurrency limit is given back when its answer's
//! last byte has left (or the client went away), not when the handler
//! returns: a stream is in flight until it ends ([`super::inflight`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::auth::Client;
use super::error::{ApiError, ErrorKind};
use crate::config::Config;

/// A limit as configured.
#[derive(Debug, Clone, Copy, Default)]
struct Limit {
    per_minute: Option<u32>,
    concurrent: Option<u32>,
}

/// What a limit is kept for: a client, or one value of a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Client(String),
    Label(String, String),
}

impl Subject {
    fn describe(&self) -> String {
        match self {
            Subject::Client(name) => format!("client {name:?}"),
            Subject::Label(label, value) => format!("{label} = {value:?}"),
        }
    }
}

/// A token bucket refilled at `per_minute` a minute, holding at most a
/// minute's worth.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The daemon's limits and what each subject has used.
pub struct Limiter {
    clients: HashMap<String, Limit>,
    labels: HashMap<String, Limit>,
    buckets: Mutex<HashMap<Subject, Bucket>>,
    in_flight: Mutex<HashMap<Subject, Arc<AtomicU32>>>,
}

/// A request's place within its concurrency limits, given back on drop.
#[derive(Debug, Default)]
pub struct Admission {
    held: Vec<Arc<AtomicU32>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        for count in &self.held {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Limiter {
    /// The limits of `config`.
    pub fn new(config: &Config) -> Self {
        let clients = config
            .clients
            .iter()
            .filter(|c| c.requests_per_minute.is_some() || c.max_concurrent.is_some())
            .map(|c| {
                let limit = Limit {
                    per_minute: c.requests_per_minute,
                    concurrent: c.max_concurrent,
                };
                (c.name.clone(), limit)
            })
            .collect();
        let labels = config
            .label_limits
            .iter()
            .map(|l| {
                let limit = Limit {
                    per_minute: l.requests_per_minute,
                    concurrent: l.max_concurrent,
                };
                (l.label.clone(), limit)
            })
            .collect();
        Limiter {
            clients,
            labels,
            buckets: Mutex::default(),
            in_flight: Mutex::default(),
        }
    }

    /// Admits a request of `client`, or says which limit it is over (429
    /// with `retry-after`).
    pub fn admit(&self, client: &Client) -> Result<Admission, ApiError> {
        if self.clients.is_empty() && self.labels.is_empty() {
            return Ok(Admission::default());
        }
        let mut subjects = Vec::new();
        if let Some(limit) = self.clients.get(&client.name) {
            subjects.push((Subject::Client(client.name.clone()), *limit));
        }
        for (label, value) in &client.labels {
            if let Some(limit) = self.labels.get(label) {
                subjects.push((Subject::Label(label.clone(), value.clone()), *limit));
            }
        }
        if subjects.is_empty() {
            return Ok(Admission::default());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        // First look, then take: a refusal must leave every count as it was.
        for (subject, limit) in &subjects {
            if let Some(per_minute) = limit.per_minute {
                let bucket = buckets.entry(subject.clone()).or_insert(Bucket {
                    tokens: per_minute as f64,
                    at: now,
                });
                refill(bucket, per_minute, now);
                if bucket.tokens < 1.0 {
                    let wait = (1.0 - bucket.tokens) * 60.0 / per_minute as f64;
                    return Err(refusal(
                        format!(
                            "{} is over its limit of {per_minute} requests per minute",
                            subject.describe()
                        ),
                        Duration::from_secs_f64(wait),
                    ));
                }
            }
            if let Some(most) = limit.concurrent {
                let count = in_flight.entry(subject.clone()).or_default();
                if count.load(Ordering::Acquire) >= most {
                    return Err(refusal(
                        format!(
                            "{} already has {most} requests in flight, its limit",
                            subject.describe()
                        ),
                        Duration::from_secs(1),
                    ));
                }
            }
        }
        let mut admission = Admission::default();
        for (subject, limit) in &subjects {
            if limit.per_minute.is_some()
                && let Some(bucket) = buckets.get_mut(subject)
            {
                bucket.tokens -= 1.0;
            }
            if limit.concurrent.is_some()
                && let Some(count) = in_flight.get(subject)
            {
                count.fetch_add(1, Ordering::AcqRel);
                admission.held.push(count.clone());
            }
        }
        Ok(admission)
    }
}

fn refill(bucket: &mut Bucket, per_minute: u32, now: Instant) {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * per_minute as f64 / 60.0).min(per_minute as f64);
    bucket.at = now;
}

fn refusal(message: String, wait: Duration) -> ApiError {
    let mut error = ApiError::new(ErrorKind::RateLimited, message);
    error.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(extra: &str) -> (Limiter, Client, Client) {
        let toml = format!("{}\n{extra}", crate::config::DEMO_TOML);
        let config = Config::parse(&toml).unwrap();
        let auth = super::super::auth::Auth::new(&config);
        let client = |key: &str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert("x-api-key", key.parse().unwrap());
            auth.check(&headers).unwrap()
        };
        (Limiter::new(&config), client("key-a"), client("key-b"))
    }

    fn clients(a: &str, b: &str) -> String {
        let hash = |k: &str| {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(k.as_bytes()))
        };
        format!(
            "[[clients]]\nname = \"a\"\nkey_sha256 = \"{}\"\nlabels = {{ team = \"core\" }}\n{a}\n\
             [[clients]]\nname = \"b\"\nkey_sha256 = \"{}\"\nlabels = {{ team = \"core\" }}\n{b}\n",
            hash("key-a"),
            hash("key-b"),
        )
    }

    #[test]
    fn a_client_over_its_rate_is_refused_and_others_are_not() {
        let (limiter, a, b) = limiter(&clients("requests_per_minute = 3", ""));
        for _ in 0..3 {
            limiter.admit(&a).unwrap();
        }
        let refused = limiter.admit(&a).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::RateLimited);
        assert!(
            refused.message.contains("client \"a\""),
            "{}",
            refused.message
        );
        assert!(refused.retry_after.unwrap() >= 1);
        for _ in 0..10 {
            limiter.admit(&b).unwrap();
        }
    }

    #[test]
    fn concurrency_is_given_back_when_the_admission_is_dropped() {
        let (limiter, a, _) = limiter(&clients("max_concurrent = 2", ""));
        let first = limiter.admit(&a).unwrap();
        let _second = limiter.admit(&a).unwrap();
        assert!(limiter.admit(&a).is_err());
        drop(first);
        limiter.admit(&a).unwrap();
    }

    #[test]
    fn a_label_value_shares_one_limit_and_a_refusal_takes_nothing() {
        let extra = format!(
            "{}\n[[label_limits]]\nlabel = \"team\"\nmax_concurrent = 2\n",
            clients("requests_per_minute = 1", "")
        );
        let (limiter, a, b) = limiter(&extra);
        let _a = limiter.admit(&a).unwrap();
        // `a` is out of its rate: the refusal must not take a team slot.
        assert!(limiter.admit(&a).is_err());
        let _b = limiter.admit(&b).unwrap();
        let refused = limiter.admit(&b).unwrap_err();
        assert!(
            refused.message.contains("team = \"core\""),
            "{}",
            refused.message
        );
    }
}
