"""Drives a gateway with the official `anthropic` SDK (messages).

Cases: basic (non-streaming), stream (the SSE event sequence), tools
(tool-use round trip), stream_tools (the same, streamed); and, when named in
POINTSMAN_CASES, plan and plan_stream (two turns of one session, sent as
metadata.user_id, in plan mode) and models (`models.retrieve` of
POINTSMAN_MODEL_IDS, and a 404 for POINTSMAN_UNKNOWN_MODEL). Prints a JSON summary on stdout, exits 1 on
a failed check. See common.py for the environment.
"""

import anthropic

from common import (
    CheckFailed,
    TOOL_DESCRIPTION,
    TOOL_QUESTION,
    TOOL_RESULT,
    TOOL_SCHEMA,
    api_key,
    base_url,
    check,
    env,
    gateway_headers,
    told_by_stream,
    header_costs,
    model_ids,
    parse_arguments,
    plan_session,
    run,
    timeout,
    unknown_model,
)

MODEL = env("POINTSMAN_ANTHROPIC_MODEL", "claude-sonnet-4-5")
TOOLS = [{"name": "lookup", "description": TOOL_DESCRIPTION, "input_schema": TOOL_SCHEMA}]

client = anthropic.Anthropic(
    api_key=api_key(),
    base_url=base_url(),
    max_retries=0,
    timeout=timeout(),
)


def usage_of(usage):
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": getattr(usage, "cache_read_input_tokens", None),
        "cache_creation_input_tokens": getattr(usage, "cache_creation_input_tokens", None),
    }


def create(messages, **extra):
    """A non-streamed message: (message, gateway headers)."""
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=256, messages=messages, **extra
    )
    headers = gateway_headers(raw.headers)
    message = raw.parse()
    check(message.type == "message" and message.role == "assistant", f"not a message: {message}")
    return message, headers


def block_dicts(content):
    """An answer's content as request blocks."""
    blocks = []
    for block in content:
        if block.type == "text":
            if block.text:
                blocks.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            blocks.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
    return blocks


def stream(messages, **extra):
    """A streamed message, accumulated."""
    out = {"text": "", "deltas": 0, "events": [], "stop_reason": None, "usage": None,
           "pointsman": None, "model": None, "id": None, "blocks": {}}
    input_usage = None
    output_tokens = None
    with client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=256, messages=messages, stream=True, **extra
    ) as response:
        out["headers"] = gateway_headers(response.headers, streamed=True)
        out["status"] = response.status_code
        for event in response.parse():
            out["events"].append(event.type)
            if event.type == "message_start":
                out["model"] = event.message.model
                out["id"] = event.message.id
                input_usage = usage_of(event.message.usage)
            elif event.type == "content_block_start":
                block = event.content_block
                out["blocks"][event.index] = {
                    "type": block.type,
                    "text": getattr(block, "text", "") or "",
                    "id": getattr(block, "id", None),
                    "name": getattr(block, "name", None),
                    "partial_json": "",
                }
            elif event.type == "content_block_delta":
                block = out["blocks"].setdefault(
                    event.index, {"type": None, "text": "", "id": None, "name": None, "partial_json": ""}
                )
                if event.delta.type == "text_delta":
                    block["text"] += event.delta.text
                    out["text"] += event.delta.text
                    out["deltas"] += 1
                elif event.delta.type == "input_json_delta":
                    block["partial_json"] += event.delta.partial_json
                    out["deltas"] += 1
            elif event.type == "message_delta":
                out["stop_reason"] = event.delta.stop_reason
                output_tokens = event.usage.output_tokens
                # Input counts in message_delta are final (message_start may
                # not know them yet); the SDK's own accumulator does the same.
                for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
                    value = getattr(event.usage, name, None)
                    if value is not None and input_usage is not None:
                        input_usage[name] = value
                # The gateway's cost rides on message_delta, as an extra field.
                out["pointsman"] = (event.model_extra or {}).get("pointsman")
    types = out["events"]
    check(types and types[0] == "message_start", f"the stream starts with {types[:1]}")
    check(types[-1] == "message_stop", f"the stream ends with {types[-1:]}")
    check("message_delta" in types, f"no message_delta in {types}")
    check(types.count("content_block_start") == types.count("content_block_stop"),
          f"unbalanced content blocks in {types}")
    check(input_usage is not None, "no usage in message_start")
    check(output_tokens is not None and output_tokens > 0, f"message_delta output_tokens {output_tokens}")
    out["usage"] = dict(input_usage, output_tokens=output_tokens)
    out["blocks"] = [out["blocks"][i] for i in sorted(out["blocks"])]
    return told_by_stream(out)


def case_basic():
    prompt = "Say hello to the gateway"
    message, headers = create([{"role": "user", "content": prompt}], system="You are terse.")
    texts = [b.text for b in message.content if b.type == "text"]
    text = "".join(texts)
    check(text.strip(), f"empty content: {message}")
    check(message.stop_reason == "end_turn", f"stop_reason {message.stop_reason!r}")
    check(message.usage.input_tokens > 0 and message.usage.output_tokens > 0, f"usage {message.usage}")
    return {
        "prompt": prompt,
        "id": message.id,
        "model": message.model,
        "text": text,
        "stop_reason": message.stop_reason,
        "usage": usage_of(message.usage),
        "headers": headers,
    }


def case_stream():
    prompt = "Stream a few words back to me please"
    out = stream([{"role": "user", "content": prompt}])
    check(out["status"] == 200, f"status {out['status']}")
    check(out["text"].strip(), "no streamed text")
    check(out["deltas"] >= 2, f"only {out['deltas']} text delta(s)")
    check(out["stop_reason"] == "end_turn", f"stop_reason {out['stop_reason']!r}")
    check("content_block_delta" in out["events"], "no content_block_delta")
    out.pop("blocks")
    out["prompt"] = prompt
    return out


def case_tools():
    messages = [{"role": "user", "content": TOOL_QUESTION}]
    first, headers1 = create(messages, tools=TOOLS)
    uses = [b for b in first.content if b.type == "tool_use"]
    check(first.stop_reason == "tool_use", f"stop_reason {first.stop_reason!r}")
    check(uses, f"no tool_use block: {first}")
    use = uses[0]
    check(use.name == "lookup", f"tool name {use.name!r}")
    check(use.id, "the tool_use block has no id")
    arguments = parse_arguments(use.input, "tool_use")
    messages.append({"role": "assistant", "content": block_dicts(first.content)})
    messages.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": u.id, "content": TOOL_RESULT} for u in uses
    ]})
    second, headers2 = create(messages, tools=TOOLS)
    text = "".join(b.text for b in second.content if b.type == "text")
    check(text.strip(), f"empty final content: {second}")
    check(TOOL_RESULT in text, f"the final answer {text!r} ignores the tool result")
    check(second.stop_reason == "end_turn", f"final stop_reason {second.stop_reason!r}")
    return {
        "call": {"id": use.id, "name": use.name, "arguments": arguments},
        "first_stop_reason": first.stop_reason,
        "first_usage": usage_of(first.usage),
        "text": text,
        "stop_reason": second.stop_reason,
        "usage": usage_of(second.usage),
        "headers": [headers1, headers2],
    }


def case_stream_tools():
    messages = [{"role": "user", "content": TOOL_QUESTION}]
    first = stream(messages, tools=TOOLS)
    check(first["stop_reason"] == "tool_use", f"stop_reason {first['stop_reason']!r}")
    uses = [b for b in first["blocks"] if b["type"] == "tool_use"]
    check(uses, f"no streamed tool_use block: {first['blocks']}")
    use = uses[0]
    check(use["name"] == "lookup", f"tool name {use['name']!r}")
    check(use["id"], "the streamed tool_use block has no id")
    arguments = parse_arguments(use["partial_json"] or "{}", "streamed tool_use")
    content = []
    for b in first["blocks"]:
        if b["type"] == "text" and b["text"]:
            content.append({"type": "text", "text": b["text"]})
        elif b["type"] == "tool_use":
            content.append({"type": "tool_use", "id": b["id"], "name": b["name"],
                            "input": parse_arguments(b["partial_json"] or "{}", "streamed tool_use")})
    messages.append({"role": "assistant", "content": content})
    messages.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": u["id"], "content": TOOL_RESULT} for u in uses
    ]})
    second = stream(messages, tools=TOOLS)
    check(second["text"].strip(), "no streamed final text")
    check(TOOL_RESULT in second["text"], f"the final answer {second['text']!r} ignores the tool result")
    check(second["stop_reason"] == "end_turn", f"final stop_reason {second['stop_reason']!r}")
    return {
        "call": {"id": use["id"], "name": use["name"], "arguments": arguments},
        "first_events": first["events"],
        "first_deltas": first["deltas"],
        "first_usage": first["usage"],
        "text": second["text"],
        "deltas": second["deltas"],
        "stop_reason": second["stop_reason"],
        "usage": second["usage"],
        "headers": [first["headers"], second["headers"]],
    }


def plan_turn(streamed):
    def turn(messages, session):
        session_metadata = {"metadata": {"user_id": session}}
        if streamed:
            out = stream(messages, **session_metadata)
            check(out["stop_reason"] == "end_turn", f"stop_reason {out['stop_reason']!r}")
            check(out["pointsman"] is not None, "message_delta carries no pointsman object")
            return {"text": out["text"], "deltas": out["deltas"], "headers": out["headers"],
                    "usage": out["usage"], "cost": out["pointsman"]}
        message, headers = create(messages, **session_metadata)
        check(message.stop_reason == "end_turn", f"stop_reason {message.stop_reason!r}")
        return {"text": "".join(b.text for b in message.content if b.type == "text"),
                "headers": headers, "usage": usage_of(message.usage),
                "cost": header_costs(headers)}
    return turn


def case_models():
    """`client.models.retrieve`: each id comes back as Anthropic's model
    object of that id; an unknown one is the SDK's NotFoundError."""
    out = {}
    for model_id in model_ids(MODEL):
        model = client.models.retrieve(model_id)
        check(model.id == model_id, f"asked {model_id!r}, got {model}")
        check(model.type == "model", f"not a model object: {model}")
        out[model_id] = model.model_dump(mode="json")
    unknown = unknown_model()
    try:
        model = client.models.retrieve(unknown)
    except anthropic.NotFoundError as e:
        out["unknown"] = {"id": unknown, "status": e.status_code, "error": e.body}
    else:
        raise CheckFailed(f"{unknown!r} was found: {model}")
    return out


if __name__ == "__main__":
    run("anthropic", anthropic.__version__, {
        "basic": case_basic,
        "stream": case_stream,
        "tools": case_tools,
        "stream_tools": case_stream_tools,
    }, plan_cases={
        "plan": lambda: plan_session("anthropic", "plan", plan_turn(streamed=False)),
        "plan_stream": lambda: plan_session("anthropic", "plan_stream", plan_turn(streamed=True)),
        "models": case_models,
    })
