//! Usage reports from the ledger's call records: `pointsman report` and
//! `GET /v1/usage` (issue #17), and the workload export for `pointsman
//! simulate` (#21).
//!
//! The path of a report, every step but the first pure:
//! 1. the store reads the window's calls (`Ledger::calls` with the query's
//!    `since_ms`, `until_ms` and `client`);
//! 2. [`ReportQuery::from_args`] / [`ReportQuery::from_params`] turn flags
//!    or a query string into a window and a grouping;
//! 3. [`aggregate`] sums the calls into a [`Report`] (the counting rules
//!    are in [`aggregate`]'s module docs);
//! 4. [`render`] prints it as a table, JSON or CSV; `/v1/usage` returns the
//!    [`Report`] as JSON (the same document as `--format json`).
//!
//! - [`window`]: `--since` / `--until` forms and UTC dates.
//! - [`query`]: the flags, the query string, the grouping.
//! - [`aggregate`]: rows, total, per-day series, projections.
//! - [`format`]: table, JSON, CSV.
//! - [`export`]: policy views as a `simulate` workload.

pub mod aggregate;
pub mod export;
pub mod format;
pub mod query;
pub mod window;

pub use aggregate::{
    DayPoint, FeedbackScore, Projection, Report, Row, TierShare, add_feedback, aggregate,
};
pub use export::export_workload;
pub use format::render;
pub use query::{GroupBy, QueryError, ReportArgs, ReportFormat, ReportQuery, owner_name};

#[cfg(test)]
mod tests;
