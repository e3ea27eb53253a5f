"""A rendezvous skill for the fan-out test (``orchestra worker --skills`` this file).

``meet`` completes only once ``size`` calls of its group have started, so a graph of
``size`` branches of it completes only when its branches really run at the same time.  Its
timeout is long (a loaded machine may be slow to start four calls): it needs workers whose
visibility timeout is longer still, which the shared test fleet's 4 s is not.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel

from orchestra import skill

WAIT_S = 60.0


class Done(BaseModel):
    token: str
    skill: str
    pid: int


def _log(line: str) -> None:
    with open(os.environ["FLEET_SIDE_LOG"], "a") as f:
        f.write(line + "\n")


@skill(cost=0.001, latency_ms=1, capability="test.meet", timeout_s=WAIT_S + 30)
async def meet(token: str, group: str, size: int) -> Done:
    """Start, then wait until ``size`` calls of ``group`` have started (at most ``WAIT_S``)."""
    pid = os.getpid()
    _log(f"start meet {token} {pid} {group}")
    path = Path(os.environ["FLEET_SIDE_LOG"])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while loop.time() < deadline:
        lines = [ln.split() for ln in path.read_text().splitlines()]
        if sum(1 for e in lines if e[:2] == ["start", "meet"] and e[4:] == [group]) >= size:
            _log(f"done meet {token} {pid} {group}")
            return Done(token=token, skill="meet", pid=pid)
        await asyncio.sleep(0.01)
    raise TimeoutError(f"fewer than {size} calls of {group} ran at once")
