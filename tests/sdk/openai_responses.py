"""Drives a gateway with the official `openai` SDK's Responses API
(`client.responses.create`).

Cases: basic (non-streaming), stream (streaming: the SDK's typed events, the
final response.completed with usage and the gateway's `pointsman` costs),
tools (a function call and its output sent back as input items), stream_tools
(the same, streamed). Prints a JSON summary on stdout, exits 1 on a failed
check. See common.py for the environment.
"""

import openai

from common import (
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
    parse_arguments,
    run,
    timeout,
)

MODEL = env("POINTSMAN_OPENAI_MODEL", "gpt-4o-mini")
TOOLS = [
    {
        "type": "function",
        "name": "lookup",
        "description": TOOL_DESCRIPTION,
        "parameters": TOOL_SCHEMA,
        "strict": False,
    }
]

client = openai.OpenAI(
    api_key=api_key(),
    base_url=base_url() + "/v1",
    max_retries=0,
    timeout=timeout(),
)


def usage_of(usage):
    check(usage is not None, "no usage")
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "cached_tokens": usage.input_tokens_details.cached_tokens,
        "reasoning_tokens": usage.output_tokens_details.reasoning_tokens,
    }


def create(input, **extra):
    """A non-streamed response: (response, gateway headers)."""
    raw = client.responses.with_raw_response.create(
        model=MODEL, input=input, max_output_tokens=256, store=False, **extra
    )
    headers = gateway_headers(raw.headers)
    response = raw.parse()
    check(response.object == "response", f"object {response.object!r}")
    check(response.status == "completed", f"status {response.status!r}")
    return response, headers


def stream(input, **extra):
    """A streamed response: its events checked and accumulated."""
    out = {"text": "", "deltas": 0, "events": [], "calls": [], "usage": None,
           "pointsman": None, "model": None, "id": None}
    with client.responses.with_streaming_response.create(
        model=MODEL, input=input, max_output_tokens=256, store=False, stream=True, **extra
    ) as response:
        out["headers"] = gateway_headers(response.headers, streamed=True)
        out["status"] = response.status_code
        sequence = 0
        for event in response.parse():
            out["events"].append(event.type)
            check(event.sequence_number == sequence,
                  f"event {event.type} has sequence_number {event.sequence_number}, not {sequence}")
            sequence += 1
            if event.type == "response.output_text.delta":
                out["text"] += event.delta
                out["deltas"] += 1
            elif event.type == "response.function_call_arguments.delta":
                out["deltas"] += 1
            elif event.type == "response.output_item.done" and event.item.type == "function_call":
                out["calls"].append({"call_id": event.item.call_id, "name": event.item.name,
                                     "arguments": event.item.arguments})
            elif event.type == "response.completed":
                out["model"] = event.response.model
                out["id"] = event.response.id
                out["usage"] = usage_of(event.response.usage)
                out["final_text"] = event.response.output_text
                # The gateway's cost rides on the final event, as an extra field.
                out["pointsman"] = (event.model_extra or {}).get("pointsman")
    events = out["events"]
    check(events[:2] == ["response.created", "response.in_progress"], f"opening events {events[:2]}")
    check(events[-1] == "response.completed", f"last event {events[-1]!r}")
    check(out["pointsman"] is not None, "response.completed carries no pointsman object")
    check(float(out["pointsman"]["cost_usd"]) > 0, f"cost {out['pointsman']}")
    return told_by_stream(out)


def case_basic():
    prompt = "Say hello to the gateway"
    response, headers = create(prompt, instructions="You are terse.")
    text = response.output_text
    check(isinstance(text, str) and text.strip(), f"empty output: {response}")
    check(prompt in text, f"the answer {text!r} does not echo the prompt")
    usage = usage_of(response.usage)
    check(usage["input_tokens"] > 0 and usage["output_tokens"] > 0, f"usage {usage}")
    return {"prompt": prompt, "id": response.id, "model": response.model, "text": text,
            "usage": usage, "headers": headers}


def case_stream():
    prompt = "Stream a few words back to me please"
    out = stream([{"role": "user", "content": prompt}])
    check(out["status"] == 200, f"status {out['status']}")
    check(out["text"].strip(), "no streamed text")
    check(out["deltas"] >= 2, f"only {out['deltas']} text delta(s)")
    check(out["final_text"] == out["text"], "the final response's text differs from the deltas")
    for needed in ["response.output_item.added", "response.content_part.added",
                   "response.output_text.done", "response.content_part.done",
                   "response.output_item.done"]:
        check(needed in out["events"], f"no {needed} event in {out['events']}")
    check(out["usage"]["output_tokens"] > 0, f"usage {out['usage']}")
    out["prompt"] = prompt
    return out


def round_trip(first_calls, question, send):
    """Sends the calls back with their outputs; returns the final answer."""
    items = [{"role": "user", "content": question}]
    for call in first_calls:
        items.append({"type": "function_call", "call_id": call["call_id"],
                      "name": call["name"], "arguments": call["arguments"]})
        items.append({"type": "function_call_output", "call_id": call["call_id"],
                      "output": TOOL_RESULT})
    return send(items)


def case_tools():
    first, headers1 = create(TOOL_QUESTION, tools=TOOLS)
    calls = [item for item in first.output if item.type == "function_call"]
    check(len(calls) >= 1, f"no function call: {first}")
    call = calls[0]
    check(call.name == "lookup", f"tool name {call.name!r}")
    check(call.call_id, "the call has no call_id")
    arguments = parse_arguments(call.arguments, "function call")
    second, headers2 = round_trip(
        [{"call_id": c.call_id, "name": c.name, "arguments": c.arguments} for c in calls],
        TOOL_QUESTION,
        lambda items: create(items, tools=TOOLS),
    )
    text = second.output_text
    check(TOOL_RESULT in text, f"the final answer {text!r} ignores the tool output")
    return {"call": {"call_id": call.call_id, "name": call.name, "arguments": arguments},
            "text": text, "usage": usage_of(second.usage), "headers": [headers1, headers2]}


def case_stream_tools():
    first = stream(TOOL_QUESTION, tools=TOOLS)
    check(first["calls"], f"no streamed function call: {first['events']}")
    for needed in ["response.function_call_arguments.delta", "response.function_call_arguments.done"]:
        check(needed in first["events"], f"no {needed} event in {first['events']}")
    call = first["calls"][0]
    check(call["name"] == "lookup", f"tool name {call['name']!r}")
    arguments = parse_arguments(call["arguments"], "streamed function call")
    second = round_trip(first["calls"], TOOL_QUESTION, lambda items: stream(items, tools=TOOLS))
    check(TOOL_RESULT in second["text"], f"the final answer {second['text']!r} ignores the tool output")
    return {"call": {**call, "arguments": arguments}, "text": second["text"],
            "usage": second["usage"], "pointsman": second["pointsman"],
            "headers": [first["headers"], second["headers"]]}


if __name__ == "__main__":
    run("openai-responses", openai.__version__, {
        "basic": case_basic,
        "stream": case_stream,
        "tools": case_tools,
        "stream_tools": case_stream_tools,
    })
