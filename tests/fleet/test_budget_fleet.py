"""The README's promise: one hard budget per run, "across steps and workers".

A run of four parallel agent steps on two real ``orchestra worker`` processes (two slots
each), every step one paid call to a real OpenAI-compatible HTTP server, with a budget that
holds two calls' worst case and a half: whatever the workers do at once, exactly two calls
are made (counted by the server), the other two steps are refused by the budget, and the run
books what the calls cost.  (On main before issue 13 all four calls ran: $0.0376 spent of a
$0.0235 budget.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestra.bench._procs import free_port
from orchestra.fleet import fleet_runner
from orchestra.loaders import load_graph

from .conftest import ROOT, Fleet

pytestmark = [pytest.mark.fleet]

GRAPH = "tests/fleet/budget_fanout_graph.py"
TEXT = "The nightly export failed twice; finance needs the report by noon tomorrow."


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "model.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "tests/models/openai_compat_server.py", str(port), "paid-model"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{url}/v1/models", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"the model server exited: {(tmp_path / 'model.log').read_text()}")
                time.sleep(0.05)
        else:
            pytest.fail("the model server did not answer within 30 s")
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()


def served(url: str) -> int:
    with urllib.request.urlopen(f"{url}/stats", timeout=5) as r:
        return int(json.loads(r.read()).get("paid-model", 0))


async def test_parallel_agent_steps_on_workers_never_spend_past_the_run_budget(
    fleet: Fleet, model_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = f"{model_server}/v1"
    monkeypatch.setenv("FLEET_MODEL_URL", base)
    fleet.env["FLEET_MODEL_URL"] = base
    fleet.env["ORCHESTRA_VISIBILITY_TIMEOUT_S"] = "900"  # longer than an agent step's timeout
    fleet.start(2, concurrency=2, skills=None, args=("--graph", GRAPH))

    graph = load_graph(ROOT / GRAPH)
    # what one call costs (the same step, called once here), and its worst case (the
    # reservation: the prompt plus the agent's max_tokens at the backend's prices)
    (step,) = [s for s in graph.steps if s.id == "a0"]
    sk = graph.skills.require(step.candidates[0])
    one = await sk.acall({"text": TEXT})
    per_call = float(one.cost_usd)
    assert per_call > 0 and served(model_server) == 1
    from fleet import budget_fanout_graph as bg
    from orchestra.agents import AgentRegistry

    profile = AgentRegistry().load_dir(ROOT / "agents").require("summarizer")
    worst, _ = (
        bg.router().backends[0].cost_bound(profile.messages({"text": TEXT}), profile.max_tokens)
    )
    assert worst >= per_call

    budget = 2.5 * worst  # room for two calls' worst case, not three
    runner = fleet_runner(fleet.settings)
    try:
        result = await runner.run(graph, {"text": TEXT}, budget_usd=budget)
    finally:
        await runner.executor.aclose()
    calls = served(model_server) - 1
    assert calls * per_call <= budget + 1e-12, f"{calls} calls of ${per_call:.6f} > ${budget:.6f}"
    assert result.spent_usd <= budget + 1e-12
    assert result.spent_usd == pytest.approx(calls * per_call)
    assert calls == 2, [str(d) for d in result.decisions]
    refused = [d for d in result.decisions if d.kind == "fail" and d.error_kind == "budget"]
    assert len(refused) == bg.BRANCHES - 2
