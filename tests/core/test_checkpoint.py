"""Checkpoints store per-save deltas: linear bytes in the run's length, the same state read
back (by a new process too), pruning and retention, ``orchestra runs prune``."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from skip_policy import missing
from typer.testing import CliRunner

from orchestra import ConfigError, Graph, Runner, Skill, journal
from orchestra.checkpoint import SaverCheckpointer, open_checkpointer
from orchestra.cli import app
from orchestra.config import parse_duration
from orchestra.durable import durable_store
from orchestra.executors.base import StepTask
from orchestra.lease import acquire_lease, default_holder
from orchestra.results import EscalationInfo, RunResult, RunState, UnknownEffect
from orchestra.testing import misbehave

from .helpers import Out


def noop(name: str, cost: float = 0.1) -> Skill:
    async def fn(**kw: Any) -> Out:
        return Out(value=name)

    return Skill(name=name, fn=fn, output_model=Out, cost=cost)


def chain(n: int, *, failing: int | None = None) -> Graph:
    g = Graph(f"chain{n}")
    for i in range(n):
        first = noop(f"a{i}")
        if i == failing:
            first = misbehave(first, "exception")
        g.step(f"s{i}", [first, noop(f"b{i}", 0.2)], after=[f"s{i - 1}"] if i else [])
    return g


def stored_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def run_with(store: SaverCheckpointer, graph: Graph, **kw: Any) -> RunResult:
    try:
        return await Runner(checkpointer=store).run(graph, {}, **kw)
    finally:
        await store.aclose()


async def load(url: str, run_id: str) -> RunState:
    store = open_checkpointer(url)
    assert store is not None
    try:
        state = await store.load(run_id)
    finally:
        await store.aclose()
    assert state is not None
    return state


def same_run(state: RunState, result: RunResult) -> None:
    assert state.status == result.status and state.goal == result.goal
    assert {s: r.output for s, r in state.completed.items()} == result.outputs
    assert {s: r.skill for s, r in state.completed.items()} == result.chosen
    assert state.decisions == result.decisions
    assert state.spent_usd == pytest.approx(result.spent_usd)


class TestLinearStorage:
    def test_bytes_per_step_stay_flat_as_the_run_grows(self, tmp_path: Path) -> None:
        """A run four times longer stores about four times the bytes, not sixteen."""
        per_step = {}
        for n in (50, 200):
            path = tmp_path / f"runs{n}.sqlite"
            store = open_checkpointer(f"sqlite:///{path}")
            assert store is not None
            r = asyncio.run(run_with(store, chain(n)))
            assert r.status == "completed"
            per_step[n] = stored_bytes(path) / n
        assert per_step[200] < 1.5 * per_step[50], per_step

    def test_what_is_read_back_is_the_run_as_it_ended(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        store = open_checkpointer(url)
        assert store is not None
        r = asyncio.run(run_with(store, chain(12, failing=4)))
        assert r.status == "completed" and r.reroutes == 1
        state = asyncio.run(load(url, r.run_id))
        same_run(state, r)
        assert state.attempts["s4:a4"] == 1 and state.attempts["s4:b4"] == 1
        assert len(state.attempts) == 13

    def test_whole_states_are_written_again_as_deltas_pile_up(self, tmp_path: Path) -> None:
        """With a small compaction threshold the run is spread over several checkpoints, and
        still reads back whole."""
        url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        store = SaverCheckpointer(url, compact_bytes=2000)
        r = asyncio.run(run_with(store, chain(30, failing=7)))
        with sqlite3.connect(tmp_path / "runs.sqlite") as conn:
            (checkpoints,) = conn.execute(
                "SELECT count(*) FROM checkpoints WHERE thread_id = ?", (r.run_id,)
            ).fetchone()
        assert checkpoints > 2
        same_run(asyncio.run(load(url, r.run_id)), r)

    def test_a_run_resumed_by_another_process_goes_on_with_deltas(self, tmp_path: Path) -> None:
        """An escalated run answered from a fresh store writes deltas after what it loaded,
        and a third store reads the whole run back."""
        url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        g = Graph("stuck_in_the_middle")
        for i in range(6):
            cands = [misbehave(noop("only"), "exception")] if i == 3 else [noop(f"a{i}")]
            g.step(f"s{i}", cands, after=[f"s{i - 1}"] if i else [])
        store = open_checkpointer(url)
        assert store is not None
        first = asyncio.run(run_with(store, g))
        assert first.status == "escalated"

        async def answer() -> RunResult:
            again = open_checkpointer(url)
            assert again is not None
            try:
                runner = Runner(checkpointer=again)
                return await runner.resume_run(g, first.run_id, answer='output:{"value": "x"}')
            finally:
                await again.aclose()

        second = asyncio.run(answer())
        assert second.status == "completed"
        state = asyncio.run(load(url, first.run_id))
        same_run(state, second)
        assert state.completed["s3"].skill == "human"


class TestPruning:
    def three_runs(self, url: str) -> dict[str, str]:
        done = chain(3)
        stuck = Graph("stuck")
        stuck.step("s", [misbehave(noop("broken"), "exception")])
        out = {}
        for name, g in (("done", done), ("stuck", stuck), ("done2", chain(2))):
            store = open_checkpointer(url)
            assert store is not None
            out[name] = asyncio.run(run_with(store, g)).run_id
        return out

    def test_prune_removes_old_runs_of_the_statuses_named(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        ids = self.three_runs(url)

        async def prune(**kw: Any) -> tuple[list[str], list[str]]:
            store = open_checkpointer(url)
            assert store is not None
            try:
                gone = await store.prune(**kw)
                return gone, [s.run_id for s in await store.list_runs(10)]
            finally:
                await store.aclose()

        gone, left = asyncio.run(prune(older_than_s=3600, statuses=["completed"]))
        assert gone == [] and len(left) == 3, "nothing is an hour old yet"
        later = time.time() + 7200
        gone, left = asyncio.run(prune(older_than_s=3600, statuses=["completed"], now=later))
        assert sorted(gone) == sorted([ids["done"], ids["done2"]])
        assert left == [ids["stuck"]]

    def test_retention_prunes_finished_runs_when_the_store_opens(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        ids = self.three_runs(url)

        async def listed(retention: str | None) -> list[str]:
            store = open_checkpointer(url, retention=retention)
            assert store is not None
            try:
                return [s.run_id for s in await store.list_runs(10)]
            finally:
                await store.aclose()  # waits for the clean-up the opening started

        assert len(asyncio.run(listed(None))) == 3
        asyncio.run(listed("0s"))
        assert asyncio.run(listed(None)) == [ids["stuck"]], "an escalated run waits for a human"

    def test_the_command_prunes_and_rejects_bad_input(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        ids = self.three_runs(url)
        cli = CliRunner()
        out = cli.invoke(app, ["runs", "prune", "--older-than", "0s", "--url", url])
        assert out.exit_code == 0, out.output
        assert "removed 2 run(s)" in out.output and ids["done"] in out.output
        out = cli.invoke(
            app, ["runs", "prune", "--older-than", "0s", "--status", "escalated", "--url", url]
        )
        assert out.exit_code == 0 and ids["stuck"] in out.output
        bad = cli.invoke(app, ["runs", "prune", "--older-than", "soon", "--url", url])
        assert bad.exit_code == 2 and "not a duration" in bad.output
        bad = cli.invoke(app, ["runs", "prune", "--status", "finished", "--url", url])
        assert bad.exit_code == 2 and "unknown status finished" in bad.output


POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A checkpoint database of this test's own: a SQLite file, or a fresh PostgreSQL
    database (pruning one shared with other tests would remove their runs)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.sqlite'}"
        return
    try:
        import psycopg

        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)
    except Exception as exc:
        missing(f"no PostgreSQL at {POSTGRES} ({exc}); start it with scripts/ensure-services.sh")
    name = f"orchestra_prune_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def durable_rows(url: str, run_id: str) -> tuple[int, int]:
    """(lease rows, effects journal rows) of ``run_id``."""
    with durable_store(url).transaction() as cur:
        leases = cur.execute(
            "SELECT count(*) FROM orchestra_run_leases WHERE run_id = ?", (run_id,)
        ).fetchone()
        effects = cur.execute(
            "SELECT count(*) FROM orchestra_effects WHERE run_id = ?", (run_id,)
        ).fetchone()
    assert leases is not None and effects is not None
    return int(leases[0]), int(effects[0])


class TestPruningTheDurableTables:
    """A pruned run leaves no lease and no effects journal behind; a kept run keeps them."""

    def runs(self, url: str) -> dict[str, str]:
        """``paid``: completed, through a skill that is not idempotent (journalled);
        ``waiting``: escalated with a call of unknown outcome awaiting a human;
        ``live``: saved as running, its lease held by a driver now."""
        charge = noop("charge").model_copy(update={"idempotent": False})
        g = Graph("pay")
        g.step("pay", [charge])
        g.step("mail", [noop("mail")], after="pay")
        store = open_checkpointer(url)
        assert store is not None
        paid = asyncio.run(run_with(store, g))
        assert paid.status == "completed"

        waiting, live = "wait-" + uuid.uuid4().hex[:8], "live-" + uuid.uuid4().hex[:8]
        lease = acquire_lease(url, waiting, default_holder(), ttl_s=30)
        task = StepTask(run_id=waiting, step_id="pay", skill="charge", attempt=1, arguments={})
        journal.record_intent(url, task, lease.token)
        assert journal.begin(url, task, lease.token, "worker-1")[0] == "run"  # and never ended
        lease.release()
        unknown = UnknownEffect(
            step="pay", skill="charge", attempt=1, token=lease.token, reason="worker lost"
        )
        acquire_lease(url, live, default_holder(), ttl_s=3600)  # this process drives it

        async def save() -> None:
            store = open_checkpointer(url)
            assert store is not None
            try:
                await store.save(
                    RunState(
                        run_id=waiting,
                        graph="pay",
                        status="escalated",
                        unknown={"pay": unknown},
                        escalation=EscalationInfo(
                            reason="unknown_outcome", kind="unknown_outcome", unknown=[unknown]
                        ),
                    )
                )
                await store.save(RunState(run_id=live, graph="pay", status="running"))
            finally:
                await store.aclose()

        asyncio.run(save())
        return {"paid": paid.run_id, "waiting": waiting, "live": live}

    def prune(self, url: str, statuses: list[str] | None) -> list[str]:
        async def go() -> list[str]:
            store = open_checkpointer(url)
            assert store is not None
            try:
                return await store.prune(
                    older_than_s=3600, statuses=statuses, now=time.time() + 7200
                )
            finally:
                await store.aclose()

        return asyncio.run(go())

    def test_pruned_runs_leave_no_lease_nor_journal_and_kept_runs_keep_theirs(
        self, db_url: str
    ) -> None:
        ids = self.runs(db_url)
        assert durable_rows(db_url, ids["paid"]) == (1, 1)
        assert durable_rows(db_url, ids["waiting"]) == (1, 1)
        assert durable_rows(db_url, ids["live"]) == (1, 0)

        assert self.prune(db_url, ["completed", "demoted"]) == [ids["paid"]]
        assert durable_rows(db_url, ids["paid"]) == (0, 0)
        assert durable_rows(db_url, ids["waiting"]) == (1, 1), "it waits for a human"
        effect = journal.effects_of(db_url, ids["waiting"])[0]
        assert effect.unknown and effect.worker == "worker-1"

        assert self.prune(db_url, ["escalated"]) == [ids["waiting"]], "asked for by name"
        assert durable_rows(db_url, ids["waiting"]) == (0, 0)

    def test_a_run_a_driver_holds_now_is_never_pruned(self, db_url: str) -> None:
        ids = self.runs(db_url)
        gone = self.prune(db_url, None)  # any status
        assert ids["live"] not in gone and {ids["paid"], ids["waiting"]} <= set(gone)
        assert durable_rows(db_url, ids["live"]) == (1, 0)
        assert asyncio.run(load(db_url, ids["live"])).status == "running"

    def test_a_cancelled_run_is_pruned_when_named(self, tmp_path: Path) -> None:
        """``cancelled`` is a status a run ends in: the command takes it, never by default."""
        url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        rid = "cancelled-" + uuid.uuid4().hex[:8]
        acquire_lease(url, rid, "driver-gone", ttl_s=30).release()

        async def save() -> None:
            store = open_checkpointer(url)
            assert store is not None
            try:
                await store.save(RunState(run_id=rid, graph="pay", status="cancelled"))
            finally:
                await store.aclose()

        asyncio.run(save())
        cli = CliRunner()
        out = cli.invoke(app, ["runs", "prune", "--older-than", "0s", "--url", url])
        assert out.exit_code == 0 and "removed 0 run(s)" in out.output, out.output
        out = cli.invoke(
            app, ["runs", "prune", "--older-than", "0s", "--status", "cancelled", "--url", url]
        )
        assert out.exit_code == 0 and rid in out.output, out.output
        assert durable_rows(url, rid) == (0, 0)

    def test_retention_removes_the_rows_of_the_runs_it_removes(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        ids = self.runs(url)

        async def open_with_retention() -> None:
            store = open_checkpointer(url, retention="0s")
            assert store is not None
            try:
                await store.list_runs(10)
            finally:
                await store.aclose()

        asyncio.run(open_with_retention())
        assert durable_rows(url, ids["paid"]) == (0, 0)
        assert durable_rows(url, ids["waiting"]) == (1, 1)
        assert durable_rows(url, ids["live"]) == (1, 0)


class TestDurations:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("12h", 43200.0), ("7d", 604800.0)],
    )
    def test_durations_read_as_seconds(self, text: str, seconds: float) -> None:
        assert parse_duration(text) == seconds

    def test_none_keeps_everything_and_garbage_names_the_setting(self) -> None:
        assert parse_duration("none") is None and parse_duration(None) is None
        with pytest.raises(ConfigError, match="retention: '7 days' is not a duration"):
            parse_duration("7 days", field="retention")


class TestDeltasFollowEveryChange:
    @pytest.mark.parametrize("seed", range(6))
    def test_what_is_read_back_after_each_save_is_the_state_saved(
        self, tmp_path: Path, seed: int
    ) -> None:
        """Steps added, taken away (backtracking) and added again, attempts counted up,
        dropped and re-added, in random order, with a save after each change: a fresh
        process reads back exactly the state last saved (deltas carry every change, or the
        whole state is written)."""
        import random

        from orchestra.results import StepRecord

        rng = random.Random(seed)
        url = f"sqlite:///{tmp_path / 'runs.sqlite'}"

        async def go() -> None:
            store = open_checkpointer(url)
            assert store is not None
            state = RunState(run_id=f"r{seed}", graph="g", input={})
            try:
                for i in range(60):
                    step = f"s{rng.randrange(12)}"
                    move = rng.random()
                    if move < 0.45 and step not in state.completed:  # a record is never
                        # replaced in place: a step runs again only once taken away
                        state.completed[step] = StepRecord(step=step, skill="k", output={"i": i})
                    elif move < 0.6:
                        state.completed.pop(step, None)
                    elif move < 0.85:
                        state.attempts[f"{step}:k"] = state.attempts.get(f"{step}:k", 0) + 1
                    else:
                        state.attempts.pop(f"{step}:k", None)
                    await store.save(state)
                    back = await load(url, state.run_id)
                    assert back.completed == state.completed, i
                    assert back.attempts == state.attempts, i
            finally:
                await store.aclose()

        asyncio.run(go())
