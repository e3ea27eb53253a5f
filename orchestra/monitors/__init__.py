"""Health monitors: run in parallel before each routing decision, each emits signals."""

from orchestra.monitors.base import (
    Monitor,
    MonitorContext,
    Priority,
    ReadyStep,
    Signal,
    combine,
    run_monitors,
)
from orchestra.monitors.budget import BudgetMonitor
from orchestra.monitors.health import HealthBoard, SkillHealth, ToolHealthMonitor
from orchestra.monitors.latency import LatencyMonitor
from orchestra.monitors.risk import RiskMonitor

__all__ = [
    "BudgetMonitor",
    "HealthBoard",
    "LatencyMonitor",
    "Monitor",
    "MonitorContext",
    "Priority",
    "ReadyStep",
    "RiskMonitor",
    "Signal",
    "SkillHealth",
    "ToolHealthMonitor",
    "combine",
    "default_monitors",
    "run_monitors",
]


def default_monitors(*, max_amount: float | None = None) -> list[Monitor]:
    """Tool health, latency, risk and budget: the set a run uses unless told otherwise."""
    return [
        ToolHealthMonitor(),
        LatencyMonitor(),
        RiskMonitor(max_amount=max_amount),
        BudgetMonitor(),
    ]
