//! The benchmark's table: one row per run, its text and JSON forms, the
//! checks across rows, and what machine it ran on.

use std::process::Command;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::*;

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Row {
    pub(super) target: Target,
    pub(super) mode: Mode,
    pub(super) concurrency: u32,
    /// Successful (2xx) answers per second.
    pub(super) requests_per_sec: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    /// Time to the first byte of the answer, median.
    pub(super) ttfb_p50_ms: f64,
    /// Successful answers in the measured run.
    pub(super) ok: u64,
    /// Non-2xx answers plus transport errors.
    pub(super) errors: u64,
    pub(super) error_kinds: Value,
    /// CPU time (user + system) of the measured process per successful
    /// answer; for `direct` that process is the upstream itself.
    pub(super) cpu_us_per_req: f64,
    /// The upstream's CPU per answer in the same run (both upstreams for
    /// `pointsman-faulty`).
    pub(super) upstream_cpu_us_per_req: f64,
    /// oha's CPU per answer in the same run.
    pub(super) loadgen_cpu_us_per_req: f64,
    /// VmHWM of the measured process at the end of the run.
    pub(super) peak_rss_mib: f64,
    /// Spawn to the first 200 on a probe request.
    pub(super) startup_ms: f64,
    /// From the probe: the route's tier and model (Pointsman only).
    pub(super) tier: Option<String>,
    pub(super) model: Option<String>,
    /// `pointsman-faulty`: requests the failing endpoint received during
    /// the measured run, and how many of them it failed (each one an
    /// attempt the gateway had to make again, on a retry or a fallback).
    pub(super) faulty_endpoint_requests: Option<u64>,
    pub(super) failed_attempts: Option<u64>,
    /// The failing endpoint's share of all upstream attempts (successful
    /// answers plus failed attempts): about half with round-robin, less
    /// while its breaker is open.
    pub(super) faulty_endpoint_share: Option<f64>,
    pub(super) wall_s: f64,
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(super) fn header_line() -> String {
    format!(
        "{:<17} {:<6} {:>4} {:>9} {:>8} {:>8} {:>6} {:>7} {:>10} {:>8} {:>9}",
        "target",
        "mode",
        "conc",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "retries",
        "CPU µs/req",
        "peak MiB",
        "start ms"
    )
}

pub(super) fn format_row(r: &Row) -> String {
    let retries = r.failed_attempts.map_or("-".to_string(), |n| n.to_string());
    format!(
        "{:<17} {:<6} {:>4} {:>9.0} {:>8.3} {:>8.3} {:>6} {:>7} {:>10.1} {:>8.1} {:>9.1}",
        r.target.name(),
        r.mode.name(),
        r.concurrency,
        r.requests_per_sec,
        r.p50_ms,
        r.p99_ms,
        r.errors,
        retries,
        r.cpu_us_per_req,
        r.peak_rss_mib,
        r.startup_ms
    )
}

/// The targets, checked on this run's Pointsman rows against the
/// direct rows; streaming gets twice the slack. With one endpoint failing,
/// the client must still see no errors.
pub(super) fn checks(rows: &[Row], fault_every: u64) -> Vec<Value> {
    let find = |t: Target, m: Mode, c: u32| {
        rows.iter()
            .find(|r| r.target == t && r.mode == m && r.concurrency == c)
    };
    let mut out = Vec::new();
    let mut push = |pass: bool, text: String| out.push(json!({"pass": pass, "text": text}));
    for mode in [Mode::Plain, Mode::Stream] {
        let sy: Vec<&Row> = rows
            .iter()
            .filter(|r| r.target == Target::Pointsman && r.mode == mode)
            .collect();
        if sy.is_empty() {
            continue;
        }
        let k = if mode == Mode::Plain { 1.0 } else { 2.0 };
        let m = mode.name();
        let worst_cpu = sy.iter().map(|r| r.cpu_us_per_req).fold(0.0, f64::max);
        // Each row beside direct's at the same concurrency: at c=1 every
        // process pays for being woken, direct included.
        let per_row: Vec<String> = sy
            .iter()
            .map(|r| match find(Target::Direct, mode, r.concurrency) {
                Some(d) => format!(
                    "c={} {:.1} (direct {:.1})",
                    r.concurrency, r.cpu_us_per_req, d.cpu_us_per_req
                ),
                None => format!("c={} {:.1}", r.concurrency, r.cpu_us_per_req),
            })
            .collect();
        push(
            worst_cpu < 50.0 * k,
            format!(
                "{m}: gateway CPU per request < {:.0} µs (worst row {worst_cpu:.1} µs; {})",
                50.0 * k,
                per_row.join(", ")
            ),
        );
        if let (Some(s), Some(d)) = (
            find(Target::Pointsman, mode, 1),
            find(Target::Direct, mode, 1),
        ) {
            let added = s.p50_ms - d.p50_ms;
            push(
                added < 0.2 * k,
                format!(
                    "{m}: added p50 latency at c=1 < {:.1} ms ({added:.3} ms: {:.3} vs {:.3} direct)",
                    0.2 * k,
                    s.p50_ms,
                    d.p50_ms
                ),
            );
            push(
                s.p50_ms < 20.0,
                format!(
                    "{m}: no Nagle stall at c=1 (p50 {:.3} ms, a 40 ms p50 would mean Nagle)",
                    s.p50_ms
                ),
            );
        }
        if let (Some(s), Some(d)) = (
            find(Target::Pointsman, mode, 64),
            find(Target::Direct, mode, 64),
        ) {
            let share = s.requests_per_sec / d.requests_per_sec;
            push(
                share >= 0.15 / k,
                format!(
                    "{m}: req/s at c=64 >= {:.1}% of direct ({:.1}%: {:.0} vs {:.0})",
                    15.0 / k,
                    share * 100.0,
                    s.requests_per_sec,
                    d.requests_per_sec
                ),
            );
        }
        let errors: u64 = sy.iter().map(|r| r.errors).sum();
        push(errors == 0, format!("{m}: no errors ({errors})"));
        let rss = sy.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
        push(
            rss < 100.0,
            format!("{m}: peak RSS under load < 100 MB ({rss:.1} MiB)"),
        );
    }
    for mode in [Mode::Plain, Mode::Stream] {
        let faulty: Vec<&Row> = rows
            .iter()
            .filter(|r| r.target == Target::Faulty && r.mode == mode)
            .collect();
        if faulty.is_empty() {
            continue;
        }
        let errors: u64 = faulty.iter().map(|r| r.errors).sum();
        let failed: u64 = faulty.iter().filter_map(|r| r.failed_attempts).sum();
        let sent: u64 = faulty
            .iter()
            .filter_map(|r| r.faulty_endpoint_requests)
            .sum();
        // Without failures injected, the rows would prove nothing.
        push(
            errors == 0 && failed > 0,
            format!(
                "{}: no errors with one of glm-4.7's two endpoints failing 1 in {fault_every} \
                 ({errors} errors; {failed} of the {sent} requests it got failed, every one \
                 absorbed by a retry or fallback)",
                mode.name()
            ),
        );
    }
    out
}

pub(super) fn machine(o: &Options) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, v)| v.trim().to_string());
    let text = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let dirty = text(Command::new("git").arg("-C").arg(repo_dir()).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .map(|s| !s.is_empty());
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": cpu_model,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "pointsman": text(Command::new(&o.pointsman).arg("--version")),
        "oha": text(Command::new(&o.oha).arg("--version")),
        "git_commit": text(Command::new("git").arg("-C").arg(repo_dir()).args(["rev-parse", "--short", "HEAD"])),
        "git_dirty": dirty,
    })
}
