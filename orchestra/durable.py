"""Small, durable tables next to the run checkpoints: the run lease and the effects journal.

They live in the same database as the checkpoints (``ORCHESTRA_CHECKPOINT_URL``), in tables of
their own, and are written with plain SQL, one short transaction per call, so that a row
committed here survives what Redis may lose:

=============================  ===============================================================
URL                            database
=============================  ===============================================================
``sqlite:///PATH``             the same SQLite file as the checkpoints (WAL, busy timeout 30 s)
``postgresql://...``           the same PostgreSQL database (``psycopg``, autocommit off)
``memory://``, ``none``, ``""``  one in-memory SQLite database per process (tests, embedded
                               runs without checkpoints: nothing outlives the process)
=============================  ===============================================================

Calls are synchronous (a few hundred microseconds on SQLite, a round trip on Postgres); async
code calls them through :func:`asyncio.to_thread`.  Each thread of each process keeps its own
connection.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestra.errors import ConfigError

__all__ = ["DurableStore", "durable_store"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS orchestra_run_leases (
        run_id TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        token BIGINT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS orchestra_effects (
        run_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        skill TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        token BIGINT NOT NULL,
        state TEXT NOT NULL,
        worker TEXT,
        outcome TEXT,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, step_id, skill, attempt, token)
    )""",
)


class DurableStore:
    """Runs short SQL transactions on the checkpoint database (see the module doc).

    SQL is written with ``?`` placeholders; they become ``%s`` on PostgreSQL.
    """

    def __init__(self, url: str | None):
        url = (url or "").strip()
        if not url or url.lower() in ("none", "off", "false") or url == "memory://":
            self.kind = "memory"
            self.target = ":memory:"
        elif url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            self.kind = "sqlite"
            if path == ":memory:":
                self.kind = "memory"
                self.target = ":memory:"
            else:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self.target = path
        elif url.startswith(("postgresql://", "postgres://")):
            self.kind = "postgres"
            self.target = url
        else:
            raise ConfigError(
                f"unsupported checkpoint URL {url!r} (use sqlite:///PATH, postgresql://..., "
                f"memory:// or none)",
                field="checkpoint_url",
            )
        self.url = url
        self._local = threading.local()
        self._keep: sqlite3.Connection | None = None  # the in-memory database's connection
        self._keep_pid = 0
        self._lock = threading.RLock()

    def _connect(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        if self.kind == "postgres":
            try:
                import psycopg
            except ImportError as exc:
                raise ConfigError(
                    "a postgresql:// checkpoint URL needs the fleet extra: "
                    "pip install 'orchestra[fleet]'",
                    field="checkpoint_url",
                ) from exc
            conn = psycopg.connect(self.target, connect_timeout=5, autocommit=True)
        elif self.kind == "memory":
            # one connection per process, used under a lock (threads take turns)
            with self._lock:
                if self._keep is None or self._keep_pid != os.getpid():
                    self._keep = sqlite3.connect(
                        ":memory:", isolation_level=None, check_same_thread=False
                    )
                    self._keep_pid = os.getpid()
                conn = self._keep
        else:
            conn = sqlite3.connect(
                self.target, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            # as the checkpoints: a commit survives the process, not a power cut
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
        self._local.conn, self._local.pid = conn, os.getpid()
        for attempt in range(3):
            try:
                with self.transaction() as cur:
                    for ddl in _SCHEMA:
                        cur.execute(ddl)
                break
            except Exception:  # two processes creating the tables at once (PostgreSQL)
                if attempt == 2:
                    raise
        return conn

    @contextmanager
    def transaction(self) -> Iterator[_Cursor]:
        """One transaction (``BEGIN IMMEDIATE`` on SQLite: writers queue, nobody deadlocks)."""
        conn = self._local.conn if getattr(self._local, "conn", None) is not None else None
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = self._connect()
        if self.kind == "postgres":
            with conn.transaction(), conn.cursor() as cur:
                yield _Cursor(cur, postgres=True)
            return
        lock = self._lock if self.kind == "memory" else contextlib.nullcontext()
        with lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield _Cursor(conn.cursor(), postgres=False)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn is not self._keep:
            conn.close()
        self._local.conn = None


class _Cursor:
    def __init__(self, cur: Any, *, postgres: bool):
        self._cur = cur
        self._pg = postgres

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        self._cur.execute(sql.replace("?", "%s") if self._pg else sql, tuple(params))
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cur.fetchone()
        return tuple(row) if row is not None else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._cur.fetchall()]

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)


_STORES: dict[tuple[int, str], DurableStore] = {}
_STORES_LOCK = threading.Lock()


def durable_store(url: str | None = None) -> DurableStore:
    """The :class:`DurableStore` of ``url`` (default: the ``checkpoint_url`` setting), shared
    by every caller of this process."""
    if url is None:
        from orchestra.config import get_settings

        url = get_settings().checkpoint_url
    key = (os.getpid(), url)
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = DurableStore(url)
        return store
