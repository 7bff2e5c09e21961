//! Live reload of the whole configuration, on SIGHUP or `POST
//! /v1/admin/reload` (`pointsman reload`).
//!
//! The file is read and validated in full first, and the new state built
//! beside the old one (providers, keys, limits, prices, the catalog, and
//! the policies if `[policies]` or the safe route changed); only then is it
//! swapped in, atomically, for new requests. A request or task in flight
//! holds the state it started with and finishes on it, so nothing is cut
//! and a price change applies from the next request. Tasks, session plans
//! and task tiers carry over, as do the breaker, latency and load of every
//! endpoint that remains. An invalid file changes nothing: the reason is
//! logged, returned and counted. Settings the listener took at start are
//! reported as needing a restart, never silently ignored.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use axum::Router;

use super::AppState;
use crate::config::Config;

/// Where a state's configuration came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file, or none for the built-in demo.
    pub source: Option<PathBuf>,
    /// SHA-256 of the file's text, hex.
    pub sha256: String,
    /// When it was loaded.
    pub at: SystemTime,
}

impl Loaded {
    /// `config`'s origin, loaded now.
    pub fn of(config: &Config) -> Self {
        Loaded {
            source: config.source.clone(),
            sha256: config.text_sha256.clone(),
            at: SystemTime::now(),
        }
    }
}

/// Whether `a` and `b` run the same policies (so a reload can keep the
/// engine, its modules and the folder watch).
pub fn same_policies(a: &Config, b: &Config) -> bool {
    let (p, q) = (&a.policies, &b.policies);
    p.dir == q.dir
        && p.router == q.router
        && p.planner == q.planner
        && p.call_deadline_ms == q.call_deadline_ms
        && p.memory_mib == q.memory_mib
        && p.max_instances == q.max_instances
        && p.max_module_bytes == q.max_module_bytes
        && p.load_timeout_ms == q.load_timeout_ms
        && p.cache_dir == q.cache_dir
        && crate::policy::safe_route(a) == crate::policy::safe_route(b)
}

/// Settings the running listener or task store took at start, which a
/// reload cannot change.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.listen != new.listen {
        keys.push("listen");
    }
    let (s, t) = (&old.server, &new.server);
    if s.header_timeout_ms != t.header_timeout_ms {
        keys.push("server.header_timeout_ms");
    }
    if s.max_connections != t.max_connections {
        keys.push("server.max_connections");
    }
    if s.shutdown_grace_ms != t.shutdown_grace_ms {
        keys.push("server.shutdown_grace_ms");
    }
    if old.tasks.keep_secs != new.tasks.keep_secs {
        keys.push("tasks.keep_secs");
    }
    if old.tasks.max_per_client != new.tasks.max_per_client {
        keys.push("tasks.max_per_client");
    }
    keys
}

/// What a successful reload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reloaded {
    /// SHA-256 of the file now serving.
    pub sha256: String,
    /// Whether the file differed from the one serving before.
    pub changed: bool,
    /// Keys whose new values take effect only after a restart.
    pub needs_restart: Vec<&'static str>,
}

/// The state serving new requests, swapped by reloads.
pub struct Live {
    current: ArcSwap<Current>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

struct Current {
    state: Arc<AppState>,
    router: Router,
}

impl Live {
    /// Serving `state`.
    pub fn new(state: Arc<AppState>) -> Arc<Self> {
        let router = super::router(state.clone());
        Arc::new(Live {
            current: ArcSwap::from_pointee(Current { state, router }),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The state new requests get.
    pub fn state(&self) -> Arc<AppState> {
        self.current.load().state.clone()
    }

    /// The routes of the current state.
    pub fn router(&self) -> Router {
        self.current.load().router.clone()
    }

    /// Reads the config file the current state came from again and swaps
    /// in the state built from it; `who` is named in the audit log (the
    /// signal, or the admin key). An error changes nothing.
    pub async fn reload(&self, who: &str) -> anyhow::Result<Reloaded> {
        let _one = self.reloading.lock().await;
        let old = self.state();
        let result = async {
            let Some(path) = old.loaded.source.clone() else {
                anyhow::bail!(
                    "the daemon runs the built-in demo, which has no file to reload; start it with --config"
                );
            };
            let config = Config::load(&path)?;
            let needs_restart = needs_restart(&old.config, &config);
            let changed = config.text_sha256 != old.loaded.sha256;
            let mut new = old.reload(config).await?;
            // Settings a reload cannot apply stay as they are, so what the
            // daemon reports is what it does.
            new.config.listen = old.config.listen;
            new.config.server.header_timeout_ms = old.config.server.header_timeout_ms;
            new.config.server.max_connections = old.config.server.max_connections;
            new.config.server.shutdown_grace_ms = old.config.server.shutdown_grace_ms;
            let sha256 = new.loaded.sha256.clone();
            let state = Arc::new(new);
            let router = super::router(state.clone());
            self.current.store(Arc::new(Current { state, router }));
            Ok(Reloaded {
                sha256,
                changed,
                needs_restart,
            })
        }
        .await;
        match &result {
            Ok(done) => {
                crate::metrics::config_reload("ok");
                tracing::info!(
                    target: "pointsman::audit",
                    who,
                    action = "reload",
                    sha256 = %done.sha256,
                    changed = done.changed,
                    "configuration reloaded"
                );
                if !done.needs_restart.is_empty() {
                    tracing::warn!(
                        keys = ?done.needs_restart,
                        "these settings changed but take effect only after a restart"
                    );
                }
            }
            Err(e) => {
                crate::metrics::config_reload("invalid");
                tracing::error!(
                    target: "pointsman::audit",
                    who,
                    action = "reload",
                    "configuration not reloaded, the previous one keeps serving: {e:#}"
                );
            }
        }
        result
    }
}

/// Reloads `live` whenever its config file changes, once the file has been
/// quiet for a moment (editors write in several steps); until the returned
/// watcher is dropped.
pub fn watch_file(live: Arc<Live>) -> anyhow::Result<Option<notify::RecommendedWatcher>> {
    use notify::Watcher;
    let Some(path) = live.state().loaded.source.clone() else {
        return Ok(None);
    };
    let path = path.canonicalize().unwrap_or(path);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(None);
    };
    let name = name.to_os_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event.paths.iter().any(|p| p.file_name() == Some(&name))
        {
            let _ = tx.send(());
        }
    })?;
    // The folder, not the file: editors and deploy tools replace files by
    // renaming, which a watch on the old file would miss.
    watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Quiet for 200 ms: the rest of a burst of events is one change.
            while let Ok(Some(())) =
                tokio::time::timeout(std::time::Duration::from_millis(200), rx.recv()).await
            {
            }
            let _ = live.reload("config file watch").await;
        }
    });
    Ok(Some(watcher))
}
