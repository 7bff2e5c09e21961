//! Reports over hand-built call records; every expected figure is worked
//! out by hand in the comments, not by the code under test.

use std::collections::BTreeMap;

use super::*;
use crate::ledger::record::{Api, CallRecord, CallRole, CallStatus};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2026-12-03 (20_792 days to 2026-12-05, see window.rs, minus 2).
const DAY0: i64 = 20_790;

fn call(request_id: &str, at_ms: i64) -> CallRecord {
    CallRecord {
        request_id: request_id.into(),
        task_id: None,
        at_ms,
        client: "alice".into(),
        labels: BTreeMap::new(),
        session: None,
        api: Api::ChatCompletions,
        role: CallRole::Answer,
        stream: false,
        requested_model: "auto".into(),
        router: Some("seed-matrix@abc".into()),
        planner: None,
        tier: Some("direct".into()),
        reasoning: None,
        served_model: Some("glm".into()),
        provider: Some("zai".into()),
        endpoint: None,
        attempts: Vec::new(),
        escalated: false,
        input_tokens: 0,
        output_tokens: 0,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cost_nanos: 0,
        baseline_nanos: 0,
        latency_ms: 0,
        ttft_ms: None,
        status: CallStatus::Ok,
        error_class: None,
        arm: None,
        shadow: None,
        route_labels: BTreeMap::new(),
        policy_view: None,
    }
}

fn team(team: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("team".to_string(), team.to_string())])
}

/// Two UTC days, 2026-12-03 and 2026-12-04:
/// - r1: a direct answer (day 0);
/// - r2: a planned request, planner on deepseek then answer on glm (day 0);
/// - r3: an answer that failed, then an escalated answer on opus (day 1);
/// - t1: a task, planner, executor and a failed reviewer (day 1);
/// - r5: a broken stream (day 1);
/// - r4: a millisecond before the window (left out).
fn fixture() -> Vec<CallRecord> {
    let at = |day: i64, hour: i64, min: i64| (DAY0 + day) * DAY + hour * HOUR + min * 60_000;
    vec![
        CallRecord {
            labels: team("web"),
            input_tokens: 1_000,
            output_tokens: 200,
            cache_read_tokens: 100,
            cost_nanos: 1_000_000,
            baseline_nanos: 20_000_000,
            latency_ms: 400,
            ..call("r1", at(0, 10, 0))
        },
        CallRecord {
            labels: team("platform"),
            role: CallRole::Planner,
            tier: Some("plan".into()),
            served_model: Some("deepseek".into()),
            input_tokens: 2_000,
            output_tokens: 300,
            cost_nanos: 500_000,
            baseline_nanos: 5_000_000,
            latency_ms: 900,
            ..call("r2", at(0, 11, 0))
        },
        CallRecord {
            labels: team("platform"),
            tier: Some("plan".into()),
            input_tokens: 3_000,
            output_tokens: 400,
            cache_write_tokens: 50,
            cost_nanos: 2_000_000,
            baseline_nanos: 30_000_000,
            latency_ms: 1_200,
            ..call("r2", at(0, 11, 1))
        },
        CallRecord {
            client: "bob".into(),
            served_model: None,
            status: CallStatus::Failed,
            input_tokens: 500,
            latency_ms: 100,
            ..call("r3", at(1, 9, 0))
        },
        CallRecord {
            client: "bob".into(),
            served_model: Some("opus".into()),
            escalated: true,
            input_tokens: 1_500,
            output_tokens: 600,
            cost_nanos: 40_000_000,
            baseline_nanos: 40_000_000,
            latency_ms: 3_000,
            ..call("r3", at(1, 9, 1))
        },
        CallRecord {
            client: "bob".into(),
            labels: team("web"),
            task_id: Some("t1".into()),
            api: Api::Tasks,
            role: CallRole::Planner,
            tier: Some("plan-and-verify".into()),
            served_model: Some("deepseek".into()),
            input_tokens: 800,
            output_tokens: 100,
            cost_nanos: 700_000,
            baseline_nanos: 7_000_000,
            latency_ms: 2_000,
            ..call("t1-a", at(1, 10, 0))
        },
        CallRecord {
            client: "bob".into(),
            labels: team("web"),
            task_id: Some("t1".into()),
            api: Api::Tasks,
            role: CallRole::Executor,
            tier: Some("plan-and-verify".into()),
            input_tokens: 900,
            output_tokens: 200,
            cost_nanos: 1_300_000,
            baseline_nanos: 13_000_000,
            ..call("t1-b", at(1, 10, 1))
        },
        CallRecord {
            client: "bob".into(),
            labels: team("web"),
            task_id: Some("t1".into()),
            api: Api::Tasks,
            role: CallRole::Reviewer,
            tier: Some("plan-and-verify".into()),
            status: CallStatus::Failed,
            ..call("t1-c", at(1, 10, 5))
        },
        CallRecord {
            labels: team("web"),
            status: CallStatus::Broken,
            input_tokens: 700,
            output_tokens: 50,
            cost_nanos: 300_000,
            baseline_nanos: 3_000_000,
            latency_ms: 800,
            ..call("r5", at(1, 23, 0))
        },
        CallRecord {
            cost_nanos: 999_000_000,
            baseline_nanos: 999_000_000,
            ..call("r4", DAY0 * DAY - 1)
        },
    ]
}

fn query(by: GroupBy) -> ReportQuery {
    ReportQuery {
        since_ms: DAY0 * DAY,
        until_ms: (DAY0 + 2) * DAY,
        by,
        client: None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn the_total_follows_the_counting_rules() {
    let r = aggregate(&fixture(), &query(GroupBy::Day));
    let t = &r.total;
    assert_eq!(t.key, "total");
    // r4 is outside: 1 + 2 + 2 + 3 + 1 calls.
    assert_eq!(t.calls, 9);
    // r1, r2 (planner + answer once), r3 (two answers once), t1 (three
    // request ids, one task), r5.
    assert_eq!(t.requests, 5);
    // Last call ok: r1, r2, r3; t1 ends with a failed review, r5 broke.
    assert_eq!(t.succeeded, 3);
    assert_eq!(t.success_rate, Some(0.6));
    assert_eq!(t.input_tokens, 10_400);
    assert_eq!(t.output_tokens, 1_850);
    assert_eq!((t.cache_read_tokens, t.cache_write_tokens), (100, 50));
    // 1 + 0.5 + 2 + 0 + 40 + 0.7 + 1.3 + 0 + 0.3 million nano-USD.
    assert_eq!(t.spent_nanos, 45_800_000);
    assert!(close(t.spent_usd, 0.0458));
    // 20 + 5 + 30 + 0 + 40 + 7 + 13 + 0 + 3 million.
    assert_eq!(t.baseline_nanos, 118_000_000);
    // 1 - 45.8 / 118.
    assert!(close(t.savings.unwrap(), 72.2 / 118.0));
    // Tiers per request: r1, r3, r5 direct; r2 plan; t1 plan-and-verify.
    let tiers: Vec<(&str, u64, f64)> = t
        .tiers
        .iter()
        .map(|(k, v)| (k.as_str(), v.requests, v.share))
        .collect();
    assert_eq!(
        tiers,
        vec![
            ("direct", 3, 0.6),
            ("plan", 1, 0.2),
            ("plan-and-verify", 1, 0.2)
        ]
    );
    assert_eq!(t.escalations, 1);
    // Answer latencies sorted: 100, 400, 800, 1200, 3000; nearest rank:
    // p50 is the 3rd (⌈2.5⌉), p95 the 5th (⌈4.75⌉).
    assert_eq!(t.p50_latency_ms, Some(800));
    assert_eq!(t.p95_latency_ms, Some(3_000));
}

#[test]
fn rows_by_day_are_in_date_order_with_a_daily_series() {
    let r = aggregate(&fixture(), &query(GroupBy::Day));
    let rows: Vec<(&str, u64, u64, i64)> = r
        .rows
        .iter()
        .map(|row| (row.key.as_str(), row.requests, row.calls, row.spent_nanos))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("2026-12-03", 2, 3, 3_500_000),
            ("2026-12-04", 3, 6, 42_300_000)
        ]
    );
    let days: Vec<(&str, i64)> = r
        .daily
        .iter()
        .map(|d| (d.date.as_str(), d.spent_nanos))
        .collect();
    assert_eq!(
        days,
        vec![("2026-12-03", 3_500_000), ("2026-12-04", 42_300_000)]
    );
    // Day 0 is 3.5 / 42.3 of the dearest day: 0.58 of 7 steps rounds to
    // level 1 (▂); day 1 is the top (█).
    assert_eq!(r.sparkline, "▂█");
    assert_eq!(r.since, "2026-12-03T00:00:00Z");
    assert_eq!(r.until, "2026-12-05T00:00:00Z");
    assert_eq!(r.window_days, 2.0);
}

#[test]
fn rows_by_model_are_dearest_first_and_may_share_a_request() {
    let r = aggregate(&fixture(), &query(GroupBy::Model));
    let rows: Vec<(&str, u64, i64)> = r
        .rows
        .iter()
        .map(|row| (row.key.as_str(), row.requests, row.spent_nanos))
        .collect();
    // opus: r3's escalation; glm: r1, r2's answer, t1's executor and
    // reviewer, r5; deepseek: two planners; (none): r3's failed call.
    assert_eq!(
        rows,
        vec![
            ("opus", 1, 40_000_000),
            ("glm", 4, 4_600_000),
            ("deepseek", 2, 1_200_000),
            ("(none)", 1, 0)
        ]
    );
    // Calls and money add up to the total; requests may not.
    assert_eq!(r.rows.iter().map(|row| row.calls).sum::<u64>(), 9);
    assert_eq!(r.rows.iter().map(|row| row.requests).sum::<u64>(), 8);
}

#[test]
fn rows_by_label_client_and_role() {
    let r = aggregate(&fixture(), &query(GroupBy::Label("team".into())));
    let rows: Vec<(&str, u64, i64)> = r
        .rows
        .iter()
        .map(|row| (row.key.as_str(), row.requests, row.spent_nanos))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("(none)", 1, 40_000_000),
            ("web", 3, 3_300_000),
            ("platform", 1, 2_500_000)
        ]
    );
    assert_eq!(r.by, "label:team");
    let r = aggregate(&fixture(), &query(GroupBy::Client));
    let rows: Vec<(&str, u64, i64)> = r
        .rows
        .iter()
        .map(|row| (row.key.as_str(), row.requests, row.spent_nanos))
        .collect();
    assert_eq!(rows, vec![("bob", 2, 42_000_000), ("alice", 3, 3_800_000)]);
    let r = aggregate(&fixture(), &query(GroupBy::Role));
    let rows: Vec<(&str, u64)> = r
        .rows
        .iter()
        .map(|row| (row.key.as_str(), row.calls))
        .collect();
    // Answers 44.3 M, planners 1.2 M, executor 1.3 M, reviewer 0.
    assert_eq!(
        rows,
        vec![
            ("answer", 5),
            ("executor", 1),
            ("planner", 2),
            ("reviewer", 1)
        ]
    );
}

#[test]
fn a_client_filter_keeps_that_clients_calls_only() {
    let mut q = query(GroupBy::Day);
    q.client = Some("alice".into());
    let r = aggregate(&fixture(), &q);
    // r1, r2, r5: 1 + 0.5 + 2 + 0.3 million.
    assert_eq!((r.total.requests, r.total.spent_nanos), (3, 3_800_000));
    assert_eq!(r.client.as_deref(), Some("alice"));
}

#[test]
fn a_planned_request_whose_planner_failed_still_counts() {
    let calls = vec![CallRecord {
        role: CallRole::Planner,
        status: CallStatus::Failed,
        tier: Some("plan".into()),
        ..call("r9", DAY0 * DAY + HOUR)
    }];
    let r = aggregate(&calls, &query(GroupBy::Day));
    assert_eq!((r.total.requests, r.total.succeeded), (1, 0));
    // No answer call: no latency to report.
    assert_eq!(r.total.p50_latency_ms, None);
}

#[test]
fn projections_reproduce_the_seeds_cost_table() {
    // One day costing $2.69 against a $100 baseline, as the seed's table.
    let calls = vec![CallRecord {
        cost_nanos: 2_690_000_000,
        baseline_nanos: 100_000_000_000,
        ..call("seed", DAY0 * DAY + HOUR)
    }];
    let q = ReportQuery {
        since_ms: DAY0 * DAY,
        until_ms: (DAY0 + 1) * DAY,
        by: GroupBy::Day,
        client: None,
    };
    let r = aggregate(&calls, &q);
    let p = &r.total.projection;
    assert!(close(p.daily_usd, 2.69));
    assert!(close(p.monthly_usd, 80.7));
    assert!(close(p.yearly_usd, 981.85));
    assert!(close(p.baseline_daily_usd, 100.0));
    assert!(close(p.baseline_monthly_usd, 3_000.0));
    assert!(close(p.baseline_yearly_usd, 36_500.0));
    assert!(close(r.total.savings.unwrap(), 0.9731));
    let text = render(&r, ReportFormat::Table);
    for line in [
        "Daily                                    $100.00           $2.69     97.3%",
        "Monthly (30 d)                         $3,000.00          $80.70     97.3%",
        "Yearly (365 d)                        $36,500.00         $981.85     97.3%",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    // The fixture's two days: $0.0458 over 2 days is $0.0229 a day.
    let r = aggregate(&fixture(), &query(GroupBy::Day));
    assert!(close(r.total.projection.daily_usd, 0.0229));
    assert!(close(r.total.projection.monthly_usd, 0.687));
    assert!(close(r.total.projection.yearly_usd, 8.3585));
    assert!(close(r.total.projection.baseline_yearly_usd, 0.059 * 365.0));
}

#[test]
fn the_table_fits_in_100_columns_and_shows_the_total_row() {
    let text = render(
        &aggregate(&fixture(), &query(GroupBy::Model)),
        ReportFormat::Table,
    );
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "{} wide: {line}", line.len());
    }
    // The group column grows to show a rollout arm or a policy's
    // `name@hash` whole, up to 120 columns in all; a longer key is cut.
    let mut calls = fixture();
    calls[0].served_model = Some("r1796527487931/candidate".into());
    calls[1].served_model = Some("a-model-name-far-longer-than-any-column-should-be".into());
    let text = render(
        &aggregate(&calls, &query(GroupBy::Model)),
        ReportFormat::Table,
    );
    for line in text.lines() {
        assert!(line.chars().count() <= 120, "{} wide: {line}", line.len());
    }
    assert!(text.contains("r1796527487931/candidate "), "{text}");
    assert!(
        text.contains("a-model-name-far-longer-than-any-…"),
        "{text}"
    );
    let total = text
        .lines()
        .find(|l| l.starts_with("total "))
        .expect("a total row");
    let cells: Vec<&str> = total.split_whitespace().collect();
    // total, 5 requests, 60% ok, 10400 in, 1850 out, 100 cached, $0.0458
    // (four decimals: the total is under $10),
    // $0.1180 baseline, 61.2% saved, 1 escalation, p50 800 ms, p95 3.0 s.
    assert_eq!(
        cells,
        vec![
            "total", "5", "60.0%", "10.4K", "1850", "100", "$0.0458", "$0.1180", "61.2%", "1",
            "800ms", "3.0s"
        ]
    );
    assert!(text.contains("tiers: direct 60.0% (3), plan 20.0% (1), plan-and-verify 20.0% (1)"));
    assert!(
        text.contains("daily cost 2026-12-03 … 2026-12-04: ▂█"),
        "{text}"
    );
}

#[test]
fn csv_quotes_per_rfc_4180_and_ends_with_the_total() {
    let mut calls = fixture();
    for c in &mut calls {
        if c.labels.get("team").is_some_and(|t| t == "web") {
            c.labels = team("web, \"core\"\nteam");
        }
    }
    let text = render(
        &aggregate(&calls, &query(GroupBy::Label("team".into()))),
        ReportFormat::Csv,
    );
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(lines[0].starts_with("row,group,requests,succeeded,success_rate,calls,"));
    // The quoted group: commas, a doubled quote and a line break inside.
    assert!(
        text.contains("\r\ngroup,\"web, \"\"core\"\"\nteam\",3,1,0.333333,5,"),
        "{text}"
    );
    // Money is exact: 45.8 million nano-USD.
    let total = lines[lines.len() - 2];
    assert!(
        total.starts_with("total,total,5,3,0.600000,9,10400,1850,100,50,0.045800000,0.118000000,0.611864,direct=3;plan=1;plan-and-verify=1,1,800,3000,"),
        "{total}"
    );
    assert_eq!(lines.last(), Some(&""), "CRLF after the last line");
    // Header, 3 groups (one spans a line break inside quotes), total.
    assert_eq!(text.matches("\r\n").count(), 5);
}

#[test]
fn json_is_the_report_struct_with_stable_names() {
    let r = aggregate(&fixture(), &query(GroupBy::Tier));
    let text = render(&r, ReportFormat::Json);
    // It reads back (floats may differ in the last bit, the exact figures
    // do not).
    let back: Report = serde_json::from_str(&text).unwrap();
    let exact = |r: &Report| -> Vec<(String, u64, i64, i64)> {
        r.rows
            .iter()
            .chain([&r.total])
            .map(|row| {
                (
                    row.key.clone(),
                    row.requests,
                    row.spent_nanos,
                    row.baseline_nanos,
                )
            })
            .collect()
    };
    assert_eq!(exact(&back), exact(&r));
    assert_eq!((back.daily.len(), back.sparkline.as_str()), (2, "▂█"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["by"], "tier");
    assert_eq!(v["total"]["spent_nanos"], 45_800_000);
    assert_eq!(v["total"]["tiers"]["plan"]["requests"], 1);
    assert_eq!(v["total"]["projection"]["baseline_daily_usd"], 0.059);
    assert_eq!(v["daily"][1]["date"], "2026-12-04");
    assert_eq!(v["rows"][0]["key"], "direct");
    assert_eq!(v["sparkline"], "▂█");
}

#[test]
fn an_empty_window_reports_zeros_not_errors() {
    let r = aggregate(&[], &query(GroupBy::Model));
    assert!(r.rows.is_empty());
    assert_eq!(
        (r.total.requests, r.total.calls, r.total.spent_nanos),
        (0, 0, 0)
    );
    assert_eq!(r.total.success_rate, None);
    assert_eq!(r.total.savings, None);
    assert_eq!(r.total.p95_latency_ms, None);
    assert_eq!(r.sparkline, "▁▁");
    let table = render(&r, ReportFormat::Table);
    assert!(table.contains("(no calls in the window)"), "{table}");
    assert!(table.contains("$0.00"), "{table}");
    let csv = render(&r, ReportFormat::Csv);
    assert_eq!(csv.matches("\r\n").count(), 2, "{csv}");
    assert!(csv.contains("\r\ntotal,total,0,0,,0,"), "{csv}");
}

#[test]
fn a_long_window_series_starts_at_the_first_record() {
    // Since 1970: the series does not list 20,000 empty days.
    let q = ReportQuery {
        since_ms: 0,
        until_ms: (DAY0 + 2) * DAY,
        by: GroupBy::Day,
        client: None,
    };
    let r = aggregate(&fixture(), &q);
    // r4 is at the last millisecond of 2026-12-02.
    assert_eq!(r.daily.len(), 3);
    assert_eq!(r.daily[0].date, "2026-12-02");
    assert_eq!(r.sparkline.chars().count(), 3);
}

#[test]
fn feedback_is_shown_per_arm_and_in_the_total() {
    use crate::ledger::record::{FeedbackRecord, FeedbackTarget};
    let t = DAY0 * DAY + HOUR;
    let mut a = call("pm-a", t);
    a.arm = Some("r1/stable".into());
    let mut b = call("pm-b", t);
    b.arm = Some("r1/candidate".into());
    b.session = Some("s-1".into());
    let mut c = call("pm-c", t);
    c.arm = Some("r1/candidate".into());
    c.task_id = Some("task-1".into());
    let calls = vec![a, b, c];
    let entry = |target, score| FeedbackRecord {
        target,
        client: "alice".into(),
        score,
        labels: BTreeMap::new(),
        at_ms: t,
    };
    let feedback = vec![
        entry(FeedbackTarget::Request("pm-a".into()), 1.0),
        entry(FeedbackTarget::Request("pm-a".into()), 0.8),
        // The session's and the task's calls are on the candidate.
        entry(FeedbackTarget::Session("s-1".into()), 0.2),
        entry(FeedbackTarget::Task("task-1".into()), 0.4),
        // No call of the window: only in the total.
        entry(FeedbackTarget::Request("pm-gone".into()), 0.0),
    ];
    let q = query(GroupBy::Arm);
    let mut r = aggregate(&calls, &q);
    add_feedback(&mut r, &calls, &feedback, &q.by);
    let row = |key: &str| r.rows.iter().find(|row| row.key == key).unwrap();
    // Stable: (1.0 + 0.8) / 2; candidate: (0.2 + 0.4) / 2; total: 2.4 / 5.
    let close =
        |f: &FeedbackScore, count: u64, mean: f64| f.count == count && (f.mean - mean).abs() < 1e-9;
    assert!(close(row("r1/stable").feedback.as_ref().unwrap(), 2, 0.9));
    assert!(close(
        row("r1/candidate").feedback.as_ref().unwrap(),
        2,
        0.3
    ));
    assert!(close(r.total.feedback.as_ref().unwrap(), 5, 0.48));
    let table = render(&r, ReportFormat::Table);
    assert!(table.contains("feedback: 0.48 mean of 5 scores"), "{table}");
    let csv = render(&r, ReportFormat::Csv);
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with("feedback_count,feedback_mean")
    );
}
