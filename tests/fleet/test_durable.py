"""Durable runs: checkpointers (SQLite, Postgres, memory) and resuming, with a human's answer.

These tests need no fleet: an escalated run is resumed the same way embedded or on workers.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from orchestra import Graph, Runner, skill
from orchestra.checkpoint import Checkpointer, SaverCheckpointer, open_checkpointer
from orchestra.errors import ConfigError, RunInputError
from orchestra.results import HUMAN, RunState, StepRecord
from orchestra.testing import ScriptedChatModel, misbehave

from .conftest import POSTGRES, require_postgres

ROOT = Path(__file__).resolve().parents[2]


async def _open_store(kind: str, tmp_path: Path) -> AsyncIterator[Checkpointer]:
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path}/runs.sqlite",
        "postgres": POSTGRES,
    }[kind]
    if kind == "postgres":
        require_postgres()
    cp = open_checkpointer(url)
    assert cp is not None
    yield cp
    await cp.aclose()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Checkpointer]:
    async for cp in _open_store(request.param, tmp_path):
        yield cp


@pytest.fixture(params=["sqlite", "postgres"])
async def durable_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Checkpointer]:
    """The checkpointers whose store outlives them (memory's does not)."""
    async for cp in _open_store(request.param, tmp_path):
        yield cp


def _state(run_id: str, steps: int) -> RunState:
    s = RunState(run_id=run_id, graph="g", input={"x": 1}, origin={"graph": "g.py"})
    for i in range(steps):
        s.completed[f"s{i}"] = StepRecord(step=f"s{i}", skill="k", output={"i": i})
    return s


class TestCheckpointers:
    """Every checkpointer passes the same conformance tests."""

    async def test_the_latest_save_of_a_run_is_what_loads(self, store: Checkpointer) -> None:
        run_id = uuid.uuid4().hex[:12]
        for n in range(4):
            await store.save(_state(run_id, n))
        loaded = await store.load(run_id)
        assert loaded == _state(run_id, 3)

    async def test_an_unknown_run_loads_as_none(self, store: Checkpointer) -> None:
        assert await store.load("no-such-run-" + uuid.uuid4().hex) is None

    async def test_recent_runs_are_listed_once_each_newest_first(self, store: Checkpointer) -> None:
        a, b = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
        await store.save(_state(a, 1))
        await store.save(_state(b, 1))
        await store.save(_state(a, 2))
        runs = await store.list_runs(limit=2)
        assert [r.run_id for r in runs] == [a, b]
        assert len(runs[0].completed) == 2

    async def test_a_new_process_continues_a_runs_history(
        self, durable_store: Checkpointer, tmp_path: Path
    ) -> None:
        """A second checkpointer on the same store (a resumed driver) loads and extends it."""
        store = durable_store
        run_id = uuid.uuid4().hex[:12]
        await store.save(_state(run_id, 1))
        assert isinstance(store, SaverCheckpointer)
        other = open_checkpointer(store.url)
        assert other is not None
        try:
            state = await other.load(run_id)
            assert state is not None
            state.completed["s9"] = StepRecord(step="s9", skill="k", output={})
            await other.save(state)
        finally:
            await other.aclose()
        again = await store.load(run_id)
        assert again is not None and "s9" in again.completed


async def test_a_fresh_postgres_database_opened_by_many_stores_at_once_is_set_up_once() -> None:
    """Drivers, workers and submitters may all open a new database at the same moment."""
    require_postgres()
    import psycopg

    admin = psycopg.connect(POSTGRES, autocommit=True)
    name = f"orchestra_setup_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        stores = [open_checkpointer(POSTGRES.rsplit("/", 1)[0] + "/" + name) for _ in range(8)]
        try:
            got = await asyncio.gather(*(s.load("none") for s in stores if s is not None))
        finally:
            for s in stores:
                if s is not None:
                    await s.aclose()
        assert got == [None] * 8
    finally:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def test_a_bad_checkpoint_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unsupported checkpoint URL"):
        open_checkpointer("redis://127.0.0.1:6379/0")
    assert open_checkpointer("none") is None


# ----------------------------------------------------------------------------- resuming


class Customer(BaseModel):
    customer_id: str
    email: str


class Receipt(BaseModel):
    refund_id: str
    amount: float


class Notice(BaseModel):
    delivered: bool


@skill(cost=0.001)
async def lookup(customer_id: str) -> Customer:
    """Find the customer."""
    return Customer(customer_id=customer_id, email=f"{customer_id}@example.com")


@skill(cost=0.003)
async def pay_back(customer_id: str, amount: float) -> Receipt:
    """Refund."""
    return Receipt(refund_id="re_1", amount=amount)


@skill(cost=0.001)
async def tell(email: str, refund_id: str) -> Notice:
    """Notify."""
    return Notice(delivered=True)


def refund_graph(payer: Any = pay_back, *, fallback: bool = False) -> Graph:
    g = Graph("refund_t")
    g.step("lookup", [lookup])
    g.step("refund", [payer], after="lookup")
    g.step("notify", [tell], after="refund")
    if fallback:
        g.fallback("lookup")
    return g


def runner(**kw: Any) -> Runner:
    return Runner(checkpointer=open_checkpointer("memory://"), **kw)


class TestResume:
    async def test_every_step_is_checkpointed(self) -> None:
        saves: list[int] = []

        class Recording(SaverCheckpointer):
            async def save(self, state: RunState) -> None:
                saves.append(len(state.completed))
                await super().save(state)

        r = Runner(checkpointer=Recording("memory://"))
        result = await r.run(refund_graph(), {"customer_id": "c1", "amount": 5})
        assert result.status == "completed"
        assert saves[0] == 0 and saves[-1] == 3
        assert set(saves) == {0, 1, 2, 3}

    async def test_a_run_resumed_by_id_does_not_run_completed_steps_again(self) -> None:
        calls: list[int] = []
        flaky = misbehave(pay_back, "exception", count=None, calls=calls)
        r = runner(max_attempts=1)
        first = await r.run(refund_graph(flaky), {"customer_id": "c1", "amount": 5}, run_id="r1")
        assert first.status == "escalated"
        state = await r.load_run("r1")
        assert list(state.completed) == ["lookup"]
        assert state.escalation is not None and list(state.escalation.steps) == ["refund"]
        ok = runner()
        ok.checkpointer = r.checkpointer
        resumed = await ok.resume(refund_graph(), state)
        assert resumed.status == "completed"
        assert [d.step for d in resumed.decisions if d.kind == "execute"].count("lookup") == 1

    async def test_a_finished_run_cannot_be_resumed(self) -> None:
        r = runner()
        await r.run(refund_graph(), {"customer_id": "c1", "amount": 5}, run_id="done1")
        with pytest.raises(RunInputError, match="already completed"):
            await r.resume_run(refund_graph(), "done1")
        with pytest.raises(RunInputError, match="no checkpoint"):
            await r.resume_run(refund_graph(), "nope")


class TestHumanAnswers:
    async def test_approve_lets_an_amount_over_the_limit_through(self) -> None:
        r = runner(max_amount=10)
        first = await r.run(refund_graph(), {"customer_id": "c1", "amount": 50}, run_id="a1")
        assert first.status == "escalated" and "exceeds the limit" in first.reason
        state = await r.load_run("a1")
        assert state.escalation is not None and state.escalation.risk_blocked == ["refund"]
        result = await r.resume_run(refund_graph(), "a1", answer="approve")
        assert result.status == "completed"
        assert result.outputs["refund"]["amount"] == 50

    async def test_retry_clears_attempts_and_circuits_of_the_stuck_step(self) -> None:
        flaky = misbehave(pay_back, "exception", count=1)
        r = runner(max_attempts=1)
        g = refund_graph(flaky)
        first = await r.run(g, {"customer_id": "c1", "amount": 5}, run_id="t1")
        assert first.status == "escalated"
        assert r.health.status("pay_back") == "open"
        result = await r.resume_run(g, "t1", answer="retry")
        assert result.status == "completed"
        assert any(d.kind == "resume" and "retry" in d.reason for d in result.decisions)

    async def test_goal_settles_for_a_declared_fallback(self) -> None:
        """The demotion model declined every lesser goal; a human settles for one."""
        broken = misbehave(pay_back, "exception")
        r = runner(max_attempts=1, demotion_model=ScriptedChatModel(["none of them"]))
        g = refund_graph(broken, fallback=True)
        first = await r.run(g, {"customer_id": "c1", "amount": 5}, run_id="g1")
        assert first.status == "escalated"
        result = await r.resume_run(g, "g1", answer="goal:lookup")
        assert result.status == "demoted" and result.goal == "lookup"

    async def test_output_records_what_a_human_did_and_the_run_goes_on(self) -> None:
        broken = misbehave(pay_back, "exception")
        r = runner(max_attempts=1)
        g = refund_graph(broken)
        await r.run(g, {"customer_id": "c1", "amount": 5}, run_id="o1")
        answer = "output:" + json.dumps({"refund_id": "manual-7", "amount": 5})
        result = await r.resume_run(g, "o1", answer=answer)
        assert result.status == "completed"
        assert result.chosen["refund"] == HUMAN
        assert result.outputs["refund"] == {"refund_id": "manual-7", "amount": 5.0}
        assert result.path == ["lookup", HUMAN, "tell"]

    @pytest.mark.parametrize(
        ("answer", "match"),
        [
            ("maybe", "unknown answer"),
            ("goal:nowhere", "declares no goal 'nowhere'"),
            ("output:{not json", "not JSON"),
            ('output:{"amount": "lots"}', "fits no skill"),
            ("approve", "not stopped by a risk limit"),
        ],
    )
    async def test_an_answer_that_cannot_work_is_refused(self, answer: str, match: str) -> None:
        r = runner(max_attempts=1)
        g = refund_graph(misbehave(pay_back, "exception"))
        await r.run(g, {"customer_id": "c1", "amount": 5}, run_id="x1")
        with pytest.raises(RunInputError, match=match):
            await r.resume_run(g, "x1", answer=answer)

    def test_orchestra_resume_answers_an_escalated_run_from_the_command_line(
        self, tmp_path: Path
    ) -> None:
        """``orchestra run`` escalates (exit 4) at an amount over the limit; ``orchestra
        resume RUN_ID --answer approve`` completes it (exit 0) without redoing the lookup."""
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")}
        env |= {
            "ORCHESTRA_CHECKPOINT_URL": f"sqlite:///{tmp_path}/runs.sqlite",
            "ORCHESTRA_MAX_AMOUNT": "10",
            "OTEL_SDK_DISABLED": "true",
        }

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "orchestra", *args],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )

        run = cli(
            "run", "graphs/refund.py", "-q", "--run-id", "cli1",
            "-i", '{"customer_id": "c1", "amount": 50}',
        )  # fmt: skip
        assert run.returncode == 4, run.stdout + run.stderr
        out = tmp_path / "resumed.json"
        resumed = cli("resume", "cli1", "--answer", "approve", "-q", "--json", str(out))
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        result = json.loads(out.read_text())
        assert result["status"] == "completed"
        executed = [d["step"] for d in result["decisions"] if d["kind"] == "execute"]
        assert executed.count("lookup") == 1
        listing = cli("resume", "--list")
        assert "cli1" in listing.stdout and "completed" in listing.stdout
