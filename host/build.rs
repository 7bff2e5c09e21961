//! Embeds the seed policies, built from this workspace's sources, so that the
//! binary runs its demo with no policy files around; and the `o200k_base`
//! vocabulary in the compact form `tokens/vocabulary.rs` reads (see there for why).

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
    write_vocabulary(&out.join("o200k_base.bin"));
    if let Err(e) = xtask::build_rust(xtask::RUST_POLICIES, &out) {
        panic!("cannot build the seed policies for wasm32-wasip2: {e:#}");
    }
}

/// Writes `o200k_base` as the token count (u32, little-endian), each
/// token's length (one byte), then every token's bytes, in rank order:
/// 1.8 MB, against the 54 MB tiktoken's tables take in memory.
fn write_vocabulary(path: &std::path::Path) {
    // o200k_base's ordinary tokens have ranks 0 to 199,997 (its file's
    // lines); 199,999 and 200,018 are special, and tiktoken panics on a
    // rank it does not know, so the count is stated rather than probed.
    // tokens/vocabulary.rs's tests compare every rank with tiktoken's own.
    const ORDINARY: u32 = 199_998;
    let bpe = tiktoken_rs::o200k_base().expect("o200k_base loads");
    let count = ORDINARY;
    let mut lengths = Vec::with_capacity(count as usize);
    let mut bytes = Vec::new();
    for token in bpe._decode_native_and_split((0..count).collect()) {
        lengths.push(u8::try_from(token.len()).expect("a token is under 256 bytes"));
        bytes.extend_from_slice(&token);
    }
    let mut file = count.to_le_bytes().to_vec();
    file.extend_from_slice(&lengths);
    file.extend_from_slice(&bytes);
    std::fs::write(path, file).expect("the vocabulary is written");
}
