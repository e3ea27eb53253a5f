"""Shared fixtures: paths to the project and to the shared reference data."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Under CI=true an unlisted skip fails the session (tests/skip_policy.py): its hooks are
# registered here, in the conftest every test session loads.
from skip_policy import (
    pytest_collectreport,
    pytest_configure,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

__all__ = [
    "pytest_collectreport",
    "pytest_configure",
    "pytest_runtest_logreport",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
]

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# The runs the suite makes are checkpointed in a store of its own, never in the user's
# (`orchestra trace` would list runs the user never started).  Set before any test runs, so
# that every subprocess (workers, drivers, the CLI) inherits it.
_RUNS_DIR = tempfile.mkdtemp(prefix="orchestra-test-runs-")
os.environ["ORCHESTRA_CHECKPOINT_URL"] = f"sqlite:///{_RUNS_DIR}/runs.sqlite"


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_RUNS_DIR, ignore_errors=True)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(
            f"reference data missing: {SHARED_DATA} (it must sit beside the project as ../shared/data)"
        )
    return SHARED_DATA
