"""The seed-matrix router policy as a componentize-py app.

Implements the `routing` export of the `router` world
(`pointsman:policy/routing@0.1.0`) on top of `seed_matrix`, which holds the
rules and imports no bindings. componentize-py generates the `wit_world` and
`componentize_py_types` modules at build time (see `build.sh`); they are not
committed.

Built with `--stub-wasi`, the component has no stdout or stderr: `print`
would trap. Log through the contract's `host.log` import instead.
"""

from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

import seed_matrix

_TIERS = {
    "direct": types.Tier.DIRECT,
    "plan": types.Tier.PLAN,
    "plan-and-verify": types.Tier.PLAN_AND_VERIFY,
}


class Routing(exports.Routing):
    def route(self, request: types.Request, models: List[types.Model]) -> types.Route:
        try:
            decision = seed_matrix.route(request, models)
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
        )
