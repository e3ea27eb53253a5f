"""Run steps in this process: the embedded default, no broker needed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from pydantic import ValidationError

from orchestra import aio, secrets, tracing
from orchestra.errors import (
    BudgetExceeded,
    ErrorPayload,
    MalformedOutput,
    SecretKeyError,
    ToolRaised,
    ToolTimeout,
    to_payload,
)
from orchestra.executors.base import StepOutcome, StepTask
from orchestra.models.budget import metering
from orchestra.skills import Skill

__all__ = ["LocalExecutor", "run_skill"]


def _summary(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        loc = ".".join(map(str, e["loc"])) or "output"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


async def run_skill(skill: Skill, task: StepTask) -> StepOutcome:
    """Call ``skill`` for ``task`` with its timeout and validate both ends.

    Shared by every executor, so a step behaves the same in process and on a worker; the
    call is the ``execute_tool`` span (a child of the driver's step span, even across
    processes, through ``task.trace_context``).  Log lines inside the call carry the run's
    ``run_id``, ``step_id`` and ``skill``.
    """
    with (
        structlog.contextvars.bound_contextvars(
            run_id=task.run_id, step_id=task.step_id, skill=skill.name
        ),
        tracing.extract_context(task.trace_context),
        tracing.tool_span(skill.name, run_id=task.run_id, step_id=task.step_id) as span,
        metering() as meter,
    ):
        outcome = await _run_skill(skill, task)
        if not outcome.ok and outcome.error is not None:
            tracing.mark_error(span, outcome.error.message, outcome.error.type)
        # the model calls the step made (an agent's), for the run's decision log and ledger
        if meter.llm_calls or meter.booked_usd or meter.routes:  # most tools call no model
            outcome.llm_calls = meter.llm_calls
            outcome.booked_usd = meter.booked_usd
            outcome.routes = list(meter.routes)
        return outcome


async def _run_skill(skill: Skill, task: StepTask) -> StepOutcome:
    try:
        arguments, opened = secrets.open_arguments(task.arguments)
    except SecretKeyError as exc:
        return StepOutcome(ok=False, error=to_payload(exc, step=task.step_id, skill=skill.name))
    if not opened:
        return await _call(skill, task, arguments)
    # The skill saw these plain values: take them out of whatever it returned or raised.
    outcome = await _call(skill, task, arguments)
    if outcome.output is not None:
        outcome.output = secrets.scrub(outcome.output, opened)
        outcome.checked_by = None  # changed since its check: the driver checks it again
    if outcome.error is not None:
        outcome.error.message = secrets.scrub(outcome.error.message, opened)
    return outcome


async def _call(skill: Skill, task: StepTask, arguments: dict[str, Any]) -> StepOutcome:
    t0 = time.perf_counter()

    def fail(err: ErrorPayload) -> StepOutcome:
        return StepOutcome(ok=False, error=err, duration_ms=(time.perf_counter() - t0) * 1e3)

    try:
        parsed = skill.parse_input(arguments)
    except ValidationError as exc:
        return fail(
            to_payload(
                ToolRaised(f"input rejected by {skill.name}: {_summary(exc)}"),
                step=task.step_id,
                skill=skill.name,
            )
        )
    try:
        # no task and no timer for a call that answers without waiting
        raw: Any = await aio.finish_within(skill.invoke(parsed), task.timeout_s)
    except TimeoutError:
        return fail(
            to_payload(
                ToolTimeout(f"{skill.name} did not answer within {task.timeout_s:g}s"),
                step=task.step_id,
                skill=skill.name,
            )
        )
    except asyncio.CancelledError:
        raise
    except BudgetExceeded as exc:  # a refusal, not a fault: it must not be retried
        return fail(to_payload(exc, step=task.step_id, skill=skill.name))
    except Exception as exc:
        return fail(
            to_payload(
                ToolRaised(f"{skill.name} raised {type(exc).__name__}: {exc}"),
                step=task.step_id,
                skill=skill.name,
            )
        )
    try:
        output = skill.parse_output(raw)
    except (ValidationError, TypeError) as exc:
        detail = _summary(exc) if isinstance(exc, ValidationError) else str(exc)
        return fail(
            to_payload(
                MalformedOutput(f"{skill.name} returned malformed output: {detail}"),
                step=task.step_id,
                skill=skill.name,
            )
        )
    # a skill that reports its own spend (an agent's model calls) in `cost_usd` has it booked
    reported = output.get("cost_usd")
    extra = (
        float(reported)
        if isinstance(reported, int | float) and not isinstance(reported, bool)
        else 0.0
    )
    return StepOutcome(
        ok=True,
        output=output,
        duration_ms=(time.perf_counter() - t0) * 1e3,
        cost_usd=skill.cost + max(extra, 0.0),
        checked_by=skill,
    )


class LocalExecutor:
    """Runs each attempt as an asyncio task in this process (sync skills in a thread)."""

    name = "local"

    async def execute(self, task: StepTask, skill: Skill) -> StepOutcome:
        return await run_skill(skill, task)

    async def aclose(self) -> None:
        return None
