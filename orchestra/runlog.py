"""A run's decision log read back per step: the attempts of each step, in order.

``orchestra trace`` (the tree), :mod:`orchestra.viz` (the picture) and the web view all show a
run from these views; they need nothing but a :class:`~orchestra.results.RunState`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestra.results import Decision, RunState, StepRecord

__all__ = ["Attempt", "StepView", "step_views"]


@dataclass
class Attempt:
    """One call of one skill for one step, reconstructed from the decision log."""

    skill: str
    started_ms: float
    ended_ms: float | None = None
    ok: bool | None = None
    reason: str = ""
    error_kind: str | None = None
    route: list[str] | None = None
    route_cost: float | None = None
    duration_ms: float | None = None
    worker: str | None = None

    @property
    def elapsed_ms(self) -> float | None:
        """How long the attempt took: the skill's own measure, else the driver's."""
        if self.duration_ms:
            return self.duration_ms
        if self.ended_ms is None:
            return None
        return self.ended_ms - self.started_ms


@dataclass
class StepView:
    """A step's attempts and the decisions about it, in the order they happened."""

    step: str
    items: list[Attempt | Decision] = field(default_factory=list)
    record: StepRecord | None = None

    @property
    def attempts(self) -> list[Attempt]:
        """The attempts only."""
        return [i for i in self.items if isinstance(i, Attempt)]


def step_views(state: RunState) -> tuple[list[StepView], list[Decision]]:
    """Per-step views and the run-level decisions (demote, escalate, complete, notes)."""
    views: dict[str, StepView] = {}
    open_: dict[tuple[str, str], Attempt] = {}
    run_level: list[Decision] = []

    def view(step: str) -> StepView:
        if step not in views:
            views[step] = StepView(step)
        return views[step]

    for d in state.decisions:
        if d.step is None:
            run_level.append(d)
            continue
        v = view(d.step)
        key = (d.step, d.skill or "")
        if d.kind == "execute":
            a = Attempt(skill=d.skill or "?", started_ms=d.at_ms, route=d.route, route_cost=d.cost)
            open_[key] = a
            v.items.append(a)
        elif d.kind in ("succeed", "fail"):
            found = open_.pop(key, None)
            if found is None:  # a step with no execute line (milestone, or an older log)
                found = Attempt(skill=d.skill or "?", started_ms=d.at_ms)
                v.items.append(found)
            a = found
            a.ended_ms = d.at_ms
            a.ok = d.kind == "succeed"
            a.reason = d.reason
            a.error_kind = d.error_kind
        else:
            v.items.append(d)
    for step, rec in state.completed.items():
        v = view(step)
        v.record = rec
        ok = [a for a in v.attempts if a.ok and a.skill == rec.skill]
        if ok:
            ok[-1].duration_ms = rec.duration_ms or None
            ok[-1].worker = rec.worker
    return list(views.values()), run_level
