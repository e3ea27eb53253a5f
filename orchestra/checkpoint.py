"""Durable runs: a run's :class:`~orchestra.results.RunState` saved after every step.

The runtime calls :meth:`Checkpointer.save` after each step (and when a run starts and
ends), so a run whose driver died continues from its last state without re-running
completed steps (``orchestra run --resume RUN_ID``), and an escalated run continues once a
human answers (``orchestra resume RUN_ID --answer ...``).

:class:`SaverCheckpointer` stores states through a LangGraph checkpoint saver, one thread per
run.  A save writes only what changed since the previous one (the new step records and
decisions, the attempts that changed, the run's small fields) as a LangGraph *pending write*
on the run's latest checkpoint, so a run of N steps stores O(N) bytes, not O(N²).  Once the
deltas on a checkpoint add up to the size of the state, or the run's status changes (the
checkpoint's metadata shows it, readable without the key of a sealed run), the next save
writes the whole state as a new checkpoint (its parent the previous one) and deltas start
again from it: the total stays within a small multiple of the final state.  :meth:`~SaverCheckpointer.load` reads the
latest checkpoint and applies its deltas in order.  With ``ORCHESTRA_SECRET_KEY`` set, each
state and each delta is sealed (Fernet, see :mod:`orchestra.secrets`) before the saver sees
it.  :func:`open_checkpointer` picks the saver from a URL:

==================================  =================================================
URL                                 saver
==================================  =================================================
``sqlite:///.orchestra/runs.sqlite``  ``AsyncSqliteSaver`` (the embedded default; WAL)
``sqlite:///:memory:``              ``AsyncSqliteSaver`` in memory
``postgresql://user@host/db``       ``AsyncPostgresSaver`` (for fleets: every driver
                                    machine sees the same runs)
``memory://``                       LangGraph's ``InMemorySaver`` (tests)
``none`` (or empty)                 no checkpointing
==================================  =================================================

Old runs are removed by :meth:`~SaverCheckpointer.prune` (``orchestra runs prune``), and,
for finished runs, by the ``retention`` setting (``ORCHESTRA_RETENTION``, e.g. ``30d``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from orchestra.errors import ConfigError, SecretKeyError
from orchestra.logs import get_logger
from orchestra.redact import redact_text
from orchestra.results import Decision, RunState, StepRecord
from orchestra.secrets import open_record, seal_record

__all__ = ["Checkpointer", "SaverCheckpointer", "open_checkpointer"]

log = get_logger("orchestra.checkpoint")

_SETUP_LOCK = 0x4F52_4348_5354  # a PostgreSQL advisory lock key: "ORCHST"
_CHANNEL = "run"
_NS = ""


@runtime_checkable
class Checkpointer(Protocol):
    """Saves and loads run states."""

    async def save(self, state: RunState) -> None:
        """Save ``state`` as the latest state of its run."""
        ...

    async def load(self, run_id: str) -> RunState | None:
        """The latest saved state of ``run_id``, or ``None``."""
        ...

    async def list_runs(self, limit: int = 20) -> list[RunState]:
        """The latest state of the ``limit`` most recently saved runs, newest first."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class SaverCheckpointer:
    """A :class:`Checkpointer` over a LangGraph ``BaseCheckpointSaver``.

    Give it a ``url`` (opened lazily, on the event loop of the first call) or a ready
    ``saver``.  Each run is a LangGraph thread (``thread_id`` = run id).  A checkpoint holds
    the whole state as JSON in its one channel, ``run``; the saves after it are pending
    writes on it, channel ``delta``, each the JSON of what changed (see the module doc).
    ``retention_s`` (the ``retention`` setting): when the store is first opened, finished
    runs (completed or demoted) idle for longer are removed.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        saver: Any = None,
        retention_s: float | None = None,
        compact_bytes: int = 1 << 20,
    ):
        if url is None and saver is None:
            raise ConfigError("give a checkpoint URL or a saver", field="checkpoint_url")
        self.url = url
        self.retention_s = retention_s
        self.compact_bytes = compact_bytes
        self._saver = saver
        self._stack: contextlib.AsyncExitStack | None = None
        self._last: dict[str, _Saved] = {}  # run id -> what was last saved of it
        self._retained = False
        self._retention: asyncio.Future[None] | None = None
        self._opening: asyncio.Lock | None = None

    async def _open(self) -> Any:
        if self._saver is not None:
            return self._saver
        # many runs of one driver (or submits of one service) may open it at once: once
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._saver is not None:
                return self._saver
            return await self._open_now()

    async def _open_now(self) -> Any:
        assert self.url is not None
        url = self.url
        stack = contextlib.AsyncExitStack()
        saver: Any
        try:
            if url.startswith("sqlite:///"):
                from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

                path = url.removeprefix("sqlite:///")
                if path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                saver = await stack.enter_async_context(AsyncSqliteSaver.from_conn_string(path))
                await saver.setup()
                await saver.conn.execute("PRAGMA synchronous=NORMAL")
            elif url.startswith(("postgresql://", "postgres://")):
                try:
                    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
                except ImportError as exc:
                    from orchestra.errors import install_hint

                    raise ConfigError(
                        f"a postgresql:// checkpoint URL needs the fleet extra: "
                        f"{install_hint('fleet')}",
                        field="checkpoint_url",
                    ) from exc
                saver = await stack.enter_async_context(AsyncPostgresSaver.from_conn_string(url))
                # Drivers, workers and submitters may open a fresh database at once; its
                # migrations (CREATE TABLE ...) must run one process at a time.
                # (Polled: a session blocked on the lock would hold a snapshot that the
                # migrations' CREATE INDEX CONCURRENTLY waits for, a deadlock.)
                while True:
                    cur = await saver.conn.execute(
                        "SELECT pg_try_advisory_lock(%s) AS taken", (_SETUP_LOCK,)
                    )
                    row = await cur.fetchone()  # a dict: the saver's connection uses dict rows
                    if row and row["taken"]:
                        break
                    await asyncio.sleep(0.05)
                try:
                    await saver.setup()
                finally:
                    await saver.conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))
                # A commit need not wait for Postgres's disk flush: a driver that dies loses
                # nothing (the server has the row), only a Postgres crash could lose the last
                # few hundred milliseconds, and a fleet run recovers those steps from Redis.
                await saver.conn.execute("SET synchronous_commit TO OFF")
            elif url == "memory://":
                from langgraph.checkpoint.memory import InMemorySaver

                saver = InMemorySaver()
            else:
                raise ConfigError(
                    f"unsupported checkpoint URL {url!r} (use sqlite:///PATH, "
                    f"postgresql://..., memory:// or none)",
                    field="checkpoint_url",
                )
        except ConfigError:
            await stack.aclose()
            raise
        except Exception as exc:
            await stack.aclose()
            raise ConfigError(
                f"cannot open the checkpoint store {redact_text(url)}: {exc}",
                field="checkpoint_url",
            ) from exc
        self._saver, self._stack = saver, stack
        return saver

    @staticmethod
    def _config(run_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
        conf: dict[str, Any] = {"thread_id": run_id, "checkpoint_ns": _NS}
        if checkpoint_id is not None:
            conf["checkpoint_id"] = checkpoint_id
        return {"configurable": conf}

    async def _store(self) -> Any:
        saver = await self._open()
        if self.retention_s is not None and not self._retained:
            self._retained = True
            # in the background: a run never waits for (nor fails with) the clean-up
            self._retention = asyncio.ensure_future(self._retain(self.retention_s))
        return saver

    async def _retain(self, older_than_s: float) -> None:
        try:
            gone = await self.prune(older_than_s=older_than_s, statuses=("completed", "demoted"))
        except Exception as exc:
            log.warning("checkpoint.retention_failed", error=str(exc)[:300])
        else:
            if gone:
                log.info("checkpoint.retention", removed=len(gone))

    async def save(self, state: RunState) -> None:
        saver = await self._store()
        last = self._last.get(state.run_id)
        delta = None if last is None else last.delta(state)
        if (
            delta is None
            or last is None
            or state.status != last.status  # the checkpoint's metadata shows the status
            or last.delta_bytes > max(4 * last.base_bytes, self.compact_bytes)
        ):
            await self._save_whole(saver, state, last)
            return
        text = json.dumps(delta, separators=(",", ":"))
        last.seq += 1
        await saver.aput_writes(
            self._config(state.run_id, last.checkpoint_id),
            [(_DELTA, seal_record(text))],
            task_id=f"{last.seq:010d}",
        )
        last.delta_bytes += len(text)
        last.remember(state)

    async def _save_whole(self, saver: Any, state: RunState, last: _Saved | None) -> None:
        from langgraph.checkpoint.base import empty_checkpoint

        prev_id, prev_version = (last.checkpoint_id, last.version) if last else (None, None)
        if prev_id is None:
            # a run resumed by a new process: chain onto what is stored
            tup = await saver.aget_tuple(self._config(state.run_id))
            if tup is not None:
                prev_id = tup.config["configurable"]["checkpoint_id"]
                prev_version = tup.checkpoint["channel_versions"].get(_CHANNEL)
        version = saver.get_next_version(prev_version, None)
        raw = state.model_dump_json()
        cp = empty_checkpoint()
        cp["channel_values"] = {_CHANNEL: seal_record(raw)}
        cp["channel_versions"] = {_CHANNEL: version}
        metadata: dict[str, Any] = {
            "source": "orchestra",
            "step": len(state.completed),
            "run_id": state.run_id,
            "graph": state.graph,
            "status": state.status,
            "saved_at": time.time(),
        }
        new = await saver.aput(
            self._config(state.run_id, prev_id), cp, metadata, {_CHANNEL: version}
        )
        saved = _Saved(new["configurable"]["checkpoint_id"], version, base_bytes=len(raw))
        saved.remember(state)
        self._last[state.run_id] = saved

    async def load(self, run_id: str) -> RunState | None:
        saver = await self._store()
        tup = await saver.aget_tuple(self._config(run_id))
        if tup is None:
            return None
        found = _read(tup)
        if found is None:
            return None
        state, seq, delta_bytes, _ = found
        if run_id in self._last:
            return state  # this checkpointer is writing the run: its own record stays the base
        saved = _Saved(
            tup.config["configurable"]["checkpoint_id"],
            tup.checkpoint["channel_versions"].get(_CHANNEL),
            base_bytes=len(tup.checkpoint["channel_values"].get(_CHANNEL) or ""),
        )
        saved.seq, saved.delta_bytes = seq, delta_bytes
        saved.remember(state)
        self._last[run_id] = saved
        return state

    async def _latest(self, scan: int | None = None) -> list[tuple[float, RunState]]:
        """The latest state of the runs, with when each was last saved, newest first.

        Runs come from the store newest checkpoint first; ``scan`` bounds how many runs are
        read (a run's deltas may be newer than another run's checkpoint: the few read are
        sorted by their last save).  A checkpoint this version cannot read is skipped.
        """
        saver = await self._open()
        seen: set[str] = set()
        out: list[tuple[float, RunState]] = []
        gen = saver.alist(None, filter={"source": "orchestra"})
        async with contextlib.aclosing(gen):
            async for tup in gen:
                run_id = tup.config["configurable"]["thread_id"]
                if run_id in seen:
                    continue
                seen.add(run_id)
                try:
                    found = _read(tup)
                except SecretKeyError:  # sealed with a key this process lacks: its metadata
                    raw = tup.checkpoint["channel_values"].get(_CHANNEL)
                    meta = tup.metadata or {}
                    if raw is not None:
                        out.append((float(meta.get("saved_at") or 0.0), _listed(raw, meta, run_id)))
                    continue
                except ValueError as exc:  # not a state this version can read
                    log.warning("checkpoint.unreadable", run_id=run_id, error=str(exc)[:200])
                    continue
                if found is not None:
                    state, _, _, at = found
                    out.append((max(at, float(tup.metadata.get("saved_at") or 0.0)), state))
                if scan is not None and len(seen) >= scan:
                    break
        out.sort(key=lambda p: -p[0])
        return out

    async def list_runs(self, limit: int = 20) -> list[RunState]:
        await self._store()
        return [state for _, state in (await self._latest(scan=4 * limit + 50))[:limit]]

    async def prune(
        self,
        *,
        older_than_s: float | None = None,
        statuses: Iterable[str] | None = None,
        now: float | None = None,
    ) -> list[str]:
        """Remove the runs idle for more than ``older_than_s`` seconds and whose status is one
        of ``statuses`` (any, when ``None``); returns their ids.

        A run goes whole: every checkpoint and delta, then its lease and its effects journal
        (:func:`orchestra.lease.forget_run`), in that order, so that a prune cut short never
        leaves a resumable run without its journal.  A run a driver holds the lease of now
        is live and kept, whatever its saved status says.  Which statuses are safe to name is
        the caller's call: an escalated run may wait on a human for a call of unknown outcome
        (``orchestra runs prune`` and the ``retention`` setting name completed and demoted
        runs only, unless told otherwise).
        """
        from orchestra.lease import forget_run, live_holder

        saver = await self._open()
        url = self.url or "memory://"  # where the runtime keeps the lease (Runner._lease_url)
        keep_until = (now if now is not None else time.time()) - (older_than_s or 0.0)
        wanted = set(statuses) if statuses is not None else None
        gone: list[str] = []
        for at, state in await self._latest():
            if at > keep_until or (wanted is not None and state.status not in wanted):
                continue
            holder = await asyncio.to_thread(live_holder, url, state.run_id)
            if holder is not None:
                log.info("checkpoint.prune_skipped_live", run_id=state.run_id, holder=holder)
                continue
            await saver.adelete_thread(state.run_id)
            self._last.pop(state.run_id, None)
            await asyncio.to_thread(forget_run, url, state.run_id)
            gone.append(state.run_id)
        return gone

    async def aclose(self) -> None:
        if self._retention is not None:
            await self._retention  # never raises (see _retain)
            self._retention = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._saver = None


_DELTA = "delta"
# fields of a RunState that a delta carries as what was added or changed (they grow with
# the run), and those written only with the whole state (they never change); every other
# field is small and written whole in every delta
_GROWING = frozenset({"decisions", "completed", "attempts"})
_FIXED = frozenset({"run_id", "graph", "input", "origin"})
_HEAD = tuple(f for f in RunState.model_fields if f not in _GROWING | _FIXED)


class _Saved:
    """What was last saved of one run: its checkpoint, and enough to compute the next delta."""

    def __init__(self, checkpoint_id: str, version: Any, *, base_bytes: int):
        self.checkpoint_id = checkpoint_id
        self.version = version
        self.base_bytes = base_bytes
        self.seq = 0  # deltas written on this checkpoint
        self.delta_bytes = 0
        self.decisions = 0
        # the completed steps and the attempts as saved, in their order (dicts keep the order
        # of insertion: while a run only adds to them, what is new is what comes after)
        self.completed: list[str] = []
        self.attempt_keys: list[str] = []
        self.attempt_counts: list[int] = []
        self.fixed: tuple[Any, ...] = ()
        self.status = ""

    def remember(self, state: RunState) -> None:
        self.status = state.status
        self.decisions = len(state.decisions)
        self.completed = list(state.completed)
        self.attempt_keys = list(state.attempts)
        self.attempt_counts = list(state.attempts.values())
        self.fixed = (state.run_id, state.graph, state.input, state.origin)

    def delta(self, state: RunState) -> dict[str, Any] | None:
        """What changed since :meth:`remember`, or ``None`` when only a whole state will do
        (a step or decision was taken away, or a field deltas do not carry changed).

        Linear in the size of the state but at C speed (list comparisons): a run that only
        adds steps and attempts is told so by comparing what was saved with the same first
        entries now; anything else takes the general (set) path."""
        if (
            len(state.decisions) < self.decisions
            or (state.run_id, state.graph, state.input, state.origin) != self.fixed
        ):
            return None
        keys = list(state.completed)
        n = len(self.completed)
        if keys[:n] == self.completed:
            new = keys[n:]
        else:
            before = set(self.completed)
            if not state.completed.keys() >= before:
                return None
            new = [k for k in keys if k not in before]
        akeys, counts = list(state.attempts), list(state.attempts.values())
        m = len(self.attempt_keys)
        removed: list[str] = []
        if akeys[:m] == self.attempt_keys and counts[:m] == self.attempt_counts:
            changed = dict(zip(akeys[m:], counts[m:], strict=True))
        else:
            old = dict(zip(self.attempt_keys, self.attempt_counts, strict=True))
            changed = dict(state.attempts.items() - old.items())
            removed = sorted(old.keys() - state.attempts.keys())
        out: dict[str, Any] = state.model_dump(mode="json", include=set(_HEAD))
        out["saved_at"] = time.time()
        if len(state.decisions) > self.decisions:
            out["decisions"] = [
                d.model_dump(mode="json", exclude_defaults=True)
                for d in state.decisions[self.decisions :]
            ]
        if new:
            out["completed"] = {s: state.completed[s].model_dump(mode="json") for s in new}
        if changed:
            out["attempts"] = changed
        if removed:
            out["attempts_removed"] = removed
        return out


def _read(tup: Any) -> tuple[RunState, int, int, float] | None:
    """The state a checkpoint tuple holds with its deltas applied; the number of deltas,
    their bytes, and when the last one was saved."""
    raw = tup.checkpoint["channel_values"].get(_CHANNEL)
    if raw is None:
        return None
    state = RunState.model_validate_json(open_record(raw))
    deltas = sorted((task, v) for task, ch, v in (tup.pending_writes or ()) if ch == _DELTA)
    size, at = 0, 0.0
    for _, sealed in deltas:
        text = open_record(sealed)
        size += len(text)
        d = json.loads(text)
        at = float(d.pop("saved_at", at))
        for item in d.pop("decisions", ()):
            state.decisions.append(Decision.model_validate(item))
        for step, rec in d.pop("completed", {}).items():
            state.completed[step] = StepRecord.model_validate(rec)
        state.attempts.update(d.pop("attempts", {}))
        for key in d.pop("attempts_removed", ()):
            state.attempts.pop(key, None)
        head = RunState.model_validate({"run_id": state.run_id, "graph": state.graph, **d})
        for name in _HEAD:
            if name in d:
                setattr(state, name, getattr(head, name))
    return state, len(deltas), size, at


def open_checkpointer(
    url: str | None = None, *, retention: str | None = None
) -> SaverCheckpointer | None:
    """The checkpointer for ``url`` (default: the ``checkpoint_url`` setting); ``None`` for none.

    ``retention`` (e.g. ``"30d"``, see :func:`orchestra.config.parse_duration`): finished runs
    idle for longer are removed when the store is first opened.  Nothing is opened until the
    first save or load.
    """
    from orchestra.config import parse_duration

    if url is None:
        from orchestra.config import get_settings

        url = get_settings().checkpoint_url
    if not url or url.lower() in ("none", "off", "false"):
        return None
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://", "memory://")):
        raise ConfigError(
            f"unsupported checkpoint URL {url!r} (use sqlite:///PATH, postgresql://..., "
            f"memory:// or none)",
            field="checkpoint_url",
        )
    return SaverCheckpointer(url, retention_s=parse_duration(retention, field="retention"))


def _listed(raw: Any, metadata: dict[str, Any], run_id: str) -> RunState:
    """A run as a listing shows it; one sealed with a key this process lacks (another team's,
    or an old key dropped from ``ORCHESTRA_SECRET_KEY``) is listed from its plain metadata
    instead of failing the whole listing."""
    from typing import get_args

    from orchestra.errors import SecretKeyError
    from orchestra.results import RunStatus

    try:
        return RunState.model_validate_json(open_record(raw))
    except SecretKeyError as exc:
        status = metadata.get("status")
        return RunState(
            run_id=run_id,
            graph=str(metadata.get("graph", "?")),
            status=status if status in get_args(RunStatus) else "running",
            reason=f"sealed: {exc}",
        )
