//! A circuit breaker per endpoint.
//!
//! - **Closed**: calls flow; outcomes go into a sliding window of the last
//!   [`BreakerConfig::window`]. When the window holds at least `min_calls`
//!   and the failure rate reaches `failure_rate`, the breaker trips.
//! - **Open**: calls are refused for a cool-down that doubles with each
//!   consecutive trip (up to `max_cooldown`), so a flapping endpoint is
//!   left alone longer, and a recovered one is tried again soon.
//! - **Half-open**: after the cool-down, at most `half_open_probes` calls
//!   go through. A success closes the breaker (and forgets the trips); a
//!   failure opens it again with a longer cool-down.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use crate::config::resilience::BreakerConfig;

/// The state as reported to policies and `/v1/providers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Calls flow.
    Closed,
    /// Calls are refused.
    Open,
    /// A few probes are let through.
    HalfOpen,
}

impl State {
    /// The state as the `pointsman_breaker_state` gauge shows it: 0
    /// closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::HalfOpen => 1.0,
            State::Open => 2.0,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32 },
}

#[derive(Debug)]
struct Breaker {
    inner: Inner,
    /// Consecutive trips without a close in between.
    trips: u32,
    window: VecDeque<(Instant, bool)>,
    /// Failures in `window`, kept so that rates cost nothing to read.
    failures: u32,
}

impl Breaker {
    fn push(&mut self, at: Instant, success: bool) {
        self.window.push_back((at, success));
        self.failures += u32::from(!success);
    }

    /// Drops outcomes older than `window` (and past the cap).
    fn prune(&mut self, now: Instant, window: Duration) {
        while let Some((t, ok)) = self.window.front().copied() {
            if now.duration_since(t) <= window && self.window.len() <= MAX_WINDOW {
                break;
            }
            self.window.pop_front();
            self.failures -= u32::from(!ok);
        }
    }

    fn clear(&mut self) {
        self.window.clear();
        self.failures = 0;
    }
}

/// Most outcomes kept per endpoint.
const MAX_WINDOW: usize = 10_000;

/// A thread-safe breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<Breaker>,
}

/// Permission to make one call; report its outcome with
/// [`CircuitBreaker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// A normal call.
    Call,
    /// A half-open probe.
    Probe,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            state: Mutex::new(Breaker {
                inner: Inner::Closed,
                trips: 0,
                window: VecDeque::new(),
                failures: 0,
            }),
        }
    }

    /// The current state (an open breaker whose cool-down has passed reports
    /// half-open).
    pub fn state(&self) -> State {
        let b = self.lock();
        match b.inner {
            Inner::Closed => State::Closed,
            Inner::Open { until } if Instant::now() < until => State::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Whether a call would be allowed now, without taking a permit.
    pub fn would_allow(&self) -> bool {
        let b = self.lock();
        match b.inner {
            Inner::Closed => true,
            Inner::Open { until } => Instant::now() >= until,
            Inner::HalfOpen { in_flight } => in_flight < self.config.half_open_probes,
        }
    }

    /// Asks to make a call.
    pub fn try_acquire(&self) -> Option<Permit> {
        let mut b = self.lock();
        match b.inner {
            Inner::Closed => Some(Permit::Call),
            Inner::Open { until } => {
                if Instant::now() < until {
                    return None;
                }
                b.inner = Inner::HalfOpen { in_flight: 1 };
                Some(Permit::Probe)
            }
            Inner::HalfOpen { ref mut in_flight } => {
                if *in_flight < self.config.half_open_probes {
                    *in_flight += 1;
                    Some(Permit::Probe)
                } else {
                    None
                }
            }
        }
    }

    /// Gives back a permit whose call was never made (the request ended
    /// first), so a probe slot is not lost.
    pub fn release(&self, permit: Permit) {
        let mut b = self.lock();
        if let (Permit::Probe, Inner::HalfOpen { in_flight }) = (permit, &mut b.inner) {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// Records the outcome of a permitted call. Returns the new state when
    /// it changed.
    pub fn record(&self, permit: Permit, success: bool) -> Option<State> {
        self.record_at(permit, success, Instant::now())
    }

    /// [`CircuitBreaker::record`] with the outcome's time, to be named
    /// again by [`CircuitBreaker::amend_to_failure`].
    pub fn record_at(&self, permit: Permit, success: bool, now: Instant) -> Option<State> {
        let mut b = self.lock();
        b.push(now, success);
        b.prune(now, self.config.window);
        match (&b.inner, permit) {
            (Inner::HalfOpen { .. }, Permit::Probe) => {
                if success {
                    b.inner = Inner::Closed;
                    b.trips = 0;
                    b.clear();
                    Some(State::Closed)
                } else {
                    Some(self.trip(&mut b, now))
                }
            }
            (Inner::Closed, _) if !success => self.trip_on_rate(&mut b, now),
            // Late outcomes of calls made before a trip change nothing.
            _ => None,
        }
    }

    /// Turns the success recorded at `at` into a failure: the call it stood
    /// for (a stream, counted as a success at its first event) broke off.
    /// Records a new failure if that success has left the window. Returns
    /// the new state when it changed.
    pub fn amend_to_failure(&self, at: Instant) -> Option<State> {
        let now = Instant::now();
        let mut b = self.lock();
        b.prune(now, self.config.window);
        match b.window.iter_mut().rev().find(|(t, ok)| *t == at && *ok) {
            Some(entry) => {
                entry.1 = false;
                b.failures += 1;
            }
            None => b.push(now, false),
        }
        match b.inner {
            Inner::Closed => self.trip_on_rate(&mut b, now),
            _ => None,
        }
    }

    fn trip_on_rate(&self, b: &mut Breaker, now: Instant) -> Option<State> {
        let calls = b.window.len() as u32;
        (calls >= self.config.min_calls
            && b.failures as f64 / calls as f64 >= self.config.failure_rate)
            .then(|| self.trip(b, now))
    }

    fn trip(&self, b: &mut Breaker, now: Instant) -> State {
        let factor = 1u32.checked_shl(b.trips.min(16)).unwrap_or(u32::MAX);
        let cooldown = self
            .config
            .cooldown
            .saturating_mul(factor)
            .min(self.config.max_cooldown);
        b.trips += 1;
        b.inner = Inner::Open {
            until: now + cooldown,
        };
        State::Open
    }

    /// Share of calls in the window that succeeded (1.0 when none).
    pub fn success_rate(&self) -> f64 {
        let mut b = self.lock();
        b.prune(Instant::now(), self.config.window);
        if b.window.is_empty() {
            1.0
        } else {
            1.0 - b.failures as f64 / b.window.len() as f64
        }
    }

    /// Consecutive trips so far.
    pub fn trips(&self) -> u32 {
        self.lock().trips
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            window: Duration::from_secs(60),
            min_calls: 4,
            failure_rate: 0.5,
            cooldown: Duration::from_millis(40),
            max_cooldown: Duration::from_millis(200),
            half_open_probes: 1,
        }
    }

    fn fail(b: &CircuitBreaker) -> Option<State> {
        let permit = b.try_acquire().expect("allowed");
        b.record(permit, false)
    }

    #[test]
    fn trips_on_failure_rate_after_min_calls() {
        let b = CircuitBreaker::new(config());
        assert_eq!(fail(&b), None);
        assert_eq!(fail(&b), None);
        assert_eq!(fail(&b), None, "three calls are under min_calls");
        assert_eq!(fail(&b), Some(State::Open));
        assert_eq!(b.state(), State::Open);
        assert!(b.try_acquire().is_none());
    }

    #[test]
    fn streams_broken_after_their_first_event_trip_it() {
        // Each stream is a success at its first event, amended to a failure
        // when it breaks: the endpoint fails every call, so it trips at
        // `min_calls` as if each had failed at once.
        let b = CircuitBreaker::new(config());
        for i in 1..=4 {
            let permit = b.try_acquire().expect("allowed");
            let at = Instant::now();
            assert_eq!(b.record_at(permit, true, at), None);
            let change = b.amend_to_failure(at);
            if i < 4 {
                assert_eq!(change, None, "stream {i}");
            } else {
                assert_eq!(change, Some(State::Open));
            }
        }
        assert!((b.success_rate() - 0.0).abs() < 1e-9);
    }

    #[test]
    fn a_rate_under_the_threshold_keeps_it_closed() {
        let b = CircuitBreaker::new(BreakerConfig {
            failure_rate: 0.6,
            ..config()
        });
        for _ in 0..10 {
            let p = b.try_acquire().unwrap();
            assert_eq!(b.record(p, true), None);
            let p = b.try_acquire().unwrap();
            assert_eq!(b.record(p, false), None);
        }
        assert_eq!(b.state(), State::Closed);
        assert!((b.success_rate() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn half_open_probe_closes_or_reopens_with_longer_cooldown() {
        let b = CircuitBreaker::new(config());
        for _ in 0..4 {
            fail(&b);
        }
        assert_eq!(b.state(), State::Open);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(b.state(), State::HalfOpen);
        let probe = b.try_acquire().unwrap();
        assert_eq!(probe, Permit::Probe);
        assert!(b.try_acquire().is_none(), "one probe at a time");
        assert_eq!(b.record(probe, false), Some(State::Open));
        assert_eq!(b.trips(), 2);
        // The second cool-down is twice the first: still open after 50 ms.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(b.state(), State::Open);
        std::thread::sleep(Duration::from_millis(40));
        let probe = b.try_acquire().unwrap();
        assert_eq!(b.record(probe, true), Some(State::Closed));
        assert_eq!(b.trips(), 0);
        assert!(b.try_acquire().is_some());
    }

    #[test]
    fn released_probe_frees_the_slot() {
        let b = CircuitBreaker::new(config());
        for _ in 0..4 {
            fail(&b);
        }
        std::thread::sleep(Duration::from_millis(50));
        let probe = b.try_acquire().unwrap();
        b.release(probe);
        assert!(b.try_acquire().is_some());
    }
}
