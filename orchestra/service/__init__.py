"""Runs as a service: submit a run, and a fleet of drivers runs it to the end.

* :mod:`~orchestra.service.client`: :func:`submit` / :class:`RunService` write the run's
  record (checkpoint store) and queue it on ``orchestra.runs``; :class:`RunHandle` watches
  (:meth:`~RunHandle.events`), awaits (:meth:`~RunHandle.result`) and cancels it;
* :mod:`~orchestra.service.driver`: the driver worker (``orchestra worker --runs``) that
  places runs within limits, drives many on one event loop, and takes over the runs of a
  driver that died;
* :mod:`~orchestra.service.registry`: the graphs a service may run, by name;
* :mod:`~orchestra.service.store`: its Redis keys and scripts;
* :mod:`~orchestra.service.api`: the HTTP API (``orchestra serve-api``).
"""

from __future__ import annotations

from orchestra.service.client import RunHandle, RunService, asubmit, submit
from orchestra.service.registry import GraphRegistry, UnknownGraphError
from orchestra.service.store import RunEvent

__all__ = [
    "GraphRegistry",
    "RunEvent",
    "RunHandle",
    "RunService",
    "UnknownGraphError",
    "asubmit",
    "submit",
]
