"""The flagship on a local fleet, traced: a private Redis, two ``orchestra worker`` processes
hosting ``graphs/support_triage.py`` with ``stripe_refund`` failing where it runs, and the
driver ``orchestra run graphs/support_triage.py --fleet``; every process exports its spans
by OTLP/HTTP to one real receiver, and the run is one trace across them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers

from fleet.conftest import Fleet, RedisServer, Worker
from tracing.conftest import otlp  # noqa: F401  (the OTLP receiver fixture)
from tracing.otlp import HttpReceiver, ReceivedSpan

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GRAPH = "graphs/support_triage.py"
WORKERS = ("triage-a", "triage-b")
REFUNDS = {"stripe_refund", "paypal_refund", "adyen_refund"}
STATUS_ERROR = 2


@pytest.fixture
def triage_fleet(tmp_path: Path, otlp: HttpReceiver) -> Iterator[Fleet]:  # noqa: F811
    """A private Redis and two live workers (concurrency 2) hosting the flagship's skills,
    ``stripe_refund`` failing on both; killed, process group and all, afterwards."""
    server = RedisServer(tmp_path)
    server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ORCHESTRA_"))}
    env.update(
        {
            "ORCHESTRA_BROKER_URL": f"{server.url}/0",
            "ORCHESTRA_RESULT_BACKEND": f"{server.url}/1",
            "ORCHESTRA_HEALTH_URL": f"{server.url}/2",
            "ORCHESTRA_CHECKPOINT_URL": f"sqlite:///{tmp_path}/runs.sqlite",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.base_url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            # no model server here: the summarizer agent is routed around, not waited for
            "ORCHESTRA_LOCAL_MODEL_URL": "http://127.0.0.1:9/v1",
            "COLUMNS": "200",
        }
    )
    f = Fleet(server, tmp_path, env, tmp_path / "side.log")
    try:
        for name in WORKERS:
            log = tmp_path / f"{name}.log"
            cmd = [sys.executable, "-m", "orchestra", "worker", "--graph", GRAPH]
            cmd += ["--name", name, "--concurrency", "2", "--fail", "stripe_refund"]
            wenv = {
                **env,
                "OTEL_SERVICE_NAME": "orchestra-worker",
                "OTEL_RESOURCE_ATTRIBUTES": f"orchestra.worker={name}",
            }
            with log.open("w") as out:
                proc = subprocess.Popen(
                    cmd,
                    env=wenv,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            f.workers.append(Worker(name, proc, log))
        f.wait_live(set(WORKERS), f.workers, timeout=60)
        yield f
    finally:
        try:
            f.close()
        finally:
            server.stop()


def test_flagship_on_a_fleet_reroutes_the_refund_in_one_trace(
    triage_fleet: Fleet,
    otlp: HttpReceiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    result_path = tmp_path / "result.json"
    driver = subprocess.run(
        [sys.executable, "-m", "orchestra", "run", GRAPH, "--fleet", "--json", str(result_path)],
        env={**triage_fleet.env, "OTEL_SERVICE_NAME": "orchestra-driver"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = driver.stdout
    logs = "\n".join(w.output() for w in triage_fleet.workers)
    assert driver.returncode == 0, out[-3000:] + driver.stderr[-3000:] + logs
    assert "stripe_refund failed" in out and "rerouted to" in out, out
    assert "COMPLETED" in out, out
    result = json.loads(result_path.read_text())
    assert result["chosen"]["refund"] in {"paypal_refund", "adyen_refund"}
    run_id = result["run_id"]

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = {s.name for s in spans}
        tools = {s.attributes.get("gen_ai.tool.name") for s in spans}
        return (
            "invoke_agent support-triage" in names
            and "stripe_refund" in tools
            and result["chosen"]["refund"] in tools
            and result["chosen"]["summarize"] in tools
        )

    spans = otlp.wait_for(complete, timeout=30)
    assert len({s.trace_id for s in spans}) == 1, "one run, one trace"
    index = {s.span_id: s for s in spans}
    assert all(not s.parent_span_id or s.parent_span_id in index for s in spans)

    (root,) = [s for s in spans if s.name == "invoke_agent support-triage"]
    assert root.service == "orchestra-driver" and root.parent_span_id == ""
    assert root.attributes["orchestra.run_id"] == run_id

    refund_steps = [s for s in spans if s.name == "step refund"]
    assert refund_steps and all(s.service == "orchestra-driver" for s in refund_steps)
    assert all(index[s.parent_span_id] is root for s in refund_steps)
    tools = [
        s
        for s in spans
        if s.name.startswith("execute_tool") and s.attributes["gen_ai.tool.name"] in REFUNDS
    ]
    by_name = {t.attributes["gen_ai.tool.name"]: t for t in tools}
    assert {"stripe_refund", result["chosen"]["refund"]} <= set(by_name)
    for name, tool in by_name.items():
        assert tool.name == f"execute_tool {name}"
        assert tool.service == "orchestra-worker", name
        assert tool.resource["orchestra.worker"] in WORKERS
        # execute_tool ← process (CONSUMER, worker) ← send (PRODUCER, driver) ← step
        consumer = index[tool.parent_span_id]
        producer = index[consumer.parent_span_id]
        assert (
            consumer.name.startswith("process orchestra.skill.") and consumer.kind == 5
        )  # CONSUMER
        assert producer.name.startswith("send orchestra.skill.") and producer.kind == 4  # PRODUCER
        step = index[producer.parent_span_id]
        assert step in refund_steps
        assert step.attributes["orchestra.skill"] == name
        assert step.attributes["orchestra.worker"] == tool.resource["orchestra.worker"]
    assert by_name["stripe_refund"].status_code == STATUS_ERROR
    assert _step_of(index, by_name["stripe_refund"]).status_code == STATUS_ERROR

    reasons = [e.attributes["orchestra.reason"] for e in root.event("orchestra.reroute")]
    expected = f"stripe_refund failed (exception); rerouted to {result['chosen']['refund']}"
    assert expected in reasons, reasons
    good = _step_of(index, by_name[result["chosen"]["refund"]])
    assert good.attributes["orchestra.route_reason"] == expected


def _step_of(index: dict[str, Any], span: Any) -> Any:
    """The driver's ``step`` span a worker's span runs under (through the queue's spans)."""
    while not span.name.startswith("step "):
        span = index[span.parent_span_id]
    return span
