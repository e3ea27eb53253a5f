"""A run's hard budget, in USD and tokens, shared by every step that spends it.

Every LLM call goes through two moves on a :class:`Ledger`:

1. **reserve** the most the call can cost *before* sending it.  The ledger refuses
   (:class:`BudgetRefusal`, a :class:`~orchestra.errors.BudgetExceeded`) when
   ``spent + reserved + this`` would cross the limit, so calls in flight on parallel steps
   or on other workers can never add up past it;
2. **settle** the reservation with the cost the response reported (or **release** it when
   the call failed before spending).  A cost above its reservation is an **overrun** (a tool
   that misreported its cost): ``settle`` books it, returns it, and the ledger refuses every
   later reservation that would spend anything.

One run has one ledger, for tools and models alike.  The run loop installs it with
:func:`use_ledger` for the code its steps run (the embedded executor, or the worker that
attaches to the run's :class:`RedisLedger`), so a model router built without a ledger books
on the run's: :func:`current_ledger`.  :func:`metering` counts the model calls a step makes.

Money is kept as integer nano-dollars (1e-9 USD), reservations rounded up and spend
rounded to nearest, so sums are exact and no float drift accumulates.

Two implementations: :class:`InMemoryLedger` for one process (threads and asyncio tasks),
and :class:`RedisLedger`, whose reserve/settle are single Lua scripts (atomic on the Redis
server) so that one budget holds across a fleet of workers.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from orchestra.errors import BudgetExceeded, ConfigError

__all__ = [
    "BudgetRefusal",
    "BudgetSnapshot",
    "CallMeter",
    "InMemoryLedger",
    "Ledger",
    "RedisLedger",
    "Reservation",
    "book_unreserved",
    "budget_key",
    "current_ledger",
    "from_nano",
    "meter_model_call",
    "metering",
    "to_nano",
    "use_ledger",
]

NANO = 1_000_000_000


def to_nano(usd: float, *, round_up: bool = False) -> int:
    """USD as integer nano-dollars; ``round_up`` for reservations (never under-reserve)."""
    if not math.isfinite(usd) or usd < 0:
        raise ConfigError(f"an amount must be a finite number >= 0, got {usd!r}", field="usd")
    scaled = usd * NANO
    return math.ceil(scaled - 1e-6) if round_up else round(scaled)


def from_nano(nano: int) -> float:
    """Integer nano-dollars as USD."""
    return nano / NANO


class BudgetSnapshot(BaseModel):
    """Where a run's budget stands.  ``None`` limits mean unlimited."""

    model_config = ConfigDict(frozen=True)  # a ledger hands the same one out until it changes

    run_id: str
    limit_usd: float | None
    limit_tokens: int | None
    spent_usd: float = 0.0
    spent_tokens: int = 0
    reserved_usd: float = 0.0
    reserved_tokens: int = 0
    calls: int = 0
    overrun_usd: float = 0.0

    @property
    def remaining_usd(self) -> float:
        """What a new reservation may still take, in USD (``inf`` when unlimited)."""
        if self.limit_usd is None:
            return math.inf
        return max(0.0, self.limit_usd - self.spent_usd - self.reserved_usd)

    @property
    def remaining_tokens(self) -> float:
        """What a new reservation may still take, in tokens (``inf`` when unlimited)."""
        if self.limit_tokens is None:
            return math.inf
        return max(0, self.limit_tokens - self.spent_tokens - self.reserved_tokens)


class Reservation(BaseModel):
    """Budget held for one call in flight."""

    model_config = ConfigDict(frozen=True)

    id: str
    run_id: str
    nano: int = Field(ge=0)
    tokens: int = Field(ge=0)
    label: str = ""

    @property
    def usd(self) -> float:
        """The reserved amount in USD."""
        return from_nano(self.nano)


class BudgetRefusal(BudgetExceeded):
    """A reservation was refused because it could cross the run's hard limit."""

    def __init__(
        self,
        *,
        run_id: str,
        label: str,
        needed_usd: float,
        needed_tokens: int,
        snapshot: BudgetSnapshot,
    ):
        self.run_id = run_id
        self.label = label
        self.needed_usd = needed_usd
        self.needed_tokens = needed_tokens
        self.snapshot = snapshot
        s = snapshot
        what = f" for {label}" if label else ""
        parts = [
            f"run {run_id!r}: reserving ${needed_usd:.6g} / {needed_tokens} tokens{what} could cross the hard budget"
        ]
        if s.limit_usd is not None:
            parts.append(
                f"USD limit ${s.limit_usd:.6g}, spent ${s.spent_usd:.6g}, "
                f"held by calls in flight ${s.reserved_usd:.6g}, left ${s.remaining_usd:.6g}"
            )
        if s.limit_tokens is not None:
            parts.append(
                f"token limit {s.limit_tokens}, spent {s.spent_tokens}, "
                f"in flight {s.reserved_tokens}, left {s.remaining_tokens:.0f}"
            )
        if s.overrun_usd > 0:
            parts[0] = f"run {run_id!r}: reserving ${needed_usd:.6g}{what} refused"
            parts.append(
                f"spending is blocked after an overrun of ${s.overrun_usd:.6g} "
                "(a call cost more than it had reserved)"
            )
        super().__init__("; ".join(parts))


@runtime_checkable
class Ledger(Protocol):
    """A run's budget: reserve before a call, settle or release after it."""

    @property
    def run_id(self) -> str:
        """The run this ledger books for."""
        ...

    async def reserve(self, usd: float, tokens: int, *, label: str = "") -> Reservation:
        """Hold ``usd``/``tokens`` for a call; raise :class:`BudgetRefusal` if it could cross the limit."""
        ...

    async def settle(self, reservation: Reservation, *, usd: float, tokens: int) -> float:
        """Book what the call really cost and free the rest of its reservation (idempotent).

        Returns the overrun in USD: what it cost above its reservation (0.0 within it, or
        when it had been settled already).  After an overrun nothing more may be spent.
        """
        ...

    async def release(self, reservation: Reservation) -> None:
        """Free a reservation whose call spent nothing (idempotent)."""
        ...

    async def snapshot(self) -> BudgetSnapshot:
        """Where the budget stands now."""
        ...


def _check_limits(limit_usd: float | None, limit_tokens: int | None) -> None:
    if limit_usd is not None and (not math.isfinite(limit_usd) or limit_usd < 0):
        raise ConfigError(f"must be a finite number >= 0, got {limit_usd!r}", field="limit_usd")
    if limit_tokens is not None and limit_tokens < 0:
        raise ConfigError(f"must be >= 0, got {limit_tokens!r}", field="limit_tokens")


class InMemoryLedger:
    """A ledger held in this process; safe across threads and asyncio tasks."""

    def __init__(
        self,
        limit_usd: float | None = None,
        limit_tokens: int | None = None,
        *,
        run_id: str | None = None,
        spent_usd: float = 0.0,
    ):
        _check_limits(limit_usd, limit_tokens)
        self._run_id = run_id or uuid.uuid4().hex
        self._limit_nano = None if limit_usd is None else to_nano(limit_usd)
        self._limit_tokens = limit_tokens
        self._spent_nano = to_nano(spent_usd)  # what a resumed run had spent already
        self._overrun_nano = 0
        self._spent_tokens = 0
        self._reserved_nano = 0
        self._reserved_tokens = 0
        self._calls = 0
        self._open: dict[str, Reservation] = {}
        self._snap: BudgetSnapshot | None = None  # the last snapshot, until a change
        # reservation ids: unique (a uuid per ledger, a counter per reservation)
        self._id_prefix, self._ids = f"{uuid.uuid4().hex}-", itertools.count(1)
        self._lock = threading.Lock()

    @property
    def run_id(self) -> str:
        """The run this ledger books for."""
        return self._run_id

    def _snapshot(self) -> BudgetSnapshot:
        if self._snap is not None:
            return self._snap  # nothing booked since it was taken
        self._snap = BudgetSnapshot(
            run_id=self._run_id,
            limit_usd=None if self._limit_nano is None else from_nano(self._limit_nano),
            limit_tokens=self._limit_tokens,
            spent_usd=from_nano(self._spent_nano),
            spent_tokens=self._spent_tokens,
            reserved_usd=from_nano(self._reserved_nano),
            reserved_tokens=self._reserved_tokens,
            calls=self._calls,
            overrun_usd=from_nano(self._overrun_nano),
        )
        return self._snap

    async def reserve(self, usd: float, tokens: int, *, label: str = "") -> Reservation:
        """Hold ``usd``/``tokens``; raise :class:`BudgetRefusal` if it could cross the limit."""
        nano = to_nano(usd, round_up=True)
        with self._lock:
            over_usd = (
                self._limit_nano is not None
                and self._spent_nano + self._reserved_nano + nano > self._limit_nano
            )
            over_tok = (
                self._limit_tokens is not None
                and self._spent_tokens + self._reserved_tokens + tokens > self._limit_tokens
            )
            blocked = self._overrun_nano > 0 and nano > 0
            if over_usd or over_tok or blocked:
                raise BudgetRefusal(
                    run_id=self._run_id,
                    label=label,
                    needed_usd=usd,
                    needed_tokens=tokens,
                    snapshot=self._snapshot(),
                )
            res = Reservation(
                id=f"{self._id_prefix}{next(self._ids)}",
                run_id=self._run_id,
                nano=nano,
                tokens=tokens,
                label=label,
            )
            self._reserved_nano += nano
            self._reserved_tokens += tokens
            self._open[res.id] = res
            self._snap = None
            return res

    async def settle(self, reservation: Reservation, *, usd: float, tokens: int) -> float:
        """Book the real cost of the call and free its reservation (idempotent).

        Returns the overrun (USD above the reservation); after one, spending is blocked.
        """
        nano = to_nano(usd)
        with self._lock:
            if self._open.pop(reservation.id, None) is None:
                return 0.0
            self._reserved_nano -= reservation.nano
            self._reserved_tokens -= reservation.tokens
            self._spent_nano += nano
            self._spent_tokens += tokens
            self._calls += 1
            over = max(0, nano - reservation.nano)
            self._overrun_nano += over
            self._snap = None
            return from_nano(over)

    async def settle_snapshot(
        self, reservation: Reservation, *, usd: float, tokens: int
    ) -> tuple[float, BudgetSnapshot]:
        """:meth:`settle`, and the budget as it stands right after."""
        over = await self.settle(reservation, usd=usd, tokens=tokens)
        return over, await self.snapshot()

    async def release(self, reservation: Reservation) -> None:
        """Free a reservation whose call spent nothing (idempotent)."""
        with self._lock:
            if self._open.pop(reservation.id, None) is None:
                return
            self._reserved_nano -= reservation.nano
            self._reserved_tokens -= reservation.tokens
            self._snap = None

    async def snapshot(self) -> BudgetSnapshot:
        """Where the budget stands now."""
        with self._lock:
            return self._snapshot()


# KEYS[1] = budget hash, KEYS[2] = open reservations hash.
# ARGV = reservation id, nano, tokens, ttl seconds.
# Returns {ok, spent_nano, reserved_nano, limit_nano, spent_tokens, reserved_tokens, limit_tokens,
# calls, overrun_nano} with ok = 1 (reserved), 0 (refused) or -1 (no such budget).
_RESERVE_LUA = """
local b = redis.call('HMGET', KEYS[1], 'limit_nano', 'limit_tokens', 'spent_nano',
                     'spent_tokens', 'reserved_nano', 'reserved_tokens', 'calls', 'overrun_nano')
if not b[1] then return {-1, 0, 0, 0, 0, 0, 0, 0, 0} end
local ln, lt = tonumber(b[1]), tonumber(b[2])
local sn, st = tonumber(b[3] or '0'), tonumber(b[4] or '0')
local rn, rt = tonumber(b[5] or '0'), tonumber(b[6] or '0')
local calls, ov = tonumber(b[7] or '0'), tonumber(b[8] or '0')
local n, t = tonumber(ARGV[2]), tonumber(ARGV[3])
if (ln >= 0 and sn + rn + n > ln) or (lt >= 0 and st + rt + t > lt) or (ov > 0 and n > 0) then
  return {0, sn, rn, ln, st, rt, lt, calls, ov}
end
-- Pass the integers on as the strings they came in: Lua numbers would be sent as %.17g.
redis.call('HINCRBY', KEYS[1], 'reserved_nano', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'reserved_tokens', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return {1, sn, rn + n, ln, st, rt + t, lt, calls, ov}
"""

# KEYS as above; ARGV = reservation id, actual nano, actual tokens, count (1 = a call, 0 = release).
# Returns {over, spent_nano, reserved_nano, limit_nano, spent_tokens, reserved_tokens,
# limit_tokens, calls, overrun_nano}: the overrun in nano-dollars (actual above reserved; 0
# within it, -1 when the reservation had been settled already) and the budget as it stands
# after the settlement (so that the caller needs no second round trip to read it); over = -2
# when the budget itself is gone.
_SETTLE_LUA = """
local function budget(over)
  local b = redis.call('HMGET', KEYS[1], 'spent_nano', 'reserved_nano', 'limit_nano',
                       'spent_tokens', 'reserved_tokens', 'limit_tokens', 'calls', 'overrun_nano')
  if not b[3] then return {-2, 0, 0, 0, 0, 0, 0, 0, 0} end
  local out = {over}
  for i = 1, 8 do out[i + 1] = tonumber(b[i] or '0') end
  return out
end
local r = redis.call('HGET', KEYS[2], ARGV[1])
if not r then return budget(-1) end
local sp = string.find(r, ' ')
local n, t = string.sub(r, 1, sp - 1), string.sub(r, sp + 1)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'reserved_nano', string.format('%d', -tonumber(n)))
redis.call('HINCRBY', KEYS[1], 'reserved_tokens', string.format('%d', -tonumber(t)))
redis.call('HINCRBY', KEYS[1], 'spent_nano', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'spent_tokens', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'calls', ARGV[4])
local over = tonumber(ARGV[2]) - tonumber(n)
if over > 0 then
  redis.call('HINCRBY', KEYS[1], 'overrun_nano', string.format('%d', over))
  return budget(over)
end
return budget(0)
"""


def budget_key(run_id: str, *, prefix: str = "orchestra:budget") -> str:
    """The Redis hash that holds the budget of ``run_id`` (:class:`RedisLedger`)."""
    return f"{prefix}:{run_id}"


class RedisLedger:
    """A ledger in Redis, shared by every worker of a run; reserve/settle are atomic Lua.

    Create the budget once with :meth:`create` (later calls with the same ``run_id`` attach
    to it and keep its original limits), or attach with :meth:`attach`::

        ledger = await RedisLedger.create(redis.asyncio.Redis(), "run-42", limit_usd=0.50)
    """

    def __init__(
        self, client: Any, run_id: str, *, prefix: str = "orchestra:budget", ttl_s: int = 7 * 86400
    ):
        self._client = client
        self._run_id = run_id
        self._key = budget_key(run_id, prefix=prefix)
        self._res_key = f"{self._key}:open"
        self._ttl_s = ttl_s
        self._reserve = client.register_script(_RESERVE_LUA)
        self._settle = client.register_script(_SETTLE_LUA)
        #: close the client with :meth:`aclose` (set when the ledger made its own client)
        self.owns_client = False

    @classmethod
    async def create(
        cls,
        client: Any,
        run_id: str,
        *,
        limit_usd: float | None = None,
        limit_tokens: int | None = None,
        prefix: str = "orchestra:budget",
        ttl_s: int = 7 * 86400,
        spent_usd: float = 0.0,
    ) -> RedisLedger:
        """Create the run's budget if it does not exist yet, and attach to it.

        ``spent_usd`` is what the run had spent before (a resumed run whose budget expired).
        """
        _check_limits(limit_usd, limit_tokens)
        ledger = cls(client, run_id, prefix=prefix, ttl_s=ttl_s)
        ln = -1 if limit_usd is None else to_nano(limit_usd)
        lt = -1 if limit_tokens is None else int(limit_tokens)
        async with client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(ledger._key, "limit_nano", ln)
            pipe.hsetnx(ledger._key, "limit_tokens", lt)
            pipe.hsetnx(ledger._key, "spent_nano", to_nano(spent_usd))
            for name in (
                "spent_tokens",
                "reserved_nano",
                "reserved_tokens",
                "calls",
                "overrun_nano",
            ):
                pipe.hsetnx(ledger._key, name, 0)
            if ttl_s > 0:
                pipe.expire(ledger._key, ttl_s)
            await pipe.execute()
        return ledger

    @classmethod
    async def attach(
        cls, client: Any, run_id: str, *, prefix: str = "orchestra:budget"
    ) -> RedisLedger:
        """Attach to a budget another process created; :class:`ConfigError` if there is none."""
        ledger = cls(client, run_id, prefix=prefix)
        if not await client.exists(ledger._key):
            raise ConfigError(
                f"no budget for run {run_id!r} in Redis; create it first", field="run_id"
            )
        return ledger

    @property
    def run_id(self) -> str:
        """The run this ledger books for."""
        return self._run_id

    async def aclose(self) -> None:
        """Close the Redis client if this ledger owns it (the budget itself stays)."""
        if self.owns_client:
            await self._client.aclose()

    async def reserve(self, usd: float, tokens: int, *, label: str = "") -> Reservation:
        """Hold ``usd``/``tokens``; raise :class:`BudgetRefusal` if it could cross the limit."""
        nano = to_nano(usd, round_up=True)
        rid = uuid.uuid4().hex
        out = await self._reserve(
            keys=[self._key, self._res_key], args=[rid, nano, int(tokens), self._ttl_s]
        )
        res = self._reserved(out, rid, nano, usd, int(tokens), label)
        if isinstance(res, BudgetRefusal):
            raise res
        return res

    async def reserve_many(
        self, asks: list[tuple[float, str]] | tuple[tuple[float, str], ...]
    ) -> list[Reservation | BudgetRefusal]:
        """Reserve each ``(usd, label)`` (no tokens), in order, in one round trip: each is
        its own atomic script, exactly as if :meth:`reserve` were called once for each; a
        refusal takes the place of its reservation in the list."""
        rids = [uuid.uuid4().hex for _ in asks]
        nanos = [to_nano(usd, round_up=True) for usd, _ in asks]
        async with self._client.pipeline(transaction=False) as pipe:
            for rid, nano in zip(rids, nanos, strict=True):
                await self._reserve(
                    keys=[self._key, self._res_key], args=[rid, nano, 0, self._ttl_s], client=pipe
                )
            outs = await pipe.execute()
        return [
            self._reserved(out, rid, nano, usd, 0, label)
            for out, rid, nano, (usd, label) in zip(outs, rids, nanos, asks, strict=True)
        ]

    def _reserved(
        self, out: list[Any], rid: str, nano: int, usd: float, tokens: int, label: str
    ) -> Reservation | BudgetRefusal:
        """What the reserve script's answer ``out`` means."""
        ok = int(out[0])
        if ok == -1:
            raise ConfigError(
                f"no budget for run {self._run_id!r} in Redis (expired or never created)",
                field="run_id",
            )
        if ok == 0:
            return BudgetRefusal(
                run_id=self._run_id,
                label=label,
                needed_usd=usd,
                needed_tokens=tokens,
                snapshot=self._snapshot_from([int(x) for x in out[1:]]),
            )
        return Reservation(id=rid, run_id=self._run_id, nano=nano, tokens=tokens, label=label)

    async def settle(self, reservation: Reservation, *, usd: float, tokens: int) -> float:
        """Book the real cost of the call and free its reservation (idempotent).

        Returns the overrun (USD above the reservation); after one, spending is blocked.
        """
        out = await self._settle(
            keys=[self._key, self._res_key], args=[reservation.id, to_nano(usd), int(tokens), 1]
        )
        return from_nano(max(0, int(out[0])))

    async def settle_snapshot(
        self, reservation: Reservation, *, usd: float, tokens: int
    ) -> tuple[float, BudgetSnapshot]:
        """:meth:`settle`, and the budget as it stands right after (one round trip)."""
        out = await self._settle(
            keys=[self._key, self._res_key], args=[reservation.id, to_nano(usd), int(tokens), 1]
        )
        vals = [int(x) for x in out]
        if vals[0] == -2:
            raise ConfigError(f"no budget for run {self._run_id!r} in Redis", field="run_id")
        return from_nano(max(0, vals[0])), self._snapshot_from(vals[1:])

    async def settle_many(
        self, items: list[tuple[Reservation, float]]
    ) -> list[tuple[float, BudgetSnapshot]]:
        """:meth:`settle_snapshot` of each ``(reservation, usd)`` (no tokens), in order, in
        one round trip: each its own atomic script, as if called one at a time."""
        async with self._client.pipeline(transaction=False) as pipe:
            for res, usd in items:
                await self._settle(
                    keys=[self._key, self._res_key], args=[res.id, to_nano(usd), 0, 1], client=pipe
                )
            outs = await pipe.execute()
        got: list[tuple[float, BudgetSnapshot]] = []
        for out in outs:
            vals = [int(x) for x in out]
            if vals[0] == -2:
                raise ConfigError(f"no budget for run {self._run_id!r} in Redis", field="run_id")
            got.append((from_nano(max(0, vals[0])), self._snapshot_from(vals[1:])))
        return got

    async def release(self, reservation: Reservation) -> None:
        """Free a reservation whose call spent nothing (idempotent)."""
        await self._settle(keys=[self._key, self._res_key], args=[reservation.id, 0, 0, 0])

    async def snapshot(self) -> BudgetSnapshot:
        """Where the budget stands now."""
        vals = await self._client.hmget(
            self._key,
            [
                "spent_nano",
                "reserved_nano",
                "limit_nano",
                "spent_tokens",
                "reserved_tokens",
                "limit_tokens",
                "calls",
                "overrun_nano",
            ],
        )
        if vals[2] is None:
            raise ConfigError(f"no budget for run {self._run_id!r} in Redis", field="run_id")
        return self._snapshot_from([int(v or 0) for v in vals])

    def _snapshot_from(self, v: list[int]) -> BudgetSnapshot:
        sn, rn, ln, st, rt, lt, calls, ov = v
        return BudgetSnapshot(
            run_id=self._run_id,
            limit_usd=None if ln < 0 else from_nano(ln),
            limit_tokens=None if lt < 0 else lt,
            spent_usd=from_nano(sn),
            spent_tokens=st,
            reserved_usd=from_nano(rn),
            reserved_tokens=rt,
            calls=calls,
            overrun_usd=from_nano(ov),
        )


# --------------------------------------------------------------------------- the run's ledger

_RUN_LEDGER: contextvars.ContextVar[Ledger | None] = contextvars.ContextVar(
    "orchestra_run_ledger", default=None
)
_METER: contextvars.ContextVar[CallMeter | None] = contextvars.ContextVar(
    "orchestra_call_meter", default=None
)


@contextmanager
def use_ledger(ledger: Ledger | None) -> Iterator[Ledger | None]:
    """Make ``ledger`` the run's ledger for the code run inside (and the tasks it starts)."""
    token = _RUN_LEDGER.set(ledger)
    try:
        yield ledger
    finally:
        _RUN_LEDGER.reset(token)


def current_ledger() -> Ledger | None:
    """The ledger of the run this code works for, if a run installed one."""
    return _RUN_LEDGER.get()


@dataclass
class CallMeter:
    """The model calls one step attempt (or one demotion) made, as the decision log tells them.

    ``llm_calls`` counts every call sent to a backend, answered or not; ``booked_usd`` is what
    those calls booked on the run's ledger themselves (so the run does not book it twice);
    ``routes`` says, per answered call, which backend and model answered and why.
    """

    llm_calls: int = 0
    booked_usd: float = 0.0
    routes: list[str] = field(default_factory=list)


@contextmanager
def metering() -> Iterator[CallMeter]:
    """Count the model calls made inside the block (see :class:`CallMeter`)."""
    meter = CallMeter()
    token = _METER.set(meter)
    try:
        yield meter
    finally:
        _METER.reset(token)


def meter_model_call(*, calls: int = 1, booked_usd: float = 0.0, route: str | None = None) -> None:
    """Record a model call on the current :class:`CallMeter` (a no-op outside one)."""
    meter = _METER.get()
    if meter is None:
        return
    meter.llm_calls += calls
    meter.booked_usd += booked_usd
    if route:
        meter.routes.append(route)


async def book_unreserved(usd: float, tokens: int = 0, *, label: str = "") -> float:
    """Book a cost that nobody reserved (a model that is not a router) on the run's ledger.

    It is reserved and settled at once; when the reservation is refused the cost has been
    spent all the same, so it is booked as an overrun.  Returns the overrun in USD.
    """
    ledger = current_ledger()
    if ledger is None or (usd <= 0 and tokens <= 0):
        return 0.0
    try:
        res = await ledger.reserve(usd, tokens, label=label)
    except BudgetRefusal:
        res = await ledger.reserve(0.0, 0, label=label)
    return await ledger.settle(res, usd=usd, tokens=tokens)
