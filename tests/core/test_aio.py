"""orchestra.aio: a call driven in place behaves like a plain await under ``asyncio.timeout``;
and a skill's own timeouts and tasks belong to its step, never to the run's loop."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from pydantic import BaseModel

from orchestra import Graph, Runner, aio, skill

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


async def _answer(x: int) -> int:
    return x * 2


async def _waits(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * 3


async def _raises() -> int:
    await asyncio.sleep(0)
    raise ValueError("boom")


def test_finish_within_returns_what_the_call_returns_waiting_or_not() -> None:
    async def main() -> None:
        assert await aio.finish_within(_answer(1), 0.05) == 2
        assert await aio.finish_within(_waits(1), 5) == 3
        with pytest.raises(ValueError, match="boom"):
            await aio.finish_within(_raises(), 5)

    asyncio.run(main())


def test_finish_within_times_out_a_call_that_waits_too_long() -> None:
    cleaned = []

    async def slow() -> int:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append(True)
        return 1

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await aio.finish_within(slow(), 0.05)
        assert cleaned == [True]
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]

    asyncio.run(main())


def test_the_call_runs_in_the_awaiting_task_and_its_context() -> None:
    async def body() -> tuple[asyncio.Task[object] | None, str]:
        before = asyncio.current_task()
        token = VAR.set("inside")
        await asyncio.sleep(0)
        seen = VAR.get()
        VAR.reset(token)  # raises ValueError if the context changed across the wait
        assert asyncio.current_task() is before
        return before, seen

    async def main() -> None:
        task, seen = await aio.finish_within(body(), 5)
        assert task is asyncio.current_task() and seen == "inside"

    asyncio.run(main())


def test_cancelling_the_task_cancels_what_the_call_awaits() -> None:
    async def main() -> None:
        child_cancelled = asyncio.Event()

        async def child() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                child_cancelled.set()
                raise

        async def parent() -> None:
            await asyncio.ensure_future(child())

        outer = asyncio.ensure_future(aio.finish_within(parent(), 30))
        await asyncio.sleep(0.01)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        await asyncio.wait_for(child_cancelled.wait(), 1)

    asyncio.run(main())


class _Said(BaseModel):
    said: str


_SKILL_TASKS: list[asyncio.Task[object] | None] = []


@skill(timeout_s=5)
async def impatient() -> _Said:
    """Gives up on a slow call with its own timeout armed before its first wait."""
    _SKILL_TASKS.append(asyncio.current_task())
    try:
        async with asyncio.timeout(0.05):
            await asyncio.sleep(1)
    except TimeoutError:
        return _Said(said="gave up on time")
    return _Said(said="waited")


def test_a_skill_timeout_armed_before_its_first_wait_times_out_the_skill_not_the_run() -> None:
    """The skill runs in its step's task: its own ``asyncio.timeout`` cancels the skill's
    wait, never the run's loop (a call started before its task existed did, once)."""
    g = Graph("own_timeout")
    g.step("ask", [impatient])

    async def main() -> tuple[object, asyncio.Task[object] | None]:
        return await Runner().run(g), asyncio.current_task()

    _SKILL_TASKS.clear()
    r, loop_task = asyncio.run(main())
    assert r.status == "completed", r.reason  # type: ignore[attr-defined]
    assert r.outputs["ask"] == {"said": "gave up on time"}  # type: ignore[attr-defined]
    assert len(_SKILL_TASKS) == 1 and _SKILL_TASKS[0] is not None
    assert _SKILL_TASKS[0] is not loop_task  # the skill's own task, not the run's


_LEAK: contextvars.ContextVar[str] = contextvars.ContextVar("_LEAK", default="clean")
_SEEN: list[str] = []


@skill
async def sets_a_var() -> _Said:
    _LEAK.set("set by the first step")
    await asyncio.sleep(0)  # and waits, so the rest of it is driven after a wait
    return _Said(said=_LEAK.get())


@skill
async def reads_the_var() -> _Said:
    _SEEN.append(_LEAK.get())
    return _Said(said=_LEAK.get())


def test_what_a_step_sets_in_its_context_stays_in_that_step() -> None:
    """Lone calls (a chain's) are awaited by the run's loop itself, in a copy of its
    context, as a task of their own would be: one step's context variables do not reach
    the next step, nor the caller."""
    g = Graph("context_per_step")
    g.step("first", [sets_a_var])
    g.step("second", [reads_the_var], after="first")
    _SEEN.clear()
    r = asyncio.run(Runner().run(g))
    assert r.status == "completed", r.reason
    assert r.outputs["first"] == {"said": "set by the first step"}
    assert _SEEN == ["clean"] and r.outputs["second"] == {"said": "clean"}
    assert _LEAK.get() == "clean"
