"""Durable runs: a run's :class:`~orchestra.results.RunState` saved after every step.

The runtime calls :meth:`Checkpointer.save` after each step (and when a run starts and
ends), so a run whose driver died continues from its last state without re-running
completed steps (``orchestra run --resume RUN_ID``), and an escalated run continues once a
human answers (``orchestra resume RUN_ID --answer ...``).

:class:`SaverCheckpointer` stores states through a LangGraph checkpoint saver, one thread per
run and one checkpoint per save (the history of a run stays inspectable with LangGraph's
own tools).  With ``ORCHESTRA_SECRET_KEY`` set, each state is sealed whole (Fernet, see
:mod:`orchestra.secrets`) before the saver sees it.  :func:`open_checkpointer` picks the
saver from a URL:

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
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from orchestra.errors import ConfigError
from orchestra.results import RunState
from orchestra.secrets import open_record, seal_record

__all__ = ["Checkpointer", "SaverCheckpointer", "open_checkpointer"]

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
    ``saver``.  Each run is a LangGraph thread (``thread_id`` = run id) with one channel,
    ``run``, holding the state as JSON; each save is a new checkpoint whose parent is the
    previous one.
    """

    def __init__(self, url: str | None = None, *, saver: Any = None):
        if url is None and saver is None:
            raise ConfigError("give a checkpoint URL or a saver", field="checkpoint_url")
        self.url = url
        self._saver = saver
        self._stack: contextlib.AsyncExitStack | None = None
        self._last: dict[str, tuple[str, Any]] = {}  # run id -> (checkpoint id, version)
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
                f"cannot open the checkpoint store {_redact(url)}: {exc}", field="checkpoint_url"
            ) from exc
        self._saver, self._stack = saver, stack
        return saver

    @staticmethod
    def _config(run_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
        conf: dict[str, Any] = {"thread_id": run_id, "checkpoint_ns": _NS}
        if checkpoint_id is not None:
            conf["checkpoint_id"] = checkpoint_id
        return {"configurable": conf}

    async def save(self, state: RunState) -> None:
        from langgraph.checkpoint.base import empty_checkpoint

        saver = await self._open()
        prev_id, prev_version = self._last.get(state.run_id, (None, None))
        if prev_id is None:
            # a run resumed by a new process: chain onto what is stored
            tup = await saver.aget_tuple(self._config(state.run_id))
            if tup is not None:
                prev_id = tup.config["configurable"]["checkpoint_id"]
                prev_version = tup.checkpoint["channel_versions"].get(_CHANNEL)
        version = saver.get_next_version(prev_version, None)
        cp = empty_checkpoint()
        cp["channel_values"] = {_CHANNEL: seal_record(state.model_dump_json())}
        cp["channel_versions"] = {_CHANNEL: version}
        metadata: dict[str, Any] = {
            "source": "orchestra",
            "step": len(state.completed),
            "run_id": state.run_id,
            "graph": state.graph,
            "status": state.status,
        }
        new = await saver.aput(
            self._config(state.run_id, prev_id), cp, metadata, {_CHANNEL: version}
        )
        self._last[state.run_id] = (new["configurable"]["checkpoint_id"], version)

    async def load(self, run_id: str) -> RunState | None:
        saver = await self._open()
        tup = await saver.aget_tuple(self._config(run_id))
        if tup is None:
            return None
        raw = tup.checkpoint["channel_values"].get(_CHANNEL)
        if raw is None:
            return None
        self._last[run_id] = (
            tup.config["configurable"]["checkpoint_id"],
            tup.checkpoint["channel_versions"].get(_CHANNEL),
        )
        return RunState.model_validate_json(open_record(raw))

    async def list_runs(self, limit: int = 20) -> list[RunState]:
        saver = await self._open()
        seen: set[str] = set()
        out: list[RunState] = []
        gen = saver.alist(None, filter={"source": "orchestra"})
        async with contextlib.aclosing(gen):
            async for tup in gen:
                run_id = tup.config["configurable"]["thread_id"]
                if run_id in seen:
                    continue
                seen.add(run_id)
                raw = tup.checkpoint["channel_values"].get(_CHANNEL)
                if raw is not None:
                    out.append(RunState.model_validate_json(open_record(raw)))
                if len(out) >= limit:
                    break
        return out

    async def aclose(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._saver = None


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return url


def open_checkpointer(url: str | None = None) -> SaverCheckpointer | None:
    """The checkpointer for ``url`` (default: the ``checkpoint_url`` setting); ``None`` for none.

    Nothing is opened until the first save or load.
    """
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
    return SaverCheckpointer(url)
