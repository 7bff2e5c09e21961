//! How many shadow decisions a replica makes per second: a lock-free
//! generic cell rate algorithm (GCRA), one atomic per decision.
//!
//! Why shadow decisions are rated, measured (BENCHMARKS.md, "Shadow
//! mode"): a shadowed request costs about 14 µs more CPU than a plain one
//! (the candidate's call, copies of the request's features and catalog,
//! the decision's JSON, a longer ledger row), so at the load benchmark's
//! concurrency 1 (8,500 requests a second on two cores) shadowing every
//! request took 5–9% of the requests per second. A diff's shares need
//! thousands of decisions an hour, not every request: at the default 200 a
//! second (720,000 an hour) a busy replica decides a sample, and one
//! serving fewer requests than that decides them all.
//!
//! The sample is taken by time (the first requests of each interval), not
//! by content, so a diff of a sample reads as one of everything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A rate of shadow decisions, changeable on reload.
#[derive(Debug)]
pub struct ShadowRate {
    /// When this limiter started; times below are nanoseconds since.
    epoch: Instant,
    /// Nanoseconds between decisions at the configured rate.
    interval_ns: AtomicU64,
    /// The theoretical arrival time of the next decision.
    next_ns: AtomicU64,
}

/// How far ahead of its rate the limiter may run: one second's worth, so
/// that a burst after a quiet spell is shadowed whole.
const BURST_NS: u64 = 1_000_000_000;

impl ShadowRate {
    /// At most `per_second` decisions a second (at least one).
    pub fn new(per_second: u32) -> ShadowRate {
        ShadowRate {
            epoch: Instant::now(),
            interval_ns: AtomicU64::new(interval(per_second)),
            next_ns: AtomicU64::new(0),
        }
    }

    /// A new rate (a config reload); the tokens taken so far stay taken.
    pub fn set(&self, per_second: u32) {
        self.interval_ns
            .store(interval(per_second), Ordering::Relaxed);
    }

    /// Whether one more decision fits the rate now; takes it if so.
    pub fn take(&self) -> bool {
        self.take_at(self.epoch.elapsed().as_nanos() as u64)
    }

    fn take_at(&self, now: u64) -> bool {
        let interval = self.interval_ns.load(Ordering::Relaxed);
        let mut next = self.next_ns.load(Ordering::Relaxed);
        loop {
            // Ahead of the rate by more than the burst: refused.
            if next > now + BURST_NS.saturating_sub(interval) {
                return false;
            }
            let after = next.max(now) + interval;
            match self.next_ns.compare_exchange_weak(
                next,
                after,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => next = seen,
            }
        }
    }
}

fn interval(per_second: u32) -> u64 {
    1_000_000_000 / u64::from(per_second.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_seconds_worth_passes_then_the_rate_holds() {
        let rate = ShadowRate::new(10);
        let t0 = 5_000_000_000;
        let passed = (0..100).filter(|_| rate.take_at(t0)).count();
        assert_eq!(passed, 10);
        // A tenth of a second later, one more.
        assert!(!rate.take_at(t0 + 50_000_000));
        assert!(rate.take_at(t0 + 100_000_000));
        assert!(!rate.take_at(t0 + 100_000_000));
        // After a quiet spell, a whole burst again, never more.
        let later = t0 + 60_000_000_000;
        assert_eq!((0..100).filter(|_| rate.take_at(later)).count(), 10);
    }

    #[test]
    fn a_new_rate_applies_to_the_next_decision() {
        let rate = ShadowRate::new(1);
        let t0 = 5_000_000_000;
        assert!(rate.take_at(t0));
        assert!(!rate.take_at(t0 + 1));
        rate.set(1000);
        // The one-second interval already taken stays taken.
        assert!(!rate.take_at(t0 + 1));
        assert!(rate.take_at(t0 + 1_000_000_000));
        assert!(rate.take_at(t0 + 1_000_000_000));
    }
}
