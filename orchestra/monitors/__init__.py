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
from orchestra.monitors.probe import ProbeMonitor, tcp_probe
from orchestra.monitors.risk import RiskMonitor

__all__ = [
    "BudgetMonitor",
    "HealthBoard",
    "LatencyMonitor",
    "Monitor",
    "MonitorContext",
    "Priority",
    "ProbeMonitor",
    "ReadyStep",
    "RiskMonitor",
    "Signal",
    "SkillHealth",
    "ToolHealthMonitor",
    "combine",
    "default_monitors",
    "run_monitors",
    "tcp_probe",
]


def default_monitors(*, max_amount: float | None = None) -> list[Monitor]:
    """Tool health, probes, latency, risk and budget: the set a run uses unless told otherwise."""
    return [
        ToolHealthMonitor(),
        ProbeMonitor(),
        LatencyMonitor(),
        RiskMonitor(max_amount=max_amount),
        BudgetMonitor(),
    ]
