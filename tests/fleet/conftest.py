"""Fixtures for the fleet tests: a private Redis server and real ``orchestra worker`` processes.

Every test module gets its own ``redis-server`` (no persistence, a free port), so no other
suite's workers share its queues, and a test can restart it.  Workers are started as
``python -m orchestra worker --skills tests/fleet/fleet_skills.py`` in their own session
(so a test can SIGKILL one worker process, or its whole process group) and stopped at the
end of the test that started them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from skip_policy import missing

from orchestra.bench._procs import RedisServer as _RedisServer

ROOT = Path(__file__).resolve().parents[2]
SKILLS = "tests/fleet/fleet_skills.py"

# Fast fleet timings for tests: a lost task comes back after 4 s, a silent worker is dead
# after 2 s, a lost task may be delivered three times in all.
FAST = {
    "ORCHESTRA_VISIBILITY_TIMEOUT_S": "4",
    "ORCHESTRA_RESTORE_INTERVAL_S": "1",
    "ORCHESTRA_HEARTBEAT_S": "0.5",
    "ORCHESTRA_HEARTBEAT_TTL_S": "2",
    "ORCHESTRA_MAX_REDELIVERIES": "2",
    "ORCHESTRA_QUEUE_WAIT_S": "10",
    "ORCHESTRA_UNREACHABLE_S": "15",
}


# The database scripts/ensure-services.sh creates (trust auth on this machine and in CI).
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def require_postgres() -> str:
    """The fleet's PostgreSQL URL; skips here (fails under CI=true) when it does not answer."""
    try:
        import psycopg

        psycopg.connect(POSTGRES, connect_timeout=5).close()
    except Exception as exc:
        missing(f"no PostgreSQL at {POSTGRES} ({exc}); start it with scripts/ensure-services.sh")
    return POSTGRES


class RedisServer(_RedisServer):
    """A throwaway ``redis-server`` on a free port (the benchmarks' own, see
    :mod:`orchestra.bench._procs`); :meth:`restart` loses everything."""

    def __init__(self, workdir: Path):
        super().__init__(
            workdir=workdir,
            missing="the fleet tests need redis-server on PATH (apt install redis-server)",
        )


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@dataclass
class Fleet:
    """Starts and stops workers of one test; knows the fleet's settings and side log."""

    redis: RedisServer
    tmp: Path
    env: dict[str, str]
    side_log: Path
    workers: list[Worker] = field(default_factory=list)

    @property
    def settings(self):  # -> FleetSettings
        from orchestra.fleet import FleetSettings

        return FleetSettings(
            broker_url=self.env["ORCHESTRA_BROKER_URL"],
            result_backend=self.env["ORCHESTRA_RESULT_BACKEND"],
            health_url=self.env["ORCHESTRA_HEALTH_URL"],
            checkpoint_url=self.env["ORCHESTRA_CHECKPOINT_URL"],
            **{k.removeprefix("ORCHESTRA_").lower(): self.env[k] for k in FAST},
        )

    def start(
        self,
        n: int = 1,
        *,
        queues: str | None = None,
        concurrency: int = 1,
        wait: bool = True,
        skills: str | None = SKILLS,
        args: tuple[str, ...] = (),
    ) -> list[Worker]:
        started = []
        for _ in range(n):
            name = f"w{len(self.workers) + 1}-{uuid.uuid4().hex[:6]}"
            log = self.tmp / f"{name}.log"
            cmd = [sys.executable, "-m", "orchestra", "worker", *args]
            if skills is not None:
                cmd += ["--skills", skills]
            cmd += ["--name", name, "--concurrency", str(concurrency), "--loglevel", "INFO"]
            if queues:
                cmd += ["--queues", queues]
            with log.open("w") as out:
                proc = subprocess.Popen(
                    cmd,
                    env=self.env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            w = Worker(name, proc, log)
            self.workers.append(w)
            started.append(w)
        if wait:
            self.wait_live({w.name for w in started}, started)
        return started

    def live(self) -> set[str]:
        """Names of the workers whose heartbeat is current."""
        import redis

        client = redis.Redis.from_url(self.env["ORCHESTRA_HEALTH_URL"], decode_responses=True)
        try:
            names = client.smembers("orchestra:workers")
            return {n for n in names if client.exists(f"orchestra:worker:{n}")}
        finally:
            client.close()

    def wait_live(self, names: set[str], procs: list[Worker], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not names <= self.live():
            for w in procs:
                if w.proc.poll() is not None:
                    pytest.fail(f"worker {w.name} exited:\n{w.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"workers {names} not live after {timeout}s")
            time.sleep(0.1)

    def wait_gone(self, names: set[str], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while names & self.live():
            if time.monotonic() > deadline:
                pytest.fail(f"workers {names & self.live()} still live after {timeout}s")
            time.sleep(0.1)

    def stop(self, w: Worker, timeout: float = 30) -> None:
        """SIGTERM: a warm shutdown (the worker finishes what it runs)."""
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
            try:
                w.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill_group(w)

    def kill_group(self, w: Worker) -> None:
        """SIGKILL the worker and every process it started."""
        if w.proc.poll() is None:
            os.killpg(w.proc.pid, signal.SIGKILL)
            w.proc.wait(timeout=10)

    def by_pid(self, pid: int) -> Worker:
        """The worker whose process group holds ``pid``."""
        pgid = os.getpgid(pid)
        for w in self.workers:
            if w.proc.pid == pgid:
                return w
        raise LookupError(pid)

    def side(self) -> list[list[str]]:
        if not self.side_log.exists():
            return []
        return [line.split() for line in self.side_log.read_text().splitlines() if line]

    def count(self, event: str, skill: str, token: str) -> int:
        return sum(1 for e in self.side() if e[:3] == [event, skill, token])

    def wait_side(self, event: str, skill: str, token: str, timeout: float = 20) -> list[str]:
        """Wait for a line of the side log; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.side():
                if e[:3] == [event, skill, token]:
                    return e
            if time.monotonic() > deadline:
                pytest.fail(f"no '{event} {skill} {token}' in the side log after {timeout}s")
            time.sleep(0.02)

    async def await_side(
        self, event: str, skill: str, token: str, timeout: float = 20
    ) -> list[str]:
        """:meth:`wait_side` for async tests (does not block the event loop)."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.side():
                if e[:3] == [event, skill, token]:
                    return e
            if time.monotonic() > deadline:
                pytest.fail(f"no '{event} {skill} {token}' in the side log after {timeout}s")
            await asyncio.sleep(0.02)

    def close(self) -> None:
        """Kill every worker of this fleet (and its children): the test is over."""
        for w in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(w.proc.pid, signal.SIGKILL)
        for w in self.workers:
            w.proc.wait(timeout=10)


def fleet_environment(redis_url: str, tmp: Path, side_log: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRA_", "OTEL_"))}
    env.update(FAST)
    env.update(
        {
            "ORCHESTRA_BROKER_URL": f"{redis_url}/0",
            "ORCHESTRA_RESULT_BACKEND": f"{redis_url}/1",
            "ORCHESTRA_HEALTH_URL": f"{redis_url}/2",
            "ORCHESTRA_CHECKPOINT_URL": f"sqlite:///{tmp}/runs.sqlite",
            "FLEET_SIDE_LOG": str(side_log),
            "FLEET_PROBE_FLAG": str(tmp / "svc_a.down"),
            "OTEL_SDK_DISABLED": "true",
        }
    )
    return env


@contextlib.contextmanager
def _fleet(tmp: Path) -> Iterator[Fleet]:
    server = RedisServer(tmp)
    server.start()
    side = tmp / "side.log"
    f = Fleet(server, tmp, fleet_environment(server.url, tmp, side), side)
    try:
        yield f
    finally:
        try:
            f.close()
        finally:
            server.stop()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """A private Redis and no workers yet: the test starts what it needs (``fleet.start``)."""
    with _fleet(tmp_path) as f:
        yield f


@pytest.fixture(scope="module")
def shared_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Two workers (concurrency 2) hosting every test skill, shared by a module's tests."""
    with _fleet(tmp_path_factory.mktemp("shared-fleet")) as f:
        f.start(2, concurrency=2)
        yield f


def load_test_skills() -> dict[str, object]:
    from orchestra.catalog import load_catalog

    return {s.name: s for s in load_catalog(ROOT / SKILLS)}
