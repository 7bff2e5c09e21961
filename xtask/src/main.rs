//! `cargo xtask <command>`: project automation.
//!
//! - `policies [OUT_DIR]`: build every policy (Rust, JavaScript, Python) into
//!   `target/policies/<name>.wasm`.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("policies") => {
            let out = args
                .get(1)
                .map(PathBuf::from)
                .unwrap_or_else(|| xtask::workspace_root().join("target/policies"));
            for path in xtask::build_all(&out)? {
                println!("{}", path.display());
            }
            Ok(())
        }
        _ => {
            eprintln!("usage: cargo xtask policies [OUT_DIR]");
            std::process::exit(2);
        }
    }
}
