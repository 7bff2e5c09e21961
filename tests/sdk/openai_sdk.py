"""Drives a gateway with the official `openai` SDK (chat completions).

Cases: basic (non-streaming), stream (streaming with usage), tools (tool-call
round trip), stream_tools (the same, streamed); and, when named in
POINTSMAN_CASES, plan and plan_stream (two turns of one session, sent as the
x-pointsman-session header, in plan mode) and models (`models.retrieve` of
POINTSMAN_MODEL_IDS, and a 404 for POINTSMAN_UNKNOWN_MODEL). Prints a JSON summary on stdout,
exits 1 on a failed check. See common.py for the environment.
"""

import openai

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

MODEL = env("POINTSMAN_OPENAI_MODEL", "gpt-4o-mini")
TOOLS = [
    {
        "type": "function",
        "function": {"name": "lookup", "description": TOOL_DESCRIPTION, "parameters": TOOL_SCHEMA},
    }
]

client = openai.OpenAI(
    api_key=api_key(),
    base_url=base_url() + "/v1",
    max_retries=0,
    timeout=timeout(),
)


def usage_of(usage):
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cached_tokens": getattr(details, "cached_tokens", None) if details else None,
    }


def complete(messages, **extra):
    """A non-streamed completion: (completion, gateway headers)."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=256, **extra
    )
    headers = gateway_headers(raw.headers)
    completion = raw.parse()
    check(completion.choices, f"no choices in {completion}")
    return completion, headers


def stream(messages, **extra):
    """A streamed completion, accumulated."""
    out = {"text": "", "deltas": 0, "chunks": 0, "finish_reason": None, "usage": None,
           "pointsman": None, "model": None, "id": None, "tool_calls": {}}
    with client.chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=messages,
        max_tokens=256,
        stream=True,
        stream_options={"include_usage": True},
        **extra,
    ) as response:
        out["headers"] = gateway_headers(response.headers, streamed=True)
        out["status"] = response.status_code
        for chunk in response.parse():
            out["chunks"] += 1
            out["model"] = out["model"] or chunk.model
            out["id"] = out["id"] or chunk.id
            if chunk.usage is not None:
                out["usage"] = usage_of(chunk.usage)
                # The gateway's cost rides on the usage chunk, as an extra field.
                out["pointsman"] = (chunk.model_extra or {}).get("pointsman")
            for choice in chunk.choices:
                delta = choice.delta
                if delta.content:
                    out["text"] += delta.content
                    out["deltas"] += 1
                for call in delta.tool_calls or []:
                    acc = out["tool_calls"].setdefault(
                        call.index, {"id": None, "name": "", "arguments": ""}
                    )
                    if call.id:
                        acc["id"] = call.id
                    if call.function is not None:
                        if call.function.name:
                            acc["name"] += call.function.name
                        if call.function.arguments:
                            acc["arguments"] += call.function.arguments
                            out["deltas"] += 1
                if choice.finish_reason:
                    out["finish_reason"] = choice.finish_reason
    out["tool_calls"] = [out["tool_calls"][i] for i in sorted(out["tool_calls"])]
    return told_by_stream(out)


def case_basic():
    prompt = "Say hello to the gateway"
    completion, headers = complete([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": prompt},
    ])
    choice = completion.choices[0]
    text = choice.message.content
    check(isinstance(text, str) and text.strip(), f"empty content: {completion}")
    check(choice.finish_reason == "stop", f"finish_reason {choice.finish_reason!r}")
    check(completion.usage is not None, "no usage")
    check(completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0,
          f"usage {completion.usage}")
    return {
        "prompt": prompt,
        "id": completion.id,
        "model": completion.model,
        "text": text,
        "finish_reason": choice.finish_reason,
        "usage": usage_of(completion.usage),
        "headers": headers,
    }


def case_stream():
    prompt = "Stream a few words back to me please"
    out = stream([{"role": "user", "content": prompt}])
    check(out["status"] == 200, f"status {out['status']}")
    check(out["text"].strip(), "no streamed content")
    check(out["deltas"] >= 2, f"only {out['deltas']} content delta(s)")
    check(out["finish_reason"] == "stop", f"finish_reason {out['finish_reason']!r}")
    check(out["usage"] is not None, "no usage chunk although include_usage was asked")
    check(out["usage"]["completion_tokens"] > 0, f"usage {out['usage']}")
    out.pop("tool_calls")
    out["prompt"] = prompt
    return out


def assistant_with_calls(calls):
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls
        ],
    }


def case_tools():
    messages = [{"role": "user", "content": TOOL_QUESTION}]
    first, headers1 = complete(messages, tools=TOOLS)
    choice = first.choices[0]
    calls = choice.message.tool_calls or []
    check(choice.finish_reason == "tool_calls", f"finish_reason {choice.finish_reason!r}")
    check(len(calls) >= 1, f"no tool call: {first}")
    call = calls[0]
    check(call.function.name == "lookup", f"tool name {call.function.name!r}")
    check(call.id, "the tool call has no id")
    arguments = parse_arguments(call.function.arguments, "tool call")
    messages.append(assistant_with_calls(
        [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in calls]
    ))
    for c in calls:
        messages.append({"role": "tool", "tool_call_id": c.id, "content": TOOL_RESULT})
    second, headers2 = complete(messages, tools=TOOLS)
    final = second.choices[0]
    text = final.message.content
    check(isinstance(text, str) and text.strip(), f"empty final content: {second}")
    check(TOOL_RESULT in text, f"the final answer {text!r} ignores the tool result")
    check(final.finish_reason == "stop", f"final finish_reason {final.finish_reason!r}")
    return {
        "call": {"id": call.id, "name": call.function.name, "arguments": arguments},
        "first_finish_reason": choice.finish_reason,
        "first_usage": usage_of(first.usage),
        "text": text,
        "finish_reason": final.finish_reason,
        "usage": usage_of(second.usage),
        "headers": [headers1, headers2],
    }


def case_stream_tools():
    messages = [{"role": "user", "content": TOOL_QUESTION}]
    first = stream(messages, tools=TOOLS)
    check(first["finish_reason"] == "tool_calls", f"finish_reason {first['finish_reason']!r}")
    check(first["tool_calls"], "no streamed tool call")
    call = first["tool_calls"][0]
    check(call["name"] == "lookup", f"tool name {call['name']!r}")
    check(call["id"], "the streamed tool call has no id")
    arguments = parse_arguments(call["arguments"], "streamed tool call")
    check(first["usage"] is not None, "no usage chunk")
    messages.append(assistant_with_calls(first["tool_calls"]))
    for c in first["tool_calls"]:
        messages.append({"role": "tool", "tool_call_id": c["id"], "content": TOOL_RESULT})
    second = stream(messages, tools=TOOLS)
    check(second["text"].strip(), "no streamed final content")
    check(TOOL_RESULT in second["text"], f"the final answer {second['text']!r} ignores the tool result")
    check(second["finish_reason"] == "stop", f"final finish_reason {second['finish_reason']!r}")
    return {
        "call": {"id": call["id"], "name": call["name"], "arguments": arguments},
        "first_deltas": first["deltas"],
        "first_usage": first["usage"],
        "text": second["text"],
        "deltas": second["deltas"],
        "finish_reason": second["finish_reason"],
        "usage": second["usage"],
        "headers": [first["headers"], second["headers"]],
    }


def plan_turn(streamed):
    def turn(messages, session):
        session_header = {"extra_headers": {"x-pointsman-session": session}}
        if streamed:
            out = stream(messages, **session_header)
            check(out["finish_reason"] == "stop", f"finish_reason {out['finish_reason']!r}")
            check(out["usage"] is not None, "no usage chunk although include_usage was asked")
            check(out["pointsman"] is not None, "the usage chunk carries no pointsman object")
            return {"text": out["text"], "deltas": out["deltas"], "headers": out["headers"],
                    "usage": out["usage"], "cost": out["pointsman"]}
        completion, headers = complete(messages, **session_header)
        choice = completion.choices[0]
        check(choice.finish_reason == "stop", f"finish_reason {choice.finish_reason!r}")
        return {"text": choice.message.content, "headers": headers,
                "usage": usage_of(completion.usage),
                "cost": header_costs(headers)}
    return turn


def case_models():
    """`client.models.retrieve`: each id comes back as a model object of that
    id; an unknown one is the SDK's NotFoundError."""
    out = {}
    for model_id in model_ids(MODEL):
        model = client.models.retrieve(model_id)
        check(model.id == model_id, f"asked {model_id!r}, got {model}")
        check(model.object == "model", f"not a model object: {model}")
        out[model_id] = model.model_dump()
    unknown = unknown_model()
    try:
        model = client.models.retrieve(unknown)
    except openai.NotFoundError as e:
        out["unknown"] = {"id": unknown, "status": e.status_code, "error": e.body}
    else:
        raise CheckFailed(f"{unknown!r} was found: {model}")
    return out


if __name__ == "__main__":
    run("openai", openai.__version__, {
        "basic": case_basic,
        "stream": case_stream,
        "tools": case_tools,
        "stream_tools": case_stream_tools,
    }, plan_cases={
        "plan": lambda: plan_session("openai", "plan", plan_turn(streamed=False)),
        "plan_stream": lambda: plan_session("openai", "plan_stream", plan_turn(streamed=True)),
        "models": case_models,
    })
