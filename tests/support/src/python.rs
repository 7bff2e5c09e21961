//! Python virtualenvs of pinned packages, and running their programs with
//! a time limit: shared by the SDK scripts ([`crate::sdk`]) and aider
//! ([`crate::aider`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The versions a requirements file pins, as `(package, version)`.
pub(crate) fn pins(requirements: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(requirements)
        .map_err(|e| format!("{}: {e}", requirements.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.split_once("=="))
        .map(|(name, version)| (name.trim().to_string(), version.trim().to_string()))
        .collect())
}

/// The Python of the virtualenv `venv`, made when missing, with
/// `requirements` installed unless `ready(python)` already holds. A file
/// lock keeps parallel test binaries from installing at once.
pub(crate) fn ensure_venv(
    venv: &Path,
    requirements: &Path,
    ready: &dyn Fn(&Path) -> bool,
) -> Result<PathBuf, String> {
    let python = venv.join("bin/python");
    if python.exists() && ready(&python) {
        return Ok(python);
    }

    // Another test binary may be installing right now: take the lock, then
    // look again.
    let lock_path = std::env::temp_dir().join(format!(
        "pointsman-venv-{:016x}.lock",
        fnv1a(venv.as_os_str().as_encoded_bytes())
    ));
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;

    if !python.exists() {
        let python3 = std::env::var("PYTHON3").unwrap_or_else(|_| "python3".into());
        run(
            Command::new(&python3).args(["-m", "venv"]).arg(venv),
            &format!("creating the virtualenv {}", venv.display()),
        )?;
    }
    if !ready(&python) {
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
                .arg(requirements),
            &format!("installing {}", requirements.display()),
        )?;
        if !ready(&python) {
            return Err(format!(
                "{} still lacks the packages pinned in {}",
                python.display(),
                requirements.display()
            ));
        }
    }
    drop(lock);
    Ok(python)
}

/// Runs `job` on Tokio's blocking pool and returns its result, re-raising
/// its panic (a failed assertion) in the calling test. Async tests need it:
/// their runtime also serves the gateway the program talks to.
pub(crate) async fn off_runtime<T: Send + 'static>(
    what: &str,
    job: impl FnOnce() -> T + Send + 'static,
) -> T {
    tokio::task::spawn_blocking(job)
        .await
        .unwrap_or_else(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("{what}: {e}"),
        })
}

/// Owned copies of `(name, value)` pairs, for a job moved to another thread.
pub(crate) fn owned_pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Borrowed views of [`owned_pairs`].
pub(crate) fn borrowed_pairs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
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

/// What a program did.
#[derive(Debug)]
pub struct Captured {
    /// `None` when it was killed for running too long.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` with `input` on its standard input (closed after it),
/// capturing its output, and kills it after `limit`.
pub(crate) fn run_captured(command: &mut Command, input: &str, limit: Duration) -> Captured {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {:?}: {e}", command.get_program()));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_string();
    // Written from a thread: a program that does not read its input would
    // otherwise block us on a full pipe.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
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
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {:?}: {e}", command.get_program()),
        }
    };
    let _ = writer.join();
    Captured {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}
