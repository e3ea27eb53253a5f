"""configure_logging: JSON in production, pretty in a terminal; both carry trace ids and
neither shows a secret."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from orchestra import tracing
from orchestra.logs import configure_logging

KEY = "sk-proj-LOGSx9Q2w8E7r6T5y4U3i2O1p0AbCd"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.usefixtures("restore_logging")
class TestRendering:
    def test_json_when_not_a_terminal(self) -> None:
        out = io.StringIO()
        configure_logging("INFO", stream=out)
        with tracing.capture_spans(), tracing.tracer().start_as_current_span("s") as span:
            structlog.get_logger("t").info("hello", api_key=KEY, n=3)
        line = json.loads(out.getvalue())
        assert line["event"] == "hello" and line["n"] == 3 and line["level"] == "info"
        assert line["api_key"] == "[REDACTED]"
        assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"

    def test_pretty_in_a_terminal_with_ids_and_scrubbed_exceptions(self) -> None:
        out = _Tty()
        configure_logging("INFO", stream=out)
        with tracing.capture_spans(), tracing.tracer().start_as_current_span("s") as span:
            try:
                raise ValueError(f"bad key {KEY}")
            except ValueError:
                structlog.get_logger("t").exception("failed")
        text = out.getvalue()
        assert not text.lstrip().startswith("{")
        assert "failed" in text and "ValueError" in text
        assert f"{span.get_span_context().span_id:016x}" in text
        assert KEY not in text

    def test_level_filters(self) -> None:
        out = io.StringIO()
        configure_logging("WARNING", stream=out, json=True)
        structlog.get_logger("t").info("quiet")
        structlog.get_logger("t").warning("loud")
        assert [json.loads(x)["event"] for x in out.getvalue().splitlines()] == ["loud"]


@pytest.mark.usefixtures("restore_logging")
def test_a_model_route_inside_a_step_logs_the_runs_id_not_the_ledgers() -> None:
    """`model.route` (and every line logged inside a skill) carries the run's own id."""
    import asyncio

    from orchestra import Graph, Runner, skill
    from orchestra.models import Backend, ChatMessage, ModelRouter
    from orchestra.testing import ScriptedChatModel

    backend = Backend(model="hosted_vllm/small", name="local", tier=0, max_output_tokens=50)
    router = ModelRouter([(backend, ScriptedChatModel(["a short summary"], name="local"))])

    @skill(cost=0.0)
    async def summarize(text: str) -> str:
        resp = await router.chat([ChatMessage(role="user", content=f"Summarize: {text}")])
        return resp.text

    g = Graph("summary")
    g.step("summarize", [summarize])
    out = io.StringIO()
    configure_logging("INFO", stream=out, json=True)
    result = asyncio.run(Runner().run(g, {"text": "numbers went up"}, run_id="run-42"))
    assert result.status == "completed"
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    (route,) = [x for x in lines if x["event"] == "model.route"]
    assert route["run_id"] == "run-42" and route["step_id"] == "summarize"
    assert router.ledger.run_id != "run-42"


def test_the_fleet_transport_scrubs_its_first_line_before_anyone_configured_logging() -> None:
    """A process that never configured logging (a library user of the fleet's transport) and
    dead-letters an undecodable message with an API key in it: the line it logs is scrubbed,
    as every Orchestra logger's (``orchestra.logs.get_logger`` applies the default set-up)."""
    import subprocess
    import sys

    code = (
        "from orchestra.fleet.transport import dead_letter_raw\n"
        f"dead_letter_raw('orchestra.skill.x', 'not json; api_key={KEY}', 'not JSON')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    out = proc.stdout + proc.stderr
    assert "cannot write a dead letter" in out  # no worker here: it logs the letter instead
    assert KEY not in out


def test_every_module_logs_through_the_project_helper() -> None:
    """``orchestra.logs.get_logger`` is the one entry point (it applies the default, scrubbing
    set-up on first use); a bare ``structlog.get_logger`` skips that when nobody configured
    logging."""
    from pathlib import Path

    import orchestra

    root = Path(orchestra.__file__).parent
    bare = [
        str(p.relative_to(root))
        for p in sorted(root.rglob("*.py"))
        if p.name != "logs.py" and "structlog.get_logger(" in p.read_text()
    ]
    assert bare == []
