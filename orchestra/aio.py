"""Eager coroutines: start a coroutine in place and pay for a task only if it has to wait.

Most of what the runtime awaits per step finishes without waiting on anything: a monitor
reading the health board, an in-memory ledger, a skill that computes its answer.  Wrapping
each in a task (or an ``asyncio.timeout`` timer) costs more than the work itself and a turn
of the event loop.  Python 3.12 has ``asyncio.eager_task_factory`` for this; on 3.11 these
helpers do the same for the places that need it:

* :func:`start` runs a coroutine up to its first real wait and returns a future: already
  done when it finished without waiting, otherwise a task that drives it on.
* :func:`finish_within` awaits a coroutine with a timeout whose timer is armed only when it
  waits (a coroutine that never yields cannot be interrupted by asyncio anyway).


"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["finish_within", "go_on", "start"]

T = TypeVar("T")


def start(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """``asyncio.ensure_future(coro)``, but ``coro`` runs at once up to its first wait.

    As in a task, it runs in a copy of the current context, first part and rest alike (so a
    span or a context variable set before its first wait is still current after it).
    """
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    try:
        first = ctx.run(coro.send, None)
    except StopIteration as stop:
        fut: asyncio.Future[T] = loop.create_future()
        fut.set_result(stop.value)
        return fut
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        fut = loop.create_future()
        if isinstance(exc, asyncio.CancelledError):
            fut.cancel()
        else:
            fut.set_exception(exc)
        return fut
    return loop.create_task(go_on(coro, first), context=ctx)


async def finish_within(coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """``await coro`` with ``asyncio.timeout(timeout_s)``; no timer if it never waits.

    Raises ``TimeoutError`` when it waits past ``timeout_s``, as ``asyncio.timeout`` does.
    """
    try:
        first = coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    async with asyncio.timeout(timeout_s):
        return await go_on(coro, first)


async def go_on(coro: Coroutine[Any, Any, T], waits_on: Any) -> T:
    """Drive a coroutine that was started outside any task and now waits on ``waits_on``
    (a future, or ``None`` for a bare yield) to its end, inside the current task.

    A cancellation of the current task (a timeout included) is thrown into the coroutine,
    which may handle it as if it had been awaited directly.
    """
    while True:
        try:
            if waits_on is None:
                await asyncio.sleep(0)
            else:
                waits_on._asyncio_future_blocking = False
                await asyncio.wait([waits_on])
        except BaseException as exc:  # cancelled: let the coroutine handle it
            if isinstance(waits_on, asyncio.Future):
                waits_on.cancel()  # as a task does with the future it waits on
            try:
                waits_on = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            continue
        try:
            waits_on = coro.send(None)  # the future is done: its await returns its result
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
