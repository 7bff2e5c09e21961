"""The seed architecture's Route Decision Matrix as a router policy, in Python.

| Complexity | Tier              | Models                        |
|------------|-------------------|-------------------------------|
| Critical   | `plan-and-verify` | deepseek-v3.2 -> glm-4.7      |
| High       | `plan`            | deepseek-v3.2 -> glm-4.7      |
| Medium     | `direct`          | glm-4.7                       |
| Low        | `direct`          | glm-4.7                       |

A port of the Rust policy in `policies/seed-matrix/src/lib.rs`: the same rules,
word lists and texts, so that the three implementations route every request
identically. They are checked against the same table
(`examples/policies/cases.jsonl`); a change there must be made here too.

This module is the policy's logic only and imports no generated bindings, so
`python3 test_seed_matrix.py` runs it natively. It reads the WIT records by
their snake_case attribute names (`input_tokens`, `max_output_tokens`,
`tool_count`, `context_window`, ...), which is what componentize-py's
bindings generate, and returns a `Decision` whose `tier` is the WIT enum case
name (`"plan-and-verify"`). `app.py` turns that into the bindings' types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

# Words whose presence makes a task critical, matched as stems.
CRITICAL_STEMS = (
    "secur",
    "authent",
    "authoriz",
    "credential",
    "secret",
    "vulnerab",
    "deploy",
    "production",
    "migrat",
    "payment",
    "password",
    "encrypt",
    "exploit",
)
# Short critical words, matched exactly (as stems they would match too much).
CRITICAL_WORDS = ("auth", "oauth", "cve", "prod")
# Signals that the work spans several parts of a system.
DEPENDENCY_STEMS = (
    "across",
    "multiple",
    "several",
    "component",
    "module",
    "service",
    "integrat",
    "pipeline",
    "dependenc",
    "subsystem",
)
# Signals of new design work, matched as stems.
NOVELTY_STEMS = (
    "architect",
    "design",
    "scaffold",
    "greenfield",
    "rewrite",
    "framework",
    "prototype",
)
# Signals of new design work, matched as phrases.
NOVELTY_PHRASES = ("new feature", "from scratch", "new system", "add support")
# Signals of a small change.
SIMPLE_STEMS = (
    "typo",
    "rename",
    "comment",
    "format",
    "lint",
    "spelling",
    "whitespace",
    "trivial",
    "simple",
    "tiny",
)
# Signals of a refactor or a bug fix.
CHANGE_STEMS = (
    "refactor",
    "bug",
    "fix",
    "error",
    "fail",
    "broken",
    "crash",
    "regress",
    "debug",
)

# Executors in order of preference: the primary, the backup, the premium fallback.
EXECUTORS = ("glm-4.7", "deepseek-v3.2-exp", "claude-opus-4.5")
# Planners in order of preference.
PLANNERS = ("deepseek-v3.2", "claude-opus-4.5")

# The complexity classes and the tier each gets.
CRITICAL = "critical"
HIGH = "high"
MEDIUM = "medium"
LOW = "low"
TIERS = {CRITICAL: "plan-and-verify", HIGH: "plan", MEDIUM: "direct", LOW: "direct"}

# Anything that is not an ASCII letter or digit separates words. (An explicit
# class: `\W` or `str.isalnum` would treat non-ASCII letters as word chars.)
_SEPARATOR = re.compile(r"[^A-Za-z0-9]")


class RouteError(Exception):
    """The policy cannot route the request; `str(error)` says why."""


@dataclass
class Decision:
    """A route, with the tier as its WIT case name."""

    tier: str
    executor: str
    fallbacks: List[str] = field(default_factory=list)
    planner: Optional[str] = None
    reasoning: str = ""
    deadline_ms: Optional[int] = None
    max_cost_usd: Optional[float] = None


def task_words(request) -> List[str]:
    """The lower-cased ASCII words of every user message."""
    words = []
    for message in request.messages:
        if message.role != "user":
            continue
        for word in _SEPARATOR.split(message.content):
            # The word is pure ASCII, so lower() only touches A-Z.
            if word:
                words.append(word.lower())
    return words


def stems_in(words: Sequence[str], stems: Sequence[str]) -> List[str]:
    """The stems of `stems` that start some word of `words`, in list order."""
    return [stem for stem in stems if any(w.startswith(stem) for w in words)]


def classify(request) -> Tuple[str, List[str]]:
    """Classifies `request`, returning the complexity and the signals that decided."""
    words = task_words(request)
    critical = [
        f"keyword:{k}"
        for k in stems_in(words, CRITICAL_STEMS) + [w for w in CRITICAL_WORDS if w in words]
    ]
    if critical:
        return CRITICAL, critical

    score = 0
    signals: List[str] = []
    tokens = request.input_tokens
    for threshold, points in ((32_000, 3), (8_000, 2), (2_000, 1)):
        if tokens >= threshold:
            score += points
            signals.append(f"tokens>={threshold}")
            break
    if request.message_count >= 16:
        score += 1
        signals.append("messages>=16")
    if request.tool_count >= 5:
        score += 1
        signals.append("tools>=5")
    dependencies = stems_in(words, DEPENDENCY_STEMS)
    score += min(len(dependencies), 2)
    signals.extend(f"dependency:{s}" for s in dependencies)
    phrase_text = " " + " ".join(words) + " "
    novelty = stems_in(words, NOVELTY_STEMS) + [
        p for p in NOVELTY_PHRASES if f" {p} " in phrase_text
    ]
    if novelty:
        score += 2
    signals.extend(f"novelty:{s}" for s in novelty)
    simple = stems_in(words, SIMPLE_STEMS)
    if simple:
        score -= 1
    signals.extend(f"simple:{s}" for s in simple)
    change = stems_in(words, CHANGE_STEMS)
    signals.extend(f"change:{s}" for s in change)

    if score >= 3:
        complexity = HIGH
    elif score >= 1 or (change and not simple):
        complexity = MEDIUM
    else:
        complexity = LOW
    return complexity, signals


def _describe(signals: Sequence[str]) -> str:
    return ", ".join(signals) if signals else "no signals"


def _push_once(notes: List[str], note: str) -> None:
    if note not in notes:
        notes.append(note)


def candidates(preference: Sequence[str], models, needed: int, notes: List[str]) -> List[str]:
    """The models of `preference` that the catalog has, available and large
    enough, in order; notes why others were skipped."""
    out = []
    for model_id in preference:
        model = next((m for m in models if m.id == model_id), None)
        if model is None:
            continue
        if not model.available:
            _push_once(notes, f"skipped {model_id} (unavailable)")
        elif model.context_window < needed:
            _push_once(notes, f"skipped {model_id} (context {model.context_window} < {needed})")
        else:
            out.append(model_id)
    return out


def route(request, models) -> Decision:
    """Decides how to serve `request` given the catalog `models`.

    Raises `RouteError` when no executor fits.
    """
    complexity, signals = classify(request)
    max_output = request.max_output_tokens
    needed = request.input_tokens + (max_output if max_output is not None else 0)
    notes: List[str] = []
    executors = candidates(EXECUTORS, models, needed, notes)
    if not executors:
        raise RouteError(f"no executor fits a request of {needed} tokens ({', '.join(notes)})")
    executor, fallbacks = executors[0], executors[1:]
    tier = TIERS[complexity]
    planner = None
    if tier != "direct":
        planners = candidates(PLANNERS, models, needed, notes)
        planner = planners[0] if planners else None
        if planner is None:
            tier = "direct"
            notes.append("no planner fits, serving direct")
    reasoning = f"{complexity}: {_describe(signals)}"
    if notes:
        reasoning += "; " + ", ".join(notes)
    return Decision(
        tier=tier,
        executor=executor,
        fallbacks=fallbacks,
        planner=planner,
        reasoning=reasoning,
    )
