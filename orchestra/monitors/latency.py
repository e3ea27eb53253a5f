"""Latency: weighs each skill by its latency (EWMA of observed calls, else declared)."""

from __future__ import annotations

from orchestra.monitors.base import MonitorContext, Priority, Signal

__all__ = ["LatencyMonitor"]


class LatencyMonitor:
    """Adds ``latency_weight × latency_seconds`` to a skill's weight.

    ``latency_weight`` is what one second of waiting is worth in cost units (default: one
    cent per second).  Skills slower than ``slow_factor`` × their declared latency also get a
    ``note`` in the decision log.
    """

    name = "latency"
    incremental = True

    def __init__(self, *, latency_weight: float = 0.01, slow_factor: float = 3.0):
        self.latency_weight = latency_weight
        self.slow_factor = slow_factor
        # per skill: what its signals depend on (observed EWMA, declared latency, the two
        # settings) -> the signals they gave last time
        self._last: dict[
            str, tuple[tuple[float | None, float, float, float], tuple[Signal, ...]]
        ] = {}

    async def check(self, ctx: MonitorContext) -> list[Signal]:
        signals: list[Signal] = []
        skills = ctx.checked_skills()
        records = ctx.health_records(skills)
        for sk in skills:
            if sk.milestone:
                continue
            observed = records[sk.name].ewma_ms
            key = (observed, sk.latency_ms, self.latency_weight, self.slow_factor)
            known = self._last.get(sk.name)
            if known is not None and known[0] == key:
                signals.extend(known[1])  # nothing it depends on changed: the same signals
                continue
            mark = len(signals)
            ms = observed if observed is not None else sk.latency_ms
            if ms <= 0:
                self._last[sk.name] = (key, ())
                continue
            signals.append(
                Signal(
                    monitor=self.name,
                    kind="penalize",
                    priority=Priority.LOW,
                    skill=sk.name,
                    extra=self.latency_weight * ms / 1000.0,
                    reason=f"{sk.name} latency {ms:.0f} ms ({'EWMA' if observed is not None else 'declared'})",
                )
            )
            if (
                observed is not None
                and sk.latency_ms > 0
                and observed > self.slow_factor * sk.latency_ms
            ):
                signals.append(
                    Signal(
                        monitor=self.name,
                        kind="note",
                        priority=Priority.MEDIUM,
                        skill=sk.name,
                        reason=f"{sk.name} is slow: {observed:.0f} ms vs {sk.latency_ms:.0f} ms declared",
                    )
                )
            self._last[sk.name] = (key, tuple(signals[mark:]))
        return signals
