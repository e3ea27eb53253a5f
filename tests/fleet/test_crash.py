"""Crashes: workers killed mid-step, poison tasks, Redis restarted, the driver killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import redis

from orchestra import Graph
from orchestra.checkpoint import open_checkpointer
from orchestra.errors import ExecutorError
from orchestra.fleet import fleet_runner
from orchestra.fleet.store import DEAD_LETTERS
from orchestra.results import RunResult

from .conftest import ROOT, Fleet, load_test_skills, require_postgres

pytestmark = [pytest.mark.fleet]

SK: dict[str, Any] = load_test_skills()


def one_step(*skills: str, delay: float = 0.0) -> Graph:
    g = Graph("one")
    g.step("s", [SK[k] for k in skills], inputs={"token": "$input.token", "delay": "$input.delay"})
    return g


async def start_run(
    fleet: Fleet, graph: Graph, data: dict[str, Any]
) -> tuple[Any, asyncio.Task[RunResult]]:
    runner = fleet_runner(fleet.settings)
    return runner, asyncio.ensure_future(runner.run(graph, data))


async def finish(runner: Any, task: asyncio.Task[RunResult], timeout: float = 40) -> RunResult:
    try:
        return await asyncio.wait_for(task, timeout)
    finally:
        await runner.executor.aclose()


def dead_letters(fleet: Fleet) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(fleet.env["ORCHESTRA_RESULT_BACKEND"], decode_responses=True)
    try:
        return [json.loads(x) for x in client.lrange(DEAD_LETTERS, 0, -1)]
    finally:
        client.close()


class TestWorkerKilledMidStep:
    async def test_idempotent_step_whose_process_is_killed_runs_to_completion_once(
        self, shared_fleet: Fleet
    ):
        """SIGKILL the process running a step: the task goes back to the queue at once, runs
        again, and the tool's own log shows one completed call."""
        fleet = shared_fleet
        runner, task = await start_run(fleet, one_step("slow_write"), {"token": "k1", "delay": 1.5})
        line = await fleet.await_side("start", "slow_write", "k1")
        os.kill(int(line[3]), signal.SIGKILL)
        result = await finish(runner, task)
        assert result.status == "completed"
        assert fleet.count("start", "slow_write", "k1") == 2
        assert fleet.count("done", "slow_write", "k1") == 1
        assert result.outputs["s"]["pid"] != int(line[3])

    async def test_idempotent_step_whose_whole_worker_is_killed_is_redelivered(self, fleet: Fleet):
        """SIGKILL a whole worker (main process and children) mid-step: after the visibility
        timeout another worker runs the step; it completes once."""
        fleet.start(2)
        runner, task = await start_run(fleet, one_step("slow_write"), {"token": "k2", "delay": 1.5})
        line = await fleet.await_side("start", "slow_write", "k2")
        victim = fleet.by_pid(int(line[3]))
        fleet.kill_group(victim)
        result = await finish(runner, task)
        assert result.status == "completed"
        assert fleet.count("done", "slow_write", "k2") == 1
        assert fleet.by_pid(result.outputs["s"]["pid"]) is not victim

    async def test_step_of_a_non_idempotent_skill_lost_mid_call_is_neither_rerun_nor_replaced(
        self, shared_fleet: Fleet
    ):
        """A redelivered call of a skill that is not idempotent is not run again, and since
        the lost call may have taken effect, neither is the step's other charge: the run
        escalates ``unknown_outcome`` and the delivery is dead-lettered for a human."""
        fleet = shared_fleet
        runner, task = await start_run(
            fleet, one_step("slow_charge", "alt_charge"), {"token": "k3", "delay": 1.5}
        )
        line = await fleet.await_side("start", "slow_charge", "k3")
        os.kill(int(line[3]), signal.SIGKILL)
        result = await finish(runner, task)
        assert result.status == "escalated"
        assert result.reason.startswith("unknown_outcome") and "(slow_charge)" in result.reason
        assert fleet.count("start", "slow_charge", "k3") == 1
        assert fleet.count("done", "slow_charge", "k3") == 0
        assert fleet.count("start", "alt_charge", "k3") == 0
        (fail,) = [d for d in result.decisions if d.kind == "fail"]
        assert fail.skill == "slow_charge" and "not idempotent" in fail.reason
        assert fail.error_kind == "unknown_outcome"
        assert [d["skill"] for d in dead_letters(fleet) if d.get("skill") == "slow_charge"] == [
            "slow_charge"
        ]

    async def test_a_task_that_keeps_killing_its_worker_is_dead_lettered_and_rerouted(
        self, shared_fleet: Fleet
    ):
        """Deliveries are counted: past 1 + max_redeliveries (2) the task is dead-lettered,
        counts as a failure, and the run reroutes."""
        fleet = shared_fleet
        runner, task = await start_run(
            fleet, one_step("poison", "antidote"), {"token": "k4", "delay": 0}
        )
        result = await finish(runner, task, timeout=60)
        assert result.status == "completed"
        assert result.path == ["antidote"]
        assert fleet.count("start", "poison", "k4") == 3
        (dead,) = [d for d in dead_letters(fleet) if d.get("skill") == "poison"]
        assert dead["deliveries"] == 4 and "dead-lettered" in dead["reason"]
        (fail,) = [d for d in result.decisions if d.kind == "fail"]
        assert fail.skill == "poison" and "dead-lettered after 3 deliveries" in fail.reason
        # `orchestra fleet dead` lists it: run, step, skill, deliveries and the reason
        proc = subprocess.run(
            [sys.executable, "-m", "orchestra", "fleet", "dead", "--limit", "50"],
            env=fleet.env | {"COLUMNS": "250"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        (header,) = [ln for ln in lines if "┃" in ln and "deliveries" in ln]
        names = [c.strip() for c in header.split("┃")[1:-1]]
        (row,) = [ln for ln in lines if f"│ {result.run_id} " in ln]
        cells = dict(zip(names, (c.strip() for c in row.split("│")[1:-1]), strict=True))
        assert (cells["run"], cells["step"], cells["skill"]) == (result.run_id, "s", "poison")
        assert cells["deliveries"] == "4" and cells["reason"] == dead["reason"]


def chain() -> Graph:
    g = Graph("chain")
    for i in range(1, 5):
        g.step(
            f"s{i}",
            [SK["slow_write"]],
            after=[f"s{i - 1}"] if i > 1 else [],
            inputs={"token": f"$input.t{i}", "delay": "$input.delay"},
        )
    return g


class TestRedisRestart:
    async def test_a_run_across_a_redis_restart_completes_or_fails_explicitly(self, fleet: Fleet):
        """Redis (broker, results and health: no persistence) restarts during step 2: the run
        completes or raises ExecutorError, and every step it reports done really ran."""
        fleet.start(2)
        runner, task = await start_run(
            fleet, chain(), {"t1": "r1", "t2": "r2", "t3": "r3", "t4": "r4", "delay": 0.5}
        )
        await fleet.await_side("start", "slow_write", "r2")
        await asyncio.to_thread(fleet.redis.restart, 1.0)
        try:
            result = await finish(runner, task, timeout=60)
            outputs = result.outputs
            assert result.status == "completed", result.reason
        except ExecutorError as exc:
            assert "Redis" in str(exc)
            store = open_checkpointer(fleet.env["ORCHESTRA_CHECKPOINT_URL"])
            assert store is not None
            state = await store.load(runner_run_id(runner))
            await store.aclose()
            assert state is not None
            outputs = {s: r.output for s, r in state.completed.items()}
        for step, out in outputs.items():
            token, pid = out["token"], out["pid"]
            assert ["done", "slow_write", token, str(pid)] in fleet.side(), (
                f"{step} reported done but its tool never completed"
            )


def runner_run_id(runner: Any) -> str:
    """The id of the only run a test runner made (from its checkpointer's memory)."""
    (run_id,) = runner.checkpointer._last
    return str(run_id)


class TestDriverKilled:
    def _driver(self, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestra", "run", *args, "-q"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    @pytest.mark.parametrize("on_fleet", [True, False], ids=["fleet", "embedded"])
    def test_resume_after_the_driver_is_killed_does_not_rerun_completed_steps(
        self, shared_fleet: Fleet, on_fleet: bool
    ):
        """Kill the driver while step 3 runs, then ``orchestra run --resume``: steps 1 and 2
        are not run again; on the fleet, step 3 finishes on its worker and is recorded, not
        run again either."""
        fleet = shared_fleet
        env = dict(fleet.env)
        if on_fleet:
            env["ORCHESTRA_CHECKPOINT_URL"] = require_postgres()
        v = "f" if on_fleet else "e"
        t = {i: f"d{i}{v}" for i in range(1, 5)}
        data = {f"t{i}": t[i] for i in range(1, 5)} | {"delay": 0.6}
        run_id = f"kill{v}{int(time.time() * 1000) % 10**8}"
        args = ["tests/fleet/chain_graph.py", "--run-id", run_id, "-i", json.dumps(data)]
        driver = self._driver(env, *args, *(["--fleet"] if on_fleet else []))
        fleet.wait_side("start", "slow_write", t[3], timeout=60)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)

        out = fleet.tmp / f"resumed-{on_fleet}.json"
        resumed = self._driver(env, "--resume", run_id, "--json", str(out))
        stdout, _ = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, stdout[-3000:]
        result = json.loads(out.read_text())
        assert result["status"] == "completed"
        for token in (t[1], t[2]):
            assert fleet.count("start", "slow_write", token) == 1, f"{token} ran again"
        assert fleet.count("done", "slow_write", t[3]) == 1
        assert fleet.count("start", "slow_write", t[3]) == (1 if on_fleet else 2)
        assert fleet.count("done", "slow_write", t[4]) == 1
        kinds = [d["kind"] for d in result["decisions"]]
        assert "resume" in kinds
