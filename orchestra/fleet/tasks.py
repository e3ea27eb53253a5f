"""The worker side: the generic step task ``orchestra.step``.

One Celery task serves every skill.  Its payload (:class:`StepEnvelope`, JSON) carries the
:class:`~orchestra.executors.StepTask`, the driver's reply list and the run's epoch.  The
task looks the skill up in this worker's registry (the skills it was started with) and runs
it with :func:`~orchestra.executors.run_skill`, exactly as the embedded executor does, inside
the driver's trace context.

Around that call, two Lua scripts (:mod:`orchestra.fleet.store`) make a step idempotent by
(run id, step id) and count deliveries:

* a redelivered task whose outcome is stored, or a step of the run that this skill already
  completed, is answered from Redis: the tool does not run again;
* a task delivered more than ``1 + max_redeliveries`` times goes to the dead-letter list and
  is answered with a failure (:class:`~orchestra.errors.ExecutorError`);
* a redelivered task of a skill not declared idempotent is not run again (the lost call may
  have taken effect): it is answered with a failure and dead-lettered for a human to check;
* a task its driver cancelled, or superseded by a resumed run, is dropped.

A payload that is not a valid envelope is rejected with an error naming the bad field, sent
to the driver if the payload says where, and dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestra import tracing
from orchestra.errors import ErrorPayload, ExecutorError
from orchestra.executors.base import StepOutcome, StepTask
from orchestra.executors.local import run_skill
from orchestra.fleet import store
from orchestra.fleet.settings import FleetSettings
from orchestra.lease import dead_here
from orchestra.logs import get_logger
from orchestra.models.budget import budget_key
from orchestra.redact import redact_text
from orchestra.secrets import has_key, open_record, seal_record
from orchestra.skills import Skill

__all__ = ["StepEnvelope", "WorkerContext", "configure_worker", "register_tasks"]

log = get_logger("orchestra.fleet.worker")


class StepEnvelope(BaseModel):
    """The JSON payload of one ``orchestra.step`` task."""

    model_config = ConfigDict(extra="forbid")

    task: StepTask
    reply_to: str = Field(min_length=1)
    epoch: int = 0
    sent_at: float = 0.0


@dataclass
class WorkerContext:
    """What a worker process knows: its name, its skills and its settings."""

    name: str
    skills: dict[str, Skill]
    settings: FleetSettings
    _local: threading.local = field(default_factory=threading.local)

    # One event loop and one Redis client per process and thread: a prefork child gets
    # its own after the fork, a thread-pool worker one per thread.
    def loop(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None or getattr(self._local, "pid", None) != os.getpid():
            loop = asyncio.new_event_loop()
            self._local.loop = loop
            self._local.pid = os.getpid()
            self._local.redis = None
        return loop

    def async_redis(self) -> Any:
        """An asyncio Redis client on the result store, for this process's event loop."""
        self.loop()
        client = getattr(self._local, "aredis", None)
        if client is None or getattr(self._local, "aredis_pid", None) != os.getpid():
            import redis.asyncio as aredis
            from redis.asyncio.retry import Retry as AsyncRetry
            from redis.backoff import ExponentialBackoff

            client = aredis.Redis.from_url(
                self.settings.result_backend,
                socket_timeout=10.0,
                socket_connect_timeout=2.0,
                retry=AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), 12),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            )
            self._local.aredis = client
            self._local.aredis_pid = os.getpid()
        return client

    def redis(self) -> tuple[redis.Redis, Any, Any]:
        self.loop()
        client: tuple[redis.Redis, Any, Any] | None = getattr(self._local, "redis", None)
        if client is None:
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry

            # ride out a Redis restart mid-step: the outcome of a step that ran is still stored
            r = redis.Redis.from_url(
                self.settings.result_backend,
                socket_timeout=10.0,
                socket_connect_timeout=2.0,
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 12),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            )
            client = (r, r.register_script(store.BEGIN), r.register_script(store.FINISH))
            self._local.redis = client
        return client


_CONTEXT: WorkerContext | None = None


def configure_worker(context: WorkerContext) -> None:
    """Install this process's worker context (before the Celery worker starts)."""
    global _CONTEXT
    _CONTEXT = context


def current_worker() -> WorkerContext:
    if _CONTEXT is None:
        raise ExecutorError(
            "this process is not an Orchestra worker: start it with `orchestra worker`"
        )
    return _CONTEXT


def _failure(message: str, task: StepTask | None = None) -> StepOutcome:
    return StepOutcome(
        ok=False,
        error=ErrorPayload(
            type="ExecutorError",
            message=message,
            step=task.step_id if task else None,
            skill=task.skill if task else None,
        ),
    )


def _summary(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        loc = ".".join(map(str, e["loc"])) or "payload"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def _sealed(value: Any) -> Any:
    """A dead letter's task or payload: sealed whole when a key is set (its arguments may hold
    plain personal data), else as it is (its secrets are sealed one by one anyway)."""
    if not has_key():
        return value
    return seal_record(json.dumps(value, default=repr))


def _reject(ctx: WorkerContext, task_id: str, payload: Any, why: str) -> None:
    """Answer and dead-letter a payload that is not a valid step envelope."""
    message = f"orchestra.step payload rejected: {why}"
    log.error("invalid step payload", task_id=task_id, error=message)
    r, _, _ = ctx.redis()
    reply_to = payload.get("reply_to") if isinstance(payload, dict) else None
    dead = json.dumps(
        {
            "task_id": task_id,
            "reason": message,
            "worker": ctx.name,
            "at": time.time(),
            "payload": _sealed(payload),
        },
        default=repr,
    )
    pipe = r.pipeline(transaction=False)
    pipe.lpush(store.DEAD_LETTERS, dead)
    pipe.ltrim(store.DEAD_LETTERS, 0, store.DEAD_LETTERS_MAX - 1)
    if isinstance(reply_to, str) and reply_to:
        pipe.rpush(store.reply_key(reply_to), f"{task_id}\n{_failure(message).model_dump_json()}")
        pipe.expire(store.reply_key(reply_to), ctx.settings.result_ttl_s)
    pipe.execute()


def step(task_id: str, payload: Any) -> str:
    """Run one delivery of a step task; returns what became of it (for logs and tests)."""
    ctx = current_worker()
    try:
        env = StepEnvelope.model_validate(payload)
    except ValidationError as exc:
        _reject(ctx, task_id, payload, _summary(exc))
        return "rejected"
    task = env.task
    from orchestra.fleet.app import queue_for

    wait_ms = max(0.0, (time.time() - env.sent_at) * 1e3) if env.sent_at else None
    with (
        tracing.extract_context(task.trace_context),
        tracing.process_span(
            queue_for(task.skill),
            message_id=task_id,
            run_id=task.run_id,
            step_id=task.step_id,
            skill=task.skill,
            queue_wait_ms=wait_ms,
            worker=ctx.name,
        ) as span,
    ):
        if span.is_recording():  # the tool call becomes a child of this delivery
            task.trace_context = tracing.inject_context()
        verdict = _deliver(ctx, task_id, env)
        if span.is_recording():
            span.set_attribute("orchestra.delivery", verdict)
        return verdict


def _deliver(ctx: WorkerContext, task_id: str, env: StepEnvelope) -> str:
    """Run (or answer from Redis, or drop) one delivery of a valid step envelope."""
    s = ctx.settings
    task = env.task
    hosted = ctx.skills.get(task.skill)
    r, begin, finish = ctx.redis()
    ttl = s.result_ttl_s
    holder = f"{_HOST}:{os.getpid()}:{threading.get_ident()}"
    takeover = ""
    while True:
        verdict, detail, *more = begin(
            keys=[
                store.task_key(task_id),
                store.step_key(task.run_id, task.step_id),
                store.epoch_key(task.run_id),
                store.lease_key(task_id),
                budget_key(task.run_id),
            ],
            args=[
                task_id,
                ctx.name,
                task.skill,
                "0" if hosted is not None and not hosted.idempotent else "1",
                1 + s.max_redeliveries,
                ttl,
                env.epoch,
                holder,
                int((task.timeout_s + 5) * 1000),
                takeover,
            ],
            client=r,
        )
        verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
        detail = detail.decode() if isinstance(detail, bytes) else detail
        if verdict != "busy":
            break
        # Another process holds this task's lease: it may still be running it.  Take over at
        # once if it is a dead process of this machine, else wait for it (or its lease).
        if dead_here(detail):
            takeover = detail
        else:
            time.sleep(0.1)
    dead = ""
    if verdict == "cancelled":
        log.info("step dropped", task_id=task_id, step=task.step_id, reason=detail)
        if detail.startswith("superseded"):
            # tell the old driver at once: the run is someone else's (not a skill failure)
            gone = _failure(detail, task)
            assert gone.error is not None
            gone.error.type = "Superseded"
            with contextlib.suppress(redis.RedisError, OSError):
                r.rpush(store.reply_key(env.reply_to), f"{task_id}\n{gone.model_dump_json()}")
                r.expire(store.reply_key(env.reply_to), ttl)
        return "cancelled"
    if verdict == "replay":
        outcome_json = detail  # as stored: sealed when a key is set
        ok = bool(json.loads(open_record(detail)).get("ok"))
        log.info("step answered from its stored result", task_id=task_id, step=task.step_id)
    else:
        if verdict == "run":
            budget = bool(more and int(more[0]))
            outcome = (
                _run_journalled(ctx, task, budget)
                if task.journal_token is not None
                else _run(ctx, task, budget)
            )
        elif verdict == "dead":
            outcome = _failure(
                f"step {task.step_id!r} ({task.skill}) dead-lettered after {int(detail) - 1} "
                f"deliveries: the worker running it was lost each time",
                task,
            )
        else:  # "lost": a redelivered call of a skill that is not idempotent
            outcome = _failure(
                f"a worker was lost while running {task.skill} for step {task.step_id!r}; "
                f"{task.skill} is not idempotent, so it is not run again (the lost call may "
                f"or may not have taken effect)",
                task,
            )
        if verdict in ("dead", "lost"):
            assert outcome.error is not None
            dead = json.dumps(
                {
                    "task_id": task_id,
                    "run_id": task.run_id,
                    "step_id": task.step_id,
                    "skill": task.skill,
                    "deliveries": int(detail),
                    "reason": outcome.error.message,
                    "worker": ctx.name,
                    "at": time.time(),
                    "task": _sealed(task.model_dump(mode="json")),
                }
            )
        outcome.worker = ctx.name
        outcome_json = seal_record(outcome.model_dump_json())
        ok = outcome.ok
    finish(
        keys=[
            store.task_key(task_id),
            store.step_key(task.run_id, task.step_id),
            store.reply_key(env.reply_to),
            store.DEAD_LETTERS,
            store.lease_key(task_id),
        ],
        args=[
            outcome_json,
            "1" if ok else "0",
            task.skill,
            ttl,
            f"{task_id}\n{outcome_json}",
            dead,
            task_id,
        ],
        client=r,
    )
    return verdict


_HOST = socket.gethostname()


def _run(ctx: WorkerContext, task: StepTask, budget: bool) -> StepOutcome:
    """Run the step's skill; ``budget``: whether BEGIN found the run's budget in Redis."""
    skill = ctx.skills.get(task.skill)
    if skill is None:
        return _failure(
            f"worker {ctx.name} does not host skill {task.skill!r} "
            f"(it hosts: {', '.join(sorted(ctx.skills)) or 'nothing'})",
            task,
        )
    return ctx.loop().run_until_complete(_run_in_budget(ctx, skill, task, budget))


async def _run_in_budget(
    ctx: WorkerContext, skill: Skill, task: StepTask, budget: bool
) -> StepOutcome:
    """Run the step with the run's ledger installed: its model calls reserve from the
    budget the driver created in the result store (shared by every worker of the run).

    Whether that budget exists was checked by BEGIN, in the same round trip that took the
    task (``budget``): a step whose budget is gone fails before its tool runs."""
    if task.ledger != "redis":
        return await run_skill(skill, task)
    from orchestra.models.budget import RedisLedger, use_ledger

    if not budget:
        return _failure(
            f"step {task.step_id!r}: the run's budget is gone: no budget for run "
            f"{task.run_id!r} in Redis (key {budget_key(task.run_id)})",
            task,
        )
    with use_ledger(RedisLedger(ctx.async_redis(), task.run_id)):
        return await run_skill(skill, task)


def _run_journalled(ctx: WorkerContext, task: StepTask, budget: bool) -> StepOutcome:
    """Run a call of a skill that is not idempotent through the effects journal: the tool
    runs only if this worker is the one that moves the call from intent to started."""
    from orchestra import journal

    url = ctx.settings.checkpoint_url
    token = task.journal_token
    assert token is not None
    try:
        verdict, effect = journal.begin(url, task, token, ctx.name)
    except Exception as exc:
        return _failure(
            f"cannot reach the effects journal ({redact_text(url)}): {type(exc).__name__}: {exc}; "
            f"{task.skill} was not run for step {task.step_id!r}",
            task,
        )
    if verdict == "run":
        outcome = _run(ctx, task, budget)
        outcome.worker = ctx.name
        for attempt in range(20):
            try:
                journal.record_outcome(url, task, token, outcome)
                break
            except Exception as exc:
                log.error(
                    "cannot journal an outcome", step=task.step_id, skill=task.skill, error=str(exc)
                )
                time.sleep(min(0.1 * 2**attempt, 2.0))
        return outcome
    if verdict == "replay":
        assert effect is not None and effect.outcome is not None
        return effect.outcome
    message = {
        "lost": f"{task.skill} was already started for step {task.step_id!r} by "
        f"{effect.worker if effect else 'another worker'} and never finished; it is not "
        f"idempotent, so it is not run again (the lost call may or may not have taken effect)",
        "superseded": "superseded: the run is driven by another driver now",
        "cancelled": f"{task.skill} for step {task.step_id!r} was withdrawn by its driver",
        "missing": f"the effects journal at {redact_text(url)} has no intent for this call of "
        f"{task.skill}: the driver and this worker must share ORCHESTRA_CHECKPOINT_URL",
    }[verdict]
    out = _failure(message, task)
    if verdict == "superseded" and out.error is not None:
        out.error.type = "Superseded"
    return out


def _step_task(self: Any, payload: Any) -> str:
    return step(str(self.request.id), payload)


def _ping_task() -> None:
    return None


def register_tasks(app: Any) -> None:
    """Register ``orchestra.step`` and ``orchestra.ping`` on ``app`` (and on no other app)."""
    from orchestra.fleet.app import PING_TASK, STEP_TASK

    app.task(
        name=STEP_TASK,
        bind=True,
        ignore_result=True,
        acks_late=True,
        reject_on_worker_lost=True,
        typing=False,
        shared=False,
    )(_step_task)
    app.task(name=PING_TASK, acks_late=True, typing=False, shared=False)(_ping_task)
