//! The seed architecture's planner tier as a planner policy.
//!
//! - Asks the planner model for a JSON plan (schema in [`SYSTEM_PROMPT`]).
//! - Parses the reply tolerantly: code fences and prose around the JSON are
//!   ignored; cycles and unknown dependencies are errors that say which.
//! - Assigns models by kind: design and review go to the route's planner,
//!   code, tests, docs and the rest to its executor.
//! - Under `plan-and-verify`, code subtasks are critical unless the plan says
//!   otherwise, and critical outputs are reviewed by the planner model.

use std::collections::{HashMap, HashSet};

use pointsman_sdk::{
    ChatRequest, Config, Message, Model, Plan, Planner, Retry, Review, Subtask, SubtaskKind, Task,
    Tier,
};
use serde::Deserialize;

/// Most subtasks a plan may have; more is a planner gone astray.
pub const MAX_SUBTASKS: usize = 32;

/// What the planner model is told.
pub const SYSTEM_PROMPT: &str = r#"You are the planner of a team of coding models. Break the task into subtasks that cheaper executor models can carry out independently.
Answer with one JSON object and nothing else:
{"summary": "<the approach in one or two sentences>",
 "subtasks": [{"id": "<short unique id>", "title": "<title>", "kind": "design|code|tests|docs|review|other",
               "instructions": "<precise instructions for the executor>", "depends_on": ["<ids of subtasks whose output this one needs>"],
               "critical": <true if a mistake here would be a security, data-loss or production risk>}]}
Keep the plan small (2 to 8 subtasks), order subtasks so that dependencies come first, and never create cycles."#;

const REVIEW_PROMPT: &str = r#"You review work done by an executor model. Check the output against the subtask's instructions for correctness, security and completeness.
Answer with one JSON object and nothing else: {"verdict": "accept|retry|escalate", "feedback": "<what is wrong, if anything>"}
Use "retry" when another attempt with your feedback is likely to fix it, "escalate" when the subtask needs a stronger model."#;

/// The seed planner.
pub struct SeedPlanner;

impl Planner for SeedPlanner {
    fn plan_request(
        task: &Task,
        models: &[Model],
        _config: &Config,
    ) -> Result<ChatRequest, String> {
        let planner = planner_model(task, models)?;
        let mut user = format!("# Task: {}\n\n{}\n", task.title, task.description);
        if task.route.tier == Tier::PlanAndVerify {
            user.push_str("\nThis task is critical: mark every subtask whose mistakes would matter as critical.\n");
        }
        for (path, text) in &task.context {
            user.push_str(&format!("\n## Context: {path}\n```\n{text}\n```\n"));
        }
        Ok(ChatRequest {
            model: planner,
            messages: vec![
                Message {
                    role: "system".into(),
                    content: SYSTEM_PROMPT.into(),
                },
                Message {
                    role: "user".into(),
                    content: user,
                },
            ],
            max_output_tokens: Some(4096),
            temperature: Some(0.0),
        })
    }

    fn parse_plan(
        task: &Task,
        reply: &str,
        models: &[Model],
        _config: &Config,
    ) -> Result<Plan, String> {
        let raw: RawPlan = serde_json::from_str(extract_json(reply)?)
            .map_err(|e| format!("the plan is not valid JSON of the expected shape: {e}"))?;
        if raw.subtasks.is_empty() {
            return Err("the plan has no subtasks".into());
        }
        if raw.subtasks.len() > MAX_SUBTASKS {
            return Err(format!(
                "the plan has {} subtasks (at most {MAX_SUBTASKS})",
                raw.subtasks.len()
            ));
        }
        let planner = planner_model(task, models)?;
        let executor = task.route.executor.clone();
        let mut ids = HashSet::new();
        let mut subtasks = Vec::with_capacity(raw.subtasks.len());
        for (i, s) in raw.subtasks.into_iter().enumerate() {
            let id = s.id.unwrap_or_else(|| format!("s{}", i + 1));
            if !ids.insert(id.clone()) {
                return Err(format!("subtask id {id:?} is used twice"));
            }
            let kind = kind(s.kind.as_deref());
            let model = match kind {
                SubtaskKind::Design | SubtaskKind::Review => planner.clone(),
                _ => executor.clone(),
            };
            let critical = s
                .critical
                .unwrap_or(task.route.tier == Tier::PlanAndVerify && kind == SubtaskKind::Code);
            subtasks.push(Subtask {
                title: s.title.unwrap_or_else(|| id.clone()),
                instructions: s.instructions.or(s.description).unwrap_or_default(),
                id,
                kind,
                depends_on: s.depends_on,
                model,
                critical,
            });
        }
        check_graph(&subtasks)?;
        Ok(Plan {
            subtasks,
            summary: raw.summary.unwrap_or_default(),
        })
    }

    fn review_request(
        task: &Task,
        subtask: &Subtask,
        output: &str,
        models: &[Model],
        _config: &Config,
    ) -> Result<Option<ChatRequest>, String> {
        if !subtask.critical {
            return Ok(None);
        }
        let reviewer = planner_model(task, models)?;
        Ok(Some(ChatRequest {
            model: reviewer,
            messages: vec![
                Message {
                    role: "system".into(),
                    content: REVIEW_PROMPT.into(),
                },
                Message {
                    role: "user".into(),
                    content: format!(
                        "# Task: {}\n\n## Subtask {}: {}\n{}\n\n## Output\n{}",
                        task.title, subtask.id, subtask.title, subtask.instructions, output
                    ),
                },
            ],
            max_output_tokens: Some(1024),
            temperature: Some(0.0),
        }))
    }

    fn review(
        task: &Task,
        subtask: &Subtask,
        _output: &str,
        reviewer_reply: &str,
        _models: &[Model],
        _config: &Config,
    ) -> Result<Review, String> {
        let verdict: RawVerdict = extract_json(reviewer_reply)
            .ok()
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| "the review is not a JSON verdict".to_string())?;
        let feedback = verdict.feedback.unwrap_or_default();
        match verdict.verdict.to_ascii_lowercase().as_str() {
            "accept" => Ok(Review::Accept),
            "retry" => match task.route.fallbacks.iter().find(|m| **m != subtask.model) {
                Some(model) => Ok(Review::Retry(Retry {
                    model: model.clone(),
                    feedback,
                })),
                None => Ok(Review::Escalate(format!(
                    "no other executor to retry on: {feedback}"
                ))),
            },
            "escalate" => Ok(Review::Escalate(feedback)),
            other => Err(format!("unknown verdict {other:?}")),
        }
    }
}

pointsman_sdk::register_policy!(planner: SeedPlanner);

#[derive(Deserialize)]
struct RawPlan {
    summary: Option<String>,
    #[serde(default)]
    subtasks: Vec<RawSubtask>,
}

#[derive(Deserialize)]
struct RawSubtask {
    id: Option<String>,
    title: Option<String>,
    kind: Option<String>,
    instructions: Option<String>,
    description: Option<String>,
    #[serde(default, alias = "dependencies", alias = "depends")]
    depends_on: Vec<String>,
    critical: Option<bool>,
}

#[derive(Deserialize)]
struct RawVerdict {
    verdict: String,
    feedback: Option<String>,
}

fn kind(name: Option<&str>) -> SubtaskKind {
    match name.map(|n| n.to_ascii_lowercase()).as_deref() {
        Some("design" | "architecture" | "plan") => SubtaskKind::Design,
        Some("code" | "implement" | "implementation" | "fix") => SubtaskKind::Code,
        Some("tests" | "test" | "testing") => SubtaskKind::Tests,
        Some("docs" | "doc" | "documentation") => SubtaskKind::Docs,
        Some("review" | "verify") => SubtaskKind::Review,
        _ => SubtaskKind::Other,
    }
}

/// The route's planner, or failing that the first available planner-role
/// model of the catalog.
fn planner_model(task: &Task, models: &[Model]) -> Result<String, String> {
    if let Some(p) = &task.route.planner {
        return Ok(p.clone());
    }
    models
        .iter()
        .find(|m| m.available && m.has_role("planner"))
        .map(|m| m.id.clone())
        .ok_or_else(|| "the route names no planner and no planner model is available".into())
}

/// The outermost JSON object in `reply`, skipping code fences and prose.
pub fn extract_json(reply: &str) -> Result<&str, String> {
    let start = reply
        .find('{')
        .ok_or_else(|| "the reply contains no JSON object".to_string())?;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, c) in reply[start..].char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(&reply[start..=start + i]);
                }
            }
            _ => {}
        }
    }
    Err("the reply's JSON object is not closed".into())
}

/// Rejects unknown dependencies and cycles, naming them.
fn check_graph(subtasks: &[Subtask]) -> Result<(), String> {
    let index: HashMap<&str, usize> = subtasks
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    for s in subtasks {
        for dep in &s.depends_on {
            if !index.contains_key(dep.as_str()) {
                return Err(format!(
                    "subtask {:?} depends on unknown subtask {dep:?}",
                    s.id
                ));
            }
            if dep == &s.id {
                return Err(format!("subtask {:?} depends on itself", s.id));
            }
        }
    }
    // Kahn's algorithm: whatever cannot be scheduled is on a cycle.
    let mut pending: Vec<usize> = subtasks.iter().map(|s| s.depends_on.len()).collect();
    let mut ready: Vec<usize> = (0..subtasks.len()).filter(|i| pending[*i] == 0).collect();
    let mut done = 0;
    while let Some(i) = ready.pop() {
        done += 1;
        for (j, s) in subtasks.iter().enumerate() {
            if s.depends_on.iter().any(|d| index[d.as_str()] == i) {
                pending[j] -= 1;
                if pending[j] == 0 {
                    ready.push(j);
                }
            }
        }
    }
    if done < subtasks.len() {
        let cycle: Vec<&str> = subtasks
            .iter()
            .enumerate()
            .filter(|(i, _)| pending[*i] > 0)
            .map(|(_, s)| s.id.as_str())
            .collect();
        return Err(format!("the plan has a dependency cycle among {cycle:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pointsman_sdk::testing::seed_catalog;
    use pointsman_sdk::{Route, Tier};

    fn task(tier: Tier) -> Task {
        Task {
            id: "t1".into(),
            title: "Add OAuth login".into(),
            description: "Add an OAuth login flow.".into(),
            context: vec![("src/auth.rs".into(), "fn login() {}".into())],
            labels: Vec::new(),
            route: Route {
                tier,
                executor: "glm-4.7".into(),
                fallbacks: vec!["deepseek-v3.2-exp".into(), "claude-opus-4.5".into()],
                planner: Some("deepseek-v3.2".into()),
                reasoning: String::new(),
                deadline_ms: None,
                max_cost_usd: None,
                max_output_tokens: None,
                labels: Vec::new(),
            },
        }
    }

    const DIAMOND: &str = r#"Here is the plan:
```json
{"summary": "design, then code and tests, then docs",
 "subtasks": [
  {"id": "design", "title": "Design", "kind": "design", "instructions": "Design the flow {carefully}", "depends_on": []},
  {"id": "code", "title": "Code", "kind": "code", "instructions": "Write it", "depends_on": ["design"]},
  {"id": "tests", "title": "Tests", "kind": "tests", "instructions": "Test it", "depends_on": ["design"]},
  {"id": "docs", "title": "Docs", "kind": "docs", "instructions": "Document it", "depends_on": ["code", "tests"]}
 ]}
```
Let me know if you need more."#;

    #[test]
    fn plan_request_goes_to_the_planner() {
        let req = SeedPlanner::plan_request(&task(Tier::Plan), &seed_catalog(), &Config::default())
            .unwrap();
        assert_eq!(req.model, "deepseek-v3.2");
        assert!(req.messages[1].content.contains("src/auth.rs"));
    }

    #[test]
    fn parses_a_fenced_plan_with_prose() {
        let plan = SeedPlanner::parse_plan(
            &task(Tier::Plan),
            DIAMOND,
            &seed_catalog(),
            &Config::default(),
        )
        .unwrap();
        let models: Vec<&str> = plan.subtasks.iter().map(|s| s.model.as_str()).collect();
        assert_eq!(models, ["deepseek-v3.2", "glm-4.7", "glm-4.7", "glm-4.7"]);
        assert_eq!(plan.subtasks[3].depends_on, ["code", "tests"]);
        assert!(plan.subtasks.iter().all(|s| !s.critical));
        assert_eq!(plan.subtasks[0].instructions, "Design the flow {carefully}");
    }

    #[test]
    fn verify_tier_marks_code_critical() {
        let plan = SeedPlanner::parse_plan(
            &task(Tier::PlanAndVerify),
            DIAMOND,
            &seed_catalog(),
            &Config::default(),
        )
        .unwrap();
        let critical: Vec<&str> = plan
            .subtasks
            .iter()
            .filter(|s| s.critical)
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(critical, ["code"]);
    }

    #[test]
    fn rejects_cycles_and_unknown_dependencies() {
        let cyclic = r#"{"subtasks": [{"id": "a", "depends_on": ["b"]}, {"id": "b", "depends_on": ["a"]}, {"id": "c"}]}"#;
        let err = SeedPlanner::parse_plan(
            &task(Tier::Plan),
            cyclic,
            &seed_catalog(),
            &Config::default(),
        )
        .unwrap_err();
        assert!(
            err.contains("cycle") && err.contains("\"a\"") && err.contains("\"b\""),
            "{err}"
        );
        let unknown = r#"{"subtasks": [{"id": "a", "depends_on": ["zzz"]}]}"#;
        let err = SeedPlanner::parse_plan(
            &task(Tier::Plan),
            unknown,
            &seed_catalog(),
            &Config::default(),
        )
        .unwrap_err();
        assert!(err.contains("unknown subtask \"zzz\""), "{err}");
        let err = SeedPlanner::parse_plan(
            &task(Tier::Plan),
            "no idea",
            &seed_catalog(),
            &Config::default(),
        )
        .unwrap_err();
        assert!(err.contains("no JSON"), "{err}");
    }

    #[test]
    fn reviews_only_critical_subtasks() {
        let t = task(Tier::PlanAndVerify);
        let plan =
            SeedPlanner::parse_plan(&t, DIAMOND, &seed_catalog(), &Config::default()).unwrap();
        let code = &plan.subtasks[1];
        let req =
            SeedPlanner::review_request(&t, code, "fn x() {}", &seed_catalog(), &Config::default())
                .unwrap();
        assert_eq!(req.unwrap().model, "deepseek-v3.2");
        let docs = &plan.subtasks[3];
        assert!(
            SeedPlanner::review_request(&t, docs, "", &seed_catalog(), &Config::default())
                .unwrap()
                .is_none()
        );

        let retry = SeedPlanner::review(
            &t,
            code,
            "",
            r#"{"verdict": "retry", "feedback": "no tests"}"#,
            &seed_catalog(),
            &Config::default(),
        );
        assert_eq!(
            retry.unwrap(),
            Review::Retry(Retry {
                model: "deepseek-v3.2-exp".into(),
                feedback: "no tests".into()
            })
        );
        let ok = SeedPlanner::review(
            &t,
            code,
            "",
            "```json\n{\"verdict\": \"accept\"}\n```",
            &seed_catalog(),
            &Config::default(),
        );
        assert_eq!(ok.unwrap(), Review::Accept);
        assert!(
            SeedPlanner::review(
                &t,
                code,
                "",
                "looks fine",
                &seed_catalog(),
                &Config::default()
            )
            .is_err()
        );
    }
}
