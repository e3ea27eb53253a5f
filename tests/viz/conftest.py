"""Fixtures for the pictures and the web view: runs of real graphs, in a private store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from skip_policy import missing

from orchestra.results import RunState

ROOT = Path(__file__).resolve().parents[2]


def need(binary: str, package: str) -> str:
    """The path of ``binary``; a missing one fails under CI (make test installs it)."""
    path = shutil.which(binary)
    if path is None:
        msg = f"{binary} is not installed (apt-get install {package}; make test installs it)"
        missing(msg)
    return path


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A private checkpoint store (SQLite) for the runs a test makes."""
    return f"sqlite:///{tmp_path / 'runs.sqlite'}"


def orchestra(
    *args: str, store: str, check: bool = False, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``orchestra ARGS`` as a user runs it, against the private store."""
    env = {**os.environ, "ORCHESTRA_CHECKPOINT_URL": store, "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "orchestra", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check and done.returncode not in (0, 3, 4):
        raise AssertionError(done.stdout + done.stderr)
    return done


def load_state(store: str, run_id: str) -> RunState:
    """A run's latest state from the checkpoint store."""
    import asyncio

    from orchestra.checkpoint import open_checkpointer

    async def load() -> RunState | None:
        cp = open_checkpointer(store)
        assert cp is not None
        try:
            return await cp.load(run_id)
        finally:
            await cp.aclose()

    state = asyncio.run(load())
    assert state is not None, f"run {run_id} is not in {store}"
    return state


@pytest.fixture
def rerouted_run(store: str, tmp_path: Path) -> Iterator[str]:
    """The flagship run with stripe_refund failing: the run id (the run rerouted)."""
    out = tmp_path / "run.json"
    done = orchestra(
        "run",
        "graphs/support_triage.py",
        "--fail",
        "stripe_refund",
        "-q",
        "--json",
        str(out),
        store=store,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    import json

    yield json.loads(out.read_text())["run_id"]
