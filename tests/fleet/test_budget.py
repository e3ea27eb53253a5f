"""One budget per run across worker processes: the driver creates it in Redis, each
``orchestra worker``'s model calls reserve from it; parallel steps on two workers cannot
overshoot together."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers

from models.conftest import HttpEndpoint

from fleet.conftest import ROOT, Fleet, Worker

pytestmark = [pytest.mark.fleet]

GRAPH = "tests/fleet/budget_graph.py"
# a model call may take longer than the fast fleet's 4 s visibility timeout
SLOW_STEPS = {"ORCHESTRA_VISIBILITY_TIMEOUT_S": "60"}


@pytest.fixture
def model() -> Iterator[HttpEndpoint]:
    ep = HttpEndpoint("remote-model").start()
    yield ep
    ep.stop()


def _start_workers(fleet: Fleet, model: HttpEndpoint, n: int = 2) -> list[Worker]:
    env = {**fleet.env, "BUDGET_MODEL_URL": model.base_url, **SLOW_STEPS}
    started = []
    for i in range(n):
        name = f"budget-w{i}"
        log = fleet.tmp / f"{name}.log"
        cmd = [sys.executable, "-m", "orchestra", "worker", "--graph", GRAPH, "--name", name]
        cmd += ["--concurrency", "1", "--loglevel", "INFO"]
        with log.open("w") as out:
            proc = subprocess.Popen(
                cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        w = Worker(name, proc, log)
        fleet.workers.append(w)
        started.append(w)
    fleet.wait_live({w.name for w in started}, started, timeout=90)
    return started


async def test_parallel_agent_steps_on_two_workers_share_the_run_budget(
    fleet: Fleet, model: HttpEndpoint
) -> None:
    """Two agent steps start together on two worker processes; the run's budget holds one
    model call's worst case: one call is made, the other step is refused, spend stays within,
    and the budget in Redis shows exactly what the run spent."""
    import redis.asyncio as aredis

    from fleet import budget_graph as bg
    from orchestra.fleet import fleet_runner
    from orchestra.loaders import load_graph
    from orchestra.models.budget import RedisLedger

    workers = _start_workers(fleet, model)
    graph = load_graph(ROOT / GRAPH)

    text = "first text to write about"
    bound, _ = bg.BACKEND.cost_bound(bg.PROFILE.messages({"text": text}), 100)
    budget = bound * 1.2
    runner = fleet_runner(fleet.settings.model_copy(update={"visibility_timeout_s": 60.0}))
    try:
        r = await runner.run(
            graph, {"a": text, "b": "other text to write about"}, budget_usd=budget
        )
    finally:
        await runner.executor.aclose()
    logs = "\n".join(w.output() for w in workers)
    assert model.stats() == {"remote-model": 1}, logs
    assert 0 < r.spent_usd <= budget
    assert r.llm_calls == 1
    refused = [d for d in r.decisions if d.kind == "fail" and d.error_kind == "budget"]
    assert len(refused) == 1 and "could cost up to" in refused[0].reason, r.decisions
    client = aredis.Redis.from_url(fleet.env["ORCHESTRA_RESULT_BACKEND"])
    try:
        snap = await (await RedisLedger.attach(client, r.run_id)).snapshot()
    finally:
        await client.aclose()
    assert snap.spent_usd == pytest.approx(r.spent_usd) and snap.reserved_usd == 0
    assert snap.limit_usd == pytest.approx(budget)
