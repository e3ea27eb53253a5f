"""orchestra.aio: eager coroutines behave like tasks and ``asyncio.timeout``, minus the cost."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from orchestra import aio

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


async def _answer(x: int) -> int:
    return x * 2


async def _waits(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * 3


async def _raises() -> int:
    raise ValueError("boom")


def test_a_coroutine_that_does_not_wait_is_done_at_once() -> None:
    async def main() -> None:
        fut = aio.start(_answer(21))
        assert fut.done() and fut.result() == 42
        assert not isinstance(fut, asyncio.Task)  # no task was made for it

    asyncio.run(main())


def test_a_coroutine_that_waits_goes_on_as_a_task() -> None:
    async def main() -> None:
        fut = aio.start(_waits(5))
        assert not fut.done()
        assert await fut == 15

    asyncio.run(main())


def test_an_exception_is_the_futures_either_way() -> None:
    async def late() -> int:
        await asyncio.sleep(0)
        raise KeyError("late")

    async def main() -> None:
        early = aio.start(_raises())
        assert early.done()
        with pytest.raises(ValueError, match="boom"):
            early.result()
        with pytest.raises(KeyError):
            await aio.start(late())

    asyncio.run(main())


def test_context_set_before_the_wait_holds_after_it_and_stays_inside() -> None:
    """As in a task: one copy of the caller's context for the first part and the rest
    (a span attached before the first wait is detached after it without error)."""

    async def body() -> str:
        token = VAR.set("inside")
        await asyncio.sleep(0)
        seen = VAR.get()
        VAR.reset(token)  # raises ValueError if the context changed across the wait
        return seen

    async def main() -> None:
        VAR.set("caller")
        assert await aio.start(body()) == "inside"
        assert VAR.get() == "caller"  # the coroutine's changes did not leak out

    asyncio.run(main())


def test_cancelling_the_future_cancels_what_the_coroutine_awaits() -> None:
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

        fut = aio.start(parent())
        await asyncio.sleep(0.01)
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        await asyncio.wait_for(child_cancelled.wait(), 1)

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
        assert await aio.finish_within(_answer(1), 0.05) == 2
        assert await aio.finish_within(_waits(1), 5) == 3
        with pytest.raises(TimeoutError):
            await aio.finish_within(slow(), 0.05)
        assert cleaned == [True]

    asyncio.run(main())
