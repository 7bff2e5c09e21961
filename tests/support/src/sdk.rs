//! Runs the Python scripts of `tests/sdk`, which drive a gateway (or an
//! upstream) with the official `openai` and `anthropic` SDKs.
//!
//! The interpreter is the workspace's virtualenv (`<workspace>/.venv`, the one
//! that also holds componentize-py), created when missing; the SDKs pinned in
//! `tests/sdk/requirements.txt` are installed into it when they cannot be
//! imported or are not at the pinned versions. A process-wide `OnceLock` and a
//! file lock keep parallel tests (and test binaries) from installing at once.
//!
//! The scripts are blocking subprocesses: from a `current_thread` Tokio test
//! whose runtime also serves the gateway, use [`run_sdk_script_async`] (or
//! `spawn_blocking`), or the gateway would never answer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::python::{self, Captured};
use crate::workspace_root;

/// How long one script may run before it is killed.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Variables of the SDKs that would change where or how they connect.
pub(crate) const SDK_VARIABLES: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_ADMIN_KEY",
    "OPENAI_LOG",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_LOG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// The folder of the SDK scripts.
pub fn sdk_dir() -> PathBuf {
    workspace_root().join("tests/sdk")
}

/// The virtualenv's Python, with the pinned SDKs installed (see the module
/// docs). Panics when the environment cannot be made.
pub fn python_env() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| ensure_env().unwrap_or_else(|e| panic!("the SDK Python environment: {e}")))
        .clone()
}

/// Whether the venv imports the SDKs at the pinned versions.
fn sdks_ready(python: &Path, pins: &[(String, String)]) -> bool {
    let check = "import openai, anthropic; print(openai.__version__, anthropic.__version__)";
    let Ok(out) = Command::new(python).args(["-c", check]).output() else {
        return false;
    };
    if !out.status.success() {
        return false;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut versions = stdout.split_whitespace();
    let found = [
        ("openai", versions.next().unwrap_or("")),
        ("anthropic", versions.next().unwrap_or("")),
    ];
    pins.iter().all(|(name, version)| {
        found
            .iter()
            .find(|(n, _)| n == name)
            .is_none_or(|(_, v)| v == version)
    })
}

fn ensure_env() -> Result<PathBuf, String> {
    let requirements = sdk_dir().join("requirements.txt");
    let pins = python::pins(&requirements)?;
    python::ensure_venv(&workspace_root().join(".venv"), &requirements, &|python| {
        sdks_ready(python, &pins)
    })
}

/// Runs `tests/sdk/<script>` (`.py` may be left out) against `url` with the
/// client key `key`, and returns the JSON summary it prints. Panics, with the
/// script's output, when it fails.
pub fn run_sdk_script(script: &str, url: &str, key: &str) -> Value {
    run_sdk_script_with(script, url, key, &[])
}

/// [`run_sdk_script`] with extra environment variables, e.g.
/// `("POINTSMAN_EXPECT_HEADERS", "0")`, `("POINTSMAN_CASES", "basic,tools")`
/// or `("POINTSMAN_OPENAI_MODEL", "auto")` (see `tests/sdk/common.py`).
pub fn run_sdk_script_with(script: &str, url: &str, key: &str, env: &[(&str, &str)]) -> Value {
    let python = python_env();
    let name = if script.ends_with(".py") {
        script.to_string()
    } else {
        format!("{script}.py")
    };
    let path = sdk_dir().join(&name);
    assert!(path.exists(), "no SDK script {}", path.display());

    let mut command = Command::new(&python);
    command
        .arg(&path)
        .current_dir(sdk_dir())
        .env("POINTSMAN_URL", url)
        .env("POINTSMAN_KEY", key)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("VIRTUAL_ENV")
        .env_remove("PYTHONPATH");
    for var in SDK_VARIABLES {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let Captured {
        status,
        stdout,
        stderr,
    } = python::run_captured(&mut command, "", SCRIPT_TIMEOUT);
    let fail = |why: String| -> ! {
        panic!("SDK script {name} against {url}: {why}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    };
    match status {
        None => fail(format!("killed after {SCRIPT_TIMEOUT:?}")),
        Some(s) if !s.success() => fail(format!("exited with {s}")),
        Some(_) => {}
    }
    match serde_json::from_str::<Value>(stdout.trim()) {
        Ok(summary) => summary,
        Err(e) => fail(format!("its output is not one JSON document: {e}")),
    }
}

/// [`run_sdk_script_with`] on Tokio's blocking pool, for async tests.
pub async fn run_sdk_script_async(
    script: &str,
    url: &str,
    key: &str,
    env: &[(&str, &str)],
) -> Value {
    let (script, url, key) = (script.to_string(), url.to_string(), key.to_string());
    let env = python::owned_pairs(env);
    python::off_runtime("the SDK script's task", move || {
        run_sdk_script_with(&script, &url, &key, &python::borrowed_pairs(&env))
    })
    .await
}
