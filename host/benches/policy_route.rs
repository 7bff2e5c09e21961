//! Policy engine benchmarks: what a routing decision, a hot reload and a
//! restart cost. Results and targets are kept in `BENCHMARKS.md`.
//!
//!     cargo bench -p pointsman --bench policy_route -- --measurement-time 3 --warm-up-time 1
//!
//! Groups:
//! - `route/<lang>`: one `PolicyModule::route` call on a warm instance, for the
//!   Rust, JavaScript and Python seed matrices; `route/rust-v0_1` is the Rust
//!   matrix built against contract 0.1.0 (the catalog with every call), the
//!   A/B pair for contract 0.2.0 (the catalog once, health per call).
//! - `route-floor/rust`: the same call to a router that answers at once
//!   (the hostile test guest on a benign message): the host's and the
//!   canonical ABI's share of `route/rust`.
//! - `route-cold/<rust|floor>`: `route/rust` and `route-floor/rust` with the
//!   CPU caches refilled with other data before every call, as a gateway's
//!   own work between two requests' policy calls does: the call as the
//!   daemon pays it under load.
//! - `route-max/<lang>`: one call with the largest request view the contract
//!   allows (16 user messages of 2,000 bytes), on an engine with a 5 s
//!   deadline so that it is measured rather than cut off.
//! - `decide/rust`: the same as `route/rust` through `policy::decide` (adds
//!   validation).
//! - `reload/rust`: from a module file landing in a watched folder (written to
//!   a temporary name, then renamed) until the registry serves its hash.
//! - `restart/<lang>`: a new engine loading a module whose compiled form is in
//!   the on-disk cache, until it serves: what a restarted daemon waits for.
//!
//! Calls are async; each sample runs all its iterations inside one
//! `block_on` of a current-thread tokio runtime (`iter_custom`), so the
//! runtime's entry cost is not counted. The first (cold) load of each module
//! compiles it and fills the compile cache; its time is printed on stderr.

use std::cell::OnceCell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use pointsman::config::Config;
use pointsman::policy::types::{Features, Message, ModelInfo, Route, WireApi};
use pointsman::policy::{Limits, PolicyEngine, PolicyModule, Registry, decide, watcher};
use pointsman_test_support as support;
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;

/// A typical small request.
fn features() -> Features {
    Features {
        id: "bench".into(),
        api: WireApi::OpenaiChat,
        requested_model: "auto".into(),
        messages: vec![Message {
            role: "user".into(),
            content: "Fix the failing test in the parser module".into(),
        }],
        message_count: 1,
        input_tokens: 9,
        max_output_tokens: None,
        tool_count: 0,
        labels: Vec::new(),
        session: None,
        ..Features::default()
    }
}

#[derive(Clone, Copy)]
struct Lang {
    /// Benchmark id.
    id: &'static str,
    /// Module name in the registry.
    name: &'static str,
    /// Component built by the test support crate.
    path: &'static str,
}

const RUST: Lang = Lang {
    id: "rust",
    name: "seed-matrix",
    path: support::SEED_MATRIX,
};
const JS: Lang = Lang {
    id: "js",
    name: "seed-matrix-js",
    path: support::SEED_MATRIX_JS,
};
const PYTHON: Lang = Lang {
    id: "python",
    name: "seed-matrix-py",
    path: support::SEED_MATRIX_PY,
};
/// The seed matrix as released against contract 0.1.0.
const RUST_V0_1: Lang = Lang {
    id: "rust-v0_1",
    name: "seed-matrix-v0_1",
    path: support::SEED_MATRIX_V0_1,
};
/// The hostile test guest, which on a benign message answers a direct route
/// at once: a Rust router with (almost) no logic.
const TRIVIAL: Lang = Lang {
    id: "rust",
    name: "hostile",
    path: support::HOSTILE,
};

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// What every group shares: a runtime, the demo catalog, and one registry
/// whose engine caches compiled components in a temporary folder. Modules are
/// loaded on first use, so a filtered run compiles only what it measures.
struct Fixture {
    rt: Runtime,
    catalog: Vec<ModelInfo>,
    safe: Route,
    cache: tempfile::TempDir,
    registry: Registry,
}

impl Fixture {
    fn new() -> Fixture {
        let config = Config::demo();
        let cache = tempfile::tempdir().expect("a temporary cache folder");
        let engine = PolicyEngine::new(Limits::default(), Some(cache.path().to_path_buf()))
            .expect("the policy engine starts");
        Fixture {
            rt: runtime(),
            catalog: pointsman::policy::catalog(&config),
            safe: pointsman::policy::safe_route(&config),
            cache,
            registry: Registry::new(engine),
        }
    }

    fn cache_dir(&self) -> PathBuf {
        self.cache.path().to_path_buf()
    }

    /// The loaded module for `lang`; the first call is a cold load (compiled
    /// on a blocking thread, as the daemon does, then cached on disk), timed
    /// and printed.
    fn module(&self, lang: Lang) -> Arc<PolicyModule> {
        let name = lang.name;
        if let Some(module) = self.registry.get(name) {
            return module;
        }
        let bytes = support::read(lang.path);
        let size = bytes.len();
        let started = Instant::now();
        let module = self
            .rt
            .block_on(self.registry.load(name, bytes, &self.catalog))
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let elapsed = started.elapsed();
        let cached: u64 = std::fs::read_dir(self.cache.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&module.info.hash)
            })
            .filter_map(|e| e.metadata().ok().map(|m| m.len()))
            .sum();
        eprintln!(
            "cold load {name}: {elapsed:.2?} (component {:.1} MiB, compiled {:.1} MiB; \
             compile on a blocking thread + cache write + instantiate + self-check)",
            size as f64 / (1 << 20) as f64,
            cached as f64 / (1 << 20) as f64,
        );
        module
    }
}

/// Measures `module.route(features)`, all of a sample's calls in one
/// `block_on`.
fn bench_route(
    b: &mut criterion::Bencher<'_>,
    rt: &Runtime,
    module: &PolicyModule,
    features: &Features,
    catalog: &[ModelInfo],
) {
    b.iter_custom(|iters| {
        rt.block_on(async {
            let started = Instant::now();
            for _ in 0..iters {
                let route = module
                    .route(black_box(features), black_box(catalog))
                    .await
                    .expect("the router answers");
                black_box(route);
            }
            started.elapsed()
        })
    })
}

/// `route/<lang>`: one call on a warm instance, with a typical small request.
/// `route-floor/rust`: the same call to a router that answers at once: what
/// the host and the canonical ABI cost on their own.
fn route(c: &mut Criterion, fx: &Fixture) {
    let features = features();
    let mut group = c.benchmark_group("route");
    for lang in [RUST, RUST_V0_1, JS, PYTHON] {
        group.bench_function(lang.id, |b| {
            bench_route(b, &fx.rt, &fx.module(lang), &features, &fx.catalog)
        });
    }
    group.finish();
    let mut group = c.benchmark_group("route-floor");
    group.bench_function(TRIVIAL.id, |b| {
        bench_route(b, &fx.rt, &fx.module(TRIVIAL), &features, &fx.catalog)
    });
    group.finish();
}

/// Bytes written between two calls of `route-cold`: twice the largest
/// per-core L2 of current x86 server parts, so that the call finds none of
/// its code or data in L1 or L2 (a shared L3 may keep some, as under load).
const EVICT_BYTES: usize = 4 << 20;

/// `route-cold/<rust|floor>`: one call after the caches were refilled with
/// unrelated data; only the calls are timed.
fn route_cold(c: &mut Criterion, fx: &Fixture) {
    let features = features();
    let mut evict = vec![0u8; EVICT_BYTES];
    let mut group = c.benchmark_group("route-cold");
    group.sample_size(20).sampling_mode(SamplingMode::Flat);
    for (id, lang) in [("rust", RUST), ("floor", TRIVIAL)] {
        let module = fx.module(lang);
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                fx.rt.block_on(async {
                    let mut spent = Duration::ZERO;
                    for i in 0..iters {
                        // A new value each pass, so every line is written.
                        evict.fill(i as u8);
                        black_box(&mut evict);
                        let started = Instant::now();
                        let route = module
                            .route(black_box(&features), black_box(&fx.catalog))
                            .await
                            .expect("the router answers");
                        spent += started.elapsed();
                        black_box(route);
                    }
                    spent
                })
            })
        });
    }
    group.finish();
}

/// The largest request view contract 0.1.0 allows: 16 user messages of
/// 2,000 bytes each.
fn largest_features() -> Features {
    const SENTENCE: &str = "Fix the failing test in the parser module. ";
    let text = SENTENCE.repeat(2000 / SENTENCE.len() + 1)[..2000].to_string();
    let mut features = features();
    features.messages = vec![
        Message {
            role: "user".into(),
            content: text,
        };
        16
    ];
    features.message_count = 16;
    features.input_tokens = 16 * 400;
    features
}

/// `route-max/<lang>`: one call with the largest request view. Measured on
/// an engine whose call deadline is raised to 5 s, so that slow calls are
/// timed rather than cut off; whether the call fits the default 10 ms budget
/// is printed on stderr.
fn route_max(c: &mut Criterion, fx: &Fixture) {
    let features = largest_features();
    let generous = Limits {
        call_deadline: Duration::from_secs(5),
        ..Limits::default()
    };
    let registry: OnceCell<Registry> = OnceCell::new();
    let mut group = c.benchmark_group("route-max");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for lang in [RUST, JS, PYTHON] {
        group.bench_function(lang.id, |b| {
            let default_limits = fx.module(lang);
            let registry = registry.get_or_init(|| {
                let engine = PolicyEngine::new(generous, Some(fx.cache_dir())).unwrap();
                Registry::new(engine)
            });
            let module = match registry.get(lang.name) {
                Some(module) => module,
                None => {
                    let outcome = fx
                        .rt
                        .block_on(default_limits.route(&features, &fx.catalog))
                        .map(|r| r.tier.as_str());
                    eprintln!(
                        "route-max/{}: under the default limits: {outcome:?}",
                        lang.id
                    );
                    let bytes = support::read(lang.path);
                    fx.rt
                        .block_on(registry.load(lang.name, bytes, &fx.catalog))
                        .unwrap()
                }
            };
            bench_route(b, &fx.rt, &module, &features, &fx.catalog)
        });
    }
    group.finish();
}

/// `decide/rust`: a call plus validation against the catalog.
fn decide_group(c: &mut Criterion, fx: &Fixture) {
    let mut group = c.benchmark_group("decide");
    group.bench_function(RUST.id, |b| {
        let module = fx.module(RUST);
        let features = features();
        b.iter_custom(|iters| {
            fx.rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let decision = decide(
                        Some(&*module),
                        black_box(&features),
                        black_box(&fx.catalog),
                        &fx.safe,
                    )
                    .await;
                    assert!(decision.fallback_reason.is_none());
                    black_box(decision);
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

/// A watched folder with a router in it, swapped between two modules.
struct Reload {
    dir: tempfile::TempDir,
    registry: Arc<Registry>,
    _guard: watcher::WatchGuard,
    versions: [Vec<u8>; 2],
    hashes: [String; 2],
    /// The version the next swap publishes.
    next: usize,
}

/// How deploy tools should publish: a temporary (hidden) name, then rename.
fn publish(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).unwrap();
}

impl Reload {
    fn new(fx: &Fixture) -> Reload {
        let dir = tempfile::tempdir().unwrap();
        let versions = [
            support::read(support::SEED_MATRIX),
            support::read(support::HOSTILE),
        ];
        let hashes = [0, 1].map(|i| format!("{:x}", Sha256::digest(&versions[i])));
        publish(dir.path(), "router", &versions[0]);
        // No compile cache: a newly published module has never been compiled.
        let engine = PolicyEngine::new(Limits::default(), None).unwrap();
        let registry = Arc::new(Registry::new(engine));
        let catalog = fx.catalog.clone();
        let guard = fx
            .rt
            .block_on(watcher::watch(
                dir.path(),
                registry.clone(),
                Arc::new(move || catalog.clone()),
                64 << 20,
            ))
            .unwrap();
        assert_eq!(registry.get("router").unwrap().info.hash, hashes[0]);
        Reload {
            dir,
            registry,
            _guard: guard,
            versions,
            hashes,
            next: 1,
        }
    }

    /// Publishes the other version and waits until it serves. The watcher's
    /// task runs on the same runtime, so this must run inside `block_on`.
    async fn swap(&mut self) -> Duration {
        let (bytes, hash) = (&self.versions[self.next], &self.hashes[self.next]);
        let started = Instant::now();
        publish(self.dir.path(), "router", bytes);
        loop {
            if self
                .registry
                .get("router")
                .is_some_and(|m| &m.info.hash == hash)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the swap did not happen: {:?}",
                self.registry.status()
            );
            // Polling granularity: tokio's timer wheel has 1 ms resolution.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = started.elapsed();
        self.next ^= 1;
        elapsed
    }
}

/// `reload/rust`: file lands in the folder → the new hash serves.
fn reload(c: &mut Criterion, fx: &Fixture) {
    let mut group = c.benchmark_group("reload");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    let state: OnceCell<std::cell::RefCell<Reload>> = OnceCell::new();
    group.bench_function(RUST.id, |b| {
        let reload = state.get_or_init(|| Reload::new(fx).into());
        b.iter_custom(|iters| {
            let mut reload = reload.borrow_mut();
            fx.rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += reload.swap().await;
                }
                total
            })
        })
    });
    group.finish();
}

/// `restart/<lang>`: a fresh engine and registry loading a module whose
/// compiled form is already in the on-disk cache, until it serves. Includes
/// reading the file, hashing it, deserialising the compiled code, the first
/// instantiation and the self-check call; tearing down is not counted.
fn restart(c: &mut Criterion, fx: &Fixture) {
    let mut group = c.benchmark_group("restart");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for lang in [JS, PYTHON] {
        group.bench_function(lang.id, |b| {
            // The untimed load that fills the cache.
            fx.module(lang);
            let name = lang.name;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let engine = PolicyEngine::new(Limits::default(), Some(fx.cache_dir()))
                        .expect("the policy engine starts");
                    let registry = Registry::new(engine);
                    let bytes = std::fs::read(lang.path).unwrap();
                    let module = fx
                        .rt
                        .block_on(registry.load(name, bytes, &fx.catalog))
                        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
                    total += started.elapsed();
                    drop((module, registry));
                }
                total
            })
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let fx = Fixture::new();
    route(&mut c, &fx);
    route_cold(&mut c, &fx);
    route_max(&mut c, &fx);
    decide_group(&mut c, &fx);
    reload(&mut c, &fx);
    restart(&mut c, &fx);
    c.final_summary();
}
