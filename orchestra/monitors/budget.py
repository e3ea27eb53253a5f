"""Budget: blocks skills the run can no longer afford."""

from __future__ import annotations

from orchestra.monitors.base import MonitorContext, Priority, Signal

__all__ = ["BudgetMonitor"]


class BudgetMonitor:
    """With a hard budget, a skill whose cost exceeds what is left weighs ∞.

    When nothing affordable is left the route is infeasible and the run demotes or
    escalates, with this monitor's reason in the log; it never overspends.
    """

    name = "budget"

    async def check(self, ctx: MonitorContext) -> list[Signal]:
        if ctx.budget_usd is None:
            return []
        left = ctx.budget_usd - ctx.spent_usd
        signals = []
        for sk in ctx.graph.skills_in_use():
            if sk.cost > left + 1e-12:
                signals.append(
                    Signal(
                        monitor=self.name,
                        kind="block",
                        priority=Priority.HIGH,
                        skill=sk.name,
                        reason=f"{sk.name} costs ${sk.cost:.4f}, only ${max(left, 0):.4f} of "
                        f"the run's ${ctx.budget_usd:.4f} budget left",
                    )
                )
        return signals
