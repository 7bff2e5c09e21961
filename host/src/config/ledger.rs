//! `[ledger]` and `[[budgets]]`: where records are kept, for how long, and
//! the spending caps that hold across every call.

use std::path::PathBuf;

use serde::Deserialize;

/// `[ledger]`: the durable record of every call and task.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// `sqlite:PATH` or `postgres://…`. None: `sqlite:` a file in the
    /// user's data folder (`$XDG_DATA_HOME/pointsman/ledger.db`, else
    /// `~/.local/share/pointsman/ledger.db`).
    pub url: Option<String>,
    /// Records older than this many days are pruned in the background;
    /// 0 keeps them forever.
    pub keep_days: u32,
    /// What of a request's text is kept.
    pub keep_requests: KeepRequests,
    /// What happens to new requests while the store cannot be written.
    pub on_unavailable: OnUnavailable,
    /// How hard a SQLite commit reaches the disk.
    pub sync: SyncMode,
    /// Most records one group commit writes.
    pub max_batch: usize,
    /// SQLite with `sync = "normal"`: an answer's record is appended to
    /// the record journal beside the file (durable against a crash when
    /// the append returns) and inserted into SQLite in a batch this many
    /// milliseconds after the first waiting record (at most 10,000).
    pub apply_delay_ms: u64,
    /// Most records waiting for the writer; past it new requests are
    /// treated as if the store were unavailable.
    pub max_backlog: usize,
    /// Most call records one `GET /v1/usage` reads; a wider window is
    /// refused (narrow it, or run `pointsman report`, which has no bound).
    pub max_usage_calls: usize,
    /// This daemon's name in task records (a task whose daemon restarts is
    /// marked interrupted). None: the host name and the listen port.
    pub replica: Option<String>,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            url: None,
            keep_days: 400,
            keep_requests: KeepRequests::None,
            on_unavailable: OnUnavailable::Refuse,
            sync: SyncMode::Normal,
            max_batch: 1_024,
            apply_delay_ms: 50,
            max_backlog: 100_000,
            max_usage_calls: 200_000,
            replica: None,
        }
    }
}

impl LedgerConfig {
    /// The store's URL, with the default filled in.
    pub fn url_or_default(&self) -> String {
        match &self.url {
            Some(url) => url.clone(),
            None => format!("sqlite:{}", default_sqlite_path().display()),
        }
    }
}

/// Most `[ledger] apply_delay_ms` honoured: records wait in memory (and
/// reads wait for them) at most this long.
pub const MAX_APPLY_DELAY_MS: u64 = 10_000;

/// `$XDG_DATA_HOME/pointsman/ledger.db`, else
/// `$HOME/.local/share/pointsman/ledger.db`, else `./pointsman-ledger.db`.
pub fn default_sqlite_path() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    match data {
        Some(dir) => dir.join("pointsman").join("ledger.db"),
        None => PathBuf::from("pointsman-ledger.db"),
    }
}

/// `[ledger] keep_requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeepRequests {
    /// No prompt or answer text.
    None,
    /// The bounded view a policy sees (for offline replay).
    PolicyView,
}

/// `[ledger] on_unavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnUnavailable {
    /// Refuse new requests with 503 rather than serve unrecorded ones.
    Refuse,
    /// Serve anyway; records are lost while the store is down.
    Serve,
}

/// `[ledger] sync` (SQLite only; PostgreSQL follows the server's own
/// `synchronous_commit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// WAL with `synchronous=NORMAL`: a process crash loses nothing
    /// committed; a power loss can lose the last commits before the most
    /// recent checkpoint.
    Normal,
    /// WAL with `synchronous=FULL`: every commit is on disk when it
    /// returns, at an fsync per group commit.
    Full,
}

/// One `[[budgets]]` entry: spending caps for a client or a label value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// A client's name (from `[[clients]]`).
    pub client: Option<String>,
    /// A label value, `KEY=VALUE` (e.g. `team=platform`): every request
    /// carrying it counts.
    pub label: Option<String>,
    /// Most USD spent per UTC day.
    pub daily_usd: Option<f64>,
    /// Most USD spent per UTC calendar month.
    pub monthly_usd: Option<f64>,
}
