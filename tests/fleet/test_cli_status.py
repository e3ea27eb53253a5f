"""`orchestra fleet status` as a new user first sees it."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT, Fleet


def test_fleet_status_with_no_worker_says_how_to_start_one(fleet: Fleet) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "orchestra", "fleet", "status"],
        cwd=ROOT,
        env={**fleet.env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 live worker(s)" in p.stdout
    assert "no live worker: start one with `orchestra worker --graph" in p.stdout
    assert fleet.env["ORCHESTRA_HEALTH_URL"] in p.stdout
