//! What can go wrong with the store, in words that name the problem, and
//! the redaction that keeps a PostgreSQL password out of every message.

/// A ledger store error. Messages name the file or the server (never a
/// password) and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LedgerError {
    /// The file exists but is not a SQLite database.
    #[error(
        "the ledger file {path} is not a SQLite database (corrupt, or another kind of file): move it away or set another [ledger] url"
    )]
    NotSqlite {
        /// The file.
        path: String,
    },
    /// The file or its folder cannot be written.
    #[error(
        "the ledger file {path} is read-only ({detail}): make it and its folder writable by the daemon's user, or set another [ledger] url"
    )]
    ReadOnly {
        /// The file.
        path: String,
        /// What SQLite or the system said.
        detail: String,
    },
    /// The file cannot be opened or created.
    #[error("cannot open the ledger file {path}: {detail}")]
    CannotOpen {
        /// The file.
        path: String,
        /// What SQLite or the system said.
        detail: String,
    },
    /// The PostgreSQL server cannot be reached.
    #[error("cannot reach the ledger's PostgreSQL server at {target} ({url}): {detail}")]
    Unreachable {
        /// `host:port` (or the socket folder).
        target: String,
        /// The URL, its password redacted.
        url: String,
        /// What the connection attempt said.
        detail: String,
    },
    /// The store was written by a newer Pointsman.
    #[error(
        "the ledger's schema is version {found}, newer than version {supported} that this binary knows: run a newer pointsman, or set another [ledger] url"
    )]
    SchemaTooNew {
        /// The store's version.
        found: i64,
        /// The newest this binary applies.
        supported: i64,
    },
    /// The URL is neither `sqlite:PATH` nor `postgres://…`, or is malformed.
    #[error("bad [ledger] url {url}: {detail}")]
    BadUrl {
        /// The URL, its password redacted.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A statement or a commit failed.
    #[error("the ledger store {store} failed: {detail}")]
    Store {
        /// The file or the redacted URL.
        store: String,
        /// What the database said.
        detail: String,
    },
    /// More records wait for the writer than `[ledger] max_backlog`.
    #[error("the ledger's write queue is full ({queued} records waiting)")]
    Backlogged {
        /// Records waiting.
        queued: usize,
    },
    /// The record journal (SQLite) cannot be written or read.
    #[error(
        "the ledger's record journal {path} cannot be written: {detail} (it lives beside the ledger file; make its folder writable, or set another [ledger] url)"
    )]
    Journal {
        /// The journal file.
        path: String,
        /// What the system said.
        detail: String,
    },
    /// The ledger was closed (the daemon is shutting down).
    #[error("the ledger is closed")]
    Closed,
}

/// `url` with any password replaced by `***`: the userinfo of a
/// `postgres://user:password@host` URL, and `password=` parameters of a
/// query string or a key-value connection string.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    // `password=…` in a query string (`&`-separated) or a key-value
    // string (space-separated, possibly quoted).
    let lower = out.to_ascii_lowercase();
    let mut result = String::with_capacity(out.len());
    let mut last = 0;
    let mut search = 0;
    while let Some(i) = lower[search..].find("password=") {
        let start = search + i + "password=".len();
        let preceded_ok = search + i == 0
            || matches!(lower.as_bytes()[search + i - 1], b'?' | b'&' | b' ' | b'\t');
        let end = if out[start..].starts_with('\'') {
            out[start + 1..]
                .find('\'')
                .map_or(out.len(), |j| start + 1 + j + 1)
        } else {
            out[start..]
                .find(['&', ' ', '\t'])
                .map_or(out.len(), |j| start + j)
        };
        if preceded_ok {
            result.push_str(&out[last..start]);
            result.push_str("***");
            last = end;
        }
        search = end.max(start);
    }
    result.push_str(&out[last..]);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://alice:s3cret@db.example:5432/ledger"),
            "postgres://alice:***@db.example:5432/ledger"
        );
        assert_eq!(
            redact("postgresql://alice:p@ss@db/ledger?sslmode=disable"),
            "postgresql://alice:***@db/ledger?sslmode=disable"
        );
        assert_eq!(
            redact("postgres://alice@db/ledger?password=s3cret&application_name=x"),
            "postgres://alice@db/ledger?password=***&application_name=x"
        );
        assert_eq!(
            redact("host=db user=alice password='s 3cret' dbname=ledger"),
            "host=db user=alice password=*** dbname=ledger"
        );
        assert_eq!(
            redact("sqlite:/var/lib/ledger.db"),
            "sqlite:/var/lib/ledger.db"
        );
        assert_eq!(
            redact("postgres://db/ledger?mypassword=x"),
            "postgres://db/ledger?mypassword=x"
        );
    }
}
