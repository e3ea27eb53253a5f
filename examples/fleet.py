"""A fleet on one machine: a private Redis, two workers, and a driver running the refund graph.

Each ``orchestra worker`` process hosts the skills of ``graphs/refund.py`` on its own Celery
queues; this script drives the same graph with ``build_runner(..., fleet=True)`` so every step
runs on whichever worker takes it, then reads the run's checkpoint to show who served what.
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

from orchestra import Settings, build_runner
from orchestra.checkpoint import open_checkpointer
from orchestra.loaders import load_any_graph

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "graphs" / "refund.py"
WORKERS = ("refund-a", "refund-b")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.2)


def live_workers(health_url: str) -> set[str]:
    import redis

    client = redis.Redis.from_url(health_url, decode_responses=True)
    try:
        names = client.smembers("orchestra:workers")
        return {n for n in names if client.exists(f"orchestra:worker:{n}")}
    except redis.ConnectionError:
        return set()
    finally:
        client.close()


async def drive(settings: Settings) -> None:
    graph, _ = load_any_graph(GRAPH)
    runner = build_runner(settings, fleet=True)
    try:
        result = await runner.run(graph, {"customer_id": "c-42", "amount": 30})
    finally:
        await runner.executor.aclose()
        if runner.checkpointer is not None:
            await runner.checkpointer.aclose()
    print(f"\nrun {result.run_id}: {result.status.upper()}  path={' -> '.join(result.path)}")
    print("\ndecisions:")
    for d in result.decisions:
        print(f"  {d}")
    checkpointer = open_checkpointer(settings.checkpoint_url)
    assert checkpointer is not None
    try:
        state = await checkpointer.load(result.run_id)
    finally:
        await checkpointer.aclose()
    print("\nwho served each step:")
    for step, record in (state.completed if state else {}).items():
        print(f"  {step:<8} {record.skill:<16} on {record.worker or '?'}")


def main() -> int:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("this example needs redis-server on PATH (apt install redis-server); skipped")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="orchestra-fleet-"))
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRA_", "OTEL_"))}
    env.update(
        ORCHESTRA_BROKER_URL=f"{url}/0",
        ORCHESTRA_RESULT_BACKEND=f"{url}/1",
        ORCHESTRA_HEALTH_URL=f"{url}/2",
        ORCHESTRA_CHECKPOINT_URL=f"sqlite:///{tmp}/runs.sqlite",
        OTEL_SDK_DISABLED="true",
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        print(f"redis-server on port {port}")
        procs.append(
            subprocess.Popen(
                [
                    *(redis_server, "--port", str(port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(tmp)),
                ],
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        for name in WORKERS:
            cmd = [sys.executable, "-m", "orchestra", "worker", "--graph", str(GRAPH)]
            cmd += ["--name", name, "--concurrency", "2"]
            print("starting", " ".join(["orchestra", *cmd[3:]]))
            with (tmp / f"{name}.log").open("w") as log:
                procs.append(
                    subprocess.Popen(
                        cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )  # fmt: skip
        wait_until(lambda: set(WORKERS) <= live_workers(env["ORCHESTRA_HEALTH_URL"]), 90, "workers")
        print("workers live:", ", ".join(sorted(live_workers(env["ORCHESTRA_HEALTH_URL"]))))
        settings = Settings(
            broker_url=env["ORCHESTRA_BROKER_URL"],
            result_backend=env["ORCHESTRA_RESULT_BACKEND"],
            health_url=env["ORCHESTRA_HEALTH_URL"],
            checkpoint_url=env["ORCHESTRA_CHECKPOINT_URL"],
        )
        asyncio.run(drive(settings))
    finally:
        # workers first (a warm shutdown needs Redis), then Redis; what lingers is killed
        for group in (procs[1:], procs[:1]):
            for p in group:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
            for p in group:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nfleet stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
