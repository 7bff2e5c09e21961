//! What the gateway remembers of an agent session between its requests:
//! the tier of the turn that started the session's current task, so that
//! the turns answering tool calls can be routed as part of that task.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::policy::types::Tier;

/// How long a session's task tier is remembered after its last task began.
pub const TASK_TTL: Duration = Duration::from_secs(3600);
/// Most sessions remembered; the oldest is forgotten first.
pub const MAX_SESSIONS: usize = 10_000;

/// A session of one client key: sessions belong to the key that made them.
type SessionKey = (String, String);

/// Task tiers by client key and session.
#[derive(Default)]
pub struct TaskTiers {
    tiers: Mutex<HashMap<SessionKey, (Instant, Tier)>>,
}

impl TaskTiers {
    /// The tier of the turn that started the current task of `client`'s
    /// `session`, if known.
    pub fn get(&self, client: &str, session: &str) -> Option<Tier> {
        let tiers = self.tiers.lock().unwrap_or_else(|p| p.into_inner());
        tiers
            .get(&(client.to_string(), session.to_string()))
            .filter(|(at, _)| at.elapsed() < TASK_TTL)
            .map(|(_, tier)| *tier)
    }

    /// Records that `client`'s `session` started a task routed to `tier`.
    pub fn put(&self, client: &str, session: &str, tier: Tier) {
        let key = (client.to_string(), session.to_string());
        let mut tiers = self.tiers.lock().unwrap_or_else(|p| p.into_inner());
        if tiers.len() >= MAX_SESSIONS
            && !tiers.contains_key(&key)
            && let Some(oldest) = tiers
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            tiers.remove(&oldest);
        }
        tiers.insert(key, (Instant::now(), tier));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_tier_is_kept_per_client_and_session_and_replaced_by_the_next_task() {
        let tiers = TaskTiers::default();
        assert_eq!(tiers.get("ci", "a"), None);
        tiers.put("ci", "a", Tier::Plan);
        tiers.put("ci", "b", Tier::Direct);
        assert_eq!(tiers.get("ci", "a"), Some(Tier::Plan));
        assert_eq!(tiers.get("other-key", "a"), None, "another key's session");
        tiers.put("ci", "a", Tier::Direct);
        assert_eq!(tiers.get("ci", "a"), Some(Tier::Direct));
        assert_eq!(tiers.get("ci", "b"), Some(Tier::Direct));
    }
}
