"""Shared helpers of the SDK scripts in this folder.

Environment:
  SWITCHYARD_URL            the gateway's root URL (e.g. http://127.0.0.1:8080);
                            the OpenAI client uses <url>/v1, the Anthropic one <url>
  SWITCHYARD_KEY            the client's API key
  SWITCHYARD_EXPECT_HEADERS 1 (default) to require the gateway's x-switchyard-*
                            headers, 0 to only report them (e.g. against an upstream)
  SWITCHYARD_CASES          comma-separated cases to run (default: all of the script's)
  SWITCHYARD_OPENAI_MODEL, SWITCHYARD_ANTHROPIC_MODEL   the models the clients ask for
  SWITCHYARD_TIMEOUT        seconds per request (default 60)
"""

import json
import os
import sys
import traceback

GATEWAY_HEADERS = [
    "x-switchyard-model",
    "x-switchyard-tier",
    "x-switchyard-policy",
    "x-switchyard-cost-usd",
    "x-switchyard-baseline-cost-usd",
]
# Headers a streamed answer must carry too; the cost of a stream is only known
# at its end, so its cost headers are reported (and checked when present) but
# not required.
STREAM_HEADERS = ["x-switchyard-model", "x-switchyard-tier", "x-switchyard-policy"]
COST_HEADERS = ["x-switchyard-cost-usd", "x-switchyard-baseline-cost-usd"]

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
    return env("SWITCHYARD_URL").rstrip("/")


def api_key():
    return env("SWITCHYARD_KEY")


def timeout():
    return float(env("SWITCHYARD_TIMEOUT", "60"))


def expect_headers():
    return env("SWITCHYARD_EXPECT_HEADERS", "1") not in ("0", "false", "no")


def selected_cases(all_cases):
    chosen = os.environ.get("SWITCHYARD_CASES", "").strip()
    if not chosen:
        return list(all_cases)
    names = [c.strip() for c in chosen.split(",") if c.strip()]
    unknown = [n for n in names if n not in all_cases]
    check(not unknown, f"unknown case(s) {unknown}; known: {list(all_cases)}")
    return names


def gateway_headers(headers, streamed=False):
    """The gateway's headers of a response, checked when they are expected."""
    found = {name: headers.get(name) for name in GATEWAY_HEADERS}
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


def run(sdk, version, cases):
    """Runs the chosen cases, prints the JSON summary, exits 1 on a failure."""
    summary = {"sdk": sdk, "sdk_version": version, "url": os.environ.get("SWITCHYARD_URL")}
    try:
        for name in selected_cases(cases):
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
