"""Probes: ask each skill that has one whether it is available, before routing to it.

A skill's ``probe`` is a callable (sync or async) returning ``None`` when the skill is
available or a short reason when it is not (e.g. "no model server at 127.0.0.1:8000").  The
monitor runs the probes of the skills in use concurrently, at most once per ``interval_s``
per skill, and blocks the skills whose probe failed: the route avoids them before any call.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestra.monitors.base import MonitorContext, Priority, Signal

if TYPE_CHECKING:
    from orchestra.graph import CompiledGraph
    from orchestra.skills import Skill

__all__ = ["ProbeMonitor", "tcp_probe"]


class ProbeMonitor:
    """Blocks skills whose probe reports them unavailable (results cached ``interval_s``)."""

    name = "probe"

    def __init__(
        self,
        *,
        interval_s: float = 10.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._cache: dict[str, tuple[float, str | None]] = {}
        # the skills with a probe, for the last graph seen (and its version)
        self._probed: tuple[CompiledGraph, int, list[Skill]] | None = None

    async def _probe(self, name: str, probe: Callable[[], Any]) -> str | None:
        now = self.clock()
        hit = self._cache.get(name)
        if hit is not None and now - hit[0] < self.interval_s:
            return hit[1]
        try:
            result = probe()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.timeout_s)
            reason = None if result is None else str(result)
        except Exception as exc:
            reason = f"probe raised {type(exc).__name__}: {exc}"
        self._cache[name] = (now, reason)
        return reason

    async def check(self, ctx: MonitorContext) -> list[Signal]:
        g = ctx.graph
        if self._probed is None or self._probed[0] is not g or self._probed[1] != g.version:
            self._probed = (g, g.version, [s for s in g.skills_in_use() if s.probe is not None])
        probed = self._probed[2]
        if not probed:
            return []
        reasons = await asyncio.gather(*(self._probe(s.name, s.probe) for s in probed))
        return [
            Signal(
                monitor=self.name,
                kind="block",
                priority=Priority.CRITICAL,
                skill=s.name,
                reason=f"{s.name} is down ({reason})",
            )
            for s, reason in zip(probed, reasons, strict=True)
            if reason is not None
        ]


def tcp_probe(*urls: str, timeout_s: float = 0.5) -> Callable[[], Any]:
    """A probe that passes when any of ``urls`` (``http://host:port/...``) accepts a connection."""
    from urllib.parse import urlsplit

    targets = []
    for u in urls:
        parts = urlsplit(u)
        targets.append(
            (parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80))
        )

    async def probe() -> str | None:
        for host, port in targets:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
            except (OSError, TimeoutError):
                continue
            writer.close()
            return None
        return "nothing answers at " + ", ".join(f"{h}:{p}" for h, p in targets)

    return probe
