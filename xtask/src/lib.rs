//! Building Pointsman's policies into WebAssembly components.
//!
//! Used by `cargo xtask policies` and by the build scripts of `pointsman`
//! (which embeds the seed policies) and `pointsman-tests` (which tests every
//! policy), so that all three always build the current policy sources the
//! same way.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The component target.
pub const TARGET: &str = "wasm32-wasip2";
/// The cargo profile policies are built with (see the workspace manifest).
pub const PROFILE: &str = "policy";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The Rust policy crates of the workspace: `(package, output name)`.
pub const RUST_POLICIES: &[(&str, &str)] = &[
    ("seed-matrix", "seed-matrix"),
    ("seed-planner", "seed-planner"),
    ("premium-only", "premium-only"),
];

/// Builds Rust policy `packages` for `wasm32-wasip2` and copies each
/// component to `out_dir/<name>.wasm`. Returns the written paths.
///
/// Builds in a separate target folder, so that it can run from a build
/// script without waiting on the outer cargo's lock.
pub fn build_rust(packages: &[(&str, &str)], out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    ensure_target()?;
    let root = workspace_root();
    let target_dir = root.join("target").join("policy-build");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--target", TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in packages {
        cmd.args(["--package", package]);
    }
    // A build script's environment describes the outer build (its target,
    // flags and clippy wrapper); none of it applies to the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    run(&mut cmd, "building Rust policies")?;
    std::fs::create_dir_all(out_dir)?;
    let mut written = Vec::new();
    for (package, name) in packages {
        let built = target_dir
            .join(TARGET)
            .join(PROFILE)
            .join(format!("{}.wasm", package.replace('-', "_")));
        let dest = out_dir.join(format!("{name}.wasm"));
        copy_if_changed(&built, &dest)?;
        written.push(dest);
    }
    Ok(written)
}

/// Builds the JavaScript example policy into `out`.
pub fn build_js(out: &Path) -> anyhow::Result<()> {
    let script = workspace_root().join("examples/policies/js/build.sh");
    run(
        Command::new("bash").arg(script).arg(out),
        "building the JavaScript policy",
    )
}

/// Builds the Python example policy into `out`.
pub fn build_python(out: &Path) -> anyhow::Result<()> {
    let script = workspace_root().join("examples/policies/python/build.sh");
    run(
        Command::new("bash").arg(script).arg(out),
        "building the Python policy",
    )
}

/// Builds every first-party and example policy into `out_dir`.
pub fn build_all(out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = build_rust(RUST_POLICIES, out_dir)?;
    let js = out_dir.join("seed-matrix-js.wasm");
    build_js(&js)?;
    written.push(js);
    let py = out_dir.join("seed-matrix-py.wasm");
    build_python(&py)?;
    written.push(py);
    Ok(written)
}

/// Makes sure the `wasm32-wasip2` standard library is installed.
pub fn ensure_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l == TARGET) =>
        {
            Ok(())
        }
        Ok(_) => run(
            Command::new("rustup").args(["target", "add", TARGET]),
            "installing the wasm32-wasip2 target",
        ),
        // Without rustup the toolchain is managed some other way; let cargo
        // report a missing target itself.
        Err(_) => Ok(()),
    }
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Copies only when the bytes differ, so that the destination's mtime (which
/// build scripts watch) changes only with its content.
fn copy_if_changed(from: &Path, to: &Path) -> anyhow::Result<()> {
    let new = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if std::fs::read(to).ok().as_deref() != Some(&new[..]) {
        std::fs::write(to, new).with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(())
}
