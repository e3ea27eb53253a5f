"""Coroutines driven in place: a timer only for a call that has to wait.

Most skill calls answer without waiting on anything (they compute, or read a cache).  An
``asyncio.timeout`` around each arms and cancels a timer (a heap push on the event loop) per
call, which costs more than such a call.  :func:`finish_within` starts the coroutine in the
current task and arms the timeout only if it waits; :func:`go_on` drives a coroutine started
that way to its end (monitors use it too, see :func:`orchestra.monitors.base.gather_signals`).

Both run the coroutine in the *current* task, so ``asyncio.current_task()``, a timeout or a
cancel scope the coroutine enters belongs to the task that awaits it, as with a plain
``await``.  (Starting a coroutine before its task exists, the way Python 3.12's eager tasks
do, is not possible on 3.11 without that breaking: a step call is a task of its own.)
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["finish_within", "go_on", "in_context"]

T = TypeVar("T")


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


async def in_context(coro: Coroutine[Any, Any, T], context: contextvars.Context) -> T:
    """``await coro`` in the current task, but with ``context`` current while it runs (a copy
    of the caller's, as a task of its own would have): what it sets stays inside it."""
    try:
        first = context.run(coro.send, None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    return await go_on(coro, first, context)


async def go_on(
    coro: Coroutine[Any, Any, T], waits_on: Any, context: contextvars.Context | None = None
) -> T:
    """Drive a coroutine that was started outside any task and now waits on ``waits_on``
    (a future, or ``None`` for a bare yield) to its end, inside the current task (and in
    ``context`` when given).

    A cancellation of the current task (a timeout included) is thrown into the coroutine,
    which may handle it as if it had been awaited directly.
    """
    send: Callable[[Any], Any] = coro.send
    throw: Callable[[BaseException], Any] = coro.throw
    if context is not None:
        ctx = context
        def send(value: Any) -> Any:
            return ctx.run(coro.send, value)

        def throw(exc: BaseException) -> Any:
            return ctx.run(coro.throw, exc)

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
                waits_on = throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            continue
        try:
            waits_on = send(None)  # the future is done: its await returns its result
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
