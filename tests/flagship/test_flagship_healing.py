"""The three flagship runs of issue 12, from the command line a new user types.

Each must end with exit 0, 3 or 4, a JSON result, a refund step served by a refund provider
or not at all, and a reason a support lead can read (what cannot be done, and how to go on).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = {"stripe_refund", "paypal_refund", "adyen_refund"}


def _run(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / "result.json"
    env = {
        **os.environ,
        "COLUMNS": "200",
        "ORCHESTRA_CHECKPOINT_URL": f"sqlite:///{tmp_path / 'runs.db'}",
    }
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestra",
            "run",
            "graphs/support_triage.py",
            "--json",
            str(out),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.exists(), f"no JSON result (exit {p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p.returncode, json.loads(out.read_text()), p.stdout + p.stderr


def _check(rc: int, result: dict[str, Any]) -> None:
    assert rc in (0, 3, 4)
    assert result["status"] == {0: "completed", 3: "demoted", 4: "escalated"}[rc]
    assert result["chosen"].get("refund", "stripe_refund") in PROVIDERS
    for d in result["decisions"]:
        if d["kind"] == "reroute" and d["step"] == "refund":
            assert d["skill"] in PROVIDERS, d


def test_every_refund_provider_down_ends_with_a_reason_a_support_lead_can_read(
    tmp_path: Path,
) -> None:
    rc, result, _ = _run(
        tmp_path, "--fail", "stripe_refund", "--fail", "paypal_refund", "--fail", "adyen_refund"
    )
    _check(rc, result)
    assert rc in (3, 4) and "refund" not in result["chosen"]
    reason = result["reason"]
    assert "refund" in reason and all(p in reason for p in PROVIDERS)
    if rc == 4:
        assert f"orchestra resume {result['run_id']}" in reason and "--answer retry" in reason
    else:
        assert result["goal"] == "notify"
    assert not [
        d
        for d in result["decisions"]
        if d["step"] == "refund" and d["skill"] not in (*PROVIDERS, None)
    ]


def test_the_over_limit_ticket_escalates_naming_the_limit_and_how_to_resume(
    tmp_path: Path,
) -> None:
    ticket = {
        "ticket_id": "T-2",
        "customer_id": "C-1002",
        "subject": "Refund",
        "body": "Please refund $12,500 now",
    }
    rc, result, _ = _run(tmp_path, "-i", json.dumps(ticket))
    _check(rc, result)
    assert rc == 4 and "refund" not in result["chosen"]
    reason = result["reason"]
    assert "amount=12500 exceeds the limit 5000" in reason
    assert f"orchestra resume {result['run_id']} --answer approve" in reason
    # no provider was even called with an amount over the limit
    assert not [d for d in result["decisions"] if d["kind"] == "execute" and d["step"] == "refund"]


@pytest.mark.parametrize("budget", ["0.002"])
def test_a_tiny_budget_is_a_budget_block_not_a_hunt_for_substitutes(
    tmp_path: Path, budget: str
) -> None:
    rc, result, _ = _run(tmp_path, "--budget", budget)
    _check(rc, result)
    assert result["spent_usd"] <= float(budget)
    reason = result["reason"]
    assert "budget" in reason and "$0.0020" in reason and len(reason) < 500
    assert not [d for d in result["decisions"] if "substitute" in d["reason"]]
    if rc == 4:
        assert "--budget USD --answer retry" in reason
