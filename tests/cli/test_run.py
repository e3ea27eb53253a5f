"""`orchestra run` as a user runs it: a real subprocess, exit codes, the decision log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def orchestra(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestra", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "200",
            "HOME": str(ROOT / ".orchestra" / "home"),
            # the suite's own run store (tests/conftest.py), not the user's
            "ORCHESTRA_CHECKPOINT_URL": os.environ["ORCHESTRA_CHECKPOINT_URL"],
        },
    )


def test_run_reroutes_around_a_failing_provider_and_exits_zero() -> None:
    p = orchestra(
        "run",
        "graphs/refund.py",
        "-i",
        '{"customer_id": "c-1", "amount": 12}',
        "--fail",
        "stripe_refund",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "reroute" in p.stdout and "rerouted to razorpay_refund" in p.stdout
    assert "COMPLETED" in p.stdout and "spent=$" in p.stdout


def test_run_that_must_demote_exits_three() -> None:
    p = orchestra(
        "run",
        "graphs/refund.py",
        "-i",
        '{"customer_id": "c-1", "amount": 12}',
        "--down",
        "send_email",
        "--down",
        "send_sms",
    )
    assert p.returncode == 3, p.stdout + p.stderr
    assert "DEMOTED" in p.stdout and "steps not run: notify" in p.stdout


def test_scenario_file_with_no_path_left_escalates_with_exit_four() -> None:
    p = orchestra("run", "../shared/data/selfheal/paper19.json", "--scenario", "CS-7")
    assert p.returncode == 4, p.stdout + p.stderr
    assert "ESCALATED" in p.stdout and "CRM is down" in p.stdout


def test_bad_input_is_a_clear_error_with_exit_two() -> None:
    p = orchestra("run", "graphs/refund.py", "-i", '{"customer_id": "c-1"}')
    assert p.returncode == 2
    assert "amount" in p.stdout and "Field required" in p.stdout


def test_unknown_skill_in_fail_switch_is_named() -> None:
    p = orchestra(
        "run", "graphs/refund.py", "-i", '{"customer_id": "c-1", "amount": 1}', "--fail", "stripe"
    )
    assert p.returncode == 2
    assert "unknown skill 'stripe'" in p.stdout and "stripe_refund" in p.stdout


def test_max_attempts_from_the_environment_bounds_the_tries(tmp_path: Path) -> None:
    """ORCHESTRA_MAX_ATTEMPTS=2: each failing provider is tried twice (first call and one
    half-open trial), then the run escalates (exit 4)."""
    from .conftest import orchestra as orchestra_env

    out = tmp_path / "run.json"
    p = orchestra_env(
        "run",
        "graphs/refund.py",
        "-i",
        '{"customer_id": "c-1", "amount": 12}',
        "--fail",
        "stripe_refund",
        "--fail",
        "razorpay_refund",
        "--json",
        str(out),
        env={"ORCHESTRA_MAX_ATTEMPTS": "2"},
    )
    assert p.returncode == 4, p.stdout + p.stderr
    result = json.loads(out.read_text())
    fails = sorted(d["skill"] for d in result["decisions"] if d["kind"] == "fail")
    assert fails == ["razorpay_refund"] * 2 + ["stripe_refund"] * 2
    assert result["reason"].startswith(
        "Step 'refund' cannot be done: stripe_refund and razorpay_refund failed 2 time(s) each."
    )
