//! The set of loaded modules, swapped atomically as files change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::Serialize;

use super::module::{PolicyEngine, PolicyModule, World, unix_seconds};
use super::types::{Features, Message, ModelInfo, Route, Task, Tier, WireApi};

/// Longest a module's compile and probe may take unless configured.
pub const DEFAULT_LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Loaded modules by name. Readers take a snapshot (`get`) without locking;
/// a load replaces the whole map, so a call that already holds a module
/// finishes on it while new calls see the new version.
pub struct Registry {
    engine: Arc<PolicyEngine>,
    modules: ArcSwap<HashMap<String, Arc<PolicyModule>>>,
    failures: Mutex<HashMap<String, LoadFailure>>,
    /// One lock per module name: two versions of one file cannot race,
    /// while different modules load at the same time.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Built-in modules by name, restored when an override is deleted.
    builtins: HashMap<String, &'static [u8]>,
    /// Longest a compile and probe may take.
    load_timeout: std::time::Duration,
}

/// The last failed load of a module name.
#[derive(Debug, Clone, Serialize)]
pub struct LoadFailure {
    /// One-line reason.
    pub reason: String,
    /// When it failed.
    #[serde(with = "unix_seconds")]
    pub at: SystemTime,
}

/// A module as `/v1/policies` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleStatus {
    /// File stem.
    pub name: String,
    /// `router` or `planner`, when loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world: Option<World>,
    /// Contract version, when loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SHA-256 of the serving version, when loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Unix time the serving version was loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<u64>,
    /// The last failed load, if it came after the serving version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LoadFailure>,
}

impl Registry {
    /// An empty registry on `engine`; a load may take
    /// [`DEFAULT_LOAD_TIMEOUT`].
    pub fn new(engine: Arc<PolicyEngine>) -> Self {
        Registry {
            engine,
            modules: ArcSwap::default(),
            failures: Mutex::default(),
            loading: Mutex::default(),
            builtins: HashMap::new(),
            load_timeout: DEFAULT_LOAD_TIMEOUT,
        }
    }

    /// The same registry, whose loads each take at most `load_timeout`.
    /// (wasmtime cannot stop a compile half-way: one that runs over goes
    /// on in the background and its result is dropped.)
    pub fn with_load_timeout(mut self, load_timeout: std::time::Duration) -> Self {
        self.load_timeout = load_timeout;
        self
    }

    /// Loads the built-in modules, which a file of the same name in the
    /// watched folder overrides for as long as it exists.
    pub async fn load_builtins(
        &mut self,
        builtins: &[(&str, &'static [u8])],
        catalog: &[ModelInfo],
    ) -> anyhow::Result<()> {
        for (name, bytes) in builtins {
            self.builtins.insert(name.to_string(), bytes);
            self.load(name, bytes.to_vec(), catalog).await?;
        }
        Ok(())
    }

    /// The engine modules are loaded on.
    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// The serving version of module `name`.
    pub fn get(&self, name: &str) -> Option<Arc<PolicyModule>> {
        self.modules.load().get(name).cloned()
    }

    /// Every known module, loaded or failed, by name.
    pub fn status(&self) -> Vec<ModuleStatus> {
        let modules = self.modules.load();
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&String> = modules.keys().chain(failures.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let module = modules.get(name);
                let info = module.map(|m| &m.info);
                ModuleStatus {
                    name: name.clone(),
                    world: info.map(|i| i.world),
                    version: info.map(|i| i.version.clone()),
                    hash: info.map(|i| i.hash.clone()),
                    loaded_at: info.map(|i| unix_seconds::of(&i.loaded_at)),
                    last_error: failures.get(name).cloned(),
                }
            })
            .collect()
    }

    /// Compiles `bytes` as module `name`, checks that it answers a probe
    /// call within its limits, and only then makes it the serving version.
    /// On failure the previous version keeps serving and the reason is kept
    /// for `/v1/policies`.
    pub async fn load(
        &self,
        name: &str,
        bytes: Vec<u8>,
        catalog: &[ModelInfo],
    ) -> anyhow::Result<Arc<PolicyModule>> {
        let lock = self
            .loading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        let _serial = lock.lock().await;
        if let Some(current) = self.get(name)
            && current.info.hash == hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
        {
            return Ok(current);
        }
        let result = tokio::time::timeout(
            self.load_timeout,
            self.compile_and_check(name, bytes, catalog),
        )
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "compiling and checking it took longer than {} s",
                self.load_timeout.as_secs_f64()
            ))
        });
        self.record(name, &result);
        result
    }

    /// Records a load that failed before compiling (the file could not be
    /// used), so that `/v1/policies`, the log and metrics say why.
    pub fn refuse(&self, name: &str, reason: String) {
        self.record(name, &Err(anyhow::anyhow!(reason)));
    }

    fn record(&self, name: &str, result: &anyhow::Result<Arc<PolicyModule>>) {
        match result {
            Ok(module) => {
                self.modules.rcu(|modules| {
                    let mut modules = HashMap::clone(modules);
                    modules.insert(name.to_string(), module.clone());
                    modules
                });
                self.failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(name);
                tracing::info!(
                    target: "pointsman::audit",
                    who = "policies folder",
                    action = "policy load",
                    module = %module.info.id(),
                    world = %module.info.world,
                    version = %module.info.version,
                    "policy loaded"
                );
                crate::metrics::policy_loaded(name);
            }
            Err(error) => {
                let reason = format!("{error:#}");
                tracing::error!(
                    module = name,
                    "policy rejected, last good version keeps serving: {reason}"
                );
                crate::metrics::policy_load_failed(name);
                self.failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        name.to_string(),
                        LoadFailure {
                            reason,
                            at: SystemTime::now(),
                        },
                    );
            }
        }
    }

    /// Module `name`'s file was removed: the built-in of that name serves
    /// again if there is one, else the module is forgotten.
    pub async fn remove(&self, name: &str, catalog: &[ModelInfo]) {
        if let Some(bytes) = self.builtins.get(name) {
            if self.load(name, bytes.to_vec(), catalog).await.is_ok() {
                tracing::info!(module = name, "override removed: the built-in serves again");
            }
            return;
        }
        self.modules.rcu(|modules| {
            let mut modules = HashMap::clone(modules);
            modules.remove(name);
            modules
        });
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        tracing::info!(module = name, "policy unloaded");
    }

    async fn compile_and_check(
        &self,
        name: &str,
        bytes: Vec<u8>,
        catalog: &[ModelInfo],
    ) -> anyhow::Result<Arc<PolicyModule>> {
        let engine = self.engine.clone();
        let owned_name = name.to_string();
        // Compiling a JavaScript or Python runtime takes seconds: keep it off
        // the async workers so the old version goes on serving meanwhile.
        let module =
            tokio::task::spawn_blocking(move || engine.load(&owned_name, &bytes)).await??;
        self_check(&module, catalog).await?;
        Ok(Arc::new(module))
    }
}

/// One probe call, so that a module that traps or hangs on every call is
/// refused before it serves. A policy error is an answer, and passes.
async fn self_check(module: &PolicyModule, catalog: &[ModelInfo]) -> anyhow::Result<()> {
    use super::module::PolicyError;
    let result = match module.info.world {
        World::Router => module.route(&probe_request(), catalog).await.map(drop),
        World::Planner => module
            .plan_request(&probe_task(catalog), catalog)
            .await
            .map(drop),
    };
    match result {
        Ok(()) | Err(PolicyError::Rejected(_)) => Ok(()),
        Err(e) => anyhow::bail!("self-check failed: {e}"),
    }
}

fn probe_request() -> Features {
    Features {
        id: "self-check".into(),
        api: WireApi::OpenaiChat,
        requested_model: "auto".into(),
        messages: vec![Message {
            role: "user".into(),
            content: "Fix the failing unit test in the parser module.".into(),
        }],
        message_count: 1,
        input_tokens: 12,
        max_output_tokens: None,
        tool_count: 0,
        labels: Vec::new(),
        session: None,
        ..Features::default()
    }
}

fn probe_task(catalog: &[ModelInfo]) -> Task {
    let executor = catalog.first().map(|m| m.id.clone()).unwrap_or_default();
    Task {
        id: "self-check".into(),
        title: "Self-check".into(),
        description: "Add input validation to the signup form.".into(),
        context: Vec::new(),
        labels: Vec::new(),
        route: Route {
            tier: Tier::Plan,
            executor: executor.clone(),
            fallbacks: Vec::new(),
            planner: Some(executor),
            reasoning: "self-check".into(),
            deadline_ms: None,
            max_cost_usd: None,
            max_output_tokens: None,
            labels: Vec::new(),
        },
    }
}
