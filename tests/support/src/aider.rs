//! Runs the real aider (`aider-chat`, pinned in `tests/aider/requirements.txt`)
//! against a gateway, offline.
//!
//! aider lives in its own virtualenv (`<workspace>/.venv-aider`: it pins
//! some 100 packages, among them an `openai` SDK other than the one the SDK
//! scripts pin), made and filled when missing as for [`crate::sdk`].
//!
//! Each run is sealed off from the machine: `HOME` is a folder of the run's
//! (aider reads its config and `.env` from there and writes caches and
//! analytics there), the provider and `AIDER_*` variables are removed, and
//! every HTTP proxy variable points at a closed loopback port except for
//! loopback addresses, so a request aider or litellm would make to the
//! internet fails on this machine instead of leaving it. litellm reads its
//! bundled model prices (`LITELLM_LOCAL_MODEL_COST_MAP`); aider looks a
//! model up on the internet unless it is in a `--model-metadata-file`, so
//! callers pass one for the models they use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::python::{self, Captured};
use crate::sdk::SDK_VARIABLES;
use crate::workspace_root;

/// How long one aider run may take before it is killed.
pub const AIDER_TIMEOUT: Duration = Duration::from_secs(180);

/// Flags of every run: no questions, no git, no network of aider's own
/// (update checks, analytics, URL scraping), plain output.
pub const AIDER_FLAGS: &[&str] = &[
    "--yes-always",
    "--no-git",
    "--no-auto-commits",
    "--no-check-update",
    "--no-show-release-notes",
    "--no-analytics",
    "--no-detect-urls",
    "--disable-playwright",
    "--no-show-model-warnings",
    "--no-auto-lint",
    "--no-auto-test",
    "--no-suggest-shell-commands",
    "--no-notifications",
    "--no-pretty",
    "--no-fancy-input",
    "--map-tokens",
    "0",
    "--encoding",
    "utf-8",
];

/// The aider program, installed as pinned (see the module docs). Panics
/// when it cannot be installed.
pub fn aider_bin() -> PathBuf {
    static AIDER: OnceLock<PathBuf> = OnceLock::new();
    AIDER
        .get_or_init(|| ensure_aider().unwrap_or_else(|e| panic!("installing aider: {e}")))
        .clone()
}

fn ensure_aider() -> Result<PathBuf, String> {
    let root = workspace_root();
    let requirements = root.join("tests/aider/requirements.txt");
    let pins = python::pins(&requirements)?;
    let wanted = pins
        .iter()
        .find(|(name, _)| name == "aider-chat")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| format!("{} pins no aider-chat", requirements.display()))?;
    let venv = root.join(".venv-aider");
    python::ensure_venv(&venv, &requirements, &|python| {
        Command::new(python)
            .args(["-c", "import aider; print(aider.__version__)"])
            .output()
            .is_ok_and(|out| {
                out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == wanted
            })
    })?;
    Ok(venv.join("bin/aider"))
}

/// Runs aider in `dir` with [`AIDER_FLAGS`] and `args`, typing `input` (one
/// chat message a line; aider exits at its end), with `env` added.
pub fn run_aider(dir: &Path, args: &[&str], input: &str, env: &[(&str, &str)]) -> Captured {
    let aider = aider_bin();
    let home = dir.join(".home");
    std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{}: {e}", home.display()));
    let mut command = Command::new(&aider);
    command
        .args(AIDER_FLAGS)
        .args(args)
        .current_dir(dir)
        .env("HOME", &home)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("VIRTUAL_ENV")
        .env_remove("PYTHONPATH");
    for var in SDK_VARIABLES {
        command.env_remove(var);
    }
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("AIDER_") || name.ends_with("_API_BASE") || name.ends_with("_API_KEY") {
            command.env_remove(&*name);
        }
    }
    crate::keep_offline(&mut command);
    for (k, v) in env {
        command.env(k, v);
    }
    python::run_captured(&mut command, input, AIDER_TIMEOUT)
}

/// [`run_aider`] on Tokio's blocking pool, for async tests whose runtime
/// also serves the gateway.
pub async fn run_aider_async(
    dir: &Path,
    args: &[&str],
    input: &str,
    env: &[(&str, &str)],
) -> Captured {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let input = input.to_string();
    let env = python::owned_pairs(env);
    python::off_runtime("the aider task", move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_aider(&dir, &args, &input, &python::borrowed_pairs(&env))
    })
    .await
}
