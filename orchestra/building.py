"""Building a :class:`~orchestra.runtime.Runner` from settings: embedded, or on the fleet.

:mod:`orchestra.config` holds the settings only and imports nothing of the runtime, the
fleet or the checkpoints; this module wires them together.
"""

from __future__ import annotations

from orchestra.config import Settings, get_settings
from orchestra.runtime import DecisionHook, Runner

__all__ = ["build_runner"]


def build_runner(
    settings: Settings | None = None,
    *,
    fleet: bool | None = None,
    on_decision: DecisionHook | None = None,
) -> Runner:
    """A :class:`Runner` wired from settings: embedded by default, the Celery fleet with ``fleet``."""
    s = settings or get_settings()
    from orchestra.monitors import HealthBoard, default_monitors

    use_fleet = s.fleet if fleet is None else fleet
    if use_fleet:
        from orchestra.fleet import fleet_runner

        return fleet_runner(s, on_decision=on_decision)
    from orchestra.checkpoint import open_checkpointer

    return Runner(
        health=HealthBoard(cooldown_s=s.cooldown_s),
        monitors=default_monitors(max_amount=s.max_amount),
        max_attempts=s.max_attempts,
        checkpointer=open_checkpointer(s.checkpoint_url),
        on_decision=on_decision,
    )
