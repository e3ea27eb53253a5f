"""The executor seam: how one step attempt is run, wherever it runs.

The runtime hands an executor a :class:`StepTask` (JSON-able: it may cross a broker) and
gets back a :class:`StepOutcome`.  An executor never raises for a tool's failure: an
exception, a timeout and malformed output are all outcomes with ``ok=False`` and an
:class:`~orchestra.errors.ErrorPayload`.  It raises :class:`~orchestra.errors.ExecutorError`
only when it cannot run the step at all (e.g. the broker is unreachable).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from orchestra.errors import ErrorPayload
from orchestra.skills import Skill

__all__ = ["Executor", "StepOutcome", "StepTask"]


class StepTask(BaseModel):
    """One attempt of one skill for one step of one run."""

    run_id: str
    step_id: str
    skill: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    attempt: int = 1
    timeout_s: float = 30.0
    trace_context: dict[str, str] = Field(default_factory=dict)
    journal_token: int | None = None  # journalled call (not idempotent): the lease's token
    #: where the run's ledger lives for the model calls the step makes: ``"redis"`` (the
    #: fleet's result store; a worker attaches to it), or ``None`` (the driver's process)
    ledger: str | None = None

    @property
    def key(self) -> str:
        """Idempotency key: one result per (run, step, skill, attempt)."""
        return f"{self.run_id}:{self.step_id}:{self.skill}:{self.attempt}"


class StepOutcome(BaseModel):
    """What came of a :class:`StepTask`.

    ``cost_usd`` is everything the call cost; ``booked_usd`` the part its model calls booked
    on the run's ledger themselves; ``llm_calls`` how many model calls it made and
    ``routes`` which backend and model answered them, and why.
    """

    ok: bool
    output: dict[str, Any] | None = None
    error: ErrorPayload | None = None
    duration_ms: float = 0.0
    worker: str | None = None
    cost_usd: float = 0.0
    booked_usd: float = 0.0
    llm_calls: int = 0
    routes: list[str] = Field(default_factory=list)
    #: The :class:`~orchestra.skills.Skill` object whose output model already validated
    #: ``output`` in this process (set by :func:`~orchestra.executors.local.run_skill`; never
    #: serialised): the driver's own check of the output skips a second validation when it is
    #: the very skill it would check against (an identity no message can forge).
    checked_by: Any = Field(default=None, exclude=True, repr=False)


@runtime_checkable
class Executor(Protocol):
    """Runs step attempts. Implementations: local (in process), Celery (a fleet)."""

    name: str

    async def execute(self, task: StepTask, skill: Skill) -> StepOutcome: ...

    async def aclose(self) -> None: ...
