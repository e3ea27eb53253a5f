"""The Celery app of a fleet, configured from settings.

What is fixed, whatever the settings:

* **JSON only.** Tasks and results are JSON; a worker refuses any other content type
  (pickle included), so a message on the broker can never run code by being decoded.
* **Late acknowledgement.** A task is acknowledged after it ran, and a task whose worker
  process died under it is put back on the queue (``task_reject_on_worker_lost``).  Since
  a broker does not count how often that happens, :mod:`orchestra.fleet.tasks` counts the
  deliveries itself and dead-letters a task past ``max_redeliveries``.
* **One queue per skill**, ``orchestra.skill.<name>``: a worker consumes the queues of the
  skills it hosts, so a step only ever reaches a worker that can run it.  Queue
  ``orchestra`` carries everything else (e.g. the benchmark's no-op task).
* **Prefetch of one** task per worker process: a slow step does not hold others hostage.
* **Undecodable messages are dead-lettered**, not fatal (:mod:`orchestra.fleet.transport`).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from orchestra.config import Settings
from orchestra.fleet.settings import FleetSettings, fleet_settings

__all__ = ["DEFAULT_QUEUE", "PING_TASK", "STEP_TASK", "create_app", "queue_for"]

STEP_TASK = "orchestra.step"
PING_TASK = "orchestra.ping"
DEFAULT_QUEUE = "orchestra"
QUEUE_PREFIX = "orchestra.skill."


def queue_for(skill: str) -> str:
    """The queue that carries the steps of ``skill``."""
    return f"{QUEUE_PREFIX}{skill}"


def create_app(settings: Settings | None = None) -> Any:
    """A Celery app wired from ``settings``, with the ``orchestra.step`` task registered.

    The returned object is a :class:`celery.Celery` (typed ``Any``: Celery ships no types).
    """
    s: FleetSettings = fleet_settings(settings)
    app = Celery("orchestra", broker=s.broker_url, backend=s.result_backend, set_as_current=False)
    transport: dict[str, Any] = {
        "visibility_timeout": s.visibility_timeout_s,
        "unacked_restore_interval": s.restore_interval_s,
        "unacked_restore_throttle": 1,
        "socket_timeout": 10,
        "socket_connect_timeout": 2,
        "health_check_interval": 10,
    }
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        # a child process that died is reported (and its task put back) after this long
        worker_lost_wait=1.0,
        task_default_queue=DEFAULT_QUEUE,
        task_create_missing_queues=True,
        broker_transport_options=transport,
        result_backend_transport_options={"socket_timeout": 10, "socket_connect_timeout": 2},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 8,
            "interval_start": 0,
            "interval_step": 0.25,
            "interval_max": 1.0,
        },
        result_expires=3600,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_channel_error_retry=True,
    )
    if s.broker_url.startswith("redis://"):
        # kombu's Redis transport, but a message that does not decode is dead-lettered
        # instead of ending the worker (orchestra.fleet.transport)
        app.conf.broker_transport = "orchestra.fleet.transport:Transport"
    app.conf.worker_consumer = "orchestra.fleet.transport:Consumer"
    app.orchestra_settings = s
    from orchestra.fleet.tasks import register_tasks

    register_tasks(app)
    return app
