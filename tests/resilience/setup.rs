//! Configuration

use super::*;

/// The format a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wire {
    OpenAi,
    Anthropic,
}

/// `[resilience]` knobs, small enough for a fast suite.
#[derive(Clone, Debug)]
pub(crate) struct Knobs {
    pub(crate) total_deadline_ms: u64,
    pub(crate) max_retries: u32,
    pub(crate) backoff_base_ms: u64,
    pub(crate) backoff_max_ms: u64,
    pub(crate) budget_ratio: f64,
    pub(crate) budget_reserve: u32,
    pub(crate) escalation: Option<&'static str>,
    pub(crate) min_calls: u32,
    pub(crate) cooldown_ms: u64,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            total_deadline_ms: 20_000,
            max_retries: MAX_RETRIES,
            backoff_base_ms: 5,
            backoff_max_ms: 50,
            // Every request may retry: the matrix counts exact attempts.
            budget_ratio: 1.0,
            budget_reserve: 100_000,
            escalation: None,
            // Breakers stay closed unless a test lowers this.
            min_calls: 1_000_000,
            cooldown_ms: 200,
        }
    }
}

impl Knobs {
    pub(crate) fn toml(&self) -> String {
        let escalation = self
            .escalation
            .map(|m| format!("escalation_model = \"{m}\"\n"))
            .unwrap_or_default();
        format!(
            "[resilience]\ntotal_deadline_ms = {}\nfirst_token_timeout_ms = {FIRST_TOKEN_MS}\n\
             max_retries = {}\nbackoff_base_ms = {}\nbackoff_max_ms = {}\n\
             retry_budget_ratio = {}\nretry_budget_reserve = {}\n{escalation}\n\
             [resilience.breaker]\nwindow_ms = 60000\nmin_calls = {}\nfailure_rate = 0.5\n\
             cooldown_ms = {}\nmax_cooldown_ms = 5000\nhalf_open_probes = 1\n",
            self.total_deadline_ms,
            self.max_retries,
            self.backoff_base_ms,
            self.backoff_max_ms,
            self.budget_ratio,
            self.budget_reserve,
            self.min_calls,
            self.cooldown_ms,
        )
    }
}

/// Provider `name` on `upstream`, speaking `wire`.
pub(crate) fn provider(name: &str, upstream: &Upstream, wire: Wire) -> String {
    let url = match wire {
        Wire::OpenAi => upstream.openai_url(),
        Wire::Anthropic => upstream.url(),
    };
    provider_at(name, &url, wire)
}

/// Provider `name` at base URL `url`, speaking `wire`.
pub(crate) fn provider_at(name: &str, url: &str, wire: Wire) -> String {
    let (kind, key) = match wire {
        Wire::OpenAi => ("openai", "POINTSMAN_TEST_OPENAI_KEY"),
        Wire::Anthropic => ("anthropic", "POINTSMAN_TEST_ANTHROPIC_KEY"),
    };
    format!(
        "[providers.{name}]\nkind = \"{kind}\"\nbase_url = \"{url}\"\napi_key_env = \"{key}\"\n\
         timeout_ms = {TIMEOUT_MS}\nconnect_timeout_ms = 200\n\n"
    )
}

/// Catalog model `id` on `provider`, with `extra` lines (balance, endpoints).
pub(crate) fn model(id: &str, provider: &str, extra: &str) -> String {
    format!(
        "[[models]]\nid = \"{id}\"\nprovider = \"{provider}\"\ninput_usd_per_mtok = 1.0\n\
         output_usd_per_mtok = 2.0\ncontext_window = 100000\n{extra}\n"
    )
}

/// A daemon config: no router policy (every `auto` request is served the
/// safe route), named models served as named.
pub(crate) fn config(safe_route: &str, knobs: &Knobs, providers: &str, models: &str) -> Config {
    static KEYS: Once = Once::new();
    // SAFETY: every test calls this before starting anything that reads the
    // environment, and `Once` makes the others wait for the only write.
    KEYS.call_once(|| unsafe {
        std::env::set_var("POINTSMAN_TEST_OPENAI_KEY", OPENAI_KEY);
        std::env::set_var("POINTSMAN_TEST_ANTHROPIC_KEY", ANTHROPIC_KEY);
    });
    let text = format!(
        "baseline_model = \"{baseline}\"\npolicy_overrides_named_models = false\n\n\
         [policies]\nrouter = \"none\"\n\n[safe_route]\n{safe_route}\n\n{resilience}\n\
         {providers}{models}",
        baseline = models.split('"').nth(1).expect("at least one model"),
        resilience = knobs.toml(),
    );
    Config::parse(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"))
}
