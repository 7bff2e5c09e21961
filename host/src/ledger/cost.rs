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
    /// Input written to the provider's prompt cache (Anthropic bills these
    /// at a premium over plain input).
    pub cache_write: f64,
}

impl From<&ModelConfig> for Prices {
    fn from(m: &ModelConfig) -> Self {
        Prices {
            input: m.input_usd_per_mtok,
            output: m.output_usd_per_mtok,
            cached_input: m.cached_usd_per_mtok.unwrap_or(m.input_usd_per_mtok),
            cache_write: m.cache_write_usd_per_mtok.unwrap_or(m.input_usd_per_mtok),
        }
    }
}

impl Prices {
    /// What `model` costs at its endpoint `provider`/`upstream`: the
    /// prices that endpoint's `[[models.endpoints]]` entry sets, the
    /// model's for the rest (and for the model's own endpoint).
    pub fn at(model: &ModelConfig, provider: &str, upstream: &str) -> Prices {
        let own = Prices::from(model);
        if model.provider == provider && model.upstream() == upstream {
            return own;
        }
        model
            .endpoints
            .iter()
            .find(|e| {
                e.provider == provider
                    && e.upstream.as_deref().unwrap_or(model.upstream()) == upstream
            })
            .map_or(own, |e| {
                let input = e.input_usd_per_mtok.unwrap_or(own.input);
                Prices {
                    input,
                    output: e.output_usd_per_mtok.unwrap_or(own.output),
                    cached_input: e
                        .cached_usd_per_mtok
                        .or(model.cached_usd_per_mtok)
                        .unwrap_or(input),
                    cache_write: e
                        .cache_write_usd_per_mtok
                        .or(model.cache_write_usd_per_mtok)
                        .unwrap_or(input),
                }
            })
    }

    /// The prices of each of `model`'s endpoints, its own first.
    pub fn of_endpoints(model: &ModelConfig) -> impl Iterator<Item = Prices> + '_ {
        model
            .endpoint_list()
            .into_iter()
            .map(|(provider, upstream)| Prices::at(model, provider, upstream))
    }

    /// USD for `usage`. Cache reads and cache writes are subsets of the
    /// input tokens, billed at the cached and the cache-write price; the
    /// rest of the input at the input price. Counts a broken upstream made
    /// inconsistent (more cached than input) are capped, never negative.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let written = usage
            .cache_creation_input_tokens
            .min(usage.input_tokens - cached);
        let uncached = usage.input_tokens - cached - written;
        (uncached as f64 * self.input
            + cached as f64 * self.cached_input
            + written as f64 * self.cache_write
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
            cache_write: 6.25,
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
            cache_write: 1.0,
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
            cache_write: 1.0,
        };
        let usage = Usage {
            input_tokens: 1_000_000,
            cached_input_tokens: 500_000,
            ..Default::default()
        };
        assert!((p.cost(&usage) - 0.55).abs() < 1e-9);
    }

    #[test]
    fn cache_writes_are_billed_at_the_cache_write_price() {
        // Anthropic's Sonnet: $3 input, $0.30 cache reads, $3.75 cache writes.
        let p = Prices {
            input: 3.0,
            output: 15.0,
            cached_input: 0.3,
            cache_write: 3.75,
        };
        let usage = Usage {
            input_tokens: 1_000_000,
            cached_input_tokens: 200_000,
            cache_creation_input_tokens: 500_000,
            output_tokens: 0,
        };
        // 300K uncached × 3 + 200K × 0.3 + 500K × 3.75, per million.
        assert!((p.cost(&usage) - (0.9 + 0.06 + 1.875)).abs() < 1e-9);
        // Inconsistent counts are capped, not negative or panicking.
        let usage = Usage {
            input_tokens: 10,
            cached_input_tokens: 8,
            cache_creation_input_tokens: 8,
            output_tokens: 0,
        };
        let cost = p.cost(&usage);
        assert!(
            (cost - (8.0 * 0.3 + 2.0 * 3.75) / 1e6).abs() < 1e-12,
            "{cost}"
        );
    }

    #[test]
    fn an_endpoint_is_priced_at_its_own_prices_and_the_models_for_the_rest() {
        let m: ModelConfig = toml::from_str(
            r#"
id = "m"
provider = "cheap"
upstream = "m-1"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
cached_usd_per_mtok = 0.1
context_window = 1000
[[endpoints]]
provider = "dear"
input_usd_per_mtok = 3.0
[[endpoints]]
provider = "dear"
upstream = "m-2"
output_usd_per_mtok = 8.0
cache_write_usd_per_mtok = 4.0
"#,
        )
        .expect("model");
        let m = &m;
        assert_eq!(Prices::at(m, "cheap", "m-1"), Prices::from(m));
        let dear = Prices::at(m, "dear", "m-1");
        assert_eq!(
            (dear.input, dear.output, dear.cached_input, dear.cache_write),
            (3.0, 2.0, 0.1, 3.0)
        );
        let other = Prices::at(m, "dear", "m-2");
        assert_eq!(
            (
                other.input,
                other.output,
                other.cached_input,
                other.cache_write
            ),
            (1.0, 8.0, 0.1, 4.0)
        );
        // An endpoint the model does not list is priced as the model.
        assert_eq!(Prices::at(m, "nowhere", "m-1"), Prices::from(m));
        assert_eq!(Prices::of_endpoints(m).count(), 3);
    }

    #[test]
    fn a_negative_endpoint_price_is_a_config_error() {
        // Appended to the demo, the endpoint belongs to its last model.
        let toml = format!(
            "{}\n[[models.endpoints]]\nprovider = \"simulated\"\nupstream = \"other\"\noutput_usd_per_mtok = -1.0\n",
            crate::config::DEMO_TOML
        );
        let error = crate::config::Config::parse(&toml).expect_err("a negative price");
        assert!(
            error
                .to_string()
                .contains("endpoints[0].output_usd_per_mtok: must be a price"),
            "{error}"
        );
    }

    #[test]
    fn the_cache_write_price_defaults_to_the_input_price() {
        let config = crate::config::Config::parse(crate::config::DEMO_TOML).expect("demo");
        let model = config
            .models
            .iter()
            .find(|m| m.cache_write_usd_per_mtok.is_none())
            .expect("a model without a cache-write price");
        assert_eq!(Prices::from(model).cache_write, model.input_usd_per_mtok);
    }
}
