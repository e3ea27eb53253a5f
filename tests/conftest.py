"""Shared fixtures: paths to the project and to the shared reference data."""

from __future__ import annotations

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
