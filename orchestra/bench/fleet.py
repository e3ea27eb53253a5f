"""``orchestra bench fleet``: what a step costs on a Celery fleet, next to bare Celery.

In one run, on this machine, the benchmark starts a private ``redis-server`` (unless
``--redis URL``) and two ``orchestra worker`` processes hosting this file's skills, then
measures, interleaving the two kinds of call in blocks so that both see the same load:

* ``raw_celery_ms``: a bare Celery ``delay().get()`` round trip of a no-op task on those
  workers (JSON, Redis broker and result backend);
* ``step_ms``: one Orchestra step of a no-op skill through :class:`CeleryExecutor` (payload
  validation, idempotency and redelivery bookkeeping, ``run_skill`` with its span, the reply)
  and ``overhead_ratio`` = ``step_ms_p50 / raw_celery_ms_p50``.  The skill is a coroutine,
  as most skills are; ``step_sync_ms`` is the same for a plain function, which
  :meth:`~orchestra.skills.Skill.acall` runs on a thread (one more thread hop);
* ``run_ms``: a whole one-step run through the fleet runner (monitors reading fleet health,
  routing, the step), for context;
* ``steps_per_s``: 1,000 independent steps dispatched together; ``raw_celery_tasks_per_s``
  the same with bare Celery;
* ``fanout_speedup``: a 4-branch fan-out of 200 ms skills against the same four steps in
  sequence, both as runs on the fleet.

The workers' skills (``noop_async``, ``noop``, ``nap_200ms``) are defined here; workers load them with
``--skills`` pointing at this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from orchestra.bench._procs import (
    fleet_env,
    fleet_settings,
    private_redis,
    skill_workers,
    wait_for_redis,
)
from orchestra.skills import skill

__all__ = ["nap_200ms", "noop", "noop_async", "register", "run_fleet_bench", "wait_for_redis"]


class Nothing(BaseModel):
    """An empty output."""


@skill(cost=0.0, latency_ms=0.1, capability="bench.noop", timeout_s=10)
def noop() -> Nothing:
    """Do nothing (the step equivalent of a no-op Celery task)."""
    return Nothing()


@skill(cost=0.0, latency_ms=0.1, capability="bench.noop", timeout_s=10)
async def noop_async() -> Nothing:
    """Do nothing, as a coroutine (most skills are: they wait on I/O)."""
    return Nothing()


@skill(cost=0.0, latency_ms=200, capability="bench.nap", timeout_s=10)
async def nap_200ms() -> Nothing:
    """Wait 200 ms without using a CPU (a tool call waiting on I/O)."""
    await asyncio.sleep(0.2)
    return Nothing()


# ----------------------------------------------------------------------------- measuring


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(
    settings: Any, *, samples: int, steps: int, blocks: int, fanout_runs: int
) -> dict[str, Any]:
    from orchestra.executors import StepTask
    from orchestra.fleet import CeleryExecutor, fleet_runner
    from orchestra.fleet.app import PING_TASK
    from orchestra.graph import Graph

    executor = CeleryExecutor(settings)
    app = executor.app
    ping = app.tasks[PING_TASK]
    run_id = uuid.uuid4().hex[:8]

    def task(i: int, skill: str = "noop_async") -> StepTask:
        return StepTask(run_id=run_id, step_id=f"s{i}", skill=skill, timeout_s=10)

    try:
        # warm every path (connections, pools, worker processes)
        for i in range(30):
            ping.delay().get(timeout=10)
            await executor.execute(task(-2 * i - 1), noop_async)
            await executor.execute(task(-2 * i - 2, "noop"), noop)
        raw: list[float] = []
        step: list[float] = []
        step_sync: list[float] = []
        per_block = max(1, samples // blocks)
        n = 0
        for _ in range(blocks):
            for _ in range(per_block):
                t0 = time.perf_counter()
                ping.delay().get(timeout=10)
                raw.append((time.perf_counter() - t0) * 1e3)
            for sk, into in ((noop_async, step), (noop, step_sync)):
                for _ in range(per_block):
                    t0 = time.perf_counter()
                    out = await executor.execute(task(n, sk.name), sk)
                    into.append((time.perf_counter() - t0) * 1e3)
                    n += 1
                    if not out.ok:
                        raise RuntimeError(f"bench step failed: {out.error}")

        # throughput: everything dispatched at once
        t0 = time.perf_counter()
        results = [ping.delay() for _ in range(steps)]
        for r in results:
            r.get(timeout=60)
        raw_tps = steps / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        outs = await asyncio.gather(
            *(executor.execute(task(n + i), noop_async) for i in range(steps))
        )
        steps_per_s = steps / (time.perf_counter() - t0)
        if not all(o.ok for o in outs):
            raise RuntimeError("a bench step failed in the throughput test")
    finally:
        await executor.aclose()

    runner = fleet_runner(settings)
    try:
        one = Graph("bench_one")
        one.step("s", [noop_async])
        fan = Graph("bench_fanout")
        seq = Graph("bench_sequence")
        for i in range(4):
            fan.step(f"b{i}", [nap_200ms])
            seq.step(f"b{i}", [nap_200ms], after=[f"b{i - 1}"] if i else [])
        for _ in range(10):
            await runner.run(one, {})
        run_ms: list[float] = []
        for _ in range(max(20, samples // 5)):
            t0 = time.perf_counter()
            res = await runner.run(one, {})
            run_ms.append((time.perf_counter() - t0) * 1e3)
            if res.status != "completed":
                raise RuntimeError(f"bench run {res.status}: {res.reason}")
        fan_ms: list[float] = []
        seq_ms: list[float] = []
        await runner.run(fan, {})
        for _ in range(fanout_runs):
            for graph, into in ((fan, fan_ms), (seq, seq_ms)):
                t0 = time.perf_counter()
                res = await runner.run(graph, {})
                into.append((time.perf_counter() - t0) * 1e3)
                if res.status != "completed":
                    raise RuntimeError(f"bench run {res.status}: {res.reason}")
    finally:
        await runner.executor.aclose()

    raw_p50, step_p50 = statistics.median(raw), statistics.median(step)
    return {
        "raw_celery_ms_p50": round(raw_p50, 3),
        "raw_celery_ms_p99": round(_pct(raw, 0.99), 3),
        "step_ms_p50": round(step_p50, 3),
        "step_ms_p99": round(_pct(step, 0.99), 3),
        "overhead_ratio": round(step_p50 / raw_p50, 3),
        "overhead_ratio_p99": round(_pct(step, 0.99) / _pct(raw, 0.99), 3),
        "step_sync_ms_p50": round(statistics.median(step_sync), 3),
        "step_sync_ms_p99": round(_pct(step_sync, 0.99), 3),
        "overhead_ratio_sync": round(statistics.median(step_sync) / raw_p50, 3),
        "run_ms_p50": round(statistics.median(run_ms), 3),
        "run_ms_p99": round(_pct(run_ms, 0.99), 3),
        "steps_per_s": round(steps_per_s, 1),
        "raw_celery_tasks_per_s": round(raw_tps, 1),
        "fanout_ms": round(statistics.median(fan_ms), 1),
        "sequential_ms": round(statistics.median(seq_ms), 1),
        "fanout_speedup": round(statistics.median(seq_ms) / statistics.median(fan_ms), 3),
        "samples": len(step),
        "throughput_steps": steps,
    }


def run_fleet_bench(
    *,
    samples: int = 1000,
    steps: int = 1000,
    workers: int = 2,
    concurrency: int = 2,
    redis_url: str | None = None,
    fanout_runs: int = 5,
) -> dict[str, Any]:
    """Start the fleet, measure (see the module doc), stop the fleet; returns the figures."""
    with contextlib.ExitStack() as stack:
        env = fleet_env(redis_url or stack.enter_context(private_redis()), "none")
        stack.enter_context(skill_workers(env, workers, concurrency, __file__))
        settings = fleet_settings(env)
        figures = asyncio.run(
            _measure(settings, samples=samples, steps=steps, blocks=10, fanout_runs=fanout_runs)
        )
    figures.update(
        {
            "workers": workers,
            "concurrency_per_worker": concurrency,
            "pool": "prefork",
            "redis": "private redis-server" if redis_url is None else "given",
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    )
    return figures


def register(app: typer.Typer) -> None:
    @app.command("fleet")
    def fleet_bench(
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the figures as JSON here")
        ] = None,
        samples: Annotated[int, typer.Option(help="Round trips measured per kind")] = 1000,
        steps: Annotated[int, typer.Option(help="Independent steps for the throughput")] = 1000,
        workers: Annotated[int, typer.Option(help="Worker processes to start")] = 2,
        concurrency: Annotated[int, typer.Option(help="Steps at once per worker")] = 2,
        redis: Annotated[
            str | None,
            typer.Option(help="Use this Redis (redis://host:port) instead of a private one"),
        ] = None,
    ) -> None:
        """One step on a Celery fleet vs a bare Celery round trip; throughput; fan-out."""
        from rich.console import Console
        from rich.table import Table

        console = Console()
        with console.status("starting Redis and workers, measuring…"):
            r = run_fleet_bench(
                samples=samples,
                steps=steps,
                workers=workers,
                concurrency=concurrency,
                redis_url=redis,
            )
        table = Table(
            title=f"fleet: {r['workers']} workers × {r['concurrency_per_worker']} "
            f"({r['cpus']} CPUs, load {r['load_avg_1m']})"
        )
        for col in ("measure", "p50", "p99", "note"):
            table.add_column(col, justify="right")
        table.add_row("bare Celery delay().get()", f"{r['raw_celery_ms_p50']:.2f} ms",
                      f"{r['raw_celery_ms_p99']:.2f} ms", "no-op task")  # fmt: skip
        table.add_row("Orchestra step", f"{r['step_ms_p50']:.2f} ms", f"{r['step_ms_p99']:.2f} ms",
                      "no-op async skill, CeleryExecutor")  # fmt: skip
        table.add_row("overhead ratio", f"{r['overhead_ratio']:.2f}×",
                      f"{r['overhead_ratio_p99']:.2f}×", "step / bare (target ≤ 1.5)")  # fmt: skip
        table.add_row("Orchestra step, sync skill", f"{r['step_sync_ms_p50']:.2f} ms",
                      f"{r['step_sync_ms_p99']:.2f} ms",
                      f"runs on a thread; ratio {r['overhead_ratio_sync']:.2f}×")  # fmt: skip
        table.add_row("one-step run", f"{r['run_ms_p50']:.2f} ms", f"{r['run_ms_p99']:.2f} ms",
                      "monitors + routing + step")  # fmt: skip
        table.add_row("throughput", f"{r['steps_per_s']:.0f} steps/s", "",
                      f"{r['throughput_steps']} at once; bare Celery "
                      f"{r['raw_celery_tasks_per_s']:.0f}/s")  # fmt: skip
        table.add_row("4-branch fan-out", f"{r['fanout_speedup']:.2f}×", "",
                      f"{r['fanout_ms']:.0f} ms vs {r['sequential_ms']:.0f} ms in sequence "
                      "(target ≥ 3)")  # fmt: skip
        console.print(table)
        if json_out:
            json_out.write_text(json.dumps(r, indent=2))
