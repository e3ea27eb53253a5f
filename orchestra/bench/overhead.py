"""``orchestra bench overhead``: what the runtime costs per step, next to LangGraph and Celery.

Everything is measured in one run, on this machine, each figure against its baseline in the
same process (repeats of the two interleaved, the best of each kept):

* ``chain``: a chain of N steps, each with two no-op candidate skills (its own two), run
  embedded without checkpoints, against a LangGraph ``StateGraph`` chain of N no-op nodes;
  milliseconds per step (a run's wall time / N), and their ratio (Orchestra / LangGraph).
* ``fanout``: N independent steps (two no-op candidates each) against a ``StateGraph`` of N
  no-op nodes that all leave ``START``.
* ``checkpoint_bytes_per_step``: the chain of N run with the SQLite checkpointer (the
  embedded default) in a fresh file: the file's bytes per step once the run is done.
* ``fleet``: a private ``redis-server`` and two ``orchestra worker`` processes; a fan-out of
  ``--fleet-steps`` no-op steps through the fleet runner (checkpoints on, SQLite) against a
  bare Celery ``group`` of as many no-op tasks on the same workers; steps per second.
* ``start``: wall seconds of ``python -c "import orchestra"`` and ``orchestra --help`` (best
  of three), next to a bare ``python -c pass``.

JSON (``--json OUT``)::

    {"chain": {"<n>": {"orchestra_ms_per_step", "langgraph_ms_per_step", "ratio"}},
     "fanout": {"<n>": {...}}, "checkpoint_bytes_per_step": {"<n>": ...},
     "fleet": {"orchestra_steps_per_s", "celery_steps_per_s", "ratio"},
     "start": {"import_s", "help_s", "python_s"}, "chain_growth": <ms/step of the longest
     chain / ms/step of the shortest>}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

__all__ = ["register", "run_overhead_bench"]


class _Nothing(BaseModel):
    """An empty output."""


def _noop_skill(name: str, cost: float) -> Any:
    from orchestra.skills import skill

    async def fn() -> _Nothing:
        return _Nothing()

    fn.__name__ = name
    return skill(name=name, cost=cost)(fn)


def _orchestra_graph(kind: str, n: int) -> Any:
    from orchestra.graph import Graph

    g = Graph(f"overhead_{kind}_{n}")
    for i in range(n):
        after = [f"s{i - 1}"] if kind == "chain" and i else []
        g.step(f"s{i}", [_noop_skill(f"a{i}", 0.1), _noop_skill(f"b{i}", 0.2)], after=after)
    return g.compile()


def _langgraph_graph(kind: str, n: int) -> Any:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict, total=False):
        x: int

    async def node(state: State) -> dict[str, Any]:
        return {}

    g = StateGraph(State)
    prev = START
    for i in range(n):
        g.add_node(f"n{i}", node)
        if kind == "chain":
            g.add_edge(prev, f"n{i}")
            prev = f"n{i}"
        else:
            g.add_edge(START, f"n{i}")
            g.add_edge(f"n{i}", END)
    if kind == "chain":
        g.add_edge(prev, END)
    return g.compile()


def _repeats(n: int) -> int:
    return max(5, min(25, 1000 // max(n, 1)))


async def _time(fn: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


async def _side_by_side(kind: str, n: int) -> dict[str, float]:
    from orchestra.runtime import Runner

    compiled = _orchestra_graph(kind, n)
    lg = _langgraph_graph(kind, n)
    runner = Runner()
    config = {"recursion_limit": n + 10}

    async def orchestra_run() -> None:
        r = await runner.run(compiled, {})
        if r.status != "completed":
            raise RuntimeError(f"overhead bench run {r.status}: {r.reason}")

    async def langgraph_run() -> None:
        await lg.ainvoke({"x": 0}, config)

    await orchestra_run()  # warm both
    await langgraph_run()
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(_repeats(n)):
        ours.append(await _time(orchestra_run))
        theirs.append(await _time(langgraph_run))
    o = min(ours) * 1e3 / n  # best of the interleaved repeats: the least disturbed by load
    lgm = min(theirs) * 1e3 / n
    return {
        "orchestra_ms_per_step": round(o, 4),
        "langgraph_ms_per_step": round(lgm, 4),
        "ratio": round(o / lgm, 3),
    }


async def _checkpoint_bytes(n: int, folder: Path) -> float:
    import sqlite3

    from orchestra.checkpoint import open_checkpointer
    from orchestra.runtime import Runner

    path = folder / f"runs-{n}.sqlite"
    store = open_checkpointer(f"sqlite:///{path}")
    try:
        r = await Runner(checkpointer=store).run(_orchestra_graph("chain", n), {})
        if r.status != "completed":
            raise RuntimeError(f"overhead bench run {r.status}: {r.reason}")
    finally:
        if store is not None:
            await store.aclose()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = sum(p.stat().st_size for p in folder.glob(f"runs-{n}.sqlite*"))
    return round(size / n, 1)


def _fleet(steps: int, folder: Path) -> dict[str, float]:
    from orchestra.bench import fleet as bench_fleet
    from orchestra.bench._procs import fleet_env, fleet_settings, private_redis, skill_workers

    with contextlib.ExitStack() as stack:
        env = fleet_env(stack.enter_context(private_redis()), "none")
        stack.enter_context(skill_workers(env, 2, 2, bench_fleet.__file__))
        settings = fleet_settings(env, checkpoint_url=f"sqlite:///{folder / 'fleet.sqlite'}")
        return asyncio.run(_fleet_measure(settings, steps))


async def _fleet_measure(settings: Any, steps: int) -> dict[str, float]:
    from celery import group

    from orchestra.bench.fleet import noop_async
    from orchestra.fleet import fleet_runner
    from orchestra.fleet.app import PING_TASK
    from orchestra.graph import Graph

    runner = fleet_runner(settings)
    app = runner.executor.app  # type: ignore[attr-defined]
    ping = app.tasks[PING_TASK]
    fan = Graph(f"overhead_fleet_{steps}")
    for i in range(steps):
        fan.step(f"s{i}", [noop_async])
    compiled = fan.compile()

    def celery_group() -> None:
        group(ping.s() for _ in range(steps)).apply_async().get(timeout=300)

    try:
        warm = Graph("overhead_fleet_warm")
        for i in range(20):
            warm.step(f"s{i}", [noop_async])
        await runner.run(warm, {})
        await asyncio.to_thread(celery_group)
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(3):
            t0 = time.perf_counter()
            await asyncio.to_thread(celery_group)
            theirs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            r = await runner.run(compiled, {})
            ours.append(time.perf_counter() - t0)
            if r.status != "completed":
                raise RuntimeError(f"overhead fleet run {r.status}: {r.reason}")
    finally:
        await runner.executor.aclose()  # type: ignore[attr-defined]
        if runner.checkpointer is not None:
            await runner.checkpointer.aclose()
    o = steps / statistics.median(ours)
    c = steps / statistics.median(theirs)
    return {
        "orchestra_steps_per_s": round(o, 1),
        "celery_steps_per_s": round(c, 1),
        "ratio": round(o / c, 3),
        "steps": steps,
    }


def _start() -> dict[str, float]:
    import subprocess
    import sys

    def best(cmd: list[str]) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        return round(min(times), 3)

    py = sys.executable
    return {
        "import_s": best([py, "-c", "import orchestra"]),
        "help_s": best([py, "-m", "orchestra", "--help"]),
        "python_s": best([py, "-c", "pass"]),
    }


def run_overhead_bench(
    sizes: list[int], *, fleet_steps: int = 1000, fleet: bool = True
) -> dict[str, Any]:
    """Measure (see the module doc); returns the figures."""
    out: dict[str, Any] = {"chain": {}, "fanout": {}, "checkpoint_bytes_per_step": {}}
    out["start"] = _start()
    with tempfile.TemporaryDirectory(prefix="orchestra-overhead-") as tmp:
        folder = Path(tmp)
        for n in sizes:
            out["chain"][str(n)] = asyncio.run(_side_by_side("chain", n))
            out["fanout"][str(n)] = asyncio.run(_side_by_side("fanout", n))
            out["checkpoint_bytes_per_step"][str(n)] = asyncio.run(_checkpoint_bytes(n, folder))
        if fleet:
            out["fleet"] = _fleet(fleet_steps, folder)
    lo, hi = str(min(sizes)), str(max(sizes))
    # how the per-step cost grows with the run: ms/step of the longest chain over the shortest
    out["chain_growth"] = round(
        out["chain"][hi]["orchestra_ms_per_step"] / out["chain"][lo]["orchestra_ms_per_step"], 3
    )
    out["cpus"] = os.cpu_count()
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return out


def register(app: typer.Typer) -> None:
    @app.command("overhead")
    def overhead(
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Write the figures as JSON here")
        ] = None,
        sizes: Annotated[
            str, typer.Option(help="Comma-separated numbers of steps")
        ] = "10,100,400,1000",
        fleet_steps: Annotated[
            int, typer.Option(help="Steps of the fleet fan-out (and tasks of the Celery group)")
        ] = 1000,
        fleet: Annotated[
            bool, typer.Option(help="Measure the fleet (starts Redis and two workers)")
        ] = True,
    ) -> None:
        """Per-step cost vs LangGraph (chain, fan-out), checkpoint bytes, fleet vs Celery."""
        from rich.console import Console
        from rich.table import Table

        try:
            ns = [int(s) for s in sizes.split(",") if s.strip()]
        except ValueError:
            raise typer.BadParameter(
                f"--sizes takes numbers like 10,100,1000, not {sizes!r}"
            ) from None
        if not ns or min(ns) < 1:
            raise typer.BadParameter("--sizes takes numbers of steps >= 1")
        console = Console()
        with console.status("measuring…"):
            r = run_overhead_bench(ns, fleet_steps=fleet_steps, fleet=fleet)
        table = Table(title=f"runtime overhead ({r['cpus']} CPUs, load {r['load_avg_1m']})")
        for col in ("steps", "shape", "orchestra ms/step", "LangGraph ms/step", "ratio",
                    "checkpoint bytes/step"):  # fmt: skip
            table.add_column(col, justify="right")
        for n in ns:
            for shape in ("chain", "fanout"):
                f = r[shape][str(n)]
                table.add_row(
                    str(n),
                    shape,
                    f"{f['orchestra_ms_per_step']:.3f}",
                    f"{f['langgraph_ms_per_step']:.3f}",
                    f"{f['ratio']:.2f}×",
                    f"{r['checkpoint_bytes_per_step'][str(n)]:,.0f}" if shape == "chain" else "",
                )
        console.print(table)
        console.print(
            f"per-step cost of the {max(ns)}-step chain / the {min(ns)}-step chain: "
            f"{r['chain_growth']:.2f}×"
        )
        st = r["start"]
        console.print(
            f"start: import orchestra {st['import_s']:.2f} s, orchestra --help {st['help_s']:.2f} s "
            f"(bare python {st['python_s']:.2f} s)"
        )
        if "fleet" in r:
            f = r["fleet"]
            console.print(
                f"fleet fan-out of {f['steps']} steps on 2 workers: "
                f"{f['orchestra_steps_per_s']:.0f} steps/s vs bare Celery group "
                f"{f['celery_steps_per_s']:.0f}/s (ratio {f['ratio']:.2f})"
            )
        if json_out:
            json_out.write_text(json.dumps(r, indent=2))
