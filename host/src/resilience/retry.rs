//! Retries: exponential backoff with full jitter, and a budget that keeps an
//! outage from turning into a retry storm.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Backoff before retry number `attempt` (1 for the first retry): a random
/// duration between zero and `base × 2^(attempt-1)`, capped at `max`
/// ("full jitter", which spreads retries of many clients best).
pub fn backoff(attempt: u32, base: Duration, max: Duration, seed: &AtomicU64) -> Duration {
    let ceiling = base
        .saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1).min(20))
                .unwrap_or(u32::MAX),
        )
        .min(max);
    let mut x = seed.load(Ordering::Relaxed) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    seed.store(x, Ordering::Relaxed);
    let fraction = (x >> 11) as f64 / (1u64 << 53) as f64;
    ceiling.mul_f64(fraction)
}

/// A token bucket shared by all requests: each request deposits
/// `ratio` of a retry, each retry withdraws one; `reserve` retries are
/// always allowed so a quiet daemon can still retry.
#[derive(Debug)]
pub struct RetryBudget {
    /// Balance in thousandths of a retry.
    balance: AtomicI64,
    deposit: i64,
    cap: i64,
}

const UNIT: i64 = 1000;

impl RetryBudget {
    /// A budget allowing `ratio` (0 to 1) retries per request on top of
    /// `reserve` retries.
    pub fn new(ratio: f64, reserve: u32) -> Self {
        let cap = (reserve.max(1) as i64) * UNIT;
        RetryBudget {
            balance: AtomicI64::new(cap),
            deposit: (ratio.clamp(0.0, 1.0) * UNIT as f64) as i64,
            cap,
        }
    }

    /// Called once per request.
    pub fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b + self.deposit).min(self.cap))
            });
    }

    /// Takes one retry from the budget, if there is one.
    pub fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= UNIT).then_some(b - UNIT)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let seed = AtomicU64::new(7);
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for attempt in 1..10 {
            let ceiling = (base * 2u32.pow(attempt - 1)).min(max);
            for _ in 0..50 {
                assert!(backoff(attempt, base, max, &seed) <= ceiling);
            }
        }
        let late: Duration = (0..200).map(|_| backoff(8, base, max, &seed)).sum();
        let early: Duration = (0..200).map(|_| backoff(1, base, max, &seed)).sum();
        assert!(late > early * 3, "{late:?} vs {early:?}");
    }

    #[test]
    fn budget_limits_retries_to_a_share_of_traffic() {
        let budget = RetryBudget::new(0.2, 10);
        let mut retries = 0;
        for _ in 0..1000 {
            budget.deposit();
            if budget.try_withdraw() {
                retries += 1;
            }
        }
        // The reserve, then one retry per five requests.
        assert!((200..=215).contains(&retries), "{retries}");
    }
}
