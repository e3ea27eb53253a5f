"""Settings of a Celery fleet: the common :class:`~orchestra.config.Settings` plus fleet knobs.

===========================  ==========================================  =========
setting                      environment variable                        default
===========================  ==========================================  =========
visibility_timeout_s         ORCHESTRA_VISIBILITY_TIMEOUT_S              300
restore_interval_s           ORCHESTRA_RESTORE_INTERVAL_S                10
max_redeliveries             ORCHESTRA_MAX_REDELIVERIES                  3
heartbeat_s                  ORCHESTRA_HEARTBEAT_S                       2
heartbeat_ttl_s              ORCHESTRA_HEARTBEAT_TTL_S                   6
queue_wait_s                 ORCHESTRA_QUEUE_WAIT_S                      60
result_ttl_s                 ORCHESTRA_RESULT_TTL_S                      86400
unreachable_s                ORCHESTRA_UNREACHABLE_S                     10
graphs                       ORCHESTRA_GRAPHS                            (none)
runs_concurrency             ORCHESTRA_RUNS_CONCURRENCY                  50
max_runs                     ORCHESTRA_MAX_RUNS                          0 (no limit)
drain_s                      ORCHESTRA_DRAIN_S                           30
===========================  ==========================================  =========

``visibility_timeout_s`` is how long a task taken by a worker that then vanished (the whole
worker process killed, the machine lost) waits before Redis hands it to another worker.  It
must exceed the longest skill timeout, or a slow step is handed out twice; the worker
refuses to start otherwise.  ``restore_interval_s`` is how often workers sweep for such
tasks.  ``max_redeliveries`` bounds how often one task is handed out again after its
worker was lost; past it the task goes to the dead-letter list and counts as a failure.
``queue_wait_s`` is how long, beyond its own timeout and the visibility timeout, a driver
waits for a step before it gives up on it (and cancels it, so that it never runs late).
``unreachable_s`` is how long a driver tolerates Redis being unreachable before it ends the
run with :class:`~orchestra.errors.ExecutorError`.

Runs as a service (:mod:`orchestra.service`): ``graphs`` is a graph registry file (the names
``orchestra submit`` may use); ``runs_concurrency`` is how many runs one driver process drives
at once; ``max_runs`` caps the runs driven at once across the fleet; ``drain_s`` is how long a
driver told to stop (SIGTERM) lets its runs go on before it hands them to another driver.
"""

from __future__ import annotations

from pydantic import Field

from orchestra.config import Settings

__all__ = ["FleetSettings", "fleet_settings"]


class FleetSettings(Settings):
    """:class:`~orchestra.config.Settings` plus what only a fleet needs (see the module doc)."""

    visibility_timeout_s: float = Field(default=300.0, gt=0)
    restore_interval_s: float = Field(default=10.0, gt=0)
    max_redeliveries: int = Field(default=3, ge=0)
    heartbeat_s: float = Field(default=2.0, gt=0)
    heartbeat_ttl_s: float = Field(default=6.0, gt=0)
    queue_wait_s: float = Field(default=60.0, ge=0)
    result_ttl_s: int = Field(default=86400, gt=0)
    unreachable_s: float = Field(default=10.0, gt=0)
    graphs: str | None = None
    runs_concurrency: int = Field(default=50, ge=1)
    max_runs: int = Field(default=0, ge=0)
    drain_s: float = Field(default=30.0, ge=0)


def fleet_settings(settings: Settings | None = None) -> FleetSettings:
    """Fleet settings from ``settings`` (its values win) and the environment."""
    if isinstance(settings, FleetSettings):
        return settings
    if settings is None:
        return FleetSettings()
    return FleetSettings(**settings.model_dump(exclude_unset=False))
