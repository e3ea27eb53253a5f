"""The processes of the benchmarks that run a fleet on this machine: a private
``redis-server`` and ``orchestra worker`` processes.

``orchestra bench fleet``, ``runs`` and ``chaos`` (and the fleet parts of ``overhead`` and
``tracing``) each start their own Redis on a free port, never a Redis someone else uses (the
benchmarks flush, restart and kill it), and their workers each in a session of its own, so
that a benchmark can SIGKILL a worker's whole process group (its pool with it) and so that
nothing they started outlives them, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "RedisServer",
    "fleet_env",
    "fleet_settings",
    "free_port",
    "kill_group",
    "private_redis",
    "skill_workers",
    "spawn_worker",
    "stop_groups",
    "wait_for_keys",
    "wait_for_redis",
]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_redis(url: str, timeout_s: float = 10.0) -> None:
    """Return once the redis-server a benchmark just started answers PING at ``url``."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the private redis-server did not start") from None
                time.sleep(0.05)
    finally:
        client.close()


class RedisServer:
    """A private ``redis-server`` without persistence on ``port`` (a free one by default);
    it can be stopped and started again on the same port (everything in it is lost)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        workdir: Path | None = None,
        missing: str = "redis-server is not on PATH",
    ):
        self.port = port if port is not None else free_port()
        self.workdir = workdir
        self.missing = missing
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(self.missing)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no"]
        if self.workdir is not None:
            args += ["--dir", str(self.workdir)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_redis(self.url)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop the server (SIGKILL: at once, as a crash; SIGTERM: a clean shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


@contextlib.contextmanager
def private_redis(
    *, missing: str = "redis-server is not on PATH: pass --redis URL"
) -> Iterator[str]:
    """A private ``redis-server`` for the ``with`` block; yields its URL (no database)."""
    server = RedisServer(missing=missing)
    server.start()
    try:
        yield server.url
    finally:
        server.stop(signal.SIGTERM)


def fleet_env(
    base: str, checkpoint_url: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a benchmark's workers and drivers: this one without any
    ``ORCHESTRA_*``/``OTEL_*`` setting of the caller's, the broker, results and health in
    databases 0, 1 and 2 of the Redis at ``base``, the checkpoint store, no tracing, then
    ``extra``."""
    base = base.rstrip("/")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRA_", "OTEL_"))}
    env.update(
        {
            "ORCHESTRA_BROKER_URL": f"{base}/0",
            "ORCHESTRA_RESULT_BACKEND": f"{base}/1",
            "ORCHESTRA_HEALTH_URL": f"{base}/2",
            "ORCHESTRA_CHECKPOINT_URL": checkpoint_url,
            "OTEL_SDK_DISABLED": "true",
        }
    )
    env.update(extra or {})
    return env


def fleet_settings(env: Mapping[str, str], **overrides: Any) -> Any:
    """The :class:`~orchestra.fleet.FleetSettings` of a driver in the benchmark's process
    for the fleet of ``env`` (:func:`fleet_env`); ``overrides`` win."""
    from orchestra.fleet import FleetSettings

    values: dict[str, Any] = {
        "broker_url": env["ORCHESTRA_BROKER_URL"],
        "result_backend": env["ORCHESTRA_RESULT_BACKEND"],
        "health_url": env["ORCHESTRA_HEALTH_URL"],
        "checkpoint_url": env["ORCHESTRA_CHECKPOINT_URL"],
    }
    return FleetSettings.model_validate(values | overrides)


def spawn_worker(
    args: Sequence[str], env: Mapping[str, str], log: Path, *, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """``orchestra worker ARGS`` in a session of its own, its output (both streams) in ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestra", "worker", *args],
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_keys(
    url: str,
    keys: Sequence[str],
    procs: Iterable[tuple[subprocess.Popen[bytes], Path]],
    *,
    timeout_s: float,
    what: str = "bench workers",
) -> None:
    """Wait until every one of ``keys`` exists in the Redis database at ``url`` (the workers'
    heartbeats, the drivers' claims); a process of ``procs`` that exits meanwhile is an error
    that shows the end of its log."""
    import redis

    watched = list(procs)
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout_s
    try:
        while not all(client.exists(k) for k in keys):
            for p, log in watched:
                if p.poll() is not None:
                    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                    raise RuntimeError(f"a bench worker exited:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not up after {timeout_s:g} s")
            time.sleep(0.1)
    finally:
        client.close()


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL ``proc`` and every process of its session (a worker and its pool)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def stop_groups(procs: Iterable[subprocess.Popen[Any]], *, grace_s: float) -> None:
    """SIGTERM every process group of ``procs`` (a warm shutdown), then SIGKILL those still
    running ``grace_s`` seconds later."""
    procs = list(procs)
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            kill_group(p)


@contextlib.contextmanager
def skill_workers(
    env: Mapping[str, str], n: int, concurrency: int, skills: str | Path
) -> Iterator[list[str]]:
    """``n`` workers hosting the skills of the file ``skills``, live for the ``with`` block
    (up within 90 s); yields their names."""
    from orchestra.fleet.health import worker_key

    names = [f"bench-{i}-{uuid.uuid4().hex[:6]}" for i in range(n)]
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    with tempfile.TemporaryDirectory(prefix="orchestra-bench-workers-") as tmp:
        try:
            for name in names:
                log = Path(tmp) / f"{name}.log"
                args = ["--skills", str(skills), "--name", name]
                procs.append(
                    (spawn_worker([*args, "--concurrency", str(concurrency)], env, log), log)
                )
            wait_for_keys(
                env["ORCHESTRA_HEALTH_URL"],
                [worker_key(n) for n in names],
                procs,
                timeout_s=90,
            )
            yield names
        finally:
            stop_groups((p for p, _ in procs), grace_s=20)
