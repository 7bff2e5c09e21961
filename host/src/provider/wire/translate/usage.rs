//! Format-neutral token usage, the unit the gateway bills in.

use serde::{Deserialize, Serialize};

use super::{anthropic, openai};

/// Token usage of one request, independent of the upstream's format.
///
/// The APIs disagree on what "input tokens" means:
///
/// * OpenAI `prompt_tokens` counts *all* input tokens;
///   `prompt_tokens_details.cached_tokens` is the subset read from cache.
/// * Anthropic `input_tokens` counts only the *uncached* input tokens;
///   `cache_read_input_tokens` and `cache_creation_input_tokens` are
///   counted separately and must be added to get the full input.
///
/// This struct uses OpenAI's inclusive convention: [`Usage::input_tokens`]
/// is every input token, and the two cache counts are subsets of it, so
/// `uncached = input − cached − cache_creation`. The cache-write count is
/// kept (beyond the three counts both APIs share) because Anthropic bills
/// cache writes at a premium and dropping it would make an Anthropic →
/// neutral → Anthropic round trip lossy.
///
/// Arithmetic saturates: counts come from upstreams and must not panic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// All input tokens, cached or not.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache (subset of `input_tokens`).
    pub cached_input_tokens: u64,
    /// Input tokens written to the prompt cache (subset of `input_tokens`;
    /// only Anthropic reports it).
    pub cache_creation_input_tokens: u64,
}

impl Usage {
    /// Input plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Input tokens neither read from nor written to the cache — what
    /// Anthropic calls `input_tokens`.
    pub fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cached_input_tokens)
            .saturating_sub(self.cache_creation_input_tokens)
    }

    /// Reads an OpenAI usage object. Cache reads come from
    /// `prompt_tokens_details.cached_tokens`, or where a server reports them
    /// its own way, DeepSeek's `prompt_cache_hit_tokens` or a top-level
    /// `cached_tokens` (Moonshot).
    pub fn from_openai(usage: &openai::Usage) -> Self {
        let extension = |name: &str| {
            usage
                .extra
                .get(name)
                .and_then(|v| v.as_u64())
                .map(|n| n.min(super::super::serde_helpers::MAX_TOKEN_COUNT))
        };
        let cached = usage
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .or_else(|| extension("prompt_cache_hit_tokens"))
            .or_else(|| extension("cached_tokens"))
            .unwrap_or(0);
        Self {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            // A server reporting more cached than prompt tokens is wrong;
            // capping keeps `uncached_input_tokens` meaningful.
            cached_input_tokens: cached.min(usage.prompt_tokens),
            cache_creation_input_tokens: 0,
        }
    }

    /// Reads an Anthropic usage object.
    pub fn from_anthropic(usage: &anthropic::Usage) -> Self {
        Self::from_anthropic_parts(
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_input_tokens.unwrap_or(0),
            usage.cache_creation_input_tokens.unwrap_or(0),
        )
    }

    fn from_anthropic_parts(uncached: u64, output: u64, read: u64, creation: u64) -> Self {
        Self {
            input_tokens: uncached.saturating_add(read).saturating_add(creation),
            output_tokens: output,
            cached_input_tokens: read,
            cache_creation_input_tokens: creation,
        }
    }

    /// Folds in the cumulative counts of an Anthropic `message_delta`:
    /// each count it carries replaces the current one, the rest are kept.
    pub fn apply_message_delta(&mut self, delta: &anthropic::MessageDeltaUsage) {
        *self = Self::from_anthropic_parts(
            delta
                .input_tokens
                .unwrap_or_else(|| self.uncached_input_tokens()),
            delta.output_tokens,
            delta
                .cache_read_input_tokens
                .unwrap_or(self.cached_input_tokens),
            delta
                .cache_creation_input_tokens
                .unwrap_or(self.cache_creation_input_tokens),
        );
    }

    /// Writes an OpenAI usage object. Cache writes have no OpenAI field;
    /// they stay counted in `prompt_tokens`.
    pub fn to_openai(&self) -> openai::Usage {
        openai::Usage {
            prompt_tokens: self.input_tokens,
            completion_tokens: self.output_tokens,
            total_tokens: self.total_tokens(),
            prompt_tokens_details: Some(openai::PromptTokensDetails {
                cached_tokens: Some(self.cached_input_tokens),
                extra: Default::default(),
            }),
            extra: Default::default(),
        }
    }

    /// Writes an Anthropic usage object, always with both cache counts
    /// (Anthropic always sends them, and clients such as Claude Code read
    /// them).
    pub fn to_anthropic(&self) -> anthropic::Usage {
        anthropic::Usage {
            input_tokens: self.uncached_input_tokens(),
            output_tokens: self.output_tokens,
            cache_creation_input_tokens: Some(self.cache_creation_input_tokens),
            cache_read_input_tokens: Some(self.cached_input_tokens),
            extra: Default::default(),
        }
    }

    /// Writes the cumulative `usage` of an Anthropic `message_delta`, input
    /// counts included (newer API versions send them; older clients ignore
    /// them).
    pub fn to_anthropic_delta(&self) -> anthropic::MessageDeltaUsage {
        anthropic::MessageDeltaUsage {
            output_tokens: self.output_tokens,
            input_tokens: Some(self.uncached_input_tokens()),
            cache_creation_input_tokens: Some(self.cache_creation_input_tokens),
            cache_read_input_tokens: Some(self.cached_input_tokens),
            extra: Default::default(),
        }
    }
}

/// Completes an OpenAI usage object an OpenAI-compatible server sent, for
/// an OpenAI client: cache reads reported the server's own way (DeepSeek's
/// `prompt_cache_hit_tokens`) also go where OpenAI puts them,
/// `prompt_tokens_details.cached_tokens`, and a missing total is the sum.
/// The server's own fields are kept.
pub fn complete_openai_usage(usage: &mut openai::Usage) {
    let neutral = Usage::from_openai(usage);
    let reported = usage
        .prompt_tokens_details
        .as_ref()
        .is_some_and(|d| d.cached_tokens.is_some());
    if !reported && neutral.cached_input_tokens > 0 {
        usage
            .prompt_tokens_details
            .get_or_insert_with(Default::default)
            .cached_tokens = Some(neutral.cached_input_tokens);
    }
    if usage.total_tokens == 0 {
        usage.total_tokens = neutral.total_tokens();
    }
}

impl From<&openai::Usage> for Usage {
    fn from(usage: &openai::Usage) -> Self {
        Self::from_openai(usage)
    }
}

impl From<&anthropic::Usage> for Usage {
    fn from(usage: &anthropic::Usage) -> Self {
        Self::from_anthropic(usage)
    }
}

impl From<Usage> for openai::Usage {
    fn from(usage: Usage) -> Self {
        usage.to_openai()
    }
}

impl From<Usage> for anthropic::Usage {
    fn from(usage: Usage) -> Self {
        usage.to_anthropic()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_usage_includes_cached_tokens() {
        let usage: openai::Usage = serde_json::from_value(json!({
            "prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050,
            "prompt_tokens_details": {"cached_tokens": 800}
        }))
        .expect("usage");
        let neutral = Usage::from(&usage);
        assert_eq!(
            neutral,
            Usage {
                input_tokens: 1000,
                output_tokens: 50,
                cached_input_tokens: 800,
                cache_creation_input_tokens: 0
            }
        );
        assert_eq!(neutral.uncached_input_tokens(), 200);
        assert_eq!(neutral.total_tokens(), 1050);

        let anthropic = neutral.to_anthropic();
        assert_eq!(
            anthropic.input_tokens, 200,
            "Anthropic input excludes cache reads"
        );
        assert_eq!(anthropic.cache_read_input_tokens, Some(800));
        assert_eq!(anthropic.cache_creation_input_tokens, Some(0));
        assert_eq!(Usage::from(&anthropic), neutral);
        assert_eq!(openai::Usage::from(neutral), usage);
    }

    #[test]
    fn anthropic_usage_excludes_cache_reads_and_writes() {
        let usage: anthropic::Usage = serde_json::from_value(json!({
            "input_tokens": 10, "output_tokens": 7,
            "cache_read_input_tokens": 900, "cache_creation_input_tokens": 90
        }))
        .expect("usage");
        let neutral = Usage::from(&usage);
        assert_eq!(neutral.input_tokens, 1000);
        assert_eq!(neutral.cached_input_tokens, 900);
        assert_eq!(neutral.cache_creation_input_tokens, 90);
        assert_eq!(neutral.uncached_input_tokens(), 10);
        assert_eq!(anthropic::Usage::from(neutral), usage);

        let openai = neutral.to_openai();
        assert_eq!(
            openai.prompt_tokens, 1000,
            "OpenAI prompt includes cache reads and writes"
        );
        assert_eq!(openai.total_tokens, 1007);
        assert_eq!(
            openai.prompt_tokens_details.and_then(|d| d.cached_tokens),
            Some(900)
        );
    }

    #[test]
    fn deepseek_cache_hits_count_as_cached() {
        let usage: openai::Usage = serde_json::from_value(json!({
            "prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105,
            "prompt_cache_hit_tokens": 60, "prompt_cache_miss_tokens": 40
        }))
        .expect("usage");
        assert_eq!(Usage::from(&usage).cached_input_tokens, 60);
    }

    #[test]
    fn missing_cache_fields_count_as_zero() {
        let neutral = Usage::from(&anthropic::Usage {
            input_tokens: 5,
            output_tokens: 1,
            ..Default::default()
        });
        assert_eq!(neutral.input_tokens, 5);
        let neutral = Usage::from(&openai::Usage {
            prompt_tokens: 5,
            completion_tokens: 1,
            total_tokens: 6,
            ..Default::default()
        });
        assert_eq!(neutral.cached_input_tokens, 0);
    }

    #[test]
    fn message_delta_counts_replace_rather_than_add() {
        let mut usage = Usage::from(&anthropic::Usage {
            input_tokens: 10,
            output_tokens: 1,
            cache_read_input_tokens: Some(100),
            cache_creation_input_tokens: Some(0),
            ..Default::default()
        });
        usage.apply_message_delta(&anthropic::MessageDeltaUsage {
            output_tokens: 42,
            ..Default::default()
        });
        assert_eq!(usage.output_tokens, 42);
        assert_eq!(usage.input_tokens, 110);
        usage.apply_message_delta(&anthropic::MessageDeltaUsage {
            output_tokens: 43,
            input_tokens: Some(12),
            cache_creation_input_tokens: Some(5),
            ..Default::default()
        });
        assert_eq!(
            usage,
            Usage {
                input_tokens: 117,
                output_tokens: 43,
                cached_input_tokens: 100,
                cache_creation_input_tokens: 5
            }
        );
        let delta = usage.to_anthropic_delta();
        assert_eq!(delta.input_tokens, Some(12));
        assert_eq!(delta.output_tokens, 43);
    }

    #[test]
    fn hostile_counts_saturate_instead_of_panicking() {
        let usage = Usage::from(&anthropic::Usage {
            input_tokens: u64::MAX,
            output_tokens: u64::MAX,
            cache_read_input_tokens: Some(u64::MAX),
            ..Default::default()
        });
        assert_eq!(usage.input_tokens, u64::MAX);
        assert_eq!(usage.total_tokens(), u64::MAX);
        let usage = Usage::from(&openai::Usage {
            prompt_tokens: 10,
            prompt_tokens_details: Some(openai::PromptTokensDetails {
                cached_tokens: Some(20),
                extra: Default::default(),
            }),
            ..Default::default()
        });
        assert_eq!(usage.cached_input_tokens, 10);
        assert_eq!(usage.uncached_input_tokens(), 0);
    }
}
