"""Small skills for the core tests: each records its calls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from orchestra import Graph, Skill


class Out(BaseModel):
    value: str


def recording(
    name: str, log: list[str], *, cost: float = 0.1, delay: float = 0.0, timeout_s: float = 5.0
) -> Skill:
    """A skill that appends its name to ``log`` and returns ``{"value": name}``."""

    async def fn(**kwargs: Any) -> Out:
        log.append(name)
        if delay:
            await asyncio.sleep(delay)
        return Out(value=name)

    fn.__name__ = name
    return Skill(name=name, cost=cost, timeout_s=timeout_s, fn=fn, output_model=Out)


def pipeline(
    layers: Sequence[Sequence[Skill]], *, name: str = "pipe", fallback: Sequence[str] = ()
) -> Graph:
    """A linear graph: one step per layer, each after the previous."""
    g = Graph(name, fallback_goals=fallback)
    prev: str | None = None
    for i, cands in enumerate(layers):
        sid = f"s{i}"
        g.step(sid, list(cands), after=[prev] if prev else [])
        prev = sid
    return g
