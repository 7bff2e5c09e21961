//! The workload format `pointsman simulate` reads: one JSON object a line,
//!
//! ```json
//! {"request": {...}, "api": "anthropic", "output_tokens": 812,
//!  "labels": {"team": "web"}, "session": "s-1"}
//! ```
//!
//! `request` is an OpenAI chat-completions body, or an Anthropic messages
//! body with `"api": "anthropic"` (`"openai"` or no `api` for OpenAI);
//! `output_tokens` (the recorded output), `labels` (string values) and
//! `session` are optional. A request the gateway would refuse with a 400
//! (say, an Anthropic body without `max_tokens`) makes its line malformed.

use std::path::Path;

use serde_json::Value;

use super::input::{self, Malformed};
use crate::features::{self, RequestContext};
use crate::policy::types::{Features, Message};
use crate::provider::{Format, Request};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its line.
    pub line: usize,
    /// The request, as the gateway would parse it.
    pub request: Request,
    /// The recorded output tokens.
    pub output_tokens: Option<u32>,
    /// Labels, as the gateway would pass them on.
    pub labels: Vec<(String, String)>,
    /// The agent session.
    pub session: Option<String>,
}

impl Record {
    /// The features the gateway extracts from the request.
    pub fn features(&self) -> Features {
        let ctx = RequestContext {
            id: format!("line-{}", self.line),
            labels: self.labels.clone(),
            session: self.session.clone(),
        };
        features::of(&self.request, ctx)
    }

    /// The whole conversation, uncut (what a planner is given).
    pub fn conversation(&self) -> Vec<Message> {
        features::conversation(&self.request)
    }

    /// The start of the latest user message, to show in examples.
    pub fn excerpt(&self) -> String {
        let conversation = self.conversation();
        let text = conversation
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map_or("", |m| m.content.as_str());
        let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut cut: String = one_line.chars().take(100).collect();
        if cut.len() < one_line.len() {
            cut.push('…');
        }
        cut
    }
}

/// Reads a workload: the usable records and the lines that were not.
pub fn load(path: &Path) -> anyhow::Result<(Vec<Record>, Vec<Malformed>)> {
    let mut records = Vec::new();
    let mut malformed = Vec::new();
    for line in input::read_lines(path)? {
        match line.text.and_then(|t| parse(line.number, &t)) {
            Ok(record) => records.push(record),
            Err(reason) => malformed.push(Malformed {
                line: line.number,
                reason,
            }),
        }
    }
    Ok((records, malformed))
}

fn parse(line: usize, text: &str) -> Result<Record, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let format = match value.get("api") {
        None | Some(Value::Null) => Format::OpenAi,
        Some(Value::String(api)) if api == "openai" => Format::OpenAi,
        Some(Value::String(api)) if api == "anthropic" => Format::Anthropic,
        Some(other) => {
            return Err(format!(
                "\"api\" is {other}, not \"openai\" or \"anthropic\""
            ));
        }
    };
    // A request the gateway would refuse is not part of the workload.
    let body = value.get("request").unwrap_or(&Value::Null);
    let request = Request::from_json(format, body).map_err(|e| format!("\"request\": {e}"))?;
    let output_tokens = match value.get("output_tokens") {
        None | Some(Value::Null) => None,
        Some(n) => Some(
            n.as_u64()
                .filter(|n| *n <= u32::MAX as u64)
                .ok_or("\"output_tokens\" is not a whole number of tokens")? as u32,
        ),
    };
    let labels = match value.get("labels") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(format!("label {k:?} is not a string")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("\"labels\" is not an object of strings".into()),
    };
    let session = match value.get("session") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err("\"session\" is not a non-empty string".into()),
    };
    Ok(Record {
        line,
        request,
        output_tokens,
        labels,
        session,
    })
}
