//! Fitting a subtask's prompt to its model's context window.
//!
//! The prompt is the *header* (the task, the plan, the subtask's
//! instructions and any review feedback) followed by the outputs of the
//! subtask's dependencies. When it does not fit the model's window (less
//! [`EXPECTED_OUTPUT_TOKENS`] kept for the answer):
//!
//! 1. the dependencies' outputs share what the header leaves, equally;
//!    an output longer than its share keeps its first two thirds and last
//!    third of that share, with a marker saying how much was cut (the start
//!    usually states what was done, the end what came of it);
//! 2. if the header alone does not fit, the prompt does not fit this model
//!    ([`Fitted::overflow`]) and the orchestrator moves the subtask to a
//!    model of its chain whose window holds it.

use crate::config::ModelConfig;
use crate::policy::types::{Message, Plan, Subtask, Task};
use crate::tokens::count as count_tokens;

use super::task::EXPECTED_OUTPUT_TOKENS;

/// A subtask's prompt for one model.
pub struct Fitted {
    /// The messages to send.
    pub messages: Vec<Message>,
    /// What was cut, if anything.
    pub note: Option<String>,
    /// The header alone is larger than the model's window.
    pub overflow: bool,
}

/// Builds the prompt of `subtask` for `model`.
pub fn fit(
    task: &Task,
    plan: &Plan,
    subtask: &Subtask,
    deps: &[(String, String)],
    feedback: Option<&str>,
    model: &ModelConfig,
) -> Fitted {
    let system = "You are an executor in a team of coding models. Do exactly the subtask you are given, using the outputs of the subtasks it depends on. Answer with the work itself.".to_string();
    let mut header = format!("# Task: {}\n\n{}\n", task.title, task.description);
    for (path, text) in &task.context {
        header.push_str(&format!("\n## Context: {path}\n```\n{text}\n```\n"));
    }
    header.push_str(&format!("\n# The plan\n{}\n", plan.summary));
    for s in &plan.subtasks {
        header.push_str(&format!("- {} ({}): {}\n", s.id, kind(s), s.title));
    }
    header.push_str(&format!(
        "\n# Your subtask: {} ({})\n{}\n",
        subtask.title, subtask.id, subtask.instructions
    ));
    if let Some(feedback) = feedback {
        header.push_str(&format!(
            "\n# A reviewer rejected an earlier attempt\n{feedback}\n"
        ));
    }
    let window = (model.context_window as usize).saturating_sub(EXPECTED_OUTPUT_TOKENS as usize);
    let header_tokens = count_tokens(&system) as usize + count_tokens(&header) as usize + 8;
    let dep_tokens: Vec<usize> = deps
        .iter()
        .map(|(_, o)| count_tokens(o) as usize + 8)
        .collect();
    let total: usize = header_tokens + dep_tokens.iter().sum::<usize>();
    let mut note = None;
    let mut body = header;
    if total <= window {
        for (id, output) in deps {
            body.push_str(&format!("\n# Output of {id}\n{output}\n"));
        }
    } else if header_tokens < window {
        let share = (window - header_tokens) / deps.len().max(1);
        let mut cut = 0;
        for ((id, output), tokens) in deps.iter().zip(&dep_tokens) {
            let text = if *tokens > share {
                cut += tokens - share;
                trim(output, share, *tokens)
            } else {
                output.clone()
            };
            body.push_str(&format!("\n# Output of {id}\n{text}\n"));
        }
        note = Some(format!(
            "dependency outputs trimmed by about {cut} tokens to fit {}'s {}-token window",
            model.id, model.context_window
        ));
    } else {
        return Fitted {
            messages: Vec::new(),
            note: Some(format!(
                "the subtask's prompt ({header_tokens} tokens) does not fit {}'s window",
                model.id
            )),
            overflow: true,
        };
    }
    Fitted {
        messages: vec![
            Message {
                role: "system".into(),
                content: system,
            },
            Message {
                role: "user".into(),
                content: body,
            },
        ],
        note,
        overflow: false,
    }
}

fn kind(s: &Subtask) -> String {
    format!("{:?}", s.kind).to_lowercase()
}

/// `text` of `tokens` tokens cut to about `share` tokens: the first two
/// thirds and the last third of the share, by characters in proportion.
fn trim(text: &str, share: usize, tokens: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    let keep = chars.len() * share / tokens.max(1);
    let head = keep * 2 / 3;
    let tail = keep - head;
    let cut = tokens.saturating_sub(share);
    let head: String = chars[..head.min(chars.len())].iter().collect();
    let tail: String = chars[chars.len().saturating_sub(tail)..].iter().collect();
    format!("{head}\n[... about {cut} tokens cut to fit the context window ...]\n{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::types::{Route, SubtaskKind, Tier};

    fn model(window: u32) -> ModelConfig {
        toml::from_str(&format!(
            "id = \"small\"\nprovider = \"p\"\ninput_usd_per_mtok = 1.0\noutput_usd_per_mtok = 1.0\ncontext_window = {window}"
        ))
        .unwrap()
    }

    fn setup() -> (Task, Plan, Subtask) {
        let subtask = Subtask {
            id: "docs".into(),
            title: "Docs".into(),
            instructions: "Document it".into(),
            kind: SubtaskKind::Docs,
            depends_on: vec!["code".into()],
            model: "small".into(),
            critical: false,
        };
        let task = Task {
            id: "t".into(),
            title: "T".into(),
            description: "Do it".into(),
            context: Vec::new(),
            labels: Vec::new(),
            route: Route {
                tier: Tier::Plan,
                executor: "small".into(),
                fallbacks: Vec::new(),
                planner: None,
                reasoning: String::new(),
                deadline_ms: None,
                max_cost_usd: None,
                max_output_tokens: None,
                labels: Vec::new(),
            },
        };
        let plan = Plan {
            subtasks: vec![subtask.clone()],
            summary: "s".into(),
        };
        (task, plan, subtask)
    }

    #[test]
    fn small_prompts_are_untouched() {
        let (task, plan, subtask) = setup();
        let deps = vec![("code".to_string(), "fn main() {}".to_string())];
        let fitted = fit(&task, &plan, &subtask, &deps, None, &model(100_000));
        assert!(fitted.note.is_none());
        assert!(fitted.messages[1].content.contains("fn main() {}"));
    }

    #[test]
    fn long_dependency_outputs_are_trimmed_head_and_tail() {
        let (task, plan, subtask) = setup();
        let long = format!("START {} END", "word ".repeat(5000));
        let deps = vec![("code".to_string(), long)];
        let fitted = fit(&task, &plan, &subtask, &deps, None, &model(3_000));
        let body = &fitted.messages[1].content;
        assert!(
            body.contains("START") && body.contains("END"),
            "head and tail kept"
        );
        assert!(body.contains("tokens cut to fit"));
        assert!(count_tokens(body) < 3_000 - EXPECTED_OUTPUT_TOKENS + 50);
        assert!(fitted.note.unwrap().contains("trimmed"));
    }

    #[test]
    fn a_header_too_large_overflows() {
        let (mut task, plan, subtask) = setup();
        task.description = "word ".repeat(5000);
        let fitted = fit(&task, &plan, &subtask, &[], None, &model(3_000));
        assert!(fitted.overflow);
    }
}
