"""The scenario file format: tool graphs with outages and injected faults.

This is the format of the Self-Healing Router evaluation (``../shared/data/selfheal``),
extended with runtime faults::

    {"graphs": {"g": {"start": "Start", "goal": "Complete", "fallback_goals": ["Charged"],
                      "edges": [{"source": "Start", "target": "CRM", "cost": 0.1}]}},
     "scenarios": [{"id": "X-1", "graph": "g", "down": ["Stripe"],
                    "faults": [{"tool": "Email", "kind": "exception", "from_call": 1, "count": 2}]}]}

Nodes are tools; a path from ``start`` to ``goal`` is a valid execution.  ``start``, ``goal``
and the ``fallback_goals`` are milestones (no tool is called there).  ``down`` tools are known
unavailable before the run (a health probe says so); ``faults`` show only when called.

A graph may declare side effects: ``"side_effects": {"A1": {"compensate": "UndoA1"}, "A2": {}}``.
Listed tools are not idempotent (a second call acts twice); ``compensate`` names the tool
that undoes a call (not a node of the graph: the benchmark provides it as a recorded
stand-in).  Unlisted tools are idempotent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestra.errors import GraphSpecError

__all__ = [
    "Fault",
    "Scenario",
    "ScenarioEdge",
    "ScenarioFile",
    "ScenarioGraph",
    "SideEffect",
    "load_scenario_file",
]


class ScenarioEdge(BaseModel):
    """Moving from ``source`` to ``target`` costs ``cost``."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1)
    target: str = Field(min_length=1)
    cost: float = 0.0

    @field_validator("cost")
    @classmethod
    def _cost(cls, v: float) -> float:
        if not math.isfinite(v) or v < 0:
            raise ValueError("edge cost must be a finite number >= 0")
        return v


class SideEffect(BaseModel):
    """A tool that acts on the world (not idempotent), and the tool that undoes a call."""

    model_config = ConfigDict(extra="forbid")

    compensate: str | None = Field(default=None, min_length=1)


class ScenarioGraph(BaseModel):
    """A tool graph: nodes are tools, edges are allowed moves with their cost."""

    model_config = ConfigDict(extra="ignore")

    start: str
    goal: str
    fallback_goals: list[str] = Field(default_factory=list)
    topology: str | None = None
    edges: list[ScenarioEdge] = Field(min_length=1)
    side_effects: dict[str, SideEffect] = Field(default_factory=dict)

    def idempotent(self, tool: str) -> bool:
        """Whether ``tool`` may run twice safely (it declares no side effect)."""
        return tool not in self.side_effects

    def compensation(self, tool: str) -> str | None:
        """The tool that undoes a call of ``tool``, if it declares one."""
        se = self.side_effects.get(tool)
        return se.compensate if se is not None else None

    @property
    def compensations(self) -> dict[str, str]:
        """Compensation tool → the tool it undoes."""
        return {se.compensate: t for t, se in self.side_effects.items() if se.compensate}

    @property
    def nodes(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.edges:
            seen.setdefault(e.source)
            seen.setdefault(e.target)
        return list(seen)

    @property
    def milestones(self) -> set[str]:
        return {self.start, self.goal, *self.fallback_goals}

    @property
    def tools(self) -> list[str]:
        m = self.milestones
        return [n for n in self.nodes if n not in m]

    @model_validator(mode="after")
    def _endpoints_exist(self) -> ScenarioGraph:
        nodes = set(self.nodes)
        if self.start not in nodes:
            raise ValueError(f"start {self.start!r} is on no edge")
        if self.goal not in nodes:
            raise ValueError(f"goal {self.goal!r} is on no edge")
        for g in self.fallback_goals:
            if g not in nodes:
                raise ValueError(f"fallback goal {g!r} is on no edge")
        milestones = self.milestones
        undo: set[str] = set()
        for t, se in self.side_effects.items():
            if t not in nodes or t in milestones:
                raise ValueError(f"side_effects.{t}: {t!r} is no tool of the graph")
            if se.compensate is not None:
                if se.compensate in nodes:
                    raise ValueError(
                        f"side_effects.{t}.compensate: {se.compensate!r} is a node of the graph; "
                        "a compensation is a tool of its own"
                    )
                if se.compensate in undo:
                    raise ValueError(
                        f"side_effects.{t}.compensate: {se.compensate!r} undoes two tools"
                    )
                undo.add(se.compensate)
        return self


class Fault(BaseModel):
    """A fault a tool shows when called: on calls ``from_call`` .. ``from_call + count - 1``
    (1-based; ``count`` omitted = forever)."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    kind: Literal["exception", "timeout", "malformed"]
    from_call: int = Field(default=1, ge=1)
    count: int | None = Field(default=None, ge=1)

    def active(self, call_number: int) -> bool:
        """Whether the ``call_number``-th call (1-based) of the tool hits this fault."""
        if call_number < self.from_call:
            return False
        return self.count is None or call_number < self.from_call + self.count


class Scenario(BaseModel):
    """One run of one graph: the tools that are down and the faults that will show."""

    model_config = ConfigDict(extra="ignore")

    id: str
    graph: str
    down: list[str] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)


class ScenarioFile(BaseModel):
    """A whole scenario file."""

    model_config = ConfigDict(extra="ignore")

    graphs: dict[str, ScenarioGraph]
    scenarios: list[Scenario]

    @model_validator(mode="after")
    def _references(self) -> ScenarioFile:
        for i, s in enumerate(self.scenarios):
            if s.graph not in self.graphs:
                raise ValueError(f"scenarios[{i}].graph: unknown graph {s.graph!r}")
            tools = set(self.graphs[s.graph].nodes)
            for j, d in enumerate(s.down):
                if d not in tools:
                    raise ValueError(
                        f"scenarios[{i}].down[{j}]: {d!r} is not a node of {s.graph!r}"
                    )
            for j, f in enumerate(s.faults):
                if f.tool not in tools:
                    raise ValueError(
                        f"scenarios[{i}].faults[{j}].tool: {f.tool!r} is not a node of {s.graph!r}"
                    )
        return self


def load_scenario_file(path: str | Path) -> ScenarioFile:
    """Read and validate a scenario file; errors name the file and the field."""
    p = Path(path)
    try:
        raw: Any = json.loads(p.read_text())
    except FileNotFoundError:
        raise GraphSpecError("no such file", source=str(p)) from None
    except json.JSONDecodeError as exc:
        raise GraphSpecError(
            f"not valid JSON ({exc.msg} at line {exc.lineno})", source=str(p)
        ) from exc
    try:
        return ScenarioFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise GraphSpecError(
            err["msg"], field=".".join(map(str, err["loc"])), source=str(p)
        ) from exc
