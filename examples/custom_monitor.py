"""A custom health monitor: keep a maintenance window off the route.

A monitor is any object with a ``name`` and an async ``check(ctx)`` returning signals.
Signals can block a skill (or a whole step), penalize it, halt the run, or just add a note.
"""

import asyncio

from orchestra import Graph, Runner, Signal, skill
from orchestra.monitors import MonitorContext, Priority, default_monitors


@skill(cost=0.01)
def primary_db(query: str) -> str:
    return f"primary: {query}"


@skill(cost=0.02)
def replica_db(query: str) -> str:
    return f"replica: {query}"


class MaintenanceWindow:
    """Blocks the skills that are under maintenance right now."""

    name = "maintenance"

    def __init__(self, under_maintenance: set[str]):
        self.under_maintenance = under_maintenance

    async def check(self, ctx: MonitorContext) -> list[Signal]:
        return [
            Signal(
                monitor=self.name,
                kind="block",
                priority=Priority.HIGH,
                skill=s,
                reason=f"{s} is in its maintenance window",
            )
            for s in self.under_maintenance
        ]


graph = Graph("query")
graph.step("read", [primary_db, replica_db])

if __name__ == "__main__":
    runner = Runner(monitors=[*default_monitors(), MaintenanceWindow({"primary_db"})])
    result = asyncio.run(runner.run(graph, {"query": "select 1"}))
    for decision in result.decisions:
        print(decision)
    assert result.path == ["replica_db"]
