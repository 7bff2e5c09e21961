//! Embeds the seed policies, built from this workspace's sources, so that the
//! binary runs its demo with no policy files around.

fn main() {
    let root = xtask::workspace_root();
    for dir in [
        "sdk",
        "wit",
        "policies/seed-matrix",
        "policies/seed-planner",
        "policies/premium-only",
    ] {
        println!("cargo::rerun-if-changed={}", root.join(dir).display());
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    if let Err(e) = xtask::build_rust(xtask::RUST_POLICIES, &out) {
        panic!("cannot build the seed policies for wasm32-wasip2: {e:#}");
    }
}
