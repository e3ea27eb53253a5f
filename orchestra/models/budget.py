"""A run's hard budget, in USD and tokens, shared by every step that spends it.

Every LLM call goes through two moves on a :class:`Ledger`:

1. **reserve** the most the call can cost *before* sending it.  The ledger refuses
   (:class:`BudgetRefusal`, a :class:`~orchestra.errors.BudgetExceeded`) when
   ``spent + reserved + this`` would cross the limit, so calls in flight on parallel steps
   or on other workers can never add up past it;
2. **settle** the reservation with the cost the response reported (or **release** it when
   the call failed before spending).

Money is kept as integer nano-dollars (1e-9 USD), reservations rounded up and spend
rounded to nearest, so sums are exact and no float drift accumulates.

Two implementations: :class:`InMemoryLedger` for one process (threads and asyncio tasks),
and :class:`RedisLedger`, whose reserve/settle are single Lua scripts (atomic on the Redis
server) so that one budget holds across a fleet of workers.
"""

from __future__ import annotations

import math
import threading
import uuid
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from orchestra.errors import BudgetExceeded, ConfigError

__all__ = [
    "BudgetRefusal",
    "BudgetSnapshot",
    "InMemoryLedger",
    "Ledger",
    "RedisLedger",
    "Reservation",
    "from_nano",
    "to_nano",
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

    run_id: str
    limit_usd: float | None
    limit_tokens: int | None
    spent_usd: float = 0.0
    spent_tokens: int = 0
    reserved_usd: float = 0.0
    reserved_tokens: int = 0
    calls: int = 0

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

    async def settle(self, reservation: Reservation, *, usd: float, tokens: int) -> None:
        """Book what the call really cost and free the rest of its reservation (idempotent)."""
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
    ):
        _check_limits(limit_usd, limit_tokens)
        self._run_id = run_id or uuid.uuid4().hex
        self._limit_nano = None if limit_usd is None else to_nano(limit_usd)
        self._limit_tokens = limit_tokens
        self._spent_nano = 0
        self._spent_tokens = 0
        self._reserved_nano = 0
        self._reserved_tokens = 0
        self._calls = 0
        self._open: dict[str, Reservation] = {}
        self._lock = threading.Lock()

    @property
    def run_id(self) -> str:
        """The run this ledger books for."""
        return self._run_id

    def _snapshot(self) -> BudgetSnapshot:
        return BudgetSnapshot(
            run_id=self._run_id,
            limit_usd=None if self._limit_nano is None else from_nano(self._limit_nano),
            limit_tokens=self._limit_tokens,
            spent_usd=from_nano(self._spent_nano),
            spent_tokens=self._spent_tokens,
            reserved_usd=from_nano(self._reserved_nano),
            reserved_tokens=self._reserved_tokens,
            calls=self._calls,
        )

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
            if over_usd or over_tok:
                raise BudgetRefusal(
                    run_id=self._run_id,
                    label=label,
                    needed_usd=usd,
                    needed_tokens=tokens,
                    snapshot=self._snapshot(),
                )
            res = Reservation(
                id=uuid.uuid4().hex, run_id=self._run_id, nano=nano, tokens=tokens, label=label
            )
            self._reserved_nano += nano
            self._reserved_tokens += tokens
            self._open[res.id] = res
            return res

    async def settle(self, reservation: Reservation, *, usd: float, tokens: int) -> None:
        """Book the real cost of the call and free its reservation (idempotent)."""
        nano = to_nano(usd)
        with self._lock:
            if self._open.pop(reservation.id, None) is None:
                return
            self._reserved_nano -= reservation.nano
            self._reserved_tokens -= reservation.tokens
            self._spent_nano += nano
            self._spent_tokens += tokens
            self._calls += 1

    async def release(self, reservation: Reservation) -> None:
        """Free a reservation whose call spent nothing (idempotent)."""
        with self._lock:
            if self._open.pop(reservation.id, None) is None:
                return
            self._reserved_nano -= reservation.nano
            self._reserved_tokens -= reservation.tokens

    async def snapshot(self) -> BudgetSnapshot:
        """Where the budget stands now."""
        with self._lock:
            return self._snapshot()


# KEYS[1] = budget hash, KEYS[2] = open reservations hash.
# ARGV = reservation id, nano, tokens, ttl seconds.
# Returns {ok, spent_nano, reserved_nano, limit_nano, spent_tokens, reserved_tokens, limit_tokens, calls}
# with ok = 1 (reserved), 0 (refused) or -1 (no such budget).
_RESERVE_LUA = """
local b = redis.call('HMGET', KEYS[1], 'limit_nano', 'limit_tokens', 'spent_nano',
                     'spent_tokens', 'reserved_nano', 'reserved_tokens', 'calls')
if not b[1] then return {-1, 0, 0, 0, 0, 0, 0, 0} end
local ln, lt = tonumber(b[1]), tonumber(b[2])
local sn, st = tonumber(b[3] or '0'), tonumber(b[4] or '0')
local rn, rt = tonumber(b[5] or '0'), tonumber(b[6] or '0')
local calls = tonumber(b[7] or '0')
local n, t = tonumber(ARGV[2]), tonumber(ARGV[3])
if (ln >= 0 and sn + rn + n > ln) or (lt >= 0 and st + rt + t > lt) then
  return {0, sn, rn, ln, st, rt, lt, calls}
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
return {1, sn, rn + n, ln, st, rt + t, lt, calls}
"""

# KEYS as above; ARGV = reservation id, actual nano, actual tokens, count (1 = a call, 0 = release).
# Returns 1 when settled now, 0 when it had been settled already.
_SETTLE_LUA = """
local r = redis.call('HGET', KEYS[2], ARGV[1])
if not r then return 0 end
local sp = string.find(r, ' ')
local n, t = string.sub(r, 1, sp - 1), string.sub(r, sp + 1)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'reserved_nano', string.format('%d', -tonumber(n)))
redis.call('HINCRBY', KEYS[1], 'reserved_tokens', string.format('%d', -tonumber(t)))
redis.call('HINCRBY', KEYS[1], 'spent_nano', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'spent_tokens', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'calls', ARGV[4])
return 1
"""


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
        self._key = f"{prefix}:{run_id}"
        self._res_key = f"{self._key}:open"
        self._ttl_s = ttl_s
        self._reserve = client.register_script(_RESERVE_LUA)
        self._settle = client.register_script(_SETTLE_LUA)

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
    ) -> RedisLedger:
        """Create the run's budget if it does not exist yet, and attach to it."""
        _check_limits(limit_usd, limit_tokens)
        ledger = cls(client, run_id, prefix=prefix, ttl_s=ttl_s)
        ln = -1 if limit_usd is None else to_nano(limit_usd)
        lt = -1 if limit_tokens is None else int(limit_tokens)
        async with client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(ledger._key, "limit_nano", ln)
            pipe.hsetnx(ledger._key, "limit_tokens", lt)
            for field in (
                "spent_nano",
                "spent_tokens",
                "reserved_nano",
                "reserved_tokens",
                "calls",
            ):
                pipe.hsetnx(ledger._key, field, 0)
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

    async def reserve(self, usd: float, tokens: int, *, label: str = "") -> Reservation:
        """Hold ``usd``/``tokens``; raise :class:`BudgetRefusal` if it could cross the limit."""
        nano = to_nano(usd, round_up=True)
        rid = uuid.uuid4().hex
        out = await self._reserve(
            keys=[self._key, self._res_key], args=[rid, nano, int(tokens), self._ttl_s]
        )
        ok = int(out[0])
        if ok == -1:
            raise ConfigError(
                f"no budget for run {self._run_id!r} in Redis (expired or never created)",
                field="run_id",
            )
        if ok == 0:
            raise BudgetRefusal(
                run_id=self._run_id,
                label=label,
                needed_usd=usd,
                needed_tokens=tokens,
                snapshot=self._snapshot_from([int(x) for x in out[1:]]),
            )
        return Reservation(id=rid, run_id=self._run_id, nano=nano, tokens=int(tokens), label=label)

    async def settle(self, reservation: Reservation, *, usd: float, tokens: int) -> None:
        """Book the real cost of the call and free its reservation (idempotent)."""
        await self._settle(
            keys=[self._key, self._res_key], args=[reservation.id, to_nano(usd), int(tokens), 1]
        )

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
            ],
        )
        if vals[2] is None:
            raise ConfigError(f"no budget for run {self._run_id!r} in Redis", field="run_id")
        return self._snapshot_from([int(v or 0) for v in vals])

    def _snapshot_from(self, v: list[int]) -> BudgetSnapshot:
        sn, rn, ln, st, rt, lt, calls = v
        return BudgetSnapshot(
            run_id=self._run_id,
            limit_usd=None if ln < 0 else from_nano(ln),
            limit_tokens=None if lt < 0 else lt,
            spent_usd=from_nano(sn),
            spent_tokens=st,
            reserved_usd=from_nano(rn),
            reserved_tokens=rt,
            calls=calls,
        )
