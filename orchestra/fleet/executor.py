"""The driver side: :class:`CeleryExecutor` sends each step to the fleet and awaits it.

Sending and awaiting never block the event loop:

* a step is published with Celery's ``send_task`` on one publishing thread (kombu is
  synchronous), to the skill's queue ``orchestra.skill.<name>``; steps the run loop
  dispatches together go out together and run on as many workers as are free;
* the answer comes back on this driver's own reply list in Redis, read by one ``BLPOP``
  loop for all steps in flight (no result-backend polling, no thread per step); after each
  ``BLPOP`` the replies already waiting are taken in one more round trip, not one each.

A watchdog looks after steps in flight, once every half second (reading from Redis the
state of the steps it may have to act on, and of every other step at least every two
seconds):

* an answer that was lost on the way (a reply list lost with Redis) is read from the
  step's stored outcome;
* a step not yet started whose skill no longer has a live worker is withdrawn (cancelled,
  so it can never run late) and answered as a failure: the run reroutes;
* a step of a skill that is not idempotent, started by a worker that has since died, is
  withdrawn and answered as a failure at once (a redelivery would refuse it anyway);
* a step past its deadline (its timeout per delivery, plus the visibility timeout, plus
  ``queue_wait_s``) is withdrawn and answered as a failure;
* Redis unreachable for ``unreachable_s``, or restarted without the step's task, ends the
  run with :class:`~orchestra.errors.ExecutorError`: nothing is reported done that did not
  happen, and ``orchestra run --resume`` continues the run from its last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from pydantic_core import PydanticSerializationError

from orchestra import tracing
from orchestra.config import Settings
from orchestra.errors import ErrorPayload, ExecutorError, SecretKeyError
from orchestra.executors.base import StepOutcome, StepTask
from orchestra.fleet import store
from orchestra.fleet.app import STEP_TASK, create_app, queue_for
from orchestra.fleet.health import FleetView, _safe
from orchestra.fleet.settings import fleet_settings
from orchestra.fleet.tasks import StepEnvelope
from orchestra.logs import get_logger
from orchestra.secrets import open_record
from orchestra.skills import Skill

__all__ = ["CeleryExecutor"]

log = get_logger("orchestra.fleet.executor")

_TICK_S = 0.5
_REREAD_S = 2.0  # a step in flight has its stored state read at least this often
_DRAIN = 256  # replies read at most per round trip after a BLPOP

# KEYS: epoch; ARGV: token.  The epoch becomes max(epoch, token); returns it.
_RAISE_EPOCH = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = tonumber(ARGV[1])
if t > cur then redis.call('SET', KEYS[1], t); cur = t end
return cur
"""


@dataclass
class _Pending:
    future: asyncio.Future[StepOutcome]
    task: StepTask
    skill: Skill
    sent: float
    deadline: float
    lost_deadline: float | None = None
    read_at: float = 0.0  # when the watchdog last read the task's stored state (or sent it)


def _failure(task: StepTask, message: str) -> StepOutcome:
    return StepOutcome(
        ok=False,
        error=ErrorPayload(
            type="ExecutorError", message=message, step=task.step_id, skill=task.skill
        ),
    )


class CeleryExecutor:
    """Runs each step as an ``orchestra.step`` task on a Celery fleet (see the module doc).

    ``view`` (a :class:`FleetView`) lets the watchdog withdraw steps whose skill lost its
    last worker; without it, such a step waits for its deadline.
    """

    name = "celery"
    journals = True  # workers journal the start and outcome of calls that are not idempotent

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        app: Any = None,
        view: FleetView | None = None,
        driver_id: str | None = None,
    ):
        self.settings = fleet_settings(settings)
        self.app = app if app is not None else create_app(self.settings)
        self.view = view
        self.driver_id = driver_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._pending: dict[str, _Pending] = {}
        self._epochs: dict[str, int] = {}
        self._redis: aioredis.Redis | None = None
        self._blpop: aioredis.Redis | None = None
        self._cancel: Any = None
        self._publisher: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._unreachable_since: float | None = None
        self._listen_failed_at = -math.inf  # when reading replies last failed
        self._marker_at = 0.0
        self._closing = False
        self._background: set[asyncio.Future[None]] = set()
        # steps waiting to be published: (task id, payload, queue, done when sent)
        self._outbox: list[tuple[str, dict[str, Any], str, asyncio.Future[None]]] = []
        self._flusher: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def _ensure_started(self) -> aioredis.Redis:
        if self._redis is not None:
            return self._redis
        url = self.settings.result_backend
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=5.0, socket_connect_timeout=2.0, decode_responses=True
        )
        self._blpop = aioredis.Redis.from_url(
            url, socket_timeout=5.0, socket_connect_timeout=2.0, decode_responses=True
        )
        self._cancel = self._redis.register_script(store.CANCEL)
        self._publisher = ThreadPoolExecutor(1, thread_name_prefix="orchestra-publish")
        try:
            await self._redis.set(
                store.driver_key(self.driver_id), "1", ex=self.settings.result_ttl_s
            )
        except (redis.RedisError, OSError) as exc:
            await self.aclose()
            raise ExecutorError(
                f"cannot reach the fleet's result store at {_safe(url)}: {exc}"
            ) from exc
        self._marker_at = time.monotonic()
        self._tasks = [
            asyncio.ensure_future(self._listen()),
            asyncio.ensure_future(self._watch()),
        ]
        return self._redis

    async def aclose(self) -> None:
        """Stop listening, forget this driver's reply list, close connections."""
        self._closing = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        self._closing = False
        for p in self._pending.values():
            if not p.future.done():
                p.future.set_exception(ExecutorError("the executor was closed"))
        self._pending.clear()
        if self._redis is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await self._redis.delete(
                    store.reply_key(self.driver_id), store.driver_key(self.driver_id)
                )
            await self._redis.aclose()
            self._redis = None
        if self._blpop is not None:
            await self._blpop.aclose()
            self._blpop = None
        if self._publisher is not None:
            self._publisher.shutdown(wait=False)
            self._publisher = None
        if self.view is not None:
            await self.view.aclose()

    def fence(self, run_id: str, token: int) -> None:
        """Send the steps of ``run_id`` under fencing ``token`` (the run lease's): once
        :meth:`recover` raised the run's epoch to a newer token, a worker drops what an
        older driver sent."""
        self._epochs[run_id] = token

    # ------------------------------------------------------------------ executing

    async def execute(self, task: StepTask, skill: Skill) -> StepOutcome:
        """Send ``task`` to a worker hosting ``skill`` and await its outcome.

        The send is a PRODUCER span (``send orchestra.skill.<name>``) whose context travels
        with the task, so the worker's CONSUMER span is its child and the queue wait shows.
        """
        await self._ensure_started()
        s = self.settings
        task_id = uuid.uuid4().hex
        queue = queue_for(skill.name)
        loop = asyncio.get_running_loop()
        try:
            with tracing.publish_span(
                queue,
                message_id=task_id,
                run_id=task.run_id,
                step_id=task.step_id,
                skill=skill.name,
            ) as span:
                if span.is_recording():
                    task = task.model_copy(update={"trace_context": tracing.inject_context()})
                env = StepEnvelope(
                    task=task,
                    reply_to=self.driver_id,
                    epoch=self._epochs.get(task.run_id, 0),
                    sent_at=time.time(),
                )
                try:
                    payload = env.model_dump(mode="json")
                except PydanticSerializationError as exc:
                    return _failure(task, f"arguments of step {task.step_id!r} are not JSON: {exc}")
                now = time.monotonic()
                pending = _Pending(
                    future=loop.create_future(),
                    task=task,
                    skill=skill,
                    sent=now,
                    read_at=now,
                    deadline=now
                    + task.timeout_s * (1 + s.max_redeliveries)
                    + s.visibility_timeout_s
                    + s.queue_wait_s,
                )
                self._pending[task_id] = pending
                await self._send(task_id, payload, queue)
            return await pending.future
        except asyncio.CancelledError:
            # the run no longer wants this step: withdraw it unless a worker has it already
            if self._redis is not None:
                withdraw = asyncio.ensure_future(self._withdraw(task_id, "the driver cancelled it"))
                self._background.add(withdraw)
                withdraw.add_done_callback(self._background.discard)
            raise
        finally:
            self._pending.pop(task_id, None)

    async def _send(self, task_id: str, payload: dict[str, Any], queue: str) -> None:
        """Publish one step; returns once it is on the broker (:class:`ExecutorError` if it
        cannot be).  Steps sent together (a fan-out) go out as one batch on the publishing
        thread, over one producer, rather than one thread hand-off each."""
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outbox.append((task_id, payload, queue, sent))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        await sent

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._outbox:
            batch, self._outbox = self._outbox, []
            # a step cancelled before it went out is not sent (execute withdraws it anyway)
            batch = [b for b in batch if not b[3].done()]
            assert self._publisher is not None
            try:
                errors = await loop.run_in_executor(
                    self._publisher, self._publish, [(t, p, q) for t, p, q, _ in batch]
                )
            except asyncio.CancelledError:  # closing: whether they went out is unknown
                for *_, sent in batch:
                    if not sent.done():
                        sent.set_exception(ExecutorError("the executor was closed"))
                raise
            for (*_, sent), error in zip(batch, errors, strict=True):
                if sent.done():
                    continue
                if error is None:
                    sent.set_result(None)
                else:
                    sent.set_exception(error)

    def _publish(self, batch: list[tuple[str, dict[str, Any], str]]) -> list[ExecutorError | None]:
        """Send ``batch`` over one producer (on the publishing thread); an error per step."""
        out: list[ExecutorError | None] = []

        def failed(payload: dict[str, Any], exc: Exception) -> ExecutorError:
            return ExecutorError(
                f"cannot send step {payload['task']['step_id']!r} to the broker at "
                f"{_safe(self.settings.broker_url)}: {type(exc).__name__}: {exc}"
            )

        try:
            with self.app.producer_or_acquire() as producer:
                for task_id, payload, queue in batch:
                    try:
                        self.app.send_task(
                            STEP_TASK,
                            args=[payload],
                            task_id=task_id,
                            queue=queue,
                            ignore_result=True,
                            producer=producer,
                        )
                    except Exception as exc:
                        out.append(failed(payload, exc))
                    else:
                        out.append(None)
        except Exception as exc:  # no producer (or it failed on release): the rest failed
            out += [failed(p, exc) for _, p, _ in batch[len(out) :]]
        return out

    async def _withdraw(self, task_id: str, reason: str) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            await self._cancel(
                keys=[store.task_key(task_id)], args=[reason, self.settings.result_ttl_s, "0"]
            )

    # ------------------------------------------------------------------ answers

    def _resolve(self, task_id: str, outcome: StepOutcome | BaseException) -> None:
        p = self._pending.get(task_id)
        if p is None or p.future.done():
            return
        if isinstance(outcome, BaseException):
            p.future.set_exception(outcome)
        else:
            p.future.set_result(outcome)

    def _answer(self, message: str) -> None:
        task_id, _, body = message.partition("\n")
        if task_id in self._pending:
            try:
                outcome = StepOutcome.model_validate_json(open_record(body))
            except SecretKeyError as exc:  # sealed by a worker whose key this driver lacks
                self._resolve(task_id, exc)
                return
            self._resolve(task_id, outcome)

    async def _listen(self) -> None:
        key = store.reply_key(self.driver_id)
        assert self._blpop is not None
        while not self._closing:
            try:
                item = await self._blpop.blpop([key], timeout=1)
            except (redis.RedisError, OSError) as exc:
                if self._closing:
                    return
                self._listen_failed_at = time.monotonic()
                self._trouble(exc)
                await asyncio.sleep(0.2)
                continue
            self._unreachable_since = None
            if item is None:
                continue
            self._answer(str(item[1]))
            if not any(not p.future.done() for p in self._pending.values()):
                continue  # nothing else in flight: no other reply to take
            # Replies come in bursts when many steps are in flight: take what else is waiting
            # in one round trip rather than one BLPOP each.
            try:
                rest = await self._drain(key)
            except (redis.RedisError, OSError) as exc:
                if self._closing:
                    return
                self._listen_failed_at = time.monotonic()
                self._trouble(exc)
                continue
            for message in rest:
                self._answer(str(message))

    async def _drain(self, key: str) -> list[Any]:
        """Pop up to ``_DRAIN`` replies waiting on ``key`` (atomically: LRANGE + LTRIM)."""
        assert self._blpop is not None
        async with self._blpop.pipeline(transaction=True) as pipe:
            pipe.lrange(key, 0, _DRAIN - 1)
            pipe.ltrim(key, _DRAIN, -1)
            got, _ = await pipe.execute()
        return list(got)

    def _trouble(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
            log.warning("fleet Redis unreachable", error=str(exc))
        elif now - self._unreachable_since > self.settings.unreachable_s:
            err = ExecutorError(
                f"the fleet's Redis at {_safe(self.settings.result_backend)} has been unreachable "
                f"for {self.settings.unreachable_s:g}s ({exc}); the steps in flight are unknown"
            )
            for task_id in list(self._pending):
                self._resolve(task_id, err)

    # ------------------------------------------------------------------ watchdog

    async def _watch(self) -> None:
        while not self._closing:
            await asyncio.sleep(_TICK_S)
            try:
                await self._check()
            except (redis.RedisError, OSError, ExecutorError) as exc:
                self._trouble(exc)
            except Exception:
                log.exception("fleet watchdog failed")

    async def _check(self) -> None:
        r = self._redis
        assert r is not None
        now = time.monotonic()
        marker = store.driver_key(self.driver_id)
        if now - self._marker_at > 5.0 or self._pending:
            if not await r.exists(marker):
                # Redis lost its data (restarted without persistence, or flushed): the tasks
                # of steps in flight may be gone.  Wait for what a worker may still finish.
                log.warning("fleet Redis lost its data; steps in flight may be lost")
                for p in self._pending.values():
                    if p.lost_deadline is None:
                        p.lost_deadline = now + p.task.timeout_s + 2 * _TICK_S + 1.0
            await r.set(marker, "1", ex=self.settings.result_ttl_s)
            self._marker_at = now
        old = [tid for tid, p in self._pending.items() if now - p.sent > _TICK_S]
        if not old:
            return
        serving: dict[str, list[Any]] | None = None
        if self.view is not None:
            try:
                serving = await self.view.serving()
            except ExecutorError:
                serving = None
        old = [tid for tid in old if tid in self._pending and self._to_read(tid, now, serving)]
        if not old:
            return
        pipe = r.pipeline(transaction=False)
        for tid in old:
            pipe.hmget(store.task_key(tid), "outcome", "started")
        states = await pipe.execute()
        for tid, (outcome, started) in zip(old, states, strict=True):
            if tid not in self._pending:
                continue
            p = self._pending[tid]
            p.read_at = now
            if outcome:
                self._resolve(tid, StepOutcome.model_validate_json(open_record(outcome)))
                continue
            t = p.task
            if p.lost_deadline is not None and now > p.lost_deadline:
                self._resolve(
                    tid,
                    ExecutorError(
                        f"Redis lost the task of step {t.step_id!r} ({t.skill}) while it was in "
                        f"flight (restarted without persistence?); whether it ran is unknown. "
                        f"Resume the run with `orchestra run --resume {t.run_id}`"
                    ),
                )
                continue
            if now > p.deadline:
                await self._give_up(
                    tid, f"no worker finished step {t.step_id!r} ({t.skill}) in time", force=True
                )
                continue
            if serving is None:
                continue
            hosts = {w.name for w in serving.get(t.skill, [])}
            if not started and not hosts:
                await self._give_up(
                    tid, f"no live worker serves {t.skill}; step {t.step_id!r} was withdrawn"
                )
            elif started and started not in hosts and not p.skill.idempotent:
                await self._give_up(
                    tid,
                    f"worker {started} was lost while running {t.skill} for step "
                    f"{t.step_id!r}; {t.skill} is not idempotent, so it is not run again (the "
                    f"lost call may or may not have taken effect)",
                    force=True,
                )

    def _to_read(self, task_id: str, now: float, serving: dict[str, list[Any]] | None) -> bool:
        """Whether this tick reads the stored state of step ``task_id``: when the watchdog
        may have to act on it (past its deadline, Redis lost its data, no live worker for
        its skill, a skill that is not idempotent), when its reply may have been lost on
        the way (reading replies failed since it was sent), and otherwise every
        ``_REREAD_S``.  With a thousand steps in flight, reading every one every tick would
        cost the driver as much as running them."""
        p = self._pending[task_id]
        if p.lost_deadline is not None or now > p.deadline or self._listen_failed_at >= p.sent:
            return True
        if now - p.read_at >= _REREAD_S:
            return True
        if serving is None:
            return False
        return not p.skill.idempotent or not serving.get(p.task.skill)

    async def _give_up(self, task_id: str, reason: str, *, force: bool = False) -> None:
        verdict, detail = await self._cancel(
            keys=[store.task_key(task_id)],
            args=[reason, self.settings.result_ttl_s, "1" if force else "0"],
        )
        p = self._pending.get(task_id)
        if p is None:
            return
        if verdict == "outcome":
            self._resolve(task_id, StepOutcome.model_validate_json(open_record(detail)))
        elif verdict == "cancelled":
            log.warning("step withdrawn", task_id=task_id, reason=reason)
            self._resolve(task_id, _failure(p.task, reason))

    # ------------------------------------------------------------------ durable runs

    async def recover(
        self, run_id: str, steps: Mapping[str, float]
    ) -> dict[str, tuple[str, StepOutcome]]:
        """Take over run ``run_id`` from a driver that stopped: what did its steps become?

        ``steps`` maps each step not yet recorded as done to its timeout.  From now on tasks
        the old driver sent but no worker started are dropped (the run's epoch is bumped);
        steps a worker is still running are awaited (up to their timeout); steps that a
        worker completed are returned as ``{step: (skill, outcome)}`` so that they are
        recorded without running again.
        """
        r = await self._ensure_started()
        try:
            token = self._epochs.get(run_id)
            if token is None:
                epoch = int(await r.incr(store.epoch_key(run_id)))
            else:  # the run lease's fencing token: tasks sent under an older one are dropped
                epoch = int(
                    await r.eval(_RAISE_EPOCH, 1, store.epoch_key(run_id), token)  # type: ignore[misc]
                )
            await r.expire(store.epoch_key(run_id), self.settings.result_ttl_s)
        except (redis.RedisError, OSError) as exc:
            raise ExecutorError(f"cannot reach the fleet's result store: {exc}") from exc
        self._epochs[run_id] = epoch
        names = list(steps)
        deadline = time.monotonic() + max(steps.values(), default=0.0) + 2.0
        found: dict[str, tuple[str, StepOutcome]] = {}
        running: dict[str, str] = {}
        while names:
            pipe = r.pipeline(transaction=False)
            for s in names:
                pipe.hmget(store.step_key(run_id, s), "done_skill", "done_outcome", "running")
            found, running = {}, {}
            for s, (skill, outcome, run) in zip(names, await pipe.execute(), strict=True):
                if skill and outcome:
                    found[s] = (skill, StepOutcome.model_validate_json(open_record(outcome)))
                elif run:
                    running[s] = run
            if not running or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        import json

        for s, run in running.items():
            task_id = json.loads(run)["task_id"]
            await self._cancel(
                keys=[store.task_key(task_id)],
                args=[f"abandoned when run {run_id} was resumed", self.settings.result_ttl_s, "1"],
            )
            log.warning("step abandoned on resume", run_id=run_id, step=s, task_id=task_id)
        return found
