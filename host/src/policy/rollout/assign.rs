//! Which arm a request or task is on: sticky by a stable hash.
//!
//! The key is the agent session, else the client, else the request (the
//! task API uses the task id), hashed with the rollout's id into one of
//! 10,000 buckets; the candidate serves buckets below its share. So one
//! session stays on one arm for the whole of a step; a share that grows
//! keeps every key that was on the candidate there (10% ⊂ 50% ⊂ 95%); the
//! same keys land on the same arms after a restart or on another replica;
//! and a new rollout draws new buckets (its id is in the hash), so the
//! same sessions are not always the first to try a candidate.
//!
//! SHA-256 rather than the standard library's hasher: its output is fixed
//! forever, where `DefaultHasher`'s may change between Rust releases (and
//! a rebuilt daemon would reshuffle running sessions).

use sha2::{Digest, Sha256};

/// The side of a rollout a request is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arm {
    /// The policy that served before the rollout.
    Stable,
    /// The policy rolled out.
    Candidate,
}

impl Arm {
    /// The arm's name in ledger rows (`<rollout id>/<arm>`) and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Stable => "stable",
            Arm::Candidate => "candidate",
        }
    }

    /// The arm a ledger row's label names, with its rollout id.
    pub fn parse_label(label: &str) -> Option<(&str, Arm)> {
        let (id, arm) = label.rsplit_once('/')?;
        let arm = match arm {
            "stable" => Arm::Stable,
            "candidate" => Arm::Candidate,
            _ => return None,
        };
        Some((id, arm))
    }
}

/// The bucket (0 to 9,999) of `key` in rollout `rollout_id`.
pub fn bucket(rollout_id: &str, key: &str) -> u32 {
    let mut hash = Sha256::new();
    hash.update(rollout_id.as_bytes());
    hash.update([0]);
    hash.update(key.as_bytes());
    let digest = hash.finalize();
    let word = u64::from_be_bytes(digest[..8].try_into().expect("32 bytes"));
    (word % 10_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("r1", "session-a"), bucket("r1", "session-a"));
        let n = 20_000;
        let below = |share: u32| {
            (0..n)
                .filter(|i| bucket("r1", &format!("s{i}")) < share)
                .count() as f64
                / n as f64
        };
        // Within 4 standard errors of each share.
        for share in [1_000, 5_000, 9_500] {
            let p = f64::from(share) / 10_000.0;
            let se = (p * (1.0 - p) / n as f64).sqrt();
            assert!((below(share) - p).abs() < 4.0 * se, "share {share}");
        }
        // Another rollout draws other buckets.
        let same = (0..1000)
            .filter(|i| {
                let k = format!("s{i}");
                (bucket("r1", &k) < 1_000) == (bucket("r2", &k) < 1_000)
            })
            .count();
        assert!(same < 1000);
    }

    #[test]
    fn labels_parse() {
        assert_eq!(
            Arm::parse_label("r17/candidate"),
            Some(("r17", Arm::Candidate))
        );
        assert_eq!(Arm::parse_label("r17/stable"), Some(("r17", Arm::Stable)));
        assert_eq!(Arm::parse_label("r17"), None);
        assert_eq!(Arm::parse_label("r17/other"), None);
    }
}
