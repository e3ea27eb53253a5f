"""A graph whose middle step waits for a file to appear: a run a test can watch while it runs.

``ORCHESTRA_TEST_GATE`` names the file; the ``wait`` step returns once it exists.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel

from orchestra import Graph, skill


class Opened(BaseModel):
    opened: bool


@skill(cost=0.001, latency_ms=5)
async def fetch_order() -> Opened:
    return Opened(opened=False)


@skill(cost=0.002, latency_ms=50, timeout_s=300)
async def wait_for_gate(opened: bool) -> Opened:
    gate = Path(os.environ["ORCHESTRA_TEST_GATE"])
    while not gate.exists():
        await asyncio.sleep(0.1)
    return Opened(opened=True)


@skill(cost=0.001, latency_ms=5)
async def close_order(opened: bool) -> Opened:
    return Opened(opened=opened)


graph = Graph("gated")
graph.step("fetch", [fetch_order])
graph.step("wait", [wait_for_gate], after="fetch")
graph.step("close", [close_order], after="wait")
