"""``orchestra run graphs/support_triage.py --budget USD``: one hard budget for every cost.

The local model is down and a paid remote tier is configured (``ORCHESTRA_REMOTE_MODEL``,
``_URL``, ``_API_KEY``), served by a real OpenAI-compatible HTTP server.  Whatever the budget,
the run never spends more than it; the remote tier is called when the budget allows it, and
the decision log says which model answered, why, and what the budget left.
"""

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

from models.conftest import HttpEndpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def remote() -> Iterator[HttpEndpoint]:
    """The paid remote tier's stand-in: a real OpenAI-compatible server (its answer repeats
    the case notes, so it passes the summarizer's output check)."""
    ep = HttpEndpoint("echo-remote").start()
    yield ep
    ep.stop()


def _run(
    remote: HttpEndpoint, tmp_path: Path, budget: float, **extra: str
) -> tuple[int, str, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRA_", "OTEL_"))}
    env.update(
        {
            "ORCHESTRA_LOCAL_MODEL_URL": "http://127.0.0.1:9/v1",  # the local tier is down
            "ORCHESTRA_REMOTE_MODEL": "openai/echo-remote",
            "ORCHESTRA_REMOTE_MODEL_URL": remote.base_url,
            "ORCHESTRA_REMOTE_API_KEY": "sk-test-budget",
            "ORCHESTRA_CHECKPOINT_URL": f"sqlite:///{tmp_path}/runs.sqlite",
            "OTEL_SDK_DISABLED": "true",
            "COLUMNS": "250",
            **extra,
        }
    )
    out = tmp_path / f"result-{budget}.json"
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
            str(budget),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.exists(), p.stdout + p.stderr
    return p.returncode, p.stdout + p.stderr, json.loads(out.read_text())


def test_budget_too_small_for_the_remote_tier_is_never_crossed(
    remote: HttpEndpoint, tmp_path: Path
) -> None:
    """0.0048 USD: the tools fit, the remote tier's worst case does not: it is not called, the
    case note is written extractively, and the run spends at most its budget."""
    before = remote.stats().get("echo-remote", 0)
    _code, out, result = _run(remote, tmp_path, 0.0048)
    assert result["spent_usd"] <= 0.0048, out
    assert result["status"] == "completed", out
    assert result["chosen"]["summarize"] == "summarize_text", out
    assert remote.stats().get("echo-remote", 0) == before, "the remote tier was called"
    assert "remote" in out and "budget" in out  # why the agent could not run
    assert "budget=$0.004800" in out and "left=$" in out, out


def test_parallel_first_steps_reserve_together(remote: HttpEndpoint, tmp_path: Path) -> None:
    """0.0001 USD: the three parallel first steps cannot all run; together they stay within,
    and the run escalates naming what the budget cannot pay for."""
    _code, out, result = _run(remote, tmp_path, 0.0001)
    assert result["spent_usd"] <= 0.0001, out
    assert result["status"] == "escalated", out
    assert "left of the run's $0.0001 budget" in result["reason"], out
    assert "budget=$0.000100" in out and "left=$" in out, out


def test_remote_tier_answers_when_the_budget_allows_and_the_log_says_why(
    remote: HttpEndpoint, tmp_path: Path
) -> None:
    """0.05 USD: the local tier is down, the remote tier answers; the log names the backend,
    the model that answered, why it was picked and the fallback; llm_calls counts the calls."""
    before = remote.stats().get("echo-remote", 0)
    code, out, result = _run(remote, tmp_path, 0.05)
    assert code == 0, out
    assert result["spent_usd"] <= 0.05
    assert result["chosen"]["summarize"] == "agent.summarizer", out
    assert remote.stats().get("echo-remote", 0) == before + 1
    assert result["llm_calls"] >= 1
    succeed = [
        d for d in result["decisions"] if d["kind"] == "succeed" and d["step"] == "summarize"
    ]
    assert succeed, out
    reason = succeed[0]["reason"]
    assert "remote" in reason and "echo-remote" in reason, reason  # backend and model
    assert "local" in reason and "unavailable" in reason, reason  # the fallback, and why
    assert "tier 1" in reason and "budget left" in reason, reason  # why this one
    assert f"llm_calls={result['llm_calls']}" in out
    assert "budget=$0.050000" in out and "left=$" in out, out


def test_remote_tier_without_a_url_is_used(remote: HttpEndpoint, tmp_path: Path) -> None:
    """A remote tier named without ``ORCHESTRA_REMOTE_MODEL_URL`` (litellm finds the provider's
    endpoint itself, here from ``OPENAI_API_BASE``) is not mistaken for down: it answers."""
    before = remote.stats().get("echo-remote", 0)
    _code, out, result = _run(
        remote,
        tmp_path,
        0.05,
        ORCHESTRA_REMOTE_MODEL_URL="",
        OPENAI_API_BASE=remote.base_url,
        OPENAI_API_KEY="sk-test-no-url",
    )
    assert result["status"] == "completed", out
    assert result["chosen"]["summarize"] == "agent.summarizer", out
    assert remote.stats().get("echo-remote", 0) == before + 1
