"""Fleet-wide health: circuits in Redis, worker heartbeats, per-worker skill status.

Everything lives in the health Redis (``health_url``)::

    orchestra:health                    hash  skill -> SkillHealth JSON (the circuits)
    orchestra:workers                   set   names of workers that sent a heartbeat
    orchestra:worker:<name>             str   the worker's heartbeat (JSON), expires after
                                              ``heartbeat_ttl_s`` unless renewed
    orchestra:failing:<name>:<skill>    str   why ``skill``'s probe fails on that worker;
                                              expires unless the probe keeps failing
    orchestra:gone:<name>               str   tombstone of a worker that shut down cleanly

* :class:`RedisHealthBoard` keeps the circuit breakers of :class:`HealthBoard` in Redis, so
  every driver opens and closes the same circuits.
* :class:`Heartbeat` runs in a worker: it renews the worker's heartbeat and runs the
  ``probe`` of each hosted skill that has one (:attr:`orchestra.skills.Skill.probe`): a
  probe runs where its skill runs, and its verdict is shared with every driver.
* :class:`FleetView` reads the live workers (one Lua round trip) and
  :class:`FleetHealthMonitor` turns that into routing signals: a skill with no live worker,
  or failing on every live worker that hosts it, is blocked before anything is sent.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from orchestra.errors import ExecutorError
from orchestra.logs import get_logger
from orchestra.monitors.base import MonitorContext, Priority, Signal
from orchestra.monitors.health import HealthBoard, SkillHealth, ToolHealthMonitor
from orchestra.redact import redact_text

__all__ = [
    "FleetHealthMonitor",
    "FleetView",
    "Heartbeat",
    "RedisHealthBoard",
    "WorkerInfo",
]

log = get_logger("orchestra.fleet.health")

HEALTH = "orchestra:health"
_WRITE_AFTER_S = 0.01  # a record put from an event loop is written this much later
WORKERS = "orchestra:workers"


def worker_key(name: str) -> str:
    return f"orchestra:worker:{name}"


def failing_key(worker: str, skill: str) -> str:
    return f"orchestra:failing:{worker}:{skill}"


def gone_key(name: str) -> str:
    return f"orchestra:gone:{name}"


# ---------------------------------------------------------------------------- circuits


class RedisHealthBoard(HealthBoard):
    """A :class:`HealthBoard` whose records live in Redis, shared by every driver.

    Writes go to Redis at once: from inside an event loop (a driver), without blocking it,
    by one writer task that sends what was put in the last 10 ms in one ``HSET`` (a fan-out
    records a thousand successes of one skill: a few writes, not a thousand blocking round
    trips; the latest record of a skill always wins); elsewhere with a blocking write.  A record put but not written yet is not read back from Redis over the
    newer copy in process.  Reads go to Redis unless this process read or wrote the
    record less than ``read_cache_s`` ago (one routing decision reads every record several
    times: once is enough); another driver's change is seen at most that much later.  A copy
    is kept in process so that, while Redis cannot be reached, the board goes on with what it
    last knew (and says so in the log) instead of failing the run.  Read-modify-write of one
    record is not atomic across drivers: two drivers recording at the same instant may lose
    one count, never a circuit opening for long (the next failure opens it).
    """

    def __init__(
        self, url: str, *, retry_after_s: float = 1.0, read_cache_s: float = 0.25, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.url = url
        self.read_cache_s = read_cache_s
        self._fresh: dict[str, float] = {}  # skill -> when last read from / written to Redis
        self._redis = redis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=0.5, decode_responses=True
        )
        self._retry_after_s = retry_after_s
        self._offline_until = 0.0
        # records put from an event loop, not yet written (skill -> JSON) / being written
        self._unwritten: dict[str, str] = {}
        self._writing: dict[str, str] = {}
        self._writer: asyncio.Task[None] | None = None
        self._aredis: tuple[asyncio.AbstractEventLoop, aioredis.Redis] | None = None

    def _online(self) -> bool:
        return time.monotonic() >= self._offline_until

    def _offline(self, exc: Exception) -> None:
        if self._offline_until == 0.0 or self._online():
            log.warning("health board unreachable; using the last known health", error=str(exc))
        self._offline_until = time.monotonic() + self._retry_after_s

    def _stale(self, skill: str, now: float) -> bool:
        if skill in self._unwritten or skill in self._writing:
            return False  # the copy in process is newer than Redis's
        return now - self._fresh.get(skill, -math.inf) >= self.read_cache_s

    def get(self, skill: str) -> SkillHealth:
        now = time.monotonic()
        if self._stale(skill, now) and self._online():
            try:
                raw = self._redis.hget(HEALTH, skill)
            except redis.RedisError as exc:
                self._offline(exc)
            else:
                rec = SkillHealth.model_validate_json(raw) if raw else SkillHealth()
                super().put(skill, rec)
                self._fresh[skill] = now
                return rec.model_copy()
        return super().get(skill)

    def put(self, skill: str, record: SkillHealth) -> None:
        super().put(skill, record)
        if not self._online():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_now({skill: record.model_dump_json()})
            return
        self._unwritten[skill] = record.model_dump_json()
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write(loop))

    def _write_now(self, records: dict[str, str]) -> None:
        """Write ``records`` (skill -> JSON) with a blocking round trip."""
        if not records:
            return
        try:
            self._redis.hset(HEALTH, mapping=_fields(records))
        except redis.RedisError as exc:
            self._offline(exc)
        else:
            now = time.monotonic()
            for k in records:
                self._fresh[k] = now

    async def _write(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write what was put, in order, until nothing is left (the writer task)."""
        if self._aredis is None or self._aredis[0] is not loop:
            client = aioredis.Redis.from_url(
                self.url, socket_timeout=1.0, socket_connect_timeout=0.5, decode_responses=True
            )
            self._aredis = (loop, client)
        client = self._aredis[1]
        try:
            while self._unwritten:
                # let the records of outcomes that came in together gather first
                await asyncio.sleep(_WRITE_AFTER_S)
                self._writing, self._unwritten = self._unwritten, {}
                try:
                    await client.hset(HEALTH, mapping=_fields(self._writing))
                except (redis.RedisError, OSError) as exc:
                    self._offline(exc)
                else:
                    now = time.monotonic()
                    for k in self._writing:
                        self._fresh[k] = now
                self._writing = {}
        except asyncio.CancelledError:
            # the event loop is closing: what is left is written the blocking way
            left, self._writing = {**self._writing, **self._unwritten}, {}
            self._unwritten = {}
            self._write_now(left)
            raise

    def snapshot(self, skills: Iterable[str]) -> dict[str, SkillHealth]:
        names = list(skills)
        now = time.monotonic()
        # only the stale records are read: the others (read lately, or put here and not
        # written yet) are as new in process as in Redis, or newer
        stale = [n for n in names if self._stale(n, now)]
        if stale and self._online():
            try:
                raws = self._redis.hmget(HEALTH, stale)
            except redis.RedisError as exc:
                self._offline(exc)
            else:
                for name, raw in zip(stale, raws, strict=True):
                    super().put(
                        name, SkillHealth.model_validate_json(raw) if raw else SkillHealth()
                    )
                    self._fresh[name] = now
        return super().snapshot(names)

    def changed_since(self, mark: int) -> set[str] | None:
        """Other drivers and workers change records in Redis unseen: always ``None``."""
        return None

    def records(self) -> dict[str, SkillHealth]:
        """Every record on the board (for ``orchestra fleet status``)."""
        try:
            raw = self._redis.hgetall(HEALTH)
        except redis.RedisError as exc:
            raise ExecutorError(f"health board at {_safe(self.url)} unreachable: {exc}") from exc
        return {str(k): SkillHealth.model_validate_json(v) for k, v in sorted(raw.items())}

    def reset(self, skills: Iterable[str] | None = None) -> list[str]:
        """Forget the records of ``skills`` (all when ``None``): circuits close, down lifts."""
        try:
            names = (
                list(skills) if skills is not None else [str(k) for k in self._redis.hkeys(HEALTH)]
            )
            if names:
                self._redis.hdel(HEALTH, *names)
        except redis.RedisError as exc:
            raise ExecutorError(f"health board at {_safe(self.url)} unreachable: {exc}") from exc
        with self._lock:
            for n in names:
                self._records.pop(n, None)
                self._fresh.pop(n, None)
                self._unwritten.pop(n, None)
        return names

    def close(self) -> None:
        self._write_now(self._unwritten)
        self._unwritten = {}
        self._redis.close()


def _fields(records: dict[str, str]) -> Mapping[Any, Any]:
    """``records`` as redis-py's ``hset(mapping=...)`` is typed."""
    return records


def _safe(url: str) -> str:
    """``url`` without its password."""
    return redact_text(url)


# ---------------------------------------------------------------------------- probes

ProbeFn = Callable[[], Any]


def _run_probe(fn: ProbeFn, timeout_s: float) -> str | None:
    """Run a skill's ``probe``: ``None`` when it passed, else why it failed.

    A probe (see :attr:`orchestra.skills.Skill.probe`) returns ``None`` (or ``True``) when
    the skill is available, and a reason (or ``False``) when it is not; raising fails it too.
    """
    try:
        value: Any = fn()
        if inspect.isawaitable(value):
            awaitable = value

            async def bounded() -> Any:
                return await asyncio.wait_for(awaitable, timeout_s)

            value = asyncio.run(bounded())
    except Exception as exc:
        return f"probe raised {type(exc).__name__}: {exc}"
    if value is None or value is True:
        return None
    return "probe failed" if value is False else str(value)


# ---------------------------------------------------------------------------- worker side


class Heartbeat:
    """A worker's heartbeat and probes, on a background thread.

    Every ``interval_s`` the worker's heartbeat (name, host, pid, skills, queues…) is renewed
    with a TTL of ``ttl_s``, and ``probes`` (skill name → the skill's probe) run; a failing
    probe marks the skill failing on this worker for ``ttl_s``.  :meth:`stop` removes the heartbeat and
    leaves a tombstone, so drivers stop routing to this worker at once.
    """

    def __init__(
        self,
        url: str,
        info: Mapping[str, Any],
        *,
        interval_s: float = 2.0,
        ttl_s: float = 6.0,
        probes: Mapping[str, ProbeFn] | None = None,
    ):
        self.name = str(info["name"])
        self.info = dict(info)
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.probes = dict(probes or {})
        self._redis = redis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=1.0, decode_responses=True
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def beat(self) -> None:
        """Renew the heartbeat once."""
        ttl_ms = int(self.ttl_s * 1000)
        payload = json.dumps({**self.info, "at": time.time()})
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(gone_key(self.name))
        pipe.sadd(WORKERS, self.name)
        pipe.set(worker_key(self.name), payload, px=ttl_ms)
        pipe.execute()

    def run_probes(self) -> None:
        """Run every probe once and publish what it says."""
        ttl_ms = int(self.ttl_s * 1000)
        for skill, fn in self.probes.items():
            why = _run_probe(fn, timeout_s=self.interval_s)
            key = failing_key(self.name, skill)
            if why is None:
                self._redis.delete(key)
            else:
                self._redis.set(key, why, px=ttl_ms)

    def start(self) -> None:
        self.beat()
        self._threads = [
            threading.Thread(target=self._loop, name="orchestra-heartbeat", daemon=True)
        ]
        if self.probes:
            self.run_probes()
            self._threads.append(
                threading.Thread(target=self._probe_loop, name="orchestra-probes", daemon=True)
            )
        for t in self._threads:
            t.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat failed", worker=self.name, error=str(exc))

    def _probe_loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_probes()
            except redis.RedisError as exc:
                log.warning("probe publication failed", worker=self.name, error=str(exc))

    def stop(self) -> None:
        """Stop beating, remove the heartbeat and leave a tombstone."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.interval_s + 1)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.srem(WORKERS, self.name)
            pipe.delete(worker_key(self.name))
            for skill in self.info.get("skills", []):
                pipe.delete(failing_key(self.name, skill))
            pipe.set(gone_key(self.name), "1", px=int(self.ttl_s * 1000) * 10)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not remove the heartbeat", worker=self.name, error=str(exc))
        self._redis.close()


def worker_info(
    name: str, *, skills: Iterable[str], queues: Iterable[str], concurrency: int, pool: str
) -> dict[str, Any]:
    """What a worker's heartbeat says about it."""
    return {
        "name": name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "skills": sorted(skills),
        "queues": sorted(queues),
        "concurrency": concurrency,
        "pool": pool,
        "started_at": time.time(),
    }


# ---------------------------------------------------------------------------- driver side


class WorkerInfo(BaseModel):
    """A live worker as its heartbeat describes it."""

    name: str
    host: str = ""
    pid: int = 0
    skills: list[str] = Field(default_factory=list)
    queues: list[str] = Field(default_factory=list)
    concurrency: int = 0
    pool: str = ""
    started_at: float = 0.0
    at: float = 0.0
    failing: dict[str, str] = Field(default_factory=dict)
    remembered: bool = False  # not in Redis now, but seen by this driver within the TTL


# KEYS: workers set; ARGV: names this driver remembers
_FLEET = """
local res = {}
for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local hb = redis.call('GET', 'orchestra:worker:' .. n)
  if hb then
    local fails = {}
    local ok, h = pcall(cjson.decode, hb)
    if ok and type(h) == 'table' and type(h.skills) == 'table' then
      for _, s in ipairs(h.skills) do
        local f = redis.call('GET', 'orchestra:failing:' .. n .. ':' .. s)
        if f then table.insert(fails, s); table.insert(fails, f) end
      end
    end
    table.insert(res, {n, hb, fails})
  else
    redis.call('SREM', KEYS[1], n)
  end
end
local gone = {}
for _, n in ipairs(ARGV) do
  if redis.call('EXISTS', 'orchestra:gone:' .. n) == 1 then table.insert(gone, n) end
end
return {res, gone}
"""


class FleetView:
    """The live workers of a fleet, as a driver sees them (async; cached ``cache_s``).

    A worker is live while its heartbeat has not expired.  A worker this view saw less than
    ``ttl_s`` ago stays live even if its heartbeat vanished (e.g. Redis restarted and lost
    it) unless it left a tombstone by shutting down cleanly: a heartbeat TTL means "dead after
    ``ttl_s`` of silence", whatever happened to Redis meanwhile.
    """

    def __init__(self, url: str, *, ttl_s: float = 6.0, cache_s: float = 0.2):
        self.url = url
        self.ttl_s = ttl_s
        self.cache_s = cache_s
        self._redis: aioredis.Redis | None = None
        self._script: Any = None
        self._cached: tuple[float, list[WorkerInfo]] | None = None
        self._seen: dict[str, tuple[float, WorkerInfo]] = {}
        self._lock: asyncio.Lock | None = None

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(
                self.url, socket_timeout=2.0, socket_connect_timeout=1.0, decode_responses=True
            )
            self._script = self._redis.register_script(_FLEET)
        return self._redis

    async def workers(self, *, fresh: bool = False) -> list[WorkerInfo]:
        """Live workers; raises :class:`ExecutorError` if Redis cannot be reached."""
        now = time.monotonic()
        if not fresh and self._cached is not None and now - self._cached[0] < self.cache_s:
            return self._cached[1]
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not fresh and self._cached is not None and now - self._cached[0] < self.cache_s:
                return self._cached[1]
            self._client()
            try:
                live_raw, gone = await self._script(keys=[WORKERS], args=list(self._seen))
            except (redis.RedisError, OSError) as exc:
                raise ExecutorError(
                    f"cannot read the fleet's heartbeats at {_safe(self.url)}: {exc}"
                ) from exc
            now = time.monotonic()
            live: dict[str, WorkerInfo] = {}
            for name, hb, fails in live_raw:
                try:
                    info = WorkerInfo.model_validate_json(hb)
                except ValueError:
                    continue
                info.failing = dict(zip(fails[::2], fails[1::2], strict=True))
                live[name] = info
                self._seen[name] = (now, info)
            for name in gone:
                self._seen.pop(name, None)
            out = list(live.values())
            for name, (seen_at, info) in list(self._seen.items()):
                if name in live:
                    continue
                if now - seen_at > self.ttl_s:
                    del self._seen[name]
                    continue
                out.append(info.model_copy(update={"remembered": True}))
            out.sort(key=lambda w: w.name)
            self._cached = (now, out)
            return out

    async def serving(self) -> dict[str, list[WorkerInfo]]:
        """Live workers by hosted skill."""
        by_skill: dict[str, list[WorkerInfo]] = {}
        for w in await self.workers():
            for s in w.skills:
                by_skill.setdefault(s, []).append(w)
        return by_skill

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


class FleetHealthMonitor(ToolHealthMonitor):
    """The tool-health monitor of a fleet: circuits (from the shared board) plus liveness.

    On top of :class:`ToolHealthMonitor`'s signals (the circuits, shared by every driver
    through :class:`RedisHealthBoard`, fed by the outcomes of calls), a skill that no live
    worker hosts, or whose probe fails on every live worker that hosts it, is blocked, so the
    route avoids it before any task is sent.
    """

    incremental = False  # liveness changes without a record changing: every round is whole

    def __init__(self, view: FleetView, **kwargs: Any):
        super().__init__(**kwargs)
        self.view = view

    async def check(self, ctx: MonitorContext) -> list[Signal]:
        signals = await super().check(ctx)
        blocked = {s.skill for s in signals if s.kind == "block"}
        try:
            serving = await self.view.serving()
        except ExecutorError as exc:
            return [
                *signals,
                Signal(monitor=self.name, kind="note", priority=Priority.LOW, reason=str(exc)),
            ]
        for sk in ctx.graph.skills_in_use():
            if sk.milestone or sk.name in blocked:
                continue
            workers = serving.get(sk.name, [])
            if not workers:
                signals.append(
                    Signal(
                        monitor=self.name,
                        kind="block",
                        priority=Priority.CRITICAL,
                        skill=sk.name,
                        reason=f"no live worker serves {sk.name}",
                    )
                )
            elif all(sk.name in w.failing for w in workers):
                why = "; ".join(f"{w.name}: {w.failing[sk.name]}" for w in workers)
                signals.append(
                    Signal(
                        monitor=self.name,
                        kind="block",
                        priority=Priority.HIGH,
                        skill=sk.name,
                        reason=f"{sk.name} failing on every worker ({why})",
                    )
                )
        return signals
