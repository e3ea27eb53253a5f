"""What a run leaves behind: its decision log, its step records and its outcome."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "HUMAN",
    "Compensation",
    "Decision",
    "DecisionKind",
    "EscalationInfo",
    "RunResult",
    "RunState",
    "RunStatus",
    "StepRecord",
    "UnknownEffect",
]

HUMAN = "human"
"""The skill name recorded for a step a human did (``orchestra resume ID --answer output:...``)."""

DecisionKind = Literal[
    "execute",  # a call was dispatched along the current route
    "succeed",  # the call returned valid output
    "fail",  # the call raised, timed out, returned malformed output or was vetoed by a monitor
    "reroute",  # the route changed: a failure, a health signal or a catalog substitute
    "probe",  # an open circuit was given a half-open trial because no other route was left
    "note",  # a monitor's remark that changed nothing
    "demote",  # the main goal was out of reach; a lesser goal was chosen
    "escalate",  # nothing reachable is left; a human must decide
    "complete",  # the run reached its (possibly demoted) goal
    "resume",  # the run was resumed: after its driver stopped, or with a human's answer
    "cancel",  # someone cancelled the run (``orchestra runs cancel``); it stopped there
    "overrun",  # a call cost more than it had reserved; the run spends nothing more
    "backtrack",  # no route from where the run stood: completed steps were abandoned for one
    "compensate",  # a completed step's work was undone by its compensating skill
]
RunStatus = Literal["queued", "running", "completed", "demoted", "escalated", "cancelled"]
"""``queued``: submitted, waiting for a driver (``orchestra submit``); ``cancelled``: stopped
on request.  The others are what a run ends as, or ``running`` while a driver has it."""


class Decision(BaseModel):
    """One line of the decision log."""

    kind: DecisionKind
    reason: str
    step: str | None = None
    skill: str | None = None
    at_ms: float = 0.0
    route: list[str] | None = None
    cost: float | None = None
    error_kind: str | None = None

    def __str__(self) -> str:
        where = f"{self.step}/{self.skill}" if self.skill else (self.step or "-")
        return f"{self.kind:<9} {where:<28} {self.reason}"


class StepRecord(BaseModel):
    """A completed step: which skill served it and what it returned."""

    step: str
    skill: str
    output: dict[str, Any]
    duration_ms: float = 0.0
    attempt: int = 1
    worker: str | None = None


class UnknownEffect(BaseModel):
    """A call of a skill that is not idempotent whose outcome nobody can tell (its worker,
    the broker or the driver was lost while it ran): only a human can say if it took effect."""

    step: str
    skill: str
    attempt: int
    token: int
    reason: str


class Compensation(BaseModel):
    """A completed step's work undone: ``skill`` served ``step``, ``by`` undid it."""

    step: str
    skill: str
    by: str
    ok: bool = True
    reason: str = ""


class EscalationInfo(BaseModel):
    """Why a run escalated, and what a human's answer can act on.

    ``kind`` is ``unknown_outcome`` when a side effect may or may not have happened
    (``unknown`` names the calls): answer ``done:{json}`` or ``not-done``.
    """

    reason: str
    kind: Literal["stuck", "unknown_outcome"] = "stuck"
    unknown: list[UnknownEffect] = Field(default_factory=list)
    steps: dict[str, str] = Field(default_factory=dict)  # stuck step -> why it has no route
    risk_blocked: list[str] = Field(default_factory=list)  # steps a risk limit stopped
    goals: list[str] = Field(default_factory=list)  # goals declared by the graph


class RunState(BaseModel):
    """Everything needed to resume a run (checkpointed after every step).

    ``origin`` says how the run was started (graph file, options) so that the command line
    can resume it by id; ``approved`` lists steps a human allowed past a risk limit.
    ``started_at`` (Unix seconds) keeps decision times counting from the run's start across
    resumes; ``trace`` is the run's first ``invoke_agent`` span (W3C ``traceparent``), which
    a resumed part joins, with ``trace_id`` and ``trace_service`` for finding it in Jaeger.
    """

    run_id: str
    graph: str
    input: dict[str, Any] = Field(default_factory=dict)
    status: RunStatus = "running"
    goal: str = "goal"
    tried_goals: list[str] = Field(default_factory=list)
    completed: dict[str, StepRecord] = Field(default_factory=dict)
    attempts: dict[str, int] = Field(default_factory=dict)  # "step:skill" -> attempts so far
    decisions: list[Decision] = Field(default_factory=list)
    spent_usd: float = 0.0
    llm_calls: int = 0
    reason: str = ""
    budget_usd: float | None = None
    origin: dict[str, Any] = Field(default_factory=dict)
    escalation: EscalationInfo | None = None
    approved: list[str] = Field(default_factory=list)
    unknown: dict[str, UnknownEffect] = Field(default_factory=dict)  # step -> unknown call

    #: Compensations run so far, in order (backtracking, demotion).
    compensations: list[Compensation] = Field(default_factory=list)
    #: Work beyond a demoted goal that could not be undone (see ``RunResult.extra_steps``).
    extra: list[StepRecord] = Field(default_factory=list)
    #: The backtracks taken, each as the sorted ``step:skill`` pairs it abandoned.
    backtracks: list[list[str]] = Field(default_factory=list)
    started_at: float = 0.0
    trace: dict[str, str] = Field(default_factory=dict)
    trace_id: str = ""
    trace_service: str = ""


class RunResult(BaseModel):
    """The outcome of a run."""

    run_id: str
    graph: str
    status: RunStatus
    goal: str
    reason: str = ""
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    chosen: dict[str, str] = Field(default_factory=dict)
    path: list[str] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list)
    spent_usd: float = 0.0
    budget_usd: float | None = None
    llm_calls: int = 0
    wall_ms: float = 0.0
    #: Work done beyond the (demoted) goal that could not be compensated: it happened, so it
    #: is listed here, apart from ``path``/``chosen``/``outputs`` (the walk to the goal).
    extra_steps: list[StepRecord] = Field(default_factory=list)
    #: Completed work undone, in the order it was undone (backtracking, demotion).
    compensations: list[Compensation] = Field(default_factory=list)
    #: The run's trace (its first part's, for a resumed run); ``""`` when it was not traced.
    trace_id: str = ""

    @property
    def left_usd(self) -> float | None:
        """What the budget had left at the end (``None`` without a budget)."""
        return None if self.budget_usd is None else max(0.0, self.budget_usd - self.spent_usd)

    @property
    def ok(self) -> bool:
        """The main goal was reached."""
        return self.status == "completed"

    def count(self, kind: DecisionKind) -> int:
        return sum(1 for d in self.decisions if d.kind == kind)

    @property
    def reroutes(self) -> int:
        return self.count("reroute")
