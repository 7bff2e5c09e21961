//! The client side

use super::*;

/// A client API of the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    OpenAi,
    Anthropic,
}

/// Both client APIs, for tests that alternate.
pub(crate) const API: [Api; 2] = [Api::OpenAi, Api::Anthropic];

/// The daemon's answer, read to the end.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
    pub(crate) elapsed: Duration,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `x-pointsman-attempts`.
    pub(crate) fn attempts(&self) -> Result<u32, String> {
        self.header("x-pointsman-attempts")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no x-pointsman-attempts header: {self:?}"))
    }

    pub(crate) fn json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("{e}: {}", self.body))
    }
}

/// A client of one daemon.
pub(crate) struct Gateway {
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
}

impl Gateway {
    pub(crate) fn new(daemon: &Daemon) -> Self {
        Gateway {
            url: daemon.url.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// Asks `model` to answer `text` on `api`.
    pub(crate) async fn ask(
        &self,
        api: Api,
        model: &str,
        text: &str,
        stream: bool,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.request(api, model, text, stream);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let started = Instant::now();
        let response = request.send().await.expect("the daemon answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("the daemon ends its body");
        Answer {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        }
    }

    /// The request that asks `model` to answer `text` on `api`.
    pub(crate) fn request(
        &self,
        api: Api,
        model: &str,
        text: &str,
        stream: bool,
    ) -> reqwest::RequestBuilder {
        let (path, body) = match api {
            Api::OpenAi => (
                "/v1/chat/completions",
                json!({"model": model, "stream": stream,
                       "messages": [{"role": "user", "content": text}]}),
            ),
            Api::Anthropic => (
                "/v1/messages",
                json!({"model": model, "stream": stream, "max_tokens": 64,
                       "messages": [{"role": "user", "content": text}]}),
            ),
        };
        self.http
            .post(format!("{}{path}", self.url))
            .header("anthropic-version", "2023-06-01")
            .bearer_auth("sk-client")
            .json(&body)
    }

    /// The breaker state and trips of `model`'s endpoint `index`.
    pub(crate) async fn breaker(&self, model: &str, index: usize) -> (String, u64) {
        let all: Value = self
            .http
            .get(format!("{}/v1/providers", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entry = all["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"] == model)
            .unwrap_or_else(|| panic!("{model} missing from {all}"));
        let endpoint = &entry["endpoints"][index];
        (
            endpoint["breaker"].as_str().unwrap().to_string(),
            endpoint["trips"].as_u64().unwrap(),
        )
    }
}

/// `(event name, data)` of every SSE frame with data.
pub(crate) fn sse(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter_map(|frame| {
            let mut event = String::new();
            let mut data = None;
            for line in frame.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(d.to_string());
                }
            }
            data.map(|d| (event, d))
        })
        .collect()
}

/// Checks a complete answer that echoes `marker`.
pub(crate) fn check_answer(
    api: Api,
    stream: bool,
    answer: &Answer,
    marker: &str,
) -> Result<(), String> {
    if answer.status != 200 {
        return Err(format!("status {}: {}", answer.status, answer.body));
    }
    let text = match (api, stream) {
        (Api::OpenAi, false) => answer.json()?["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        (Api::Anthropic, false) => answer.json()?["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        (Api::OpenAi, true) => {
            let frames = sse(&answer.body);
            if frames.last().map(|(_, d)| d.as_str()) != Some("[DONE]") {
                return Err(format!("no [DONE] at the end: {}", answer.body));
            }
            let mut text = String::new();
            for (_, data) in &frames[..frames.len() - 1] {
                let chunk: Value =
                    serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
                if chunk.get("error").is_some() {
                    return Err(format!("an error in a complete stream: {}", answer.body));
                }
                text += chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap_or_default();
            }
            text
        }
        (Api::Anthropic, true) => {
            let frames = sse(&answer.body);
            if frames.last().map(|(e, _)| e.as_str()) != Some("message_stop")
                || frames.iter().any(|(e, _)| e == "error")
            {
                return Err(format!("not a complete stream: {}", answer.body));
            }
            let mut text = String::new();
            for (_, data) in &frames {
                let event: Value =
                    serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
                text += event["delta"]["text"].as_str().unwrap_or_default();
            }
            text
        }
    };
    if !text.contains(&format!("echo: {marker}")) {
        return Err(format!("the answer does not echo {marker}: {text:?}"));
    }
    Ok(())
}

/// Checks a stream that started, then broke: it ends with an error event in
/// the client's format, never with the format's clean end.
pub(crate) fn check_broken(api: Api, answer: &Answer) -> Result<(), String> {
    if answer.status != 200 {
        return Err(format!("status {}: {}", answer.status, answer.body));
    }
    let frames = sse(&answer.body);
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return Err(format!("an empty stream: {:?}", answer.body));
    };
    let error: Value = serde_json::from_str(&last.1).map_err(|e| format!("{e}: {}", last.1))?;
    let fine = match api {
        Api::OpenAi => {
            let started: Value = serde_json::from_str(&first.1).unwrap_or_default();
            started["choices"].is_array()
                && error["error"]["message"].is_string()
                && !frames.iter().any(|(_, d)| d == "[DONE]")
        }
        Api::Anthropic => {
            first.0 == "message_start"
                && last.0 == "error"
                && error["type"] == "error"
                && error["error"]["message"].is_string()
                && !frames.iter().any(|(e, _)| e == "message_stop")
        }
    };
    if !fine {
        return Err(format!("not a broken stream: {}", answer.body));
    }
    Ok(())
}

/// Checks that no provider key reached the client, in the body or a header.
pub(crate) fn check_no_key(answer: &Answer) -> Result<(), String> {
    let headers = format!("{:?}", answer.headers);
    for key in [OPENAI_KEY, ANTHROPIC_KEY] {
        if answer.body.contains(key) || headers.contains(key) {
            return Err(format!("a provider key reached the client: {answer:?}"));
        }
    }
    Ok(())
}

/// The error a client should get: status, OpenAI type and code, Anthropic
/// type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ErrorShape {
    pub(crate) status: u16,
    pub(crate) openai: (&'static str, Option<&'static str>),
    pub(crate) anthropic: &'static str,
}

pub(crate) const BAD_GATEWAY: ErrorShape = ErrorShape {
    status: 502,
    openai: ("api_error", Some("upstream_error")),
    anthropic: "api_error",
};
pub(crate) const UNAVAILABLE: ErrorShape = ErrorShape {
    status: 503,
    openai: ("api_error", Some("overloaded")),
    anthropic: "overloaded_error",
};
pub(crate) const TIMED_OUT: ErrorShape = ErrorShape {
    status: 504,
    openai: ("api_error", Some("timeout")),
    anthropic: "api_error",
};
pub(crate) const RATE_LIMITED: ErrorShape = ErrorShape {
    status: 429,
    openai: ("rate_limit_error", Some("rate_limit_exceeded")),
    anthropic: "rate_limit_error",
};
pub(crate) const INVALID: ErrorShape = ErrorShape {
    status: 400,
    openai: ("invalid_request_error", None),
    anthropic: "invalid_request_error",
};

/// Checks an error response in the client's format (a JSON body, streaming
/// request or not: nothing was streamed yet).
pub(crate) fn check_error(api: Api, answer: &Answer, shape: ErrorShape) -> Result<(), String> {
    let body = answer.json()?;
    let fine = answer.status == shape.status
        && match api {
            Api::OpenAi => {
                body["error"]["message"].is_string()
                    && body["error"]["type"] == shape.openai.0
                    && body["error"]["code"].as_str() == shape.openai.1
            }
            Api::Anthropic => {
                body["type"] == "error"
                    && body["error"]["message"].is_string()
                    && body["error"]["type"] == shape.anthropic
            }
        };
    if !fine {
        return Err(format!(
            "expected {shape:?}, got {}: {}",
            answer.status, answer.body
        ));
    }
    Ok(())
}
