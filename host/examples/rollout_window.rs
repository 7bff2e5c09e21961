//! What a rollout evaluation costs on a busy ledger: the CPU and time of
//! measuring a window of N calls (half per arm) on a SQLite ledger, the
//! first time (the whole window read) and then as the evaluations go (the
//! calls recorded since read), with `--reread` showing what re-reading the
//! whole window at every evaluation cost (a fresh copy each time).
//!
//!     cargo run --release -p pointsman --example rollout_window -- 200000
//!
//! Each later evaluation follows 150 new calls (10 requests a second for
//! the 15 s between evaluations).

mod common;

use std::time::Instant;

use anyhow::Context;
use pointsman::ledger::Ledger;
use pointsman::ledger::record::CallRecord;
use pointsman::policy::rollout::evaluate::Mirror;
use pointsman::policy::rollout::{Defaults, Pin, Rollout, Spec};
use serde_json::json;

fn call(id: usize, at_ms: i64) -> CallRecord {
    let arm = if id.is_multiple_of(2) {
        "stable"
    } else {
        "candidate"
    };
    serde_json::from_value(json!({
        "request_id": format!("pm-{id}"), "at_ms": at_ms, "client": "key:bench", "labels": {},
        "api": "chat-completions", "role": "answer", "stream": false, "requested_model": "auto",
        "tier": "direct", "served_model": "glm-4.7",
        "attempts": [{"model": "glm-4.7", "provider": "p", "outcome": "ok"}],
        "escalated": false, "input_tokens": 900, "output_tokens": 300, "cache_read_tokens": 0,
        "cache_write_tokens": 0, "cost_nanos": 1_500_000, "baseline_nanos": 12_000_000,
        "latency_ms": 80, "status": "ok", "arm": format!("r1/{arm}"), "route_labels": {},
    }))
    .expect("a call record")
}

/// This process's resident memory, MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn cpu() -> f64 {
    common::cpu_seconds("/proc/self/stat")
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut calls = 200_000usize;
    let mut reread = false;
    for arg in args.by_ref() {
        match arg.as_str() {
            "--reread" => reread = true,
            n => calls = n.parse().context("the number of calls")?,
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite:{}", dir.path().join("ledger.db").display());
        let ledger = Ledger::open(&url, &Default::default()).await?;
        let now = pointsman::ledger::store::system_now_ms();
        let span = 5 * 3_600_000i64;
        let record = |from: usize, to: usize, at: i64| {
            let ledger = ledger.clone();
            async move {
                let mut pending = Vec::new();
                for i in from..to {
                    pending.push(ledger.record(call(i, at - ((to - i) as i64 * span) / to.max(1) as i64), None));
                    if pending.len() == 512 {
                        for r in futures::future::join_all(pending.drain(..)).await {
                            r?;
                        }
                    }
                }
                for r in futures::future::join_all(pending).await {
                    r?;
                }
                anyhow::Ok(())
            }
        };
        record(0, calls, now).await?;
        println!("{calls} calls recorded; RSS {:.1} MiB", rss_mib());
        let spec: Spec = serde_json::from_value(json!({"world": "router", "candidate": "c"}))?;
        let pin = |name: &str, h: &str| Pin {
            name: name.into(),
            hash: h.repeat(64),
        };
        let mut rollout = Rollout::new(
            &spec,
            pin("s", "a"),
            pin("c", "b"),
            &Defaults::default(),
            "bench",
            now - 6 * 3_600_000,
        )?;
        rollout.id = "r1".into();
        let mut mirror = Mirror::default();
        let mut next = calls;
        for evaluation in 0..6 {
            if evaluation > 0 {
                record(next, next + 150, now).await?;
                next += 150;
            }
            if reread {
                mirror = Mirror::default();
            }
            let (wall, cpu0) = (Instant::now(), cpu());
            let window = mirror
                .measure(&ledger, &rollout, 6 * 3_600_000, calls + 10_000, now + 1)
                .await?;
            println!(
                "evaluation {evaluation}: {:>7} calls read, {:>7} judged, {:>8.1} ms, {:>6.3} s CPU, RSS {:>6.1} MiB",
                window.read,
                window.stable.requests + window.candidate.requests,
                wall.elapsed().as_secs_f64() * 1e3,
                cpu() - cpu0,
                rss_mib()
            );
        }
        anyhow::Ok(())
    })
}
