"""The seed-matrix router policy as a componentize-py app.

Implements the `routing` export of the `router` world
(`pointsman:policy/routing@0.2.0`) on top of `seed_matrix`, which holds the
rules and imports no bindings. componentize-py generates the `wit_world` and
`componentize_py_types` modules at build time (see `build.sh`); they are not
committed.

The host calls `configure` with the catalog and this module's config before
the first `route` and after every change; `route` gets live health by
catalog position. The delivered catalog is kept in `_delivered` between
calls: it is the host's, sent again to any fresh instance, not state of the
policy's own.

Built with `--stub-wasi`, the component has no stdout or stderr: `print`
would trap. Log through the contract's `host.log` import instead.
"""

from typing import List, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

import seed_matrix

_TIERS = {
    "direct": types.Tier.DIRECT,
    "plan": types.Tier.PLAN,
    "plan-and-verify": types.Tier.PLAN_AND_VERIFY,
}


class CatalogModel:
    """A catalog model as `seed_matrix` reads it: the static part from
    `configure`, health from each call."""

    __slots__ = (
        "id",
        "roles",
        "context_window",
        "vision",
        "tools",
        "available",
        "success_rate",
        "p50_latency_ms",
    )

    def __init__(self, model: types.Model):
        self.id = model.id
        self.roles = model.roles
        self.context_window = model.context_window
        self.vision = bool(model.capabilities & types.Capabilities.VISION)
        self.tools = bool(model.capabilities & types.Capabilities.TOOLS)
        self.available = True
        self.success_rate = 1.0
        self.p50_latency_ms = 0


class _Delivered:
    models: Optional[List[CatalogModel]] = None
    threshold: float = seed_matrix.DEFAULT_THRESHOLD


_delivered = _Delivered()


class Routing(exports.Routing):
    def configure(self, catalog: types.Catalog) -> None:
        try:
            threshold = seed_matrix.configured_threshold(catalog.config)
        except seed_matrix.RouteError as error:
            raise Err(str(error))
        _delivered.models = [CatalogModel(m) for m in catalog.models]
        _delivered.threshold = (
            threshold if threshold is not None else seed_matrix.DEFAULT_THRESHOLD
        )

    def route(self, request: types.Request, health: List[types.Health]) -> types.Route:
        models = _delivered.models
        if models is None:
            raise Err("called before configure")
        if len(health) != len(models):
            raise Err(f"health for {len(health)} models, but the catalog has {len(models)}")
        for model, h in zip(models, health):
            model.available = h.available
            model.success_rate = h.success_rate
            model.p50_latency_ms = h.p50_latency_ms
        try:
            decision = seed_matrix.route(request, models, _delivered.threshold)
        except seed_matrix.RouteError as error:
            # componentize-py turns a raised `Err` into the `err` case of the
            # function's `result<decision, string>`.
            raise Err(str(error))
        except Exception as error:
            # Any other exception would trap, and with `--stub-wasi` even its
            # traceback cannot be printed: report it as an error instead.
            raise Err(f"internal error: {error!r}")
        return types.Route(
            tier=_TIERS[decision.tier],
            executor=decision.executor,
            fallbacks=decision.fallbacks,
            planner=decision.planner,
            reasoning=decision.reasoning,
            deadline_ms=decision.deadline_ms,
            max_cost_usd=decision.max_cost_usd,
            max_output_tokens=None,
            labels=[],
        )
