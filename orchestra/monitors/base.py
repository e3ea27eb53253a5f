"""Monitors, the signals they emit, and how signals combine into route weights.

Before every routing decision the runtime runs all monitors concurrently
(:func:`run_monitors`).  Each returns :class:`Signal` objects.  They combine per
``(step, skill)`` node as follows (:func:`combine`):

* ``block``: the node weighs ∞ (the route avoids it).  A block aimed at a step blocks every
  skill of that step; one aimed at a skill blocks it in every step.
* ``penalize``: the node's ``factor`` is multiplied by ``signal.factor`` (≥ 1) and
  ``signal.extra`` (≥ 0) is added to its ``extra``.  Penalties stack.
* ``halt``: the whole run cannot continue on its current goal (e.g. the budget is spent):
  the runtime goes straight to demotion/escalation with the signal's reason.
* ``note``: recorded in the decision log, changes nothing.

When several signals explain the same outcome, the one with the lowest ``priority`` number
(most urgent) gives the reason that is logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from orchestra.graph import CompiledGraph
    from orchestra.monitors.health import HealthBoard

__all__ = [
    "Monitor",
    "MonitorContext",
    "NodeWeight",
    "Priority",
    "ReadyStep",
    "Signal",
    "combine",
    "run_monitors",
]


class Priority:
    """Conventional priorities (lower = more urgent)."""

    CRITICAL = 0
    HIGH = 10
    MEDIUM = 20
    LOW = 30


class Signal(BaseModel):
    """One monitor's verdict about a skill, a step, or the whole run."""

    monitor: str
    kind: Literal["block", "penalize", "halt", "note"]
    reason: str
    priority: int = Priority.MEDIUM
    skill: str | None = None
    step: str | None = None
    factor: float = Field(default=1.0, ge=1.0)
    extra: float = Field(default=0.0, ge=0.0)


@dataclass(frozen=True)
class ReadyStep:
    """A step about to be routed, with the arguments it would be called with."""

    step: str
    candidates: tuple[str, ...]
    arguments: Mapping[str, Any]


@dataclass
class MonitorContext:
    """What monitors may look at: the graph, health, spend, and the steps about to run."""

    graph: CompiledGraph
    health: HealthBoard
    ready: Sequence[ReadyStep] = ()
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    spent_usd: float = 0.0
    budget_usd: float | None = None


@runtime_checkable
class Monitor(Protocol):
    """Anything with a name that can look at a context and return signals."""

    name: str

    async def check(self, ctx: MonitorContext) -> list[Signal]: ...


async def run_monitors(monitors: Sequence[Monitor], ctx: MonitorContext) -> list[Signal]:
    """Run every monitor concurrently; a monitor that raises yields a ``note``, not a crash."""
    results = await asyncio.gather(*(m.check(ctx) for m in monitors), return_exceptions=True)
    signals: list[Signal] = []
    for m, r in zip(monitors, results, strict=True):
        if isinstance(r, BaseException):
            signals.append(
                Signal(
                    monitor=m.name,
                    kind="note",
                    priority=Priority.LOW,
                    reason=f"monitor failed: {r!r}",
                )
            )
        else:
            signals.extend(r)
    return sorted(signals, key=lambda s: s.priority)


@dataclass
class NodeWeight:
    """The combined dynamic weight of one (step, skill) node."""

    extra: float = 0.0
    factor: float = 1.0
    blocked_by: Signal | None = None


def combine(
    signals: Sequence[Signal], nodes: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], NodeWeight]:
    """Fold signals into per-node weights (see the module docstring for the rules)."""
    out = {n: NodeWeight() for n in nodes}
    by_skill: dict[str, list[tuple[str, str]]] = {}
    by_step: dict[str, list[tuple[str, str]]] = {}
    for n in nodes:
        by_step.setdefault(n[0], []).append(n)
        by_skill.setdefault(n[1], []).append(n)
    for s in sorted(signals, key=lambda s: s.priority):
        if s.kind not in ("block", "penalize"):
            continue
        if s.step is not None and s.skill is not None:
            targets = [(s.step, s.skill)] if (s.step, s.skill) in out else []
        elif s.step is not None:
            targets = by_step.get(s.step, [])
        elif s.skill is not None:
            targets = by_skill.get(s.skill, [])
        else:
            targets = []
        for t in targets:
            w = out[t]
            if s.kind == "block":
                if w.blocked_by is None:
                    w.blocked_by = s
            else:
                w.factor *= s.factor
                w.extra += s.extra
    return out
