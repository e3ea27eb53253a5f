"""The run lease: one driver at a time per run, fencing tokens, in the checkpoint database."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from skip_policy import missing

from orchestra import skill
from orchestra.errors import LeaseLost, RunLeaseHeld
from orchestra.lease import acquire_lease, current_token, default_holder

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_up() -> bool:
    try:
        import psycopg

        psycopg.connect(POSTGRES, connect_timeout=2).close()
    except Exception:
        return False
    return True


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres" and not _postgres_up():
        missing(f"no PostgreSQL at {POSTGRES}; start it with scripts/ensure-services.sh")
    return {
        "sqlite": f"sqlite:///{tmp_path}/runs.sqlite",
        "postgres": POSTGRES,
        "memory": "memory://",
    }[request.param]


def run_id() -> str:
    return "lease-" + uuid.uuid4().hex[:10]


class TestRunLease:
    def test_a_held_lease_is_refused_naming_its_holder(self, url: str) -> None:
        rid = run_id()
        first = acquire_lease(url, rid, "driver-a", ttl_s=30)
        with pytest.raises(RunLeaseHeld, match="driven by driver-a") as info:
            acquire_lease(url, rid, "driver-b", ttl_s=30)
        assert info.value.holder == "driver-a" and info.value.run_id == rid
        first.release()
        second = acquire_lease(url, rid, "driver-b", ttl_s=30)
        assert second.token == first.token + 1
        assert current_token(url, rid) == second.token

    def test_an_expired_lease_is_taken_over_and_its_old_holder_is_fenced_off(
        self, url: str
    ) -> None:
        rid = run_id()
        old = acquire_lease(url, rid, "driver-a", ttl_s=0.2)
        deadline = time.monotonic() + 30
        while True:
            try:
                new = acquire_lease(url, rid, "driver-b", ttl_s=30)
                break
            except RunLeaseHeld:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert new.token > old.token
        with pytest.raises(LeaseLost, match="taken by driver-b"):
            old.renew()
        with pytest.raises(LeaseLost):
            old.check()
        old.release()  # a no-op: it must not free the new holder's lease
        with pytest.raises(RunLeaseHeld, match="driver-b"):
            acquire_lease(url, rid, "driver-c", ttl_s=30)
        new.renew()
        new.check()

    def test_the_lease_of_a_killed_driver_on_this_machine_is_free_at_once(
        self, tmp_path: Path
    ) -> None:
        """A driver SIGKILLed holding a long lease does not block ``--resume`` for its TTL."""
        url = f"sqlite:///{tmp_path}/runs.sqlite"
        rid = run_id()
        code = (
            "import sys, os; from orchestra.lease import acquire_lease, default_holder;"
            f"acquire_lease({url!r}, {rid!r}, default_holder(), 3600); print('held', flush=True);"
            "sys.stdin.read()"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLeaseHeld):
            acquire_lease(url, rid, default_holder(), ttl_s=30)
        proc.kill()
        proc.wait(timeout=10)
        assert proc.stdin is not None
        proc.stdin.close()
        proc.stdout.close()
        lease = acquire_lease(url, rid, default_holder(), ttl_s=30)
        assert lease.token == 2


class _Out(BaseModel):
    ok: bool


_GATE: dict[str, Any] = {}


@skill(cost=0.001, timeout_s=60)
async def slow() -> _Out:
    """Wait until the test releases it."""
    await _GATE["release"].wait()
    return _Out(ok=True)


class TestSupersededDriver:
    async def test_a_driver_whose_lease_was_taken_over_stops_without_writing(
        self, tmp_path: Path
    ) -> None:
        """Another driver takes the run over while a step runs: this driver stops with
        LeaseLost, writes no checkpoint after that, and opens no circuit."""
        import asyncio

        from orchestra import Graph, Runner
        from orchestra.checkpoint import open_checkpointer
        from orchestra.durable import durable_store

        release = _GATE["release"] = asyncio.Event()
        g = Graph("superseded")
        g.step("a", [slow])
        g.step("b", [slow], after="a")
        url = f"sqlite:///{tmp_path}/runs.sqlite"
        runner = Runner(checkpointer=open_checkpointer(url), lease_ttl_s=0.6)
        task = asyncio.ensure_future(runner.run(g, {}, run_id="sup1"))
        deadline = time.monotonic() + 30
        while (await runner.checkpointer.load("sup1")) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        saved = await runner.checkpointer.load("sup1")
        with durable_store(url).transaction() as cur:  # another driver takes the run over
            cur.execute(
                "UPDATE orchestra_run_leases SET holder = 'other-driver', token = token + 1 "
                "WHERE run_id = 'sup1'"
            )
        with pytest.raises(LeaseLost, match="taken by other-driver"):
            await asyncio.wait_for(task, 30)
        release.set()
        after = await runner.checkpointer.load("sup1")
        assert after == saved
        assert runner.health.status("slow") != "open"
        await runner.checkpointer.aclose()
