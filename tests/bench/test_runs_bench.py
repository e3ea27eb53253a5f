"""``orchestra bench runs``: its figures come from real drivers, one of them really killed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.fleet, pytest.mark.slow]


def test_a_small_bench_loses_no_run_and_takes_over_every_run_of_the_killed_driver(
    tmp_path: Path,
) -> None:
    out = tmp_path / "runs.json"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestra", "bench", "runs", "--runs", "6", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert {"runs", "completed", "lost", "p50_s", "p99_s", "runs_per_min", "takeovers"} <= set(r)
    assert r["runs"] == 6 and r["lost"] == 0
    assert sum(r["ended"].values()) == 6
    assert set(r["ended"]) <= {"completed", "demoted", "escalated"}
    # the killed driver's runs, every one of them, were taken over by the other
    assert r["killed_driver"] is not None
    assert r["takeovers"] == r["runs_held_by_killed_driver"]
    assert r["p50_s"] <= r["p99_s"]
    assert r["duplicate_effects"] == 0 and r["effects_done"] > 0
