"""Budget: blocks skills the run can no longer afford."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from orchestra.monitors.base import MonitorContext, Priority, Signal

if TYPE_CHECKING:
    from orchestra.graph import CompiledGraph
    from orchestra.skills import Skill

__all__ = ["BudgetMonitor"]


class BudgetMonitor:
    """With a hard budget, a skill whose cost exceeds what is left weighs ∞.

    When nothing affordable is left the route is infeasible and the run demotes or
    escalates, with this monitor's reason in the log; it never overspends.
    """

    name = "budget"

    def __init__(self) -> None:
        # the graph's skills sorted by cost, for the graph (and version) they were sorted for
        self._sorted: tuple[Any, int, list[float], list[tuple[int, Skill]]] | None = None

    def _by_cost(self, graph: CompiledGraph) -> tuple[list[float], list[tuple[int, Skill]]]:
        cached = self._sorted
        if cached is None or cached[0] is not graph or cached[1] != graph.version:
            ranked = sorted(enumerate(graph.skills_in_use()), key=lambda p: p[1].cost)
            cached = (graph, graph.version, [sk.cost for _, sk in ranked], ranked)
            self._sorted = cached
        return cached[2], cached[3]

    async def check(self, ctx: MonitorContext) -> list[Signal]:
        if ctx.budget_usd is None:
            return []
        left = ctx.budget_usd - ctx.spent_usd
        # only the skills dearer than what is left: a search in the skills sorted by cost,
        # not a pass over every skill each round
        costs, ranked = self._by_cost(ctx.graph)
        over = sorted(ranked[bisect.bisect_right(costs, left + 1e-12) :], key=lambda p: p[0])
        return [
            Signal(
                monitor=self.name,
                kind="block",
                priority=Priority.HIGH,
                skill=sk.name,
                reason=f"{sk.name} costs ${sk.cost:.4f}, only ${max(left, 0):.4f} of "
                f"the run's ${ctx.budget_usd:.4f} budget left",
            )
            for _, sk in over
        ]
