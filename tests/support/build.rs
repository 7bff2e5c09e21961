//! Compiles every policy the tests load, from the current sources: the Rust
//! policies and test guests, and the JavaScript and Python examples.

use std::path::PathBuf;

fn main() {
    let root = xtask::workspace_root();
    for dir in [
        "sdk",
        "wit",
        "policies",
        "tests/guests",
        "examples/policies/js/seed-matrix.js",
        "examples/policies/js/build.sh",
        "examples/policies/js/package-lock.json",
        "examples/policies/python/seed_matrix.py",
        "examples/policies/python/app.py",
        "examples/policies/python/build.sh",
        "examples/policies/python/requirements.txt",
    ] {
        println!("cargo::rerun-if-changed={}", root.join(dir).display());
    }
    // Ahead-of-time compilation of the JavaScript policy (see its build.sh).
    for var in ["POINTSMAN_JS_AOT", "POINTSMAN_WEVAL"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let result = xtask::build_rust(
        &[
            ("seed-matrix", "seed-matrix"),
            ("seed-planner", "seed-planner"),
            ("hostile-policy", "hostile"),
            ("hostile-planner", "hostile-planner"),
            ("seed-matrix-v0-1", "seed-matrix-v0_1"),
        ],
        &out,
    )
    .and_then(|_| xtask::build_js(&out.join("seed-matrix-js.wasm")))
    .and_then(|_| xtask::build_python(&out.join("seed-matrix-py.wasm")));
    if let Err(e) = result {
        panic!("cannot build the test policies: {e:#}");
    }
}
