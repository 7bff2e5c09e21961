//! Shared pieces of Pointsman's end-to-end tests.
//!
//! The build script compiles every policy of the workspace; the constants
//! below are the paths of the resulting components, so tests always run
//! against the current sources.
//!
//! [`upstream`] is a scriptable local LLM provider speaking the OpenAI and
//! Anthropic wire formats; [`sdk`] runs the official Python SDKs (the scripts
//! in `tests/sdk`) against a gateway or an upstream; [`aider`] runs the real
//! aider, [`claude_code`] the real Claude Code and [`codex`] the real Codex
//! CLI; [`llmposter`] runs an independent mock server of all three APIs.

use std::path::Path;

pub mod aider;
pub mod claude_code;
pub mod codex;
pub mod llmposter;
pub mod postgres;
mod python;
pub mod sdk;
pub mod upstream;

pub use python::Captured;

macro_rules! component {
    ($(#[$doc:meta])* $name:ident, $file:literal) => {
        $(#[$doc])*
        pub const $name: &str = concat!(env!("OUT_DIR"), "/", $file);
    };
}

component!(
    /// The Rust seed-matrix router.
    SEED_MATRIX, "seed-matrix.wasm");
component!(
    /// The seed-matrix router as released against contract 0.1.0 (see
    /// `tests/guests/seed-matrix-v0_1`).
    SEED_MATRIX_V0_1, "seed-matrix-v0_1.wasm");
component!(
    /// The Rust seed planner.
    SEED_PLANNER, "seed-planner.wasm");
component!(
    /// The JavaScript seed-matrix router.
    SEED_MATRIX_JS, "seed-matrix-js.wasm");
component!(
    /// The Python seed-matrix router.
    SEED_MATRIX_PY, "seed-matrix-py.wasm");
component!(
    /// A router that misbehaves on request (see `tests/guests/hostile`).
    HOSTILE, "hostile.wasm");
component!(
    /// A planner whose plans break the runner's rules (see
    /// `tests/guests/hostile-planner`).
    HOSTILE_PLANNER, "hostile-planner.wasm");

/// The workspace root.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("tests/support lives two levels below the root")
}

/// Reads a component built by the build script.
pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Keeps an agent under test off the network: every proxy variable points
/// at a closed local port, with loopback exempted, so that anything but
/// the local gateway fails at once instead of reaching out.
pub(crate) fn keep_offline(command: &mut std::process::Command) {
    for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        command.env(proxy, "http://127.0.0.1:9");
        command.env(proxy.to_lowercase(), "http://127.0.0.1:9");
    }
    for no_proxy in ["NO_PROXY", "no_proxy"] {
        command.env(no_proxy, "127.0.0.1,localhost,::1");
    }
}
