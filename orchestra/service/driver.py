"""The driver: runs taken from the ``orchestra.runs`` queue, driven on one event loop.

A driver worker (``orchestra worker --runs --graph FILE``) is a Celery worker on the thread
pool that consumes ``orchestra.runs``.  Its task does not run a run: it *places* it.  The task

1. waits for a free slot of this driver (``runs_concurrency``; the message stays unacked on
   the broker meanwhile, so a run that cannot be placed waits in the queue, ``queued``);
2. claims the run in Redis within the fleet-wide limits (``max_runs``, and a graph's
   ``max_runs`` in the registry); a run of a graph at its limit, or of a graph this driver
   does not register, goes back to the queue;
3. hands it to the driver's event loop, where one :class:`~orchestra.runtime.Runner` (steps
   on the fleet, one reply list) drives every run of the process concurrently, and returns:
   the message is acknowledged once the run is claimed.

From then on the run's durable record (its checkpoints) and the claim carry it, not the
broker: every driver publishes a heartbeat, and re-asserts the claims of its runs; when a
driver's heartbeat expires (SIGKILL, machine lost), the first surviving driver to notice
takes each of its runs (one atomic step, :data:`~orchestra.service.store.TAKE`) and queues it
again as a *takeover*: the driver that places it resumes it from its last checkpoint
(:meth:`Runner.resume`: steps a worker finished meanwhile are recorded, none is re-run).
A run dies with no driver only if every driver does; the next one to start takes them over.

Cancelling: the driver watches its runs' cancel requests; a cancelled run stops dispatching,
its steps that no worker started are withdrawn, those in flight are awaited and recorded
(:meth:`CeleryExecutor.recover`), and the run ends ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from orchestra.errors import (
    ConfigError,
    ExecutorError,
    LeaseLost,
    OrchestraError,
    RunInputError,
    RunLeaseHeld,
)
from orchestra.fleet.settings import FleetSettings
from orchestra.logs import get_logger
from orchestra.results import Decision, RunResult, RunState, StepRecord
from orchestra.service import store
from orchestra.service.client import TERMINAL, result_from_state
from orchestra.service.registry import GraphRegistry

__all__ = ["RunDriver", "current_driver", "install_driver", "register_run_task", "serve_driver"]

log = get_logger("orchestra.service.driver")

_current_run: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "orchestra_service_run", default=None
)
_MAX_ATTEMPTS = 3  # a run whose fleet failed under it is queued again this often


@dataclass
class _Active:
    run_id: str
    graph: str
    entry: str
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    handover: bool = False  # stopping: queue the run again for another driver
    superseded: bool = False  # another driver took the run over: let go of it
    inflight: dict[str, str] = field(default_factory=dict)  # step -> skill dispatched
    started: float = field(default_factory=time.monotonic)


class RunDriver:
    """Drives the runs this process claims (see the module doc)."""

    def __init__(
        self,
        settings: FleetSettings,
        registry: GraphRegistry,
        *,
        name: str,
        slots: int | None = None,
    ):
        self.settings = settings
        self.registry = registry
        self.name = name
        self.slots = slots or settings.runs_concurrency
        self._free = threading.BoundedSemaphore(self.slots)
        self._active: dict[str, _Active] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="orchestra-driver")
        self._events: asyncio.Queue[tuple[str, Any]] | None = None
        self._redis: Any = None
        self._scripts: dict[str, Any] = {}
        self._service: Any = None
        self.runner: Any = None
        self._background: list[asyncio.Task[None]] = []
        self._stopping = False
        self._not_service: set[str] = set()
        self._rescan_task: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the event loop thread, the runner, the heartbeat (blocks until ready)."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=60)

    async def _start(self) -> None:
        import redis.asyncio as aioredis

        from orchestra.fleet import fleet_runner
        from orchestra.service.client import RunService

        self._events = asyncio.Queue()
        self._redis = aioredis.Redis.from_url(
            self.settings.result_backend,
            socket_timeout=10.0,
            socket_connect_timeout=2.0,
            decode_responses=True,
        )
        for key, src in (("claim", store.CLAIM), ("release", store.RELEASE), ("take", store.TAKE)):
            self._scripts[key] = self._redis.register_script(src)
        self._service = RunService(self.settings, registry=self.registry)
        self.runner = fleet_runner(self.settings, on_decision=self._decided)
        await self._beat()
        self._background = [
            asyncio.ensure_future(self._heartbeat()),
            asyncio.ensure_future(self._flush()),
        ]

    def stop(self, drain_s: float | None = None) -> None:
        """Warm stop: wait up to ``drain_s`` for the runs; hand the rest back to the queue."""
        if not self._thread.is_alive():
            return
        drain_s = self.settings.drain_s if drain_s is None else drain_s
        fut = asyncio.run_coroutine_threadsafe(self._stop(drain_s), self._loop)
        with contextlib.suppress(Exception):
            fut.result(timeout=drain_s + 60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _stop(self, drain_s: float) -> None:
        self._stopping = True
        deadline = time.monotonic() + drain_s
        while self._active and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        for a in list(self._active.values()):
            a.handover = True
            if a.task is not None:
                a.task.cancel()
        for a in list(self._active.values()):
            if a.task is not None:
                with contextlib.suppress(BaseException):
                    await a.task
        await self._drain_events()
        for t in self._background:
            t.cancel()
        with contextlib.suppress(Exception):
            await self._redis.delete(store.driver_key(self.name))
        with contextlib.suppress(Exception):
            await self.runner.executor.aclose()
        if self.runner.checkpointer is not None:
            with contextlib.suppress(Exception):
                await self.runner.checkpointer.aclose()
        await self._service.aclose()
        await self._redis.aclose()

    # ------------------------------------------------------------------ placing (Celery thread)

    def handle(self, payload: Any) -> str:
        """Place one ``orchestra.run`` message (called on a Celery pool thread); returns why."""
        try:
            msg = store.RunMessage.model_validate(payload)
        except Exception as exc:
            log.error("invalid run message dropped", payload=repr(payload)[:500], error=str(exc))
            return "rejected"
        while not self._free.acquire(timeout=1.0):
            if self._stopping:
                from celery.exceptions import Reject

                raise Reject("the driver is stopping", requeue=True)
        try:
            verdict = asyncio.run_coroutine_threadsafe(self._claim(msg), self._loop).result()
        except BaseException:
            self._free.release()
            raise
        if verdict != "claimed":
            self._free.release()
        if verdict in ("full", "elsewhere"):
            time.sleep(0.5)  # back of the queue: another run (of another graph) may go first
            asyncio.run_coroutine_threadsafe(self._service.enqueue(msg), self._loop).result(
                timeout=60
            )
        log.info("run message", run_id=msg.run_id, verdict=verdict, driver=self.name)
        return verdict

    async def _claim(self, msg: store.RunMessage) -> str:
        if msg.graph not in self.registry:
            # another driver may know this graph: back to the queue, unless the run has ended
            state = await self.runner.checkpointer.load(msg.run_id)
            return "done" if state is None or state.status in TERMINAL else "elsewhere"
        entry = json.dumps({"driver": self.name, "graph": msg.graph, "since": time.time()})
        limit = self.registry.limit(msg.graph) or 0
        verdict, _ = await self._scripts["claim"](
            keys=[store.ACTIVE],
            args=[msg.run_id, entry, msg.graph, limit, self.settings.max_runs],
        )
        if verdict == "held":
            return "held"  # a duplicate message: another driver has the run
        if verdict == "full":
            return "full"
        a = _Active(msg.run_id, msg.graph, entry)
        self._active[msg.run_id] = a
        await self._redis.delete(_requeued_key(msg.run_id))  # a later loss is a new takeover
        a.task = asyncio.ensure_future(self._drive(msg, a))
        return "claimed"

    # ------------------------------------------------------------------ driving (event loop)

    async def _drive(self, msg: store.RunMessage, a: _Active) -> None:
        _current_run.set(msg.run_id)
        try:
            await self._drive_one(msg, a)
        except asyncio.CancelledError:
            if not (a.handover or a.superseded):
                raise
        except Exception as exc:
            # never leave a watcher waiting: the run ends escalated, saying why
            log.exception("driving a run failed", run_id=msg.run_id)
            with contextlib.suppress(Exception):
                state = await self.runner.checkpointer.load(msg.run_id)
                if state is not None and state.status not in TERMINAL:
                    await self._end(
                        await self._fail(state, f"the driver failed: {type(exc).__name__}: {exc}")
                    )
        finally:
            self._active.pop(msg.run_id, None)
            with contextlib.suppress(Exception):
                await self._scripts["release"](keys=[store.ACTIVE], args=[msg.run_id, self.name])
            if a.handover:
                # the next driver resumes it from its checkpoint (or, if it has ended since,
                # only reports how)
                self._event(
                    store.RunEvent(
                        type="takeover",
                        run_id=msg.run_id,
                        detail=f"driver {self.name} is stopping; the run is queued again",
                    )
                )
                with contextlib.suppress(Exception):
                    await self._service.enqueue(
                        store.RunMessage(run_id=msg.run_id, graph=msg.graph, takeover=True)
                    )
            self._free.release()

    async def _drive_one(self, msg: store.RunMessage, a: _Active) -> None:
        cp = self.runner.checkpointer
        state: RunState | None = await cp.load(msg.run_id)
        if state is None:
            log.error("no record of a queued run; dropped", run_id=msg.run_id)
            return
        if state.status in TERMINAL:
            if not await self._redis.exists(store.result_key(msg.run_id)):
                await self._end(result_from_state(state))
            return
        reason = await self._redis.get(store.cancel_key(msg.run_id))
        if reason:
            await self._end(await self._cancelled(state, reason, None))
            return
        name = state.origin.get("graph_name", msg.graph)
        try:
            graph = self.registry.get(name)
        except OrchestraError as exc:
            await self._end(await self._fail(state, f"{exc}"))
            return
        self._event(store.RunEvent(type="started", run_id=msg.run_id, detail=self.name))
        try:
            result = await self._run_leased(graph, state)
        except RunLeaseHeld as exc:
            # someone else drives it (a human's --resume, or a driver that only looked lost
            # and still renews its lease): theirs to finish
            log.warning("run driven elsewhere; let go", run_id=msg.run_id, holder=exc.holder)
            return
        except LeaseLost as exc:
            log.warning("lease lost: another driver has the run", run_id=msg.run_id, error=str(exc))
            return
        except asyncio.CancelledError:
            if a.cancel_reason is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            state = await cp.load(msg.run_id) or state
            await self._end(await self._cancelled(state, a.cancel_reason, graph))
            return
        except RunInputError as exc:
            await self._end(await self._fail(await cp.load(msg.run_id) or state, str(exc)))
            return
        except ExecutorError as exc:
            # the fleet failed under the run: it stays ``running`` in its checkpoint; queue it
            # again (the next driver resumes it) a few times, then escalate
            if msg.attempt + 1 >= _MAX_ATTEMPTS:
                await self._end(await self._fail(await cp.load(msg.run_id) or state, str(exc)))
                return
            log.warning("fleet failed under a run; queued again", run_id=msg.run_id, error=str(exc))
            await asyncio.sleep(2.0)
            a.handover = False
            await self._service.enqueue(
                store.RunMessage(
                    run_id=msg.run_id, graph=msg.graph, takeover=True, attempt=msg.attempt + 1
                )
            )
            return
        await self._end(result)

    async def _run_leased(self, graph: Any, state: RunState) -> RunResult:
        """Run or resume ``state``; while another driver holds its lease, wait for it to lapse.

        A driver that was taken over for silence (its heartbeat expired) may still hold the
        run's lease for up to its TTL: the lease expires unless it renews it, then this one
        takes the run (and the old one, if alive, stops at its next renewal: LeaseLost).
        """
        if state.status == "queued":
            await self._await_step_workers(graph)
        deadline = time.monotonic() + 4 * self.runner.lease_ttl_s
        while True:
            try:
                if state.status == "queued":
                    result: RunResult = await self.runner.run(
                        graph,
                        state.input,
                        run_id=state.run_id,
                        budget_usd=state.budget_usd,
                        origin=state.origin,
                    )
                else:
                    result = await self.runner.resume(graph, state)
                return result
            except RunLeaseHeld as exc:
                wait = exc.expires_at - time.time() + 0.25
                if time.monotonic() + wait > deadline:
                    raise
                await asyncio.sleep(max(0.25, wait))
                state = await self.runner.checkpointer.load(state.run_id) or state
                if state.status in TERMINAL:
                    return result_from_state(state)

    async def _await_step_workers(self, graph: Any) -> None:
        """Before a run starts, wait (up to ``queue_wait_s``) for a step worker of its graph.

        Drivers and step workers often start together (a deploy, a laptop): a run taken
        before any step worker is up would find every skill unserved and escalate at once.
        """
        view = getattr(self.runner.executor, "view", None)
        if view is None:
            return
        skills = {n for n in graph.skills if not graph.skills[n].milestone}
        deadline = time.monotonic() + self.settings.queue_wait_s
        while time.monotonic() < deadline:
            try:
                if skills & set(await view.serving()):
                    return
            except ExecutorError:
                pass
            await asyncio.sleep(0.5)

    async def _fail(self, state: RunState, reason: str) -> RunResult:
        """End a run that cannot go on (bad input, unknown graph) as escalated, saying why."""
        state.status, state.reason = "escalated", reason
        self._decide(state, kind="escalate", reason=reason)
        await self.runner.checkpointer.save(state)
        return result_from_state(state)

    async def _cancelled(self, state: RunState, reason: str, graph: Any) -> RunResult:
        """Record what the run's in-flight steps did, then end it ``cancelled``.

        Holds the run's lease while it writes (the run loop released it when it stopped).
        """
        from orchestra.lease import LeaseKeeper, default_holder

        url = getattr(self.runner.checkpointer, "url", None)
        keeper = await LeaseKeeper.acquire(url, state.run_id, default_holder(), 60.0)
        try:
            state = await self.runner.checkpointer.load(state.run_id) or state
            return await self._cancel_leased(state, reason, graph)
        finally:
            await keeper.release()

    async def _cancel_leased(self, state: RunState, reason: str, graph: Any) -> RunResult:
        recover = getattr(self.runner.executor, "recover", None)
        if graph is not None and recover is not None and state.status == "running":
            timeout = max((k.timeout_s for k in graph.skills.values()), default=10.0)
            todo = {st.id: timeout for st in graph.steps if st.id not in state.completed}
            found = await recover(state.run_id, todo)
            for step, (skill, outcome) in found.items():
                if step in state.completed:
                    continue
                state.completed[step] = StepRecord(
                    step=step,
                    skill=skill,
                    output=outcome.output or {},
                    duration_ms=outcome.duration_ms,
                    worker=outcome.worker,
                )
                state.spent_usd += outcome.cost_usd
                self._decide(
                    state,
                    kind="succeed",
                    reason=f"{skill} was in flight when the run was cancelled; it finished "
                    f"and is recorded",
                    step=step,
                    skill=skill,
                )
            # a call still unaccounted for is named, never dropped silently
            a = self._active.get(state.run_id)
            for step, skill in sorted((a.inflight if a is not None else {}).items()):
                if step in state.completed or skill not in graph.skills:
                    continue
                sk = graph.skills[skill]
                why = (
                    f"{skill} is not idempotent: whether it took effect is unknown; check "
                    f"before running the step again"
                    if not sk.idempotent
                    else "its outcome is not recorded"
                )
                self._decide(
                    state,
                    kind="note",
                    reason=f"{skill} was in flight for step {step} when the run was cancelled "
                    f"and has no recorded success; {why}",
                    step=step,
                    skill=skill,
                )
        state.status, state.reason = "cancelled", reason
        self._decide(state, kind="cancel", reason=reason)
        await self.runner.checkpointer.save(state)
        return result_from_state(state)

    async def _end(self, result: RunResult) -> None:
        self._event(("end", result))

    # ------------------------------------------------------------------ events

    def _decide(self, state: RunState, **decision: Any) -> None:
        """A decision the service takes for ``state`` itself: logged in the run, and sent."""
        d = Decision(**decision)
        state.decisions.append(d)
        self._decided(d, state.run_id)

    def _decided(self, d: Decision, run_id: str | None = None) -> None:
        rid = run_id or _current_run.get()
        if rid is None:
            return
        a = self._active.get(rid)
        if a is not None and d.step is not None:
            if d.kind == "execute" and d.skill:
                a.inflight[d.step] = d.skill
            elif d.kind in ("succeed", "fail"):
                a.inflight.pop(d.step, None)
        self._event(store.RunEvent(type="decision", run_id=rid, decision=d))

    def _event(self, item: store.RunEvent | tuple[str, RunResult]) -> None:
        assert self._events is not None
        if isinstance(item, store.RunEvent):
            self._events.put_nowait((item.run_id, item))
        else:
            self._events.put_nowait((item[1].run_id, item[1]))

    async def _flush(self) -> None:
        """Write events to the runs' streams in order, batched."""
        assert self._events is not None
        while True:
            batch = [await self._events.get()]
            while not self._events.empty() and len(batch) < 500:
                batch.append(self._events.get_nowait())
            try:
                await self._write(batch)
            except Exception as exc:
                log.warning("run events not written", error=str(exc), count=len(batch))

    async def _write(self, batch: list[tuple[str, Any]]) -> None:
        ttl = self.settings.result_ttl_s
        pipe = self._redis.pipeline(transaction=False)
        for run_id, item in batch:
            key = store.events_key(run_id)
            if isinstance(item, RunResult):
                pipe.set(store.result_key(run_id), item.model_dump_json(), ex=ttl)
                ev = store.RunEvent(type="end", run_id=run_id, status=item.status)
            else:
                ev = item
            pipe.xadd(key, ev.fields(), maxlen=store.EVENTS_MAX, approximate=True)
            pipe.expire(key, ttl)
        await pipe.execute()

    async def _drain_events(self) -> None:
        assert self._events is not None
        deadline = time.monotonic() + 10
        while not self._events.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ heartbeat, sweeping

    async def _heartbeat(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            beats += 1
            try:
                await self._beat()
                await self._check_cancels()
                await self._sweep()
                if beats % 5 == 1:
                    await self._revive()
            except Exception as exc:
                log.warning("driver heartbeat failed", driver=self.name, error=str(exc))

    async def _beat(self) -> None:
        r = self._redis
        pipe = r.pipeline(transaction=False)
        pipe.set(store.ALIVE, self.name, nx=True)
        pipe.set(store.driver_key(self.name), json.dumps({"runs": len(self._active)}),
                 px=int(self.settings.heartbeat_ttl_s * 1000))  # fmt: skip
        if self.registry.names():
            pipe.sadd(store.GRAPHS, *self.registry.names())
        runs = list(self._active.values())
        for a in runs:
            pipe.hsetnx(store.ACTIVE, a.run_id, a.entry)  # Redis may have lost it
        for a in runs:
            pipe.hget(store.ACTIVE, a.run_id)
        replies = await pipe.execute()
        if replies[0]:
            # this driver is the first to see this Redis: a new fleet, or Redis lost its data
            # (and with it the messages of queued runs): queue the service's open runs again
            self._rescan_task = asyncio.ensure_future(self._rescan())
        owners = replies[-len(runs) :] if runs else []
        for a, owner in zip(runs, owners, strict=True):
            if owner != a.entry and not a.superseded and a.task is not None:
                # taken over while this driver looked lost (a long pause): let go of it
                log.warning("run taken over by another driver; letting go", run_id=a.run_id)
                a.superseded = True
                a.task.cancel()

    async def _check_cancels(self) -> None:
        ids = [a.run_id for a in self._active.values() if a.cancel_reason is None]
        if not ids:
            return
        reasons = await self._redis.mget([store.cancel_key(i) for i in ids])
        for run_id, reason in zip(ids, reasons, strict=True):
            a = self._active.get(run_id)
            if reason and a is not None and a.task is not None:
                a.cancel_reason = reason
                a.task.cancel()

    async def _sweep(self) -> None:
        """Take the runs of drivers whose heartbeat expired, and queue them again."""
        r = self._redis
        active = await r.hgetall(store.ACTIVE)
        others = {
            run_id: (entry, json.loads(entry)["driver"])
            for run_id, entry in active.items()
            if json.loads(entry)["driver"] != self.name
        }
        if not others:
            return
        names = sorted({d for _, d in others.values()})
        alive = await r.mget([store.driver_key(n) for n in names])
        dead = {n for n, beat in zip(names, alive, strict=True) if beat is None}
        for run_id, (entry, driver) in others.items():
            if driver not in dead:
                continue
            if not await self._scripts["take"](keys=[store.ACTIVE], args=[run_id, entry]):
                continue  # another driver took it first
            await self._requeue(
                run_id,
                json.loads(entry)["graph"],
                f"driver {driver} was lost; {self.name} queued the run again",
            )

    async def _requeue(self, run_id: str, graph: str, why: str, *, count: bool = True) -> None:
        """Queue a lost run again as a takeover, once however many drivers noticed it."""
        once = _requeued_key(run_id)
        ttl = int(4 * self.runner.lease_ttl_s + 4 * self.settings.heartbeat_ttl_s)
        if not await self._redis.set(once, self.name, nx=True, ex=ttl):
            return  # queued again already; the claim of the driver that takes it clears this
        if await self._redis.hexists(store.ACTIVE, run_id):
            await self._redis.delete(once)  # claimed meanwhile: nothing was lost
            return
        if count:
            await self._redis.incr(store.TAKEOVERS)
        self._event(store.RunEvent(type="takeover", run_id=run_id, detail=why))
        await self._service.enqueue(store.RunMessage(run_id=run_id, graph=graph, takeover=True))
        log.warning("run taken over", run_id=run_id, why=why, by=self.name)

    async def _revive(self) -> None:
        """Queue again the service's runs whose lease lapsed while no driver claims them.

        The claims in Redis are the fast path; this one reads the durable lease table, so a
        run is not stranded when Redis lost its claims while its driver was dead too.
        """
        url = getattr(self.runner.checkpointer, "url", None)
        if not url:
            return
        from orchestra.durable import durable_store
        from orchestra.lease import dead_here

        grace = 2 * self.settings.heartbeat_ttl_s

        def lapsed() -> list[str]:
            with durable_store(url).transaction() as cur:
                rows = cur.execute(
                    "SELECT run_id, holder, expires_at FROM orchestra_run_leases "
                    "WHERE expires_at > 0"
                ).fetchall()
            now = time.time()
            return [str(r[0]) for r in rows if r[2] < now - grace or dead_here(str(r[1]))]

        ids = [i for i in await asyncio.to_thread(lapsed) if i not in self._not_service]
        if not ids:
            return
        claimed = await self._redis.hmget(store.ACTIVE, ids)
        for run_id, claim in zip(ids, claimed, strict=True):
            if claim is not None or run_id in self._active:
                continue
            state = await self.runner.checkpointer.load(run_id)
            if state is None or state.status in TERMINAL or not state.origin.get("service"):
                self._not_service.add(run_id)  # not ours to revive (e.g. `orchestra run`)
                continue
            await self._requeue(
                run_id,
                str(state.origin.get("graph_name", state.graph)),
                f"the run's lease lapsed and no driver claims it; {self.name} queued it again",
            )

    async def _rescan(self) -> None:
        """Queue again every open service run of the checkpoint store that no driver claims.

        Only runs submitted before this Redis was seen: a run submitted since has its message.
        """
        seen_at = time.time()
        try:
            states = await self.runner.checkpointer.list_runs(100_000)
        except Exception as exc:
            log.warning("cannot list runs to requeue them", error=str(exc))
            return
        held = await asyncio.to_thread(self._held_leases)
        for state in states:
            if state.status not in ("queued", "running") or not state.origin.get("service"):
                continue
            if state.status == "queued" and state.origin.get("submitted_at", 0) >= seen_at:
                continue
            if state.run_id in held or state.run_id in self._active:
                continue  # a live driver has it (its claim comes back with its next beat)
            if await self._redis.hexists(store.ACTIVE, state.run_id):
                continue
            await self._requeue(
                state.run_id,
                str(state.origin.get("graph_name", state.graph)),
                f"Redis was new to {self.name} (restarted or flushed); the run was queued again",
                count=False,
            )

    def _held_leases(self) -> set[str]:
        """Runs whose lease a driver holds now (from the lease table)."""
        url = getattr(self.runner.checkpointer, "url", None)
        if not url:
            return set()
        from orchestra.durable import durable_store
        from orchestra.lease import dead_here

        with durable_store(url).transaction() as cur:
            rows = cur.execute(
                "SELECT run_id, holder FROM orchestra_run_leases WHERE expires_at > ?",
                (time.time(),),
            ).fetchall()
        return {str(r[0]) for r in rows if not dead_here(str(r[1]))}


def _requeued_key(run_id: str) -> str:
    return f"orchestra:runs:requeued:{run_id}"


_DRIVER: RunDriver | None = None


def install_driver(driver: RunDriver) -> None:
    global _DRIVER
    _DRIVER = driver


def current_driver() -> RunDriver:
    if _DRIVER is None:
        raise ExecutorError(
            "this process is not a run driver: start it with `orchestra worker --runs`"
        )
    return _DRIVER


def _run_task(payload: Any) -> str:
    return current_driver().handle(payload)


def serve_driver(
    registry: GraphRegistry,
    *,
    settings: FleetSettings,
    name: str,
    concurrency: int | None = None,
    loglevel: str = "WARNING",
) -> None:
    """Run a driver worker (blocks): ``orchestra.runs`` on the thread pool, runs on one loop.

    SIGTERM stops it warmly: it stops taking runs, lets its runs go on for up to ``drain_s``
    (30 s) and queues the rest again for another driver, which resumes them.
    """
    from celery import signals

    from orchestra.fleet.app import create_app

    if not registry.names():
        raise ConfigError(
            "a run driver needs graphs to run: give --graph FILE or --registry FILE "
            "(or ORCHESTRA_GRAPHS)"
        )
    app = create_app(settings)
    app.conf.worker_hijack_root_logger = True
    register_run_task(app)
    driver = RunDriver(settings, registry, name=name, slots=concurrency)
    install_driver(driver)
    driver.start()

    def on_stopping(**_: Any) -> None:
        driver._stopping = True

    def on_shutdown(**_: Any) -> None:
        driver.stop()

    signals.worker_shutting_down.connect(on_stopping, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
    from orchestra import tracing

    setup = getattr(tracing, "setup_tracing", None)
    if setup is not None:
        setup(service_name="orchestra-driver")
    app.worker_main(
        argv=[
            "worker",
            *("--hostname", name, "--queues", store.RUNS_QUEUE),
            *("--pool", "threads", "--concurrency", "2", "--loglevel", loglevel),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


def register_run_task(app: Any) -> None:
    """Register ``orchestra.run`` (late acks: a message is acked once its run is claimed)."""
    app.task(
        name=store.RUN_TASK,
        ignore_result=True,
        acks_late=True,
        reject_on_worker_lost=True,
        typing=False,
        shared=False,
    )(_run_task)
