//! Tenancy: who owns what a request creates.
//!
//! Every task, session plan and (with the ledger) usage record belongs to
//! the client that made it; other clients are told it does not exist. This
//! module is at the bottom of the crate so that every layer can carry an
//! owner without knowing how clients authenticate.

/// Label names under this prefix are the operator's and the daemon's (a
/// policy's tuning, say): never accepted from a client's headers or body.
pub const RESERVED_LABEL_PREFIX: &str = "pointsman.";

/// Who owns what a client creates. Another owner's things are invisible
/// (404), whatever their id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Owner(String);

impl Owner {
    /// A configured client, by its name in `[[clients]]`.
    pub fn client(name: &str) -> Self {
        Owner(format!("client:{name}"))
    }

    /// A key presented to a daemon without `[[clients]]`, by the hex
    /// SHA-256 of the key (its first 128 bits: enough to keep keys apart,
    /// and not the key).
    pub fn key_hash(sha256_hex: &str) -> Self {
        Owner(format!("key:{}", &sha256_hex[..sha256_hex.len().min(32)]))
    }

    /// The owner as text, for logs and records.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
