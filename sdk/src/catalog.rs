//! The catalog and configuration the host sends through `configure`, kept
//! by the SDK (not by the policy) and joined with each call's health.

use std::cell::RefCell;
use std::str::FromStr;

use crate::bindings::types::{Capabilities, Catalog, Health};

/// A model of the catalog, with its live health.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Catalog id, e.g. `glm-4.7`.
    pub id: String,
    /// Free-form roles from config, e.g. `planner`, `executor`, `premium`.
    pub roles: Vec<String>,
    /// USD per million input tokens.
    pub input_usd_per_mtok: f64,
    /// USD per million output tokens.
    pub output_usd_per_mtok: f64,
    /// Context window in tokens.
    pub context_window: u32,
    /// What the model can do besides text.
    pub capabilities: Capabilities,
    /// Free-form tags from config.
    pub tags: Vec<String>,
    /// False when every endpoint of the model has its circuit breaker open.
    pub available: bool,
    /// Share of recent calls that succeeded, 0.0 to 1.0.
    pub success_rate: f64,
    /// Median latency of recent calls, in milliseconds (0 when unknown).
    pub p50_latency_ms: u32,
}

impl Model {
    /// Whether the model has `role` (for example `planner` or `executor`).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the model has every capability of `needed`.
    pub fn can(&self, needed: Capabilities) -> bool {
        self.capabilities.contains(needed)
    }

    /// Whether the model has tag `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// The module's configuration: its `[policies.config.<name>]` table, keys
/// and values as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// A configuration of `entries` (what the host sends; for tests).
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The value of `key`, as written.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` parsed as `T`: `None` when absent, an error that
    /// names the key when it does not parse.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => raw
                .parse()
                .map(Some)
                .map_err(|_| format!("config {key} = {raw:?} is not a valid value")),
        }
    }

    /// Every key and value, in the host's order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}

/// What `configure` last delivered.
#[derive(Default)]
struct Delivered {
    configured: bool,
    models: Vec<Model>,
    config: Config,
}

thread_local! {
    // A component instance is one thread; the host calls `configure`
    // before any call that needs it.
    static DELIVERED: RefCell<Delivered> = RefCell::new(Delivered::default());
}

/// Keeps the catalog `configure` delivered, after `check` (the policy's
/// own `configure`) accepts it.
pub fn configure(
    catalog: Catalog,
    check: fn(&[Model], &Config) -> Result<(), String>,
) -> Result<(), String> {
    let models: Vec<Model> = catalog
        .models
        .into_iter()
        .map(|m| Model {
            id: m.id,
            roles: m.roles,
            input_usd_per_mtok: m.input_usd_per_mtok,
            output_usd_per_mtok: m.output_usd_per_mtok,
            context_window: m.context_window,
            capabilities: m.capabilities,
            tags: m.tags,
            available: true,
            success_rate: 1.0,
            p50_latency_ms: 0,
        })
        .collect();
    let config = Config::new(catalog.config);
    check(&models, &config)?;
    DELIVERED.with_borrow_mut(|d| {
        *d = Delivered {
            configured: true,
            models,
            config,
        }
    });
    Ok(())
}

/// Runs `call` with the delivered catalog updated to `health`.
pub fn with_catalog<T>(
    health: &[Health],
    call: impl FnOnce(&[Model], &Config) -> Result<T, String>,
) -> Result<T, String> {
    DELIVERED.with_borrow_mut(|d| {
        if !d.configured {
            return Err("called before configure".to_string());
        }
        if health.len() != d.models.len() {
            return Err(format!(
                "health for {} models, but the catalog has {}",
                health.len(),
                d.models.len()
            ));
        }
        for (model, h) in d.models.iter_mut().zip(health) {
            model.available = h.available;
            model.success_rate = f64::from(h.success_rate);
            model.p50_latency_ms = h.p50_latency_ms;
        }
        call(&d.models, &d.config)
    })
}
