//! `pointsman-bench`: the gateway load benchmark.
//!
//! - `pointsman-bench upstream [--listen ADDR] [--threads N] [--fail-every N
//!   [--fail-status S]]` runs the fast local OpenAI-compatible upstream, or
//!   with `--fail-every` a failing one (see `upstream.rs`).
//! - `pointsman-bench config --port P --upstream ADDR` prints the
//!   benchmark's Pointsman config (for `bench/profile`).
//! - `pointsman-bench [OPTIONS]` runs the benchmark: the upstream, then for
//!   each target (the upstream directly, Pointsman, Pointsman with one of
//!   glm-4.7's two endpoints failing, optionally LiteLLM), each
//!   mode (plain, stream) and each concurrency, a fixed-duration `oha` run;
//!   prints one table and writes it as JSON. `--help` lists the options.
//! - `pointsman-bench soak [OPTIONS]` runs the soak test (see `soak.rs`):
//!   steady mixed load, a failing endpoint and policy hot-swaps for an
//!   hour, with RSS, open fds and live tasks sampled and their slopes
//!   checked.

mod proc;
mod run;
mod soak;
mod upstream;

/// Any error.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// A result with any error.
pub type Result<T> = std::result::Result<T, Error>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("upstream") => upstream::main(&args[1..]),
        Some("config") => run::print_config(&args[1..]),
        Some("soak") => soak::main(&args[1..]),
        _ => run::main(&args),
    };
    if let Err(e) = result {
        eprintln!("pointsman-bench: error: {e}");
        std::process::exit(1);
    }
}
