"""The run lease: one driver at a time per run, with a fencing token.

A driver (``orchestra run``, ``orchestra run --resume``, ``orchestra resume``, a service's
driver task) takes the lease of its run before it touches it, renews it while it drives, and
releases it at the end.  The lease lives in the checkpoint database
(:mod:`orchestra.durable`, table ``orchestra_run_leases``), not in Redis, so it is exactly as
durable as the checkpoints it guards::

    lease = acquire_lease(url, run_id, holder="host:pid:abc", ttl_s=15)   # or RunLeaseHeld
    lease.renew()        # every ttl/3; LeaseLost once another driver took the run over
    lease.release()

Every acquisition bumps the run's **fencing token**.  Writes on behalf of a run (the
intents of the effects journal, the workers' start records) name the token they were made
under, and are refused once a newer one exists: a driver that was paused past its lease
cannot act on a run another driver has taken over.

A lease is free when it is released, when it expired, or when its holder is a process of
this machine that no longer exists (a driver killed with SIGKILL: ``--resume`` need not
wait for its lease to run out).  Holders are ``host:pid:nonce`` (:func:`default_holder`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestra.durable import DurableStore, durable_store
from orchestra.errors import ConfigError, LeaseLost, RunLeaseHeld

__all__ = [
    "LeaseKeeper",
    "RunLease",
    "acquire_lease",
    "current_token",
    "dead_here",
    "default_holder",
    "forget_run",
    "live_holder",
]

_HOST = socket.gethostname()


def default_holder() -> str:
    """A holder name unique to this driver: ``host:pid:nonce``."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def dead_here(holder: str) -> bool:
    """Whether ``holder`` (``host:pid:…``: a lease's, or a worker's in the fleet's task
    leases) names a process of this machine that no longer exists."""
    host, _, rest = holder.partition(":")
    pid = rest.split(":", 1)[0]
    if host != _HOST or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class RunLease:
    """The lease of ``run_id`` held by ``holder`` under fencing ``token`` until ``expires_at``."""

    run_id: str
    holder: str
    token: int
    expires_at: float
    ttl_s: float
    store: DurableStore = field(repr=False)
    released: bool = False

    def renew(self) -> None:
        """Extend the lease by its TTL; :class:`LeaseLost` if another driver has taken it."""
        now = time.time()
        with self.store.transaction() as cur:
            cur.execute(
                "UPDATE orchestra_run_leases SET expires_at = ? "
                "WHERE run_id = ? AND token = ? AND holder = ?",
                (now + self.ttl_s, self.run_id, self.token, self.holder),
            )
            renewed = cur.rowcount == 1
            row = None
            if not renewed:
                row = cur.execute(
                    "SELECT holder, token FROM orchestra_run_leases WHERE run_id = ?",
                    (self.run_id,),
                ).fetchone()
        if not renewed:
            who = f"taken by {row[0]} (token {row[1]})" if row else "its row is gone"
            raise LeaseLost(self.run_id, self.holder, self.token, who)
        self.expires_at = now + self.ttl_s

    def check(self) -> None:
        """:class:`LeaseLost` unless this lease is still the run's current one."""
        row = None
        with self.store.transaction() as cur:
            row = cur.execute(
                "SELECT holder, token FROM orchestra_run_leases WHERE run_id = ?",
                (self.run_id,),
            ).fetchone()
        if row is None or int(row[1]) != self.token or row[0] != self.holder:
            who = f"taken by {row[0]} (token {row[1]})" if row else "its row is gone"
            raise LeaseLost(self.run_id, self.holder, self.token, who)

    def release(self) -> None:
        """Give the lease up (a no-op if it was already taken over or released)."""
        if self.released:
            return
        with self.store.transaction() as cur:
            cur.execute(
                "UPDATE orchestra_run_leases SET expires_at = 0 "
                "WHERE run_id = ? AND token = ? AND holder = ?",
                (self.run_id, self.token, self.holder),
            )
        self.released = True


def acquire_lease(url: str | None, run_id: str, holder: str, ttl_s: float) -> RunLease:
    """Take the lease of ``run_id`` for ``holder`` for ``ttl_s`` seconds, with a new token.

    ``url`` is the checkpoint URL (``None``: the ``checkpoint_url`` setting).  Raises
    :class:`~orchestra.errors.RunLeaseHeld`, naming the holder, while another driver holds it.
    """
    if ttl_s <= 0:
        raise ConfigError(f"a lease TTL must be positive, not {ttl_s!r}", field="lease_ttl_s")
    if not holder:
        raise ConfigError("a lease holder needs a name", field="holder")
    store = durable_store(url)
    now = time.time()
    with store.transaction() as cur:
        row = cur.execute(
            "SELECT holder, token, expires_at FROM orchestra_run_leases WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            token = 1
            try:
                cur.execute(
                    "INSERT INTO orchestra_run_leases (run_id, holder, token, expires_at) "
                    "VALUES (?, ?, ?, ?)",
                    (run_id, holder, token, now + ttl_s),
                )
            except Exception as exc:  # PostgreSQL: another driver inserted it first
                if "unique" not in str(exc).lower() and "UniqueViolation" not in repr(exc):
                    raise
                raise RunLeaseHeld(run_id, "another driver", now + ttl_s) from exc
        else:
            old_holder, old_token, expires_at = str(row[0]), int(row[1]), float(row[2])
            if expires_at > now and old_holder != holder and not dead_here(old_holder):
                raise RunLeaseHeld(run_id, old_holder, expires_at)
            token = old_token + 1
            cur.execute(
                "UPDATE orchestra_run_leases SET holder = ?, token = ?, expires_at = ? "
                "WHERE run_id = ? AND token = ?",
                (holder, token, now + ttl_s, run_id, old_token),
            )
            if cur.rowcount != 1:  # PostgreSQL read committed: another driver won the race
                raise RunLeaseHeld(run_id, "another driver", now + ttl_s)
    return RunLease(run_id, holder, token, now + ttl_s, ttl_s, store)


def current_token(url: str | None, run_id: str) -> int | None:
    """The fencing token of ``run_id``'s latest lease (``None``: never leased)."""
    with durable_store(url).transaction() as cur:
        row = cur.execute(
            "SELECT token FROM orchestra_run_leases WHERE run_id = ?", (run_id,)
        ).fetchone()
    return None if row is None else int(row[0])


def live_holder(url: str | None, run_id: str) -> str | None:
    """Who drives ``run_id`` now: the holder of its lease while the lease is unexpired and its
    holder is not a dead process of this machine; ``None`` when no driver has the run."""
    with durable_store(url).transaction() as cur:
        row = cur.execute(
            "SELECT holder, expires_at FROM orchestra_run_leases WHERE run_id = ?", (run_id,)
        ).fetchone()
    if row is None or float(row[1]) <= time.time() or dead_here(str(row[0])):
        return None
    return str(row[0])


def forget_run(url: str | None, run_id: str) -> int:
    """Delete ``run_id``'s lease and its effects journal (the run was pruned: nothing will
    drive it again, and rows left behind would only grow the tables); returns the rows gone.

    Only for a run whose checkpoints are gone: without them the journal is what stops a
    call that may have taken effect from running again.
    """
    with durable_store(url).transaction() as cur:
        cur.execute("DELETE FROM orchestra_effects WHERE run_id = ?", (run_id,))
        gone = cur.rowcount
        cur.execute("DELETE FROM orchestra_run_leases WHERE run_id = ?", (run_id,))
        return gone + cur.rowcount


class LeaseKeeper:
    """Holds a :class:`RunLease` for a driver's event loop: renews it every third of its
    TTL in the background and remembers when it was lost (``lost``), calling ``on_lost``."""

    def __init__(self, lease: RunLease, on_lost: Callable[[LeaseLost], None] | None = None):
        self.lease = lease
        self.lost: LeaseLost | None = None
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def acquire(cls, url: str | None, run_id: str, holder: str, ttl_s: float) -> LeaseKeeper:
        lease = await asyncio.to_thread(acquire_lease, url, run_id, holder, ttl_s)
        return cls(lease)

    def start(self, on_lost: Callable[[LeaseLost], None] | None = None) -> None:
        self._on_lost = on_lost or self._on_lost
        if self._task is None:
            self._task = asyncio.ensure_future(self._renew_forever())

    async def _renew_forever(self) -> None:
        while self.lost is None:
            await asyncio.sleep(self.lease.ttl_s / 3)
            try:
                await asyncio.to_thread(self.lease.renew)
            except LeaseLost as exc:
                self._lose(exc)
            except Exception:  # the database hiccupped: try again; ensure() fences writes
                continue

    def _lose(self, exc: LeaseLost) -> None:
        if self.lost is None:
            self.lost = exc
            if self._on_lost is not None:
                self._on_lost(exc)

    async def ensure(self) -> None:
        """:class:`LeaseLost` unless this driver certainly still holds the lease (renewed
        within its TTL, with a second's margin; otherwise renewed now)."""
        if self.lost is not None:
            raise self.lost
        if time.time() < self.lease.expires_at - 1.0:
            return
        try:
            await asyncio.to_thread(self.lease.renew)
        except LeaseLost as exc:
            self._lose(exc)
            raise

    async def verify(self) -> None:
        """:class:`LeaseLost` unless the database still names this lease current."""
        if self.lost is not None:
            raise self.lost
        try:
            await asyncio.to_thread(self.lease.check)
        except LeaseLost as exc:
            self._lose(exc)
            raise

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.lost is None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.lease.release)
