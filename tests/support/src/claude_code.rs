//! Runs the real Claude Code (`@anthropic-ai/claude-code`, pinned in
//! `tests/agents/claude-code/package.json`) against a gateway, offline.
//!
//! The package is installed by `scripts/setup` into `tests/agents/claude-code`
//! (`npm ci`), and here again when missing. Each run is sealed off from the
//! machine as aider's is ([`crate::aider`]): `HOME` is a folder of the run's
//! (Claude Code keeps its settings, sessions and caches there), the
//! provider variables are removed, nonessential traffic (updates,
//! telemetry, error reports) is switched off, and every HTTP proxy variable
//! points at a closed loopback port except for loopback addresses.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::python::{self, Captured};
use crate::workspace_root;

/// How long one Claude Code run may take before it is killed.
pub const CLAUDE_TIMEOUT: Duration = Duration::from_secs(180);

/// The `claude` program, installed as pinned. Panics when it cannot be
/// installed.
pub fn claude_bin() -> PathBuf {
    static CLAUDE: OnceLock<PathBuf> = OnceLock::new();
    CLAUDE
        .get_or_init(|| ensure_claude().unwrap_or_else(|e| panic!("installing Claude Code: {e}")))
        .clone()
}

/// The version `tests/agents/claude-code/package.json` pins.
pub fn pinned_version() -> String {
    let path = workspace_root().join("tests/agents/claude-code/package.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("package.json is JSON");
    json["dependencies"]["@anthropic-ai/claude-code"]
        .as_str()
        .expect("package.json pins @anthropic-ai/claude-code")
        .to_string()
}

fn installed_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.split_whitespace().next()?.to_string())
}

fn ensure_claude() -> Result<PathBuf, String> {
    let dir = workspace_root().join("tests/agents/claude-code");
    let bin = dir.join("node_modules/.bin/claude");
    let wanted = pinned_version();
    if installed_version(&bin).as_deref() == Some(wanted.as_str()) {
        return Ok(bin);
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status()
        .map_err(|e| format!("running npm ci in {}: {e}", dir.display()))?;
    if !status.success() {
        return Err(format!("npm ci in {} failed: {status}", dir.display()));
    }
    match installed_version(&bin) {
        Some(v) if v == wanted => Ok(bin),
        other => Err(format!("{} is {other:?}, not {wanted}", bin.display())),
    }
}

/// Runs `claude -p <prompt> --output-format json` in `dir` with `args`
/// added, against the Anthropic API at `base_url` with `key`, and `env`.
pub fn run_claude(
    dir: &Path,
    prompt: &str,
    args: &[&str],
    base_url: &str,
    key: &str,
    env: &[(&str, &str)],
) -> Captured {
    let claude = claude_bin();
    let home = dir.join(".home");
    std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{}: {e}", home.display()));
    let mut command = Command::new(&claude);
    command
        .args(["-p", prompt, "--output-format", "json"])
        .args(args)
        .current_dir(dir)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("ANTHROPIC_BASE_URL", base_url)
        .env("ANTHROPIC_API_KEY", key)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1");
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let provider = name.starts_with("ANTHROPIC_")
            && name != "ANTHROPIC_BASE_URL"
            && name != "ANTHROPIC_API_KEY";
        if provider
            || name.starts_with("CLAUDE_CODE_")
                && name != "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"
            || name.starts_with("CLAUDE_CONFIG")
            || name.starts_with("OPENAI_")
        {
            command.env_remove(&*name);
        }
    }
    crate::keep_offline(&mut command);
    for (k, v) in env {
        command.env(k, v);
    }
    python::run_captured(&mut command, "", CLAUDE_TIMEOUT)
}

/// [`run_claude`] on Tokio's blocking pool, for async tests whose runtime
/// also serves the gateway.
pub async fn run_claude_async(
    dir: &Path,
    prompt: &str,
    args: &[&str],
    base_url: &str,
    key: &str,
) -> Captured {
    let dir = dir.to_path_buf();
    let prompt = prompt.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (base_url, key) = (base_url.to_string(), key.to_string());
    python::off_runtime("the Claude Code run", move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_claude(&dir, &prompt, &args, &base_url, &key, &[])
    })
    .await
}
