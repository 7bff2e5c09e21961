//! Choosing an endpoint of a model: round-robin, or least-latency by the
//! power of two choices over a peak-EWMA of latency weighted by requests in
//! flight (the scheme of Finagle and Linkerd).
//!
//! tower's `balance::p2c` implements the same choice, but over `Service`s
//! discovered as a stream; Pointsman's endpoints are fixed per model and
//! must also be skipped when their breaker is open, which is simpler to
//! express directly here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::breaker::{BreakerConfig, CircuitBreaker, Permit};

pub use crate::config::resilience::Strategy;

/// How fast the latency estimate forgets: the decay time constant.
const EWMA_DECAY: Duration = Duration::from_secs(10);
/// Latency samples kept for the median.
const SAMPLES: usize = 64;

/// One place a model can be called: a provider and an upstream model name.
#[derive(Debug)]
pub struct Endpoint {
    /// Provider name.
    pub provider: String,
    /// Model name at the provider.
    pub upstream: String,
    /// This endpoint's breaker.
    pub breaker: CircuitBreaker,
    in_flight: AtomicUsize,
    latency: Mutex<Latency>,
}

#[derive(Debug)]
struct Latency {
    /// Peak-EWMA estimate in seconds; starts at zero so new endpoints get
    /// tried.
    ewma: f64,
    updated: Instant,
    samples: VecDeque<Duration>,
    /// Median of `samples`, recomputed on each observation (reads are far
    /// more frequent: every routed request reads every model's health).
    p50: Option<Duration>,
}

impl Endpoint {
    /// A fresh endpoint with a closed breaker.
    pub fn new(provider: &str, upstream: &str, breaker: BreakerConfig) -> Self {
        Endpoint {
            provider: provider.to_string(),
            upstream: upstream.to_string(),
            breaker: CircuitBreaker::new(breaker),
            in_flight: AtomicUsize::new(0),
            latency: Mutex::new(Latency {
                ewma: 0.0,
                updated: Instant::now(),
                samples: VecDeque::with_capacity(SAMPLES + 1),
                p50: None,
            }),
        }
    }

    /// Records the latency of a completed call.
    pub fn observe(&self, latency: Duration) {
        let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let rtt = latency.as_secs_f64();
        if rtt > l.ewma {
            // Peak: a slow answer counts at once...
            l.ewma = rtt;
        } else {
            // ...and the estimate decays back with time, not with calls.
            let elapsed = now.duration_since(l.updated).as_secs_f64();
            let w = (-elapsed / EWMA_DECAY.as_secs_f64()).exp();
            l.ewma = l.ewma * w + rtt * (1.0 - w);
        }
        l.updated = now;
        l.samples.push_back(latency);
        if l.samples.len() > SAMPLES {
            l.samples.pop_front();
        }
        // A linear-time selection on a stack copy: this runs on every call.
        let mut window = [Duration::ZERO; SAMPLES];
        let n = l.samples.len();
        for (slot, sample) in window.iter_mut().zip(&l.samples) {
            *slot = *sample;
        }
        let (_, median, _) = window[..n].select_nth_unstable(n / 2);
        l.p50 = Some(*median);
    }

    /// Median of recent latencies.
    pub fn p50(&self) -> Option<Duration> {
        self.latency.lock().unwrap_or_else(|p| p.into_inner()).p50
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn load(&self) -> f64 {
        let ewma = self.latency.lock().unwrap_or_else(|p| p.into_inner()).ewma;
        // An endpoint with no estimate yet is cheapest, so it gets sampled.
        (ewma.max(1e-6)) * (self.in_flight() as f64 + 1.0)
    }
}

/// A call in progress on an endpoint: counts as in flight until dropped.
pub struct Lease {
    /// The endpoint.
    pub endpoint: Arc<Endpoint>,
    /// The breaker's permit.
    pub permit: Permit,
    started: Instant,
    /// When the answer started and its success was recorded.
    answered: Option<Instant>,
    recorded: bool,
}

impl Lease {
    fn new(endpoint: Arc<Endpoint>, permit: Permit) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Lease {
            endpoint,
            permit,
            started: Instant::now(),
            answered: None,
            recorded: false,
        }
    }

    /// Notes that the answer has started (a stream's first event) and
    /// records the success: the endpoint has answered. Its latency is the
    /// time to here, whatever the stream's length.
    ///
    /// Recording at the first event rather than at the stream's end keeps
    /// the breaker's window fair: failures arrive fast and would otherwise
    /// fill a fresh window before the successes of long streams land.
    /// Returns the breaker's new state if it changed.
    pub fn mark_answered(&mut self) -> Option<super::breaker::State> {
        if self.recorded {
            return None;
        }
        self.recorded = true;
        let now = Instant::now();
        self.answered = Some(now);
        self.endpoint.observe(now.duration_since(self.started));
        self.endpoint.breaker.record_at(self.permit, true, now)
    }

    /// Records the outcome; successes also feed the latency estimate. After
    /// [`Lease::mark_answered`] only a failure (a stream broken midway) is
    /// recorded, by turning that success into a failure. Returns the
    /// breaker's new state if it changed.
    pub fn finish(mut self, success: bool) -> Option<super::breaker::State> {
        if let Some(at) = self.answered {
            return (!success)
                .then(|| self.endpoint.breaker.amend_to_failure(at))
                .flatten();
        }
        self.recorded = true;
        let elapsed = self.started.elapsed();
        if success {
            self.endpoint.observe(elapsed);
        } else {
            // A failure is as slow as it took, or slower: a fast 503 must not
            // make an endpoint look attractive.
            self.endpoint.observe(elapsed.max(Duration::from_secs(1)));
        }
        self.endpoint.breaker.record(self.permit, success)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.recorded {
            self.endpoint.breaker.release(self.permit);
        }
    }
}

/// A model's endpoints and how to choose among them.
#[derive(Debug)]
pub struct Balancer {
    strategy: Strategy,
    endpoints: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
    rng: AtomicU64,
}

impl Balancer {
    /// Takes over `old`'s endpoint of the same provider and upstream name,
    /// with its breaker, latency and requests in flight, for each of this
    /// balancer's endpoints that has one.
    pub fn adopt(&mut self, old: &Balancer) {
        for endpoint in &mut self.endpoints {
            if let Some(same) = old
                .endpoints
                .iter()
                .find(|e| e.provider == endpoint.provider && e.upstream == endpoint.upstream)
            {
                *endpoint = same.clone();
            }
        }
    }

    /// A balancer over `endpoints` (at least one).
    pub fn new(strategy: Strategy, endpoints: Vec<Endpoint>) -> Self {
        Balancer {
            strategy,
            endpoints: endpoints.into_iter().map(Arc::new).collect(),
            next: AtomicUsize::new(0),
            rng: AtomicU64::new(0x2545_F491_4F6C_DD1D),
        }
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Whether any endpoint's breaker would let a call through.
    pub fn available(&self) -> bool {
        self.available_except(&[])
    }

    /// Whether an endpoint other than those of `except` would let a call
    /// through.
    pub fn available_except(&self, except: &[Arc<Endpoint>]) -> bool {
        self.endpoints
            .iter()
            .any(|e| !excluded(e, except) && e.breaker.would_allow())
    }

    /// Picks an endpoint whose breaker allows a call, or none.
    pub fn pick(&self) -> Option<Lease> {
        self.pick_except(&[])
    }

    /// Picks an endpoint whose breaker allows a call, other than those of
    /// `except`, or none.
    pub fn pick_except(&self, except: &[Arc<Endpoint>]) -> Option<Lease> {
        match self.strategy {
            Strategy::RoundRobin => self.round_robin(except),
            Strategy::LeastLatency => self
                .least_latency(except)
                .or_else(|| self.round_robin(except)),
        }
    }

    fn round_robin(&self, except: &[Arc<Endpoint>]) -> Option<Lease> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|i| {
            let endpoint = &self.endpoints[(start + i) % n];
            if excluded(endpoint, except) {
                return None;
            }
            endpoint
                .breaker
                .try_acquire()
                .map(|permit| Lease::new(endpoint.clone(), permit))
        })
    }

    fn least_latency(&self, except: &[Arc<Endpoint>]) -> Option<Lease> {
        let open: Vec<&Arc<Endpoint>> = self
            .endpoints
            .iter()
            .filter(|e| !excluded(e, except) && e.breaker.would_allow())
            .collect();
        let chosen = match open.len() {
            0 => return None,
            1 => open[0],
            n => {
                let r = self.random();
                let a = (r % n as u64) as usize;
                let b = (a + 1 + ((r >> 32) % (n as u64 - 1)) as usize) % n;
                if open[a].load() <= open[b].load() {
                    open[a]
                } else {
                    open[b]
                }
            }
        };
        chosen
            .breaker
            .try_acquire()
            .map(|permit| Lease::new(chosen.clone(), permit))
    }

    fn random(&self) -> u64 {
        // xorshift; a race between threads only reuses a draw.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }
}

fn excluded(endpoint: &Arc<Endpoint>, except: &[Arc<Endpoint>]) -> bool {
    except.iter().any(|e| Arc::ptr_eq(e, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint::new(&format!("p{i}"), "m", BreakerConfig::default()))
            .collect()
    }

    #[test]
    fn round_robin_takes_turns() {
        let b = Balancer::new(Strategy::RoundRobin, endpoints(3));
        let picks: Vec<String> = (0..6)
            .map(|_| b.pick().unwrap().endpoint.provider.clone())
            .collect();
        assert_eq!(picks, ["p0", "p1", "p2", "p0", "p1", "p2"]);
    }

    #[test]
    fn least_latency_prefers_the_fast_endpoint() {
        let b = Balancer::new(Strategy::LeastLatency, endpoints(2));
        b.endpoints()[0].observe(Duration::from_millis(5));
        b.endpoints()[1].observe(Duration::from_millis(200));
        let fast = (0..100)
            .filter(|_| b.pick().unwrap().endpoint.provider == "p0")
            .count();
        assert_eq!(fast, 100, "with two endpoints both are always compared");
    }

    #[test]
    fn in_flight_requests_weigh_on_the_choice() {
        let b = Balancer::new(Strategy::LeastLatency, endpoints(2));
        b.endpoints()[0].observe(Duration::from_millis(10));
        b.endpoints()[1].observe(Duration::from_millis(15));
        let held: Vec<Lease> = (0..3).map(|_| b.pick().unwrap()).collect();
        // p0 is picked while 10 ms × (its calls in flight + 1) stays under
        // p1's load: once, then p1 (15 ms), then p0 again (20 ms < 30 ms).
        let providers: Vec<&str> = held.iter().map(|l| l.endpoint.provider.as_str()).collect();
        assert_eq!(providers, ["p0", "p1", "p0"]);
    }

    #[test]
    fn excluded_endpoints_are_never_picked() {
        for strategy in [Strategy::RoundRobin, Strategy::LeastLatency] {
            let b = Balancer::new(strategy, endpoints(3));
            let except = [b.endpoints()[0].clone(), b.endpoints()[2].clone()];
            assert!(
                (0..20).all(|_| b.pick_except(&except).unwrap().endpoint.provider == "p1"),
                "{strategy:?}"
            );
            let all: Vec<Arc<Endpoint>> = b.endpoints().to_vec();
            assert!(b.pick_except(&all).is_none(), "{strategy:?}");
        }
    }

    #[test]
    fn open_breakers_are_skipped() {
        let b = Balancer::new(Strategy::RoundRobin, endpoints(2));
        for _ in 0..5 {
            let lease = b.endpoints()[0].breaker.try_acquire().unwrap();
            b.endpoints()[0].breaker.record(lease, false);
        }
        assert!((0..4).all(|_| b.pick().unwrap().endpoint.provider == "p1"));
    }
}
