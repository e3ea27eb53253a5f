"""Run ``orchestra`` as a user does: a real subprocess, a wide terminal, no inherited settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def orchestra(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRA_", "OTEL_"))}
    base |= {"COLUMNS": "200", "ORCHESTRA_CHECKPOINT_URL": "none"}
    return subprocess.run(
        [sys.executable, "-m", "orchestra", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=base | (env or {}),
    )
