"""``orchestra bench chaos`` at its smallest: a private Redis, two real workers, pool
processes really SIGKILLed and garbage really pushed; its JSON keys and its verdicts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.fleet, pytest.mark.slow]


def test_one_trial_of_two_faults_counts_no_duplicate_and_no_death(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "orchestra", "bench", "chaos", "--trials", "1"),
            *("--only", "kill_pool_idempotent", "--only", "garbage"),
            *("--json", str(out), "--keep-logs", str(logs)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert set(r) == {
        "trials",
        "duplicate_effects",
        "lost_steps",
        "false_done",
        "worker_deaths",
        "runs",
        "per_fault",
    }
    assert r["trials"] == 1 and r["runs"]["completed"] == 2
    assert r["duplicate_effects"] == r["lost_steps"] == r["false_done"] == 0
    assert r["worker_deaths"] == 0
    ran = {k for k, v in r["per_fault"].items() if v["trials"]}
    assert ran == {"kill_pool_idempotent", "garbage"}
    # the pool process running the write was really killed: it started twice, finished once
    lines = [ln.split() for ln in (logs / "side.log").read_text().splitlines() if ln]
    killed = [e for e in lines if e[1] == "chaos_write" and e[2].startswith("kill_pool_id")]
    assert [e[0] for e in killed].count("start") == 2, killed
    assert [e[0] for e in killed].count("done") == 1, killed
    assert len(list(logs.glob("chaos-*.log"))) == 2  # two workers, neither replaced
