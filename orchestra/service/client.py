"""The client side of runs as a service: submit a run, then watch, cancel or await it.

::

    import orchestra

    handle = orchestra.submit("support-triage", {"ticket_id": "T-7"}, budget=0.50)
    print(handle.run_id)                       # the run is recorded and queued
    async for event in handle.events():        # the decision log, live
        print(event.decision)
    result = await handle.result(timeout=60)
    await handle.cancel()

:meth:`RunService.submit` saves the run's record (status ``queued``) in the checkpoint store
*before* it returns the id, then puts the run on the ``orchestra.runs`` queue; a driver
(``orchestra worker --runs``) takes it from there.  Events come from a Redis stream; the
result from the run's final checkpoint (and a copy in Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from orchestra.errors import ConfigError, ExecutorError, RunInputError
from orchestra.results import HUMAN, Decision, RunResult, RunState
from orchestra.service import store
from orchestra.service.registry import GraphRegistry, UnknownGraphError

if TYPE_CHECKING:
    from orchestra.config import Settings
    from orchestra.fleet.settings import FleetSettings
    from orchestra.graph import Graph

__all__ = ["TERMINAL", "RunHandle", "RunService", "asubmit", "result_from_state", "submit"]

TERMINAL = ("completed", "demoted", "escalated", "cancelled")


class RunService:
    """Submits runs and looks at them: the checkpoint store, Redis and the broker of a fleet.

    Open resources lazily, on the event loop of the first call; :meth:`aclose` releases them.
    ``registry`` (default: the ``graphs`` registry file, if set) lets :meth:`submit` check a
    run's input before it is queued.
    """

    def __init__(self, settings: Settings | None = None, *, registry: GraphRegistry | None = None):
        from orchestra.fleet.settings import fleet_settings

        self.settings: FleetSettings = fleet_settings(settings)
        if registry is None and self.settings.graphs:
            registry = GraphRegistry.from_sources(registry_file=self.settings.graphs)
        self.registry = registry
        self._store: Any = None
        self._redis: Any = None
        self._app: Any = None

    async def __aenter__(self) -> RunService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ resources

    def checkpointer(self) -> Any:
        if self._store is None:
            from orchestra.checkpoint import open_checkpointer

            self._store = open_checkpointer(self.settings.checkpoint_url)
            if self._store is None:
                raise ConfigError(
                    "runs as a service need a checkpoint store (the durable record of each "
                    "run): set ORCHESTRA_CHECKPOINT_URL (postgresql://... for a fleet)",
                    field="checkpoint_url",
                )
        return self._store

    def redis(self) -> Any:
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(
                self.settings.result_backend,
                socket_timeout=10.0,
                socket_connect_timeout=2.0,
                decode_responses=True,
            )
        return self._redis

    def celery(self) -> Any:
        if self._app is None:
            from orchestra.fleet.app import create_app

            self._app = create_app(self.settings)
        return self._app

    async def aclose(self) -> None:
        if self._store is not None:
            await self._store.aclose()
            self._store = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # ------------------------------------------------------------------ submitting

    async def graphs(self) -> list[str]:
        """Graph names a run may name: the local registry's and those drivers registered."""
        import redis

        names = set(self.registry.names()) if self.registry is not None else set()
        try:
            names |= set(await self.redis().smembers(store.GRAPHS))
        except (redis.RedisError, OSError) as exc:
            raise ExecutorError(f"cannot reach the fleet's Redis: {exc}") from exc
        return sorted(names)

    async def submit(
        self,
        graph: str | Graph,
        input: Mapping[str, Any] | BaseModel | None = None,
        *,
        budget: float | None = None,
        run_id: str | None = None,
    ) -> RunHandle:
        """Record a run of ``graph`` (a registered name, or a registered :class:`Graph`), queue it.

        The record is durable before this returns; the run starts when a driver has room.
        """
        name = graph if isinstance(graph, str) else graph.name
        if budget is not None and budget < 0:
            raise ConfigError("the budget must be >= 0 USD", field="budget")
        known = await self.graphs()
        if name not in known:
            raise UnknownGraphError(name, known)
        data = self._input(graph, input)
        rid = run_id or uuid.uuid4().hex[:12]
        cp = self.checkpointer()
        if await cp.load(rid) is not None:
            raise RunInputError(f"a run with id {rid!r} exists already")
        state = RunState(
            run_id=rid,
            graph=name,
            input=data,
            status="queued",
            budget_usd=budget,
            origin={"service": True, "graph_name": name, "submitted_at": time.time()},
        )
        await cp.save(state)
        await self.emit(store.RunEvent(type="queued", run_id=rid, status="queued"))
        try:
            await self.enqueue(store.RunMessage(run_id=rid, graph=name))
        except ExecutorError as exc:
            state.status, state.reason = "escalated", f"could not be queued: {exc}"
            await cp.save(state)
            raise
        return RunHandle(rid, self)

    def _input(
        self, graph: str | Graph, input: Mapping[str, Any] | BaseModel | None
    ) -> dict[str, Any]:
        if isinstance(input, BaseModel):
            return input.model_dump(mode="json")
        data = dict(input or {})
        g: Graph | None
        if isinstance(graph, str):
            g = self.registry.get(graph) if self.registry and graph in self.registry else None
        else:
            g = graph
        if g is not None and g.input_model is not None:
            from pydantic import ValidationError

            try:
                return g.input_model.model_validate(data).model_dump(mode="json")
            except ValidationError as exc:
                e = exc.errors()[0]
                raise RunInputError(
                    f"run input of graph {g.name!r}: {'.'.join(map(str, e['loc']))}: {e['msg']}"
                ) from exc
        import json

        try:
            json.dumps(data)
        except TypeError as exc:
            raise RunInputError(f"run input is not JSON: {exc}") from exc
        return data

    async def enqueue(self, message: store.RunMessage) -> None:
        """Put ``message`` on the ``orchestra.runs`` queue (from a thread: kombu blocks)."""
        app = self.celery()

        def publish() -> None:
            app.send_task(
                store.RUN_TASK,
                args=[message.model_dump(mode="json")],
                queue=store.RUNS_QUEUE,
                ignore_result=True,
            )

        try:
            await asyncio.to_thread(publish)
        except Exception as exc:
            raise ExecutorError(
                f"cannot queue run {message.run_id} on the broker: {type(exc).__name__}: {exc}"
            ) from exc

    async def emit(self, event: store.RunEvent) -> None:
        r = self.redis()
        key = store.events_key(event.run_id)
        pipe = r.pipeline(transaction=False)
        pipe.xadd(key, event.fields(), maxlen=store.EVENTS_MAX, approximate=True)
        pipe.expire(key, self.settings.result_ttl_s)
        await pipe.execute()

    # ------------------------------------------------------------------ looking

    def handle(self, run_id: str) -> RunHandle:
        return RunHandle(run_id, self)

    async def state(self, run_id: str) -> RunState:
        """The run's last checkpoint; :class:`RunInputError` if there is no such run."""
        state: RunState | None = await self.checkpointer().load(run_id)
        if state is None:
            raise RunInputError(f"no run {run_id!r}")
        return state

    async def list_runs(self, status: str | None = None, limit: int = 50) -> list[RunState]:
        """Recent runs, newest first; only those with ``status`` if given."""
        runs: list[RunState] = await self.checkpointer().list_runs(limit if not status else 10_000)
        if status:
            runs = [r for r in runs if r.status == status][:limit]
        return runs

    async def drivers(self) -> dict[str, str]:
        """Runs being driven now: run id -> driver name."""
        import json

        raw = await self.redis().hgetall(store.ACTIVE)
        return {k: json.loads(v)["driver"] for k, v in raw.items()}


class RunHandle:
    """A submitted run: its id, and ways to watch, await and cancel it."""

    def __init__(
        self,
        run_id: str,
        service: RunService | None = None,
        *,
        settings: Settings | None = None,
    ):
        self.run_id = run_id
        self._service = service
        self._settings = settings

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r})"

    @contextlib.asynccontextmanager
    async def _svc(self) -> AsyncIterator[RunService]:
        # a handle without a service (``orchestra.submit`` is sync and outlives its event
        # loop) opens and closes its own connections on every call
        if self._service is not None:
            yield self._service
            return
        svc = RunService(self._settings)
        try:
            yield svc
        finally:
            await svc.aclose()

    async def state(self) -> RunState:
        """The run's last checkpoint."""
        async with self._svc() as svc:
            return await svc.state(self.run_id)

    async def events(
        self, *, after: str = "0", follow: bool = True
    ) -> AsyncIterator[store.RunEvent]:
        """The run's events from the start (or after stream id ``after``), live.

        Ends after the run's ``end`` event (or, without ``follow``, when none is left).
        """
        async with self._svc() as svc:
            r = svc.redis()
            key = store.events_key(self.run_id)
            last = after
            while True:
                got = await r.xread({key: last}, count=500, block=1000 if follow else None)
                if not got:
                    if not follow:
                        return
                    # the stream may be gone (Redis lost it): the checkpoint still tells
                    state = await svc.checkpointer().load(self.run_id)
                    if state is None:
                        raise RunInputError(f"no run {self.run_id!r}")
                    if state.status in TERMINAL and not await r.exists(key):
                        yield store.RunEvent(type="end", run_id=self.run_id, status=state.status)
                        return
                    continue
                for _key, entries in got:
                    for entry_id, fields in entries:
                        last = entry_id
                        ev = store.RunEvent.from_entry(entry_id, fields)
                        yield ev
                        if ev.type == "end":
                            return

    async def result(self, timeout: float | None = None) -> RunResult:
        """Wait (up to ``timeout`` seconds) for the run to end; its :class:`RunResult`.

        Raises :class:`TimeoutError` if it has not ended by then.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        async with self._svc() as svc:
            r = svc.redis()
            while True:
                raw = await r.get(store.result_key(self.run_id))
                if raw:
                    return RunResult.model_validate_json(raw)
                state = await svc.state(self.run_id)
                if state.status in TERMINAL:
                    return result_from_state(state)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"run {self.run_id} has not ended within {timeout:g}s (it is {state.status})"
                    )
                # wake on the stream's next event, or re-check within a second
                last = await r.xrevrange(store.events_key(self.run_id), count=1)
                since = last[0][0] if last else "0"
                block = 1000 if left is None else max(1, min(1000, int(left * 1000)))
                await r.xread({store.events_key(self.run_id): since}, count=1, block=block)

    async def cancel(self, reason: str = "cancelled on request") -> str:
        """Ask the run to stop; returns what became of the request.

        A queued run is cancelled by its driver when one takes it; a running one stops
        dispatching, lets its in-flight steps finish (or withdraws those no worker started)
        and ends ``cancelled``.  A run that has ended already is left alone.
        """
        async with self._svc() as svc:
            state = await svc.state(self.run_id)
            if state.status in TERMINAL:
                return f"run {self.run_id} has already ended ({state.status})"
            r = svc.redis()
            await r.set(store.cancel_key(self.run_id), reason, ex=svc.settings.result_ttl_s)
            await svc.emit(
                store.RunEvent(type="cancel_requested", run_id=self.run_id, detail=reason)
            )
            if state.status == "queued" and not await r.hexists(store.ACTIVE, self.run_id):
                # no driver has it: cancel it here (a driver that claims it meanwhile sees the
                # request above, and one that takes its message later finds it ended)
                state.status, state.reason = "cancelled", reason
                state.decisions.append(Decision(kind="cancel", reason=reason))
                await svc.checkpointer().save(state)
                result = result_from_state(state)
                await r.set(
                    store.result_key(self.run_id),
                    result.model_dump_json(),
                    ex=svc.settings.result_ttl_s,
                )
                for ev in (
                    store.RunEvent(
                        type="decision", run_id=self.run_id, decision=state.decisions[-1]
                    ),
                    store.RunEvent(type="end", run_id=self.run_id, status="cancelled"),
                ):
                    await svc.emit(ev)
                return f"run {self.run_id} cancelled before a driver took it"
            return f"cancel requested for run {self.run_id} ({state.status})"


def result_from_state(state: RunState) -> RunResult:
    """A :class:`RunResult` rebuilt from a run's final checkpoint (step order: as decided)."""
    order: list[str] = []
    executed: set[str] = set()
    for d in state.decisions:
        if d.kind == "succeed" and d.step and d.step not in order:
            order.append(d.step)
        if d.kind == "execute" and d.skill:
            executed.add(d.skill)
    order += [s for s in state.completed if s not in order]
    recs = [state.completed[s] for s in order if s in state.completed]
    return RunResult(
        run_id=state.run_id,
        graph=state.graph,
        status=state.status,
        goal=state.goal,
        reason=state.reason,
        outputs={r.step: r.output for r in recs},
        chosen={r.step: r.skill for r in recs},
        path=[r.skill for r in recs if r.skill == HUMAN or r.skill in executed],
        decisions=list(state.decisions),
        spent_usd=state.spent_usd,
        llm_calls=state.llm_calls,
    )


async def asubmit(
    graph: str | Graph,
    input: Mapping[str, Any] | BaseModel | None = None,
    *,
    budget: float | None = None,
    run_id: str | None = None,
    settings: Settings | None = None,
) -> RunHandle:
    """:func:`submit` for async code."""
    svc = RunService(settings)
    try:
        handle = await svc.submit(graph, input, budget=budget, run_id=run_id)
    finally:
        await svc.aclose()
    return RunHandle(handle.run_id, settings=svc.settings)


def submit(
    graph: str | Graph,
    input: Mapping[str, Any] | BaseModel | None = None,
    *,
    budget: float | None = None,
    run_id: str | None = None,
    settings: Settings | None = None,
) -> RunHandle:
    """Submit a run of the registered graph ``graph``; returns once it is recorded and queued.

    From async code use :func:`asubmit` (or :meth:`RunService.submit`).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("orchestra.submit() blocks: inside an event loop, await asubmit()")
    return asyncio.run(asubmit(graph, input, budget=budget, run_id=run_id, settings=settings))
