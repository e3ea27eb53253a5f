"""Tool health: a circuit breaker per skill, and the monitor that turns it into signals.

States of a skill's circuit::

    closed ──failure──▶ open ──cooldown elapsed (or no other route left)──▶ half_open
      ▲                   ▲                                                   │
      └────success────────┴──────────────failure (cooldown doubles)───────────┘

``down`` is separate: a health probe (or a fleet with no live worker for the skill) says the
skill is unavailable before anything is called; it lasts until a probe says it is up.

The :class:`HealthBoard` holds these records.  This one lives in process; the fleet's board
(:mod:`orchestra.fleet`) keeps the same records in Redis so the driver and every worker see
the same health.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Literal

from pydantic import BaseModel

from orchestra.monitors.base import MonitorContext, Priority, Signal

__all__ = ["HealthBoard", "HealthStatus", "SkillHealth", "ToolHealthMonitor"]

HealthStatus = Literal["closed", "open", "half_open", "down"]


class SkillHealth(BaseModel):
    """Everything known about one skill's health (JSON-able, so it can live in Redis)."""

    down: bool = False
    down_reason: str = ""
    open: bool = False
    opened_at: float = 0.0
    cooldown_s: float = 0.0
    consecutive_failures: int = 0
    calls: int = 0
    failures: int = 0
    ewma_ms: float | None = None
    last_error: str = ""


_HEALTHY = SkillHealth()  # what a snapshot shows for a skill never seen (never changed)


class HealthBoard:
    """Per-skill circuit breakers plus latency EWMA, in process.

    ``failure_threshold`` consecutive failures open the circuit for ``cooldown_s`` seconds;
    each failed half-open trial doubles the cooldown up to ``max_cooldown_s``.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 1,
        cooldown_s: float = 30.0,
        max_cooldown_s: float = 600.0,
        ewma_alpha: float = 0.3,
        clock: Callable[[], float] = time.time,
    ):
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.ewma_alpha = ewma_alpha
        self.clock = clock
        self._lock = threading.Lock()
        self._records: dict[str, SkillHealth] = {}
        self._changes: list[str] = []  # skills in the order their records were put
        self._changes_base = 0  # how many older entries were dropped

    # ---------------------------------------------------------------- storage hooks

    def get(self, skill: str) -> SkillHealth:
        """The record of ``skill`` (a fresh healthy one if never seen)."""
        with self._lock:
            r = self._records.get(skill)
            return r.model_copy() if r is not None else SkillHealth()

    def put(self, skill: str, record: SkillHealth) -> None:
        with self._lock:
            self._records[skill] = record
            self._changes.append(skill)
            if len(self._changes) > 65536:
                drop = len(self._changes) // 2
                del self._changes[:drop]
                self._changes_base += drop

    # ---------------------------------------------------------------- what changed

    def mark(self) -> int:
        """A position in this board's history of changes, for :meth:`changed_since`."""
        with self._lock:
            return self._changes_base + len(self._changes)

    def changed_since(self, mark: int) -> set[str] | None:
        """The skills whose records changed after ``mark``; ``None`` when this board cannot
        tell (then every skill may have changed)."""
        with self._lock:
            if mark < self._changes_base:
                return None
            return set(self._changes[mark - self._changes_base :])

    def snapshot(self, skills: Iterable[str]) -> dict[str, SkillHealth]:
        """Records of many skills at once (one round trip on a remote board), to read only.

        They are the board's own records, not copies (a write replaces a record rather than
        changing it, so what a snapshot holds stays as it was read); change a record with
        :meth:`get` and :meth:`put`.
        """
        with self._lock:
            rec = self._records
            return {s: rec.get(s) or _HEALTHY for s in skills}

    # ---------------------------------------------------------------- reads

    def status(self, skill: str, record: SkillHealth | None = None) -> HealthStatus:
        r = record if record is not None else self.snapshot((skill,))[skill]  # read, no copy
        if r.down:
            return "down"
        if r.open:
            return "half_open" if self.clock() >= r.opened_at + r.cooldown_s else "open"
        return "closed"

    # ---------------------------------------------------------------- writes

    def mark_down(self, skill: str, reason: str) -> None:
        """A probe says ``skill`` is unavailable."""
        r = self.get(skill)
        r.down, r.down_reason = True, reason
        self.put(skill, r)

    def mark_up(self, skill: str) -> None:
        """A probe says ``skill`` is available again."""
        r = self.get(skill)
        r.down, r.down_reason = False, ""
        self.put(skill, r)

    def record_success(self, skill: str, latency_ms: float) -> None:
        r = self.get(skill)
        r.calls += 1
        r.consecutive_failures = 0
        r.open, r.cooldown_s = False, 0.0
        r.ewma_ms = (
            latency_ms
            if r.ewma_ms is None
            else (self.ewma_alpha * latency_ms + (1 - self.ewma_alpha) * r.ewma_ms)
        )
        self.put(skill, r)

    def record_failure(self, skill: str, error: str) -> None:
        r = self.get(skill)
        was_trial = r.open
        r.calls += 1
        r.failures += 1
        r.consecutive_failures += 1
        r.last_error = error
        if was_trial or r.consecutive_failures >= self.failure_threshold:
            r.cooldown_s = (
                min(r.cooldown_s * 2, self.max_cooldown_s)
                if was_trial and r.cooldown_s
                else self.cooldown_s
            )
            r.open, r.opened_at = True, self.clock()
        self.put(skill, r)

    def force_half_open(self, skill: str) -> bool:
        """Allow one trial call of an open circuit now (used when no other route is left)."""
        r = self.get(skill)
        if r.down or not r.open:
            return False
        r.opened_at = self.clock() - r.cooldown_s
        self.put(skill, r)
        return True


class ToolHealthMonitor:
    """Blocks skills that are down or whose circuit is open; weighs in observed reliability.

    Observed reliability is a Beta-smoothed success rate (prior: the skill's declared
    reliability, worth ``prior_weight`` calls); it adds ``reliability_weight × −ln(p)`` to the
    skill's weight, so that weights along a path add up like failure odds multiply.
    """

    name = "tool_health"
    incremental = True

    def __init__(self, *, reliability_weight: float = 0.1, prior_weight: float = 5.0):
        self.reliability_weight = reliability_weight
        self.prior_weight = prior_weight

    async def check(self, ctx: MonitorContext) -> list[Signal]:
        signals: list[Signal] = []
        skills = ctx.checked_skills() if self.incremental else ctx.graph.skills_in_use()
        records = ctx.health_records(skills)
        for sk in skills:
            if sk.milestone:
                continue
            r = records[sk.name]
            status = ctx.health.status(sk.name, r)
            if status == "down":
                signals.append(
                    Signal(
                        monitor=self.name,
                        kind="block",
                        priority=Priority.CRITICAL,
                        skill=sk.name,
                        reason=f"{sk.name} is down ({r.down_reason or 'probe failed'})",
                    )
                )
                continue
            if status == "open":
                retry_in = max(0.0, r.opened_at + r.cooldown_s - ctx.health.clock())
                signals.append(
                    Signal(
                        monitor=self.name,
                        kind="block",
                        priority=Priority.HIGH,
                        skill=sk.name,
                        reason=f"{sk.name} circuit open after {r.consecutive_failures} failure(s)"
                        f" (last: {r.last_error}); half-open in {retry_in:.1f}s",
                    )
                )
                continue
            p = (r.calls - r.failures + sk.reliability * self.prior_weight) / (
                r.calls + self.prior_weight
            )
            extra = self.reliability_weight * -math.log(max(p, 1e-6))
            factor = 1.5 if status == "half_open" else 1.0
            if extra > 0 or factor > 1:
                signals.append(
                    Signal(
                        monitor=self.name,
                        kind="penalize",
                        priority=Priority.LOW,
                        skill=sk.name,
                        extra=extra,
                        factor=factor,
                        reason=f"{sk.name} {'half-open trial, ' if factor > 1 else ''}"
                        f"observed reliability {p:.2f}",
                    )
                )
        return signals
