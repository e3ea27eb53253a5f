"""One run on a real fleet — a driver process, two Celery worker processes, Redis, an LLM
server — is one trace, exported by every process to a real OTLP/HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from skip_policy import missing

from orchestra.bench._procs import free_port

from .fake_llm import FakeLLM
from .otlp import HttpReceiver, ReceivedSpan

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GRAPH = "tests/tracing/graphs.py"
WORKERS = ("trace-worker-a", "trace-worker-b")
SPAN_KIND_CLIENT = 3
SPAN_KIND_PRODUCER = 4
SPAN_KIND_CONSUMER = 5
STATUS_ERROR = 2


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private Redis server, so no other suite's workers share our queues."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        missing(
            "the distributed tracing tests need redis-server on PATH (apt install redis-server)"
        )
    port = free_port()
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


def _driver_step(tool: ReceivedSpan, index: dict[str, ReceivedSpan]) -> ReceivedSpan:
    """The driver's ``step`` span above a worker's tool call (through the queue's spans)."""
    span = tool
    while not span.name.startswith("step "):
        span = index[span.parent_span_id]
    return span


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
    assert result["trace_id"] == root.trace_id, "the result names its trace"

    tools = {
        s.attributes["gen_ai.tool.name"]: s for s in spans if s.name.startswith("execute_tool")
    }
    assert set(tools) == {"crm_lookup", "stripe_refund", "razorpay_refund", "agent.summarizer"}
    for name, tool in tools.items():
        assert tool.service == "orchestra-worker", name
        assert tool.resource["orchestra.worker"] in workers
        # across the queue: the driver's PRODUCER span, the worker's CONSUMER span
        consumer = index[tool.parent_span_id]
        assert (consumer.service, consumer.kind) == ("orchestra-worker", SPAN_KIND_CONSUMER)
        assert consumer.name == f"process orchestra.skill.{name}"
        producer = index[consumer.parent_span_id]
        assert (producer.service, producer.kind) == ("orchestra-driver", SPAN_KIND_PRODUCER)
        assert producer.name == f"send orchestra.skill.{name}"
        for span, op in ((producer, "send"), (consumer, "process")):
            assert span.attributes["messaging.operation.type"] == op
            assert span.attributes["messaging.destination.name"] == f"orchestra.skill.{name}"
        assert (
            consumer.attributes["messaging.message.id"]
            == producer.attributes["messaging.message.id"]
        )
        assert consumer.attributes["orchestra.worker"] == tool.resource["orchestra.worker"]
        assert consumer.attributes["orchestra.queue_wait_ms"] >= 0
        assert producer.start_ns <= consumer.start_ns <= tool.start_ns
        step = index[producer.parent_span_id]
        assert step.service == "orchestra-driver" and step.name.startswith("step ")
        assert step.attributes["orchestra.skill"] == name
        assert step.attributes["orchestra.worker"] == tool.resource["orchestra.worker"]
        assert index[step.parent_span_id] is root

    (chat,) = [s for s in spans if s.name.startswith("chat ")]
    assert _chain(chat, index) == [
        ("orchestra-worker", "chat tiny"),
        ("orchestra-worker", "execute_tool agent.summarizer"),
        ("orchestra-worker", "process orchestra.skill.agent.summarizer"),
        ("orchestra-driver", "send orchestra.skill.agent.summarizer"),
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
    failed_step = _driver_step(tools["stripe_refund"], index)
    assert failed_step.status_code == STATUS_ERROR
    good_step = _driver_step(tools["razorpay_refund"], index)
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


def _orchestra(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestra", *args],
        env={**env, "COLUMNS": "200"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_fleet_run_and_its_resume_are_one_connected_trace(
    fleet_env: dict[str, str],
    workers: tuple[str, ...],
    otlp: HttpReceiver,
    tmp_path: Path,
) -> None:
    """A run that escalates (an amount over the risk limit) and its resume by a human's
    answer, each in its own driver process: one trace, the resumed part a child of the first
    and linked to it, the answer an event, PRODUCER/CONSUMER spans across the queue in both
    parts; `orchestra trace` keeps time across the resume and points at that trace."""
    env = {**fleet_env, "OTEL_SERVICE_NAME": "orchestra-driver", "ORCHESTRA_MAX_AMOUNT": "1000"}
    first = _orchestra(
        env,
        *("run", GRAPH, "--fleet", "-q", "-i", '{"customer_id": "c-8", "amount": 5000}'),
        *("--json", str(tmp_path / "first.json")),
    )
    assert first.returncode == 4, first.stdout[-3000:] + first.stderr[-3000:]
    run_id = json.loads((tmp_path / "first.json").read_text())["run_id"]
    assert f"orchestra resume {run_id} --answer" in first.stdout

    # the risk limit stops the refund, then the summary (its prompt carries the amount):
    # a human approves each, so the run has three parts
    for part in ("second", "third"):
        out = tmp_path / f"{part}.json"
        resumed = _orchestra(env, "resume", run_id, "--answer", "approve", "-q", "--json", str(out))
        assert resumed.returncode in (0, 4), resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert json.loads(out.read_text())["status"] == "completed"

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = [s.name for s in spans]
        return names.count("invoke_agent refund") == 3 and any(n.startswith("chat ") for n in names)

    spans = otlp.wait_for(complete, timeout=30)
    assert len({s.trace_id for s in spans}) == 1, "a run and its resumes: one trace"
    index = {s.span_id: s for s in spans}
    assert all(not s.parent_span_id or s.parent_span_id in index for s in spans)

    roots = sorted((s for s in spans if s.name == "invoke_agent refund"), key=lambda s: s.start_ns)
    part1, part2, part3 = roots
    assert part1.parent_span_id == "" and part1.attributes["orchestra.run_id"] == run_id
    assert part1.event("orchestra.escalate")
    for part in (part2, part3):
        assert part.parent_span_id == part1.span_id and part.attributes["orchestra.resumed"] is True
        (link,) = part.links
        assert (link.trace_id, link.span_id) == (part1.trace_id, part1.span_id)
        assert link.attributes["orchestra.link"] == "resumes"
        (answer,) = part.event("orchestra.answer")
        assert answer.attributes["orchestra.answer"] == "approve"

    def root_of(span: ReceivedSpan) -> ReceivedSpan:
        while span.name != "invoke_agent refund":
            span = index[span.parent_span_id]
        return span

    tools = [s for s in spans if s.name.startswith("execute_tool")]
    by_part: dict[str, set[str]] = {p.span_id: set() for p in roots}
    for tool in tools:
        consumer = index[tool.parent_span_id]
        producer = index[consumer.parent_span_id]
        assert (consumer.kind, producer.kind) == (SPAN_KIND_CONSUMER, SPAN_KIND_PRODUCER)
        assert consumer.attributes["orchestra.queue_wait_ms"] >= 0
        by_part[root_of(tool).span_id].add(tool.attributes["gen_ai.tool.name"])
    assert by_part[part1.span_id] == {"crm_lookup"}
    assert by_part[part2.span_id] == {"stripe_refund", "razorpay_refund"}
    assert by_part[part3.span_id] == {"agent.summarizer"}

    # the same run without Jaeger: one timeline across the resume, and where its trace is
    state = json.loads(_orchestra(fleet_env, "trace", run_id, "--json").stdout)
    times = [d["at_ms"] for d in state["decisions"]]
    assert times == sorted(times), "decision times restart at the resume"
    assert state["trace_id"] == part1.trace_id and state["trace_service"] == "orchestra-driver"
    tree = _orchestra(fleet_env, "trace", run_id)
    assert tree.returncode == 0, tree.stdout + tree.stderr
    out = tree.stdout
    assert f"http://localhost:16686/trace/{part1.trace_id}" in out
    assert "service orchestra-driver" in out
    assert out.index("! escalate") < out.index("refund → razorpay_refund")
