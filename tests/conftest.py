"""Shared fixtures: paths to the project and to the shared reference data."""

from __future__ import annotations

from pathlib import Path

import pytest

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
