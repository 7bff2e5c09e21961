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
bindings generate; catalog models also carry `vision` and `tools` booleans
(what `app.py` makes of contract 0.2.0's capability flags). It returns a `Decision` whose `tier` is the WIT enum case
name (`"plan-and-verify"`). `app.py` turns that into the bindings' types.

Written for speed inside the component, where CPython interprets it: the text
is handled by built-ins that run as compiled code (`str.translate`,
`str.split`, sets) rather than by Python loops over characters or over every
word, and everything that does not depend on the request
is computed at import, which componentize-py runs at build time and
snapshots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import AbstractSet, Dict, List, Optional, Sequence, Set, Tuple

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

# How the task text becomes words, in native passes only (the interpreter's
# per-word and per-character costs dominate inside the component): the text is
# encoded as ASCII with every non-ASCII character replaced by "?", then one
# byte table lower-cases A-Z and turns every byte that is not an ASCII letter
# or digit into a space, and `split()` cuts on the spaces. So anything that is
# not an ASCII letter or digit separates words, every non-ASCII character
# included (`\W`, `str.isalnum` or `str.lower` would treat some non-ASCII
# letters as letters, or map them to ASCII ones).
_WORD_BYTES = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_LOWER_OR_SPACE = bytes(
    (c | 0x20 if c >= 0x41 else c) if c in _WORD_BYTES else 0x20 for c in range(256)
)

# Stems by their first three characters (every stem has at least three): the
# only stems a word can start with are those filed under its first three.
_ALL_STEMS = CRITICAL_STEMS + DEPENDENCY_STEMS + NOVELTY_STEMS + SIMPLE_STEMS + CHANGE_STEMS
if min(map(len, _ALL_STEMS)) < 3:
    raise ValueError("every stem must have at least three characters")
_STEMS_BY_START: Dict[str, Tuple[str, ...]] = {}
for _stem in _ALL_STEMS:
    _STEMS_BY_START[_stem[:3]] = _STEMS_BY_START.get(_stem[:3], ()) + (_stem,)
del _stem

# Each phrase, as searched for in the words joined by spaces, and its words: a
# phrase is searched for only when they all occur.
_PHRASES = tuple((phrase, f" {phrase} ", frozenset(phrase.split())) for phrase in NOVELTY_PHRASES)
# The first word of every phrase: no phrase can occur without one of them.
_PHRASE_FIRST_WORDS = frozenset(phrase.split()[0] for phrase in NOVELTY_PHRASES)


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
    """The lower-cased ASCII words of every user message, in order."""
    text = " ".join([m.content for m in request.messages if m.role == "user"])
    return text.encode("ascii", "replace").translate(_LOWER_OR_SPACE).decode("ascii").split()


def _stems_found(words: AbstractSet[str]) -> Set[str]:
    """The stems that start some word of `words`: one dictionary look-up per
    distinct word."""
    found = set()
    stems_by_start = _STEMS_BY_START.get
    for word in words:
        stems = stems_by_start(word[:3])
        if stems:
            for stem in stems:
                if word.startswith(stem):
                    found.add(stem)
    return found


def _found(stems: Sequence[str], found: AbstractSet[str]) -> List[str]:
    """The stems of `stems` that are in `found`, in list order."""
    if found.isdisjoint(stems):
        return []
    return [stem for stem in stems if stem in found]


# The host's label with the tokens of what the user asked, and the one with
# the tier the session's current task started with.
TASK_TOKENS_LABEL = "task_tokens"
TASK_TIER_LABEL = "task_tier"
# The operator's label with the complexity threshold (0 to 1): a scored task
# is high from a score of SCORE_SCALE * threshold (default 0.5, a score of 3).
THRESHOLD_LABEL = "pointsman.threshold"
DEFAULT_THRESHOLD = 0.5
# The module's config key with the threshold (the label overrides it).
THRESHOLD_CONFIG = "threshold"
# More tools than this is an agent's whole kit, not a sign of the task.
TASK_TOOLS_MAX = 16
SCORE_SCALE = 6.0
_THRESHOLD = re.compile(r"[0-9]{1,16}(\.[0-9]{1,16})?")


def threshold_label(request):
    """The `pointsman.threshold` label when it is a plain decimal, as written."""
    value = _label(request, THRESHOLD_LABEL)
    if value is not None and _THRESHOLD.fullmatch(value):
        return value
    return None


# The complexity a continued task of each tier keeps.
_TASK_TIERS = {"plan-and-verify": CRITICAL, "plan": HIGH, "direct": MEDIUM}


def _label(request, key: str):
    for k, v in request.labels:
        if k == key:
            return v
    return None


def task_tokens(request) -> int:
    """The host's `task_tokens` label (the user messages' tokens, without an
    agent's system prompt and tool schemas), or the input tokens without it."""
    value = _label(request, TASK_TOKENS_LABEL)
    if value is not None and value.isascii() and value.isdigit() and int(value) < 2**32:
        return int(value)
    return request.input_tokens


def continued_task(request):
    """The tier name of the task a turn answering tool calls carries on (its
    latest message, system messages aside, is a `tool` message), when the
    host gives it in `task_tier`; else None."""
    latest = None
    for message in reversed(request.messages):
        if message.role != "system":
            latest = message
            break
    if latest is None or latest.role != "tool":
        return None
    tier = _label(request, TASK_TIER_LABEL)
    return tier if tier in _TASK_TIERS else None


def classify(request, configured: float = DEFAULT_THRESHOLD) -> Tuple[str, List[str]]:
    """Classifies `request`, returning the complexity and the signals that decided."""
    words = task_words(request)
    # Each distinct word once: long texts repeat their words, and everything
    # below depends only on which words occur (phrases aside).
    distinct = frozenset(words)
    stems = _stems_found(distinct)
    critical = _found(CRITICAL_STEMS, stems)
    if not distinct.isdisjoint(CRITICAL_WORDS):
        critical += [word for word in CRITICAL_WORDS if word in distinct]
    if critical:
        return CRITICAL, [f"keyword:{k}" for k in critical]

    score = 0
    signals: List[str] = []
    tokens = task_tokens(request)
    if tokens >= 32_000:
        score += 3
        signals.append("tokens>=32000")
    elif tokens >= 8_000:
        score += 2
        signals.append("tokens>=8000")
    elif tokens >= 2_000:
        score += 1
        signals.append("tokens>=2000")
    if request.message_count >= 16:
        score += 1
        signals.append("messages>=16")
    if 5 <= request.tool_count <= TASK_TOOLS_MAX:
        score += 1
        signals.append("tools>=5")
    dependencies = _found(DEPENDENCY_STEMS, stems)
    if dependencies:
        score += min(len(dependencies), 2)
        signals += [f"dependency:{s}" for s in dependencies]
    novelty = _found(NOVELTY_STEMS, stems)
    # Phrases are consecutive words: the words, joined, are searched only for
    # a phrase whose words all occur.
    if not distinct.isdisjoint(_PHRASE_FIRST_WORDS):
        phrase_text = None
        for phrase, needle, phrase_words in _PHRASES:
            if phrase_words <= distinct:
                if phrase_text is None:
                    phrase_text = " " + " ".join(words) + " "
                if needle in phrase_text:
                    novelty.append(phrase)
    if novelty:
        score += 2
        signals += [f"novelty:{s}" for s in novelty]
    simple = _found(SIMPLE_STEMS, stems)
    if simple:
        score -= 1
        signals += [f"simple:{s}" for s in simple]
    change = _found(CHANGE_STEMS, stems)
    if change:
        signals += [f"change:{s}" for s in change]

    threshold = configured
    raw = threshold_label(request)
    if raw is not None:
        signals.append("threshold:" + raw)
        threshold = float(raw)
    if score >= SCORE_SCALE * threshold:
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


def candidates(
    preference: Sequence[str], models, needed: int, vision: bool, tools: bool, notes: List[str]
) -> List[str]:
    """The models of `preference` that the catalog has, available, large
    enough, and reading images and calling tools when `vision` and `tools`
    ask it, in order; notes why others were skipped. `models` maps ids to
    catalog entries (the first entry of each id)."""
    out = []
    for model_id in preference:
        model = models.get(model_id)
        if model is None:
            continue
        if not model.available:
            _push_once(notes, f"skipped {model_id} (unavailable)")
        elif vision and not model.vision:
            _push_once(notes, f"skipped {model_id} (no vision)")
        elif tools and not model.tools:
            _push_once(notes, f"skipped {model_id} (no tools)")
        elif model.context_window < needed:
            _push_once(notes, f"skipped {model_id} (context {model.context_window} < {needed})")
        else:
            out.append(model_id)
    return out


def configured_threshold(config) -> Optional[float]:
    """The `threshold` config, a list of (key, value), as a number from 0
    to 1 if set. Raises `RouteError` when it is not one."""
    for key, raw in config:
        if key != THRESHOLD_CONFIG:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise RouteError(f"config {THRESHOLD_CONFIG} = {raw!r} is not a valid value")
        if not 0.0 <= value <= 1.0:
            raise RouteError(f"config {THRESHOLD_CONFIG} = {value} is outside 0 to 1")
        return value
    return None


def route(request, models, threshold: float = DEFAULT_THRESHOLD) -> Decision:
    """Decides how to serve `request` given the catalog `models` and the
    configured `threshold`.

    Raises `RouteError` when no executor fits.
    """
    complexity, signals = classify(request, threshold)
    task_tier = continued_task(request)
    if task_tier is not None:
        signals = [f"continues a {task_tier} task"] + signals
        kept = _TASK_TIERS[task_tier]
        # A direct task stays direct: at most Medium.
        if kept != MEDIUM or complexity in (HIGH, CRITICAL):
            complexity = kept
    max_output = request.max_output_tokens
    needed = request.input_tokens + (max_output if max_output is not None else 0)
    notes: List[str] = []
    # The first entry of each id, as a lookup by id would find it.
    by_id = {}
    for model in models:
        by_id.setdefault(model.id, model)
    # Only the executor sees the images and the tools; a planner plans from the text.
    executors = candidates(
        EXECUTORS, by_id, needed, request.has_images, request.tool_count > 0, notes
    )
    if not executors:
        raise RouteError(f"no executor fits a request of {needed} tokens ({', '.join(notes)})")
    executor, fallbacks = executors[0], executors[1:]
    tier = TIERS[complexity]
    planner = None
    if tier != "direct":
        planners = candidates(PLANNERS, by_id, needed, False, False, notes)
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
