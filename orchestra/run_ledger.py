"""The run's one ledger, as the run loop uses it: every cost reserved before it is spent.

A run has one :class:`~orchestra.models.budget.Ledger` (``Runner.run(..., budget_usd=...)``,
``orchestra run --budget``; unlimited without a budget): in process an
:class:`~orchestra.models.budget.InMemoryLedger`, on a fleet a
:class:`~orchestra.models.budget.RedisLedger` that the workers attach to.  On it

* the loop reserves each step's declared cost **before dispatch** (:meth:`RunLedger.reserve_step`),
  so steps dispatched together are checked together, not each against what is left;
* model calls (agent steps, demotion) reserve their own worst case from the same ledger
  (the router finds it with :func:`~orchestra.models.budget.current_ledger`), with
  ``max_tokens`` cut to what the reservation allows;
* after the step, the loop settles its reservation with what the tool cost itself
  (:meth:`RunLedger.settle_step`; what its model calls booked is not booked twice).  A cost
  over the reservation is an **overrun**: booked, reported to the loop (an ``overrun``
  decision), and every later reservation that would spend anything is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from orchestra.executors.base import StepOutcome
from orchestra.models.budget import (
    BudgetRefusal,
    BudgetSnapshot,
    InMemoryLedger,
    Ledger,
    RedisLedger,
    Reservation,
)

__all__ = ["LedgerFactory", "RunLedger", "in_memory_ledger", "redis_ledger_factory"]

T = TypeVar("T")

#: How long the loop waits for a ledger whose store went away (a Redis restart) to come back.
RECONNECT_S = 60.0

LedgerFactory = Callable[[str, float | None, float], Awaitable[Ledger]]
"""``(run_id, budget_usd, spent_usd) -> Ledger``: the ledger of one run (``spent_usd`` is what
a resumed run had spent already)."""


async def in_memory_ledger(run_id: str, budget_usd: float | None, spent_usd: float) -> Ledger:
    """The embedded default: the run's ledger lives in this process."""
    return InMemoryLedger(budget_usd, run_id=run_id, spent_usd=spent_usd)


def redis_ledger_factory(url: str) -> LedgerFactory:
    """A factory of run ledgers in the Redis at ``url``, shared by every worker of the run."""

    async def make(run_id: str, budget_usd: float | None, spent_usd: float) -> Ledger:
        import redis.asyncio as aredis

        client = aredis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0)
        ledger = await RedisLedger.create(client, run_id, limit_usd=budget_usd, spent_usd=spent_usd)
        ledger.owns_client = True
        return ledger

    return make


class RunLedger:
    """The loop's side of the run's ledger: step reservations, settlements, overruns."""

    def __init__(
        self,
        ledger: Ledger,
        budget_usd: float | None,
        *,
        remake: Callable[[], Awaitable[Ledger]] | None = None,
    ):
        self.ledger = ledger
        self.budget_usd = budget_usd
        self._held: dict[tuple[str, str], tuple[int, Reservation]] = {}
        # settlements made ahead (settle_ahead): (step, skill) -> (overrun, budget after)
        self._ahead: dict[tuple[str, str], tuple[float, BudgetSnapshot]] = {}
        self._overrun_seen = 0.0
        # a shared ledger lives in Redis, which may restart and lose it: ``remake`` builds it
        # again from what the run knows it spent (the generation tells old reservations apart)
        self._remake = remake
        self._generation = 0

    async def _op(self, fn: Callable[[Ledger], Awaitable[T]]) -> T:
        """``fn(ledger)``; when the ledger's store dropped the connection (Redis restarted),
        wait for it, rebuild the ledger from the run's own books, and try once more."""
        try:
            return await fn(self.ledger)
        except (ConnectionError, OSError, TimeoutError) as exc:
            if self._remake is None:
                raise
            first: BaseException = exc
        except Exception as exc:  # redis-py's own ConnectionError is not the builtin one
            if self._remake is None or "Connection" not in type(exc).__name__:
                raise
            first = exc
        deadline = time.monotonic() + RECONNECT_S
        while True:
            try:
                fresh = await self._remake()
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise exc from first
                await asyncio.sleep(0.5)
        old, self.ledger = self.ledger, fresh
        self._generation += 1
        close: Callable[[], Awaitable[Any]] | None = getattr(old, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
        return await fn(self.ledger)

    @property
    def shared(self) -> bool:
        """True when workers can attach to this ledger (it lives in Redis)."""
        return isinstance(self.ledger, RedisLedger)

    async def reserve_step(self, step: str, skill: str, cost_usd: float) -> str | None:
        """Reserve ``skill``'s declared cost for ``step``; the refusal's reason, or ``None``."""
        try:
            res = await self._op(lambda lg: lg.reserve(cost_usd, 0, label=f"{step}/{skill}"))
        except BudgetRefusal as exc:
            return f"{skill} cannot run: {exc}"
        self._held[(step, skill)] = (self._generation, res)
        return None

    async def reserve_steps(self, items: Sequence[tuple[str, str, float]]) -> list[str | None]:
        """:meth:`reserve_step` for each ``(step, skill, cost_usd)``, in order: the ledger
        sees them one after another, as it would one call at a time, but a ledger in Redis
        gets them in one round trip (a fan-out reserves all its steps at once)."""
        if not items:
            return []
        asks = [(cost, f"{step}/{skill}") for step, skill, cost in items]
        got = await self._op(lambda lg: _reserve_many(lg, asks))
        out: list[str | None] = []
        for (step, skill, _), res in zip(items, got, strict=True):
            if isinstance(res, BudgetRefusal):
                out.append(f"{skill} cannot run: {res}")
            else:
                self._held[(step, skill)] = (self._generation, res)
                out.append(None)
        return out

    async def settle_step(
        self, step: str, skill: str, declared_usd: float, outcome: StepOutcome
    ) -> tuple[list[str], BudgetSnapshot]:
        """Book what ``skill`` cost itself at ``step``; returns the overruns to log (if any)
        and the budget as it stands after the booking.

        A settlement reads the budget back in the same round trip (``settle_snapshot``, where
        the ledger has it): a fleet run books every step, so this is two Redis round trips
        per step fewer than settling, then reading the budget twice."""
        own = max(0.0, outcome.cost_usd - outcome.booked_usd)
        over = 0.0
        snap: BudgetSnapshot | None = None
        ahead = self._ahead.pop((step, skill), None)
        if ahead is not None:  # settled already, with the outcomes that came in with it
            over, snap = ahead
        else:
            held = self._held.pop((step, skill), None)
            # a reservation made in a ledger that has since been rebuilt is gone with it
            res = held[1] if held is not None and held[0] == self._generation else None
            if res is None and own > 0:
                # nothing reserved (a compensation, which the budget must not stop): book it
                # all the same; past the limit it is an overrun
                label = f"{step}/{skill}"
                try:
                    res = await self._op(lambda lg: lg.reserve(own, 0, label=label))
                except BudgetRefusal:
                    res = await self._op(lambda lg: lg.reserve(0.0, 0, label=label))
            if res is not None:
                kept = res
                if own == 0 and not outcome.ok:
                    await self._op(lambda lg: lg.release(kept))
                else:
                    over, snap = await self._op(lambda lg: _settle_snapshot(lg, kept, own))
        notes: list[str] = []
        if over > 0:
            notes.append(
                f"{skill} reported a cost of ${own:.6g}, ${over:.6g} over the "
                f"${declared_usd:.6g} it declared and reserved; the run spends nothing more"
            )
        if snap is None:
            snap = await self._op(lambda lg: lg.snapshot())
        missed = snap.overrun_usd - self._overrun_seen - over
        # (a budget read back by a settlement made ahead may be older than the last one seen)
        self._overrun_seen = max(self._overrun_seen, snap.overrun_usd)
        if missed > 1e-12:
            notes.append(
                f"a model call of {skill} cost ${missed:.6g} more than it reserved; "
                "the run spends nothing more"
            )
        return notes, snap

    async def settle_ahead(self, items: Sequence[tuple[str, str, StepOutcome]]) -> None:
        """Settle now, in order and in one round trip, the reservations of the steps whose
        outcomes came in together and that :meth:`settle_step` is about to book, one after
        another: it then takes each result instead of a round trip of its own.  Only plain
        settlements of reservations held (what nearly every step needs); anything else, or
        anything this could not do, is left to :meth:`settle_step`.  What is not taken is
        dropped by :meth:`forget_ahead`."""
        many = getattr(self.ledger, "settle_many", None)
        ready: list[tuple[tuple[str, str], Reservation, float]] = []
        for step, skill, outcome in items:
            held = self._held.get((step, skill))
            own = max(0.0, outcome.cost_usd - outcome.booked_usd)
            if held is None or held[0] != self._generation or (own == 0 and not outcome.ok):
                continue
            ready.append(((step, skill), held[1], own))
        if many is None or len(ready) < 2:
            return
        try:
            got: list[tuple[float, BudgetSnapshot]] = await many([(r, u) for _, r, u in ready])
        except Exception:  # settle_step settles them one by one (a settlement is idempotent)
            return
        for (key, _, _), result in zip(ready, got, strict=True):
            self._held.pop(key, None)
            self._ahead[key] = result

    def forget_ahead(self) -> None:
        """Drop the settlements made ahead that :meth:`settle_step` did not take (they are
        booked: a later call of the same step and skill must not take them)."""
        self._ahead.clear()

    async def release_all(self) -> None:
        """Free what steps still hold (the run stopped with steps in flight)."""
        held, self._held = list(self._held.values()), {}
        for generation, res in held:
            if generation == self._generation:
                with contextlib.suppress(Exception):  # the run is stopping either way
                    await self.ledger.release(res)

    async def snapshot(self) -> BudgetSnapshot:
        """Where the run's budget stands."""
        return await self._op(lambda lg: lg.snapshot())

    async def aclose(self) -> None:
        """Close the ledger's connection when it owns one."""
        close: Callable[[], Awaitable[Any]] | None = getattr(self.ledger, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


async def _settle_snapshot(
    ledger: Ledger, res: Reservation, usd: float
) -> tuple[float, BudgetSnapshot]:
    """Settle ``res`` at ``usd`` and read the budget after it: in one round trip where the
    ledger can (:meth:`RedisLedger.settle_snapshot`), else in two."""
    both = getattr(ledger, "settle_snapshot", None)
    if both is not None:
        out: tuple[float, BudgetSnapshot] = await both(res, usd=usd, tokens=0)
        return out
    over = await ledger.settle(res, usd=usd, tokens=0)
    return over, await ledger.snapshot()


async def _reserve_many(
    ledger: Ledger, asks: Sequence[tuple[float, str]]
) -> list[Reservation | BudgetRefusal]:
    """Reserve each ``(usd, label)`` in order; a refusal takes the place of its reservation.
    In one round trip where the ledger can (:meth:`RedisLedger.reserve_many`)."""
    many = getattr(ledger, "reserve_many", None)
    if many is not None:
        got: list[Reservation | BudgetRefusal] = await many(asks)
        return got
    out: list[Reservation | BudgetRefusal] = []
    for usd, label in asks:
        try:
            out.append(await ledger.reserve(usd, 0, label=label))
        except BudgetRefusal as exc:
            out.append(exc)
    return out
