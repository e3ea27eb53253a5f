"""The flagship workflow, embedded, as the README's main command runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestra import Runner
from orchestra.loaders import load_any_graph

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def triage():  # type: ignore[no-untyped-def]
    graph, _ = load_any_graph(ROOT / "graphs" / "support_triage.py", fail=["stripe_refund"])
    return graph


async def test_refund_is_rerouted_to_another_retrieved_provider(triage) -> None:  # type: ignore[no-untyped-def]
    c = triage.compile()
    assert set(c.candidates["refund"]) == {"stripe_refund", "paypal_refund", "adyen_refund"}
    r = await Runner().run(triage, {}, budget_usd=0.05)
    assert r.status == "completed"
    assert r.chosen["refund"] in {"paypal_refund", "adyen_refund"}
    assert any(d.kind == "reroute" and "stripe_refund failed" in d.reason for d in r.decisions)
    assert 0 < r.spent_usd <= 0.05
    assert r.outputs["notify"]["status"] == "queued"
    assert "refunded 42.50 USD" in r.outputs["draft"]["case_notes"]


async def test_refund_over_the_limit_escalates_to_a_human(triage) -> None:  # type: ignore[no-untyped-def]
    ticket = {"subject": "Refund please", "body": "Refund my order of $12,500 immediately"}
    r = await Runner(max_amount=5000).run(triage, ticket)
    assert r.status == "escalated"
    assert "exceeds the limit 5000" in r.reason
    assert "refund" not in r.chosen


def test_main_command_output_tells_what_ran_was_rerouted_and_cost() -> None:
    env = {**os.environ, "COLUMNS": "200"}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestra",
            "run",
            "graphs/support_triage.py",
            "--fail",
            "stripe_refund",
            "--budget",
            "0.05",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "rerouted to" in out and "stripe_refund failed" in out
    assert "COMPLETED" in out and "spent=$0.00" in out
    for step in ("classify", "customer", "history", "refund", "draft", "notify", "summarize"):
        assert step in out
