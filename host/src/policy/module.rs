//! Compiling, caching, identifying and calling policy components.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, Trap};

use super::bounds::{self, Bounded};
use super::budget::Ticker;
use super::cache::Cache;
use super::sandbox::{self, Exhausted, Sandbox};
use super::types::{ChatRequest, Features, ModelInfo, Plan, Review, Route, Subtask, Task};
use super::v0_1::{self, planner, router};
use super::v0_2;

/// Instantiation runs a runtime's start-up code, which may take far longer
/// than a decision; it is bounded separately.
const INSTANTIATE_DEADLINE: Duration = Duration::from_secs(2);
/// An instance is retired after this many calls, so that whatever a guest
/// accumulates in its store stays bounded.
const CALLS_PER_INSTANCE: u32 = 10_000;

/// Resource limits applied to every policy call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// CPU time one call may use. A call that sleeps rather than computes
    /// (a guest blocked in a WASI poll) is also stopped after ten times this
    /// plus 100 ms of wall-clock time.
    pub call_deadline: Duration,
    /// Cap on an instance's linear memories, all together, in bytes.
    pub memory_bytes: usize,
    /// Most instances of one module alive at once (busy and warm). A call
    /// that finds them all busy waits for one, up to the wall-clock bound
    /// of a call, then gets the safe route.
    pub max_instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_deadline: Duration::from_millis(10),
            memory_bytes: 256 << 20,
            max_instances: 16,
        }
    }
}

impl Limits {
    /// The wall-clock bound of one call: CPU budgets do not stop a guest
    /// that waits in the host (a WASI poll on a clock) instead of computing.
    pub fn wall_deadline(&self) -> Duration {
        self.call_deadline * 10 + Duration::from_millis(100)
    }
}

/// Which world a module implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// Exports `routing`.
    Router,
    /// Exports `planning`.
    Planner,
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            World::Router => "router",
            World::Planner => "planner",
        })
    }
}

/// The contract version a module was built against, read from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `pointsman:policy@0.1.0`: the catalog with every call.
    V0_1,
    /// `pointsman:policy@0.2.0`: the catalog through `configure`, health
    /// with every call.
    V0_2,
}

impl Contract {
    /// The version, as in the export names.
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::V0_1 => v0_1::VERSION,
            Contract::V0_2 => v0_2::VERSION,
        }
    }
}

/// Why a policy call produced no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    /// The policy returned an error.
    #[error("policy returned an error: {0}")]
    Rejected(String),
    /// The call ran past its deadline.
    #[error("policy exceeded its {0:?} deadline")]
    Timeout(Duration),
    /// The guest tried to grow its memories past the cap.
    #[error("policy exceeded its memory cap")]
    OutOfMemory,
    /// The guest tried to grow its tables past their cap.
    #[error("policy exceeded its table cap")]
    TableLimit,
    /// Every instance of the module was busy for as long as a call may
    /// take.
    #[error("every instance of the policy was busy")]
    Busy,
    /// The guest trapped.
    #[error("policy trapped: {0}")]
    Trap(String),
    /// The module does not implement the function's world.
    #[error("module is a {0} policy")]
    WrongWorld(World),
    /// The answer broke the contract (for example, an unknown model).
    #[error("invalid policy answer: {0}")]
    Invalid(String),
}

impl PolicyError {
    /// A short name for the kind of failure, for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            PolicyError::Rejected(_) => "rejected",
            PolicyError::Timeout(_) => "timeout",
            PolicyError::OutOfMemory => "memory",
            PolicyError::TableLimit => "table",
            PolicyError::Busy => "busy",
            PolicyError::Trap(_) => "trap",
            PolicyError::WrongWorld(_) => "wrong_world",
            PolicyError::Invalid(_) => "invalid",
        }
    }
}

/// The shared runtime: one wasmtime engine, the linker, the limits and the
/// compile cache.
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<Sandbox>,
    limits: Limits,
    cache: Option<Cache>,
    compat: String,
    ticker: Ticker,
    /// `[policies.config.<name>]` by module name, delivered to 0.2.0
    /// modules with the catalog.
    module_config: Mutex<std::collections::HashMap<String, Vec<(String, String)>>>,
}

impl PolicyEngine {
    /// Creates the engine and starts the epoch ticker that enforces deadlines.
    /// Compiled components are cached in `cache_dir` when given and safe
    /// (see [`super::cache`]).
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> anyhow::Result<Arc<Self>> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let linker = sandbox::linker(&engine)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = format!("{:016x}", hasher.finish());

        let ticker = Ticker::start(engine.clone())?;
        Ok(Arc::new(PolicyEngine {
            engine,
            linker,
            limits,
            cache: cache_dir.as_deref().and_then(Cache::open),
            compat,
            ticker,
            module_config: Mutex::new(Default::default()),
        }))
    }

    /// Sets the configuration each module gets with the catalog
    /// (`[policies.config.<name>]`), for modules loaded from now on.
    pub fn set_module_config(
        &self,
        config: std::collections::HashMap<String, Vec<(String, String)>>,
    ) {
        *self.module_config.lock().unwrap_or_else(|p| p.into_inner()) = config;
    }

    fn config_of(&self, name: &str) -> Vec<(String, String)> {
        self.module_config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// The limits applied to calls.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles (or fetches from the cache), identifies and pre-instantiates
    /// a module. Blocking: a large component takes seconds to compile.
    pub fn load(self: &Arc<Self>, name: &str, bytes: &[u8]) -> anyhow::Result<PolicyModule> {
        if !bytes.starts_with(b"\0asm") {
            bail!("not a WebAssembly file");
        }
        let hash = hex::encode(Sha256::digest(bytes));
        let component = self.compile(bytes, &hash)?;
        let (world, contract) = identify(&self.engine, &component)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("imports something the sandbox does not provide")?;
        let incomplete = || {
            format!(
                "does not implement the {world} world of contract {} in full",
                contract.as_str()
            )
        };
        let pre = match (contract, world) {
            (Contract::V0_1, World::Router) => Pre::Router(
                router::RouterPre::new(instance_pre)
                    .map_err(anyhow::Error::from)
                    .with_context(incomplete)?,
            ),
            (Contract::V0_1, World::Planner) => Pre::Planner(
                planner::PlannerPre::new(instance_pre)
                    .map_err(anyhow::Error::from)
                    .with_context(incomplete)?,
            ),
            (Contract::V0_2, World::Router) => Pre::Router2(
                v0_2::router::RouterPre::new(instance_pre)
                    .map_err(anyhow::Error::from)
                    .with_context(incomplete)?,
            ),
            (Contract::V0_2, World::Planner) => Pre::Planner2(
                v0_2::planner::PlannerPre::new(instance_pre)
                    .map_err(anyhow::Error::from)
                    .with_context(incomplete)?,
            ),
        };
        Ok(PolicyModule {
            info: ModuleInfo {
                name: name.to_string(),
                world,
                version: contract.as_str().to_string(),
                hash,
                loaded_at: SystemTime::now(),
            },
            label: Arc::from(name),
            pre,
            engine: self.clone(),
            warm: Mutex::new(Vec::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(
                self.limits.max_instances.max(1),
            )),
            returned: tokio::sync::Notify::new(),
            contract,
            catalog: v0_1::Catalog::default(),
            catalog2: v0_2::Catalog::new(self.config_of(name)),
        })
    }

    fn compile(&self, bytes: &[u8], hash: &str) -> anyhow::Result<Component> {
        let Some(cache) = &self.cache else {
            return compile_component(&self.engine, bytes);
        };
        let entry = format!("{hash}-{}.cwasm", self.compat);
        if let Some(compiled) = cache.read(&entry) {
            // SAFETY: the entry is a regular file owned by this daemon's
            // user in a folder only that user can write (`Cache` checks
            // both), written by `Cache::write` below under a name keyed by
            // the source hash and the engine's compatibility hash; wasmtime
            // checks its header as well.
            match unsafe { Component::deserialize(&self.engine, &compiled) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(entry, "deleting a bad cache entry: {e:#}");
                    cache.remove(&entry);
                }
            }
        }
        let component = compile_component(&self.engine, bytes)?;
        if let Err(e) = cache.write(&entry, &component.serialize()?) {
            tracing::warn!(entry, "cannot cache compiled policy: {e:#}");
        }
        Ok(component)
    }
}

/// The world and contract version of `component`, from its export names.
/// A module exporting two versions, or none, is refused with a message that
/// says so (a 0.2.0 world missing a function is refused when its bindings
/// are checked, in `load`).
fn identify(engine: &Engine, component: &Component) -> anyhow::Result<(World, Contract)> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let mut found: Vec<(World, Contract)> = Vec::new();
    for name in &exports {
        let known = match *name {
            v0_1::ROUTING_EXPORT => (World::Router, Contract::V0_1),
            v0_1::PLANNING_EXPORT => (World::Planner, Contract::V0_1),
            v0_2::ROUTING_EXPORT => (World::Router, Contract::V0_2),
            v0_2::PLANNING_EXPORT => (World::Planner, Contract::V0_2),
            other => {
                if let Some(version) = other
                    .strip_prefix("pointsman:policy/routing@")
                    .or_else(|| other.strip_prefix("pointsman:policy/planning@"))
                {
                    bail!(
                        "built against contract {version}, this host speaks {} and {}",
                        v0_1::VERSION,
                        v0_2::VERSION
                    );
                }
                if other.starts_with(FORMER_PACKAGE) {
                    bail!(
                        "exports {other}: the project was renamed to Pointsman and its \
                         contract package to pointsman:policy; rebuild the module \
                         against wit/{} (pointsman-sdk)",
                        v0_2::VERSION
                    );
                }
                continue;
            }
        };
        found.push(known);
    }
    let versions = |c: Contract| found.iter().any(|(_, v)| *v == c);
    if versions(Contract::V0_1) && versions(Contract::V0_2) {
        bail!(
            "exports both contract {} and contract {} ([{}]): a module implements one version",
            v0_1::VERSION,
            v0_2::VERSION,
            exports.join(", ")
        );
    }
    let Some(&(world, contract)) = found.first() else {
        bail!(
            "not a Pointsman policy: exports [{}], expected {} or {} (or their {} versions)",
            exports.join(", "),
            v0_2::ROUTING_EXPORT,
            v0_2::PLANNING_EXPORT,
            v0_1::VERSION
        );
    };
    Ok((world, contract))
}

/// The contract's package before the project was renamed to Pointsman. No
/// module was ever released against it, so such modules are refused with a
/// message that says why rather than as "not a policy".
pub const FORMER_PACKAGE: &str = "switchyard:policy/";

fn compile_component(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .context("not a valid component")
}

/// What identifies a loaded module.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModuleInfo {
    /// File stem of the module.
    pub name: String,
    /// The world it implements.
    pub world: World,
    /// Contract version it was built against.
    pub version: String,
    /// SHA-256 of the module's bytes, hex.
    pub hash: String,
    /// When this version was loaded.
    #[serde(with = "unix_seconds")]
    pub loaded_at: SystemTime,
}

impl ModuleInfo {
    /// `name@hash`, with the hash cut to 12 digits: how responses and logs
    /// name the policy version that decided.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, &self.hash[..12])
    }
}

/// Times as Unix seconds in JSON.
pub(crate) mod unix_seconds {
    use std::time::{SystemTime, UNIX_EPOCH};

    /// Seconds since the Unix epoch (0 before it).
    pub fn of(t: &SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(of(t))
    }
}

enum Pre {
    Router(router::RouterPre<Sandbox>),
    Planner(planner::PlannerPre<Sandbox>),
    Router2(v0_2::router::RouterPre<Sandbox>),
    Planner2(v0_2::planner::PlannerPre<Sandbox>),
}

enum Bindings {
    Router(router::Router),
    Planner(planner::Planner),
    Router2(v0_2::router::Router),
    Planner2(v0_2::planner::Planner),
}

struct Warm {
    store: Store<Sandbox>,
    bindings: Bindings,
    calls: u32,
    /// The catalog generation this instance was last configured with (0:
    /// never); only 0.2.0 instances are configured.
    generation: u64,
    /// The instance's place in the module's bound; given back when the
    /// instance is dropped.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// A compiled, identified policy, ready to call.
///
/// Calls reuse warm instances; an instance that traps is discarded (after a
/// trap its state is undefined) and the next call gets a fresh one.
pub struct PolicyModule {
    /// Identity of the module.
    pub info: ModuleInfo,
    label: Arc<str>,
    pre: Pre,
    engine: Arc<PolicyEngine>,
    warm: Mutex<Vec<Warm>>,
    /// One permit per live instance, busy or warm.
    slots: Arc<tokio::sync::Semaphore>,
    /// Woken when an instance goes back to `warm`.
    returned: tokio::sync::Notify,
    contract: Contract,
    /// The last catalog in 0.1.0's form.
    catalog: v0_1::Catalog,
    /// The last catalog and configuration in 0.2.0's form, by generation.
    catalog2: v0_2::Catalog,
}

impl PolicyModule {
    /// The contract version the module was built against.
    pub fn contract(&self) -> Contract {
        self.contract
    }

    /// Fails with [`PolicyError::WrongWorld`] unless the module is a `world`.
    fn expect(&self, world: World) -> Result<(), PolicyError> {
        if self.info.world == world {
            Ok(())
        } else {
            Err(PolicyError::WrongWorld(self.info.world))
        }
    }

    /// Takes an instance configured with the current 0.2.0 `catalog`:
    /// `configure` is called first on an instance that has not seen it (a
    /// fresh one, or one from before the catalog changed).
    async fn checkout_configured(&self, catalog: &v0_2::Converted) -> Result<Warm, PolicyError> {
        let mut warm = self.checkout().await?;
        if warm.generation == catalog.generation() {
            return Ok(warm);
        }
        let result = match &warm.bindings {
            Bindings::Router2(b) => {
                let call = b
                    .pointsman_policy_routing()
                    .call_configure(&mut warm.store, &catalog.catalog);
                self.bounded(call).await
            }
            Bindings::Planner2(b) => {
                let call = b
                    .pointsman_policy_planning()
                    .call_configure(&mut warm.store, &catalog.catalog);
                self.bounded(call).await
            }
            // 0.1.0 modules take the catalog with every call.
            Bindings::Router(_) | Bindings::Planner(_) => return Ok(warm),
        };
        match result {
            Ok(Ok(())) => {
                warm.generation = catalog.generation();
                // The call itself gets a whole budget of its own.
                arm(&mut warm.store, self.engine.limits.call_deadline);
                Ok(warm)
            }
            Ok(Err(why)) => self
                .checkin::<()>(warm, Ok(Err(format!("configure: {why}"))))
                .map(
                    // `checkin` turns an error answer into `Rejected`.
                    |()| unreachable!("an error answer is never Ok"),
                ),
            Err(trap) => Err(classify(
                trap,
                self.engine.limits.call_deadline,
                warm.store.data().exhausted(),
            )),
        }
    }

    /// Asks a router for a route. The answer is not validated against the
    /// catalog here: see [`super::decide`].
    pub async fn route(
        &self,
        features: &Features,
        models: &[ModelInfo],
    ) -> Result<Route, PolicyError> {
        self.expect(World::Router)?;
        if self.contract == Contract::V0_2 {
            let request: v0_2::wit::Request = features.into();
            let catalog = self.catalog2.of(models);
            let health = v0_2::health(models);
            let mut warm = self.checkout_configured(&catalog).await?;
            let Bindings::Router2(bindings) = &warm.bindings else {
                return Err(PolicyError::WrongWorld(self.info.world));
            };
            let call =
                bindings
                    .pointsman_policy_routing()
                    .call_route(&mut warm.store, &request, &health);
            let result = self.bounded(call).await;
            return self
                .checkin(warm, result)
                .map(Into::into)
                .and_then(within_bounds::<Route>);
        }
        let request: v0_1::wit::Request = features.into();
        let catalog = self.catalog.of(models);
        let models = &catalog.models;
        let mut warm = self.checkout().await?;
        let Bindings::Router(bindings) = &warm.bindings else {
            return Err(PolicyError::WrongWorld(self.info.world));
        };
        let call =
            bindings
                .pointsman_policy_routing()
                .call_route(&mut warm.store, &request, models);
        let result = self.bounded(call).await;
        self.checkin(warm, result)
            .map(Into::into)
            .and_then(within_bounds::<Route>)
    }

    /// Asks a planner for the request to send to the planner model.
    pub async fn plan_request(
        &self,
        task: &Task,
        models: &[ModelInfo],
    ) -> Result<ChatRequest, PolicyError> {
        self.expect(World::Planner)?;
        if self.contract == Contract::V0_2 {
            let task: v0_2::wit::Task = task.into();
            let catalog = self.catalog2.of(models);
            let health = v0_2::health(models);
            let mut warm = self.checkout_configured(&catalog).await?;
            let Bindings::Planner2(bindings) = &warm.bindings else {
                return Err(PolicyError::WrongWorld(self.info.world));
            };
            let call = bindings.pointsman_policy_planning().call_plan_request(
                &mut warm.store,
                &task,
                &health,
            );
            let result = self.bounded(call).await;
            return self
                .checkin(warm, result)
                .map(Into::into)
                .and_then(within_bounds::<ChatRequest>);
        }
        let task: v0_1::wit::Task = task.into();
        let catalog = self.catalog.of(models);
        let models = &catalog.models;
        let mut warm = self.checkout().await?;
        let Bindings::Planner(bindings) = &warm.bindings else {
            return Err(PolicyError::WrongWorld(self.info.world));
        };
        let call =
            bindings
                .pointsman_policy_planning()
                .call_plan_request(&mut warm.store, &task, models);
        let result = self.bounded(call).await;
        self.checkin(warm, result)
            .map(Into::into)
            .and_then(within_bounds::<ChatRequest>)
    }

    /// Asks a planner to parse the planner model's reply. The plan is
    /// checked by the host as well (unique ids, known dependencies, no
    /// cycle, bounded size): a plan that fails is [`PolicyError::Invalid`].
    pub async fn parse_plan(
        &self,
        task: &Task,
        reply: &str,
        models: &[ModelInfo],
    ) -> Result<Plan, PolicyError> {
        self.expect(World::Planner)?;
        if self.contract == Contract::V0_2 {
            let task: v0_2::wit::Task = task.into();
            let catalog = self.catalog2.of(models);
            let health = v0_2::health(models);
            let mut warm = self.checkout_configured(&catalog).await?;
            let Bindings::Planner2(bindings) = &warm.bindings else {
                return Err(PolicyError::WrongWorld(self.info.world));
            };
            let call = bindings.pointsman_policy_planning().call_parse_plan(
                &mut warm.store,
                &task,
                reply,
                &health,
            );
            let result = self.bounded(call).await;
            return self
                .checkin(warm, result)
                .map(Into::into)
                .and_then(within_bounds::<Plan>);
        }
        let task: v0_1::wit::Task = task.into();
        let catalog = self.catalog.of(models);
        let models = &catalog.models;
        let mut warm = self.checkout().await?;
        let Bindings::Planner(bindings) = &warm.bindings else {
            return Err(PolicyError::WrongWorld(self.info.world));
        };
        let call = bindings.pointsman_policy_planning().call_parse_plan(
            &mut warm.store,
            &task,
            reply,
            models,
        );
        let result = self.bounded(call).await;
        self.checkin(warm, result)
            .map(Into::into)
            .and_then(within_bounds::<Plan>)
    }

    /// Asks a planner for the request that reviews a subtask's output.
    pub async fn review_request(
        &self,
        task: &Task,
        subtask: &Subtask,
        output: &str,
        models: &[ModelInfo],
    ) -> Result<Option<ChatRequest>, PolicyError> {
        self.expect(World::Planner)?;
        if self.contract == Contract::V0_2 {
            let task: v0_2::wit::Task = task.into();
            let subtask: v0_2::wit::Subtask = subtask.into();
            let catalog = self.catalog2.of(models);
            let health = v0_2::health(models);
            let mut warm = self.checkout_configured(&catalog).await?;
            let Bindings::Planner2(bindings) = &warm.bindings else {
                return Err(PolicyError::WrongWorld(self.info.world));
            };
            let call = bindings.pointsman_policy_planning().call_review_request(
                &mut warm.store,
                &task,
                &subtask,
                output,
                &health,
            );
            let result = self.bounded(call).await;
            return self
                .checkin(warm, result)
                .map(|r| r.map(Into::into))
                .and_then(within_bounds::<Option<ChatRequest>>);
        }
        let task: v0_1::wit::Task = task.into();
        let subtask: v0_1::wit::Subtask = subtask.into();
        let catalog = self.catalog.of(models);
        let models = &catalog.models;
        let mut warm = self.checkout().await?;
        let Bindings::Planner(bindings) = &warm.bindings else {
            return Err(PolicyError::WrongWorld(self.info.world));
        };
        let call = bindings.pointsman_policy_planning().call_review_request(
            &mut warm.store,
            &task,
            &subtask,
            output,
            models,
        );
        let result = self.bounded(call).await;
        self.checkin(warm, result)
            .map(|r| r.map(Into::into))
            .and_then(within_bounds::<Option<ChatRequest>>)
    }

    /// Asks a planner to judge a subtask's output from the reviewer's reply.
    pub async fn review(
        &self,
        task: &Task,
        subtask: &Subtask,
        output: &str,
        reviewer_reply: &str,
        models: &[ModelInfo],
    ) -> Result<Review, PolicyError> {
        self.expect(World::Planner)?;
        if self.contract == Contract::V0_2 {
            let task: v0_2::wit::Task = task.into();
            let subtask: v0_2::wit::Subtask = subtask.into();
            let catalog = self.catalog2.of(models);
            let health = v0_2::health(models);
            let mut warm = self.checkout_configured(&catalog).await?;
            let Bindings::Planner2(bindings) = &warm.bindings else {
                return Err(PolicyError::WrongWorld(self.info.world));
            };
            let call = bindings.pointsman_policy_planning().call_review(
                &mut warm.store,
                &task,
                &subtask,
                output,
                reviewer_reply,
                &health,
            );
            let result = self.bounded(call).await;
            return self
                .checkin(warm, result)
                .map(Into::into)
                .and_then(within_bounds::<Review>);
        }
        let task: v0_1::wit::Task = task.into();
        let subtask: v0_1::wit::Subtask = subtask.into();
        let catalog = self.catalog.of(models);
        let models = &catalog.models;
        let mut warm = self.checkout().await?;
        let Bindings::Planner(bindings) = &warm.bindings else {
            return Err(PolicyError::WrongWorld(self.info.world));
        };
        let call = bindings.pointsman_policy_planning().call_review(
            &mut warm.store,
            &task,
            &subtask,
            output,
            reviewer_reply,
            models,
        );
        let result = self.bounded(call).await;
        self.checkin(warm, result)
            .map(Into::into)
            .and_then(within_bounds::<Review>)
    }

    /// Bounds a call in wall-clock time too: CPU budgets do not stop a guest
    /// that waits in the host (a WASI poll on a clock) instead of computing.
    async fn bounded<R>(
        &self,
        call: impl std::future::Future<Output = wasmtime::Result<R>>,
    ) -> wasmtime::Result<R> {
        let wall = self.engine.limits.wall_deadline();
        match tokio::time::timeout(wall, call).await {
            Ok(result) => result,
            Err(_) => Err(Trap::Interrupt.into()),
        }
    }

    /// Takes a warm instance, or builds one if the module has room for
    /// another, or waits for one to come back; armed with the call
    /// deadline.
    async fn checkout(&self) -> Result<Warm, PolicyError> {
        let wait = tokio::time::sleep(self.engine.limits.wall_deadline());
        tokio::pin!(wait);
        let mut warm = loop {
            // Registered before looking, so a return in between is not
            // missed.
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            let reused = self.warm.lock().unwrap_or_else(|p| p.into_inner()).pop();
            if let Some(warm) = reused {
                break warm;
            }
            if let Ok(slot) = self.slots.clone().try_acquire_owned() {
                break self.instantiate(slot).await?;
            }
            tokio::select! {
                () = &mut returned => continue,
                slot = self.slots.clone().acquire_owned() => {
                    let slot = slot.map_err(|_| PolicyError::Busy)?;
                    break self.instantiate(slot).await?;
                }
                () = &mut wait => {
                    crate::metrics::policy_busy(&self.info.name);
                    return Err(PolicyError::Busy);
                }
            }
        };
        arm(&mut warm.store, self.engine.limits.call_deadline);
        Ok(warm)
    }

    async fn instantiate(
        &self,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Warm, PolicyError> {
        let started = Instant::now();
        let sandbox = Sandbox::new(
            self.label.clone(),
            self.engine.limits.memory_bytes,
            self.engine.ticker.clock(),
        );
        let mut store = Store::new(&self.engine.engine, sandbox);
        store.limiter(|s| s.limits());
        store.epoch_deadline_callback(sandbox::on_epoch_deadline);
        arm(&mut store, INSTANTIATE_DEADLINE);
        let bindings = match &self.pre {
            Pre::Router(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Bindings::Router),
            Pre::Planner(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Bindings::Planner),
            Pre::Router2(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Bindings::Router2),
            Pre::Planner2(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Bindings::Planner2),
        }
        .map_err(|e| classify(e, INSTANTIATE_DEADLINE, store.data().exhausted()))?;
        tracing::debug!(module = %self.info.id(), elapsed = ?started.elapsed(), "instantiated policy");
        Ok(Warm {
            store,
            bindings,
            calls: 0,
            generation: 0,
            _slot: slot,
        })
    }

    /// Returns a healthy instance to the pool and maps the call's outcome.
    fn checkin<T>(
        &self,
        mut warm: Warm,
        result: wasmtime::Result<Result<T, String>>,
    ) -> Result<T, PolicyError> {
        match result {
            Err(trap) => Err(classify(
                trap,
                self.engine.limits.call_deadline,
                warm.store.data().exhausted(),
            )),
            Ok(answer) => {
                warm.calls += 1;
                if warm.calls < CALLS_PER_INSTANCE {
                    // At most `max_instances` exist, so the pool needs no
                    // bound of its own.
                    self.warm
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(warm);
                    self.returned.notify_one();
                }
                answer.map_err(|mut why| {
                    bounds::cut(&mut why, bounds::MAX_TEXT_BYTES);
                    PolicyError::Rejected(why)
                })
            }
        }
    }
}

/// Starts a call on `store` that may use `cpu` of CPU time.
fn arm(store: &mut Store<Sandbox>, cpu: Duration) {
    store.data_mut().arm(cpu);
    // The budget is checked at every tick the call runs through, starting
    // with the next one.
    store.set_epoch_deadline(1);
}

fn classify(
    error: wasmtime::Error,
    deadline: Duration,
    exhausted: Option<Exhausted>,
) -> PolicyError {
    match (error.downcast_ref::<Trap>(), exhausted) {
        (Some(Trap::Interrupt), _) => PolicyError::Timeout(deadline),
        (_, Some(Exhausted::Memory)) => PolicyError::OutOfMemory,
        (_, Some(Exhausted::Table)) => PolicyError::TableLimit,
        _ => PolicyError::Trap(root_cause(&error)),
    }
}

/// A policy's answer within [`bounds`], or why it is refused.
fn within_bounds<T: Bounded>(answer: T) -> Result<T, PolicyError> {
    answer.bounded().map_err(PolicyError::Invalid)
}

fn root_cause(error: &wasmtime::Error) -> String {
    let text = error.root_cause().to_string();
    text.lines().next().unwrap_or("").to_string()
}
