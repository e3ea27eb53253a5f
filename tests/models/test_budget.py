"""The run's hard budget: reservations never let spend cross the limit, in or across processes."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import threading
import uuid

import pytest
from skip_policy import missing

from orchestra.errors import BudgetExceeded, ConfigError
from orchestra.models.budget import BudgetRefusal, InMemoryLedger, RedisLedger, to_nano

REDIS_URL = os.environ.get("ORCHESTRA_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        missing(f"no Redis at {REDIS_URL}: {exc}")


class TestInMemoryLedger:
    async def test_reserve_settle_books_actual_cost(self) -> None:
        """Settling frees the reservation and books what the response cost."""
        ledger = InMemoryLedger(limit_usd=1.0, limit_tokens=1000)
        res = await ledger.reserve(0.4, 300, label="a")
        snap = await ledger.snapshot()
        assert snap.reserved_usd == pytest.approx(0.4) and snap.reserved_tokens == 300
        await ledger.settle(res, usd=0.1, tokens=120)
        await ledger.settle(res, usd=0.1, tokens=120)  # idempotent
        snap = await ledger.snapshot()
        assert snap.spent_usd == pytest.approx(0.1) and snap.spent_tokens == 120
        assert snap.reserved_usd == 0 and snap.calls == 1
        assert snap.remaining_usd == pytest.approx(0.9)

    async def test_refusal_names_the_numbers(self) -> None:
        """A reservation that could cross the limit is refused with limit, spend and what is left."""
        ledger = InMemoryLedger(limit_usd=0.01, run_id="r1")
        with pytest.raises(BudgetExceeded) as err:
            await ledger.reserve(0.02, 10, label="gpt (tier 2)")
        assert isinstance(err.value, BudgetRefusal)
        msg = str(err.value)
        assert (
            "r1" in msg and "gpt (tier 2)" in msg and "limit $0.01" in msg and "left $0.01" in msg
        )

    async def test_token_limit(self) -> None:
        """Token limits are enforced like USD limits."""
        ledger = InMemoryLedger(limit_tokens=100)
        await ledger.reserve(0, 60)
        with pytest.raises(BudgetRefusal, match="token limit 100"):
            await ledger.reserve(0, 50)

    async def test_release_frees_budget(self) -> None:
        """A failed call's reservation goes back to the budget."""
        ledger = InMemoryLedger(limit_usd=1.0)
        res = await ledger.reserve(1.0, 0)
        with pytest.raises(BudgetRefusal):
            await ledger.reserve(0.5, 0)
        await ledger.release(res)
        await ledger.reserve(0.5, 0)

    async def test_concurrent_tasks_and_threads_never_overspend(self) -> None:
        """Hundreds of parallel reservations from tasks and threads never exceed the limit."""
        ledger = InMemoryLedger(limit_usd=1.0)
        granted = 0
        lock = threading.Lock()

        async def one() -> None:
            nonlocal granted
            try:
                res = await ledger.reserve(0.03, 1)
            except BudgetRefusal:
                return
            await asyncio.sleep(0)
            await ledger.settle(res, usd=0.03, tokens=1)
            with lock:
                granted += 1

        async def batch() -> None:
            await asyncio.gather(*(one() for _ in range(50)))

        def in_thread() -> None:
            asyncio.run(batch())

        threads = [threading.Thread(target=in_thread) for _ in range(4)]
        for t in threads:
            t.start()
        await asyncio.gather(*(one() for _ in range(100)))
        for t in threads:
            t.join()
        snap = await ledger.snapshot()
        assert granted == 33  # floor(1.0 / 0.03)
        assert snap.spent_usd == pytest.approx(0.99) and snap.spent_usd <= 1.0
        assert snap.reserved_usd == 0

    def test_bad_limits_are_config_errors(self) -> None:
        """A negative limit names the field to fix."""
        with pytest.raises(ConfigError, match="limit_usd"):
            InMemoryLedger(limit_usd=-1)

    def test_nano_rounding(self) -> None:
        """Reservations round up, spend rounds to nearest."""
        assert to_nano(1e-10, round_up=True) == 1
        assert to_nano(1e-10) == 0


def _redis_worker(url: str, run_id: str, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    import redis.asyncio as aredis

    async def main() -> int:
        client = aredis.Redis.from_url(url)
        ledger = await RedisLedger.attach(client, run_id)
        ok = 0
        for _ in range(n):
            try:
                res = await ledger.reserve(0.01, 10)
            except BudgetRefusal:
                continue
            await ledger.settle(res, usd=0.007, tokens=7)
            ok += 1
        await client.aclose()
        return ok

    out.put(asyncio.run(main()))


class TestRedisLedger:
    @pytest.fixture
    async def client(self):  # type: ignore[no-untyped-def]
        _redis_or_skip()
        import redis.asyncio as aredis

        c = aredis.Redis.from_url(REDIS_URL)
        yield c
        await c.aclose()

    async def test_reserve_settle_release(self, client) -> None:  # type: ignore[no-untyped-def]
        """The Redis ledger books like the in-memory one; settle and release are idempotent."""
        run = f"t-{uuid.uuid4().hex}"
        ledger = await RedisLedger.create(client, run, limit_usd=0.5, limit_tokens=1000, ttl_s=60)
        res = await ledger.reserve(0.3, 100, label="x")
        with pytest.raises(BudgetRefusal, match=r"left \$0.2"):
            await ledger.reserve(0.3, 100)
        await ledger.settle(res, usd=0.25, tokens=80)
        await ledger.settle(res, usd=0.25, tokens=80)
        snap = await ledger.snapshot()
        assert snap.spent_usd == pytest.approx(0.25) and snap.spent_tokens == 80 and snap.calls == 1
        assert snap.reserved_usd == 0 and snap.limit_usd == pytest.approx(0.5)
        res2 = await ledger.reserve(0.25, 10)
        await ledger.release(res2)
        await ledger.release(res2)
        assert (await ledger.snapshot()).reserved_usd == 0

    async def test_create_twice_keeps_the_first_limit(self, client) -> None:  # type: ignore[no-untyped-def]
        """A second worker creating the same run attaches to it; the limit is not reset."""
        run = f"t-{uuid.uuid4().hex}"
        a = await RedisLedger.create(client, run, limit_usd=0.1, ttl_s=60)
        await a.settle(await a.reserve(0.05, 0), usd=0.05, tokens=0)
        b = await RedisLedger.create(client, run, limit_usd=5.0, ttl_s=60)
        snap = await b.snapshot()
        assert snap.limit_usd == pytest.approx(0.1) and snap.spent_usd == pytest.approx(0.05)

    async def test_attach_unknown_run(self, client) -> None:  # type: ignore[no-untyped-def]
        """Attaching to a budget nobody created is a ConfigError."""
        with pytest.raises(ConfigError, match="create it first"):
            await RedisLedger.attach(client, f"missing-{uuid.uuid4().hex}")

    async def test_parallel_connections_never_overspend(self, client) -> None:  # type: ignore[no-untyped-def]
        """200 concurrent reservations on 20 connections: exactly what fits is granted."""
        import redis.asyncio as aredis

        run = f"t-{uuid.uuid4().hex}"
        await RedisLedger.create(client, run, limit_usd=0.5, ttl_s=60)
        clients = [aredis.Redis.from_url(REDIS_URL) for _ in range(20)]
        ledgers = [await RedisLedger.attach(c, run) for c in clients]

        async def one(i: int) -> bool:
            try:
                res = await ledgers[i % 20].reserve(0.01, 1)
            except BudgetRefusal:
                return False
            await ledgers[(i + 1) % 20].settle(res, usd=0.01, tokens=1)
            return True

        results = await asyncio.gather(*(one(i) for i in range(200)))
        for c in clients:
            await c.aclose()
        snap = await ledgers[0].snapshot()
        assert sum(results) == 50
        assert snap.spent_usd == pytest.approx(0.5) and snap.spent_usd <= 0.5 + 1e-12

    def test_worker_processes_share_one_budget(self) -> None:
        """Four worker processes spending one run's budget never cross it together."""
        _redis_or_skip()
        import redis.asyncio as aredis

        run = f"t-{uuid.uuid4().hex}"

        async def create() -> None:
            c = aredis.Redis.from_url(REDIS_URL)
            await RedisLedger.create(c, run, limit_usd=0.2, ttl_s=60)
            await c.aclose()

        asyncio.run(create())
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        procs = [
            ctx.Process(target=_redis_worker, args=(REDIS_URL, run, 15, out)) for _ in range(4)
        ]
        for p in procs:
            p.start()
        granted = sum(out.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(timeout=30)

        async def snap() -> float:
            c = aredis.Redis.from_url(REDIS_URL)
            s = await (await RedisLedger.attach(c, run)).snapshot()
            await c.aclose()
            assert s.reserved_usd == 0
            return s.spent_usd

        spent = asyncio.run(snap())
        # each call reserves 0.01 and spends 0.007: reservations gate, spend stays under
        assert spent <= 0.2 + 1e-12
        assert spent == pytest.approx(granted * 0.007)
        assert granted >= 20


class TestOverrun:
    """A cost over its reservation is an overrun: reported by ``settle``, and it blocks spending."""

    async def _check(self, ledger, spent_before: float = 0.0) -> None:  # type: ignore[no-untyped-def]
        res = await ledger.reserve(0.2, 0, label="tool")
        over = await ledger.settle(res, usd=0.5, tokens=0)  # the tool misreported its cost
        assert over == pytest.approx(0.3)
        snap = await ledger.snapshot()
        assert snap.spent_usd == pytest.approx(spent_before + 0.5)
        assert snap.overrun_usd == pytest.approx(0.3)
        with pytest.raises(BudgetRefusal, match="overrun"):
            await ledger.reserve(0.01, 0, label="next")
        await ledger.reserve(0.0, 0, label="free")  # nothing spent: still allowed

    async def test_in_memory(self) -> None:
        """In process: the overrun is returned, kept and refuses every later reservation."""
        ledger = InMemoryLedger(limit_usd=1.0)
        within = await ledger.settle(await ledger.reserve(0.1, 0), usd=0.1, tokens=0)
        assert within == 0.0
        await self._check(ledger, spent_before=0.1)

    async def test_redis(self) -> None:
        """On Redis, the same, atomically for every worker of the run."""
        _redis_or_skip()
        import redis.asyncio as aredis

        client = aredis.Redis.from_url(REDIS_URL)
        try:
            ledger = await RedisLedger.create(
                client, f"t-{uuid.uuid4().hex}", limit_usd=1.0, ttl_s=60
            )
            await self._check(ledger)
        finally:
            await client.aclose()
