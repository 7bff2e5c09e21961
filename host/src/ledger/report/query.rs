//! What a report is asked for: the CLI's `pointsman report` flags and the
//! query string of `GET /v1/usage`, both reduced to one [`ReportQuery`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::window::{self, Edge, TimeSpec, TimeSpecError};

/// How calls are grouped into rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// The UTC day a call started.
    Day,
    /// The catalog model that served the call.
    Model,
    /// The route's tier.
    Tier,
    /// The client's name.
    Client,
    /// The router that decided, `name@hash`.
    Policy,
    /// The API the call came in on.
    Api,
    /// What the call was for (answer, planner, executor, reviewer).
    Role,
    /// The rollout arm.
    Arm,
    /// The value of one request label.
    Label(String),
}

/// What `--by` accepts, for error messages.
pub const GROUP_BY_ACCEPTED: &str = "day, model, tier, client, policy, api, role, arm or label:KEY";

impl GroupBy {
    /// The name as `--by` takes it (`label:team` for a label).
    pub fn name(&self) -> String {
        match self {
            GroupBy::Day => "day".into(),
            GroupBy::Model => "model".into(),
            GroupBy::Tier => "tier".into(),
            GroupBy::Client => "client".into(),
            GroupBy::Policy => "policy".into(),
            GroupBy::Api => "api".into(),
            GroupBy::Role => "role".into(),
            GroupBy::Arm => "arm".into(),
            GroupBy::Label(key) => format!("label:{key}"),
        }
    }
}

/// A `--by` value that names no grouping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupByError(pub String);

impl fmt::Display for GroupByError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a grouping; accepted: {GROUP_BY_ACCEPTED}",
            self.0
        )
    }
}

impl std::error::Error for GroupByError {}

impl FromStr for GroupBy {
    type Err = GroupByError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "day" => GroupBy::Day,
            "model" => GroupBy::Model,
            "tier" => GroupBy::Tier,
            "client" => GroupBy::Client,
            "policy" => GroupBy::Policy,
            "api" => GroupBy::Api,
            "role" => GroupBy::Role,
            "arm" => GroupBy::Arm,
            other => match other.strip_prefix("label:") {
                Some(key) if !key.trim().is_empty() => GroupBy::Label(key.trim().to_string()),
                _ => return Err(GroupByError(s.to_string())),
            },
        })
    }
}

/// How `pointsman report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns for a terminal, with the sparkline and projections.
    Table,
    /// The JSON document `GET /v1/usage` returns.
    Json,
    /// RFC 4180 comma-separated values: a header, the rows, the total.
    Csv,
}

/// The flags of `pointsman report` (flattened into its subcommand).
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The ledger to read, `sqlite:PATH` or `postgres://…` (default: the
    /// config's `[ledger] url`, else the default SQLite file).
    #[arg(long)]
    pub ledger: Option<String>,
    /// Start of the window: a span back from now (`30m`, `24h`, `7d`), a
    /// UTC date (`2026-12-05`) or date and time (`2026-12-05T13:00Z`).
    #[arg(long, default_value = "24h")]
    pub since: TimeSpec,
    /// End of the window, same forms (a date means the end of that day);
    /// default: now.
    #[arg(long, default_value = "now")]
    pub until: TimeSpec,
    /// Rows per: day, model, tier, client, policy, api, role, arm or
    /// label:KEY.
    #[arg(long, default_value = "day")]
    pub by: GroupBy,
    /// Only this client's calls.
    #[arg(long)]
    pub client: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReportFormat,
    /// Also write the window's requests kept with `[ledger] keep_requests =
    /// "policy-view"` as a workload for `pointsman simulate` (JSON lines).
    #[arg(long, value_name = "FILE")]
    pub export_workload: Option<PathBuf>,
}

/// A report's window, grouping and client filter, resolved to instants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    /// First instant, Unix ms (inclusive).
    pub since_ms: i64,
    /// End, Unix ms (exclusive).
    pub until_ms: i64,
    /// How calls are grouped.
    pub by: GroupBy,
    /// Only this client's calls; None: every client. `/v1/usage` sets it
    /// to the caller unless the caller holds the admin key.
    pub client: Option<String>,
}

/// A query that cannot be answered, with what was wrong and what is
/// accepted (the message is meant for the user as it is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `since` or `until` is not a time.
    #[error("{name}: {error}")]
    Time {
        /// The parameter (`since` or `until`).
        name: &'static str,
        /// What is wrong.
        error: TimeSpecError,
    },
    /// `by` names no grouping.
    #[error("by: {0}")]
    GroupBy(GroupByError),
    /// The window is empty or backwards.
    #[error(
        "the window is empty: since ({since}) is not before until ({until}); \
since must be earlier than until"
    )]
    EmptyWindow {
        /// `since`, as an instant.
        since: String,
        /// `until`, as an instant.
        until: String,
    },
    /// A query parameter the endpoint does not take.
    #[error("unknown parameter {0:?}; accepted: since, until, by, client")]
    UnknownParameter(String),
    /// `client` given empty.
    #[error("client: the client name is empty")]
    EmptyClient,
}

impl ReportQuery {
    /// The query of `pointsman report`'s flags at `now_ms`.
    pub fn from_args(args: &ReportArgs, now_ms: i64) -> Result<ReportQuery, QueryError> {
        let client = match &args.client {
            Some(c) if c.trim().is_empty() => return Err(QueryError::EmptyClient),
            other => other.clone(),
        };
        ReportQuery::new(args.since, args.until, args.by.clone(), client, now_ms)
    }

    /// The query of `GET /v1/usage?since=…&until=…&by=…&client=…` at
    /// `now_ms`; the defaults are the CLI's (`since=24h`, `until=now`,
    /// `by=day`). The caller decides whether `client` may be given (the
    /// admin key) or is forced to the caller's own name.
    pub fn from_params(
        params: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<ReportQuery, QueryError> {
        if let Some(unknown) = params
            .keys()
            .find(|k| !["since", "until", "by", "client"].contains(&k.as_str()))
        {
            return Err(QueryError::UnknownParameter(unknown.clone()));
        }
        let time = |name: &'static str, default: TimeSpec| match params.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<TimeSpec>()
                .map_err(|error| QueryError::Time { name, error }),
        };
        let since = time("since", TimeSpec::Ago(window::MS_A_DAY))?;
        let until = time("until", TimeSpec::Now)?;
        let by = match params.get("by") {
            None => GroupBy::Day,
            Some(v) => v.parse().map_err(QueryError::GroupBy)?,
        };
        let client = match params.get("client") {
            Some(c) if c.trim().is_empty() => return Err(QueryError::EmptyClient),
            other => other.cloned(),
        };
        ReportQuery::new(since, until, by, client, now_ms)
    }

    fn new(
        since: TimeSpec,
        until: TimeSpec,
        by: GroupBy,
        client: Option<String>,
        now_ms: i64,
    ) -> Result<ReportQuery, QueryError> {
        let since_ms = since.resolve(Edge::Since, now_ms);
        let until_ms = until.resolve(Edge::Until, now_ms);
        if since_ms >= until_ms {
            return Err(QueryError::EmptyWindow {
                since: window::instant_string(since_ms),
                until: window::instant_string(until_ms),
            });
        }
        Ok(ReportQuery {
            since_ms,
            until_ms,
            by,
            client: client.as_deref().map(owner_name),
        })
    }
}

/// A client as the ledger records it: `client:NAME` for a configured
/// client, `key:HASH` for a key of a daemon without `[[clients]]`. A bare
/// name is a configured client's (`platform` is `client:platform`).
pub fn owner_name(client: &str) -> String {
    let client = client.trim();
    if client.starts_with("client:") || client.starts_with("key:") {
        client.to_string()
    } else {
        format!("client:{client}")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    const DAY: i64 = 86_400_000;
    // 2026-12-05T12:00:00Z: 20_792 days after 1970-01-01 (see window.rs).
    const NOW: i64 = 20_792 * DAY + 12 * 3_600_000;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReportArgs,
    }

    fn args(argv: &[&str]) -> Result<ReportArgs, clap::Error> {
        let mut full = vec!["report"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).map(|c| c.args)
    }

    #[test]
    fn flags_default_to_the_last_day_by_day_as_a_table() {
        let a = args(&[]).unwrap();
        assert_eq!(a.format, ReportFormat::Table);
        assert_eq!(a.export_workload, None);
        let q = ReportQuery::from_args(&a, NOW).unwrap();
        assert_eq!(
            q,
            ReportQuery {
                since_ms: NOW - DAY,
                until_ms: NOW,
                by: GroupBy::Day,
                client: None
            }
        );
    }

    #[test]
    fn flags_take_spans_dates_labels_and_the_export_file() {
        let a = args(&[
            "--since",
            "7d",
            "--by",
            "label:team",
            "--format",
            "csv",
            "--export-workload",
            "w.jsonl",
            "--client",
            "ci",
        ])
        .unwrap();
        let q = ReportQuery::from_args(&a, NOW).unwrap();
        assert_eq!(q.since_ms, NOW - 7 * DAY);
        assert_eq!(q.by, GroupBy::Label("team".into()));
        assert_eq!(q.client.as_deref(), Some("client:ci"));
        assert_eq!(a.export_workload, Some(PathBuf::from("w.jsonl")));
        // A date pair covers the whole of both days.
        let a = args(&["--since", "2026-12-01", "--until", "2026-12-02"]).unwrap();
        let q = ReportQuery::from_args(&a, NOW).unwrap();
        assert_eq!(q.since_ms, 20_788 * DAY);
        assert_eq!(q.until_ms, 20_790 * DAY);
    }

    #[test]
    fn bad_flags_are_refused_with_what_is_accepted() {
        let err = args(&["--by", "colour"]).err().unwrap().to_string();
        assert!(err.contains("day, model, tier"), "{err}");
        let err = args(&["--since", "3 days"]).err().unwrap().to_string();
        assert!(err.contains("accepted: a span back from now"), "{err}");
        let err = args(&["--by", "label:"]).err().unwrap().to_string();
        assert!(err.contains("label:KEY"), "{err}");
        let a = args(&["--since", "2026-12-06"]).unwrap();
        let err = ReportQuery::from_args(&a, NOW).unwrap_err().to_string();
        assert!(err.contains("the window is empty"), "{err}");
        assert!(err.contains("2026-12-06T00:00:00Z"), "{err}");
    }

    #[test]
    fn usage_params_match_the_flags_and_refuse_unknown_ones() {
        let params = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let q = ReportQuery::from_params(&params(&[]), NOW).unwrap();
        assert_eq!(
            (q.since_ms, q.until_ms, q.by),
            (NOW - DAY, NOW, GroupBy::Day)
        );
        let q = ReportQuery::from_params(
            &params(&[("since", "2026-12-05T06:00Z"), ("by", "model")]),
            NOW,
        )
        .unwrap();
        assert_eq!(q.since_ms, 20_792 * DAY + 6 * 3_600_000);
        assert_eq!(q.by, GroupBy::Model);
        let err = ReportQuery::from_params(&params(&[("sinse", "1h")]), NOW).unwrap_err();
        assert_eq!(err, QueryError::UnknownParameter("sinse".into()));
        assert!(
            err.to_string()
                .contains("accepted: since, until, by, client")
        );
        let err = ReportQuery::from_params(&params(&[("until", "soon")]), NOW)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("until: \"soon\" is not a time"), "{err}");
        let err = ReportQuery::from_params(&params(&[("by", "week")]), NOW)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("by: \"week\" is not a grouping"), "{err}");
        let err = ReportQuery::from_params(&params(&[("client", " ")]), NOW).unwrap_err();
        assert_eq!(err, QueryError::EmptyClient);
    }
}
