//! Request handling

use super::*;

pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(connection): ConnectInfo<ResetSwitch>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let counting = path == "/v1/messages/count_tokens" || path == "/messages/count_tokens";
    let api = if path.ends_with("/chat/completions") {
        Some(Api::OpenAi)
    } else if path.ends_with("/responses") {
        Some(Api::Responses)
    } else if path == "/v1/messages" || path == "/messages" || counting {
        Some(Api::Anthropic)
    } else {
        None
    };
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let seq = shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
    let record = RecordedRequest {
        seq,
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: parsed.clone().unwrap_or(Value::Null),
        raw_body,
        api,
        received_at: Instant::now(),
        status: None,
        usage: None,
        chat: match (api, &parsed) {
            (Some(Api::Responses), Some(body)) => Some(chat_view(body)),
            _ => None,
        },
    };
    lock(&shared.log).push(record.clone());
    let finish = |status: u16, usage: Option<Usage>| {
        if let Some(r) = lock(&shared.log).iter_mut().find(|r| r.seq == seq) {
            r.status = Some(status);
            r.usage = usage;
        }
    };

    let Some(api) = api else {
        finish(404, None);
        return json_response(
            404,
            openai_error(404, &format!("Unknown request URL: {method} {path}.")),
            seq,
            None,
            &[],
        );
    };
    if method != Method::POST {
        finish(405, None);
        let message = format!("Method {method} not allowed on {path}.");
        return json_response(405, error_body(api, 405, &message), seq, Some(api), &[]);
    }
    let config = lock(&shared.config).clone();
    if let Err((status, message)) = check_auth(api, &headers, &config) {
        finish(status, None);
        let body = match (api, status) {
            (Api::OpenAi | Api::Responses, 401) => json!({"error": {
                "message": message, "type": "invalid_request_error", "param": null,
                "code": if headers.contains_key(header::AUTHORIZATION) { json!("invalid_api_key") } else { Value::Null },
            }}),
            _ => error_body(api, status, &message),
        };
        return json_response(status, body, seq, Some(api), &[]);
    }
    let Some(body) = parsed else {
        finish(400, None);
        let message = "We could not parse the JSON body of your request.";
        return json_response(400, error_body(api, 400, message), seq, Some(api), &[]);
    };
    if counting {
        // The input a Messages request with this body would be billed for.
        finish(200, None);
        let input = request_words(&body) + 10;
        return json_response(200, json!({"input_tokens": input}), seq, Some(api), &[]);
    }
    if config.strict {
        let checked = match api {
            Api::OpenAi => validate_openai(&body),
            Api::Anthropic => validate_anthropic(&body),
            Api::Responses => validate_responses(&body),
        };
        if let Err(message) = checked {
            finish(400, None);
            return json_response(400, error_body(api, 400, &message), seq, Some(api), &[]);
        }
    }

    let reply = {
        let queued = lock(&shared.queue).pop_front();
        match queued {
            Some(reply) => reply,
            None => lock(&shared.matchers)
                .iter_mut()
                .find_map(|m| m(&record))
                .unwrap_or_default(),
        }
    };

    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let chat = record.chat.as_ref().unwrap_or(&body);
    let answer = match &reply.kind {
        ReplyKind::Default => Some(default_answer(chat)),
        ReplyKind::Answer(a) => Some(a.clone()),
        _ => None,
    };
    let usage = answer.as_ref().map(|a| {
        reply.usage.unwrap_or_else(|| {
            let mut u = default_usage(chat, a);
            u.cached = config.cached_tokens.min(u.input);
            u
        })
    });
    let status = match &reply.kind {
        ReplyKind::Default | ReplyKind::Answer(_) => Some(200),
        ReplyKind::Error { status, .. }
        | ReplyKind::ErrorBody { status, .. }
        | ReplyKind::Raw { status, .. } => Some(*status),
        ReplyKind::Reset => None,
    };
    if let Some(status) = status {
        finish(status, usage);
    }

    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if let ReplyKind::Reset = reply.kind {
        connection.reset();
        // Writing this fails, and the connection closes with a reset.
        return json_response(500, json!({}), seq, Some(api), &[]);
    }
    let chunk_delay = reply.chunk_delay.unwrap_or(config.chunk_delay);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();

    if let (Some(answer), Some(usage)) = (&answer, usage) {
        if stream {
            let events = match api {
                Api::OpenAi => {
                    let include_usage = body
                        .pointer("/stream_options/include_usage")
                        .and_then(Value::as_bool)
                        == Some(true);
                    openai_stream(seq, &model, answer, usage, include_usage)
                }
                Api::Anthropic => anthropic_stream(seq, &model, answer, usage),
                Api::Responses => responses_stream(seq, &model, &body, answer, usage),
            };
            return sse_response(events, chunk_delay, reply.partial, seq, api, &reply.headers);
        }
        let json = match api {
            Api::OpenAi => openai_completion(seq, &model, answer, usage),
            Api::Anthropic => anthropic_message(seq, &model, answer, usage),
            Api::Responses => responses_object(seq, &model, &body, answer, usage),
        };
        return match reply.partial {
            Some((n, ending)) => {
                let mut bytes = json.to_string().into_bytes();
                bytes.truncate(n);
                let content_type = "application/json";
                streamed_response(
                    200,
                    content_type,
                    vec![bytes],
                    Duration::ZERO,
                    ending,
                    seq,
                    Some(api),
                    &reply.headers,
                )
            }
            None => json_response(200, json, seq, Some(api), &reply.headers),
        };
    }
    match reply.kind {
        ReplyKind::Error { status, message } => json_response(
            status,
            error_body(api, status, &message),
            seq,
            Some(api),
            &reply.headers,
        ),
        ReplyKind::ErrorBody { status, body } => {
            json_response(status, body, seq, Some(api), &reply.headers)
        }
        ReplyKind::Raw {
            status,
            content_type,
            body,
        } => streamed_response(
            status,
            &content_type,
            vec![body.into_bytes()],
            Duration::ZERO,
            Ending::Complete,
            seq,
            Some(api),
            &reply.headers,
        ),
        ReplyKind::Default | ReplyKind::Answer(_) | ReplyKind::Reset => {
            unreachable!("answered above")
        }
    }
}

pub(crate) fn check_auth(
    api: Api,
    headers: &HeaderMap,
    config: &UpstreamConfig,
) -> Result<(), (u16, String)> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match api {
        Api::OpenAi | Api::Responses => {
            let Some(auth) = value("authorization") else {
                return Err((
                    401,
                    "You didn't provide an API key. You need to provide your API key in an \
                     Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                        .into(),
                ));
            };
            let key = auth.strip_prefix("Bearer ").unwrap_or("").trim();
            let ok = match &config.openai_key {
                Some(expected) => key == expected,
                None => !key.is_empty(),
            };
            if ok {
                Ok(())
            } else {
                Err((401, format!("Incorrect API key provided: {}.", redact(key))))
            }
        }
        Api::Anthropic => {
            let bearer = value("authorization").and_then(|v| v.strip_prefix("Bearer "));
            let key = match (value("x-api-key"), bearer) {
                (Some(key), _) => key,
                (None, Some(key)) if config.anthropic_bearer => key.trim(),
                _ => return Err((401, "x-api-key header is required".into())),
            };
            let ok = match &config.anthropic_key {
                Some(expected) => key == expected,
                None => !key.is_empty(),
            };
            if !ok {
                return Err((401, "invalid x-api-key".into()));
            }
            match value("anthropic-version") {
                Some(v) if !v.is_empty() => Ok(()),
                _ => Err((400, "anthropic-version: header is required".into())),
            }
        }
    }
}

pub(crate) fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

/// The API's error body for `status`.
pub fn error_body(api: Api, status: u16, message: &str) -> Value {
    match api {
        Api::OpenAi | Api::Responses => openai_error(status, message),
        Api::Anthropic => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                402 => "billing_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                504 => "timeout_error",
                529 => "overloaded_error",
                _ if status >= 500 => "api_error",
                _ => "invalid_request_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    }
}

pub(crate) fn openai_error(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", json!("invalid_api_key")),
        403 => ("permission_error", Value::Null),
        404 => ("invalid_request_error", json!("unknown_url")),
        429 => ("requests", json!("rate_limit_exceeded")),
        _ if status >= 500 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

pub(crate) fn base_headers(
    builder: axum::http::response::Builder,
    seq: u64,
    api: Option<Api>,
    extra: &[(String, String)],
) -> axum::http::response::Builder {
    let mut builder = match api {
        Some(Api::Anthropic) => builder.header("request-id", format!("req_up{seq}")),
        _ => builder.header("x-request-id", format!("req_up{seq}")),
    };
    for (name, value) in extra {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            builder = builder.header(n, v);
        }
    }
    builder
}

pub(crate) fn json_response(
    status: u16,
    body: Value,
    seq: u64,
    api: Option<Api>,
    extra: &[(String, String)],
) -> Response {
    let builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json");
    base_headers(builder, seq, api, extra)
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

pub(crate) fn sse_response(
    events: Vec<String>,
    chunk_delay: Duration,
    partial: Option<(usize, Ending)>,
    seq: u64,
    api: Api,
    extra: &[(String, String)],
) -> Response {
    let (n, ending) = partial.unwrap_or((usize::MAX, Ending::Complete));
    let chunks = events.into_iter().take(n).map(String::into_bytes).collect();
    streamed_response(
        200,
        "text/event-stream; charset=utf-8",
        chunks,
        chunk_delay,
        ending,
        seq,
        Some(api),
        extra,
    )
}

/// A body sent chunk by chunk, `delay` apart, ending as `ending` says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn streamed_response(
    status: u16,
    content_type: &str,
    chunks: Vec<Vec<u8>>,
    delay: Duration,
    ending: Ending,
    seq: u64,
    api: Option<Api>,
    extra: &[(String, String)],
) -> Response {
    let items =
        futures::stream::iter(chunks.into_iter().enumerate()).then(move |(i, chunk)| async move {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<Bytes, std::io::Error>(Bytes::from(chunk))
        });
    // The pause lets hyper flush what was sent before the connection drops.
    let tail = futures::stream::iter([ending]).then(|ending| async move {
        match ending {
            Ending::Complete => None,
            Ending::Cut => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some(Err::<Bytes, std::io::Error>(std::io::Error::other(
                    "upstream: connection cut by script",
                )))
            }
            // Until the client goes away and hyper drops the body.
            Ending::Stall => std::future::pending().await,
        }
    });
    let tail = tail.filter_map(std::future::ready);
    let builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache");
    base_headers(builder, seq, api, extra)
        .body(Body::from_stream(items.chain(tail)))
        .expect("a valid response")
}
