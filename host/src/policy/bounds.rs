//! What a policy's answer may hold, checked as soon as it is in the host.
//!
//! A policy is untrusted code: its strings and lists are cut or refused
//! here, before anything else in the host keeps or copies them. (The copy
//! out of the guest itself is bounded by the instance's memory cap, since a
//! guest cannot return more than its memories hold.)
//!
//! Plans are also checked for what the task runner relies on, whatever the
//! planner policy checked itself: unique ids, dependencies that exist and
//! form no cycle, and a bounded size. A plan that fails is refused with a
//! reason, which the runner treats as an unparsable reply (the planner is
//! asked again).

use std::collections::{HashMap, HashSet};

use super::types::{ChatRequest, Plan, Review, Route};

/// Longest free text kept from a policy (a reasoning, a verdict's reason, an
/// error message); longer ones are cut.
pub const MAX_TEXT_BYTES: usize = 4 * 1024;
/// Most fallback models a route may name.
pub const MAX_FALLBACKS: usize = 16;
/// Most subtasks in a plan.
pub const MAX_SUBTASKS: usize = 64;
/// Longest subtask id or model name.
pub const MAX_ID_BYTES: usize = 128;
/// Longest subtask instructions.
pub const MAX_INSTRUCTIONS_BYTES: usize = 32 * 1024;
/// Most bytes of all messages of a request a policy builds (a planner's
/// prompt carries the conversation, so this is generous).
pub const MAX_CHAT_REQUEST_BYTES: usize = 4 << 20;
/// Most messages in a request a policy builds.
pub const MAX_CHAT_MESSAGES: usize = 256;
/// Most labels a route may attach (contract 0.2.0).
pub const MAX_ROUTE_LABELS: usize = 16;
/// Longest route label key or value.
pub const MAX_LABEL_BYTES: usize = 256;

/// An answer cut to its bounds, or why it cannot be used.
pub trait Bounded: Sized {
    /// `self` within bounds (free text cut), or the reason it is refused.
    fn bounded(self) -> Result<Self, String>;
}

impl Bounded for Route {
    /// The reasoning is checked by [`super::decide`], which refuses an
    /// overlong one rather than cutting it.
    fn bounded(self) -> Result<Self, String> {
        if self.fallbacks.len() > MAX_FALLBACKS {
            return Err(format!(
                "the route names {} fallbacks, more than {MAX_FALLBACKS}",
                self.fallbacks.len()
            ));
        }
        for id in self.models() {
            check_id("model", id)?;
        }
        if self.labels.len() > MAX_ROUTE_LABELS {
            return Err(format!(
                "the route attaches {} labels, more than {MAX_ROUTE_LABELS}",
                self.labels.len()
            ));
        }
        if let Some((key, _)) = self
            .labels
            .iter()
            .find(|(k, v)| k.is_empty() || k.len() > MAX_LABEL_BYTES || v.len() > MAX_LABEL_BYTES)
        {
            let shown: String = key.chars().take(64).collect();
            return Err(format!(
                "route label {shown:?}: keys must be 1 to {MAX_LABEL_BYTES} bytes, values at most {MAX_LABEL_BYTES}"
            ));
        }
        Ok(self)
    }
}

impl Bounded for ChatRequest {
    fn bounded(self) -> Result<Self, String> {
        check_id("model", &self.model)?;
        if self.messages.len() > MAX_CHAT_MESSAGES {
            return Err(format!(
                "the request has {} messages, more than {MAX_CHAT_MESSAGES}",
                self.messages.len()
            ));
        }
        let bytes: usize = self
            .messages
            .iter()
            .map(|m| m.content.len() + m.role.len())
            .sum();
        if bytes > MAX_CHAT_REQUEST_BYTES {
            return Err(format!(
                "the request holds {bytes} bytes, more than {MAX_CHAT_REQUEST_BYTES}"
            ));
        }
        Ok(self)
    }
}

impl Bounded for Option<ChatRequest> {
    fn bounded(self) -> Result<Self, String> {
        self.map(Bounded::bounded).transpose()
    }
}

impl Bounded for Review {
    fn bounded(self) -> Result<Self, String> {
        Ok(match self {
            Review::Accept => Review::Accept,
            Review::Retry {
                model,
                mut feedback,
            } => {
                check_id("model", &model)?;
                cut(&mut feedback, MAX_INSTRUCTIONS_BYTES);
                Review::Retry { model, feedback }
            }
            Review::Escalate { mut reason } => {
                cut(&mut reason, MAX_TEXT_BYTES);
                Review::Escalate { reason }
            }
        })
    }
}

impl Bounded for Plan {
    fn bounded(mut self) -> Result<Self, String> {
        if self.subtasks.is_empty() {
            return Err("the plan has no subtasks".into());
        }
        if self.subtasks.len() > MAX_SUBTASKS {
            return Err(format!(
                "the plan has {} subtasks, more than {MAX_SUBTASKS}",
                self.subtasks.len()
            ));
        }
        cut(&mut self.summary, MAX_TEXT_BYTES);
        let mut ids = HashSet::new();
        for s in &mut self.subtasks {
            check_id("subtask id", &s.id)?;
            check_id("model", &s.model)?;
            if !ids.insert(s.id.clone()) {
                return Err(format!("the plan has two subtasks with the id {:?}", s.id));
            }
            cut(&mut s.title, MAX_TEXT_BYTES);
            if s.instructions.len() > MAX_INSTRUCTIONS_BYTES {
                return Err(format!(
                    "subtask {:?} has {} bytes of instructions, more than {MAX_INSTRUCTIONS_BYTES}",
                    s.id,
                    s.instructions.len()
                ));
            }
        }
        for s in &self.subtasks {
            if s.depends_on.len() > MAX_SUBTASKS {
                return Err(format!("subtask {:?} has too many dependencies", s.id));
            }
            for dep in &s.depends_on {
                if !ids.contains(dep) {
                    return Err(format!(
                        "subtask {:?} depends on {dep:?}, which is not in the plan",
                        s.id
                    ));
                }
            }
        }
        if let Some(cycle) = find_cycle(&self) {
            return Err(format!(
                "the plan's dependencies form a cycle: {}",
                cycle.join(" → ")
            ));
        }
        Ok(self)
    }
}

/// A dependency cycle of `plan` (its ids, the first repeated at the end),
/// if it has one. Depth-first, iterative: a plan is at most
/// [`MAX_SUBTASKS`] long, but recursion on policy input is avoided anyway.
fn find_cycle(plan: &Plan) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let index: HashMap<&str, usize> = plan
        .subtasks
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = plan
        .subtasks
        .iter()
        .map(|s| {
            s.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    let mut marks = vec![Mark::New; deps.len()];
    for root in 0..deps.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // (node, next dependency to look at)
        let mut stack = vec![(root, 0)];
        marks[root] = Mark::Open;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&dep) = deps[node].get(*next) {
                *next += 1;
                match marks[dep] {
                    Mark::New => {
                        marks[dep] = Mark::Open;
                        stack.push((dep, 0));
                    }
                    Mark::Open => {
                        let from = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[from..]
                            .iter()
                            .map(|(n, _)| plan.subtasks[*n].id.clone())
                            .collect();
                        cycle.push(plan.subtasks[dep].id.clone());
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "a {what} of {} bytes, longer than {MAX_ID_BYTES}",
            id.len()
        ));
    }
    Ok(())
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
pub fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::types::{Subtask, SubtaskKind, Tier};

    fn subtask(id: &str, deps: &[&str]) -> Subtask {
        Subtask {
            id: id.into(),
            title: id.into(),
            instructions: "do it".into(),
            kind: SubtaskKind::Code,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            model: "glm-4.7".into(),
            critical: false,
        }
    }

    fn plan(subtasks: Vec<Subtask>) -> Plan {
        Plan {
            subtasks,
            summary: "s".into(),
        }
    }

    #[test]
    fn a_diamond_is_a_valid_plan() {
        let p = plan(vec![
            subtask("a", &[]),
            subtask("b", &["a"]),
            subtask("c", &["a"]),
            subtask("d", &["b", "c"]),
        ]);
        assert!(p.bounded().is_ok());
    }

    #[test]
    fn cycles_unknown_dependencies_and_duplicates_are_refused() {
        let cycle = plan(vec![
            subtask("a", &["c"]),
            subtask("b", &["a"]),
            subtask("c", &["b"]),
        ]);
        let why = cycle.bounded().unwrap_err();
        assert!(why.contains("cycle"), "{why}");
        let itself = plan(vec![subtask("a", &["a"])]).bounded().unwrap_err();
        assert!(itself.contains("a → a"), "{itself}");
        let unknown = plan(vec![subtask("a", &["ghost"])]).bounded().unwrap_err();
        assert!(unknown.contains("ghost"), "{unknown}");
        let twice = plan(vec![subtask("a", &[]), subtask("a", &[])])
            .bounded()
            .unwrap_err();
        assert!(twice.contains("two subtasks"), "{twice}");
        let empty = plan(vec![]).bounded().unwrap_err();
        assert!(empty.contains("no subtasks"), "{empty}");
    }

    #[test]
    fn oversized_plans_and_routes_are_refused_and_text_is_cut() {
        let many = plan(
            (0..=MAX_SUBTASKS)
                .map(|i| subtask(&i.to_string(), &[]))
                .collect(),
        );
        assert!(many.bounded().unwrap_err().contains("subtasks"));
        let route = Route {
            tier: Tier::Direct,
            executor: "glm-4.7".into(),
            fallbacks: vec!["glm-4.7".into(); MAX_FALLBACKS + 1],
            planner: None,
            reasoning: String::new(),
            deadline_ms: None,
            max_cost_usd: None,
            max_output_tokens: None,
            labels: Vec::new(),
        };
        assert!(route.clone().bounded().unwrap_err().contains("fallbacks"));
        let labelled = |labels: Vec<(String, String)>| Route {
            fallbacks: Vec::new(),
            labels,
            ..route.clone()
        };
        let many = (0..17).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(labelled(many).bounded().unwrap_err().contains("17 labels"));
        let long = vec![("arm".into(), "x".repeat(300))];
        assert!(
            labelled(long)
                .bounded()
                .unwrap_err()
                .contains("route label \"arm\"")
        );
        let fine = vec![("arm".into(), "b".into())];
        assert_eq!(labelled(fine.clone()).bounded().unwrap().labels, fine);
        let long_id = Route {
            fallbacks: vec!["m".repeat(MAX_ID_BYTES + 1)],
            ..route
        };
        assert!(long_id.bounded().unwrap_err().contains("model"));
    }
}
