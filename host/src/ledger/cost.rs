//! What a call cost, and what the baseline model would have cost.

use crate::config::ModelConfig;
use crate::provider::Usage;

/// USD per million tokens of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// Uncached input.
    pub input: f64,
    /// Output.
    pub output: f64,
    /// Input read from the provider's prompt cache.
    pub cached_input: f64,
}

impl From<&ModelConfig> for Prices {
    fn from(m: &ModelConfig) -> Self {
        Prices {
            input: m.input_usd_per_mtok,
            output: m.output_usd_per_mtok,
            cached_input: m.cached_usd_per_mtok.unwrap_or(m.input_usd_per_mtok),
        }
    }
}

impl Prices {
    /// USD for `usage`. Cached input tokens are a subset of the input tokens
    /// and are billed at the cached price.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let uncached = usage.input_tokens - cached;
        (uncached as f64 * self.input
            + cached as f64 * self.cached_input
            + usage.output_tokens as f64 * self.output)
            / 1_000_000.0
    }
}

/// The cost of one answer, next to the baseline's for the same tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Cost {
    /// What was spent, in USD.
    pub usd: f64,
    /// What the baseline model would have cost, in USD.
    pub baseline_usd: f64,
}

impl Cost {
    /// Prices `usage` on `model` and on `baseline`.
    pub fn of(usage: &Usage, model: Prices, baseline: Prices) -> Cost {
        Cost {
            usd: model.cost(usage),
            baseline_usd: baseline.cost(usage),
        }
    }

    /// Adds another call's cost.
    pub fn add(&mut self, other: Cost) {
        self.usd += other.usd;
        self.baseline_usd += other.baseline_usd;
    }
}

/// A USD amount as headers and usage events show it.
pub fn format_usd(usd: f64) -> String {
    format!("{usd:.8}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_cost_analysis() {
        // The seed's baseline: 50K input and 30K output tokens on Opus cost $1.
        let opus = Prices {
            input: 5.0,
            output: 25.0,
            cached_input: 0.5,
        };
        let usage = Usage {
            input_tokens: 50_000,
            output_tokens: 30_000,
            ..Default::default()
        };
        assert!((opus.cost(&usage) - 1.0).abs() < 1e-9);
        // Its executor: 15K in, 5K out on GLM-4.7 ($1/$2) cost $0.025.
        let glm = Prices {
            input: 1.0,
            output: 2.0,
            cached_input: 0.2,
        };
        let usage = Usage {
            input_tokens: 15_000,
            output_tokens: 5_000,
            ..Default::default()
        };
        assert!((glm.cost(&usage) - 0.025).abs() < 1e-9);
    }

    #[test]
    fn cached_tokens_are_billed_at_the_cached_price() {
        let p = Prices {
            input: 1.0,
            output: 0.0,
            cached_input: 0.1,
        };
        let usage = Usage {
            input_tokens: 1_000_000,
            cached_input_tokens: 500_000,
            ..Default::default()
        };
        assert!((p.cost(&usage) - 0.55).abs() < 1e-9);
    }
}
