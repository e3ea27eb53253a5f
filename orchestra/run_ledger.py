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

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from orchestra.errors import ConfigError, ExecutorError
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
        try:
            ledger = await RedisLedger.create(
                client, run_id, limit_usd=budget_usd, spent_usd=spent_usd
            )
        except (aredis.RedisError, OSError) as exc:
            await client.aclose()
            raise ExecutorError(
                f"cannot create the budget of run {run_id!r} in the fleet's result store: {exc}"
            ) from exc
        ledger.owns_client = True
        return ledger

    return make


class RunLedger:
    """The loop's side of the run's ledger: step reservations, settlements, overruns."""

    def __init__(self, ledger: Ledger, budget_usd: float | None):
        self.ledger = ledger
        self.budget_usd = budget_usd
        self._held: dict[tuple[str, str], Reservation] = {}
        self._overrun_seen = 0.0

    @property
    def shared(self) -> bool:
        """True when workers can attach to this ledger (it lives in Redis)."""
        return isinstance(self.ledger, RedisLedger)

    @contextlib.contextmanager
    def _store(self) -> Iterator[None]:
        """A ledger in Redis that cannot be reached, or lost the budget (Redis restarted
        without persistence), stops the run explicitly: the executor's error, resumable."""
        try:
            yield
        except BudgetRefusal:
            raise
        except Exception as exc:
            if isinstance(exc, OSError | ConfigError) or type(exc).__module__.startswith("redis"):
                raise ExecutorError(
                    f"the run's budget ledger is unavailable ({type(exc).__name__}: {exc}); "
                    f"resume the run with `orchestra run --resume {self.ledger.run_id}`"
                ) from exc
            raise

    async def reserve_step(self, step: str, skill: str, cost_usd: float) -> str | None:
        """Reserve ``skill``'s declared cost for ``step``; the refusal's reason, or ``None``."""
        try:
            with self._store():
                res = await self.ledger.reserve(cost_usd, 0, label=f"{step}/{skill}")
        except BudgetRefusal as exc:
            return f"{skill} cannot run: {exc}"
        self._held[(step, skill)] = res
        return None

    async def settle_step(
        self, step: str, skill: str, declared_usd: float, outcome: StepOutcome
    ) -> list[str]:
        """Book what ``skill`` cost itself at ``step``; returns the overruns to log (if any)."""
        with self._store():
            return await self._settle_step(step, skill, declared_usd, outcome)

    async def _settle_step(
        self, step: str, skill: str, declared_usd: float, outcome: StepOutcome
    ) -> list[str]:
        res = self._held.pop((step, skill), None)
        own = max(0.0, outcome.cost_usd - outcome.booked_usd)
        notes: list[str] = []
        over = 0.0
        if res is None and own > 0:
            # nothing reserved (a compensation, which the budget must not stop): book it all
            # the same; past the limit it is an overrun
            try:
                res = await self.ledger.reserve(own, 0, label=f"{step}/{skill}")
            except BudgetRefusal:
                res = await self.ledger.reserve(0.0, 0, label=f"{step}/{skill}")
        if res is not None:
            if own == 0 and not outcome.ok:
                await self.ledger.release(res)
            else:
                over = await self.ledger.settle(res, usd=own, tokens=0)
                if over > 0:
                    notes.append(
                        f"{skill} reported a cost of ${own:.6g}, ${over:.6g} over the "
                        f"${declared_usd:.6g} it declared and reserved; the run spends nothing more"
                    )
        snap = await self.ledger.snapshot()
        missed = snap.overrun_usd - self._overrun_seen - over
        self._overrun_seen = snap.overrun_usd
        if missed > 1e-12:
            notes.append(
                f"a model call of {skill} cost ${missed:.6g} more than it reserved; "
                "the run spends nothing more"
            )
        return notes

    async def release_all(self) -> None:
        """Free what steps still hold (the run stopped with steps in flight); best effort:
        a ledger that cannot be reached must not hide why the run stopped."""
        held, self._held = list(self._held.values()), {}
        for res in held:
            with contextlib.suppress(Exception):
                await self.ledger.release(res)

    async def snapshot(self) -> BudgetSnapshot:
        """Where the run's budget stands."""
        with self._store():
            return await self.ledger.snapshot()

    async def aclose(self) -> None:
        """Close the ledger's connection when it owns one."""
        close: Callable[[], Awaitable[Any]] | None = getattr(self.ledger, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
