"""A Python router with no logic: `route` answers a constant.

Built with the same toolchain and options as the seed matrix
(examples/policies/python), it costs what componentize-py's bindings and the
interpreter cost per call and nothing of a policy: the floor of
`route/python` (see BENCHMARKS.md). FLOOR_ANSWER picks the answer, as in
floor.js: "full" (the seed matrix's answer to the one-message benchmark
request) or "minimal" (one-letter reasoning, no fallbacks). build.sh
substitutes it.
"""

from typing import List

from wit_world import exports
from wit_world.imports import types

_FULL = types.Route(
    tier=types.Tier.DIRECT,
    executor="glm-4.7",
    fallbacks=["deepseek-v3.2-exp", "claude-opus-4.5"],
    planner=None,
    reasoning="medium: dependency:module, change:fix, change:fail",
    deadline_ms=None,
    max_cost_usd=None,
    max_output_tokens=None,
    labels=[],
)

_MINIMAL = types.Route(
    tier=types.Tier.DIRECT,
    executor="glm-4.7",
    fallbacks=[],
    planner=None,
    reasoning="m",
    deadline_ms=None,
    max_cost_usd=None,
    max_output_tokens=None,
    labels=[],
)

_ANSWER = _MINIMAL if "FLOOR_ANSWER" == "minimal" else _FULL


class _Kept:
    catalog = None


class Routing(exports.Routing):
    def configure(self, catalog: types.Catalog) -> None:
        # Kept, as a policy would keep it, but not read.
        _Kept.catalog = catalog

    def route(self, request: types.Request, health: List[types.Health]) -> types.Route:
        return _ANSWER
