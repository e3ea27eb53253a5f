"""Checkpoints store per-save deltas: linear bytes in the run's length, the same state read
back (by a new process too), pruning and retention, ``orchestra runs prune``."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestra import ConfigError, Graph, Runner, Skill
from orchestra.checkpoint import SaverCheckpointer, open_checkpointer
from orchestra.cli import app
from orchestra.config import parse_duration
from orchestra.results import RunResult, RunState
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
