//! What token counting costs in memory and time: this crate's compact
//! `o200k_base` against `tiktoken_rs`'s own tables, on the lines of a text
//! file (the README by default), each counted without the cache.
//!
//!     cargo run --release -p pointsman --example tokenizer [-- FILE]
//!
//! Resident memory is read from /proc after each tokenizer is built; the
//! daemon's allocator is not used here, so the numbers are the system
//! allocator's.

use std::time::Instant;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "README.md".into());
    let text = std::fs::read_to_string(&path).expect("a readable text file");
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();

    let before = rss_kib();
    pointsman::tokens::warm_up();
    let ours = rss_kib();
    let tiktoken = tiktoken_rs::o200k_base_singleton();
    let theirs = rss_kib();
    println!(
        "resident memory: compact {} KiB, tiktoken {} KiB",
        ours - before,
        theirs - ours
    );

    for round in 1..=3 {
        let started = Instant::now();
        let a: u64 = lines
            .iter()
            .map(|l| u64::from(pointsman::tokens::count_uncached(l)))
            .sum();
        let ours = started.elapsed();
        let started = Instant::now();
        let b: u64 = lines
            .iter()
            .map(|l| tiktoken.encode_ordinary(l).len() as u64)
            .sum();
        let theirs = started.elapsed();
        let bytes: usize = lines.iter().map(|l| l.len()).sum();
        println!(
            "round {round}: {} lines, {bytes} bytes; compact {a} tokens in {:.2} ms ({:.0} ns/byte), tiktoken {b} tokens in {:.2} ms ({:.0} ns/byte)",
            lines.len(),
            ours.as_secs_f64() * 1e3,
            ours.as_nanos() as f64 / bytes as f64,
            theirs.as_secs_f64() * 1e3,
            theirs.as_nanos() as f64 / bytes as f64,
        );
    }
}
