//! Watching the policies folder and hot-swapping modules.
//!
//! Events are debounced per file: a module is loaded once its file has been
//! quiet for [`QUIET`], so a file still being written is not read half-way.
//! Files whose names start with `.` or do not end in `.wasm` are ignored,
//! which lets deploy tools write `name.wasm.tmp` and rename it into place (the
//! safest way to publish a module). A load that still fails, for example a
//! truncated copy, is reported and the last good version keeps serving; the
//! next write to the file triggers another attempt.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::registry::Registry;
use super::types::ModelInfo;

/// How long a file must be unchanged before it is loaded.
pub const QUIET: Duration = Duration::from_millis(25);

/// A module name for `path`, if it is a policy file.
pub fn module_name(path: &Path) -> Option<&str> {
    let file = path.file_name()?.to_str()?;
    if file.starts_with('.') {
        return None;
    }
    file.strip_suffix(".wasm").filter(|stem| !stem.is_empty())
}

/// Loads every module in `dir` (waiting for each), then watches the folder
/// until the returned guard is dropped.
pub async fn watch(
    dir: &Path,
    registry: Arc<Registry>,
    catalog: Arc<dyn Fn() -> Vec<ModelInfo> + Send + Sync>,
) -> anyhow::Result<WatchGuard> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("policies folder {}", dir.display()))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
            Err(e) => tracing::warn!("policies folder watch error: {e}"),
        })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;

    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| module_name(p).is_some())
        .collect();
    entries.sort();
    for path in entries {
        sync_file(&path, &registry, &catalog()).await;
    }
    let task = tokio::spawn(debounce(rx, registry, catalog));
    tracing::info!(dir = %dir.display(), "watching policies folder");
    Ok(WatchGuard {
        _watcher: watcher,
        task,
    })
}

/// Keeps the folder watched; dropping it stops the watch.
pub struct WatchGuard {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn debounce(
    mut events: mpsc::UnboundedReceiver<PathBuf>,
    registry: Arc<Registry>,
    catalog: Arc<dyn Fn() -> Vec<ModelInfo> + Send + Sync>,
) {
    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    loop {
        let next_due = pending.values().min().map(|t| *t + QUIET);
        tokio::select! {
            event = events.recv() => match event {
                Some(path) if module_name(&path).is_some() => {
                    pending.insert(path, Instant::now());
                }
                Some(_) => {}
                None => return,
            },
            _ = sleep_until(next_due) => {
                let now = Instant::now();
                let due: Vec<PathBuf> = pending
                    .iter()
                    .filter(|(_, t)| **t + QUIET <= now)
                    .map(|(p, _)| p.clone())
                    .collect();
                for path in due {
                    pending.remove(&path);
                    sync_file(&path, &registry, &catalog()).await;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Brings the registry in line with the file at `path`.
async fn sync_file(path: &Path, registry: &Registry, catalog: &[ModelInfo]) {
    let Some(name) = module_name(path) else {
        return;
    };
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            // Errors are recorded and logged by the registry.
            let _ = registry.load(name, bytes, catalog).await;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => registry.remove(name),
        Err(e) => tracing::warn!(path = %path.display(), "cannot read policy: {e}"),
    }
}
