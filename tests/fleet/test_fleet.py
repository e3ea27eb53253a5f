"""Graphs run unchanged on real workers; health is fleet-wide; bad payloads are refused."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
import redis

from orchestra import Graph, Runner
from orchestra.errors import ErrorPayload
from orchestra.executors import StepTask
from orchestra.fleet import CeleryExecutor, create_app, fleet_runner, queue_for
from orchestra.fleet.app import STEP_TASK
from orchestra.fleet.store import DEAD_LETTERS, reply_key
from orchestra.results import RunResult

from .conftest import ROOT, Fleet, load_test_skills

pytestmark = [pytest.mark.fleet]

SK: dict[str, Any] = load_test_skills()
MEET = "tests/fleet/meet_skills.py"


async def run_on_fleet(fleet: Fleet, graph: Graph, data: dict[str, Any]) -> RunResult:
    runner = fleet_runner(fleet.settings)
    try:
        return await runner.run(graph, data)
    finally:
        await runner.executor.aclose()


def two_steps() -> Graph:
    g = Graph("two")
    g.step("write", [SK["slow_write"]], inputs={"token": "$input.t1"})
    g.step("serve", [SK["svc_a"], SK["svc_b"]], after="write", inputs={"token": "$input.t2"})
    return g


class TestRunsOnTheFleet:
    async def test_a_graph_runs_on_workers_as_it_does_in_process(self, shared_fleet: Fleet):
        """The same graph object gives the same route and outputs embedded and on the fleet;
        on the fleet the tools ran in worker processes."""
        t = uuid.uuid4().hex[:8]
        fleet_result = await run_on_fleet(shared_fleet, two_steps(), {"t1": f"{t}a", "t2": f"{t}b"})
        local = await Runner().run(two_steps(), {"t1": f"{t}c", "t2": f"{t}d"})
        assert fleet_result.status == local.status == "completed"
        assert fleet_result.path == local.path == ["slow_write", "svc_a"]
        assert fleet_result.outputs["serve"]["token"] == f"{t}b"
        worker_pids = {w.proc.pid for w in shared_fleet.workers}
        for token in (f"{t}a", f"{t}b"):
            (line,) = [e for e in shared_fleet.side() if e[0] == "done" and e[2] == token]
            assert shared_fleet.by_pid(int(line[3])).proc.pid in worker_pids

    async def test_ready_steps_on_independent_branches_run_at_once(self, fleet: Fleet):
        """Four branches on four slots run at the same time: each one completes only once all
        four have started (a rendezvous, bounded at 60 s), so run one after another they
        would time out."""
        from orchestra.catalog import load_catalog

        fleet.env["ORCHESTRA_VISIBILITY_TIMEOUT_S"] = "300"  # longer than meet's timeout
        fleet.start(2, concurrency=2, skills=MEET)
        (meet,) = load_catalog(ROOT / MEET)
        t = uuid.uuid4().hex[:8]
        g = Graph("fan")
        for i in range(4):
            g.step(
                f"b{i}",
                [meet],
                inputs={"token": f"$input.t{i}", "group": "$input.g", "size": "$input.n"},
            )
        data = {f"t{i}": f"{t}{i}" for i in range(4)} | {"g": t, "n": 4}
        result = await run_on_fleet(fleet, g, data)
        assert result.status == "completed", [str(d) for d in result.decisions]
        assert result.path == ["meet"] * 4
        side = fleet.side()
        starts = [i for i, e in enumerate(side) if e[:2] == ["start", "meet"] and e[4:] == [t]]
        dones = [i for i, e in enumerate(side) if e[:2] == ["done", "meet"] and e[4:] == [t]]
        assert len(starts) == len(dones) == 4
        assert max(starts) < min(dones), "every branch started before the first one ended"
        assert len({side[i][3] for i in starts}) == 4, "four worker processes served them"


class TestPayloads:
    async def test_a_payload_that_is_not_a_step_envelope_is_rejected_with_the_bad_field(
        self, shared_fleet: Fleet
    ):
        """A task whose payload misses fields is answered with an error naming them, and
        dead-lettered; no tool runs."""
        s = shared_fleet.settings
        app = create_app(s)
        driver = f"test-{uuid.uuid4().hex[:6]}"
        app.send_task(
            STEP_TASK,
            args=[{"task": {"run_id": "r1", "skill": "typed_add"}, "reply_to": driver}],
            queue=queue_for("typed_add"),
            ignore_result=True,
        )
        client = redis.Redis.from_url(s.result_backend, decode_responses=True)
        item = client.blpop([reply_key(driver)], timeout=15)
        assert item is not None, "no answer to a malformed payload"
        _, body = item[1].split("\n", 1)
        err = ErrorPayload.model_validate(json.loads(body)["error"])
        assert err.type == "ExecutorError"
        assert "orchestra.step payload rejected" in err.message
        assert "task.step_id: Field required" in err.message
        dead = [json.loads(x) for x in client.lrange(DEAD_LETTERS, 0, -1)]
        assert any("task.step_id" in d["reason"] for d in dead)

    async def test_arguments_that_break_the_skills_schema_are_rejected_before_the_call(
        self, shared_fleet: Fleet
    ):
        """Arguments of the wrong type never reach the tool: the outcome says which field."""
        ex = CeleryExecutor(shared_fleet.settings)
        try:
            bad = await ex.execute(
                StepTask(
                    run_id="r2", step_id="add", skill="typed_add", arguments={"a": "x", "b": 1}
                ),
                SK["typed_add"],
            )
            good = await ex.execute(
                StepTask(
                    run_id="r2", step_id="add2", skill="typed_add", arguments={"a": 2, "b": 3}
                ),
                SK["typed_add"],
            )
        finally:
            await ex.aclose()
        assert not bad.ok and bad.error is not None
        assert (
            "input rejected by typed_add: a: Input should be a valid integer" in bad.error.message
        )
        assert good.ok and good.output == {"sum": 5}

    async def test_a_pickled_task_is_refused(self, fleet: Fleet):
        """Workers accept JSON only: the worker that receives a pickled step refuses to decode
        it (and says so in its log), takes it off the queue so it is never redelivered, never
        runs it, and goes on serving JSON steps of the same skill."""
        (w,) = fleet.start(queues="slow_write")
        app = create_app(fleet.settings)
        token = uuid.uuid4().hex[:8]
        payload = {
            "task": {
                "run_id": "r3",
                "step_id": "s",
                "skill": "slow_write",
                "arguments": {"token": token},
            },
            "reply_to": "nobody",
        }
        app.send_task(
            STEP_TASK,
            args=[payload],
            queue=queue_for("slow_write"),
            serializer="pickle",
            ignore_result=True,
        )
        refusal = "Refusing to deserialize untrusted content of type pickle"
        deadline = time.monotonic() + 60
        while refusal not in w.output():
            assert w.proc.poll() is None, f"the worker died on a pickled task:\n{w.output()}"
            assert time.monotonic() < deadline, f"no refusal in the worker's log:\n{w.output()}"
            await asyncio.sleep(0.1)
        broker = redis.Redis.from_url(fleet.env["ORCHESTRA_BROKER_URL"])
        try:
            assert broker.llen(queue_for("slow_write")) == 0
            assert broker.hlen("unacked") == 0, "the refused message waits to be redelivered"
        finally:
            broker.close()
        # the same step as JSON runs on that worker, and the pickled one never did
        ex = CeleryExecutor(fleet.settings)
        try:
            good = await ex.execute(
                StepTask(run_id="r3", step_id="s", skill="slow_write", arguments={"token": "j"}),
                SK["slow_write"],
            )
        finally:
            await ex.aclose()
        assert good.ok, good.error
        assert fleet.count("start", "slow_write", "j") == 1
        assert fleet.count("start", "slow_write", token) == 0
        assert w.proc.poll() is None


class TestFleetStatus:
    def test_fleet_status_lists_live_workers_their_skills_and_health(self, shared_fleet: Fleet):
        out = shared_fleet.tmp / "status.json"
        proc = subprocess.run(
            [sys.executable, "-m", "orchestra", "fleet", "status", "--json", str(out)],
            env=shared_fleet.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        data = json.loads(out.read_text())
        names = {w["name"] for w in data["workers"] if not w["remembered"]}
        assert names == {w.name for w in shared_fleet.workers}
        assert set(data["skills"]["svc_a"]["workers"]) == names
        assert data["skills"]["svc_a"]["state"] == "closed"
        assert "2 live worker(s)" in proc.stdout


class TestReplies:
    """Steps sent together go out as one batch and their answers come back in batches; an
    answer lost on the way is still found (the watchdog reads the stored outcome)."""

    async def test_steps_sent_together_are_each_answered_with_their_own_outcome(
        self, shared_fleet: Fleet
    ):
        """Sixty additions at once: each awaits the sum of its own arguments."""
        executor = CeleryExecutor(shared_fleet.settings)
        run_id = f"burst-{uuid.uuid4().hex[:6]}"
        try:
            outcomes = await asyncio.gather(
                *(
                    executor.execute(
                        StepTask(
                            run_id=run_id,
                            step_id=f"s{i}",
                            skill="typed_add",
                            arguments={"a": i, "b": 1000},
                            timeout_s=3,
                        ),
                        SK["typed_add"],
                    )
                    for i in range(60)
                )
            )
        finally:
            await executor.aclose()
        assert [o.ok for o in outcomes] == [True] * 60
        assert [o.output["sum"] for o in outcomes] == [i + 1000 for i in range(60)]

    async def test_an_answer_lost_on_the_way_is_read_from_the_stored_outcome(
        self, shared_fleet: Fleet
    ):
        """The reply of a step is dropped as if lost in transit: the step is answered all the
        same, from the outcome the worker stored, within a few seconds."""
        executor = CeleryExecutor(shared_fleet.settings)
        answer = executor._answer
        dropped: list[str] = []

        def lose_first(message: str) -> None:
            if not dropped:
                dropped.append(message)
                return
            answer(message)

        executor._answer = lose_first  # type: ignore[method-assign]
        task = StepTask(
            run_id=f"lost-{uuid.uuid4().hex[:6]}",
            step_id="add",
            skill="typed_add",
            arguments={"a": 2, "b": 3},
            timeout_s=3,
        )
        t0 = time.monotonic()
        try:
            outcome = await asyncio.wait_for(executor.execute(task, SK["typed_add"]), 15)
        finally:
            await executor.aclose()
        assert dropped, "the reply never came"
        assert outcome.ok and outcome.output == {"sum": 5}
        assert time.monotonic() - t0 < 6
