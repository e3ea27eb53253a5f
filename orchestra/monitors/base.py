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

**Incremental monitors.**  A monitor whose class sets ``incremental = True`` promises that
each signal it emits about a skill (``skill`` set, ``step`` unset) depends only on that skill
and its health record, and looks only at :meth:`MonitorContext.checked_skills`.  The runtime
then passes, after its first round, only the skills whose health changed and those it
already blocks, and keeps the earlier signals of the others: a round costs what changed,
not the size of the run.  Any other monitor sees every round whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from orchestra.aio import go_on

if TYPE_CHECKING:
    from orchestra.graph import CompiledGraph
    from orchestra.monitors.health import HealthBoard, SkillHealth
    from orchestra.skills import Skill

__all__ = [
    "Monitor",
    "MonitorContext",
    "NodeWeight",
    "Priority",
    "ReadyStep",
    "Signal",
    "combine",
    "gather_signals",
    "is_incremental",
    "run_monitors",
]


class Priority:
    """Conventional priorities (lower = more urgent)."""

    CRITICAL = 0
    HIGH = 10
    MEDIUM = 20
    LOW = 30


class Signal(BaseModel):
    """One monitor's verdict about a skill, a step, or the whole run (immutable: a monitor may
    give the same signal again while nothing it depends on changed)."""

    model_config = ConfigDict(frozen=True)

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
    #: the skills an incremental monitor must look at this round (``None``: every skill in use)
    skills: Sequence[Skill] | None = None

    _records: tuple[tuple[str, ...], Mapping[str, SkillHealth]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def checked_skills(self) -> Sequence[Skill]:
        """The skills to look at: :attr:`skills`, or every skill the graph uses."""
        return self.skills if self.skills is not None else self.graph.skills_in_use()

    def health_records(self, skills: Sequence[Skill]) -> Mapping[str, SkillHealth]:
        """The health records of ``skills``, read once per round for every monitor that asks
        for the same skills (one round trip, not one per monitor, on a fleet's board)."""
        names = tuple(s.name for s in skills)
        if self._records is None or self._records[0] != names:
            self._records = (names, self.health.snapshot(names))
        return self._records[1]


@runtime_checkable
class Monitor(Protocol):
    """Anything with a name that can look at a context and return signals."""

    name: str

    async def check(self, ctx: MonitorContext) -> list[Signal]: ...


async def run_monitors(monitors: Sequence[Monitor], ctx: MonitorContext) -> list[Signal]:
    """Run every monitor concurrently; a monitor that raises yields a ``note``, not a crash."""
    signals = [sig for sigs in await gather_signals(monitors, ctx) for sig in sigs]
    return sorted(signals, key=lambda s: s.priority)


async def gather_signals(monitors: Sequence[Monitor], ctx: MonitorContext) -> list[list[Signal]]:
    """Each monitor's signals, in the monitors' order (see :func:`run_monitors`).

    A check that finishes without waiting costs no task: each check starts in place, and
    only those that wait go on concurrently as tasks.
    """
    results: list[Any] = [None] * len(monitors)
    waiting: dict[int, asyncio.Future[Any]] = {}
    for i, m in enumerate(monitors):
        coro = m.check(ctx)
        try:
            first = coro.send(None)
        except StopIteration as stop:
            results[i] = stop.value
            continue
        except Exception as exc:
            results[i] = exc
            continue
        waiting[i] = asyncio.ensure_future(go_on(coro, first))
    if waiting:
        done = await asyncio.gather(*waiting.values(), return_exceptions=True)
        for i, r in zip(waiting, done, strict=True):
            results[i] = r
    out: list[list[Signal]] = []
    for m, r in zip(monitors, results, strict=True):
        if isinstance(r, BaseException):
            out.append(
                [
                    Signal(
                        monitor=m.name,
                        kind="note",
                        priority=Priority.LOW,
                        reason=f"monitor failed: {r!r}",
                    )
                ]
            )
        else:
            out.append(r)
    return out


def is_incremental(monitor: Monitor) -> bool:
    """Whether ``monitor`` promises incremental signals (see the module docstring)."""
    return getattr(monitor, "incremental", False) is True


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
