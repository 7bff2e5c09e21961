//! Runs the real Codex CLI (`@openai/codex`, pinned in
//! `tests/agents/codex/package.json` and its lock file) against a gateway,
//! offline and non-interactively (`codex exec`).
//!
//! The npm package is installed into `tests/agents/codex/node_modules` by
//! `scripts/setup`, or here (`npm ci`) when it is missing. Each run is
//! sealed off from the machine: `CODEX_HOME` and `HOME` are folders of the
//! run's, holding a `config.toml` that names the gateway as the only model
//! provider (Responses API, key from `POINTSMAN_CODEX_KEY`) with analytics
//! and update checks off, the provider variables are removed, and every
//! HTTP proxy variable points at a closed loopback port except for
//! loopback addresses, so a request Codex would make to the internet fails
//! on this machine instead of leaving it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::python::{self, Captured};
use crate::sdk::SDK_VARIABLES;
use crate::workspace_root;

/// How long one Codex run may take before it is killed.
pub const CODEX_TIMEOUT: Duration = Duration::from_secs(180);

/// The variable the run's `config.toml` reads the gateway key from.
pub const CODEX_KEY_VARIABLE: &str = "POINTSMAN_CODEX_KEY";

/// The folder of the pinned install.
pub fn codex_dir() -> PathBuf {
    workspace_root().join("tests/agents/codex")
}

/// The `codex` program, installed as pinned (see the module docs). Panics
/// when it cannot be installed.
pub fn codex_bin() -> PathBuf {
    static CODEX: OnceLock<PathBuf> = OnceLock::new();
    CODEX
        .get_or_init(|| ensure_codex().unwrap_or_else(|e| panic!("installing Codex CLI: {e}")))
        .clone()
}

fn ensure_codex() -> Result<PathBuf, String> {
    let dir = codex_dir();
    let bin = dir.join("node_modules/.bin/codex");
    let pinned = version_in(&dir.join("package.json"), Some("@openai/codex"))?;
    let installed = version_in(&dir.join("node_modules/@openai/codex/package.json"), None).ok();
    if !bin.exists() || installed.as_deref() != Some(pinned.as_str()) {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("running npm ci in {}: {e}", dir.display()))?;
        if !out.status.success() {
            return Err(format!(
                "npm ci in {}: {}\n{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(bin)
}

/// The `version` of a `package.json`, or the version it pins for
/// `dependency`.
fn version_in(package: &Path, dependency: Option<&str>) -> Result<String, String> {
    let text =
        std::fs::read_to_string(package).map_err(|e| format!("{}: {e}", package.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", package.display()))?;
    let version = match dependency {
        Some(name) => &json["dependencies"][name],
        None => &json["version"],
    };
    version
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{} has no version", package.display()))
}

/// The `config.toml` of a run against the gateway at `base_url` (ending in
/// `/v1`), asking for `model`.
pub fn codex_config(base_url: &str, model: &str) -> String {
    format!(
        r#"model = "{model}"
model_provider = "pointsman"
check_for_update_on_startup = false

[model_providers.pointsman]
name = "Pointsman"
base_url = "{base_url}"
env_key = "{CODEX_KEY_VARIABLE}"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false
"#
    )
}

/// Runs `codex exec` in `dir` on `prompt` against the gateway at `base_url`
/// asking for `model`, with `env` added; commands the model asks for run
/// unsandboxed (the test machine may have no user namespaces).
pub fn run_codex(
    dir: &Path,
    base_url: &str,
    model: &str,
    prompt: &str,
    env: &[(&str, &str)],
) -> Captured {
    let codex = codex_bin();
    let home = dir.join(".codex-home");
    std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{}: {e}", home.display()));
    std::fs::write(home.join("config.toml"), codex_config(base_url, model))
        .unwrap_or_else(|e| panic!("{}: {e}", home.display()));
    let mut command = Command::new(&codex);
    command
        .args([
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "--color",
            "never",
            prompt,
        ])
        .current_dir(dir)
        .env("HOME", &home)
        .env("CODEX_HOME", &home)
        .env("RUST_LOG", "warn");
    for var in SDK_VARIABLES {
        command.env_remove(var);
    }
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CODEX_") && name != "CODEX_HOME" {
            command.env_remove(&*name);
        }
    }
    crate::keep_offline(&mut command);
    for (k, v) in env {
        command.env(k, v);
    }
    python::run_captured(&mut command, "", CODEX_TIMEOUT)
}

/// [`run_codex`] on Tokio's blocking pool, for async tests whose runtime
/// also serves the gateway.
pub async fn run_codex_async(
    dir: &Path,
    base_url: &str,
    model: &str,
    prompt: &str,
    env: &[(&str, &str)],
) -> Captured {
    let dir = dir.to_path_buf();
    let base_url = base_url.to_string();
    let model = model.to_string();
    let prompt = prompt.to_string();
    let env = python::owned_pairs(env);
    python::off_runtime("the Codex task", move || {
        run_codex(
            &dir,
            &base_url,
            &model,
            &prompt,
            &python::borrowed_pairs(&env),
        )
    })
    .await
}
