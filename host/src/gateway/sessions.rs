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

/// Task tiers by session.
#[derive(Default)]
pub struct TaskTiers {
    tiers: Mutex<HashMap<String, (Instant, Tier)>>,
}

impl TaskTiers {
    /// The tier of the turn that started `session`'s current task, if known.
    pub fn get(&self, session: &str) -> Option<Tier> {
        let tiers = self.tiers.lock().unwrap_or_else(|p| p.into_inner());
        tiers
            .get(session)
            .filter(|(at, _)| at.elapsed() < TASK_TTL)
            .map(|(_, tier)| *tier)
    }

    /// Records that `session` started a task routed to `tier`.
    pub fn put(&self, session: &str, tier: Tier) {
        let mut tiers = self.tiers.lock().unwrap_or_else(|p| p.into_inner());
        if tiers.len() >= MAX_SESSIONS
            && !tiers.contains_key(session)
            && let Some(oldest) = tiers
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            tiers.remove(&oldest);
        }
        tiers.insert(session.to_string(), (Instant::now(), tier));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_tier_is_kept_per_session_and_replaced_by_the_next_task() {
        let tiers = TaskTiers::default();
        assert_eq!(tiers.get("a"), None);
        tiers.put("a", Tier::Plan);
        tiers.put("b", Tier::Direct);
        assert_eq!(tiers.get("a"), Some(Tier::Plan));
        tiers.put("a", Tier::Direct);
        assert_eq!(tiers.get("a"), Some(Tier::Direct));
        assert_eq!(tiers.get("b"), Some(Tier::Direct));
    }
}
