//! `[resilience.breaker]` and a model's `balance`: the settings of the
//! resilience layer, here so that the configuration imports nothing above
//! it.

use std::time::Duration;

use serde::Deserialize;

/// How a model's endpoints share its traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// In turn (the seed's executor pool).
    #[default]
    RoundRobin,
    /// Power of two choices over peak-EWMA latency × (in flight + 1).
    LeastLatency,
}

/// Breaker settings (`[resilience.breaker]`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// How far back outcomes count.
    #[serde(with = "millis", rename = "window_ms")]
    pub window: Duration,
    /// Fewest calls in the window before the rate can trip the breaker.
    pub min_calls: u32,
    /// Failure rate (0 to 1) that trips the breaker.
    pub failure_rate: f64,
    /// First cool-down.
    #[serde(with = "millis", rename = "cooldown_ms")]
    pub cooldown: Duration,
    /// Longest cool-down.
    #[serde(with = "millis", rename = "max_cooldown_ms")]
    pub max_cooldown: Duration,
    /// Calls let through while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: Duration::from_secs(30),
            min_calls: 5,
            failure_rate: 0.5,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(300),
            half_open_probes: 1,
        }
    }
}

/// Durations as integer milliseconds in config.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
