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


class TestFewerRoundTrips:
    """Reserving a fan-out's steps together, settling the outcomes that came in together and
    reading the budget back with a settlement book exactly what one call at a time books."""

    @pytest.fixture
    async def client(self):  # type: ignore[no-untyped-def]
        _redis_or_skip()
        import redis.asyncio as aredis

        c = aredis.Redis.from_url(REDIS_URL)
        yield c
        await c.aclose()

    async def _ledger(self, client, limit: float) -> RedisLedger:  # type: ignore[no-untyped-def]
        return await RedisLedger.create(client, f"t-{uuid.uuid4().hex}", limit_usd=limit, ttl_s=60)

    async def test_reserve_many_grants_and_refuses_as_one_at_a_time(self, client) -> None:  # type: ignore[no-untyped-def]
        """Five asks of $0.30 against $1.00 in one round trip: the first three are granted,
        the last two refused in their place, and the budget holds what three calls hold."""
        asks = [(0.3, f"s{i}") for i in range(4)] + [(0.0, "free")]
        one, many = await self._ledger(client, 1.0), await self._ledger(client, 1.0)
        singly: list[str] = []
        for usd, label in asks:
            try:
                await one.reserve(usd, 0, label=label)
                singly.append("granted")
            except BudgetRefusal:
                singly.append("refused")
        got = await many.reserve_many(asks)
        together = ["refused" if isinstance(g, BudgetRefusal) else "granted" for g in got]
        assert together == singly == ["granted"] * 3 + ["refused", "granted"]
        refusal = got[3]
        assert isinstance(refusal, BudgetRefusal) and refusal.label == "s3"
        a, b = await one.snapshot(), await many.snapshot()
        assert b.reserved_usd == pytest.approx(0.9) and a.reserved_usd == pytest.approx(0.9)

    async def test_settle_many_books_each_once_and_reads_the_budget_back(self, client) -> None:  # type: ignore[no-untyped-def]
        """Settlements in one round trip return each overrun and the budget right after it;
        settling again books nothing (idempotent), as settle does."""
        ledger = await self._ledger(client, 1.0)
        a, b = await ledger.reserve(0.2, 0), await ledger.reserve(0.2, 0)
        got = await ledger.settle_many([(a, 0.1), (b, 0.5)])
        (over_a, snap_a), (over_b, snap_b) = got
        assert over_a == 0.0 and snap_a.spent_usd == pytest.approx(0.1)
        assert snap_a.reserved_usd == pytest.approx(0.2)  # b still held after a's settlement
        assert over_b == pytest.approx(0.3) and snap_b.spent_usd == pytest.approx(0.6)
        assert snap_b.reserved_usd == 0 and snap_b.calls == 2
        assert snap_b.overrun_usd == pytest.approx(0.3)
        again, snap = await ledger.settle_snapshot(a, usd=0.1, tokens=0)
        assert again == 0.0 and snap.spent_usd == pytest.approx(0.6) and snap.calls == 2
        assert snap == await ledger.snapshot()

    async def test_run_ledger_settled_ahead_books_as_settled_one_by_one(self, client) -> None:  # type: ignore[no-untyped-def]
        """The run loop's batch: three steps reserved together, their outcomes settled ahead
        in one round trip, then booked one by one: the same notes, spend and calls as
        without settling ahead; what was not taken is forgotten, never taken by a later
        attempt of the same step."""
        from orchestra.executors.base import StepOutcome
        from orchestra.run_ledger import RunLedger

        outcomes = [
            ("a", "ok", StepOutcome(ok=True, cost_usd=0.1)),
            ("b", "liar", StepOutcome(ok=True, cost_usd=0.3)),  # declared 0.1: an overrun
            ("c", "flaky", StepOutcome(ok=False)),  # failed, spent nothing: released
        ]

        async def book(ahead: bool) -> tuple[list[list[str]], float, int, float]:
            run = RunLedger(await self._ledger(client, 1.0), 1.0)
            refused = await run.reserve_steps([(s, k, 0.1) for s, k, _ in outcomes])
            assert refused == [None, None, None]
            if ahead:
                await run.settle_ahead([(s, k, o) for s, k, o in outcomes])
            notes = [(await run.settle_step(s, k, 0.1, o))[0] for s, k, o in outcomes]
            run.forget_ahead()
            snap = await run.snapshot()
            return notes, snap.spent_usd, snap.calls, snap.reserved_usd

        plain, batched = await book(False), await book(True)
        assert batched == plain
        notes, spent, calls, reserved = batched
        assert notes[0] == [] and len(notes[1]) == 1 and "liar" in notes[1][0] and notes[2] == []
        assert spent == pytest.approx(0.4) and calls == 2 and reserved == 0

        run = RunLedger(await self._ledger(client, 1.0), 1.0)
        await run.reserve_steps([("a", "ok", 0.1), ("b", "ok", 0.1)])
        await run.settle_ahead([("a", "ok", outcomes[0][2]), ("b", "ok", outcomes[0][2])])
        run.forget_ahead()  # neither was taken (the loop stopped first): both stay booked
        again = await run.settle_step("a", "ok", 0.1, outcomes[0][2])  # a later attempt
        assert again[1].spent_usd == pytest.approx(0.3) and again[1].calls == 3
