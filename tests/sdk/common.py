"""Shared helpers of the SDK scripts in this folder.

Environment:
  POINTSMAN_URL            the gateway's root URL (e.g. http://127.0.0.1:8080);
                            the OpenAI client uses <url>/v1, the Anthropic one <url>
  POINTSMAN_KEY            the client's API key
  POINTSMAN_EXPECT_HEADERS 1 (default) to require the gateway's x-pointsman-*
                            headers, 0 to only report them (e.g. against an upstream)
  POINTSMAN_CASES          comma-separated cases to run (default: the script's
                            cases that any gateway serves; the plan-mode cases
                            run only when named here)
  POINTSMAN_OPENAI_MODEL, POINTSMAN_ANTHROPIC_MODEL   the models the clients ask for
  POINTSMAN_PLAN_PROMPT    the first message of the plan-mode cases (default:
                            a new feature across modules, which the seed
                            matrix sends to the `plan` tier)
  POINTSMAN_TIMEOUT        seconds per request (default 60)
  POINTSMAN_MODEL_IDS      comma-separated ids the models case retrieves (default:
                            the model the client asks for)
  POINTSMAN_UNKNOWN_MODEL  an id the models case expects a 404 for
"""

import json
import os
import sys
import traceback

GATEWAY_HEADERS = [
    "x-pointsman-model",
    "x-pointsman-tier",
    "x-pointsman-policy",
    "x-pointsman-cost-usd",
    "x-pointsman-baseline-cost-usd",
]
# Headers a streamed answer must carry too; the cost of a stream is only known
# at its end, so its cost headers are reported (and checked when present) but
# not required.
STREAM_HEADERS = ["x-pointsman-model", "x-pointsman-tier", "x-pointsman-policy"]
COST_HEADERS = ["x-pointsman-cost-usd", "x-pointsman-baseline-cost-usd"]
# Only in plan mode; the planner's cost is a header of non-streamed answers
# and part of a stream's final usage event.
PLAN_HEADERS = ["x-pointsman-plan", "x-pointsman-planner-cost-usd"]
# Every answer's id, as the ledger records it.
REQUEST_ID = "x-pointsman-request-id"
# The key of a response's headers that holds the cost the client was told.
TOLD = "told_cost_usd"
PLAN_TIERS = ("plan", "plan-and-verify")

PLAN_PROMPT = "Design the architecture of a plugin system across multiple modules"
PLAN_FOLLOW_UP = "Now write the plugin loader, with its tests"

TOOL_DESCRIPTION = "Looks up a fact and returns it as text."
TOOL_SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to look up."}},
    "required": ["query"],
}
TOOL_QUESTION = "What is the capital of France?"
TOOL_RESULT = "Paris"


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def env(name, default=None):
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise CheckFailed(f"the environment variable {name} is required")
        return default
    return value


def base_url():
    return env("POINTSMAN_URL").rstrip("/")


def api_key():
    return env("POINTSMAN_KEY")


def timeout():
    return float(env("POINTSMAN_TIMEOUT", "60"))


def expect_headers():
    return env("POINTSMAN_EXPECT_HEADERS", "1") not in ("0", "false", "no")


def selected_cases(all_cases, default):
    chosen = os.environ.get("POINTSMAN_CASES", "").strip()
    if not chosen:
        return list(default)
    names = [c.strip() for c in chosen.split(",") if c.strip()]
    unknown = [n for n in names if n not in all_cases]
    check(not unknown, f"unknown case(s) {unknown}; known: {list(all_cases)}")
    return names


def gateway_headers(headers, streamed=False):
    """The gateway's headers of a response, checked when they are expected."""
    found = {name: headers.get(name) for name in GATEWAY_HEADERS + PLAN_HEADERS + [REQUEST_ID]}
    # What this answer cost, as the client was told: the header here, or a
    # stream's closing cost summary (`told_by_stream`).
    found[TOLD] = found.get("x-pointsman-cost-usd")
    if expect_headers():
        required = STREAM_HEADERS if streamed else GATEWAY_HEADERS
        missing = [name for name in required if not found.get(name)]
        check(not missing, f"missing gateway header(s) {missing}; got {dict(headers)}")
    for name in COST_HEADERS:
        value = found.get(name)
        if value is not None and expect_headers():
            try:
                cost = float(value)
            except ValueError:
                raise CheckFailed(f"{name}: {value!r} is not a number")
            check(cost >= 0, f"{name}: {value!r} is negative")
    return found


def told_by_stream(out):
    """Puts a finished stream's cost (its closing `pointsman` object) with
    its headers, where a non-streamed answer has its cost header."""
    if out.get("headers") is not None and out.get("pointsman"):
        out["headers"][TOLD] = out["pointsman"].get("cost_usd")
    return out


def header_costs(headers):
    """The costs of a non-streamed answer, as a stream's usage event has them."""
    return {
        "cost_usd": headers.get("x-pointsman-cost-usd"),
        "planner_cost_usd": headers.get("x-pointsman-planner-cost-usd"),
        "baseline_cost_usd": headers.get("x-pointsman-baseline-cost-usd"),
    }


def model_ids(default):
    """The ids the models case retrieves."""
    return [m.strip() for m in env("POINTSMAN_MODEL_IDS", default).split(",") if m.strip()]


def unknown_model():
    return env("POINTSMAN_UNKNOWN_MODEL", "no-such-model-anywhere")


def parse_arguments(arguments, where):
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError as e:
        raise CheckFailed(f"{where}: the tool arguments {arguments!r} are not JSON: {e}")
    check(isinstance(parsed, dict), f"{where}: the tool arguments {parsed!r} are not an object")
    query = parsed.get("query")
    check(
        isinstance(query, str) and query.strip(),
        f"{where}: the tool arguments {parsed!r} have no non-empty 'query'",
    )
    return parsed


def number(value, where):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"{where}: {value!r} is not a number")


def plan_session(sdk, case, turn):
    """Two turns of one agent session that the router sends to a planner
    tier: the first makes the session's plan, the second reuses it.

    `turn(messages, session)` sends the conversation as `session` and returns
    a dict with the answer's "text", the gateway "headers", the "usage" and
    the "cost": {"cost_usd", "planner_cost_usd", "baseline_cost_usd"}, taken
    from the headers of a non-streamed answer or from the final usage event
    of a stream.
    """
    session = f"{sdk}-{case}-{os.getpid()}"
    messages = [{"role": "user", "content": env("POINTSMAN_PLAN_PROMPT", PLAN_PROMPT)}]
    turns = []
    for n in range(2):
        if turns:
            messages.append({"role": "assistant", "content": turns[-1]["text"]})
            messages.append({"role": "user", "content": PLAN_FOLLOW_UP})
        out = turn(messages, session)
        where = f"turn {n + 1}"
        check(isinstance(out["text"], str) and out["text"].strip(), f"{where}: no answer text")
        tier = out["headers"].get("x-pointsman-tier")
        check(tier in PLAN_TIERS, f"{where}: tier {tier!r}, not a planner tier")
        source = out["headers"].get("x-pointsman-plan")
        check(source == ("cached" if turns else "new"), f"{where}: x-pointsman-plan {source!r}")
        cost = out["cost"]
        check(cost is not None, f"{where}: no cost reported")
        total = number(cost.get("cost_usd"), f"{where} cost_usd")
        planner = number(cost.get("planner_cost_usd"), f"{where} planner_cost_usd")
        if turns:
            check(planner == 0, f"{where}: the reused plan was charged again ({planner})")
        else:
            check(planner > 0, f"{where}: the new plan cost nothing")
        check(total > planner, f"{where}: the total {total} does not exceed the planner's {planner}")
        turns.append(out)
    return {"session": session, "turns": turns}


def run(sdk, version, cases, plan_cases=None):
    """Runs the chosen cases, prints the JSON summary, exits 1 on a failure.
    `plan_cases` need a gateway whose router plans: they run only when
    POINTSMAN_CASES names them."""
    summary = {"sdk": sdk, "sdk_version": version, "url": os.environ.get("POINTSMAN_URL")}
    default = list(cases)
    cases = dict(cases, **(plan_cases or {}))
    try:
        for name in selected_cases(cases, default):
            try:
                summary[name] = cases[name]()
            except CheckFailed as e:
                raise CheckFailed(f"{sdk} {name}: {e}") from None
            except Exception as e:
                raise CheckFailed(f"{sdk} {name}: {type(e).__name__}: {e}") from e
    except CheckFailed as e:
        summary["error"] = str(e)
        print(json.dumps(summary, indent=2, default=str))
        print(f"FAILED: {e}", file=sys.stderr)
        if e.__cause__ is not None:
            traceback.print_exception(e.__cause__, file=sys.stderr)
        sys.exit(1)
    print(json.dumps(summary, indent=2, default=str))
