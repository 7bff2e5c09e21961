#!/usr/bin/env python3
"""Writes seed-day.jsonl: a day of a coding agent's requests standing for the
seed architecture's day (100 tasks). Deterministic: run it again and the file
is the same. The categories and their shares are in CATEGORIES; see
README.md beside this file."""

import json
import random
from pathlib import Path

rng = random.Random(21)

SYSTEM = (
    "You are a coding agent working in the user's repository. Read files before "
    "editing them, keep changes minimal, run the tests after each change and "
    "report what you changed. " * 6
)

MODULES = ["billing", "notifications", "search", "accounts", "reports", "inventory", "checkout", "analytics"]


def code(lines: int, name: str) -> str:
    """A synthetic source file of about `lines` lines."""
    out = [f"// {name}.rs"]
    for i in range(lines):
        out.append(f"fn step_{i}(x: &[u8]) -> usize {{ x.len() * {i % 7 + 1} }}")
    return "\n".join(out)


def pick(items):
    return items[rng.randrange(len(items))]


# (category, count, output tokens range, context lines range, prompt makers)
CATEGORIES = [
    ("typo fix", 15, (150, 500), (10, 40), [
        "Fix the typo in the error message of {m}::parse_amount",
        "Rename the variable `tmp` to `retry_count` in {m}/client.rs",
        "Fix the spelling of 'recieve' in the {m} docs comment",
    ]),
    ("bug fix", 20, (1500, 4000), (60, 160), [
        "The {m} job crashes with an index out of bounds when the batch is empty; fix the bug",
        "Fix the off-by-one error in {m}::paginate that drops the last page",
        "Totals in {m} are wrong after a refund; debug and fix it",
    ]),
    ("refactor", 15, (2500, 6000), (120, 240), [
        "Refactor {m}::handler to split validation from persistence",
        "Refactor the {m} retry loop into a reusable function",
    ]),
    ("tests", 15, (2000, 5000), (60, 140), [
        "Write unit tests for {m}::parse_header covering empty and oversized input",
        "Add tests for the {m} rounding rules",
    ]),
    ("feature across modules", 15, (4000, 9000), (100, 200), [
        "Add support for recurring orders across the {m} and {m2} modules",
        "Implement a new feature: export {m} data to CSV from the {m2} service and its pipeline",
    ]),
    ("architecture", 5, (3000, 7000), (30, 80), [
        "Design the architecture for splitting {m} into its own service",
        "Propose a design for an event pipeline between {m} and {m2} from scratch",
    ]),
    ("security", 5, (3000, 6000), (80, 160), [
        "Audit the {m} login flow for security vulnerabilities and fix what you find",
        "Store the {m} API credentials encrypted instead of in plain text",
    ]),
    ("deployment-critical", 5, (2000, 5000), (40, 100), [
        "Write the database migration for the {m} schema change and the rollback",
        "Prepare the production deploy of {m}: update the config and the health checks",
    ]),
    ("long context", 5, (3000, 8000), (3000, 4000), [
        "Here is the whole {m} crate; explain where the latency comes from and fix the slow path",
    ]),
]


def main() -> None:
    records = []
    session = 0
    for name, count, outputs, lines, prompts in CATEGORIES:
        for i in range(count):
            m, m2 = rng.sample(MODULES, 2)
            prompt = pick(prompts).format(m=m, m2=m2)
            context = code(rng.randint(*lines), m)
            output = rng.randint(*outputs)
            if name == "feature across modules":
                # Claude Code's shape: an Anthropic request, then a turn that
                # answers the agent's tool call in the same session.
                session += 1
                sid = f"seed-day-{session}"
                first = [{"role": "user", "content": f"{prompt}\n\n```\n{context}\n```"}]
                records.append({
                    "api": "anthropic", "session": sid, "output_tokens": output,
                    "labels": {"category": name},
                    "request": {"model": "claude-sonnet-4-5", "max_tokens": 16000,
                                "system": SYSTEM, "messages": first},
                })
                turn = first + [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read_file",
                                                       "input": {"path": f"src/{m2}/mod.rs"}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                  "content": code(rng.randint(40, 90), m2)}]},
                ]
                records.append({
                    "api": "anthropic", "session": sid, "output_tokens": rng.randint(*outputs),
                    "labels": {"category": name + " (tool turn)"},
                    "request": {"model": "claude-sonnet-4-5", "max_tokens": 16000,
                                "system": SYSTEM, "messages": turn},
                })
            else:
                records.append({
                    "output_tokens": output,
                    "labels": {"category": name},
                    "request": {"model": "gpt-4.1", "messages": [
                        {"role": "system", "content": SYSTEM},
                        {"role": "user", "content": f"{prompt}\n\n```\n{context}\n```"},
                    ]},
                })
    rng.shuffle(records)
    # Keep each session's tool turn after its first turn.
    seen, ordered, held = set(), [], {}
    for r in records:
        sid = r.get("session")
        if sid and r["labels"]["category"].endswith("(tool turn)") and sid not in seen:
            held[sid] = r
            continue
        ordered.append(r)
        if sid:
            seen.add(sid)
            if sid in held:
                ordered.append(held.pop(sid))
    out = Path(__file__).with_name("seed-day.jsonl")
    out.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in ordered))


if __name__ == "__main__":
    main()
