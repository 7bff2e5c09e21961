//! What the measuring examples share.

use pointsman::ledger::record::CallRecord;
use serde_json::json;

/// CPU time, in seconds, from a `/proc/.../stat` file: `/proc/self/stat`
/// for the process, `/proc/thread-self/stat` for the calling thread.
pub fn cpu_seconds(stat: &str) -> f64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// As many [`call_record`]s as the program's first argument says
/// (`default` without one).
#[allow(dead_code)] // not every example records calls
pub fn call_records_from_args(default: usize) -> anyhow::Result<Vec<CallRecord>> {
    let count = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(default);
    Ok((0..count).map(call_record).collect())
}

/// A realistic Claude Code call record, the `i`th of a run: eight
/// clients, sessions of eight calls, a shadow arm.
#[allow(dead_code)] // not every example records calls
pub fn call_record(i: usize) -> CallRecord {
    serde_json::from_value(json!({
        "request_id": format!("pm-19a2b3c4d5e6-{i:x}"), "at_ms": 1_765_000_000_000i64 + i as i64,
        "client": format!("key:team-{}", i % 8), "labels": {"team": "platform", "asked_model": "claude-opus-4-5"},
        "session": format!("sess-{}", i / 8), "api": "messages", "role": "answer", "stream": true,
        "requested_model": "auto", "router": "seed-matrix@3f2a9c", "tier": "direct",
        "reasoning": "low: change:fix, change:typo; 24 tools offered, not counted as complexity",
        "served_model": "glm-4.7", "provider": "zhipu", "endpoint": "zhipu/glm-4.7",
        "attempts": [{"model": "glm-4.7", "provider": "zhipu", "outcome": "ok"}],
        "escalated": false, "input_tokens": 18_000, "output_tokens": 600, "cache_read_tokens": 12_000,
        "cache_write_tokens": 0, "cost_nanos": 1_500_000, "baseline_nanos": 12_000_000,
        "latency_ms": 2400, "ttft_ms": 450, "status": "ok", "arm": "r1/candidate",
        "route_labels": {"task_tier": "direct"},
    }))
    .expect("a call record")
}
