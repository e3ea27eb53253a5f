"""Side effects happen at most once, whatever crashes: workers, the broker, the driver.

Every test here runs real ``orchestra worker`` processes on a private Redis and counts side
effects from the tools' own log (``start``/``done`` lines, see ``fleet_skills.py``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from orchestra.checkpoint import open_checkpointer

from .conftest import ROOT, Fleet

pytestmark = [pytest.mark.fleet]


def driver(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``orchestra run ARGS -q`` as its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "orchestra", "run", *args, "-q"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestra", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def load_state(fleet: Fleet, run_id: str) -> Any:
    store = open_checkpointer(fleet.env["ORCHESTRA_CHECKPOINT_URL"])
    assert store is not None
    try:
        return await store.load(run_id)
    finally:
        await store.aclose()


def circuit_open(fleet: Fleet, skill: str) -> bool:
    from orchestra.fleet import RedisHealthBoard

    board = RedisHealthBoard(fleet.env["ORCHESTRA_HEALTH_URL"])
    return board.status(skill) == "open"


def unique(prefix: str) -> str:
    return f"{prefix}{int(time.time() * 1000) % 10**9}"


class TestExclusiveResume:
    async def test_two_resumes_at_once_one_drives_and_the_other_is_refused_naming_the_holder(
        self, shared_fleet: Fleet
    ) -> None:
        """Kill the driver mid-run, then start two ``--resume`` of the run at once: one
        finishes it; the other is refused (the run is driven by another driver, or already
        completed) and writes nothing: the checkpoint stays completed, no step runs twice,
        and no healthy skill's circuit opens."""
        fleet = shared_fleet
        rid = unique("twice")
        t = {i: f"{rid}-{i}" for i in range(1, 5)}
        data = {f"t{i}": t[i] for i in range(1, 5)} | {"delay": 1.0}
        first = driver(
            fleet.env,
            "tests/fleet/chain_graph.py",
            "--fleet",
            "--run-id",
            rid,
            "-i",
            json.dumps(data),
        )
        await fleet.await_side("start", "slow_write", t[2], timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

        a = driver(fleet.env, "--resume", rid)
        b = driver(fleet.env, "--resume", rid)
        out_a, _ = a.communicate(timeout=180)
        out_b, _ = b.communicate(timeout=180)
        codes = sorted([(a.returncode, out_a), (b.returncode, out_b)], key=lambda x: x[0])
        (win_rc, win_out), (lose_rc, lose_out) = codes
        assert win_rc == 0, win_out[-3000:]
        assert lose_rc == 2, lose_out[-3000:]
        assert "being driven by" in lose_out or "already completed" in lose_out, lose_out[-3000:]

        state = await load_state(fleet, rid)
        assert state is not None and state.status == "completed"
        assert not [d for d in state.decisions if d.kind in ("fail", "escalate")]
        for i in range(1, 5):
            assert fleet.count("done", "slow_write", t[i]) == 1, f"step {i} done twice"
        assert not circuit_open(fleet, "slow_write")
