"""One run on a real fleet — a driver process, two Celery worker processes, Redis, an LLM
server — is one trace, exported by every process to a real OTLP/HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from skip_policy import missing

from .fake_llm import FakeLLM
from .otlp import HttpReceiver, ReceivedSpan

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GRAPH = "tests/tracing/graphs.py"
WORKERS = ("trace-worker-a", "trace-worker-b")
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private Redis server, so no other suite's workers share our queues."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        missing(
            "the distributed tracing tests need redis-server on PATH (apt install redis-server)"
        )
    port = _free_port()
    proc = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(tmp_path)),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("private redis-server did not start")
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def fleet_env(
    redis_url: str, otlp: HttpReceiver, fake_llm: FakeLLM, tmp_path: Path
) -> dict[str, str]:
    """Environment shared by the driver and the workers: the fleet's Redis databases, the
    LLM server, and OTLP export to the receiver."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ORCHESTRA_"))}
    env.update(
        {
            "ORCHESTRA_BROKER_URL": f"{redis_url}/7",
            "ORCHESTRA_RESULT_BACKEND": f"{redis_url}/8",
            "ORCHESTRA_HEALTH_URL": f"{redis_url}/9",
            "ORCHESTRA_CHECKPOINT_URL": f"sqlite:///{tmp_path}/runs.sqlite",
            "TRACING_TEST_LLM_URL": fake_llm.base_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.base_url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            # the agent step may take up to its 600 s timeout: tasks must not be redelivered
            "ORCHESTRA_VISIBILITY_TIMEOUT_S": "900",
        }
    )
    return env


async def _live(health_url: str) -> set[str]:
    from orchestra.fleet import FleetView

    view = FleetView(health_url)
    try:
        return {w.name for w in await view.workers(fresh=True)}
    finally:
        await view.aclose()


@pytest.fixture
def workers(fleet_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, ...]]:
    """Two ``orchestra worker`` processes hosting the test graph's skills, tracing to the
    receiver as service ``orchestra-worker``."""
    procs = []
    logs = {name: tmp_path / f"{name}.log" for name in WORKERS}
    for name in WORKERS:
        env = {
            **fleet_env,
            "OTEL_SERVICE_NAME": "orchestra-worker",
            # (not service.instance.id: the SDK renews that in each forked pool process)
            "OTEL_RESOURCE_ATTRIBUTES": f"orchestra.worker={name}",
        }
        cmd = [sys.executable, "-m", "orchestra", "worker", "--graph", GRAPH]
        cmd += ["--name", name, "--concurrency", "2"]
        with logs[name].open("w") as log:
            procs.append(
                subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            )
    try:
        deadline = time.monotonic() + 90
        while not set(WORKERS) <= asyncio.run(_live(fleet_env["ORCHESTRA_HEALTH_URL"])):
            dead = [n for n, p in zip(WORKERS, procs, strict=True) if p.poll() is not None]
            if dead:
                pytest.fail(f"worker {dead[0]} exited: {logs[dead[0]].read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("workers did not report ready within 90 s")
            time.sleep(0.3)
        yield WORKERS
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _chain(span: ReceivedSpan, index: dict[str, ReceivedSpan]) -> list[tuple[str, str]]:
    out = [(span.service, span.name)]
    while span.parent_span_id:
        span = index[span.parent_span_id]
        out.append((span.service, span.name))
    return out


def test_a_fleet_run_is_one_trace_across_driver_workers_and_llm(
    fleet_env: dict[str, str],
    workers: tuple[str, ...],
    otlp: HttpReceiver,
    fake_llm: FakeLLM,
    tmp_path: Path,
) -> None:
    """run → step on the driver → execute_tool on a worker → chat on that worker → the LLM
    server: one trace id, correct parents across processes, GenAI attributes on the LLM call,
    the reroute as an event with its reason."""
    out = tmp_path / "result.json"
    driver = subprocess.run(
        [
            *(sys.executable, "-m", "orchestra", "run", GRAPH, "--fleet", "-q"),
            *("-i", '{"customer_id": "c-7", "amount": 12.5}', "--json", str(out)),
        ],
        env={**fleet_env, "OTEL_SERVICE_NAME": "orchestra-driver"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["path"] == ["crm_lookup", "razorpay_refund", "agent.summarizer"]
    run_id = result["run_id"]

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = [s.name for s in spans]
        return (
            "invoke_agent refund" in names
            and sum(n.startswith("execute_tool") for n in names) >= 4
            and any(n.startswith("chat ") for n in names)
        )

    spans = otlp.wait_for(complete, timeout=30)
    assert len({s.trace_id for s in spans}) == 1, "one run, one trace"
    index = {s.span_id: s for s in spans}
    assert all(not s.parent_span_id or s.parent_span_id in index for s in spans)

    (root,) = [s for s in spans if s.name == "invoke_agent refund"]
    assert root.service == "orchestra-driver" and root.parent_span_id == ""
    assert root.attributes["orchestra.run_id"] == run_id

    tools = {
        s.attributes["gen_ai.tool.name"]: s for s in spans if s.name.startswith("execute_tool")
    }
    assert set(tools) == {"crm_lookup", "stripe_refund", "razorpay_refund", "agent.summarizer"}
    for name, tool in tools.items():
        assert tool.service == "orchestra-worker", name
        assert tool.resource["orchestra.worker"] in workers
        step = index[tool.parent_span_id]
        assert step.service == "orchestra-driver" and step.name.startswith("step ")
        assert step.attributes["orchestra.skill"] == name
        assert step.attributes["orchestra.worker"] == tool.resource["orchestra.worker"]
        assert index[step.parent_span_id] is root

    (chat,) = [s for s in spans if s.name.startswith("chat ")]
    assert _chain(chat, index) == [
        ("orchestra-worker", "chat tiny"),
        ("orchestra-worker", "execute_tool agent.summarizer"),
        ("orchestra-driver", "step summarize"),
        ("orchestra-driver", "invoke_agent refund"),
    ]
    a = chat.attributes
    assert chat.kind == SPAN_KIND_CLIENT
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"], a["gen_ai.request.model"]) == (
        "chat",
        "vllm",
        "tiny",
    )
    assert a["gen_ai.usage.input_tokens"] == fake_llm.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == fake_llm.completion_tokens
    assert (a["orchestra.run_id"], a["orchestra.step_id"]) == (run_id, "summarize")
    (req,) = fake_llm.requests
    _, trace_id, parent_id, _ = req[1]["traceparent"].split("-")
    assert (trace_id, parent_id) == (chat.trace_id, chat.span_id)

    (reroute,) = root.event("orchestra.reroute")
    assert reroute.attributes["orchestra.reason"] == (
        "stripe_refund failed (exception); rerouted to razorpay_refund"
    )
    assert tools["stripe_refund"].status_code == STATUS_ERROR
    failed_step = index[tools["stripe_refund"].parent_span_id]
    assert failed_step.status_code == STATUS_ERROR
    good_step = index[tools["razorpay_refund"].parent_span_id]
    assert good_step.attributes["orchestra.route_reason"] == reroute.attributes["orchestra.reason"]

    # the same run, without Jaeger
    tree = subprocess.run(
        [sys.executable, "-m", "orchestra", "trace", run_id],
        env={**fleet_env, "COLUMNS": "200"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tree.returncode == 0, tree.stdout + tree.stderr
    assert "↪ reroute" in tree.stdout and "✗ stripe_refund" in tree.stdout
    assert any(f"worker {w}" in tree.stdout for w in workers)
