//! Watching the policies folder and hot-swapping modules.
//!
//! Events are debounced per file: a module is loaded once its file has been
//! quiet for [`QUIET`], so a file still being written is not read half-way.
//! Files whose names start with `.` or do not end in `.wasm` are ignored,
//! which lets deploy tools write `name.wasm.tmp` and rename it into place (the
//! safest way to publish a module). A load that still fails, for example a
//! truncated copy, is reported and the last good version keeps serving; the
//! next write to the file triggers another attempt.
//!
//! The folder is an input like any other. Only regular files are read (a
//! symlink, FIFO or device is refused: a FIFO would block the read for
//! ever, a link to `/dev/zero` would fill memory), opened without following
//! links and without blocking, and at most `policies.max_module_bytes` of
//! them. Each file is loaded on a task of its own, so one slow compile
//! (bounded by `policies.load_timeout_ms`) does not hold up the others.
//! Deleting a file that overrode a built-in module restores the built-in.

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

/// Loads every module in `dir` (waiting for them all), then watches the
/// folder until the returned guard is dropped.
pub async fn watch(
    dir: &Path,
    registry: Arc<Registry>,
    catalog: Arc<dyn Fn() -> Vec<ModelInfo> + Send + Sync>,
    max_bytes: u64,
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
    let loads = entries.into_iter().map(|path| {
        let registry = registry.clone();
        let catalog = catalog();
        tokio::spawn(async move { sync_file(&path, &registry, &catalog, max_bytes).await })
    });
    futures::future::join_all(loads).await;
    let task = tokio::spawn(debounce(rx, registry, catalog, max_bytes));
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
    max_bytes: u64,
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
                    // A task per file: the registry serialises loads of one
                    // module, and lets different modules load at once.
                    let registry = registry.clone();
                    let catalog = catalog();
                    tokio::spawn(async move {
                        sync_file(&path, &registry, &catalog, max_bytes).await
                    });
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
async fn sync_file(path: &Path, registry: &Registry, catalog: &[ModelInfo], max_bytes: u64) {
    let Some(name) = module_name(path) else {
        return;
    };
    let owned = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || read_module(&owned, max_bytes)).await;
    match read {
        Ok(Ok(bytes)) => {
            // Errors are recorded and logged by the registry.
            let _ = registry.load(name, bytes, catalog).await;
        }
        Ok(Err(Unusable::Gone)) => registry.remove(name, catalog).await,
        Ok(Err(unusable)) => {
            crate::metrics::policy_file_refused(unusable.as_str());
            registry.refuse(name, unusable.to_string());
        }
        Err(e) => tracing::error!(path = %path.display(), "reading a policy failed: {e}"),
    }
}

/// Why a file in the folder is not loaded.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    /// It no longer exists.
    #[error("the file is gone")]
    Gone,
    /// A symlink, FIFO, device or folder.
    #[error("not a regular file ({0}); only regular files are loaded")]
    NotRegular(&'static str),
    /// Over `policies.max_module_bytes`.
    #[error("the file is over {0} bytes (policies.max_module_bytes)")]
    TooLarge(u64),
    /// It could not be read.
    #[error("cannot read the file: {0}")]
    Unreadable(std::io::Error),
}

impl Unusable {
    fn as_str(&self) -> &'static str {
        match self {
            Unusable::Gone => "gone",
            Unusable::NotRegular(_) => "not_regular",
            Unusable::TooLarge(_) => "too_large",
            Unusable::Unreadable(_) => "unreadable",
        }
    }
}

/// The bytes of the module file at `path`, if it is a regular file of at
/// most `max_bytes`. Opened without following a link and without blocking
/// (so a FIFO cannot hold the reader), then checked on the open file, so a
/// swap between the check and the read changes nothing.
fn read_module(path: &Path, max_bytes: u64) -> Result<Vec<u8>, Unusable> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let kind = |t: std::fs::FileType| -> &'static str {
        if t.is_symlink() {
            "a symbolic link"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_dir() {
            "a folder"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a file"
        }
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Gone),
        // O_NOFOLLOW on a link: ELOOP.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Unusable::NotRegular("a symbolic link"));
        }
        Err(e) => return Err(Unusable::Unreadable(e)),
    };
    let meta = file.metadata().map_err(Unusable::Unreadable)?;
    if !meta.is_file() {
        return Err(Unusable::NotRegular(kind(meta.file_type())));
    }
    if meta.len() > max_bytes {
        return Err(Unusable::TooLarge(max_bytes));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take`: a file that grows while it is read still stops at the cap.
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(Unusable::Unreadable)?;
    if bytes.len() as u64 > max_bytes {
        return Err(Unusable::TooLarge(max_bytes));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.wasm");
        std::fs::write(&ok, b"\0asm....").unwrap();
        assert_eq!(read_module(&ok, 100).unwrap(), b"\0asm....");
        assert!(matches!(read_module(&ok, 4), Err(Unusable::TooLarge(4))));

        let link = dir.path().join("zero.wasm");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(matches!(
            read_module(&link, 100),
            Err(Unusable::NotRegular(_))
        ));

        let fifo = dir.path().join("fifo.wasm");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Returns at once: a FIFO with no writer must not block the read.
        assert!(matches!(
            read_module(&fifo, 100),
            Err(Unusable::NotRegular("a FIFO"))
        ));

        let gone = dir.path().join("gone.wasm");
        assert!(matches!(read_module(&gone, 100), Err(Unusable::Gone)));
    }
}
