//! A planner that answers plans the task runner must not run: the tests'
//! hostile planner. Whatever the planner model replied, `parse_plan`
//! returns the plan the reply names: `cycle` (a → b → c → a), `unknown` (a
//! dependency on a subtask that is not in the plan), `duplicate` (two
//! subtasks with one id), `huge` (10,000 subtasks); anything else gets a
//! one-step plan. It checks nothing itself: the host must.

use pointsman_sdk::{
    ChatRequest, Config, Message, Model, Plan, Planner, Subtask, SubtaskKind, Task,
};

pub struct HostilePlanner;

fn subtask(id: &str, deps: &[&str], model: &str) -> Subtask {
    Subtask {
        id: id.to_string(),
        title: id.to_string(),
        instructions: format!("Do {id}."),
        kind: SubtaskKind::Code,
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        model: model.to_string(),
        critical: false,
    }
}

impl Planner for HostilePlanner {
    fn plan_request(
        task: &Task,
        _models: &[Model],
        _config: &Config,
    ) -> Result<ChatRequest, String> {
        Ok(ChatRequest {
            model: task
                .route
                .planner
                .clone()
                .unwrap_or_else(|| task.route.executor.clone()),
            messages: vec![Message {
                role: "user".into(),
                content: task.description.clone(),
            }],
            max_output_tokens: Some(512),
            temperature: None,
        })
    }

    fn parse_plan(
        task: &Task,
        reply: &str,
        _models: &[Model],
        _config: &Config,
    ) -> Result<Plan, String> {
        let m = task.route.executor.as_str();
        let subtasks = match reply.trim() {
            "cycle" => vec![
                subtask("a", &["c"], m),
                subtask("b", &["a"], m),
                subtask("c", &["b"], m),
            ],
            "unknown" => vec![subtask("a", &["ghost"], m)],
            "duplicate" => vec![subtask("a", &[], m), subtask("a", &[], m)],
            "huge" => (0..10_000)
                .map(|i| subtask(&i.to_string(), &[], m))
                .collect(),
            _ => vec![subtask("only", &[], m)],
        };
        Ok(Plan {
            subtasks,
            summary: format!("a {} plan", reply.trim()),
        })
    }
}

pointsman_sdk::register_policy!(planner: HostilePlanner);
