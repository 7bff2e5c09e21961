//! Offline commands: router policies run over recorded or labelled requests
//! with the daemon's feature extraction and sandboxed engine, and no
//! upstream call.
//!
//! - [`input`]: JSON-lines files, plain or gzip, read line by line.
//! - [`routing`]: routing many requests on all cores, failures counted.
//! - [`eval`]: `pointsman eval`, quality and cost on labelled prompts.
//! - [`sweep`]: a label swept over a range: the quality–cost curve.
//! - [`workload`]: the workload format `pointsman simulate` reads.
//! - [`simulate`]: `pointsman simulate`, what policies cost on a workload.

pub mod eval;
pub mod input;
pub mod routing;
pub mod simulate;
pub mod sweep;
pub mod workload;

/// How a command prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned text for a terminal.
    Table,
    /// One JSON document.
    Json,
    /// Comma-separated values with a header row.
    Csv,
}

/// A CSV field, quoted when it needs to be.
pub(crate) fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// `share` (0 to 1) as a percentage with one decimal.
pub(crate) fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}
