//! Hot reload: modules swapped in a watched folder while calls keep running.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pointsman::config::Config;
use pointsman::policy::types::{Features, Message, ModelInfo, WireApi};
use pointsman::policy::watcher;
use pointsman::policy::{Limits, PolicyEngine, Registry};
use pointsman_test_support as support;

/// Generous bound for a swap to take effect; the benchmark measures the
/// real figure.
const SWAP_BOUND: Duration = Duration::from_secs(5);

fn features() -> Features {
    Features {
        id: "reload".into(),
        api: WireApi::OpenaiChat,
        requested_model: "auto".into(),
        messages: vec![Message {
            role: "user".into(),
            content: "fix the bug".into(),
        }],
        message_count: 1,
        input_tokens: 5,
        max_output_tokens: None,
        tool_count: 0,
        labels: Vec::new(),
        session: None,
        ..Features::default()
    }
}

/// Publishes `bytes` as `dir/name.wasm` the way deploy tools should: write a
/// temporary file, then rename it into place.
fn publish(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).unwrap();
}

/// An engine with a 1 s call deadline. These tests are about swaps, not
/// deadlines: each swap compiles a module on one of two cores while calls
/// go on, which can hold a call past the default 10 ms on a busy machine.
fn engine() -> Arc<PolicyEngine> {
    let limits = Limits {
        call_deadline: Duration::from_secs(1),
        ..Limits::default()
    };
    PolicyEngine::new(limits, None).unwrap()
}

async fn start(dir: &Path) -> (Arc<Registry>, watcher::WatchGuard, Arc<Vec<ModelInfo>>) {
    let engine = engine();
    let registry = Arc::new(Registry::new(engine));
    let catalog = Arc::new(pointsman::policy::catalog(&Config::demo()));
    let for_watch = catalog.clone();
    let guard = watcher::watch(
        dir,
        registry.clone(),
        Arc::new(move || (*for_watch).clone()),
        MAX_MODULE_BYTES,
    )
    .await
    .unwrap();
    (registry, guard, catalog)
}

/// The folder's size cap in these tests (the default).
const MAX_MODULE_BYTES: u64 = 64 << 20;

async fn wait_for_hash(registry: &Registry, name: &str, hash: &str) -> Duration {
    let started = Instant::now();
    loop {
        if registry.get(name).is_some_and(|m| m.info.hash == hash) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < SWAP_BOUND,
            "{name} did not become {hash} within {SWAP_BOUND:?}: {:?}",
            registry.status()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn sha256(bytes: &[u8]) -> String {
    use std::fmt::Write;
    // The registry's hash, recomputed independently.
    let digest = <sha2::Sha256 as sha2::Digest>::digest(bytes);
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_swaps_under_load_lose_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let versions = [
        support::read(support::SEED_MATRIX),
        support::read(support::HOSTILE),
    ];
    let hashes = [sha256(&versions[0]), sha256(&versions[1])];
    publish(dir.path(), "router", &versions[0]);
    let (registry, _guard, catalog) = start(dir.path()).await;
    assert_eq!(registry.get("router").unwrap().info.hash, hashes[0]);

    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let caller = {
        let (registry, catalog, stop) = (registry.clone(), catalog.clone(), stop.clone());
        let (calls, failures) = (calls.clone(), failures.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let module = registry.get("router").expect("a router is always loaded");
                match module.route(&features(), &catalog).await {
                    Ok(_) => calls.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("failed call: {e}");
                        failures.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::task::yield_now().await;
            }
        })
    };

    for swap in 1..=100 {
        let version = swap % 2;
        publish(dir.path(), "router", &versions[version]);
        wait_for_hash(&registry, "router", &hashes[version]).await;
        // The next call after the swap is answered by the new version.
        let module = registry.get("router").unwrap();
        let route = module.route(&features(), &catalog).await.unwrap();
        let from_hostile = route.reasoning == "hostile policy behaving";
        assert_eq!(
            from_hostile,
            version == 1,
            "swap {swap}: {}",
            route.reasoning
        );
    }
    stop.store(true, Ordering::Relaxed);
    caller.await.unwrap();
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(
        calls.load(Ordering::Relaxed) > 100,
        "the caller kept calling"
    );
}

#[tokio::test]
async fn a_broken_or_partial_file_keeps_the_last_good_version() {
    let dir = tempfile::tempdir().unwrap();
    let good = support::read(support::SEED_MATRIX);
    let newer = support::read(support::HOSTILE);
    publish(dir.path(), "router", &good);
    let (registry, _guard, _catalog) = start(dir.path()).await;
    let good_hash = sha256(&good);

    // A copy cut short, written in place.
    std::fs::write(dir.path().join("router.wasm"), &newer[..newer.len() / 2]).unwrap();
    let started = Instant::now();
    loop {
        let status = registry.status();
        let router = status.iter().find(|s| s.name == "router").unwrap();
        if router.last_error.is_some() {
            assert_eq!(router.hash.as_deref(), Some(good_hash.as_str()));
            break;
        }
        assert!(started.elapsed() < SWAP_BOUND, "{status:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(registry.get("router").unwrap().info.hash, good_hash);

    // The rest of the file lands: the new version serves and the error clears.
    std::fs::write(dir.path().join("router.wasm"), &newer).unwrap();
    wait_for_hash(&registry, "router", &sha256(&newer)).await;
    let status = registry.status();
    assert!(status.iter().all(|s| s.last_error.is_none()), "{status:?}");

    // Removing the file unloads the module.
    std::fs::remove_file(dir.path().join("router.wasm")).unwrap();
    let started = Instant::now();
    while registry.get("router").is_some() {
        assert!(started.elapsed() < SWAP_BOUND);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn temporary_and_hidden_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _guard, _catalog) = start(dir.path()).await;
    std::fs::write(
        dir.path().join(".router.wasm"),
        support::read(support::SEED_MATRIX),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("router.wasm.tmp"),
        support::read(support::SEED_MATRIX),
    )
    .unwrap();
    tokio::time::sleep(watcher::QUIET * 8).await;
    assert!(registry.status().is_empty(), "{:?}", registry.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifos_links_and_huge_files_do_not_hold_up_a_valid_module() {
    let dir = tempfile::tempdir().unwrap();
    // A FIFO nobody writes (reading it would block for ever), a link to
    // an endless device, and a sparse 1 GiB file.
    let fifo = std::ffi::CString::new(dir.path().join("fifo.wasm").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.wasm")).unwrap();
    let huge = std::fs::File::create(dir.path().join("huge.wasm")).unwrap();
    huge.set_len(1 << 30).unwrap();
    let (registry, _guard, _catalog) = start(dir.path()).await;
    let good = support::read(support::SEED_MATRIX);
    publish(dir.path(), "router", &good);
    wait_for_hash(&registry, "router", &sha256(&good)).await;
    let status = registry.status();
    for name in ["fifo", "zero", "huge"] {
        let refused = status
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} is reported: {status:?}"));
        let reason = &refused.last_error.as_ref().unwrap().reason;
        assert!(
            reason.contains("not a regular file") || reason.contains("max_module_bytes"),
            "{name}: {reason}"
        );
        assert!(registry.get(name).is_none());
    }
}

#[tokio::test]
async fn deleting_an_override_restores_the_built_in() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut registry = Registry::new(engine);
    let catalog = pointsman::policy::catalog(&Config::demo());
    registry
        .load_builtins(pointsman::policy::builtin::ALL, &catalog)
        .await
        .unwrap();
    let registry = Arc::new(registry);
    let builtin = registry.get("seed-matrix").unwrap().info.hash.clone();
    let for_watch = Arc::new(catalog);
    let _guard = watcher::watch(
        dir.path(),
        registry.clone(),
        Arc::new(move || (*for_watch).clone()),
        MAX_MODULE_BYTES,
    )
    .await
    .unwrap();
    let other = support::read(support::HOSTILE);
    publish(dir.path(), "seed-matrix", &other);
    wait_for_hash(&registry, "seed-matrix", &sha256(&other)).await;
    std::fs::remove_file(dir.path().join("seed-matrix.wasm")).unwrap();
    wait_for_hash(&registry, "seed-matrix", &builtin).await;
}
