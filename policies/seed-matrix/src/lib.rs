//! The seed architecture's Route Decision Matrix as a router policy.
//!
//! | Complexity | Tier              | Models                        |
//! |------------|-------------------|-------------------------------|
//! | Critical   | `plan-and-verify` | deepseek-v3.2 → glm-4.7       |
//! | High       | `plan`            | deepseek-v3.2 → glm-4.7       |
//! | Medium     | `direct`          | glm-4.7                       |
//! | Low        | `direct`          | glm-4.7                       |
//!
//! Fallbacks are `deepseek-v3.2-exp` then `claude-opus-4.5`. The JavaScript
//! and Python examples implement the same rules and are checked against the
//! same table (`examples/policies/cases.jsonl`), so a change here must be made
//! there too.
//!
//! # The rules
//!
//! The *task text* is every `user` message, lower-cased and split into words
//! on anything that is not an ASCII letter or digit. A *stem* matches a word
//! that starts with it; a *phrase* matches consecutive words.
//!
//! Tool results and agents' `<system-reminder>` blocks are not user messages
//! (the host makes them `tool` messages and cuts the reminders out), so the
//! task text is what the user asked.
//!
//! - **Critical** when any critical stem or word matches.
//! - Otherwise a score: task tokens ≥ 32 000 (+3), ≥ 8 000 (+2), ≥ 2 000
//!   (+1), the task tokens being the host's `task_tokens` label (the user
//!   messages' tokens: an agent's constant system prompt and tool schemas
//!   are not the task's size), or the input tokens without it; a
//!   conversation of 16 or more messages (+1); 5 to 16 tools (+1: a tool
//!   set picked for the task; dozens, more than 16, is an agent's whole kit,
//!   offered with every request, and says nothing of the task); dependency signals
//!   (+1 for one, +2 for two or more); novelty signals (+2); simple-change
//!   signals (−1).
//! - **High** when the score is at least `6 × threshold`, the threshold
//!   being the `pointsman.threshold` label (a decimal such as `0.35`, which
//!   only the operator can set: the gateway drops client labels under
//!   `pointsman.`; `pointsman eval --sweep` sets it), else the module's
//!   `threshold` config (`[policies.config.seed-matrix]`), else 0.5, so
//!   by default a score of 3 or more; **Medium** when it is 1 or more, or a
//!   change signal matches without a simple one; **Low** otherwise. A set
//!   threshold shows in the reasoning as `threshold:<value>`.
//! - A turn that answers tool calls (its latest message, system messages
//!   aside, is a `tool` message) carries on the task that the session's
//!   last user turn started: with the host's `task_tier` label, it keeps
//!   that tier (`plan-and-verify` is Critical, `plan` High, and `direct`
//!   at most Medium), so a task does not change tier as its tool results
//!   pile up.
//!
//! A model is a candidate only if the catalog has it, marks it available,
//! its context window holds the input tokens plus `max_output_tokens`, and,
//! for an executor, it can read the request's images and call its tools.

use pointsman_sdk::{Capabilities, Config, Model, Request, Route, Router, Tier};

/// Words whose presence makes a task critical, matched as stems.
pub const CRITICAL_STEMS: &[&str] = &[
    "secur",
    "authent",
    "authoriz",
    "credential",
    "secret",
    "vulnerab",
    "deploy",
    "production",
    "migrat",
    "payment",
    "password",
    "encrypt",
    "exploit",
];
/// Short critical words, matched exactly (as stems they would match too much).
pub const CRITICAL_WORDS: &[&str] = &["auth", "oauth", "cve", "prod"];
/// Signals that the work spans several parts of a system.
pub const DEPENDENCY_STEMS: &[&str] = &[
    "across",
    "multiple",
    "several",
    "component",
    "module",
    "service",
    "integrat",
    "pipeline",
    "dependenc",
    "subsystem",
];
/// Signals of new design work, matched as stems.
pub const NOVELTY_STEMS: &[&str] = &[
    "architect",
    "design",
    "scaffold",
    "greenfield",
    "rewrite",
    "framework",
    "prototype",
];
/// Signals of new design work, matched as phrases.
pub const NOVELTY_PHRASES: &[&str] = &["new feature", "from scratch", "new system", "add support"];
/// Signals of a small change.
pub const SIMPLE_STEMS: &[&str] = &[
    "typo",
    "rename",
    "comment",
    "format",
    "lint",
    "spelling",
    "whitespace",
    "trivial",
    "simple",
    "tiny",
];
/// Signals of a refactor or a bug fix.
pub const CHANGE_STEMS: &[&str] = &[
    "refactor", "bug", "fix", "error", "fail", "broken", "crash", "regress", "debug",
];

/// Executors in order of preference: the primary, the backup, the premium fallback.
pub const EXECUTORS: &[&str] = &["glm-4.7", "deepseek-v3.2-exp", "claude-opus-4.5"];
/// Planners in order of preference.
pub const PLANNERS: &[&str] = &["deepseek-v3.2", "claude-opus-4.5"];

/// The host's label with the tokens of what the user asked.
pub const TASK_TOKENS_LABEL: &str = "task_tokens";
/// The host's label with the tier the session's current task started with.
pub const TASK_TIER_LABEL: &str = "task_tier";
/// The operator's label with the complexity threshold (0 to 1) above which a
/// scored task is High; clients cannot send labels under `pointsman.`.
pub const THRESHOLD_LABEL: &str = "pointsman.threshold";
/// The threshold without the label: High from a score of 3.
pub const DEFAULT_THRESHOLD: f64 = 0.5;
/// The module's config key with the threshold (the label overrides it).
pub const THRESHOLD_CONFIG: &str = "threshold";
/// More tools than this is an agent's standard kit, not a sign of the task.
pub const TASK_TOOLS_MAX: u32 = 16;
/// A score of `SCORE_SCALE × threshold` or more is High.
pub const SCORE_SCALE: f64 = 6.0;

/// The `pointsman.threshold` label, when it is a plain decimal (digits,
/// optionally a point and more digits), as written.
pub fn threshold_label(request: &Request) -> Option<&str> {
    let raw = request.label(THRESHOLD_LABEL)?;
    let (whole, fraction) = raw.split_once('.').unwrap_or((raw, "1"));
    let digits = |s: &str| !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(whole) && digits(fraction)).then_some(raw)
}

/// The tier of the task a turn answering tool calls carries on, with its
/// name, when the host knows it.
pub fn continued_task(request: &Request) -> Option<(Tier, &str)> {
    let latest = request.messages.iter().rev().find(|m| m.role != "system")?;
    if latest.role != "tool" {
        return None;
    }
    let name = request.label(TASK_TIER_LABEL)?;
    let tier = match name {
        "direct" => Tier::Direct,
        "plan" => Tier::Plan,
        "plan-and-verify" => Tier::PlanAndVerify,
        _ => return None,
    };
    Some((tier, name))
}

/// The seed's complexity classes, least complex first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Complexity {
    /// Simple changes: direct.
    Low,
    /// Refactors, bug fixes: direct.
    Medium,
    /// New features, architecture: plan, then execute.
    High,
    /// Security, deployment and the like: plan, then verify.
    Critical,
}

impl Complexity {
    fn name(self) -> &'static str {
        match self {
            Complexity::Critical => "critical",
            Complexity::High => "high",
            Complexity::Medium => "medium",
            Complexity::Low => "low",
        }
    }
}

/// The seed matrix router.
pub struct SeedMatrix;

/// The `threshold` config as a number from 0 to 1, if set.
pub fn configured_threshold(config: &Config) -> Result<Option<f64>, String> {
    match config.parse::<f64>(THRESHOLD_CONFIG)? {
        Some(t) if !(0.0..=1.0).contains(&t) => {
            Err(format!("config {THRESHOLD_CONFIG} = {t} is outside 0 to 1"))
        }
        t => Ok(t),
    }
}

impl Router for SeedMatrix {
    fn configure(_models: &[Model], config: &Config) -> Result<(), String> {
        configured_threshold(config).map(drop)
    }

    fn route(request: &Request, models: &[Model], config: &Config) -> Result<Route, String> {
        let threshold = configured_threshold(config)?.unwrap_or(DEFAULT_THRESHOLD);
        let (complexity, mut signals) = classify(request, threshold);
        let complexity = match continued_task(request) {
            Some((tier, name)) => {
                signals.insert(0, format!("continues a {name} task"));
                match tier {
                    Tier::PlanAndVerify => Complexity::Critical,
                    Tier::Plan => Complexity::High,
                    Tier::Direct => complexity.min(Complexity::Medium),
                }
            }
            None => complexity,
        };
        let needed = request.input_tokens as u64 + request.max_output_tokens.unwrap_or(0) as u64;
        let mut notes = Vec::new();
        // Only the executor sees the images and the tools; a planner plans
        // from the text.
        let mut can = Capabilities::empty();
        if request.has_images {
            can |= Capabilities::VISION;
        }
        if request.tool_count > 0 {
            can |= Capabilities::TOOLS;
        }
        let executors = candidates(EXECUTORS, models, needed, can, &mut notes);
        let Some((executor, fallbacks)) = executors.split_first() else {
            return Err(format!(
                "no executor fits a request of {needed} tokens ({})",
                notes.join(", ")
            ));
        };
        let mut tier = match complexity {
            Complexity::Critical => Tier::PlanAndVerify,
            Complexity::High => Tier::Plan,
            Complexity::Medium | Complexity::Low => Tier::Direct,
        };
        let mut planner = None;
        if tier != Tier::Direct {
            planner = candidates(PLANNERS, models, needed, Capabilities::empty(), &mut notes)
                .first()
                .map(|m| m.to_string());
            if planner.is_none() {
                tier = Tier::Direct;
                notes.push("no planner fits, serving direct".to_string());
            }
        }
        let mut reasoning = format!("{}: {}", complexity.name(), describe(&signals));
        if !notes.is_empty() {
            reasoning.push_str("; ");
            reasoning.push_str(&notes.join(", "));
        }
        Ok(Route {
            tier,
            executor: executor.to_string(),
            fallbacks: fallbacks.iter().map(|m| m.to_string()).collect(),
            planner,
            reasoning,
            deadline_ms: None,
            max_cost_usd: None,
            max_output_tokens: None,
            labels: Vec::new(),
        })
    }
}

pointsman_sdk::register_policy!(router: SeedMatrix);

/// Classifies `request` with the configured `threshold` (the label
/// overrides it), returning the signals that decided.
pub fn classify(request: &Request, threshold: f64) -> (Complexity, Vec<String>) {
    let found = scan(request);
    let critical: Vec<String> = found
        .critical
        .iter(CRITICAL_STEMS)
        .chain(found.critical_words.iter(CRITICAL_WORDS))
        .map(|k| format!("keyword:{k}"))
        .collect();
    if !critical.is_empty() {
        return (Complexity::Critical, critical);
    }

    let mut score = 0i32;
    let mut signals = Vec::new();
    let tokens = request
        .label(TASK_TOKENS_LABEL)
        .and_then(|t| t.parse::<u32>().ok())
        .unwrap_or(request.input_tokens);
    for (threshold, points) in [(32_000, 3), (8_000, 2), (2_000, 1)] {
        if tokens >= threshold {
            score += points;
            signals.push(format!("tokens>={threshold}"));
            break;
        }
    }
    if request.message_count >= 16 {
        score += 1;
        signals.push("messages>=16".to_string());
    }
    if (5..=TASK_TOOLS_MAX).contains(&request.tool_count) {
        score += 1;
        signals.push("tools>=5".to_string());
    }
    score += found.dependency.count().min(2) as i32;
    signals.extend(
        found
            .dependency
            .iter(DEPENDENCY_STEMS)
            .map(|s| format!("dependency:{s}")),
    );
    let novelty = found
        .novelty
        .iter(NOVELTY_STEMS)
        .chain(found.novelty_phrases.iter(NOVELTY_PHRASES));
    let before = signals.len();
    signals.extend(novelty.map(|s| format!("novelty:{s}")));
    if signals.len() > before {
        score += 2;
    }
    if !found.simple.is_empty() {
        score -= 1;
    }
    signals.extend(
        found
            .simple
            .iter(SIMPLE_STEMS)
            .map(|s| format!("simple:{s}")),
    );
    signals.extend(
        found
            .change
            .iter(CHANGE_STEMS)
            .map(|s| format!("change:{s}")),
    );

    let threshold = match threshold_label(request) {
        Some(raw) => {
            signals.push(format!("threshold:{raw}"));
            raw.parse::<f64>().unwrap_or(threshold)
        }
        None => threshold,
    };
    let complexity = if f64::from(score) >= SCORE_SCALE * threshold {
        Complexity::High
    } else if score >= 1 || (!found.change.is_empty() && found.simple.is_empty()) {
        Complexity::Medium
    } else {
        Complexity::Low
    };
    (complexity, signals)
}

fn describe(signals: &[String]) -> String {
    if signals.is_empty() {
        "no signals".to_string()
    } else {
        signals.join(", ")
    }
}

/// Which entries of one keyword list matched: bit `i` is entry `i`.
#[derive(Default, Clone, Copy)]
struct Hits(u32);

impl Hits {
    /// Marks the stems of `stems` that `word` starts with.
    fn stems(&mut self, word: &[u8], stems: &[&str]) {
        for (i, stem) in stems.iter().enumerate() {
            // The first byte rules out nearly every stem without a call to
            // `memcmp`, which is not inlined in WebAssembly.
            let stem = stem.as_bytes();
            if word[0] == stem[0] && word.starts_with(stem) {
                self.0 |= 1 << i;
            }
        }
    }

    /// Marks the entries of `words` equal to `word`.
    fn words(&mut self, word: &[u8], words: &[&str]) {
        for (i, w) in words.iter().enumerate() {
            if word[0] == w.as_bytes()[0] && word == w.as_bytes() {
                self.0 |= 1 << i;
            }
        }
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn count(self) -> u32 {
        self.0.count_ones()
    }

    /// The matched entries of `list`, in list order.
    fn iter<'a>(self, list: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
        list.iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, entry)| *entry)
    }
}

/// Every keyword list's matches in the task text.
#[derive(Default)]
struct Found {
    critical: Hits,
    critical_words: Hits,
    dependency: Hits,
    novelty: Hits,
    novelty_phrases: Hits,
    simple: Hits,
    change: Hits,
}

/// Matches the keyword lists against the task text in one pass over its
/// words, without allocating per word: the largest request a policy sees is
/// 32 KB of text, and this runs on every routed request.
fn scan(request: &Request) -> Found {
    let mut found = Found::default();
    let phrases: Vec<(&str, &str)> = NOVELTY_PHRASES
        .iter()
        .map(|p| p.split_once(' ').expect("a two-word phrase"))
        .collect();
    let mut word = Vec::with_capacity(64);
    // The previous word, for two-word phrases. A phrase may span two
    // messages: the task text is every user message's words in order.
    let mut previous = Vec::with_capacity(64);
    for message in request.messages.iter().filter(|m| m.role == "user") {
        for raw in message
            .content
            .as_bytes()
            .split(|b| !b.is_ascii_alphanumeric())
        {
            if raw.is_empty() {
                continue;
            }
            word.clear();
            word.extend(raw.iter().map(u8::to_ascii_lowercase));
            found.critical.stems(&word, CRITICAL_STEMS);
            found.critical_words.words(&word, CRITICAL_WORDS);
            found.dependency.stems(&word, DEPENDENCY_STEMS);
            found.novelty.stems(&word, NOVELTY_STEMS);
            found.simple.stems(&word, SIMPLE_STEMS);
            found.change.stems(&word, CHANGE_STEMS);
            for (i, (first, second)) in phrases.iter().enumerate() {
                if word == second.as_bytes() && previous == first.as_bytes() {
                    found.novelty_phrases.0 |= 1 << i;
                }
            }
            std::mem::swap(&mut word, &mut previous);
        }
    }
    found
}

/// The models of `preference` that the catalog has, available, large
/// enough and able to do `can`, in order; notes why others were skipped.
fn candidates<'a>(
    preference: &[&'a str],
    models: &[Model],
    needed: u64,
    can: Capabilities,
    notes: &mut Vec<String>,
) -> Vec<&'a str> {
    let mut out = Vec::new();
    for id in preference {
        let Some(model) = models.iter().find(|m| m.id == *id) else {
            continue;
        };
        if !model.available {
            push_once(notes, format!("skipped {id} (unavailable)"));
        } else if !model.can(can & Capabilities::VISION) {
            push_once(notes, format!("skipped {id} (no vision)"));
        } else if !model.can(can & Capabilities::TOOLS) {
            push_once(notes, format!("skipped {id} (no tools)"));
        } else if (model.context_window as u64) < needed {
            push_once(
                notes,
                format!("skipped {id} (context {} < {needed})", model.context_window),
            );
        } else {
            out.push(*id);
        }
    }
    out
}

fn push_once(notes: &mut Vec<String>, note: String) {
    if !notes.contains(&note) {
        notes.push(note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pointsman_sdk::testing::{request, seed_catalog, without};

    fn config(threshold: &str) -> Config {
        Config::new(vec![(THRESHOLD_CONFIG.into(), threshold.into())])
    }

    fn route(req: &Request) -> Route {
        SeedMatrix::route(req, &seed_catalog(), &Config::default()).unwrap()
    }

    #[test]
    fn the_threshold_label_moves_the_high_boundary() {
        let text = "Design the cache layer across modules"; // score 4
        let at = |value: &str| route(&request(text).label(THRESHOLD_LABEL, value).build());
        assert_eq!(route(&request(text).build()).tier, Tier::Plan);
        assert_eq!(at("0.5").tier, Tier::Plan);
        assert_eq!(at("0.7").tier, Tier::Direct); // 4 < 4.2
        assert_eq!(at("0.6").tier, Tier::Plan); // 4 >= 3.6
        assert!(at("0.7").reasoning.ends_with("threshold:0.7"));
        // Not a plain decimal: ignored.
        assert_eq!(at("1e-1").tier, Tier::Plan);
        assert!(!at("1e-1").reasoning.contains("threshold"));
    }

    #[test]
    fn critical_work_is_planned_and_verified() {
        let r = route(&request("Rotate the production database credentials").build());
        assert_eq!(r.tier, Tier::PlanAndVerify);
        assert_eq!(r.planner.as_deref(), Some("deepseek-v3.2"));
        assert_eq!(r.executor, "glm-4.7");
        assert_eq!(r.fallbacks, ["deepseek-v3.2-exp", "claude-opus-4.5"]);
        assert!(
            r.reasoning.contains("keyword:credential"),
            "{}",
            r.reasoning
        );
        assert!(
            r.reasoning.contains("keyword:production"),
            "{}",
            r.reasoning
        );
    }

    #[test]
    fn new_architecture_is_planned() {
        let r = route(
            &request("Design the architecture of a plugin system across multiple modules").build(),
        );
        assert_eq!(r.tier, Tier::Plan);
        assert_eq!(r.planner.as_deref(), Some("deepseek-v3.2"));
        assert!(r.reasoning.starts_with("high:"), "{}", r.reasoning);
    }

    #[test]
    fn bug_fix_is_medium_and_direct() {
        let r = route(&request("Fix the off-by-one bug in the parser").build());
        assert_eq!(r.tier, Tier::Direct);
        assert_eq!(r.executor, "glm-4.7");
        assert_eq!(r.planner, None);
        assert!(r.reasoning.starts_with("medium:"), "{}", r.reasoning);
    }

    #[test]
    fn typo_is_low() {
        let r = route(&request("fix a typo in the README").build());
        assert_eq!(r.tier, Tier::Direct);
        assert!(r.reasoning.starts_with("low:"), "{}", r.reasoning);
    }

    #[test]
    fn large_context_alone_makes_high() {
        let r = route(&request("continue").tokens(40_000).build());
        assert_eq!(r.tier, Tier::Plan);
        assert!(r.reasoning.contains("tokens>=32000"), "{}", r.reasoning);
    }

    #[test]
    fn author_is_not_auth() {
        let (c, _) = classify(
            &request("who is the author of this function").build(),
            DEFAULT_THRESHOLD,
        );
        assert_eq!(c, Complexity::Low);
    }

    #[test]
    fn unavailable_executor_is_skipped() {
        let models = without(seed_catalog(), "glm-4.7");
        let r = SeedMatrix::route(&request("fix the bug").build(), &models, &Config::default())
            .unwrap();
        assert_eq!(r.executor, "deepseek-v3.2-exp");
        assert_eq!(r.fallbacks, ["claude-opus-4.5"]);
        assert!(r.reasoning.contains("skipped glm-4.7 (unavailable)"));
    }

    #[test]
    fn context_window_is_respected() {
        let r = route(&request("fix the bug").tokens(150_000).build());
        assert_eq!(r.executor, "deepseek-v3.2-exp");
        let r = route(&request("fix the bug").tokens(180_000).build());
        assert_eq!(r.executor, "claude-opus-4.5");
        assert!(r.fallbacks.is_empty());
        let err = SeedMatrix::route(
            &request("fix").tokens(250_000).build(),
            &seed_catalog(),
            &Config::default(),
        );
        assert!(err.unwrap_err().contains("no executor fits"));
    }

    #[test]
    fn planner_falls_back_to_premium() {
        let models = without(seed_catalog(), "deepseek-v3.2");
        let r = SeedMatrix::route(
            &request("deploy to production").build(),
            &models,
            &Config::default(),
        )
        .unwrap();
        assert_eq!(r.planner.as_deref(), Some("claude-opus-4.5"));
    }

    #[test]
    fn the_task_size_is_the_users_words_not_the_agents_scaffolding() {
        // An agent's 20,000-token system prompt and tool schemas around a
        // small ask: the host's task_tokens label is the ask's size.
        let ask = request("Fix the typo in main.rs")
            .tokens(20_000)
            .tools(12)
            .label(TASK_TOKENS_LABEL, "7")
            .build();
        let r = route(&ask);
        assert!(r.reasoning.starts_with("low:"), "{}", r.reasoning);
        let without_label = request("Fix the typo in main.rs").tokens(20_000).build();
        assert!(
            route(&without_label).reasoning.starts_with("medium:"),
            "the input tokens count when the host gives no task size"
        );
    }

    #[test]
    fn tool_result_turns_keep_the_tier_their_task_started_with() {
        let mut turn = request("Fix the typo in main.rs")
            .label(TASK_TIER_LABEL, "plan")
            .build();
        // Without a tool result last, the label changes nothing.
        assert_eq!(route(&turn).tier, Tier::Direct);
        turn.messages.push(pointsman_sdk::Message {
            role: "tool".into(),
            content: "1\tfn main() {}".into(),
        });
        turn.messages.push(pointsman_sdk::Message {
            role: "system".into(),
            content: "reminder".into(),
        });
        let r = route(&turn);
        assert_eq!(r.tier, Tier::Plan);
        assert!(
            r.reasoning.starts_with("high: continues a plan task"),
            "{}",
            r.reasoning
        );
        // A direct task stays direct however large its tool results grow.
        let mut big = request("Design a plugin architecture across modules")
            .tokens(60_000)
            .label(TASK_TIER_LABEL, "direct")
            .build();
        big.messages.push(pointsman_sdk::Message {
            role: "tool".into(),
            content: "...".into(),
        });
        let r = route(&big);
        assert_eq!(r.tier, Tier::Direct);
        assert!(
            r.reasoning.starts_with("medium: continues a direct task"),
            "{}",
            r.reasoning
        );
    }

    #[test]
    fn plan_without_planner_degrades_to_direct() {
        let models = without(without(seed_catalog(), "deepseek-v3.2"), "claude-opus-4.5");
        let r = SeedMatrix::route(
            &request("deploy to production").build(),
            &models,
            &Config::default(),
        )
        .unwrap();
        assert_eq!(r.tier, Tier::Direct);
        assert!(r.reasoning.contains("no planner fits"));
    }

    #[test]
    fn images_go_only_to_vision_models() {
        let r = route(&request("What does this screenshot show?").images(1).build());
        assert_eq!(r.executor, "claude-opus-4.5");
        assert!(r.fallbacks.is_empty());
        assert!(
            r.reasoning.contains("skipped glm-4.7 (no vision)"),
            "{}",
            r.reasoning
        );
        // Without vision anywhere, the router says so rather than guess.
        let models = without(seed_catalog(), "claude-opus-4.5");
        let err = SeedMatrix::route(
            &request("see").images(2).build(),
            &models,
            &Config::default(),
        );
        assert!(err.unwrap_err().contains("no vision"));
    }

    #[test]
    fn tools_go_only_to_models_that_call_them() {
        let mut models = seed_catalog();
        models[3].capabilities = Capabilities::JSON_OUTPUT; // glm-4.7 without tools
        let r = SeedMatrix::route(
            &request("fix the bug").tools(3).build(),
            &models,
            &Config::default(),
        )
        .unwrap();
        assert_eq!(r.executor, "deepseek-v3.2-exp");
        assert!(
            r.reasoning.contains("skipped glm-4.7 (no tools)"),
            "{}",
            r.reasoning
        );
        // No tools offered: glm-4.7 serves.
        let r = SeedMatrix::route(&request("fix the bug").build(), &models, &Config::default())
            .unwrap();
        assert_eq!(r.executor, "glm-4.7");
    }

    #[test]
    fn an_agents_dozens_of_tools_do_not_make_a_task_complex() {
        let text = "Rewrite the cache layer"; // novelty: 2
        assert_eq!(route(&request(text).tools(6).build()).tier, Tier::Plan);
        let agent = route(&request(text).tools(40).build());
        assert_eq!(agent.tier, Tier::Direct, "{}", agent.reasoning);
        assert!(!agent.reasoning.contains("tools"), "{}", agent.reasoning);
    }

    #[test]
    fn the_threshold_comes_from_config_and_the_label_overrides_it() {
        let text = "Design the cache layer across modules"; // score 4
        let with = |c: &Config, req: &Request| SeedMatrix::route(req, &seed_catalog(), c).unwrap();
        assert_eq!(
            with(&config("0.7"), &request(text).build()).tier,
            Tier::Direct
        );
        assert_eq!(
            with(&config("0.6"), &request(text).build()).tier,
            Tier::Plan
        );
        let labelled = request(text).label(THRESHOLD_LABEL, "0.6").build();
        assert_eq!(with(&config("0.7"), &labelled).tier, Tier::Plan);
        assert!(SeedMatrix::configure(&seed_catalog(), &config("0.3")).is_ok());
        let bad = SeedMatrix::configure(&seed_catalog(), &config("high")).unwrap_err();
        assert!(bad.contains("threshold"), "{bad}");
        assert!(SeedMatrix::configure(&seed_catalog(), &config("2")).is_err());
    }
}
