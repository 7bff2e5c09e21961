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

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::workspace_root;

/// How long one script may run before it is killed.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Variables of the SDKs that would change where or how they connect.
const SDK_VARIABLES: &[&str] = &[
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

/// The versions `requirements.txt` pins, as `(package, version)`.
fn pins(requirements: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(requirements)
        .map_err(|e| format!("{}: {e}", requirements.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.split_once("=="))
        .map(|(name, version)| (name.trim().to_string(), version.trim().to_string()))
        .collect())
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
    let root = workspace_root();
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    let requirements = sdk_dir().join("requirements.txt");
    let pins = pins(&requirements)?;
    if python.exists() && sdks_ready(&python, &pins) {
        return Ok(python);
    }

    // Another test binary may be installing right now: take the lock, then
    // look again.
    let lock_path = std::env::temp_dir().join(format!(
        "switchyard-venv-{:016x}.lock",
        fnv1a(root.as_os_str().as_encoded_bytes())
    ));
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;

    if !python.exists() {
        let python3 = std::env::var("PYTHON3").unwrap_or_else(|_| "python3".into());
        run(
            Command::new(&python3).args(["-m", "venv"]).arg(&venv),
            "creating the virtualenv",
        )?;
    }
    if !sdks_ready(&python, &pins) {
        run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&requirements),
            "installing tests/sdk/requirements.txt",
        )?;
        if !sdks_ready(&python, &pins) {
            return Err(format!(
                "{} still cannot import the pinned openai and anthropic SDKs",
                python.display()
            ));
        }
    }
    drop(lock);
    Ok(python)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `tests/sdk/<script>` (`.py` may be left out) against `url` with the
/// client key `key`, and returns the JSON summary it prints. Panics, with the
/// script's output, when it fails.
pub fn run_sdk_script(script: &str, url: &str, key: &str) -> Value {
    run_sdk_script_with(script, url, key, &[])
}

/// [`run_sdk_script`] with extra environment variables, e.g.
/// `("SWITCHYARD_EXPECT_HEADERS", "0")`, `("SWITCHYARD_CASES", "basic,tools")`
/// or `("SWITCHYARD_OPENAI_MODEL", "auto")` (see `tests/sdk/common.py`).
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
        .env("SWITCHYARD_URL", url)
        .env("SWITCHYARD_KEY", key)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("VIRTUAL_ENV")
        .env_remove("PYTHONPATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in SDK_VARIABLES {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", path.display()));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {name}: {e}"),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
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
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_sdk_script_with(&script, &url, &key, &env)
    })
    .await
    .unwrap_or_else(|e| match e.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(e) => panic!("the SDK script's task: {e}"),
    })
}
