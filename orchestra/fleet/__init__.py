"""Run steps on a fleet of Celery workers (Redis broker), with fleet-wide health.

The same graphs run unchanged; only the :class:`~orchestra.runtime.Runner` differs::

    from orchestra.fleet import fleet_runner
    runner = fleet_runner()                      # from ORCHESTRA_* settings
    result = await runner.run(graph, {"customer_id": "c1", "amount": 5})

Workers are started with ``orchestra worker --graph graphs/refund.py`` (or ``--skills DIR``);
``orchestra fleet status`` shows them.  Modules:

* :mod:`~orchestra.fleet.app`: the Celery app (JSON only, late acks, a queue per skill);
* :mod:`~orchestra.fleet.tasks`: the worker's ``orchestra.step`` task (idempotency,
  redelivery counting, dead letters);
* :mod:`~orchestra.fleet.executor`: :class:`CeleryExecutor`, the driver's side;
* :mod:`~orchestra.fleet.health`: circuits in Redis, heartbeats, probes, the fleet monitor;
* :mod:`~orchestra.fleet.worker`: starting a worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestra.config import Settings
from orchestra.fleet.app import create_app, queue_for
from orchestra.fleet.executor import CeleryExecutor
from orchestra.fleet.health import (
    FleetHealthMonitor,
    FleetView,
    RedisHealthBoard,
    WorkerInfo,
)
from orchestra.fleet.settings import FleetSettings, fleet_settings

if TYPE_CHECKING:
    from orchestra.runtime import DecisionHook, Runner

__all__ = [
    "CeleryExecutor",
    "FleetHealthMonitor",
    "FleetSettings",
    "FleetView",
    "RedisHealthBoard",
    "WorkerInfo",
    "create_app",
    "fleet_runner",
    "fleet_settings",
    "queue_for",
]


def fleet_runner(
    settings: Settings | None = None, *, on_decision: DecisionHook | None = None
) -> Runner:
    """A :class:`~orchestra.runtime.Runner` whose steps run on the fleet.

    Health lives in Redis (shared by every driver and worker), so does each run's budget
    (a :class:`~orchestra.models.budget.RedisLedger` the workers' model calls reserve from),
    the tool-health monitor also
    blocks skills that no live worker serves or that fail on every worker, and run state is
    checkpointed to ``checkpoint_url`` (use ``postgresql://...`` when drivers run on several
    machines).
    """
    from orchestra.checkpoint import open_checkpointer
    from orchestra.monitors import BudgetMonitor, LatencyMonitor, RiskMonitor
    from orchestra.run_ledger import redis_ledger_factory
    from orchestra.runtime import Runner

    s = fleet_settings(settings)
    view = FleetView(s.health_url, ttl_s=s.heartbeat_ttl_s)
    return Runner(
        executor=CeleryExecutor(s, view=view),
        health=RedisHealthBoard(s.health_url, cooldown_s=s.cooldown_s),
        monitors=[
            FleetHealthMonitor(view),
            LatencyMonitor(),
            RiskMonitor(max_amount=s.max_amount),
            BudgetMonitor(),
        ],
        max_attempts=s.max_attempts,
        checkpointer=open_checkpointer(s.checkpoint_url),
        on_decision=on_decision,
        # one budget per run in the result store: every worker's model calls reserve from it
        ledger_factory=redis_ledger_factory(s.result_backend),
    )
