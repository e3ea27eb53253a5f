"""Executors: where a step attempt runs (in process, or on a Celery fleet)."""

from orchestra.executors.base import Executor, StepOutcome, StepTask
from orchestra.executors.local import LocalExecutor, run_skill

__all__ = ["Executor", "LocalExecutor", "StepOutcome", "StepTask", "run_skill"]
