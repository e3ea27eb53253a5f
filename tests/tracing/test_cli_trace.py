"""``orchestra trace``: a run as a tree (steps → attempts, reroutes, cost) without Jaeger."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from orchestra import Runner
from orchestra.cli import app
from orchestra.cli.trace import run_tree, step_views
from orchestra.results import RunResult, RunState

from .graphs import LEAKED_KEY, refund_graph


class Saved:
    """A checkpointer that keeps every saved state in memory."""

    def __init__(self) -> None:
        self.states: list[RunState] = []

    async def save(self, state: RunState) -> None:
        self.states.append(state.model_copy(deep=True))


def render(state: RunState) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(run_tree(state))
    return console.export_text()


async def test_tree_shows_attempts_reroute_and_spend() -> None:
    """Each step lists its attempts in order — the failed one with its reason, the reroute
    with its reason, the one that served the step with its duration — and the run's spend."""
    saved = Saved()
    result = await Runner(checkpointer=saved).run(
        refund_graph(None), {"customer_id": "c-1", "amount": 3.0}
    )
    state = saved.states[-1]
    views, run_level = step_views(state)
    assert [v.step for v in views] == ["lookup", "refund"]
    refund = views[1]
    assert [(a.skill, a.ok) for a in refund.attempts] == [
        ("stripe_refund", False),
        ("razorpay_refund", True),
    ]
    assert refund.attempts[1].duration_ms == state.completed["refund"].duration_ms
    assert [d.kind for d in run_level] == ["complete"]

    text = render(state)
    lines = text.splitlines()
    assert lines[0].startswith(f"run {result.run_id}  refund  COMPLETED")
    assert f"spent ${result.spent_usd:.4f}" in lines[0] and "reroutes 1" in lines[0]
    fail = next(i for i, ln in enumerate(lines) if "✗ stripe_refund" in ln)
    reroute = next(i for i, ln in enumerate(lines) if "↪ reroute" in ln)
    ok = next(i for i, ln in enumerate(lines) if "✓ razorpay_refund" in ln)
    assert fail < reroute < ok
    assert "exception: stripe_refund raised ConnectionError" in lines[fail]
    assert "stripe_refund failed (exception); rerouted to razorpay_refund" in lines[reroute]
    assert "■ complete" in lines[-1]
    assert LEAKED_KEY not in text and "[REDACTED]" in text


async def test_cli_reads_an_orchestra_run_json_file(tmp_path: Path) -> None:
    """``orchestra trace --file OUT.json`` shows a result written by ``orchestra run --json``."""
    result = await Runner().run(refund_graph(None), {"customer_id": "c-1", "amount": 3.0})
    out = tmp_path / "run.json"
    out.write_text(result.model_dump_json())
    res = CliRunner().invoke(app, ["trace", "--file", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert f"run {result.run_id}" in res.output
    assert "↪ reroute" in res.output and "✓ razorpay_refund" in res.output
    assert LEAKED_KEY not in res.output

    res = CliRunner().invoke(app, ["trace", "other-run", "--file", str(out)])
    assert res.exit_code == 2 and "not other-run" in res.output


def test_cli_reads_the_checkpoint_store(tmp_path: Path) -> None:
    """``orchestra trace RUN_ID`` loads the run from the checkpoint store; without a run id it
    lists recent runs; an unknown id is bad input (exit 2); ``--json`` prints the (scrubbed) state."""
    from orchestra import checkpoint

    url = f"sqlite:///{tmp_path}/runs.sqlite"

    async def run() -> RunResult:
        cp = checkpoint.open_checkpointer(url)
        try:
            return await Runner(checkpointer=cp).run(
                refund_graph(None), {"customer_id": "c-1", "amount": 3.0}
            )
        finally:
            await cp.aclose()

    result = asyncio.run(run())
    cli = CliRunner()
    env = {"COLUMNS": "200"}
    res = cli.invoke(app, ["trace", result.run_id, "--checkpoint", url], env=env)
    assert res.exit_code == 0, res.output
    assert "↪ reroute" in res.output and f"run {result.run_id}" in res.output

    res = cli.invoke(app, ["trace", "--checkpoint", url], env=env)
    assert res.exit_code == 0 and result.run_id in res.output

    res = cli.invoke(app, ["trace", "nope", "--checkpoint", url], env=env)
    assert res.exit_code == 2 and "no run 'nope'" in res.output

    res = cli.invoke(app, ["trace", result.run_id, "--checkpoint", url, "--json"], env=env)
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert data["run_id"] == result.run_id
    assert LEAKED_KEY not in res.output
