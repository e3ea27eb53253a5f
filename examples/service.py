"""Runs as a service on one machine: a private Redis, a step worker, a driver, and a client.

The client submits a run of the refund graph by its registered name and streams its decision
log while a driver worker (``orchestra worker --runs``) drives it and a step worker runs its
steps; no process of the client's drives the run.
"""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestra import Settings
from orchestra.service import RunService

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "graphs" / "refund.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_key(url: str, key: str, timeout: float) -> None:
    import redis

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if client.exists(key):
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{key} not there after {timeout:.0f} s")
            time.sleep(0.2)
    finally:
        client.close()


async def client(settings: Settings) -> None:
    async with RunService(settings) as service:
        print("graphs:", ", ".join(await service.graphs()))
        handle = await service.submit("refund", {"customer_id": "c-42", "amount": 30})
        print(f"submitted run {handle.run_id} (recorded, then queued)\n")
        async for event in handle.events():
            if event.decision is not None:
                print(f"  {event.decision}")
            else:
                print(f"  [{event.type}] {event.detail or event.status or ''}")
        result = await handle.result(timeout=60)
    print(f"\nrun {result.run_id}: {result.status.upper()}  path={' -> '.join(result.path)}")


def main() -> int:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("this example needs redis-server on PATH (apt install redis-server); skipped")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="orchestra-service-"))
    url = f"redis://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRA_", "OTEL_"))}
    env.update(
        ORCHESTRA_BROKER_URL=f"{url}/0",
        ORCHESTRA_RESULT_BACKEND=f"{url}/1",
        ORCHESTRA_HEALTH_URL=f"{url}/2",
        ORCHESTRA_CHECKPOINT_URL=f"sqlite:///{tmp}/runs.sqlite",
        OTEL_SDK_DISABLED="true",
    )
    port = url.rsplit(":", 1)[1]
    commands = [
        [redis_server, "--port", port, "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp)],
        [sys.executable, "-m", "orchestra", "worker", "--graph", str(GRAPH), "--name", "steps"],
        [sys.executable, "-m", "orchestra", "worker", "--runs", "--graph", str(GRAPH),
         "--name", "driver"],
    ]  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, cmd in enumerate(commands):
            if i:
                print("starting orchestra", " ".join(cmd[3:]))
            with (tmp / f"{i}.log").open("w") as log:
                procs.append(
                    subprocess.Popen(
                        cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )  # fmt: skip
        wait_for_key(env["ORCHESTRA_HEALTH_URL"], "orchestra:worker:steps", 120)
        wait_for_key(env["ORCHESTRA_RESULT_BACKEND"], "orchestra:runs:driver:driver", 120)
        settings = Settings(
            broker_url=env["ORCHESTRA_BROKER_URL"],
            result_backend=env["ORCHESTRA_RESULT_BACKEND"],
            health_url=env["ORCHESTRA_HEALTH_URL"],
            checkpoint_url=env["ORCHESTRA_CHECKPOINT_URL"],
        )
        asyncio.run(client(settings))
    finally:
        # workers first (a warm shutdown needs Redis), then Redis; what lingers is killed
        for group in (procs[1:], procs[:1]):
            for p in group:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
            for p in group:
                try:
                    p.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nservice stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
