//! A report as text: an aligned table for a terminal (100 columns), the
//! JSON document `GET /v1/usage` returns, or RFC 4180 CSV.

use super::aggregate::{Report, Row};
use super::query::ReportFormat;
use crate::ledger::record::Nanos;

/// Most days the table's sparkline shows (the latest ones).
const TABLE_SPARK_DAYS: usize = 70;
/// Width of the table's group column; longer names are cut with `…`.
const KEY_WIDTH: usize = 14;

/// The widest the group column grows to fit its keys (a policy's
/// `name@hash`, a rollout arm) while the table stays within 120
/// columns; longer keys are cut.
const MAX_KEY_WIDTH: usize = 34;

/// The report in `format`, ending with a newline.
pub fn render(report: &Report, format: ReportFormat) -> String {
    match format {
        ReportFormat::Table => table(report),
        ReportFormat::Json => json(report),
        ReportFormat::Csv => csv(report),
    }
}

/// The report as pretty-printed JSON (the [`Report`] struct as serde writes
/// it).
pub fn json(report: &Report) -> String {
    let mut text = serde_json::to_string_pretty(report).expect("a report serializes");
    text.push('\n');
    text
}

/// The report as an aligned table: a header line, a row per group, the
/// total, the tiers' shares, the sparkline and the projections.
pub fn table(r: &Report) -> String {
    let mut out = format!(
        "usage {} … {} ({} days), by {}{}\n\n",
        r.since,
        r.until,
        trim_float(r.window_days),
        r.by,
        r.client
            .as_ref()
            .map_or(String::new(), |c| format!(", client {c}"))
    );
    let decimals = decimals_for(r.total.spent_usd.max(r.total.baseline_usd));
    let key_width = r
        .rows
        .iter()
        .map(|row| row.key.chars().count())
        .chain([r.by.chars().count()])
        .max()
        .unwrap_or(0)
        .clamp(KEY_WIDTH, MAX_KEY_WIDTH);
    out.push_str(&table_line(
        &[
            r.by.clone(),
            "reqs".into(),
            "ok".into(),
            "in tok".into(),
            "out tok".into(),
            "cached".into(),
            "spent".into(),
            "baseline".into(),
            "saved".into(),
            "esc".into(),
            "p50".into(),
            "p95".into(),
        ],
        key_width,
    ));
    for row in &r.rows {
        out.push_str(&table_line(&row_cells(row, decimals, key_width), key_width));
    }
    if r.rows.is_empty() {
        out.push_str("(no calls in the window)\n");
    }
    out.push_str(&format!("{}\n", "-".repeat(100 - KEY_WIDTH + key_width)));
    out.push_str(&table_line(
        &row_cells(&r.total, decimals, key_width),
        key_width,
    ));
    let tiers: Vec<String> = r
        .total
        .tiers
        .iter()
        .map(|(tier, t)| format!("{tier} {} ({})", percent(Some(t.share)), t.requests))
        .collect();
    if !tiers.is_empty() {
        out.push_str(&format!("\ntiers: {}\n", tiers.join(", ")));
    }
    if let Some(total) = &r.total.feedback {
        let rows: Vec<String> = r
            .rows
            .iter()
            .filter_map(|row| {
                let f = row.feedback.as_ref()?;
                Some(format!("{} {:.2} ({})", row.key, f.mean, f.count))
            })
            .collect();
        out.push_str(&format!(
            "feedback: {:.2} mean of {} scores{}{}\n",
            total.mean,
            total.count,
            if rows.is_empty() { "" } else { "; " },
            rows.join(", ")
        ));
    }
    if let Some(last) = r.daily.last() {
        // `sparkline` has one character per entry of `daily`.
        let skip = r.daily.len().saturating_sub(TABLE_SPARK_DAYS);
        let shown: String = r.sparkline.chars().skip(skip).collect();
        out.push_str(&format!(
            "daily cost {} … {}: {shown}\n",
            r.daily[skip].date, last.date
        ));
    }
    let p = &r.total.projection;
    let projection_decimals = decimals_for(p.yearly_usd.max(p.baseline_yearly_usd));
    out.push_str(&format!(
        "\n{:<34}{:>14}  {:>14}  {:>8}\n",
        format!("at the window's rate ({} days)", trim_float(r.window_days)),
        "baseline",
        "spent",
        "savings"
    ));
    for (name, base, spent) in [
        ("Daily", p.baseline_daily_usd, p.daily_usd),
        ("Monthly (30 d)", p.baseline_monthly_usd, p.monthly_usd),
        ("Yearly (365 d)", p.baseline_yearly_usd, p.yearly_usd),
    ] {
        out.push_str(&format!(
            "{name:<34}{:>14}  {:>14}  {:>8}\n",
            money(base, projection_decimals),
            money(spent, projection_decimals),
            percent(r.total.savings)
        ));
    }
    out
}

fn row_cells(row: &Row, decimals: usize, key_width: usize) -> Vec<String> {
    let latency = |ms: Option<u32>| ms.map_or("-".into(), latency);
    vec![
        cut(&row.key, key_width),
        row.requests.to_string(),
        percent(row.success_rate),
        tokens(row.input_tokens),
        tokens(row.output_tokens),
        tokens(row.cache_read_tokens),
        money(row.spent_usd, decimals),
        money(row.baseline_usd, decimals),
        percent(row.savings),
        row.escalations.to_string(),
        latency(row.p50_latency_ms),
        latency(row.p95_latency_ms),
    ]
}

/// Column widths of the table: 100 characters with the separating spaces.
const WIDTHS: [usize; 12] = [KEY_WIDTH, 6, 6, 7, 7, 7, 10, 10, 6, 4, 6, 6];

fn table_line(cells: &[String], key_width: usize) -> String {
    let mut line = String::new();
    let widths = std::iter::once(key_width).chain(WIDTHS.into_iter().skip(1));
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i == 0 {
            line.push_str(&format!("{cell:<width$}"));
        } else {
            line.push_str(&format!(" {cell:>width$}"));
        }
    }
    line.push('\n');
    line
}

/// `text` cut to `width` characters, the last one `…` when cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(width - 1).collect();
        cut.push('…');
        cut
    }
}

/// Decimals that show amounts up to `largest` USD readably: cents from
/// $10 (and for nothing at all), else hundredths of a cent, else millionths (demo traffic costs
/// fractions of a cent). One choice per column set keeps them aligned.
pub fn decimals_for(largest: f64) -> usize {
    if largest >= 10.0 || largest == 0.0 {
        2
    } else if largest >= 0.01 {
        4
    } else {
        6
    }
}

/// USD with `decimals` decimals and thousands separators.
pub fn money(v: f64, decimals: usize) -> String {
    let sign = if v < 0.0 { "-" } else { "" };
    let scale = 10u128.pow(decimals as u32);
    let units = (v.abs() * scale as f64).round() as u128;
    let whole = (units / scale).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}${grouped}.{:0decimals$}", units % scale)
}

/// A share (0 to 1) as a percentage with one decimal; `-` for none.
pub fn percent(share: Option<f64>) -> String {
    share.map_or("-".into(), |s| format!("{:.1}%", s * 100.0))
}

fn tokens(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => format!("{:.1}K", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}M", n as f64 / 1e6),
        _ => format!("{:.2}B", n as f64 / 1e9),
    }
}

fn latency(ms: u32) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1e3)
    }
}

/// A float with at most two decimals and no trailing zeros.
fn trim_float(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 25] = [
    "row",
    "group",
    "requests",
    "succeeded",
    "success_rate",
    "calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "spent_usd",
    "baseline_usd",
    "savings",
    "tiers",
    "escalations",
    "p50_latency_ms",
    "p95_latency_ms",
    "daily_usd",
    "monthly_usd",
    "yearly_usd",
    "baseline_daily_usd",
    "baseline_monthly_usd",
    "baseline_yearly_usd",
    "feedback_count",
    "feedback_mean",
];

/// The report as RFC 4180 CSV: CRLF line ends, a header, a line per group
/// (`row` = `group`) and the total (`row` = `total`). Money is exact
/// (nano-USD written as USD with 9 decimals); an empty field is a value
/// that does not exist (no requests, no baseline, no answer calls); `tiers`
/// is `tier=requests` pairs joined by `;`.
pub fn csv(r: &Report) -> String {
    let mut out = String::new();
    out.push_str(&CSV_HEADER.join(","));
    out.push_str("\r\n");
    for row in &r.rows {
        out.push_str(&csv_line("group", row));
    }
    out.push_str(&csv_line("total", &r.total));
    out
}

fn csv_line(kind: &str, row: &Row) -> String {
    let float = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    let p = &row.projection;
    let tiers: Vec<String> = row
        .tiers
        .iter()
        .map(|(tier, t)| format!("{tier}={}", t.requests))
        .collect();
    let fields = [
        kind.to_string(),
        row.key.clone(),
        row.requests.to_string(),
        row.succeeded.to_string(),
        float(row.success_rate),
        row.calls.to_string(),
        row.input_tokens.to_string(),
        row.output_tokens.to_string(),
        row.cache_read_tokens.to_string(),
        row.cache_write_tokens.to_string(),
        exact_usd(row.spent_nanos),
        exact_usd(row.baseline_nanos),
        float(row.savings),
        tiers.join(";"),
        row.escalations.to_string(),
        row.p50_latency_ms.map_or(String::new(), |v| v.to_string()),
        row.p95_latency_ms.map_or(String::new(), |v| v.to_string()),
        float(Some(p.daily_usd)),
        float(Some(p.monthly_usd)),
        float(Some(p.yearly_usd)),
        float(Some(p.baseline_daily_usd)),
        float(Some(p.baseline_monthly_usd)),
        float(Some(p.baseline_yearly_usd)),
        row.feedback
            .as_ref()
            .map_or(String::new(), |f| f.count.to_string()),
        float(row.feedback.as_ref().map(|f| f.mean)),
    ];
    let mut line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// nano-USD as an exact decimal USD amount.
pub fn exact_usd(nanos: Nanos) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    format!("{sign}{}.{:09}", n / 1_000_000_000, n % 1_000_000_000)
}

/// A CSV field, RFC 4180: quoted when it holds a comma, a quote, CR or LF,
/// with quotes doubled.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
