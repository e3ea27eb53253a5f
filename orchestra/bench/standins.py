"""Stand-in tools for the self-healing benchmark, and the recorder that watches them.

Every system under test (the Orchestra router, the ReAct agent, the static LangGraph
workflow) runs a scenario on its own fresh set of stand-ins built here, so that what a
system *claims* can be checked against what its tools *did*.

A stand-in is an ordinary :class:`~orchestra.skills.Skill` built with :func:`@skill
<orchestra.skills.skill>`.  It takes the token of the step before it (input field
``token``, so a runner that feeds each step the fields of the nearest earlier output hands
it over by itself) and returns :class:`StandinOutput` with a token unique to the call.  Its scenario faults show
when it is called:

* ``exception``: the call raises :class:`InjectedFault`;
* ``timeout``: the call sleeps far past the skill's ``timeout_s`` (the caller must give up);
* ``malformed``: the call returns a mapping that fails :class:`StandinOutput` (it still
  carries a token, so a system that forwards unvalidated output is caught by the recorder).

A tool listed in the scenario's ``down`` raises :class:`ToolDown` on every call, and the
:class:`HealthProbe` of the set reports it before the run starts.

A tool the graph lists under ``side_effects`` is not idempotent; when it names a
compensation, the set holds a stand-in of that too (:func:`make_compensation`): it takes the
token of the call it undoes and is recorded like any call.

:class:`CallRecorder` logs every call (system, tool, call number, outcome, token, and the
upstream token it was handed): the benchmark judges correctness and silent failures from
this log, never from a system's own report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from orchestra.scenario import Fault, Scenario, ScenarioGraph
from orchestra.skills import Skill, skill

__all__ = [
    "CallRecord",
    "CallRecorder",
    "HealthProbe",
    "InjectedFault",
    "Outcome",
    "StandinInput",
    "StandinOutput",
    "Standins",
    "ToolDown",
    "build_standins",
    "make_compensation",
    "make_standin",
]

Outcome = Literal["ok", "exception", "timeout", "malformed", "down"]
"""What one call of a stand-in did. ``ok`` is the only success."""

#: A ``timeout`` fault sleeps this many times the tool's ``timeout_s``.
TIMEOUT_OVERSHOOT = 20.0


class InjectedFault(RuntimeError):
    """An ``exception`` fault of the scenario: the tool raised."""


class ToolDown(ConnectionError):
    """The tool is unavailable (listed in the scenario's ``down``)."""


class StandinInput(BaseModel):
    """What a stand-in takes: the token of the output it builds on (none for a first step).

    It is named like the output's ``token`` field so that a runner passing each step the
    fields of the nearest earlier output chains the calls without a mapping.
    """

    model_config = ConfigDict(extra="ignore")

    token: str | None = None


class StandinOutput(BaseModel):
    """What a healthy stand-in returns: its name, a per-call token and its call number."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    token: str
    call: int


@dataclass(frozen=True)
class CallRecord:
    """One call of one stand-in, as it happened."""

    system: str
    tool: str
    call_number: int
    outcome: Outcome
    token: str | None
    upstream: str | None
    at_ms: float


@dataclass
class CallRecorder:
    """Records every call made to the stand-ins of one system in one scenario."""

    system: str
    calls: list[CallRecord] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict, repr=False)
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    def next_call(self, tool: str) -> int:
        """Claim the next call number (1-based) of ``tool``."""
        n = self._counts.get(tool, 0) + 1
        self._counts[tool] = n
        return n

    def record(
        self,
        tool: str,
        call_number: int,
        outcome: Outcome,
        *,
        token: str | None = None,
        upstream: str | None = None,
    ) -> CallRecord:
        """Append one call to the log and return it."""
        rec = CallRecord(
            system=self.system,
            tool=tool,
            call_number=call_number,
            outcome=outcome,
            token=token,
            upstream=upstream,
            at_ms=(time.perf_counter() - self._t0) * 1000.0,
        )
        self.calls.append(rec)
        return rec

    def by_token(self, token: str) -> CallRecord | None:
        """The call that produced ``token`` (successful or malformed), if any."""
        for rec in self.calls:
            if rec.token == token:
                return rec
        return None

    def calls_of(self, tool: str) -> list[CallRecord]:
        """Every recorded call of ``tool``, in order."""
        return [r for r in self.calls if r.tool == tool]

    @property
    def failed_tokens(self) -> set[str]:
        """Tokens of calls that did not succeed (a malformed output still carries one)."""
        return {r.token for r in self.calls if r.token is not None and r.outcome != "ok"}

    def __len__(self) -> int:
        return len(self.calls)


def make_standin(
    name: str,
    faults: Iterable[Fault],
    recorder: CallRecorder,
    *,
    down: bool = False,
    latency_s: float = 0.001,
    timeout_s: float = 0.1,
    cost: float = 0.0,
    idempotent: bool = True,
    compensate: Skill | None = None,
) -> Skill:
    """A stand-in tool named ``name`` that shows ``faults`` and logs to ``recorder``.

    ``down=True`` makes every call raise :class:`ToolDown`.  Otherwise the first fault
    active for the call number (see :meth:`Fault.active`) decides the call's outcome; with
    none active the call sleeps ``latency_s`` and returns a :class:`StandinOutput`.
    """
    own = [f for f in faults if f.tool == name]

    async def standin(args: StandinInput) -> StandinOutput:
        upstream = args.token
        n = recorder.next_call(name)
        token = f"{recorder.system}/{name}#{n}"
        if down:
            recorder.record(name, n, "down", upstream=upstream)
            raise ToolDown(f"{name} is unavailable")
        fault = next((f for f in own if f.active(n)), None)
        if fault is None or fault.kind == "malformed":
            try:
                await asyncio.sleep(latency_s)
            except asyncio.CancelledError:  # the caller gave up first: a timeout all the same
                recorder.record(name, n, "timeout", upstream=upstream)
                raise
        if fault is None:
            recorder.record(name, n, "ok", token=token, upstream=upstream)
            return StandinOutput(tool=name, token=token, call=n)
        if fault.kind == "exception":
            recorder.record(name, n, "exception", upstream=upstream)
            raise InjectedFault(f"{name} failed (injected exception, call {n})")
        if fault.kind == "timeout":
            recorder.record(name, n, "timeout", upstream=upstream)
            await asyncio.sleep(timeout_s * TIMEOUT_OVERSHOOT)
            # Reached only by a caller that does not enforce the timeout: the call
            # "succeeds" far too late and is still a failed call.
            return StandinOutput(tool=name, token=token, call=n)
        recorder.record(name, n, "malformed", token=token, upstream=upstream)
        # Fails StandinOutput (``call`` is no int) but carries a token a careless
        # consumer could forward.
        return {"tool": name, "token": token, "call": "<garbled>"}  # type: ignore[return-value]

    standin.__name__ = name
    standin.__qualname__ = f"standin[{name}]"
    made: Skill = skill(
        name=name,
        description=f"Stand-in for the {name} tool of a self-healing scenario.",
        cost=cost,
        latency_ms=latency_s * 1000.0,
        timeout_s=timeout_s,
        idempotent=idempotent,
        compensate=compensate,
    )(standin)
    return made


def make_compensation(
    name: str, undoes: str, recorder: CallRecorder, *, latency_s: float = 0.001
) -> Skill:
    """A stand-in that undoes one call of ``undoes``: it takes that call's token.

    It always succeeds and is recorded with the undone token as its upstream, so the judge
    can tell which call was compensated.
    """

    async def compensation(args: StandinInput) -> StandinOutput:
        n = recorder.next_call(name)
        token = f"{recorder.system}/{name}#{n}"
        await asyncio.sleep(latency_s)
        recorder.record(name, n, "ok", token=token, upstream=args.token)
        return StandinOutput(tool=name, token=token, call=n)

    compensation.__name__ = name
    compensation.__qualname__ = f"compensation[{name}]"
    made: Skill = skill(
        name=name,
        description=f"Undoes one call of {undoes} (give it that call's token).",
        latency_ms=latency_s * 1000.0,
    )(compensation)
    return made


@dataclass(frozen=True)
class HealthProbe:
    """A pre-run health check: which tools report themselves unavailable, and why."""

    down: Mapping[str, str]

    def is_down(self, tool: str) -> bool:
        """Whether the probe reports ``tool`` as unavailable."""
        return tool in self.down


@dataclass(frozen=True)
class Standins:
    """The stand-in tools of one scenario for one system, with its recorder and probe."""

    tools: Mapping[str, Skill]
    recorder: CallRecorder
    probe: HealthProbe
    compensations: Mapping[str, Skill] = field(default_factory=dict)


def build_standins(
    graph: ScenarioGraph,
    scenario: Scenario,
    system: str,
    *,
    latency_s: float = 0.001,
    timeout_s: float = 0.1,
) -> Standins:
    """Fresh stand-ins for every tool of ``graph`` (milestones excluded) for ``system``.

    Every stand-in costs 0 per call: in the scenario format the edge costs are the whole
    cost of a route, and a router that adds skill cost to transition cost must not count
    them twice.
    """
    recorder = CallRecorder(system)
    down = set(scenario.down)
    compensations = {
        undo: make_compensation(undo, t, recorder, latency_s=latency_s)
        for undo, t in graph.compensations.items()
    }
    tools: dict[str, Skill] = {}
    for t in graph.tools:
        undo = graph.compensation(t)
        tools[t] = make_standin(
            t,
            scenario.faults,
            recorder,
            down=t in down,
            latency_s=latency_s,
            timeout_s=timeout_s,
            idempotent=graph.idempotent(t),
            compensate=compensations[undo] if undo is not None else None,
        )
    probe = HealthProbe(
        {t: "health probe: tool reports unavailable" for t in graph.tools if t in down}
    )
    return Standins(tools=tools, recorder=recorder, probe=probe, compensations=compensations)
